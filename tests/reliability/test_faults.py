"""Backing services failing under load, with a real server process (API, outbox relay and
deriver) and concurrent writers: Postgres stopped and restarted, NATS stopped for 30 s. The
clients count what was accepted (201); afterwards Postgres must hold exactly those messages,
each derived exactly once in effect, and the queue must drain with no dead letter.

These tests stop the ``faults`` servers (never the shared ``test`` ones).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from scripts import devinfra
from tests.conftest import InfraEndpoints
from tests.reliability._support import (
    FAULTS,
    assert_derived_exactly_once,
    faults_database,
    spawn,
    wait_drained,
)

PG_OUTAGE_S = 15
NATS_OUTAGE_S = 30
WRITERS = 4
BATCH = 3
#: Seconds between a writer's batches (a steady load the deriver keeps up with).
PACE_S = 1.0
#: The deriver retries events whose handling failed (database down) with a capped back-off; a
#: high delivery limit keeps a 15 s outage from dead-lettering them.
DERIVER_ENV = {
    "RAPPORT_DERIVER_BACKOFF_BASE_S": "0.2",
    "RAPPORT_DERIVER_BACKOFF_MAX_S": "2",
    "RAPPORT_DERIVER_MAX_DELIVER": "60",
    "RAPPORT_LOG_LEVEL": "WARNING",
}


@pytest.fixture(scope="module")
def faults_infra() -> Iterator[InfraEndpoints]:
    with faults_database("faults") as infra:
        yield infra


@dataclass
class Load:
    """Concurrent writers, each posting batches to its own session until stopped."""

    http: httpx.AsyncClient
    ws: str
    accepted: set[str] = field(default_factory=set)
    statuses: Counter[int] = field(default_factory=Counter)
    details: set[str] = field(default_factory=set)
    ambiguous: list[str] = field(default_factory=list)
    slowest_s: float = 0.0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def setup(self) -> None:
        assert (await self.http.post("/v3/workspaces", json={"id": self.ws})).status_code == 201
        for w in range(WRITERS):
            r = await self.http.post(
                f"/v3/workspaces/{self.ws}/sessions",
                json={"id": f"s{w}", "peers": {"alice": {}, "bob": {"observe_others": True}}},
            )
            assert r.status_code == 201, r.text

    async def writer(self, w: int) -> None:
        n = 0
        while not self.stop.is_set():
            batch = [
                {
                    "peer_id": "alice" if (n + i) % 2 else "bob",
                    "content": f"I planted {n + i} olive trees in Evora (writer {w})",
                }
                for i in range(BATCH)
            ]
            n += BATCH
            started = time.monotonic()
            try:
                r = await self.http.post(
                    f"/v3/workspaces/{self.ws}/sessions/s{w}/messages", json={"messages": batch}
                )
            except httpx.HTTPError as exc:  # the outcome of this batch is unknown
                self.ambiguous.append(repr(exc))
                continue
            finally:
                self.slowest_s = max(self.slowest_s, time.monotonic() - started)
            self.statuses[r.status_code] += 1
            if r.status_code == 201:
                self.accepted.update(m["id"] for m in r.json())
            else:
                self.details.add(f"{r.status_code} {r.json()['detail']}")
            await asyncio.sleep(PACE_S)

    async def run(self, scenario: Callable[[], Awaitable[None]]) -> None:
        writers = [asyncio.create_task(self.writer(w)) for w in range(WRITERS)]
        try:
            await scenario()
        finally:
            self.stop.set()
            await asyncio.gather(*writers)


async def _health(base: str) -> int:
    async with httpx.AsyncClient(base_url=base, timeout=5) as h:
        return (await h.get("/health")).status_code


@pytest.mark.timeout(240)
async def test_postgres_restart_under_load_loses_and_duplicates_nothing(
    faults_infra: InfraEndpoints, ws_id: str, tmp_path: Path
) -> None:
    server = spawn(faults_infra, tmp_path / "server.log", **DERIVER_ENV)
    health_during: list[int] = []
    try:
        async with httpx.AsyncClient(base_url=server.base, timeout=20) as http:
            load = Load(http, ws_id)
            await load.setup()

            async def scenario() -> None:
                await asyncio.sleep(3)  # ingest and deriver busy
                before = len(load.accepted)
                await asyncio.to_thread(devinfra.stop_postgres, FAULTS)
                try:
                    until = time.monotonic() + PG_OUTAGE_S
                    while time.monotonic() < until:
                        health_during.append(await _health(server.base))
                        await asyncio.sleep(1)
                finally:
                    await asyncio.to_thread(devinfra.start_postgres, FAULTS)
                assert before > 0
                await asyncio.sleep(4)  # writes resume

            await load.run(scenario)
            status = await wait_drained(http, ws_id, total=len(load.accepted), wait_s=120)
            letters = (await http.get(f"/v3/workspaces/{ws_id}/queue/dead_letters")).json()
    finally:
        server.kill()

    assert load.ambiguous == [], load.ambiguous
    # During the outage writes were refused with 503 and an actionable detail, never 500, and
    # no request hung.
    assert set(load.statuses) == {201, 503}, load.statuses
    assert load.details == {"503 The database is unavailable, retry later"}, load.details
    assert load.slowest_s < 15, load.slowest_s
    assert 503 in health_during
    assert (status["completed_work_units"], status["dead_letter_work_units"]) == (
        len(load.accepted),
        0,
    )
    assert letters["items"] == []
    counts = await assert_derived_exactly_once(faults_infra.dsn, ws_id, load.accepted)
    print(  # the figures docs/reliability.md reports
        f"\npostgres restart: accepted={counts['messages']} conclusions={counts['conclusions']} "
        f"refused_503={load.statuses[503]} slowest_request_s={load.slowest_s:.1f}"
    )


@pytest.mark.timeout(240)
async def test_nats_down_30s_during_ingest_with_the_deriver_running_loses_nothing(
    faults_infra: InfraEndpoints, ws_id: str, tmp_path: Path
) -> None:
    server = spawn(faults_infra, tmp_path / "server.log", **DERIVER_ENV)
    try:
        async with httpx.AsyncClient(base_url=server.base, timeout=20) as http:
            load = Load(http, ws_id)
            await load.setup()
            during: set[str] = set()

            async def scenario() -> None:
                await asyncio.sleep(3)
                await asyncio.to_thread(devinfra.stop_nats, FAULTS)
                try:
                    before = len(load.accepted)
                    await asyncio.sleep(NATS_OUTAGE_S)
                    during.update(load.accepted)
                    assert len(load.accepted) > before  # writes kept being accepted
                finally:
                    await asyncio.to_thread(devinfra.start_nats, FAULTS)
                await asyncio.sleep(3)

            await load.run(scenario)
            status = await wait_drained(http, ws_id, total=len(load.accepted), wait_s=120)
    finally:
        server.kill()

    assert load.ambiguous == [], load.ambiguous
    assert set(load.statuses) == {201}, (load.statuses, load.details)
    assert (status["completed_work_units"], status["dead_letter_work_units"]) == (
        len(load.accepted),
        0,
    )
    counts = await assert_derived_exactly_once(faults_infra.dsn, ws_id, load.accepted)
    print(  # the figures docs/reliability.md reports
        f"\nnats outage: accepted={counts['messages']} accepted_by_end_of_outage={len(during)} "
        f"conclusions={counts['conclusions']}"
    )
