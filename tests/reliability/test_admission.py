"""Admission control and database saturation, in process and deterministic.

* the slot pool itself (first come first served hand-over, full queue, bounded wait, a
  cancelled waiter leaks nothing);
* the shared HTTP composition (``configure_http``) on a small app whose handlers block until the
  test lets them go: past the budget a request is answered 503 with ``Retry-After`` at once,
  reads and ``/health`` / ``/metrics`` still answer, the shed counters count;
* the real all-in-one app against real Postgres: a message batch blocked on a session row lock
  holds the only write slot, the next batch is shed and stores nothing; a saturated database
  pool and a database at its connection limit answer 503 with ``Retry-After``, never 500.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.admission import AdmissionControlMiddleware, Shed, SlotPool, classify
from libs.common.broker import StreamLayout
from libs.common.db import create_engine, create_session_factory
from libs.common.errors import OverloadedError
from libs.common.http import configure_http, ops_router
from libs.common.outbox import OutboxBackpressure
from libs.common.settings import AuthSettings, LimitsSettings, PostgresSettings
from services.ingest.schemas import MessageCreate
from services.ingest.service import IngestService
from tests.conftest import AppFactory, InfraEndpoints

pytestmark = pytest.mark.timeout(60)


def shed_count(kind: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "rapport_http_requests_shed_total", {"request_class": kind, "reason": reason}
    )
    return value or 0.0


# -- the slot pool ------------------------------------------------------------------------------
async def test_slot_pool_hands_slots_over_in_arrival_order() -> None:
    pool = SlotPool(1, max_queued=2, timeout_s=5, name="test")
    await pool.acquire()
    order: list[int] = []

    async def waiter(n: int) -> None:
        await pool.acquire()
        order.append(n)

    first = asyncio.create_task(waiter(1))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(waiter(2))
    await asyncio.sleep(0.01)
    assert pool.queued == 2
    with pytest.raises(Shed) as refused:
        await pool.acquire()  # two waiting already: no room
    assert refused.value.reason == "queue_full"

    pool.release()
    await first
    assert order == [1] and pool.in_use == 1 and pool.queued == 1
    pool.release()
    await second
    assert order == [1, 2] and pool.in_use == 1 and pool.queued == 0
    pool.release()
    assert pool.in_use == 0


async def test_slot_pool_bounded_wait_and_cancelled_waiters_leak_nothing() -> None:
    pool = SlotPool(1, max_queued=5, timeout_s=0.2, name="test")
    await pool.acquire()
    started = time.monotonic()
    with pytest.raises(Shed) as refused:
        await pool.acquire()
    waited = time.monotonic() - started
    assert refused.value.reason == "queue_timeout"
    assert 0.15 <= waited < 1.0
    assert pool.queued == 0

    cancelled = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0.01)
    assert pool.queued == 1
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert pool.queued == 0
    pool.release()  # nobody waits: the slot is free again
    assert pool.in_use == 0
    await pool.acquire()
    assert pool.in_use == 1


async def test_zero_queue_refuses_at_once() -> None:
    pool = SlotPool(2, max_queued=0, timeout_s=5, name="test")
    await pool.acquire()
    await pool.acquire()
    started = time.monotonic()
    with pytest.raises(Shed):
        await pool.acquire()
    assert time.monotonic() - started < 0.05


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/health", "exempt"),
        ("GET", "/metrics", "exempt"),
        ("GET", "/console/w/w/peers/p", "exempt"),
        ("POST", "/console/w/w/peers/p/chat", "exempt"),
        ("GET", "/openapi.json", "exempt"),
        ("GET", "/v3x/workspaces", "exempt"),
        ("POST", "/v3/workspaces/w/sessions/s/messages", "write"),
        ("POST", "/v3/workspaces/w/sessions/s/messages/upload", "write"),
        ("POST", "/v3/workspaces", "write"),
        ("PUT", "/v3/workspaces/w/peers/p", "write"),
        ("DELETE", "/v3/workspaces/w", "write"),
        ("POST", "/v3/workspaces/w/sessions/s/messages/list", "read"),
        ("POST", "/v3/workspaces/w/peers/p/chat", "read"),
        ("POST", "/v3/workspaces/w/search", "read"),
        ("POST", "/v3/workspaces/w/peers/p/representation", "read"),
        ("POST", "/v3/workspaces/w/conclusions/query", "read"),
        ("POST", "/v3/keys", "read"),
        ("GET", "/v3/workspaces/w/sessions/s/context", "read"),
    ],
)
def test_request_classes(method: str, path: str, expected: str) -> None:
    assert classify(method, path) == expected


# -- the shared HTTP composition on a small app -------------------------------------------------
class Gate:
    """Handlers park here until the test opens the gate."""

    def __init__(self) -> None:
        self.entered = 0
        self.opened = asyncio.Event()
        self._arrivals = asyncio.Condition()

    async def park(self) -> None:
        async with self._arrivals:
            self.entered += 1
            self._arrivals.notify_all()
        await self.opened.wait()

    async def until_entered(self, n: int) -> None:
        async with asyncio.timeout(5), self._arrivals:
            await self._arrivals.wait_for(lambda: self.entered >= n)


def small_app(gate: Gate, **limits: Any) -> FastAPI:
    app = FastAPI()
    configure_http(app, AuthSettings(), LimitsSettings(**limits))

    @app.post("/v3/things")
    async def write_thing() -> dict[str, str]:
        await gate.park()
        return {"status": "stored"}

    @app.get("/v3/things")
    async def read_things() -> dict[str, str]:
        return {"status": "read"}

    @app.get("/v3/slow")
    async def read_slowly() -> dict[str, str]:
        await gate.park()
        return {"status": "read"}

    async def readiness() -> dict[str, Any]:
        return {"database": "ok"}

    app.include_router(ops_router(readiness))
    return app


@asynccontextmanager
async def client_of(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=10) as c:
        yield c


async def test_full_write_budget_sheds_with_503_and_retry_after_while_reads_and_health_answer() -> (
    None
):
    gate = Gate()
    app = small_app(
        gate,
        max_inflight_writes=1,
        max_queued_writes=1,
        admission_queue_timeout_s=0.3,
        overload_retry_after_s=2,
    )
    before_full = shed_count("write", "queue_full")
    before_timeout = shed_count("write", "queue_timeout")
    async with client_of(app) as c:
        holder = asyncio.create_task(c.post("/v3/things"))
        await gate.until_entered(1)
        queued = asyncio.create_task(c.post("/v3/things"))
        await asyncio.sleep(0.05)  # now waiting in the queue

        started = time.monotonic()
        refused = await c.post("/v3/things")
        assert time.monotonic() - started < 0.25  # refused at once, not after a wait
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "2"
        detail = refused.json()["detail"]
        assert "overloaded" in detail and "Retry-After" in detail
        assert "every write slot (1) is busy" in detail

        # Other budgets and the ops routes are untouched by the write burst.
        assert (await c.get("/v3/things")).json() == {"status": "read"}
        assert (await c.get("/health")).status_code == 200
        metrics = await c.get("/metrics")
        assert metrics.status_code == 200
        assert "rapport_http_requests_shed_total" in metrics.text

        timed_out = await queued  # nobody freed the slot within 0.3 s
        assert timed_out.status_code == 503
        assert timed_out.headers["retry-after"] == "2"
        assert "within 0.3 s" in timed_out.json()["detail"]

        gate.opened.set()
        assert (await holder).status_code == 200
        assert (await c.post("/v3/things")).status_code == 200  # the slot came back
    assert shed_count("write", "queue_full") - before_full == 1
    assert shed_count("write", "queue_timeout") - before_timeout == 1


async def test_a_queued_request_gets_the_freed_slot() -> None:
    gate = Gate()
    app = small_app(gate, max_inflight_writes=1, max_queued_writes=4, admission_queue_timeout_s=5)
    async with client_of(app) as c:
        holder = asyncio.create_task(c.post("/v3/things"))
        await gate.until_entered(1)
        queued = asyncio.create_task(c.post("/v3/things"))
        await asyncio.sleep(0.05)
        assert gate.entered == 1  # still waiting for the slot, not running
        gate.opened.set()
        assert (await holder).status_code == 200
        assert (await queued).status_code == 200
        assert gate.entered == 2


async def test_health_and_metrics_never_shed_when_reads_are_full() -> None:
    gate = Gate()
    app = small_app(gate, max_inflight_reads=2, max_queued_reads=0)
    before = shed_count("read", "queue_full")
    async with client_of(app) as c:
        slow = [asyncio.create_task(c.get("/v3/slow")) for _ in range(2)]
        await gate.until_entered(2)
        refused = await c.get("/v3/things")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        for _ in range(5):
            assert (await c.get("/health")).status_code == 200
            assert (await c.get("/metrics")).status_code == 200
        # Writes have their own budget.
        gate.opened.set()
        assert [r.status_code for r in await asyncio.gather(*slow)] == [200, 200]
        assert (await c.post("/v3/things")).status_code == 200
    assert shed_count("read", "queue_full") - before == 1


async def test_admission_can_be_switched_off() -> None:
    gate = Gate()
    app = small_app(gate, admission_enabled=False, max_inflight_writes=1, max_queued_writes=0)
    async with client_of(app) as c:
        held = [asyncio.create_task(c.post("/v3/things")) for _ in range(3)]
        await gate.until_entered(3)  # all three run at once
        gate.opened.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200, 200]


# -- the real all-in-one app against real Postgres ----------------------------------------------
async def make_session(c: httpx.AsyncClient, ws: str, session: str) -> None:
    assert (await c.post("/v3/workspaces", json={"id": ws})).status_code in (200, 201)
    r = await c.post(f"/v3/workspaces/{ws}/sessions", json={"id": session})
    assert r.status_code in (200, 201), r.text


def batch(text: str) -> dict[str, Any]:
    return {"messages": [{"peer_id": "alice", "content": text}]}


@asynccontextmanager
async def session_row_locked(
    infra: InfraEndpoints, ws: str, session: str
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """Hold the session row lock (as a concurrent writer would) until the block ends."""
    async with await psycopg.AsyncConnection.connect(infra.dsn) as conn:
        cur = await conn.execute(
            "SELECT 1 FROM sessions WHERE workspace_id = %s AND id = %s FOR UPDATE", (ws, session)
        )
        assert await cur.fetchone() is not None
        yield conn
        await conn.rollback()


async def wait_for_lock_waiters(infra: InfraEndpoints, n: int) -> None:
    """Until ``n`` backends of the test database wait on a lock."""
    async with await psycopg.AsyncConnection.connect(infra.dsn, autocommit=True) as conn:
        async with asyncio.timeout(10):
            while True:
                cur = await conn.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                row = await cur.fetchone()
                if row is not None and row[0] >= n:
                    return
                await asyncio.sleep(0.02)


async def count_messages(db: psycopg.AsyncConnection[Any], ws: str) -> int:
    cur = await db.execute("SELECT count(*) FROM messages WHERE workspace_id = %s", (ws,))
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_message_batch_is_shed_while_the_write_slot_is_held(
    app_factory: AppFactory,
    infra: InfraEndpoints,
    db: psycopg.AsyncConnection[Any],
    ws_id: str,
) -> None:
    c = await app_factory(max_inflight_writes=1, max_queued_writes=0)
    await make_session(c, ws_id, "busy")
    await make_session(c, ws_id, "other")
    async with session_row_locked(infra, ws_id, "busy"):
        blocked = asyncio.create_task(
            c.post(f"/v3/workspaces/{ws_id}/sessions/busy/messages", json=batch("first"))
        )
        await wait_for_lock_waiters(infra, 1)

        shed = await c.post(f"/v3/workspaces/{ws_id}/sessions/other/messages", json=batch("no"))
        assert shed.status_code == 503
        assert shed.headers["retry-after"] == "1"
        assert "overloaded" in shed.json()["detail"]

        # Reads have their own budget: a message list (a read POST) and health still answer.
        listed = await c.post(f"/v3/workspaces/{ws_id}/sessions/other/messages/list", json={})
        assert listed.status_code == 200 and listed.json()["items"] == []
        assert (await c.get("/health")).status_code == 200
        assert not blocked.done()
    stored = await blocked
    assert stored.status_code == 201, stored.text
    # The shed batch stored nothing; the admitted one is there.
    assert await count_messages(db, ws_id) == 1
    again = await c.post(f"/v3/workspaces/{ws_id}/sessions/other/messages", json=batch("yes"))
    assert again.status_code == 201
    assert await count_messages(db, ws_id) == 2


async def test_database_pool_exhaustion_is_503_with_retry_after(
    app_factory: AppFactory,
    infra: InfraEndpoints,
    db: psycopg.AsyncConnection[Any],
    ws_id: str,
) -> None:
    c = await app_factory(
        db_pool_size=1, db_max_overflow=0, db_pool_timeout_s=0.5, max_inflight_writes=8
    )
    await make_session(c, ws_id, "busy")
    await make_session(c, ws_id, "other")
    async with session_row_locked(infra, ws_id, "busy"):
        # Holds the pool's only connection while it waits for the row lock.
        blocked = asyncio.create_task(
            c.post(f"/v3/workspaces/{ws_id}/sessions/busy/messages", json=batch("first"))
        )
        await wait_for_lock_waiters(infra, 1)
        started = time.monotonic()
        starved = await c.post(f"/v3/workspaces/{ws_id}/sessions/other/messages", json=batch("x"))
        waited = time.monotonic() - started
        assert starved.status_code == 503, starved.text
        assert starved.headers["retry-after"] == "1"
        assert "no database connection became free" in starved.json()["detail"]
        assert waited < 5  # the pool timeout (0.5 s), not a hung request
    assert (await blocked).status_code == 201
    assert await count_messages(db, ws_id) == 1


async def test_statement_timeout_is_503_with_retry_after(
    app_factory: AppFactory,
    infra: InfraEndpoints,
    db: psycopg.AsyncConnection[Any],
    ws_id: str,
) -> None:
    c = await app_factory(db_statement_timeout_ms=300)
    await make_session(c, ws_id, "busy")
    async with session_row_locked(infra, ws_id, "busy"):
        started = time.monotonic()
        r = await c.post(f"/v3/workspaces/{ws_id}/sessions/busy/messages", json=batch("late"))
        assert time.monotonic() - started < 5
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1"
        assert "statement timeout" in r.json()["detail"]
    assert await count_messages(db, ws_id) == 0


async def test_database_at_its_connection_limit_is_503_with_retry_after(
    app_factory: AppFactory, infra: InfraEndpoints
) -> None:
    role = f"rapport_full_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(infra.admin_dsn, autocommit=True) as admin:
        await admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT 0").format(sql.Identifier(role))
        )
        try:
            base, _, rest = infra.database_url.partition("://")
            _, _, host_and_db = rest.partition("@")
            url = f"{base}://{role}@{host_and_db}"
            c = await app_factory(database_url=url, outbox_relay_enabled=False)
            r = await c.post("/v3/workspaces", json={"id": "full"})
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "1"
            assert "too many connections" in r.json()["detail"]
            r = await c.get("/v3/workspaces/full/queue/status")
            assert r.status_code == 503
            assert r.headers["retry-after"] == "1"
        finally:
            await admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


# -- outbox back-pressure -----------------------------------------------------------------------
@asynccontextmanager
async def uncommitted_backlog(infra: InfraEndpoints, rows: int) -> AsyncIterator[AsyncSession]:
    """A transaction holding ``rows`` unpublished outbox rows that no relay can see (never
    committed), rolled back at the end."""
    engine = create_engine(PostgresSettings(database_url=infra.database_url))
    try:
        async with create_session_factory(engine)() as db, db.begin():
            await db.execute(
                text(
                    "INSERT INTO outbox (event_id, event_type, subject, ordering_key, payload) "
                    "SELECT 'bp-' || gen_random_uuid(), 'message.created', 'nowhere', 'k', "
                    "'{}'::jsonb FROM generate_series(1, :n)"
                ),
                {"n": rows},
            )
            try:
                yield db
            finally:
                await db.rollback()
    finally:
        await engine.dispose()


async def test_outbox_backpressure_refuses_past_its_bound(infra: InfraEndpoints) -> None:
    now = [0.0]
    async with uncommitted_backlog(infra, 5) as db:
        under = OutboxBackpressure(5, clock=lambda: now[0])
        await under.check(db)  # 5 waiting, bound 5: accepted
        assert under.backlog == 5

        over = OutboxBackpressure(4, retry_after_s=3, clock=lambda: now[0])
        with pytest.raises(OverloadedError) as refused:
            await over.check(db)
        assert refused.value.status_code == 503
        assert refused.value.headers == {"Retry-After": "3"}
        assert "more than 4 events wait to be published" in refused.value.detail

        # The count is cached for refresh_s: publishing catches up, the next check (1 s later)
        # sees it.
        await db.execute(text("UPDATE outbox SET published_at = now() WHERE event_id LIKE 'bp-%'"))
        with pytest.raises(OverloadedError):
            await over.check(db)
        now[0] += 1.0
        await over.check(db)
        assert over.backlog == 0

        off = OutboxBackpressure(0)
        await off.check(db)  # 0 switches it off


async def test_message_batch_refused_while_the_outbox_backlog_is_over_its_bound(
    client: httpx.AsyncClient, infra: InfraEndpoints, ws_id: str
) -> None:
    await make_session(client, ws_id, "s")
    async with uncommitted_backlog(infra, 3) as db:
        svc = IngestService(
            db,
            layout=StreamLayout(stream="unused", prefix="unused"),
            limits=LimitsSettings(),
            backpressure=OutboxBackpressure(2),
        )
        with pytest.raises(OverloadedError):
            await svc.create_messages(ws_id, "s", [MessageCreate(content="hi", peer_id="alice")])
        cur = await db.execute(
            text("SELECT count(*) FROM messages WHERE workspace_id = :w"), {"w": ws_id}
        )
        assert cur.scalar_one() == 0


def test_every_http_service_applies_admission_control_outermost() -> None:
    from allinone.app import create_app as allinone_app
    from services.context.app import create_app as context_app
    from services.dialectic.app import create_app as dialectic_app
    from services.ingest.app import create_app as ingest_app

    for factory in (allinone_app, ingest_app, context_app, dialectic_app):
        app = factory()
        # Starlette builds the stack from user_middleware in order: index 0 is outermost.
        assert app.user_middleware[0].cls is AdmissionControlMiddleware, factory.__module__
