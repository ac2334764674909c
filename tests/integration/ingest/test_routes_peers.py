"""Peer routes: get-or-create, list, update, the sessions of a peer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.integration.ingest._routes_helpers import (
    add_messages,
    assert_422,
    make_session,
    make_workspace,
    ws_url,
)


async def test_create_peer_returns_201_with_every_field(
    client: httpx.AsyncClient, ws_id: str, db: Any
) -> None:
    await make_workspace(client, ws_id)
    r = await client.post(
        ws_url(ws_id, "/peers"),
        json={"id": "alice", "metadata": {"role": "user"}, "configuration": {"observe_me": False}},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"id", "workspace_id", "metadata", "configuration", "created_at"}
    assert (body["id"], body["workspace_id"]) == ("alice", ws_id)
    assert body["metadata"] == {"role": "user"}
    assert body["configuration"] == {"observe_me": False}
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None
    row = await (
        await db.execute(
            "select metadata, configuration from peers where workspace_id = %s and id = %s",
            (ws_id, "alice"),
        )
    ).fetchone()
    assert row == ({"role": "user"}, {"observe_me": False})


async def test_create_existing_peer_returns_200_and_does_not_overwrite(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    await make_workspace(client, ws_id)
    first = await client.post(ws_url(ws_id, "/peers"), json={"id": "p", "metadata": {"v": 1}})
    assert first.status_code == 201
    again = await client.post(
        ws_url(ws_id, "/peers"),
        json={"id": "p", "metadata": {"v": 2}, "configuration": {"observe_me": False}},
    )
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert again.json()["configuration"] == {}


async def test_create_peer_in_unknown_workspace_is_404(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    r = await client.post(ws_url(ws_id, "/peers"), json={"id": "p"})
    assert r.status_code == 404
    assert r.json() == {"detail": f"Workspace '{ws_id}' not found"}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"id": "a.b"}, "pattern"),
        ({"id": "p", "configuration": {"observe_me": "sometimes"}}, "observe_me"),
        ({"id": "p", "configuration": {"deriver": True}}, "Extra inputs"),
        ({"id": "p", "metadata": None, "colour": "red"}, "Extra inputs"),
    ],
    ids=["bad-id", "bad-config-type", "unknown-config-key", "extra-field"],
)
async def test_create_peer_rejects_invalid_body(
    client: httpx.AsyncClient, ws_id: str, body: dict[str, Any], fragment: str
) -> None:
    await make_workspace(client, ws_id)
    assert_422(await client.post(ws_url(ws_id, "/peers"), json=body), fragment)


async def test_list_peers_in_creation_order_with_metadata_filter(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    await make_workspace(client, ws_id)
    for name, kind in (("p1", "bot"), ("p2", "human"), ("p3", "bot")):
        r = await client.post(ws_url(ws_id, "/peers"), json={"id": name, "metadata": {"k": kind}})
        assert r.status_code == 201
    r = await client.post(ws_url(ws_id, "/peers/list"))
    assert r.status_code == 200, r.text
    assert [p["id"] for p in r.json()["items"]] == ["p1", "p2", "p3"]
    assert all(p["workspace_id"] == ws_id for p in r.json()["items"])

    r = await client.post(
        ws_url(ws_id, "/peers/list"),
        params={"reverse": "true"},
        json={"filters": {"metadata": {"k": "bot"}}},
    )
    assert [p["id"] for p in r.json()["items"]] == ["p3", "p1"]
    assert (r.json()["total"], r.json()["pages"]) == (2, 1)


async def test_list_peers_unknown_workspace_is_404(client: httpx.AsyncClient, ws_id: str) -> None:
    r = await client.post(ws_url(ws_id, "/peers/list"))
    assert r.status_code == 404
    assert r.json() == {"detail": f"Workspace '{ws_id}' not found"}


@pytest.mark.parametrize(
    "filters",
    [{"nickname": "x"}, {"id": {"near": "x"}}, {"created_at": "yesterday"}, {"AND": {"id": "x"}}],
    ids=["unknown-field", "unknown-op", "bad-date", "and-not-list"],
)
async def test_list_peers_rejects_bad_filters(
    client: httpx.AsyncClient, ws_id: str, filters: dict[str, Any]
) -> None:
    await make_workspace(client, ws_id)
    r = await client.post(ws_url(ws_id, "/peers/list"), json={"filters": filters})
    assert_422(r, "Invalid filter")


async def test_update_peer_replaces_metadata_and_configuration_separately(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    await make_workspace(client, ws_id)
    await client.post(
        ws_url(ws_id, "/peers"),
        json={"id": "p", "metadata": {"a": 1}, "configuration": {"observe_me": True}},
    )
    r = await client.put(ws_url(ws_id, "/peers/p"), json={"metadata": {"b": 2}})
    assert r.status_code == 200, r.text
    assert (r.json()["metadata"], r.json()["configuration"]) == ({"b": 2}, {"observe_me": True})
    r = await client.put(ws_url(ws_id, "/peers/p"), json={"configuration": {"observe_me": False}})
    assert r.status_code == 200, r.text
    assert (r.json()["metadata"], r.json()["configuration"]) == ({"b": 2}, {"observe_me": False})
    listed = (await client.post(ws_url(ws_id, "/peers/list"))).json()["items"]
    assert listed[0]["metadata"] == {"b": 2}
    assert listed[0]["configuration"] == {"observe_me": False}


async def test_update_unknown_peer_is_404(client: httpx.AsyncClient, ws_id: str) -> None:
    await make_workspace(client, ws_id)
    r = await client.put(ws_url(ws_id, "/peers/ghost"), json={"metadata": {}})
    assert r.status_code == 404
    assert r.json() == {"detail": f"Peer 'ghost' not found in workspace '{ws_id}'"}


async def test_update_peer_in_unknown_workspace_is_404(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    r = await client.put(ws_url(ws_id, "/peers/ghost"), json={"metadata": {}})
    assert r.status_code == 404
    assert r.json() == {"detail": f"Workspace '{ws_id}' not found"}


async def test_peer_sessions_lists_only_sessions_it_currently_belongs_to(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    await make_session(client, ws_id, "s1", peers={"alice": {}})
    await make_session(client, ws_id, "s2", peers={"bob": {}}, ensure_workspace=False)
    await make_session(client, ws_id, "s3", ensure_workspace=False)
    await add_messages(client, ws_id, "s3", ("alice", "hi"))  # authors join
    url = ws_url(ws_id, "/peers/alice/sessions")
    r = await client.post(url)
    assert r.status_code == 200, r.text
    assert [s["id"] for s in r.json()["items"]] == ["s1", "s3"]
    assert r.json()["total"] == 2

    r = await client.request("DELETE", ws_url(ws_id, "/sessions/s1/peers"), json=["alice"])
    assert r.status_code == 200, r.text
    assert [s["id"] for s in (await client.post(url)).json()["items"]] == ["s3"]
    r = await client.post(url, json={"filters": {"id": "s1"}})
    assert r.json()["items"] == []


async def test_peer_sessions_of_unknown_peer_is_404(client: httpx.AsyncClient, ws_id: str) -> None:
    await make_workspace(client, ws_id)
    r = await client.post(ws_url(ws_id, "/peers/ghost/sessions"))
    assert r.status_code == 404
    assert r.json() == {"detail": f"Peer 'ghost' not found in workspace '{ws_id}'"}
