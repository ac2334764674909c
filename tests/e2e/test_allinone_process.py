"""The all-in-one process that ``make run`` starts, as a real process over real HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import InfraEndpoints, read_stream

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(infra: InfraEndpoints) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = _free_port()
    env = dict(os.environ)
    env.update(
        RAPPORT_DATABASE_URL=infra.database_url,
        RAPPORT_NATS_URL=infra.nats_url,
        RAPPORT_NATS_STREAM=infra.stream,
        RAPPORT_NATS_SUBJECT_PREFIX=infra.prefix,
        RAPPORT_PORT=str(port),
        RAPPORT_LOG_LEVEL="WARNING",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "allinone"], cwd=ROOT, env=env, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            err = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"server did not become healthy: {err[-2000:]}")
        time.sleep(0.2)
    yield base, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


async def test_serves_health_metrics_and_ingest_over_http(
    server: tuple[str, subprocess.Popen[bytes]], infra: InfraEndpoints, ws_id: str
) -> None:
    base, proc = server
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        health = (await http.get("/health")).json()
        assert health == {"status": "ok", "checks": {"database": "ok", "deriver": "ok"}}
        assert (await http.post("/v3/workspaces", json={"id": ws_id})).status_code == 201
        r = await http.post(
            f"/v3/workspaces/{ws_id}/sessions",
            json={"id": "chat", "peers": {"alice": {}, "bob": {"observe_others": True}}},
        )
        assert r.status_code == 201
        r = await http.post(
            f"/v3/workspaces/{ws_id}/sessions/chat/messages",
            json={"messages": [{"peer_id": "alice", "content": "I had eggs for breakfast"}]},
        )
        assert r.status_code == 201
        [message] = r.json()
        metrics = (await http.get("/metrics")).text
        assert "rapport_http_request_duration_seconds_bucket" in metrics
        assert (await http.get("/openapi.json")).json()["info"]["title"] == "Rapport"
        # The web console, with auth off, needs no key: it lists the workspace and its session.
        page = await http.get("/console/")
        assert page.status_code == 200 and ws_id in page.text
        page = await http.get(f"/console/w/{ws_id}/sessions/chat")
        assert page.status_code == 200 and "I had eggs for breakfast" in page.text
    [event] = await read_stream(infra, f"{infra.prefix}.message.created.{ws_id}.>", expect=1)
    assert event.data["message_id"] == message["id"]
    assert event.data["witnesses"] == [{"peer_id": "bob", "observe_others": True}]

    # uvicorn shuts down gracefully, then re-raises the signal so the exit status reports it.
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert "Traceback" not in err, err[-2000:]
