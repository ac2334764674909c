"""Schemathesis against each service's OpenAPI schema, in-process on real Postgres and NATS:
no 5xx, and every response conforms to the schema (status code documented, content type,
headers and body as declared, SSE events included); requests the schema forbids are refused
with a 4xx (a wrong JSON type that pydantic coerces, such as 0 for false, is counted apart:
Honcho's own server accepts those too).

Targets: each service's own app with auth off, then the all-in-one app with auth on, once with
an admin key and once with a peer key of the seeded workspace (most routes refuse it).

The budget is fixed (``RAPPORT_FUZZ_EXAMPLES`` per operation and generation mode, 15 by
default; the all-in-one runs take 40% of it) and the generation derandomized, so a CI run is
reproducible. A local campaign:
``RAPPORT_FUZZ_EXAMPLES=300 RAPPORT_FUZZ_SEED=7 make test-reliability PYTEST_ARGS="-k fuzz -s"``
(``-s`` prints each target's tally; ``RAPPORT_FUZZ_VERBOSE=1`` adds statuses per operation).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from pydantic_settings import BaseSettings
from schemathesis.python.asgi import shutdown_lifespans

from allinone.app import create_app as create_allinone
from services.context.app import ContextSettings
from services.context.app import create_app as create_context
from services.dialectic.app import DialecticSettings
from services.dialectic.app import create_app as create_dialectic
from services.ingest.app import IngestSettings
from services.ingest.app import create_app as create_ingest
from tests.conftest import JWT_SECRET, InfraEndpoints, bearer, make_settings
from tests.reliability.fuzzing import EXAMPLES, FuzzReport, Seed, client_for, fuzz, seed_workspace

pytestmark = pytest.mark.timeout(900)


def service_settings(cls: type[BaseSettings], infra: InfraEndpoints, **overrides: Any) -> Any:
    """The test settings (deriver off), narrowed to the fields one service reads."""
    base = make_settings(infra, **overrides)
    return cls(**{name: getattr(base, name) for name in cls.model_fields})


@dataclass(frozen=True)
class Target:
    app: str
    #: Credentials for the seeded workspace (None: auth off).
    headers: Callable[[Seed], dict[str, str]] | None
    #: Share of the example budget (the all-in-one runs repeat operations fuzzed already).
    budget: float = 1.0


TARGETS = {
    "ingest": Target("ingest", None),
    "context": Target("context", None),
    "dialectic": Target("dialectic", None),
    # Auth on: an admin key reaches everything; a peer key of the seeded workspace is refused
    # (401/403) or narrowed on most routes, which exercises the authorization paths.
    "allinone-admin-key": Target("allinone-auth", lambda _: bearer(admin=True), budget=0.4),
    "allinone-peer-key": Target(
        "allinone-auth",
        lambda seed: bearer(workspace_id=seed.params["workspace_id"], peer_id="alice"),
        budget=0.4,
    ),
}


@pytest.fixture(scope="module")
def apps(infra: InfraEndpoints) -> Iterator[dict[str, Any]]:
    """One app per service (and the all-in-one with auth on), all on the run's database."""
    built = {
        "ingest": create_ingest(service_settings(IngestSettings, infra)),
        "context": create_context(service_settings(ContextSettings, infra)),
        "dialectic": create_dialectic(service_settings(DialecticSettings, infra)),
        "allinone-auth": create_allinone(
            make_settings(infra, auth_enabled=True, jwt_secret=JWT_SECRET)
        ),
    }
    yield built
    shutdown_lifespans()


@pytest.fixture(scope="module")
def seeder(apps: dict[str, Any], infra: InfraEndpoints) -> Callable[[], Seed]:
    """Seeds a fresh workspace through the ingest app (auth off) for each operation."""
    client = client_for(apps["ingest"]).__enter__()
    return lambda: seed_workspace(client, infra.dsn)


def load(apps: dict[str, Any], app: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", apps[app])


def operations(schema: schemathesis.BaseSchema) -> set[str]:
    return {r.ok().label for r in schema.get_all_operations()}


def test_allinone_serves_exactly_the_services_operations(apps: dict[str, Any]) -> None:
    """The all-in-one schema is the union of the three services' schemas, so fuzzing each
    service (auth off) and the all-in-one (auth on) covers every operation both ways."""
    services = [operations(load(apps, name)) for name in ("ingest", "context", "dialectic")]
    allinone = operations(load(apps, "allinone-auth"))
    assert set().union(*services) == allinone
    assert sum(len(s) for s in services) == len(allinone)  # no operation in two services


@pytest.mark.parametrize("name", list(TARGETS))
def test_fuzz_service_schema(apps: dict[str, Any], seeder: Callable[[], Seed], name: str) -> None:
    target = TARGETS[name]
    examples = max(1, round(EXAMPLES * target.budget))
    report: FuzzReport = fuzz(
        load(apps, target.app), seed=seeder, headers=target.headers, examples=examples
    )
    print(f"\n[fuzz] {name}: {report.summary()}")
    if os.environ.get("RAPPORT_FUZZ_VERBOSE"):
        print(report.breakdown())
    assert report.operations, "the schema has no operations"
    # Every operation really ran (a broken strategy would send nothing).
    assert report.requests >= len(report.operations) * min(examples, 5)
    assert not report.errors and not report.failures, report.failure_text()
    assert report.server_errors == 0
