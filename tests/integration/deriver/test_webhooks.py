"""Webhook delivery: signed ``{type, data, timestamp}`` posts for test requests and
``queue.empty`` once a session's work drains."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.conftest import AppFactory, InfraEndpoints, delete_stream
from tests.integration.deriver._helpers import say, wait_derived

pytestmark = pytest.mark.reliability  # part of make test-reliability (issue 8)

SECRET = "webhook-secret-for-tests"


class Receiver:
    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail_next = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if receiver.fail_next:
                    receiver.fail_next -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.received.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]

    async def wait_for(self, kind: str, wait_s: float = 20.0) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            for event in self.events():
                if event["type"] == kind:
                    return event
            assert asyncio.get_running_loop().time() < deadline, self.events()
            await asyncio.sleep(0.1)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
async def hooked(
    app_factory: AppFactory, infra: InfraEndpoints, clean_db: None
) -> AsyncIterator[httpx.AsyncClient]:
    run = uuid.uuid4().hex[:8]
    client = await app_factory(
        deriver_enabled=True,
        nats_stream=f"RAPPORT_HOOKS_{run}",
        nats_subject_prefix=f"rh{run}",
        webhook_secret=SECRET,
        allow_private_webhook_urls=True,
        deriver_backoff_base_s=0.05,
    )
    yield client
    await delete_stream(infra.nats_url, f"RAPPORT_HOOKS_{run}")


async def test_test_event_is_delivered_signed(
    hooked: httpx.AsyncClient, receiver: Receiver, ws_id: str
) -> None:
    await hooked.post("/v3/workspaces", json={"id": ws_id})
    r = await hooked.post(f"/v3/workspaces/{ws_id}/webhooks", json={"url": receiver.url})
    assert r.status_code == 201
    assert (await hooked.get(f"/v3/workspaces/{ws_id}/webhooks/test")).status_code == 202
    event = await receiver.wait_for("test")
    assert event["data"]["workspace_id"] == ws_id
    headers, body = receiver.received[0]
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Honcho-Signature"] == expected


async def test_queue_empty_after_a_session_drains_and_failed_deliveries_retry(
    hooked: httpx.AsyncClient, receiver: Receiver, ws_id: str
) -> None:
    receiver.fail_next = 2  # the first deliveries fail: the consumer retries them
    await hooked.post("/v3/workspaces", json={"id": ws_id})
    await hooked.post(f"/v3/workspaces/{ws_id}/webhooks", json={"url": receiver.url})
    await hooked.post(f"/v3/workspaces/{ws_id}/sessions", json={"id": "s"})
    await say(hooked, ws_id, "s", ("alice", "I just moved to Oslo"), ("bob", "Welcome!"))
    await wait_derived(hooked, ws_id, expect_total=2)
    event = await receiver.wait_for("queue.empty")
    assert event["data"]["session_id"] == "s"
    assert event["data"]["workspace_id"] == ws_id
    assert receiver.fail_next == 0
