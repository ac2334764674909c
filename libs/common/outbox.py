"""Transactional outbox: events are written in the same transaction as the change they describe,
and a relay publishes them to JetStream after commit.

Guarantees:

* nothing committed is lost — a row stays until JetStream acknowledged it;
* nothing is published that was not committed — the relay only sees committed rows;
* duplicates are harmless — ``Nats-Msg-Id`` = ``event_id`` lets JetStream drop replays inside its
  duplicate window, and consumers are idempotent beyond it;
* per-ordering-key order — one relay is active at a time (a Postgres advisory lock elects it),
  rows with the same ordering key are published strictly in id order, and a key's chain stops at
  its first failed publish so a later event can never overtake an earlier one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from nats.aio.client import Client as NatsClient
from nats.js.client import JetStreamContext
from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.broker import (
    EVENT_TYPE_HEADER,
    NATS_MSG_ID,
    StreamLayout,
    connect_nats,
    ensure_stream,
)
from libs.common.errors import OverloadedError
from libs.common.events import Event
from libs.common.settings import NatsSettings, OutboxSettings
from libs.common.telemetry import current_trace_headers

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "rapport_outbox"
#: Advisory lock key held by the active relay (any constant; shared by all relays).
RELAY_LOCK_KEY = 0x5241_5050  # "RAPP"

OUTBOX_PUBLISHED = Counter("rapport_outbox_published_total", "Outbox events published")
OUTBOX_PUBLISH_FAILURES = Counter(
    "rapport_outbox_publish_failures_total", "Outbox publish attempts that failed"
)
OUTBOX_BACKLOG = Gauge("rapport_outbox_backlog", "Unpublished outbox rows seen by the relay")
OUTBOX_REFUSED = Counter(
    "rapport_outbox_backpressure_refused_total",
    "Message batches refused with 503 because the outbox backlog was over its bound",
)
OUTBOX_LEADER = Gauge("rapport_outbox_relay_leader", "1 when this process runs the active relay")

_INSERT = text(
    """
    INSERT INTO outbox (event_id, event_type, subject, ordering_key, payload, headers)
    SELECT e.event_id, e.event_type, e.subject, e.ordering_key, e.payload, e.headers
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS e(
        event_id text, event_type text, subject text, ordering_key text,
        payload jsonb, headers jsonb, ord int)
    ORDER BY e.ord
    """
)


async def enqueue(session: AsyncSession, layout: StreamLayout, events: Sequence[Event]) -> None:
    """Add ``events`` to the outbox inside the caller's transaction, in the given order.

    One statement regardless of the number of events; the relay is woken at commit time through
    ``NOTIFY`` (delivered only if the transaction commits).
    """
    if not events:
        return
    trace = current_trace_headers()
    rows = [
        {
            "ord": i,
            "event_id": ev.event_id,
            "event_type": ev.EVENT_TYPE,
            "subject": layout.subject_for(ev),
            "ordering_key": ev.ordering_key(),
            # Serialised by pydantic's JSON encoder straight to bytes (no intermediate dict).
            "payload": orjson.Fragment(ev.model_dump_json()),
            "headers": trace,
        }
        for i, ev in enumerate(events)
    ]
    await session.execute(_INSERT, {"rows": orjson.dumps(rows).decode()})
    await session.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))


_BACKLOG_AT_MOST = text(
    "SELECT count(*) FROM (SELECT 1 FROM outbox WHERE published_at IS NULL LIMIT :cap) AS t"
)


class OutboxBackpressure:
    """Refuse new events while more than ``max_backlog`` outbox rows wait to be published.

    The outbox grows only while the relay cannot publish (NATS down or slower than ingest);
    a bound turns a long outage into ``503`` + ``Retry-After`` for new message batches before
    the table fills the database disk. Reads and every other route keep working. The count is
    exact but capped (an index-only scan of at most ``max_backlog + 1`` entries of the partial
    index on unpublished rows), taken at most once per ``refresh_s`` per process, inside the
    request's own transaction. ``max_backlog = 0`` switches it off.

    The deriver's lag (events published but not yet derived) is deliberately *not* a reason to
    refuse: messages are the source of truth and readable at once; derivation catches up.
    """

    def __init__(
        self,
        max_backlog: int,
        *,
        retry_after_s: int = 1,
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_backlog = max_backlog
        self.retry_after_s = retry_after_s
        self.refresh_s = refresh_s
        self._clock = clock
        self._checked_at = float("-inf")
        self.backlog = 0

    async def check(self, session: AsyncSession) -> None:
        """Raise :class:`OverloadedError` when the backlog is over the bound."""
        if self.max_backlog <= 0:
            return
        now = self._clock()
        if now - self._checked_at >= self.refresh_s:
            self._checked_at = now  # before the await: concurrent requests use the cached value
            result = await session.execute(_BACKLOG_AT_MOST, {"cap": self.max_backlog + 1})
            self.backlog = int(result.scalar_one())
        if self.backlog > self.max_backlog:
            OUTBOX_REFUSED.inc()
            raise OverloadedError(
                f"Server overloaded: more than {self.max_backlog} events wait to be published "
                "to the event stream (is NATS reachable?); nothing was done, retry later "
                "(Retry-After)",
                headers={"Retry-After": str(self.retry_after_s)},
            )


@dataclass
class _Row:
    id: int
    event_id: str
    event_type: str
    subject: str
    ordering_key: str
    payload: Any
    headers: dict[str, str]


@dataclass
class RelayStats:
    """Counters of one relay instance (exposed for tests and health)."""

    published: int = 0
    failures: int = 0
    rounds: int = 0
    leader: bool = False
    last_error: str | None = None
    backlog: int = 0


def _pg_conninfo(database_url: str) -> str:
    """psycopg conninfo from a SQLAlchemy URL."""
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


class OutboxRelay:
    """Publishes committed outbox rows to JetStream. Start with :meth:`start`, stop with
    :meth:`stop`. Several processes may run one; only the advisory-lock holder publishes."""

    def __init__(
        self,
        *,
        database_url: str,
        nats_settings: NatsSettings,
        settings: OutboxSettings,
        publish_timeout_s: float = 5.0,
    ) -> None:
        self._conninfo = _pg_conninfo(database_url)
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._nats_settings = nats_settings
        self._settings = settings
        self._timeout = publish_timeout_s
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._stream_ready = False
        self._last_cleanup = 0.0
        self.stats = RelayStats()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
            self._nc = None
            self._js = None

    async def _jetstream(self) -> JetStreamContext:
        """Connect on first use; the client then reconnects by itself through outages."""
        if self._js is None:
            self._nc = await connect_nats(self._nats_settings, name="rapport-outbox-relay")
            self._js = self._nc.jetstream(timeout=self._timeout)
        return self._js

    # -- main loop -------------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True
                ) as conn:
                    await self._lead(conn)
                    backoff = 0.1
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                self._note_error(f"database: {exc}")
            self._set_leader(False)
            await self._sleep(backoff)
            backoff = min(backoff * 2, self._settings.outbox_retry_max_s)

    async def _lead(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Hold the leader lock on ``conn`` and relay until the connection fails."""
        while not self._stopping.is_set():
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (RELAY_LOCK_KEY,))
            row = await cur.fetchone()
            if row and row[0]:
                break
            await self._sleep(self._settings.outbox_poll_interval_s)
        self._set_leader(True)
        await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        failure_backoff = 0.05
        while not self._stopping.is_set():
            self.stats.rounds += 1
            rows = await self._fetch(conn)
            self.stats.backlog = len(rows)
            OUTBOX_BACKLOG.set(len(rows))
            if not rows:
                await self._cleanup(conn)
                await self._wait_for_notify(conn)
                continue
            published, failed = await self._publish(rows)
            if published:
                await conn.execute(
                    "UPDATE outbox SET published_at = now() WHERE id = ANY(%s)", (published,)
                )
            if failed:
                await conn.execute(
                    "UPDATE outbox SET attempts = attempts + 1 WHERE id = ANY(%s)", (failed,)
                )
                await self._sleep(failure_backoff * (0.5 + random.random()))  # noqa: S311
                failure_backoff = min(failure_backoff * 2, self._settings.outbox_retry_max_s)
            else:
                failure_backoff = 0.05

    async def _fetch(self, conn: psycopg.AsyncConnection[Any]) -> list[_Row]:
        cur = await conn.execute(
            "SELECT id, event_id, event_type, subject, ordering_key, payload, headers "
            "FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT %s",
            (self._settings.outbox_batch_size,),
        )
        return [_Row(*r) for r in await cur.fetchall()]

    async def _wait_for_notify(self, conn: psycopg.AsyncConnection[Any]) -> None:
        gen = conn.notifies(timeout=self._settings.outbox_poll_interval_s, stop_after=1)
        async for _ in gen:
            pass

    async def _cleanup(self, conn: psycopg.AsyncConnection[Any]) -> None:
        now = time.monotonic()
        if now - self._last_cleanup < 60:
            return
        self._last_cleanup = now
        await conn.execute(
            "DELETE FROM outbox WHERE published_at < now() - make_interval(secs => %s)",
            (self._settings.outbox_retention_s,),
        )

    # -- publishing ------------------------------------------------------------------------
    async def _publish(self, rows: list[_Row]) -> tuple[list[int], list[int]]:
        """Publish chains of equal ordering key concurrently, each chain in id order."""
        try:
            js = await self._jetstream()
            if not self._stream_ready:
                await ensure_stream(js, self._nats_settings)
                self._stream_ready = True
        except Exception as exc:  # noqa: BLE001 - any NATS failure means "retry later"
            self._note_error(f"nats: {exc!r}")
            return [], [rows[0].id]
        chains: dict[str, list[_Row]] = {}
        for row in rows:
            chains.setdefault(row.ordering_key, []).append(row)
        results = await asyncio.gather(*(self._publish_chain(js, c) for c in chains.values()))
        published = [i for ok, _ in results for i in ok]
        failed = [f for _, f in results if f is not None]
        return published, failed

    async def _publish_chain(
        self, js: JetStreamContext, chain: list[_Row]
    ) -> tuple[list[int], int | None]:
        done: list[int] = []
        for row in chain:
            headers = dict(row.headers or {})
            headers[NATS_MSG_ID] = row.event_id
            headers[EVENT_TYPE_HEADER] = row.event_type
            try:
                await js.publish(
                    row.subject,
                    orjson.dumps(row.payload),
                    timeout=self._timeout,
                    # Routed by subject (no expected-stream header), so a relay also serves
                    # rows written by processes with another stream layout on the same database.
                    headers=headers,
                )
            except Exception as exc:  # noqa: BLE001 - timeouts, disconnects, no responders
                self.stats.failures += 1
                OUTBOX_PUBLISH_FAILURES.inc()
                self._note_error(f"publish: {exc!r}")
                if "stream not found" in str(exc).lower():
                    self._stream_ready = False
                return done, row.id
            done.append(row.id)
            self.stats.published += 1
            OUTBOX_PUBLISHED.inc()
        return done, None

    # -- helpers ---------------------------------------------------------------------------
    def _set_leader(self, value: bool) -> None:
        self.stats.leader = value
        OUTBOX_LEADER.set(1 if value else 0)

    def _note_error(self, message: str) -> None:
        if self.stats.last_error != message:
            log.warning("outbox relay: %s", message)
        self.stats.last_error = message

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
