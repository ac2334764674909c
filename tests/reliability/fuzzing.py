"""Schemathesis fuzzing of a Rapport app's OpenAPI schema, in-process, with a tally.

Every operation of the schema is driven with generated requests (positive: data the schema
accepts; negative: data it forbids), each response checked against the schema. Instead of
stopping at the first failure, every distinct failure is collected (with the request that
triggered it) so one run reports all of them, and the totals (requests sent, statuses seen)
can be reported.

Positive cases are not only random: two thirds are pointed at objects that exist (``Seed``: the
path, and half of them also the body and query fields naming peers, sessions and messages), and
the schema's own examples are drawn too, so handlers run past their 404s and 422s.

Checks: no 5xx (an exception the app raises counts as one: Starlette re-raises it into the
in-process client after answering 500), status code, content type, headers and body as
documented (SSE events included), and for negative cases a 4xx. A negative case accepted only
because pydantic's lax mode coerced a wrong JSON type (0 for false) is counted, not failed.
"""

from __future__ import annotations

import os
import re
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.python.asgi import ASGIClient, get_client
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

#: Examples per operation and generation mode: small and fixed in CI, larger locally with
#: ``RAPPORT_FUZZ_EXAMPLES=500 make test-reliability``.
EXAMPLES = int(os.environ.get("RAPPORT_FUZZ_EXAMPLES", "15"))
#: ``RAPPORT_FUZZ_SEED`` varies the (otherwise fixed) generation for a local campaign.
SEED = os.environ.get("RAPPORT_FUZZ_SEED")

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
NEGATIVE_CHECKS = [*CHECKS, negative_data_rejection]


@dataclass
class FailureRecord:
    operation: str
    mode: str
    code: str
    title: str
    message: str
    request: str
    status: int
    response: str

    def __str__(self) -> str:
        return (
            f"{self.operation} [{self.mode}] {self.code} {self.title}\n"
            f"  {self.message[-2500:]}\n  request: {self.request[:900]}\n"
            f"  response {self.status}: {self.response[:400]}"
        )


@dataclass
class FuzzReport:
    operations: list[str] = field(default_factory=list)
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    #: Statuses per "operation [mode]".
    by_operation: dict[str, Counter[int]] = field(default_factory=dict)
    #: Operations that answered at least one request with a 2xx (reached their happy path).
    succeeded: set[str] = field(default_factory=set)
    #: First failure of each (operation, mode, failure code).
    failures: dict[tuple[str, str, str], FailureRecord] = field(default_factory=dict)
    #: Negative cases accepted only because a wrong JSON type was coerced, per operation.
    coerced: Counter[str] = field(default_factory=Counter)
    #: Operation and mode pairs for which no case can be generated (negative mode of a
    #: route without parameters).
    no_cases: list[str] = field(default_factory=list)
    #: Operations whose generation itself failed (schema problems).
    errors: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def summary(self) -> str:
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        return (
            f"{len(self.operations)} operations, {self.requests} requests, "
            f"{self.server_errors} 5xx, {len(self.succeeded)} operations answered 2xx, "
            f"{sum(self.coerced.values())} negative cases accepted by type coercion "
            f"(statuses: {statuses}); never 2xx: {sorted(set(self.operations) - self.succeeded)}"
        )

    def breakdown(self) -> str:
        return "\n".join(
            f"  {name}: {dict(sorted(statuses.items()))}"
            for name, statuses in self.by_operation.items()
        )

    def failure_text(self) -> str:
        parts = [str(f) for f in self.failures.values()] + self.errors
        return "\n\n".join(parts)


@dataclass
class Seed:
    """Objects that exist in one workspace: ``params`` by the path parameter names that address
    them, ``refs`` by the body and query fields that name them."""

    params: dict[str, str]
    refs: dict[str, str] = field(default_factory=dict)

    def substitute(self, case: schemathesis.Case, *, references: bool) -> None:
        """Point ``case`` at the seeded objects: its path, and with ``references`` also the
        string-valued body and query fields that name peers, sessions or messages."""
        for name in list(case.path_parameters or {}):
            if name in self.params:
                case.path_parameters[name] = self.params[name]
        if not references:
            return
        for name, value in list((case.query or {}).items()):
            if name in self.refs and isinstance(value, str):
                case.query[name] = self.refs[name]
        self._walk(case.body, depth=0)

    def _walk(self, value: Any, depth: int) -> None:
        if depth > 3:
            return
        if isinstance(value, dict):
            for key, item in value.items():
                if key in self.refs and isinstance(item, str):
                    value[key] = self.refs[key]
                else:
                    self._walk(item, depth + 1)
        elif isinstance(value, list):
            for item in value:
                self._walk(item, depth + 1)


def _json(client: ASGIClient, method: str, path: str, body: Any = None) -> Any:
    response = client.request(method, path, json=body)
    assert response.status_code < 300, f"seeding {method} {path}: {response.status_code}"
    return response.json() if response.content else None


def seed_workspace(client: ASGIClient, dsn: str) -> Seed:
    """A workspace with two peers, a session with three messages, a conclusion, a webhook
    (never delivered: no deriver runs) and a dead letter, created through the API (the dead
    letter straight in the database: only a failing deriver makes those)."""
    ws = f"fz-{uuid.uuid4().hex[:10]}"
    _json(client, "POST", "/v3/workspaces", {"id": ws, "metadata": {"seeded": True}})
    for peer in ("alice", "bob"):
        _json(client, "POST", f"/v3/workspaces/{ws}/peers", {"id": peer})
    _json(
        client,
        "POST",
        f"/v3/workspaces/{ws}/sessions",
        {"id": "s1", "peers": {"alice": {}, "bob": {}}},
    )
    messages = _json(
        client,
        "POST",
        f"/v3/workspaces/{ws}/sessions/s1/messages",
        {
            "messages": [
                {"peer_id": "alice", "content": "I moved to Lisbon last spring."},
                {"peer_id": "bob", "content": "Do you still play the cello?"},
                {"peer_id": "alice", "content": "Every Sunday, with a quartet.", "metadata": {}},
            ]
        },
    )
    conclusions = _json(
        client,
        "POST",
        f"/v3/workspaces/{ws}/conclusions",
        {
            "conclusions": [
                {
                    "content": "alice lives in Lisbon",
                    "observer_id": "bob",
                    "observed_id": "alice",
                    "session_id": "s1",
                }
            ]
        },
    )
    webhook = _json(
        client,
        "POST",
        f"/v3/workspaces/{ws}/webhooks",
        {"url": "https://hooks.example.com/rapport"},
    )
    dead_letter = uuid.uuid4().hex
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dead_letters (id, workspace_id, session_id, consumer, event_id,"
            " event_type, subject, payload, error, attempts, created_at)"
            " VALUES (%s, %s, NULL, 'fuzz', %s, 'webhook.test_requested', 'fuzz', %s, 'boom',"
            " 3, now())",
            (dead_letter, ws, uuid.uuid4().hex, psycopg.types.json.Jsonb({"workspace_id": ws})),
        )
    return Seed(
        {
            "workspace_id": ws,
            "peer_id": "alice",
            "session_id": "s1",
            "message_id": messages[0]["id"],
            "conclusion_id": conclusions[0]["id"],
            "webhook_id": webhook["id"],
            "dead_letter_id": dead_letter,
        },
        refs={
            "peer_id": "alice",
            "sender_id": "alice",
            "observer": "alice",
            "observer_id": "alice",
            "peer_perspective": "alice",
            "observed": "bob",
            "observed_id": "bob",
            "target": "bob",
            "peer_target": "bob",
            "session_id": "s1",
            "message_id": messages[0]["id"],
        },
    )


def fuzz(
    schema: schemathesis.BaseSchema,
    *,
    seed: Callable[[], Seed],
    headers: Callable[[Seed], dict[str, str]] | None = None,
    examples: int = EXAMPLES,
    modes: Sequence[GenerationMode] = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
) -> FuzzReport:
    """Fuzz every operation of ``schema`` (bound to an ASGI app) and tally the outcome.

    ``seed`` is called before each operation: it returns the objects positive cases may
    address (fresh ones, so what an earlier operation deleted or changed does not matter).
    ``headers`` gives the headers of every request (credentials) for those objects.
    """
    report = FuzzReport()
    for result in schema.get_all_operations():
        operation = result.ok()
        report.operations.append(operation.label)
        existing = seed()
        sent = headers(existing) if headers is not None else None
        for mode in modes:
            try:
                _fuzz_operation(report, operation, mode, existing, sent, examples)
            except Unsatisfiable:
                # Nothing to break (no parameters, no body): no negative case exists.
                report.no_cases.append(f"{operation.label} [{mode.value}]")
            except Exception as exc:  # generation errors, not check failures
                report.errors.append(f"{operation.label} [{mode.value}]: {exc!r}"[:2000])
    return report


def _fuzz_operation(
    report: FuzzReport,
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    existing: Seed,
    headers: dict[str, str] | None,
    examples: int,
) -> None:
    checks = NEGATIVE_CHECKS if mode.is_negative else CHECKS

    cases = operation.as_strategy(generation_mode=mode)
    if mode.is_positive:
        # The schema's own examples too (they name realistic values: a webhook URL, filters).
        examples_given = operation.schema.get_strategies_from_examples(operation)
        if examples_given:
            cases = st.one_of(cases, *examples_given)

    @given(case=cases, use_seed=st.integers(0, 2))
    @settings(
        max_examples=examples,
        derandomize=SEED is None,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
        print_blob=False,
    )
    def run(case: schemathesis.Case, use_seed: int) -> None:
        # Two thirds of the positive cases address the seeded objects (half of them also in
        # the body and query), so handlers run past their 404s.
        if mode.is_positive and use_seed:
            existing.substitute(case, references=use_seed == 2)
        report.requests += 1
        try:
            response = case.call(headers=headers)
        except Exception as exc:
            # The app raised: Starlette sent a 500 and re-raised into the in-process client.
            report.statuses[500] += 1
            report.by_operation.setdefault(f"{operation.label} [{mode.value}]", Counter())[500] += 1
            _record_crash(report, operation.label, mode, case, exc)
            return
        report.statuses[response.status_code] += 1
        report.by_operation.setdefault(f"{operation.label} [{mode.value}]", Counter())[
            response.status_code
        ] += 1
        if response.status_code < 300:
            report.succeeded.add(operation.label)
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                _record(report, operation.label, mode, case, response, failure)
        except Failure as failure:
            _record(report, operation.label, mode, case, response, failure)

    if SEED is not None:
        run = hypothesis_seed(int(SEED))(run)
    run()


def _record(
    report: FuzzReport,
    label: str,
    mode: GenerationMode,
    case: schemathesis.Case,
    response: Any,
    failure: Failure,
) -> None:
    if failure.code == "ST201" and _lax_coercion(case, failure.message):
        # A wrong JSON type that pydantic's lax mode coerces (0 or 0.0 for a boolean, "7" or
        # 7.0 for an integer), as Honcho's own server does: tolerated, and counted.
        report.coerced[label] += 1
        return
    key = (label, mode.value, failure.code)
    if key in report.failures:
        return
    report.failures[key] = FailureRecord(
        operation=label,
        mode=mode.value,
        code=failure.code,
        title=failure.title,
        message=failure.message,
        request=case.as_curl_command(),
        status=response.status_code,
        response=response.text,
    )


_VIOLATION = re.compile(r"in body - violates `(?:type|anyOf)` at (\S+)")


def _lax_coercion(case: schemathesis.Case, message: str) -> bool:
    """Whether a negative case was accepted only because a scalar of the wrong JSON type
    (number, boolean or numeric string) stood where another scalar type was declared."""
    match = _VIOLATION.search(message)
    if match is None:
        return False
    parts = match.group(1).strip("/").split("/")
    if "items" in parts or "additionalProperties" in parts:
        return False  # the instance path cannot be read back from the schema path
    keys = [parts[i + 1] for i, part in enumerate(parts[:-1]) if part == "properties"]
    value: Any = case.body
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return False
        value = value[key]
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return isinstance(value, bool | int | float)


def _record_crash(
    report: FuzzReport, label: str, mode: GenerationMode, case: schemathesis.Case, exc: Exception
) -> None:
    key = (label, mode.value, "ST101")
    if key in report.failures:
        return
    report.failures[key] = FailureRecord(
        operation=label,
        mode=mode.value,
        code="ST101",
        title="Server error (unhandled exception)",
        message="".join(traceback.format_exception(exc))[-2500:],
        request=case.as_curl_command(),
        status=500,
        response="",
    )


def client_for(app: Any) -> ASGIClient:
    """A schemathesis in-process client: the app runs on schemathesis' event loop thread
    (its lifespan started once and kept until ``shutdown_lifespans``)."""
    return get_client(app)
