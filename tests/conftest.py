"""Shared fixtures: real Postgres and real NATS JetStream from ``scripts.devinfra`` (test
profile: its own ports and data, so tests run beside ``make run``), a fresh database and a fresh
stream per test run, and the all-in-one app driven in-process over ASGI."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import nats
import psycopg
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from psycopg import sql

from allinone.app import AllInOneSettings, create_app
from libs.common.auth import create_jwt
from libs.common.broker import ensure_stream
from libs.common.migrate import upgrade_to_head
from libs.common.settings import NatsSettings
from scripts import devinfra

JWT_SECRET = "test-secret-" + "x" * 40
TABLES = (
    "workspaces",
    "outbox",
    "dead_letters",
)


@dataclass(frozen=True)
class InfraEndpoints:
    database_url: str
    admin_dsn: str
    nats_url: str
    stream: str
    prefix: str

    @property
    def dsn(self) -> str:
        """libpq form of ``database_url`` (for psycopg)."""
        return self.database_url.replace("postgresql+psycopg://", "postgresql://")

    @property
    def derive_stream(self) -> str:
        """Stream of deriver-enabled test apps: their consumers never see (and derive) the
        events of tests that assert on pending work."""
        return f"{self.stream}_D"

    @property
    def derive_prefix(self) -> str:
        return f"{self.prefix}d"

    def private_stream(self) -> tuple[str, str]:
        """A fresh (stream, subject prefix) for a server process of its own: a process killed
        with messages in flight must not hold back a durable consumer other tests share."""
        tag = uuid.uuid4().hex[:6]
        return f"{self.stream}_P{tag}", f"{self.prefix}p{tag}"


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def infra() -> Iterator[InfraEndpoints]:
    """Test-profile servers, one fresh database and one fresh stream name per run."""
    ep = devinfra.ensure_up("test")
    run = uuid.uuid4().hex[:8]
    db_name = f"rapport_test_{_worker()}_{run}"
    admin_dsn = ep.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name)))
    base, _, _ = ep.database_url.rpartition("/")
    database_url = f"{base}/{db_name}"
    upgrade_to_head(database_url)
    endpoints = InfraEndpoints(
        database_url=database_url,
        admin_dsn=admin_dsn,
        nats_url=ep.nats_url,
        stream=f"RAPPORT_TEST_{run}",
        prefix=f"rt{run}",
    )
    # One outbox relay publishes for every app on the database (the advisory-lock holder),
    # routing by subject; it only creates its own app's stream. Create the run's streams up
    # front so events reach them whichever app's relay leads (e.g. a deriver app's relay
    # when a selection such as ``-m reliability`` starts with deriver tests).
    asyncio.run(create_streams(endpoints))
    yield endpoints
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name))
        )
    asyncio.run(delete_streams(ep.nats_url, f"RAPPORT_TEST_{run}"))


async def create_streams(infra: InfraEndpoints) -> None:
    """The run's main stream and its deriver stream, as the apps configure them."""
    nc = await nats.connect(infra.nats_url)
    try:
        for stream, prefix in (
            (infra.stream, infra.prefix),
            (infra.derive_stream, infra.derive_prefix),
        ):
            settings = NatsSettings(
                nats_url=infra.nats_url, nats_stream=stream, nats_subject_prefix=prefix
            )
            await ensure_stream(nc.jetstream(), settings)
    finally:
        await nc.close()


async def delete_streams(nats_url: str, name_prefix: str) -> None:
    """Drop every stream of a run (main, deriver and private ones)."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(name_prefix):
                await js.delete_stream(info.config.name)
    finally:
        await nc.close()


async def delete_stream(nats_url: str, stream: str) -> None:
    """Drop a run's stream so repeated runs do not fill the test server's disk."""
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().delete_stream(stream)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()


def make_settings(infra: InfraEndpoints, **overrides: Any) -> AllInOneSettings:
    values: dict[str, Any] = {
        "database_url": infra.database_url,
        "nats_url": infra.nats_url,
        "nats_stream": infra.stream,
        "nats_subject_prefix": infra.prefix,
        "outbox_poll_interval_s": 0.2,
        "outbox_retry_max_s": 1.0,
        "log_json": False,
        "log_level": "WARNING",
        "db_pool_size": 5,
        # Ingest tests assert on work left pending; deriver tests switch it on explicitly.
        "deriver_enabled": False,
    }
    if overrides.get("deriver_enabled") and "nats_stream" not in overrides:
        values.update(nats_stream=infra.derive_stream, nats_subject_prefix=infra.derive_prefix)
    values.update(overrides)
    return AllInOneSettings(**values)


@pytest.fixture(scope="session")
def settings(infra: InfraEndpoints) -> AllInOneSettings:
    return make_settings(infra)


AppFactory = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture(scope="session")
async def app_factory(infra: InfraEndpoints) -> AsyncIterator[AppFactory]:
    """Build (and keep running until the session ends) an app with setting overrides; returns
    an httpx client bound to it over ASGI."""
    stack = AsyncExitStack()
    cache: dict[str, httpx.AsyncClient] = {}

    async def factory(**overrides: Any) -> httpx.AsyncClient:
        key = repr(sorted(overrides.items()))
        if key not in cache:
            app = create_app(make_settings(infra, **overrides))
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://rapport.test", timeout=30
            )
            await stack.enter_async_context(client)
            cache[key] = client
        return cache[key]

    yield factory
    await stack.aclose()


@pytest.fixture
async def clean_db(infra: InfraEndpoints) -> None:
    # A deriver of an earlier test may still be finishing work: its transactions can deadlock
    # with the TRUNCATE, which then simply retries.
    for attempt in range(20):
        try:
            async with await psycopg.AsyncConnection.connect(infra.dsn, autocommit=True) as conn:
                await conn.execute("SET lock_timeout = '5s'")
                await conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
            return
        except (psycopg.errors.DeadlockDetected, psycopg.errors.LockNotAvailable):
            await asyncio.sleep(0.2 * (attempt + 1))
    raise RuntimeError("could not truncate the test database")


@pytest.fixture
async def client(app_factory: AppFactory, clean_db: None) -> httpx.AsyncClient:
    """Client of the all-in-one app with auth off (every request is admin)."""
    return await app_factory()


@pytest.fixture
async def auth_client(app_factory: AppFactory, clean_db: None) -> httpx.AsyncClient:
    """Client of the all-in-one app with JWT auth on (secret ``JWT_SECRET``)."""
    return await app_factory(auth_enabled=True, jwt_secret=JWT_SECRET)


def bearer(**claims: Any) -> dict[str, str]:
    """Authorization header for a key with the given scope (see ``create_jwt``)."""
    return {"Authorization": f"Bearer {create_jwt(JWT_SECRET, **claims)}"}


@pytest.fixture
def ws_id() -> str:
    """A workspace id unique to the test (streams are shared by the run)."""
    return f"ws-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def db(infra: InfraEndpoints) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """Direct connection to the test database, for assertions on stored rows."""
    async with await psycopg.AsyncConnection.connect(infra.dsn, autocommit=True) as conn:
        yield conn


@dataclass(frozen=True)
class StreamEvent:
    subject: str
    msg_id: str
    data: dict[str, Any]
    seq: int


async def read_stream(
    infra: InfraEndpoints,
    subject_filter: str,
    *,
    expect: int | None = None,
    wait_s: float = 15.0,
    stream: str | None = None,
) -> list[StreamEvent]:
    """Every event on the run's stream matching ``subject_filter`` (waits until ``expect`` are
    there, or ``wait_s`` seconds), in stream order."""
    import json

    nc = await nats.connect(infra.nats_url)
    try:
        js = nc.jetstream()
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            events: list[StreamEvent] = []
            try:
                sub = await js.pull_subscribe(
                    subject_filter,
                    stream=stream or infra.stream,
                    config=ConsumerConfig(
                        deliver_policy=DeliverPolicy.ALL,
                        ack_policy=AckPolicy.NONE,
                        inactive_threshold=5.0,
                    ),
                )
                while True:
                    try:
                        batch = await sub.fetch(500, timeout=0.5)
                    except (nats.errors.TimeoutError, TimeoutError):
                        break
                    for m in batch:
                        assert m.metadata is not None
                        events.append(
                            StreamEvent(
                                subject=m.subject,
                                msg_id=(m.headers or {}).get("Nats-Msg-Id", ""),
                                data=json.loads(m.data),
                                seq=m.metadata.sequence.stream,
                            )
                        )
                    if len(batch) == 0:
                        break
                await sub.unsubscribe()
            except nats.js.errors.NotFoundError:
                pass  # stream not created yet (nothing published)
            if expect is None or len(events) >= expect:
                return events
            if asyncio.get_running_loop().time() > deadline:
                return events
            await asyncio.sleep(0.3)
    finally:
        await nc.close()
