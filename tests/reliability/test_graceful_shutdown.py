"""SIGTERM to a real server process: requests in flight finish, new connections are refused,
the process exits 0 within a bound; a deriver stopped while it holds un-acked events hands them
back, and after a restart they are derived exactly once (long before the ack wait would have
brought them back)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import InfraEndpoints, delete_streams
from tests.fakes.openai_server import ScriptedOpenAI, scripted_openai
from tests.integration.dialectic._helpers import sse_events
from tests.reliability._support import (
    MemoryModel,
    assert_derived_exactly_once,
    fetch,
    spawn,
    wait_drained,
)

#: Seconds the scripted model takes to answer a chat in flight at SIGTERM.
SLOW_ANSWER_S = 3.0


@pytest.fixture
def model() -> Iterator[tuple[ScriptedOpenAI, MemoryModel]]:
    handler = MemoryModel()
    with scripted_openai(default=handler) as server:
        yield server, handler


@pytest.fixture
def own_stream(infra: InfraEndpoints) -> Iterator[InfraEndpoints]:
    """The run's database with a stream of this test's own (its deriver shares no work)."""
    stream, prefix = infra.private_stream()
    yield dataclasses.replace(infra, stream=stream, prefix=prefix)
    asyncio.run(delete_streams(infra.nats_url, stream))


def _llm_env(server: ScriptedOpenAI, **extra: str) -> dict[str, str]:
    return {
        "RAPPORT_LLM_BASE_URL": server.base_url,
        "RAPPORT_LLM_MAX_RETRIES": "0",
        "RAPPORT_LLM_TIMEOUT_S": "60",
        **extra,
    }


async def _seed(
    http: httpx.AsyncClient, ws: str, sessions: list[str], per_session: int = 1
) -> list[str]:
    """``per_session`` messages by alice (one batch) in each session, bob observing."""
    assert (await http.post("/v3/workspaces", json={"id": ws})).status_code in (200, 201)
    ids = []
    for i, s in enumerate(sessions):
        r = await http.post(
            f"/v3/workspaces/{ws}/sessions",
            json={"id": s, "peers": {"alice": {}, "bob": {"observe_others": True}}},
        )
        assert r.status_code in (200, 201), r.text
        r = await http.post(
            f"/v3/workspaces/{ws}/sessions/{s}/messages",
            json={
                "messages": [
                    {"peer_id": "alice", "content": f"I keep {i + k + 2} goats in Tomar"}
                    for k in range(per_session)
                ]
            },
        )
        assert r.status_code == 201, r.text
        ids += [m["id"] for m in r.json()]
    return ids


@pytest.mark.timeout(120)
async def test_sigterm_drains_in_flight_chats_refuses_new_connections_and_exits_0(
    own_stream: InfraEndpoints,
    model: tuple[ScriptedOpenAI, MemoryModel],
    ws_id: str,
    tmp_path: Path,
) -> None:
    llm, handler = model
    server = spawn(own_stream, tmp_path / "server.log", **_llm_env(llm))
    try:
        async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
            accepted = set(await _seed(http, ws_id, ["s1"]))
            await wait_drained(http, ws_id, total=1)
            handler.dialectic_delay = SLOW_ANSWER_S
            url = f"/v3/workspaces/{ws_id}/peers/bob/chat"
            query = {"query": "How many goats does alice keep?", "target": "alice"}
            plain = asyncio.create_task(http.post(url, json=query))

            async def streamed() -> tuple[int, str]:
                async with http.stream("POST", url, json={**query, "stream": True}) as r:
                    return r.status_code, (await r.aread()).decode()

            sse = asyncio.create_task(streamed())
            # Both are in flight: the model received both questions and is still thinking.
            deadline = time.monotonic() + 20
            while (
                sum(r.system_prompt.startswith("You are the memory") for r in llm.chat_requests) < 2
            ):
                assert time.monotonic() < deadline, "the chats never reached the model"
                await asyncio.sleep(0.05)
            sent_at = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            # The listener is closed at once: a new connection is refused.
            with pytest.raises(httpx.ConnectError):
                async with httpx.AsyncClient(base_url=server.base, timeout=2) as fresh:
                    await fresh.get("/health")
            r = await plain
            status, body = await sse
            code = await asyncio.to_thread(server.proc.wait, 30)
            took = time.monotonic() - sent_at
    finally:
        server.kill()
    assert r.status_code == 200, r.text
    assert "I keep 2 goats in Tomar" in r.json()["content"]
    assert status == 200
    events = sse_events(body)
    assert events[-1] == {"done": True}
    streamed_answer = "".join(e["delta"]["content"] for e in events[:-1])
    assert streamed_answer == r.json()["content"]
    # Answered after the signal (the model took SLOW_ANSWER_S), then a clean exit.
    assert code == 0, server.output()[-2000:]
    assert took < 20
    assert "Traceback" not in server.output(), server.output()[-3000:]
    counts = await assert_derived_exactly_once(own_stream.dsn, ws_id, accepted)
    assert counts["messages"] == 1


@pytest.mark.timeout(150)
async def test_sigterm_hands_unfinished_events_back_and_a_restart_derives_them_once(
    own_stream: InfraEndpoints,
    model: tuple[ScriptedOpenAI, MemoryModel],
    ws_id: str,
    tmp_path: Path,
) -> None:
    llm, handler = model
    log = tmp_path / "server.log"
    # The ack wait stays at its default (300 s): only handing back brings the events back soon.
    env = _llm_env(llm, RAPPORT_DERIVER_SHUTDOWN_GRACE_S="1")
    handler.extraction_delay = 40.0  # far longer than the grace period
    server = spawn(own_stream, log, **env)
    try:
        async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
            accepted = set(await _seed(http, ws_id, ["s1"], per_session=3))
        deadline = time.monotonic() + 20
        while not any("write down what" in r.system_prompt for r in llm.chat_requests):
            assert time.monotonic() < deadline, "derivation never reached the model"
            await asyncio.sleep(0.05)
        sent_at = time.monotonic()
        code = server.stop(signal.SIGTERM, timeout=30)
        took = time.monotonic() - sent_at
        assert code == 0, server.output()[-2000:]
        assert took < 15
        # Those the deriver had fetched (one batch: usually all 3) are handed back.
        handed = re.search(r"handed (\d+) unfinished events back for redelivery", server.output())
        assert handed is not None, server.output()[-2000:]
        assert 1 <= int(handed.group(1)) <= 3
        done = await fetch(
            own_stream.dsn,
            "SELECT count(*) FROM derivation_status WHERE workspace_id = %s AND status = 'done'",
            ws_id,
        )
        assert done == [(0,)]

        handler.extraction_delay = 0.0
        restarted_at = time.monotonic()
        server = spawn(own_stream, log, **env)
        async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
            status = await wait_drained(http, ws_id, total=3, wait_s=60)
        assert time.monotonic() - restarted_at < 60  # the ack wait is 300 s
        assert (status["completed_work_units"], status["dead_letter_work_units"]) == (3, 0)
    finally:
        server.kill()
    await assert_derived_exactly_once(own_stream.dsn, ws_id, accepted)
    conclusions = await fetch(
        own_stream.dsn,
        "SELECT observer_id, content FROM conclusions WHERE workspace_id = %s ORDER BY 1, 2",
        ws_id,
    )
    # alice's own view and bob's (observe_others) of each of the three messages, once each.
    assert conclusions == sorted(
        (observer, f"alice said: I keep {n} goats in Tomar")
        for observer in ("alice", "bob")
        for n in (2, 3, 4)
    )
