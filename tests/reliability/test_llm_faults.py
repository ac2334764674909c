"""An LLM endpoint answering 429, 500, garbage and too slowly (past the client timeout), through
a real server process's deriver: the failing messages end as dead letters listed with their
reasons (API and CLI); once the provider recovers they are retried through the API and the
CLI and every message is derived exactly once."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import InfraEndpoints, delete_streams
from tests.fakes.openai_server import Reply, ScriptedOpenAI, scripted_openai
from tests.integration.cli.conftest import Cli
from tests.reliability._support import (
    MemoryModel,
    assert_derived_exactly_once,
    fetch,
    spawn,
    wait_drained,
)

#: Message text → what the provider answers every extraction request about it, and the reason
#: its dead letter must give. Transient failures are redelivered up to the delivery limit
#: (2 here), a permanent one (garbage) is dead-lettered after one delivery.
FAULTS: dict[str, tuple[Reply, str, int]] = {
    "rate-limited": (
        Reply.status(429, "Rate limit reached", retry_after="0.1", error_type="rate_limit"),
        "TransientError: extraction: ",
        2,
    ),
    "server-error": (Reply.status(500, "The server is overloaded"), "TransientError: ", 2),
    "timeout": (Reply.slow(3.0), "TransientError: ", 2),
    "garbage": (Reply.garbage(), "PoisonMessageError: extraction: ", 1),
}
WHY = {
    "rate-limited": "failed after 2 attempt(s): HTTP 429: Rate limit reached",
    "server-error": "failed after 2 attempt(s): HTTP 500: The server is overloaded",
    "timeout": "failed after 2 attempt(s): timed out after 1s",
    "garbage": "failed after 2 attempt(s): malformed response",
}


@pytest.fixture
def model() -> Iterator[tuple[ScriptedOpenAI, MemoryModel]]:
    handler = MemoryModel()
    with scripted_openai(default=handler) as server:
        yield server, handler


@pytest.fixture
def own_stream(infra: InfraEndpoints) -> Iterator[InfraEndpoints]:
    stream, prefix = infra.private_stream()
    yield dataclasses.replace(infra, stream=stream, prefix=prefix)
    asyncio.run(delete_streams(infra.nats_url, stream))


def _fault_of(text: str) -> Reply | None:
    for kind, (reply, _, _) in FAULTS.items():
        if f"[{kind}]" in text:
            return reply
    return None


@pytest.mark.timeout(180)
async def test_llm_429_500_timeout_and_garbage_are_dead_lettered_then_retried_via_api_and_cli(
    own_stream: InfraEndpoints,
    model: tuple[ScriptedOpenAI, MemoryModel],
    ws_id: str,
    tmp_path: Path,
) -> None:
    llm, handler = model
    handler.extraction_for = _fault_of
    server = spawn(
        own_stream,
        tmp_path / "server.log",
        RAPPORT_LLM_BASE_URL=llm.base_url,
        RAPPORT_LLM_MAX_RETRIES="1",
        RAPPORT_LLM_TIMEOUT_S="1",
        RAPPORT_DERIVER_MAX_DELIVER="2",
        RAPPORT_DERIVER_BACKOFF_BASE_S="0.05",
        RAPPORT_DERIVER_BACKOFF_MAX_S="0.2",
    )
    cli = Cli(server.base, ws_id)
    kinds = ["fine", *FAULTS]
    try:
        async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
            assert (await http.post("/v3/workspaces", json={"id": ws_id})).status_code == 201
            message_of: dict[str, str] = {}
            for kind in kinds:  # one session each: every extraction is about one message
                r = await http.post(
                    f"/v3/workspaces/{ws_id}/sessions", json={"id": kind, "peers": {"alice": {}}}
                )
                assert r.status_code == 201, r.text
                r = await http.post(
                    f"/v3/workspaces/{ws_id}/sessions/{kind}/messages",
                    json={"messages": [{"peer_id": "alice", "content": f"[{kind}] I brew cider"}]},
                )
                assert r.status_code == 201, r.text
                [m] = r.json()
                message_of[m["id"]] = kind

            status = await wait_drained(http, ws_id, total=5, wait_s=90)
            assert {k: status[k] for k in status if k != "sessions"} == {
                "total_work_units": 5,
                "completed_work_units": 1,
                "in_progress_work_units": 0,
                "pending_work_units": 0,
                "dead_letter_work_units": 4,
            }
            letters = (await http.get(f"/v3/workspaces/{ws_id}/queue/dead_letters")).json()
            by_kind = {message_of[d["payload"]["message_id"]]: d for d in letters["items"]}
            assert sorted(by_kind) == sorted(FAULTS)
            for kind, (_, prefix, attempts) in FAULTS.items():
                letter = by_kind[kind]
                assert letter["consumer"] == "representation"
                assert letter["error"].startswith(prefix), letter["error"]
                assert WHY[kind] in letter["error"], letter["error"]
                assert letter["attempts"] == attempts, (kind, letter)
                assert letter["retried_at"] is None

            # The CLI lists the same dead letters with the same reasons.
            listed = (await asyncio.to_thread(cli.ok, "queue", "dead-letters", "--json")).json()
            assert {d["id"]: d["error"] for d in listed} == {
                d["id"]: d["error"] for d in letters["items"]
            }
            human = (await asyncio.to_thread(cli.ok, "queue", "dead-letters")).stdout
            assert all(d["id"] in human for d in letters["items"]), human

            # The provider recovers; two are retried through the API, two through the CLI.
            handler.extraction_for = None
            for kind in ("rate-limited", "timeout"):
                r = await http.post(
                    f"/v3/workspaces/{ws_id}/queue/dead_letters/{by_kind[kind]['id']}/retry"
                )
                assert r.status_code == 200, r.text
                assert r.json()["retried_at"] is not None
            for kind in ("server-error", "garbage"):
                out = await asyncio.to_thread(cli.ok, "queue", "retry", by_kind[kind]["id"])
                assert f"Published dead letter {by_kind[kind]['id']}" in out.stdout

            deadline = asyncio.get_running_loop().time() + 60
            while (status := await wait_drained(http, ws_id, total=5))["completed_work_units"] < 5:
                assert asyncio.get_running_loop().time() < deadline, status
                await asyncio.sleep(0.3)
            assert (status["completed_work_units"], status["dead_letter_work_units"]) == (5, 0)
            assert (await http.get(f"/v3/workspaces/{ws_id}/queue/dead_letters")).json()[
                "items"
            ] == []
            retried = (
                await asyncio.to_thread(cli.ok, "queue", "dead-letters", "--all", "--json")
            ).json()
            assert sorted(d["id"] for d in retried) == sorted(d["id"] for d in by_kind.values())
            assert all(d["retried_at"] for d in retried)
    finally:
        server.kill()

    await assert_derived_exactly_once(own_stream.dsn, ws_id, set(message_of))
    conclusions = await fetch(
        own_stream.dsn,
        "SELECT content FROM conclusions WHERE workspace_id = %s ORDER BY 1",
        ws_id,
    )
    assert conclusions == sorted((f"alice said: [{k}] I brew cider",) for k in kinds)
