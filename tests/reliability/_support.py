"""Shared steps of the reliability tests: the ``faults`` servers (which these tests stop and
start, so never the shared ``test`` ones), a real ``python -m allinone`` process with its
output captured, and the exactly-once checks on what derivation stored."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from libs.common.migrate import upgrade_to_head
from scripts import devinfra
from tests.conftest import InfraEndpoints, delete_streams
from tests.fakes.openai_server import RecordedRequest, Reply

ROOT = Path(__file__).resolve().parents[2]
FAULTS = "faults"
VECTOR_TABLES = ("vec_rapport_messages_384", "vec_rapport_conclusions_384")


@contextmanager
def faults_database(tag: str) -> Iterator[InfraEndpoints]:
    """A fresh database and stream name on the ``faults`` servers; both servers are left
    running afterwards even when a test failed mid-outage."""
    ep = devinfra.ensure_up(FAULTS)
    run = uuid.uuid4().hex[:8]
    admin = ep.database_url.replace("postgresql+psycopg://", "postgresql://")
    name = f"rapport_{tag}_{run}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"{ep.database_url.rpartition('/')[0]}/{name}"
    upgrade_to_head(url)
    stream = f"RAPPORT_{tag.upper()}_{run}"
    try:
        yield InfraEndpoints(
            database_url=url,
            admin_dsn=admin,
            nats_url=ep.nats_url,
            stream=stream,
            prefix=f"r{tag[:4]}{run}",
        )
    finally:
        devinfra.ensure_up(FAULTS)
        asyncio.run(delete_streams(ep.nats_url, stream))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running ``python -m allinone``; stdout and stderr go to ``log``."""

    base: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait for the exit status (killed after ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return int(self.proc.returncode)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def spawn(infra: InfraEndpoints, log: Path, *, healthy: bool = True, **env: str) -> Server:
    """Start the all-in-one server on ``infra`` (its stream and prefix) with no inherited
    ``RAPPORT_*`` setting, plus ``env``; waits until ``/health`` answers 200 when ``healthy``."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RAPPORT_")}
    environ.update(
        RAPPORT_DATABASE_URL=infra.database_url,
        RAPPORT_NATS_URL=infra.nats_url,
        RAPPORT_NATS_STREAM=infra.stream,
        RAPPORT_NATS_SUBJECT_PREFIX=infra.prefix,
        RAPPORT_PORT=str(port),
        RAPPORT_LOG_JSON="false",
        RAPPORT_OUTBOX_POLL_INTERVAL_S="0.2",
    )
    environ.update(env)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "allinone"], cwd=ROOT, env=environ, stdout=out, stderr=out
        )
    server = Server(base=f"http://127.0.0.1:{port}", proc=proc, log=log)
    deadline = time.monotonic() + 60
    while healthy:
        try:
            if httpx.get(f"{server.base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"server did not become healthy: {server.output()[-3000:]}")
        time.sleep(0.2)
    return server


async def wait_drained(
    http: httpx.AsyncClient, ws: str, *, total: int, wait_s: float = 60.0
) -> dict[str, Any]:
    """Poll queue status until ``total`` work units exist and none is pending or running."""
    deadline = asyncio.get_running_loop().time() + wait_s
    status: dict[str, Any] = {}
    while True:
        try:
            r = await http.get(f"/v3/workspaces/{ws}/queue/status")
            status = r.json() if r.status_code == 200 else {"http": r.status_code}
        except httpx.HTTPError as exc:
            status = {"error": repr(exc)}
        if (
            status.get("total_work_units", 0) >= total
            and status.get("pending_work_units") == 0
            and status.get("in_progress_work_units") == 0
        ):
            return status
        assert asyncio.get_running_loop().time() < deadline, f"queue did not drain: {status}"
        await asyncio.sleep(0.3)


async def fetch(dsn: str, query: str | sql.Composed, *params: Any) -> list[Any]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        return await (await conn.execute(query, params)).fetchall()


async def assert_derived_exactly_once(dsn: str, ws: str, accepted: set[str]) -> dict[str, int]:
    """Every accepted message is stored once and derived once in effect: one ``done`` status
    row each, at least one conclusion each, no conclusion twice (same source, view and text),
    one message vector each and one conclusion vector per conclusion. Returns the counts."""
    stored = [m for (m,) in await fetch(dsn, "SELECT id FROM messages WHERE workspace_id = %s", ws)]
    assert len(stored) == len(set(stored))
    assert set(stored) == accepted, (
        f"lost {len(accepted - set(stored))}, unexpected {len(set(stored) - accepted)}"
    )
    statuses = await fetch(
        dsn,
        "SELECT message_id, status FROM derivation_status WHERE workspace_id = %s",
        ws,
    )
    assert Counter(s for _, s in statuses) == {"done": len(accepted)}, Counter(
        s for _, s in statuses
    )
    assert {m for m, _ in statuses} == accepted
    conclusions = await fetch(
        dsn,
        "SELECT id, source_ids, observer_id, observed_id, content FROM conclusions "
        "WHERE workspace_id = %s",
        ws,
    )
    keys = Counter((tuple(src), obs, obd, text) for _, src, obs, obd, text in conclusions)
    assert max(keys.values(), default=1) == 1, [k for k, n in keys.items() if n > 1][:3]
    sources = {s for _, src, *_ in conclusions for s in src}
    assert sources == accepted, f"{len(accepted - sources)} messages without a conclusion"
    counts = {}
    for table in VECTOR_TABLES:
        ids = [
            i
            for (i,) in await fetch(
                dsn,
                sql.SQL("SELECT id FROM {} WHERE workspace_id = %s").format(sql.Identifier(table)),
                ws,
            )
        ]
        assert len(ids) == len(set(ids)), table
        counts[table] = len(ids)
    assert counts[VECTOR_TABLES[0]] == len(accepted)
    assert counts[VECTOR_TABLES[1]] == len(conclusions)
    return {"messages": len(accepted), "conclusions": len(conclusions)}


@dataclass
class MemoryModel:
    """Chat handler of the scripted OpenAI server answering the deriver and the dialectic:
    extraction turns each new message into ``"<observed> said: <text>"``, the dialectic
    answers ``"Answer: <evidence texts>"``. ``extraction`` / ``dialectic`` replace a task's
    reply (a delay, an error) when set; ``extraction_for`` picks it by message text."""

    extraction_delay: float = 0.0
    dialectic_delay: float = 0.0
    extraction_for: Any = None  # Callable[[str], Reply | None] on the new messages' text

    def __call__(self, request: RecordedRequest) -> Reply:
        system = request.system_prompt
        user = next((m["content"] for m in request.messages if m["role"] == "user"), "")
        if system.startswith("You are the memory of the peer"):
            _, _, block = user.partition("Evidence, one JSON object per line:\n")
            texts = [json.loads(x)["text"] for x in block.splitlines() if x.startswith("{")]
            return Reply.text("Answer: " + " / ".join(texts), delay=self.dialectic_delay)
        if "write down what" in system:
            observed = re.search(r"Observed: (\S+)", user)
            new = user.partition("New messages from")[2]
            lines = [json.loads(x) for x in new.splitlines() if x.startswith("{")]
            who = observed.group(1) if observed else "?"
            if self.extraction_for is not None:
                override = self.extraction_for(" ".join(x["text"] for x in lines))
                if override is not None:
                    return override  # type: ignore[no-any-return]
            return Reply.json(
                {
                    "observations": [
                        {
                            "content": f"{who} said: {x['text']}",
                            "level": "explicit",
                            "source_message_ids": [x["id"]],
                        }
                        for x in lines
                    ]
                },
                delay=self.extraction_delay,
            )
        if "card about" in system:
            return Reply.json({"facts": []})
        return Reply.json({"summary": "a summary"})
