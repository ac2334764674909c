from __future__ import annotations

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
