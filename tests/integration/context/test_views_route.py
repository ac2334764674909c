"""``GET /v3/workspaces/{w}/views`` (Rapport addition): every observer → observed view with its
number of conclusions and card facts, within the key's scope."""

from __future__ import annotations

import httpx

from tests.conftest import bearer


async def _seed(client: httpx.AsyncClient, ws: str, headers: dict[str, str]) -> None:
    r = await client.post("/v3/workspaces", json={"id": ws}, headers=headers)
    assert r.status_code == 201, r.text
    for peer in ("alice", "bob", "charlie"):
        r = await client.post(f"/v3/workspaces/{ws}/peers", json={"id": peer}, headers=headers)
        assert r.status_code == 201, r.text
    conclusions = [
        ("alice", "alice", "alice likes pancakes"),
        ("alice", "alice", "alice plays Diplomacy"),
        ("bob", "alice", "alice likes pancakes"),
        ("bob", "alice", "alice will attack Moscow"),
        ("bob", "alice", "alice is peaceful"),
        ("charlie", "alice", "alice is peaceful"),
    ]
    r = await client.post(
        f"/v3/workspaces/{ws}/conclusions",
        json={
            "conclusions": [
                {"observer_id": o, "observed_id": d, "content": c} for o, d, c in conclusions
            ]
        },
        headers=headers,
    )
    assert r.status_code == 201, r.text
    # A view that holds only a card (no conclusions) is a view too.
    r = await client.put(
        f"/v3/workspaces/{ws}/peers/charlie/card?target=bob",
        json={"peer_card": ["bob drinks black coffee", "bob supports alice"]},
        headers=headers,
    )
    assert r.status_code == 200, r.text


def _view(observer: str, observed: str, conclusions: int, card: int) -> dict[str, object]:
    return {
        "observer_id": observer,
        "observed_id": observed,
        "conclusions": conclusions,
        "card_facts": card,
    }


async def test_views_lists_every_view_with_its_size(client: httpx.AsyncClient, ws_id: str) -> None:
    await _seed(client, ws_id, {})
    r = await client.get(f"/v3/workspaces/{ws_id}/views")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "items": [
            _view("alice", "alice", 2, 0),
            _view("bob", "alice", 3, 0),
            _view("charlie", "alice", 1, 0),
            _view("charlie", "bob", 0, 2),
        ]
    }
    r = await client.get(f"/v3/workspaces/{ws_id}/views", params={"observer_id": "bob"})
    assert r.json()["items"] == [_view("bob", "alice", 3, 0)]


async def test_views_of_an_empty_or_unknown_workspace(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    await client.post("/v3/workspaces", json={"id": ws_id})
    assert (await client.get(f"/v3/workspaces/{ws_id}/views")).json() == {"items": []}
    r = await client.get("/v3/workspaces/no-such-ws/views")
    assert r.status_code == 404
    assert "no-such-ws" in r.json()["detail"]
    r = await client.get(f"/v3/workspaces/{ws_id}/views", params={"observer_id": "bad id!"})
    assert r.status_code == 422


async def test_views_respect_the_keys_scope(auth_client: httpx.AsyncClient, ws_id: str) -> None:
    await _seed(auth_client, ws_id, bearer(admin=True))
    url = f"/v3/workspaces/{ws_id}/views"
    # A workspace key of this workspace sees every view.
    r = await auth_client.get(url, headers=bearer(workspace_id=ws_id))
    assert r.status_code == 200 and len(r.json()["items"]) == 4
    # Another workspace's key sees nothing here.
    r = await auth_client.get(url, headers=bearer(workspace_id="elsewhere"))
    assert r.status_code == 403
    # A peer key sees only the views it holds, and cannot ask for another observer's.
    r = await auth_client.get(url, headers=bearer(workspace_id=ws_id, peer_id="charlie"))
    assert r.status_code == 200, r.text
    assert r.json()["items"] == [_view("charlie", "alice", 1, 0), _view("charlie", "bob", 0, 2)]
    r = await auth_client.get(
        url, params={"observer_id": "bob"}, headers=bearer(workspace_id=ws_id, peer_id="charlie")
    )
    assert r.status_code == 403
    # A session key has no workspace-wide view; no key at all is a 401.
    r = await auth_client.get(url, headers=bearer(workspace_id=ws_id, session_id="s1"))
    assert r.status_code == 403
    assert (await auth_client.get(url)).status_code == 401
