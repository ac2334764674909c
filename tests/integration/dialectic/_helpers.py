"""Shared steps of the dialectic tests."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.integration.deriver._helpers import say, wait_derived

__all__ = [
    "chat",
    "diplomacy",
    "group_chat",
    "group_without_messages",
    "say",
    "sse_events",
    "wait_derived",
]


async def chat(
    client: httpx.AsyncClient, ws: str, peer: str, query: str, **body: Any
) -> httpx.Response:
    return await client.post(
        f"/v3/workspaces/{ws}/peers/{peer}/chat", json={"query": query, **body}
    )


async def group_without_messages(client: httpx.AsyncClient, ws: str) -> None:
    """The kitchen session of alice, bob and charlie, before anyone spoke (nothing to derive,
    so a test that ends here leaves no derivation running into the next test's clean-up)."""
    await client.post("/v3/workspaces", json={"id": ws})
    await client.post(
        f"/v3/workspaces/{ws}/sessions",
        json={"id": "kitchen", "peers": {"alice": {}, "bob": {}, "charlie": {}}},
    )


async def group_chat(client: httpx.AsyncClient, ws: str) -> dict[str, Any]:
    """alice, bob and charlie in one session; bob had eggs for breakfast (2026-11-20)."""
    await client.post("/v3/workspaces", json={"id": ws})
    await client.post(
        f"/v3/workspaces/{ws}/sessions",
        json={"id": "kitchen", "peers": {"alice": {}, "bob": {}, "charlie": {}}},
    )
    [message] = await say(
        client,
        ws,
        "kitchen",
        ("bob", "I had eggs for breakfast today"),
        created_at="2026-11-20T08:00:00Z",
    )
    return message


async def diplomacy(client: httpx.AsyncClient, ws: str) -> dict[str, list[dict[str, Any]]]:
    """The seed's Diplomacy game: a group chat of three and a side chat charlie is not in."""
    await client.post("/v3/workspaces", json={"id": ws})
    everyone = {p: {"observe_others": True} for p in ("alice", "bob", "charlie")}
    await client.post(
        f"/v3/workspaces/{ws}/sessions", json={"id": "diplomacy-turn-1", "peers": everyone}
    )
    await client.post(
        f"/v3/workspaces/{ws}/sessions",
        json={
            "id": "side-chat",
            "peers": {"alice": {"observe_others": True}, "bob": {"observe_others": True}},
        },
    )
    group = await say(client, ws, "diplomacy-turn-1", ("alice", "I'm going to be peaceful"))
    side = await say(client, ws, "side-chat", ("alice", "I'm actually going to attack Charlie"))
    return {"group": group, "side": side}


def sse_events(raw: str) -> list[dict[str, Any]]:
    """The JSON payloads of a text/event-stream body, asserting the exact framing."""
    assert raw.endswith("\n\n"), repr(raw[-20:])
    frames = raw[:-2].split("\n\n")
    events = []
    for frame in frames:
        assert frame.startswith("data: "), repr(frame)
        assert "\n" not in frame, repr(frame)
        events.append(json.loads(frame[len("data: ") :]))
    return events
