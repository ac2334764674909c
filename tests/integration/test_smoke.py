from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import InfraEndpoints, read_stream


async def test_message_roundtrip_reaches_jetstream(
    client: httpx.AsyncClient, infra: InfraEndpoints, ws_id: str
) -> None:
    assert (await client.post("/v3/workspaces", json={"id": ws_id})).status_code == 201
    r = await client.post(f"/v3/workspaces/{ws_id}/sessions", json={"id": "s1"})
    assert r.status_code == 201
    r = await client.post(
        f"/v3/workspaces/{ws_id}/sessions/s1/messages",
        json={"messages": [{"peer_id": "alice", "content": "hello world"}]},
    )
    assert r.status_code == 201, r.text
    [msg] = r.json()
    assert msg["token_count"] == 2
    events = await read_stream(infra, f"{infra.prefix}.message.created.{ws_id}.>", expect=1)
    assert [e.data["message_id"] for e in events] == [msg["id"]]
    assert events[0].msg_id == events[0].data["event_id"]


async def test_outbox_event_carries_the_request_trace_context(
    client: httpx.AsyncClient, db: Any, ws_id: str
) -> None:
    await client.post("/v3/workspaces", json={"id": ws_id})
    await client.post(f"/v3/workspaces/{ws_id}/sessions", json={"id": "s"})
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = await client.post(
        f"/v3/workspaces/{ws_id}/sessions/s/messages",
        json={"messages": [{"peer_id": "alice", "content": "traced"}]},
        headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
    )
    assert r.status_code == 201
    row = await (
        await db.execute("SELECT headers FROM outbox WHERE payload->>'workspace_id' = %s", (ws_id,))
    ).fetchone()
    assert row[0]["traceparent"].split("-")[1] == trace_id
