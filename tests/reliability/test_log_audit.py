"""No secrets and no message contents in the logs at the default log level: a real server
process (default ``RAPPORT_LOG_LEVEL`` and format) with secret settings (JWT secret, LLM API
key, webhook secret, database password), driven through a representative workload — ingest
with a marker in contents and metadata, a failing LLM, auth failures with real JWTs, a webhook
whose URL carries a token, bad input — must not print any of them to stdout or stderr."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest

from libs.common.auth import create_jwt
from tests.conftest import InfraEndpoints, delete_streams
from tests.fakes.openai_server import Reply, ScriptedOpenAI, scripted_openai
from tests.reliability._support import spawn

CONTENT_MARKER = "zanzibar-content-5531"
METADATA_MARKER = "zanzibar-metadata-8812"
QUERY_MARKER = "zanzibar-query-2291"
JWT_SECRET = "jwt-secret-zanzibar-" + "k" * 40
LLM_API_KEY = "sk-zanzibar-llm-key-7781"
WEBHOOK_SECRET = "whsec-zanzibar-4410"
WEBHOOK_TOKEN = "hooktoken-zanzibar-9912"
DB_PASSWORD = "dbpass-zanzibar-6620"


@pytest.fixture
def failing_llm() -> Iterator[ScriptedOpenAI]:
    with scripted_openai(default=lambda _: Reply.status(500, "upstream exploded")) as server:
        yield server


@pytest.fixture
def own_stream(infra: InfraEndpoints) -> Iterator[InfraEndpoints]:
    stream, prefix = infra.private_stream()
    # The password is sent to Postgres (which trusts local connections and ignores it).
    url = infra.database_url.replace("://rapport@", f"://rapport:{DB_PASSWORD}@")
    assert DB_PASSWORD in url
    yield dataclasses.replace(infra, stream=stream, prefix=prefix, database_url=url)
    asyncio.run(delete_streams(infra.nats_url, stream))


@pytest.mark.timeout(120)
async def test_default_level_logs_carry_no_secrets_and_no_message_contents(
    own_stream: InfraEndpoints, failing_llm: ScriptedOpenAI, ws_id: str, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    server = spawn(
        own_stream,
        log,
        RAPPORT_LOG_JSON="true",  # the default format (spawn's default is plain text)
        RAPPORT_AUTH_ENABLED="true",
        RAPPORT_JWT_SECRET=JWT_SECRET,
        RAPPORT_LLM_BASE_URL=failing_llm.base_url,
        RAPPORT_LLM_API_KEY=LLM_API_KEY,
        RAPPORT_LLM_MAX_RETRIES="0",
        RAPPORT_WEBHOOK_SECRET=WEBHOOK_SECRET,
        RAPPORT_ALLOW_PRIVATE_WEBHOOK_URLS="true",
        RAPPORT_DERIVER_MAX_DELIVER="2",
        RAPPORT_DERIVER_BACKOFF_BASE_S="0.05",
        RAPPORT_DERIVER_BACKOFF_MAX_S="0.1",
    )
    admin = {"Authorization": f"Bearer {create_jwt(JWT_SECRET, admin=True)}"}
    expired = create_jwt(
        JWT_SECRET, workspace_id=ws_id, expires_at=datetime.now(UTC) - timedelta(hours=1)
    )
    forged = create_jwt("another-secret-" + "z" * 40, admin=True)
    unsigned = jwt.encode({"ad": True}, key="", algorithm="none")
    tokens = [create_jwt(JWT_SECRET, admin=True), expired, forged, unsigned]
    try:
        async with httpx.AsyncClient(base_url=server.base, timeout=30, headers=admin) as http:
            w = f"/v3/workspaces/{ws_id}"
            assert (await http.post("/v3/workspaces", json={"id": ws_id})).status_code == 201
            r = await http.post(f"{w}/sessions", json={"id": "s1", "peers": {"alice": {}}})
            assert r.status_code == 201, r.text
            r = await http.post(
                f"{w}/webhooks",
                # A live endpoint that answers 404: the delivery fails after a real request.
                json={"url": f"{failing_llm.base_url}/hook?token={WEBHOOK_TOKEN}"},
            )
            assert r.status_code in (200, 201), r.text
            r = await http.post(
                f"{w}/sessions/s1/messages",
                json={
                    "messages": [
                        {
                            "peer_id": "alice",
                            "content": f"My bank PIN is {CONTENT_MARKER}",
                            "metadata": {"note": METADATA_MARKER},
                        }
                    ]
                },
            )
            assert r.status_code == 201, r.text
            assert (await http.get(f"{w}/webhooks/test")).status_code == 202
            # Bad input carrying the marker, and a body over the size limit.
            r = await http.post(
                f"{w}/sessions/s1/messages",
                json={"messages": [{"peer_id": "alice", "content": CONTENT_MARKER, "x": 1}]},
            )
            assert r.status_code == 422
            r = await http.post(
                f"{w}/sessions/s1/messages",
                content=("{" + CONTENT_MARKER * 400_000).encode(),
                headers={"content-type": "application/json"},
            )
            assert r.status_code == 413
            # A search and a chat whose query carries a marker (the LLM fails on the chat).
            r = await http.post(f"{w}/search", json={"query": f"bank {QUERY_MARKER}"})
            assert r.status_code == 200, r.text
            r = await http.post(f"{w}/peers/alice/chat", json={"query": f"PIN? {QUERY_MARKER}"})
            assert r.status_code in (200, 502, 503), r.text
            # Auth failures with real tokens.
            for token in tokens[1:]:
                r = await http.post(
                    f"{w}/search",
                    json={"query": "x"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert r.status_code == 401, (token[:10], r.text)
            # The failing LLM makes the message a dead letter; the webhook keeps failing.
            deadline = time.monotonic() + 30
            while True:
                status = (await http.get(f"{w}/queue/status")).json()
                if status["dead_letter_work_units"] == 1:
                    break
                assert time.monotonic() < deadline, status
                await asyncio.sleep(0.2)
            await asyncio.sleep(1)
        assert server.stop(signal.SIGTERM, timeout=30) == 0
    finally:
        server.kill()

    output = log.read_text(errors="replace")
    # The audit saw real logging: the failures were reported (at WARNING and above).
    assert "dead-lettering" in output, output[-2000:]
    assert "webhook delivery failed" in output, output[-2000:]
    secrets = {
        "message content": CONTENT_MARKER,
        "message metadata": METADATA_MARKER,
        "query": QUERY_MARKER,
        "JWT secret": JWT_SECRET,
        "LLM API key": LLM_API_KEY,
        "webhook secret": WEBHOOK_SECRET,
        "webhook URL token": WEBHOOK_TOKEN,
        "database password": DB_PASSWORD,
        **{f"JWT {i}": token for i, token in enumerate(tokens)},
        **{f"JWT {i} signature": token.rsplit(".", 1)[-1] for i, token in enumerate(tokens[:3])},
    }
    leaked = {what: value for what, value in secrets.items() if value in output}
    assert not leaked, {
        what: output[max(0, output.index(v) - 300) : output.index(v) + 100]
        for what, v in leaked.items()
    }
