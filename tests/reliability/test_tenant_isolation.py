"""Tenant isolation through results, not just status codes: two workspaces with confusable
content (same peer and session names, same words), both derived; workspace A's key searches,
queries conclusions (vector search), chats and builds context and representations in A, and
nothing of B ever comes back (no B text, marker or id). Every B path with A's key is refused
(401/403/404) and writes nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import JWT_SECRET, AppFactory, bearer

MARKER = "quokka7731"  # only ever written into workspace B
ADMIN = bearer(admin=True)


async def _ok(client: httpx.AsyncClient, method: str, path: str, body: Any = None) -> Any:
    r = await client.request(method, path, json=body, headers=ADMIN)
    assert r.status_code in (200, 201), (path, r.text)
    return r.json()


async def _world(client: httpx.AsyncClient, ws: str, town: str, extra: str) -> list[str]:
    """alice and bob (who observes others) in session s1 of ``ws``, talking about violins."""
    await _ok(client, "POST", "/v3/workspaces", {"id": ws})
    await _ok(
        client,
        "POST",
        f"/v3/workspaces/{ws}/sessions",
        {"id": "s1", "peers": {"alice": {}, "bob": {"observe_others": True}}},
    )
    stored = await _ok(
        client,
        "POST",
        f"/v3/workspaces/{ws}/sessions/s1/messages",
        {
            "messages": [
                {
                    "peer_id": "alice",
                    "content": f"I play the violin at the harbour in {town}{extra}",
                    "metadata": {"tag": f"violin{extra}"},
                },
                {"peer_id": "bob", "content": f"I play the violin too, mostly jazz{extra}"},
            ]
        },
    )
    await _ok(
        client,
        "POST",
        f"/v3/workspaces/{ws}/conclusions",
        {
            "conclusions": [
                {
                    "content": f"alice plays the violin in {town}{extra}",
                    "observer_id": "bob",
                    "observed_id": "alice",
                }
            ]
        },
    )
    return [m["id"] for m in stored]


async def _wait_derived(client: httpx.AsyncClient, ws: str) -> None:
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        status = await _ok(client, "GET", f"/v3/workspaces/{ws}/queue/status")
        if status["total_work_units"] == 2 and status["completed_work_units"] == 2:
            return
        assert asyncio.get_running_loop().time() < deadline, status
        await asyncio.sleep(0.2)


async def _counts(dsn: str, ws: str) -> dict[str, int]:
    out = {}
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for table in (
            "messages",
            "conclusions",
            "peers",
            "sessions",
            "webhook_endpoints",
            "session_peers",
            "outbox",
        ):
            column = "payload->>'workspace_id'" if table == "outbox" else "workspace_id"
            row = await (
                await conn.execute(
                    f"SELECT count(*) FROM {table} WHERE {column} = %s",  # noqa: S608 - constants
                    (ws,),
                )
            ).fetchone()
            assert row is not None
            out[table] = int(row[0])
    return out


@pytest.mark.timeout(120)
async def test_workspace_key_never_sees_or_touches_another_workspace(
    app_factory: AppFactory, ws_id: str, infra: Any
) -> None:
    client = await app_factory(auth_enabled=True, jwt_secret=JWT_SECRET, deriver_enabled=True)
    a, b = f"{ws_id}-a", f"{ws_id}-b"
    a_ids = await _world(client, a, "Porto", "")
    b_ids = await _world(client, b, "Lisbon", f" {MARKER}")
    await asyncio.gather(_wait_derived(client, a), _wait_derived(client, b))
    b_conclusions = await _ok(
        client, "POST", f"/v3/workspaces/{b}/conclusions/list", {"filters": {}}
    )
    b_secrets = [MARKER, "Lisbon", *b_ids, *(c["id"] for c in b_conclusions["items"])]
    assert len(b_conclusions["items"]) >= 3  # derived and manual conclusions exist in B

    key_a = bearer(workspace_id=a)
    w = f"/v3/workspaces/{a}"
    reads: list[tuple[str, str, Any]] = [
        ("POST", f"{w}/search", {"query": "violin harbour"}),
        ("POST", f"{w}/search", {"query": f"violin {MARKER}", "limit": 100}),
        ("POST", f"{w}/search", {"query": "violin", "filters": {"workspace_id": b}}),
        ("POST", f"{w}/sessions/s1/search", {"query": "violin jazz Lisbon"}),
        ("POST", f"{w}/peers/alice/search", {"query": "violin harbour"}),
        (
            "POST",
            f"{w}/conclusions/query",
            {"query": f"alice violin {MARKER}", "filters": {"observer_id": "bob"}, "top_k": 100},
        ),
        (
            "POST",
            f"{w}/conclusions/query",
            {"query": "violin", "filters": {"observer_id": "alice", "observed_id": "alice"}},
        ),
        ("POST", f"{w}/conclusions/list", {"filters": {}}),
        ("POST", f"{w}/conclusions/list", {"filters": {"workspace_id": b}}),
        ("POST", f"{w}/peers/bob/chat", {"query": "Where does alice play the violin?"}),
        (
            "POST",
            f"{w}/peers/bob/chat",
            {"query": f"Does alice play in Lisbon {MARKER}?", "target": "alice"},
        ),
        ("GET", f"{w}/sessions/s1/context?search_query=violin&peer_target=alice", None),
        ("GET", f"{w}/peers/bob/context?target=alice&search_query=violin", None),
        ("POST", f"{w}/peers/bob/representation", {"target": "alice", "search_query": "violin"}),
        ("GET", f"{w}/peers/bob/card?target=alice", None),
        ("POST", f"{w}/sessions/s1/messages/list", {}),
        ("POST", f"{w}/peers/list", {}),
        ("POST", f"{w}/sessions/list", {}),
        ("GET", f"{w}/queue/dead_letters", None),
    ]
    seen_a = False
    for method, path, body in reads:
        r = await client.request(method, path, json=body, headers=key_a)
        assert r.status_code in (200, 422), (path, body, r.status_code, r.text)
        text = r.text
        for secret in b_secrets:
            assert secret not in text, (path, body, secret)
        seen_a = seen_a or "Porto" in text or any(i in text for i in a_ids)
        if r.status_code == 200 and "search" in path and isinstance(r.json(), list):
            assert all(m["workspace_id"] == a for m in r.json()), (path, body)
    assert seen_a  # the reads did return A's own data
    chat = await client.post(
        f"{w}/peers/bob/chat",
        json={"query": "Where does alice play the violin?", "target": "alice"},
        headers=key_a,
    )
    assert chat.status_code == 200 and "Porto" in json.dumps(chat.json()), chat.text

    # B's paths with A's key: refused, and nothing is written.
    before = await _counts(infra.dsn, b)
    wb = f"/v3/workspaces/{b}"
    attempts: list[tuple[str, str, Any]] = [
        *((m, p.replace(w, wb), body) for m, p, body in reads),
        ("POST", "/v3/workspaces", {"id": b}),
        ("PUT", wb, {"metadata": {"owned": True}}),
        ("DELETE", wb, None),
        ("POST", f"{wb}/sessions", {"id": "s9"}),
        ("POST", f"{wb}/peers", {"id": "mallory"}),
        (
            "POST",
            f"{wb}/sessions/s1/messages",
            {"messages": [{"peer_id": "alice", "content": "x"}]},
        ),
        (
            "POST",
            f"{wb}/conclusions",
            {"conclusions": [{"content": "x", "observer_id": "bob", "observed_id": "alice"}]},
        ),
        ("DELETE", f"{wb}/sessions/s1", None),
        ("POST", f"{wb}/webhooks", {"url": "https://hooks.example.com/x"}),
        ("POST", f"{wb}/schedule_dream", {"observer": "bob", "observed": "alice"}),
        ("GET", f"{wb}/queue/status", None),
    ]
    for method, path, body in attempts:
        r = await client.request(method, path, json=body, headers=key_a)
        assert r.status_code in (401, 403, 404), (method, path, r.status_code, r.text)
        for secret in b_secrets:
            assert secret not in r.text, (path, secret)
    # A's peer key is refused on B's same-named peer too.
    r = await client.post(
        f"{wb}/peers/alice/chat",
        json={"query": "violin?"},
        headers=bearer(workspace_id=a, peer_id="alice"),
    )
    assert r.status_code in (401, 403, 404), r.text
    await asyncio.sleep(0.5)  # anything wrongly accepted would have committed by now
    assert await _counts(infra.dsn, b) == before
