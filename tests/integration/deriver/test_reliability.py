"""The deriver's failure policy and its exactly-once-in-effect guarantees, through real JetStream,
Postgres and pgvector: poison input, transient and permanent reasoner failures (against the
scripted OpenAI-compatible server), replayed events, a SIGKILL mid-derivation, the latency of a
lone message and NATS being down when the deriver starts.

Tests that need a deriver with other settings (an LLM, a crash-prone process, the ``faults``
servers) run it on a stream of their own: two derivers on one stream share its work.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import nats
import psycopg
import pytest
from psycopg import sql

from allinone.app import create_app
from libs.common.consumers import FailurePolicy, PoisonMessageError, settle
from libs.common.migrate import upgrade_to_head
from libs.common.reasoning.extractive import ExtractiveReasoner
from libs.common.reasoning.port import ExtractionRequest, TranscriptLine
from scripts import devinfra
from tests.conftest import AppFactory, InfraEndpoints, delete_stream, make_settings, read_stream
from tests.fakes.openai_server import RecordedRequest, Reply, ScriptedOpenAI, scripted_openai
from tests.integration.deriver._helpers import conclusions, say, wait_derived

pytestmark = pytest.mark.reliability  # part of make test-reliability (issue 8)

ROOT = Path(__file__).resolve().parents[3]
VECTOR_TABLES = ("vec_rapport_messages_384", "vec_rapport_conclusions_384")
LLM_OVERRIDES: dict[str, Any] = {
    "llm_max_retries": 1,  # two attempts per delivery
    "llm_timeout_s": 5.0,
    "deriver_max_deliver": 3,
    "deriver_backoff_base_s": 0.05,
    "deriver_backoff_max_s": 0.2,
}


# -- shared steps -----------------------------------------------------------------------------
@pytest.fixture
async def deriving(app_factory: AppFactory, clean_db: None) -> httpx.AsyncClient:
    """The all-in-one app with the deriver on the run's stream (extractive, local embedder)."""
    return await app_factory(deriver_enabled=True)


async def make_session(client: httpx.AsyncClient, ws: str, session: str, peers: Any) -> None:
    assert (await client.post("/v3/workspaces", json={"id": ws})).status_code in (200, 201)
    r = await client.post(f"/v3/workspaces/{ws}/sessions", json={"id": session, "peers": peers})
    assert r.status_code in (200, 201), r.text


async def publish(nats_url: str, subject: str, data: bytes) -> int:
    """Publish ``data`` straight to JetStream (a fresh Nats-Msg-Id); returns its stream seq."""
    nc = await nats.connect(nats_url)
    try:
        ack = await nc.jetstream().publish(
            subject, data, headers={"Nats-Msg-Id": f"test-{uuid.uuid4().hex}"}
        )
        return int(ack.seq)
    finally:
        await nc.close()


async def wait_consumed(
    nats_url: str,
    stream: str,
    seq: int,
    durables: tuple[str, ...] = ("deriver-representation", "deriver-summaries"),
    wait_s: float = 15.0,
) -> None:
    """Until every consumer in ``durables`` has delivered and settled stream message ``seq``."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            try:
                infos = [await js.consumer_info(stream, d) for d in durables]
            except nats.js.errors.NotFoundError:
                infos = []  # the deriver has not created its consumers yet
            if infos and all(
                i.delivered.stream_seq >= seq and not i.num_ack_pending and not i.num_pending
                for i in infos
            ):
                return
            assert asyncio.get_running_loop().time() < deadline, f"seq {seq} not consumed"
            await asyncio.sleep(0.05)
    finally:
        await nc.close()


async def rows(
    db: psycopg.AsyncConnection[Any], query: str | sql.Composed, *params: Any
) -> list[Any]:
    return await (await db.execute(query, params)).fetchall()


async def dead_letter_rows(db: psycopg.AsyncConnection[Any], subject: str) -> list[Any]:
    return await rows(
        db,
        "SELECT consumer, workspace_id, event_type, error, attempts, payload FROM dead_letters "
        "WHERE subject = %s ORDER BY consumer",
        subject,
    )


async def snapshot(db: psycopg.AsyncConnection[Any], ws: str) -> dict[str, Any]:
    """Everything derivation writes for a workspace (vectors by id)."""
    state: dict[str, Any] = {
        "conclusions": await rows(
            db,
            "SELECT id, observer_id, observed_id, content, source_ids FROM conclusions "
            "WHERE workspace_id = %s ORDER BY id",
            ws,
        ),
        "cards": await rows(
            db,
            "SELECT observer_id, observed_id, facts, updated_at FROM peer_cards "
            "WHERE workspace_id = %s ORDER BY 1, 2",
            ws,
        ),
        "status": await rows(
            db,
            "SELECT message_id, status, attempts, updated_at FROM derivation_status "
            "WHERE workspace_id = %s ORDER BY 1",
            ws,
        ),
    }
    for table in VECTOR_TABLES:
        state[table] = await rows(
            db,
            sql.SQL("SELECT id, payload FROM {} WHERE workspace_id = %s ORDER BY id").format(
                sql.Identifier(table)
            ),
            ws,
        )
    return state


# -- poison input -----------------------------------------------------------------------------
async def test_schema_invalid_event_is_dead_lettered_and_the_consumer_keeps_working(
    deriving: httpx.AsyncClient, infra: InfraEndpoints, ws_id: str, db: Any
) -> None:
    await make_session(deriving, ws_id, "s1", {"alice": {}})
    subject = f"{infra.derive_prefix}.message.created.{ws_id}.s1"
    poison = {
        "event_id": f"poison-{uuid.uuid4().hex[:8]}",
        "workspace_id": ws_id,
        "session_id": "s1",
        "message_id": ["not", "a", "string"],
    }
    seq = await publish(infra.nats_url, subject, json.dumps(poison).encode())
    await wait_consumed(infra.nats_url, infra.derive_stream, seq)

    r = await deriving.get(f"/v3/workspaces/{ws_id}/queue/dead_letters")
    assert r.status_code == 200, r.text
    letters = r.json()["items"]
    # Both consumers of message.created reject it, each on its own.
    assert sorted(d["consumer"] for d in letters) == ["representation", "summaries"]
    for d in letters:
        assert (d["event_type"], d["event_id"], d["session_id"], d["attempts"]) == (
            "message.created",
            poison["event_id"],
            "s1",
            1,
        )
        assert d["payload"] == poison
        assert d["error"].startswith("PoisonMessageError: undecodable message.created event")
        for missing in ("peer_id", "seq", "content", "created_at", "observe_me"):
            assert missing in d["error"], d["error"]
        assert "message_id" in d["error"] and "string" in d["error"]
    assert [r[0] for r in await dead_letter_rows(db, subject)] == ["representation", "summaries"]

    # The consumers keep working: the next real message is derived.
    [m] = await say(deriving, ws_id, "s1", ("alice", "I repair vintage radios"))
    status = await wait_derived(deriving, ws_id, expect_total=1)
    assert (status["completed_work_units"], status["dead_letter_work_units"]) == (1, 0)
    assert await conclusions(deriving, ws_id, "alice", "alice") == ["alice repairs vintage radios"]
    [(state,)] = await rows(
        db, "SELECT status FROM derivation_status WHERE message_id = %s", m["id"]
    )
    assert state == "done"


async def test_undecodable_bytes_are_dead_lettered_and_listed_under_their_workspace(
    deriving: httpx.AsyncClient, infra: InfraEndpoints, ws_id: str, db: Any
) -> None:
    await make_session(deriving, ws_id, "s1", {"alice": {}})
    subject = f"{infra.derive_prefix}.message.created.{ws_id}.s1"
    seq = await publish(infra.nats_url, subject, b"\x00\xff{not json at all \x00")
    await wait_consumed(infra.nats_url, infra.derive_stream, seq)

    letters = await dead_letter_rows(db, subject)
    assert [row[0] for row in letters] == ["representation", "summaries"]
    for consumer, workspace, event_type, error, attempts, payload in letters:
        assert (workspace, event_type, attempts) == (ws_id, "message.created", 1), consumer
        assert error.startswith("PoisonMessageError: undecodable message.created event")
        assert "Invalid JSON" in error
        # NUL characters (which Postgres cannot store) and invalid UTF-8 are replaced.
        assert payload == {"raw": "\ufffd\ufffd{not json at all \ufffd"}
    listed = (await deriving.get(f"/v3/workspaces/{ws_id}/queue/dead_letters")).json()["items"]
    assert sorted(d["consumer"] for d in listed) == ["representation", "summaries"]

    await say(deriving, ws_id, "s1", ("alice", "I collect antique maps"))
    status = await wait_derived(deriving, ws_id, expect_total=1)
    assert status["completed_work_units"] == 1
    assert await conclusions(deriving, ws_id, "alice", "alice") == ["alice collects antique maps"]


class _Raw:
    """A JetStream message as the failure policy sees it; records how it was settled."""

    def __init__(self, delivered: int) -> None:
        self.subject = "p.message.created.w.s"
        self.data = b"{}"
        self.metadata = SimpleNamespace(num_delivered=delivered)
        self.settled: list[tuple[str, float | None]] = []

    async def ack(self) -> None:
        self.settled.append(("ack", None))

    async def nak(self, delay: float | None = None) -> None:
        self.settled.append(("nak", delay))

    async def term(self) -> None:
        self.settled.append(("term", None))


async def test_an_event_whose_dead_letter_cannot_be_stored_comes_back_later() -> None:
    async def database_down(raw: Any, error: str, attempts: int) -> None:
        raise OSError("connection refused")

    raw = _Raw(delivered=3)
    policy = FailurePolicy(max_deliver=3, backoff_base_s=1.0, backoff_max_s=2.0)
    outcome = await settle(
        raw, PoisonMessageError("bad input"), consumer="c", policy=policy, dead_letter=database_down
    )
    # Never terminated unrecorded: negatively acknowledged with the capped back-off instead.
    assert outcome == "retry"
    [(how, delay)] = raw.settled
    assert how == "nak" and delay is not None and 1.6 <= delay <= 2.4


# -- reasoner failures (scripted LLM) ---------------------------------------------------------
def is_extraction(request: RecordedRequest) -> bool:
    return request.system_prompt.startswith("You maintain the memory of")


def brain(observations: list[str], facts: list[str]) -> Any:
    """A chat handler answering each task of the deriver with valid JSON."""

    def answer(request: RecordedRequest) -> Reply:
        if is_extraction(request):
            return Reply.json(
                {
                    "observations": [
                        {"content": c, "level": "explicit", "source_message_ids": []}
                        for c in observations
                    ]
                }
            )
        if "card about" in request.system_prompt:
            return Reply.json({"facts": facts})
        return Reply.json({"summary": "a summary"})

    return answer


@pytest.fixture(scope="module")
def llm_server() -> Iterator[ScriptedOpenAI]:
    with scripted_openai() as server:
        yield server


@pytest.fixture(scope="module")
async def llm_deriving(
    infra: InfraEndpoints, llm_server: ScriptedOpenAI
) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose deriver reasons with the scripted LLM, on a stream of its own."""
    run = uuid.uuid4().hex[:8]
    stream = f"RT_{run}"
    app = create_app(
        make_settings(
            infra,
            deriver_enabled=True,
            nats_stream=stream,
            nats_subject_prefix=f"p{run}",
            llm_base_url=llm_server.base_url,
            **LLM_OVERRIDES,
        )
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://rapport.test", timeout=30
        ) as client,
    ):
        yield client
    await delete_stream(infra.nats_url, stream)


@pytest.fixture
def llm(llm_server: ScriptedOpenAI) -> ScriptedOpenAI:
    llm_server.clear()
    llm_server.default = None  # unscripted chat requests get HTTP 500
    return llm_server


async def card(db: psycopg.AsyncConnection[Any], ws: str, observer: str, observed: str) -> Any:
    found = await rows(
        db,
        "SELECT facts FROM peer_cards WHERE workspace_id = %s AND observer_id = %s "
        "AND observed_id = %s",
        ws,
        observer,
        observed,
    )
    return found[0][0] if found else None


async def wait_dead(client: httpx.AsyncClient, ws: str, wait_s: float = 20.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        status: dict[str, Any] = (await client.get(f"/v3/workspaces/{ws}/queue/status")).json()
        if status["dead_letter_work_units"]:
            return status
        assert asyncio.get_running_loop().time() < deadline, f"never dead-lettered: {status}"
        await asyncio.sleep(0.1)


async def test_transient_llm_failures_are_retried_until_the_message_is_derived(
    llm_deriving: httpx.AsyncClient, llm: ScriptedOpenAI, ws_id: str, db: Any
) -> None:
    llm.enqueue(*[Reply.status(500, "overloaded")] * 3)
    llm.default = brain(["alice keeps bees on a city rooftop"], ["alice is a beekeeper"])
    await make_session(llm_deriving, ws_id, "s1", {"alice": {}})
    await say(llm_deriving, ws_id, "s1", ("alice", "My bees live on the roof"))

    status = await wait_derived(llm_deriving, ws_id, expect_total=1, wait_s=20)
    assert (status["completed_work_units"], status["dead_letter_work_units"]) == (1, 0)
    # Conclusions and card come from the LLM's JSON, not from the extractive reasoner.
    assert await conclusions(llm_deriving, ws_id, "alice", "alice") == [
        "alice keeps bees on a city rooftop"
    ]
    assert await card(db, ws_id, "alice", "alice") == ["alice is a beekeeper"]
    extraction = [r for r in llm.chat_requests if is_extraction(r)]
    # Three 500s, then success. One delivery makes at most two attempts (llm_max_retries=1),
    # so the fourth request came from a redelivery by the consumer after a back-off.
    assert len(extraction) == 4
    assert all("My bees live on the roof" in r.prompt_text for r in extraction)
    letters = (await llm_deriving.get(f"/v3/workspaces/{ws_id}/queue/dead_letters")).json()
    assert letters["items"] == []


async def test_persistent_llm_failure_is_dead_lettered_after_max_deliveries_then_retried(
    llm_deriving: httpx.AsyncClient, llm: ScriptedOpenAI, ws_id: str, db: Any
) -> None:
    await make_session(llm_deriving, ws_id, "s1", {"alice": {}})
    [m] = await say(llm_deriving, ws_id, "s1", ("alice", "I restore old pianos"))

    status = await wait_dead(llm_deriving, ws_id)
    assert {k: status[k] for k in status if k != "sessions"} == {
        "total_work_units": 1,
        "completed_work_units": 0,
        "in_progress_work_units": 0,
        "pending_work_units": 0,
        "dead_letter_work_units": 1,
    }
    # max_deliver=3 deliveries x 2 attempts each, then no more.
    assert len([r for r in llm.chat_requests if is_extraction(r)]) == 6
    [letter] = (await llm_deriving.get(f"/v3/workspaces/{ws_id}/queue/dead_letters")).json()[
        "items"
    ]
    assert (letter["consumer"], letter["attempts"], letter["retried_at"]) == (
        "representation",
        3,
        None,
    )
    assert letter["payload"]["message_id"] == m["id"]
    assert letter["error"].startswith("TransientError: extraction:")
    why = "failed after 2 attempt(s): HTTP 500: scripted_openai: no scripted reply left"
    assert why in letter["error"]
    assert await conclusions(llm_deriving, ws_id, "alice", "alice") == []

    # The provider recovers; the dead letter is retried through the API.
    llm.default = brain(["alice restores old pianos"], ["alice restores pianos"])
    r = await llm_deriving.post(f"/v3/workspaces/{ws_id}/queue/dead_letters/{letter['id']}/retry")
    assert r.status_code == 200, r.text
    assert r.json()["retried_at"] is not None
    status = await wait_derived(llm_deriving, ws_id, expect_total=1, wait_s=20)
    assert (status["completed_work_units"], status["dead_letter_work_units"]) == (1, 0)
    assert await conclusions(llm_deriving, ws_id, "alice", "alice") == ["alice restores old pianos"]
    assert await card(db, ws_id, "alice", "alice") == ["alice restores pianos"]
    url = f"/v3/workspaces/{ws_id}/queue/dead_letters"
    assert (await llm_deriving.get(url)).json()["items"] == []
    [retried] = (await llm_deriving.get(url, params={"include_retried": "true"})).json()["items"]
    assert retried["id"] == letter["id"] and retried["retried_at"] is not None


@pytest.mark.parametrize(
    ("reply", "requests", "why"),
    [
        pytest.param(
            Reply.status(
                400, "The model `gpt-4o-mini` does not exist", error_type="invalid_request_error"
            ),
            1,
            "HTTP 400: The model `gpt-4o-mini` does not exist",
            id="client-error",
        ),
        # Not a chat completion at all: retried by the adapter, then given up as permanent.
        pytest.param(
            Reply.garbage(), 2, "failed after 2 attempt(s): malformed response", id="garbage"
        ),
    ],
)
async def test_permanent_llm_failure_is_dead_lettered_without_redelivery(
    llm_deriving: httpx.AsyncClient,
    llm: ScriptedOpenAI,
    ws_id: str,
    reply: Reply,
    requests: int,
    why: str,
) -> None:
    llm.default = lambda _: reply
    await make_session(llm_deriving, ws_id, "s1", {"alice": {}})
    await say(llm_deriving, ws_id, "s1", ("alice", "I sail on weekends"))

    status = await wait_dead(llm_deriving, ws_id)
    assert (status["pending_work_units"], status["completed_work_units"]) == (0, 0)
    [letter] = (await llm_deriving.get(f"/v3/workspaces/{ws_id}/queue/dead_letters")).json()[
        "items"
    ]
    assert letter["attempts"] == 1
    assert letter["error"].startswith("PoisonMessageError: extraction:")
    assert why in letter["error"]
    # Permanent: the consumer did not redeliver it (one delivery's worth of requests).
    assert len([r for r in llm.chat_requests if is_extraction(r)]) == requests


# -- replays ----------------------------------------------------------------------------------
async def _derived_message(
    client: httpx.AsyncClient, infra: InfraEndpoints, ws: str
) -> tuple[str, dict[str, Any]]:
    """A message derived for three views; returns its event subject and payload."""
    everyone = {p: {"observe_others": True} for p in ("alice", "bob", "carol")}
    await make_session(client, ws, "s1", everyone)
    await say(client, ws, "s1", ("alice", "I grew up in Porto and I teach chemistry"))
    await wait_derived(client, ws, expect_total=1)
    [event] = await read_stream(
        infra,
        f"{infra.derive_prefix}.message.created.{ws}.>",
        expect=1,
        stream=infra.derive_stream,
    )
    return event.subject, event.data


async def test_replayed_event_of_a_done_message_changes_nothing(
    deriving: httpx.AsyncClient, infra: InfraEndpoints, ws_id: str, db: Any
) -> None:
    subject, payload = await _derived_message(deriving, infra, ws_id)
    before = await snapshot(db, ws_id)
    assert len(before["conclusions"]) == 6  # 2 statements x 3 views
    assert [len(before[t]) for t in VECTOR_TABLES] == [1, 6]

    seq = await publish(infra.nats_url, subject, json.dumps(payload).encode())
    await wait_consumed(infra.nats_url, infra.derive_stream, seq)
    # Not even the status row or a card's updated_at was touched.
    assert await snapshot(db, ws_id) == before


async def test_replay_after_a_crash_before_indexing_redoes_only_the_vectors(
    deriving: httpx.AsyncClient, infra: InfraEndpoints, ws_id: str, db: Any
) -> None:
    subject, payload = await _derived_message(deriving, infra, ws_id)
    before = await snapshot(db, ws_id)
    # As if the process died after committing the conclusions but before upserting vectors.
    await db.execute(
        "UPDATE derivation_status SET status = 'derived' WHERE workspace_id = %s", (ws_id,)
    )
    for table in VECTOR_TABLES:
        await db.execute(
            sql.SQL("DELETE FROM {} WHERE workspace_id = %s").format(sql.Identifier(table)),
            (ws_id,),
        )

    seq = await publish(infra.nats_url, subject, json.dumps(payload).encode())
    await wait_consumed(infra.nats_url, infra.derive_stream, seq)
    after = await snapshot(db, ws_id)
    for key in ("conclusions", "cards", *VECTOR_TABLES):
        assert after[key] == before[key], key
    assert [s[1] for s in after["status"]] == ["done"]


# -- latency ----------------------------------------------------------------------------------
async def test_lone_message_is_derived_within_ten_seconds(
    deriving: httpx.AsyncClient, ws_id: str, db: Any
) -> None:
    await make_session(deriving, ws_id, "s1", {"alice": {}})
    started = time.monotonic()
    [m] = await say(deriving, ws_id, "s1", ("alice", "I bake sourdough bread"))
    while True:
        found = await rows(
            db, "SELECT status FROM derivation_status WHERE message_id = %s", m["id"]
        )
        elapsed = time.monotonic() - started
        if found and found[0][0] == "done":
            break
        assert elapsed < 10, f"not derived after {elapsed:.1f}s"
        await asyncio.sleep(0.05)
    assert elapsed < 10
    assert await conclusions(deriving, ws_id, "alice", "alice") == ["alice bakes sourdough bread"]


# -- a deriver process killed mid-work --------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(
    infra: InfraEndpoints, stream: str, prefix: str, log: Path
) -> tuple[str, subprocess.Popen[bytes]]:
    """``python -m allinone`` (API, relay and deriver) on ``stream``; returns its URL."""
    port = _free_port()
    env = dict(os.environ)
    env.pop("RAPPORT_LLM_BASE_URL", None)
    env.update(
        RAPPORT_DATABASE_URL=infra.database_url,
        RAPPORT_NATS_URL=infra.nats_url,
        RAPPORT_NATS_STREAM=stream,
        RAPPORT_NATS_SUBJECT_PREFIX=prefix,
        RAPPORT_PORT=str(port),
        RAPPORT_LOG_LEVEL="WARNING",
        # Events the killed process held unacknowledged come back after this long.
        RAPPORT_DERIVER_ACK_WAIT_S="5",
        RAPPORT_OUTBOX_POLL_INTERVAL_S="0.2",
    )
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "allinone"], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    return f"http://127.0.0.1:{port}", proc


def _tail(log: Path) -> str:
    return log.read_text()[-3000:]


async def _start_server(
    infra: InfraEndpoints, stream: str, prefix: str, log: Path
) -> tuple[str, subprocess.Popen[bytes]]:
    """:func:`_spawn`, then wait until it reports healthy."""
    base, proc = _spawn(infra, stream, prefix, log)
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=base, timeout=1) as http:
        while True:
            try:
                if (await http.get("/health")).status_code == 200:
                    return base, proc
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                pytest.fail(f"server did not become healthy: {_tail(log)}")
            await asyncio.sleep(0.1)


FACTS = [
    ("planted", "olive trees", "Evora"), ("repaired", "a sailboat", "Lagos"),
    ("painted", "a mural", "Braga"), ("adopted", "a greyhound", "Coimbra"),
    ("built", "a greenhouse", "Sintra"), ("restored", "a motorbike", "Faro"),
    ("photographed", "a lighthouse", "Nazare"), ("sold", "a bakery", "Aveiro"),
    ("knitted", "a blanket", "Tomar"), ("carved", "a canoe", "Viseu"),
]  # fmt: skip
HOBBIES = ["chess", "fencing", "pottery", "archery", "rowing", "origami"]


def _script(n: int) -> list[tuple[str, str]]:
    """``n`` messages with distinct content, each a few first-person statements."""
    peers = ("alice", "bob", "carol")
    out = []
    for i in range(n):
        verb, thing, town = FACTS[i % len(FACTS)]
        hobby = HOBBIES[i % len(HOBBIES)]
        out.append(
            (
                peers[i % 3],
                f"I {verb} {thing} in {town} in {2000 + i}. "
                f"I practice {hobby} every Thursday since {1980 + i}.",
            )
        )
    return out


def _expected_conclusions(
    messages: list[dict[str, Any]], members: dict[str, dict[str, Any]]
) -> Counter[tuple[str, str, str, str]]:
    """(message id, observer, observed, content) of a clean run, from the extractive reasoner
    called as the deriver calls it (every member joined before the first message)."""
    reasoner = ExtractiveReasoner()
    expected: Counter[tuple[str, str, str, str]] = Counter()
    by_session: dict[str, list[dict[str, Any]]] = {}
    for m in messages:
        by_session.setdefault(m["session_id"], []).append(m)

    def line(m: dict[str, Any]) -> TranscriptLine:
        created = datetime.fromisoformat(m["created_at"].replace("Z", "+00:00"))
        return TranscriptLine(
            message_id=m["id"], speaker=m["peer_id"], content=m["content"], created_at=created
        )

    for session_messages in by_session.values():
        ordered = sorted(session_messages, key=lambda m: messages.index(m))
        for i, m in enumerate(ordered):
            views = [m["peer_id"]] + [
                p for p, cfg in members.items() if cfg.get("observe_others") and p != m["peer_id"]
            ]
            for observer in views:
                observations = reasoner.extract_sync(
                    ExtractionRequest(
                        observer=observer,
                        observed=m["peer_id"],
                        messages=[line(m)],
                        context=[line(c) for c in ordered[max(0, i - 6) : i]],
                    )
                )
                for o in observations:
                    expected[(m["id"], observer, m["peer_id"], o.content)] += 1
    return expected


async def test_sigkill_mid_derivation_then_restart_derives_every_message_once(
    infra: InfraEndpoints, ws_id: str, db: Any, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    stream, prefix = f"RT_{run}", f"p{run}"
    log = tmp_path / "server.log"
    members = {"alice": {}, "bob": {"observe_others": True}, "carol": {"observe_others": True}}
    script = _script(60)
    sessions = ["s0", "s1", "s2"]
    base, proc = await _start_server(infra, stream, prefix, log)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            for s in sessions:
                await make_session(http, ws_id, s, members)
            posted = await asyncio.gather(
                *(
                    http.post(
                        f"/v3/workspaces/{ws_id}/sessions/{s}/messages",
                        json={"messages": [{"peer_id": p, "content": c} for p, c in script[k::3]]},
                    )
                    for k, s in enumerate(sessions)
                )
            )
        messages = [m for r in posted for m in r.json()]
        assert len(messages) == 60
        # Kill it while part of the work is done and part is not.
        deadline = time.monotonic() + 60
        done_query = (
            "SELECT count(*) FROM derivation_status WHERE workspace_id = %s AND status = 'done'"
        )
        while True:
            [(done,)] = await rows(db, done_query, ws_id)
            if 0 < done < 60:
                break
            assert done == 0 and time.monotonic() < deadline, f"missed the window: {done}"
            await asyncio.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        [(done_at_kill,)] = await rows(db, done_query, ws_id)
        assert done_at_kill < 60

        base, proc = await _start_server(infra, stream, prefix, log)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            status = await wait_derived(http, ws_id, expect_total=60, wait_s=60)
        assert (status["completed_work_units"], status["dead_letter_work_units"]) == (60, 0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await delete_stream(infra.nats_url, stream)

    statuses = await rows(
        db,
        "SELECT status, count(*) FROM derivation_status WHERE workspace_id = %s GROUP BY 1",
        ws_id,
    )
    assert statuses == [("done", 60)]
    stored = await rows(
        db,
        "SELECT source_ids, observer_id, observed_id, content FROM conclusions "
        "WHERE workspace_id = %s",
        ws_id,
    )
    # Each conclusion cites exactly its one source message.
    got = Counter((*src, obs, obd, content) for src, obs, obd, content in stored)
    expected = _expected_conclusions(messages, members)
    assert sum(expected.values()) > 120  # every message says something
    assert got == expected  # nothing missing, nothing twice
    [(n_messages,)] = await rows(
        db, "SELECT count(*) FROM vec_rapport_messages_384 WHERE workspace_id = %s", ws_id
    )
    [(n_conclusion_vectors,)] = await rows(
        db, "SELECT count(*) FROM vec_rapport_conclusions_384 WHERE workspace_id = %s", ws_id
    )
    assert (n_messages, n_conclusion_vectors) == (60, len(stored))


# -- NATS down when the deriver starts (the ``faults`` servers) -------------------------------
PROFILE = "faults"


@pytest.fixture(scope="module")
def faults_infra() -> Iterator[InfraEndpoints]:
    ep = devinfra.ensure_up(PROFILE)
    run = uuid.uuid4().hex[:8]
    admin = ep.database_url.replace("postgresql+psycopg://", "postgresql://")
    name = f"rapport_faults_deriver_{run}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"{ep.database_url.rpartition('/')[0]}/{name}"
    upgrade_to_head(url)
    yield InfraEndpoints(
        database_url=url,
        admin_dsn=admin,
        nats_url=ep.nats_url,
        stream=f"RAPPORT_FAULTS_D_{run}",
        prefix=f"rfd{run}",
    )
    devinfra.start_nats(PROFILE)  # leave it up even if a test failed mid-outage
    asyncio.run(delete_stream(ep.nats_url, f"RAPPORT_FAULTS_D_{run}"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


async def test_deriver_started_while_nats_is_down_connects_when_it_returns(
    faults_infra: InfraEndpoints, ws_id: str
) -> None:
    devinfra.stop_nats(PROFILE)
    try:
        app = create_app(make_settings(faults_infra, deriver_enabled=True))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=30
            ) as client,
        ):
            r = await client.get("/health")
            assert r.status_code == 503
            assert r.json()["checks"]["database"] == "ok"
            assert r.json()["checks"]["deriver"].startswith("starting")
            # Writes are accepted meanwhile (they wait in the outbox).
            await make_session(client, ws_id, "s1", {"alice": {}})
            await say(client, ws_id, "s1", ("alice", "I grow tomatoes on my balcony"))
            await asyncio.sleep(1)
            assert (await client.get("/health")).status_code == 503
            status = (await client.get(f"/v3/workspaces/{ws_id}/queue/status")).json()
            assert (status["total_work_units"], status["pending_work_units"]) == (1, 1)

            devinfra.start_nats(PROFILE)
            deadline = asyncio.get_running_loop().time() + 30
            while (r := await client.get("/health")).status_code != 200:
                assert asyncio.get_running_loop().time() < deadline, r.json()
                await asyncio.sleep(0.2)
            assert r.json()["checks"]["deriver"] == "ok"
            status = await wait_derived(client, ws_id, expect_total=1)
            assert status["completed_work_units"] == 1
            assert await conclusions(client, ws_id, "alice", "alice") == [
                "alice grows tomatoes on alice's balcony"
            ]
    finally:
        devinfra.start_nats(PROFILE)
