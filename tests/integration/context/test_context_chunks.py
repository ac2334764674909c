"""get_context over more messages than one selection chunk (200), with and without a
perspective: the messages are chosen on (seq, token_count) pairs in chunks and then loaded, so
the result must still be the newest contiguous run of what the viewer witnessed, chronological,
within the budget and maximal."""

from __future__ import annotations

from typing import Any

import httpx

WS = "chunks-ws"
S = f"/v3/workspaces/{WS}/sessions/long"


async def _post(client: httpx.AsyncClient, start: int, count: int) -> None:
    for first in range(start, start + count, 100):
        batch = [
            {"peer_id": "alice" if i % 2 else "bob", "content": f"message {i} " + "word " * (i % 7)}
            for i in range(first, min(start + count, first + 100))
        ]
        r = await client.post(f"{S}/messages", json={"messages": batch})
        assert r.status_code == 201, r.text


async def _all_messages(db: Any) -> list[tuple[int, str, int]]:
    cur = await db.execute(
        "SELECT seq, id, token_count FROM messages WHERE workspace_id = %s AND session_id = "
        "'long' ORDER BY seq",
        (WS,),
    )
    return [(int(r[0]), str(r[1]), int(r[2])) for r in await cur.fetchall()]


def _check(body: dict[str, Any], eligible: list[tuple[int, str, int]], budget: int) -> None:
    got = [m["id"] for m in body["messages"]]
    k = len(got)
    assert k > 200, "the case must span more than one selection chunk"
    assert got == [m[1] for m in eligible[len(eligible) - k :]]
    used = sum(m["token_count"] for m in body["messages"])
    assert used <= budget
    if k < len(eligible):
        assert used + eligible[len(eligible) - k - 1][2] > budget, "a message that fits was left"


async def test_context_spanning_several_chunks_with_and_without_a_perspective(
    client: httpx.AsyncClient, db: Any
) -> None:
    assert (await client.post("/v3/workspaces", json={"id": WS})).status_code in (200, 201)
    r = await client.post(f"/v3/workspaces/{WS}/sessions", json={"id": "long", "peers": {}})
    assert r.status_code == 201, r.text
    await _post(client, 0, 150)
    # carol joins after message 150: she witnessed only what came after.
    r = await client.post(f"{S}/peers", json={"carol": {}})
    assert r.status_code in (200, 201), r.text
    await _post(client, 150, 350)
    messages = await _all_messages(db)
    assert len(messages) == 500

    # Everything fits: all 500 messages, in order (three chunks of 200).
    r = await client.get(f"{S}/context", params={"tokens": 100_000, "summary": "false"})
    assert r.status_code == 200, r.text
    _check(r.json(), messages, 100_000)
    assert len(r.json()["messages"]) == 500

    # A budget that cuts inside the second chunk.
    budget = sum(m[2] for m in messages[-260:]) + 1
    r = await client.get(f"{S}/context", params={"tokens": budget, "summary": "false"})
    assert r.status_code == 200, r.text
    _check(r.json(), messages, budget)
    assert len(r.json()["messages"]) == 260

    # carol's perspective: only messages 151-500, all of them (two chunks).
    r = await client.get(
        f"{S}/context",
        params={
            "tokens": 100_000,
            "summary": "false",
            "peer_target": "alice",
            "peer_perspective": "carol",
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    witnessed = [m for m in messages if m[0] > 150]
    assert [m["id"] for m in body["messages"]] == [m[1] for m in witnessed]
