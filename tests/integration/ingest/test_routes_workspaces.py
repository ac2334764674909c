"""Workspace routes: get-or-create, list, update (upsert), delete."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.conftest import InfraEndpoints
from tests.integration.ingest._routes_helpers import (
    assert_422,
    make_session,
    make_workspace,
    read_events,
    ws_url,
)


async def test_create_workspace_returns_201_with_every_field(
    client: httpx.AsyncClient, ws_id: str, db: Any
) -> None:
    r = await client.post(
        "/v3/workspaces",
        json={
            "id": ws_id,
            "metadata": {"team": "red", "n": 1},
            "configuration": {"reasoning": {"enabled": False}},
        },
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"id", "metadata", "configuration", "created_at"}
    assert body["id"] == ws_id
    assert body["metadata"] == {"team": "red", "n": 1}
    assert body["configuration"] == {"reasoning": {"enabled": False}}
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None
    row = await (
        await db.execute("select metadata, configuration from workspaces where id = %s", (ws_id,))
    ).fetchone()
    assert row == ({"team": "red", "n": 1}, {"reasoning": {"enabled": False}})


async def test_create_workspace_without_options_has_empty_objects(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    body = await make_workspace(client, ws_id)
    assert body["metadata"] == {}
    assert body["configuration"] == {}


async def test_create_existing_workspace_returns_200_and_does_not_overwrite(
    client: httpx.AsyncClient, ws_id: str, db: Any
) -> None:
    first = await make_workspace(client, ws_id, metadata={"v": 1})
    r = await client.post(
        "/v3/workspaces",
        json={
            "id": ws_id,
            "metadata": {"v": 2},
            "configuration": {"dream": {"enabled": False}},
        },
    )
    assert r.status_code == 200, r.text
    assert r.json() == first
    row = await (
        await db.execute("select metadata, configuration from workspaces where id = %s", (ws_id,))
    ).fetchone()
    assert row == ({"v": 1}, {})


@pytest.mark.parametrize("kind", ["workspace", "peer", "session"])
async def test_concurrent_get_or_create_makes_one_and_finds_it_elsewhere(
    client: httpx.AsyncClient, ws_id: str, kind: str
) -> None:
    if kind != "workspace":
        await make_workspace(client, ws_id)
    url = {
        "workspace": "/v3/workspaces",
        "peer": ws_url(ws_id, "/peers"),
        "session": ws_url(ws_id, "/sessions"),
    }[kind]
    target = ws_id if kind == "workspace" else "same"
    responses = await asyncio.gather(
        *(client.post(url, json={"id": target, "metadata": {"n": i}}) for i in range(5))
    )
    assert Counter(r.status_code for r in responses) == {201: 1, 200: 4}
    [winner] = [r.json() for r in responses if r.status_code == 201]
    assert all(r.json() == winner for r in responses)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"id": "has space"}, "pattern"),
        ({"id": ""}, "at least 1"),
        ({"id": "x" * 513}, "at most 512"),
        ({}, "Field required"),
        ({"id": "ok", "metadata": ["not", "an", "object"]}, "dictionary"),
        ({"id": "ok", "unknown": 1}, "Extra inputs"),
        ({"id": "ok", "configuration": {"reasoning": {"bogus": True}}}, "Extra inputs"),
        ({"id": "ok", "configuration": {"nope": {}}}, "Extra inputs"),
    ],
    ids=[
        "bad-chars",
        "empty",
        "too-long",
        "missing-id",
        "metadata-list",
        "extra",
        "cfg-nested",
        "cfg-top",
    ],
)
async def test_create_workspace_rejects_invalid_body(
    client: httpx.AsyncClient, body: dict[str, Any], fragment: str
) -> None:
    r = await client.post("/v3/workspaces", json=body)
    assert_422(r, fragment)


async def test_list_workspaces_in_creation_order_with_filters(client: httpx.AsyncClient) -> None:
    for i, name in enumerate(["wa", "wb", "wc"]):
        await make_workspace(client, name, metadata={"i": i, "odd": i % 2 == 1})
    r = await client.post("/v3/workspaces/list")
    assert r.status_code == 200, r.text
    page = r.json()
    assert [w["id"] for w in page["items"]] == ["wa", "wb", "wc"]
    assert (page["total"], page["page"], page["size"], page["pages"]) == (3, 1, 50, 1)

    r = await client.post("/v3/workspaces/list", json={"filters": {"metadata": {"odd": True}}})
    assert [w["id"] for w in r.json()["items"]] == ["wb"]
    r = await client.post(
        "/v3/workspaces/list", params={"reverse": "true"}, json={"filters": {"id": ["wa", "wc"]}}
    )
    assert [w["id"] for w in r.json()["items"]] == ["wc", "wa"]
    assert r.json()["total"] == 2


async def test_list_workspaces_rejects_unknown_filter_field(client: httpx.AsyncClient) -> None:
    r = await client.post("/v3/workspaces/list", json={"filters": {"colour": "red"}})
    assert_422(r, "colour")


async def test_update_workspace_replaces_only_the_given_part(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    await make_workspace(
        client, ws_id, metadata={"a": 1}, configuration={"summary": {"enabled": True}}
    )
    r = await client.put(ws_url(ws_id), json={"metadata": {"b": 2}})
    assert r.status_code == 200, r.text
    assert r.json()["metadata"] == {"b": 2}
    assert r.json()["configuration"] == {"summary": {"enabled": True}}

    r = await client.put(ws_url(ws_id), json={"configuration": {"dream": {"enabled": False}}})
    assert r.status_code == 200, r.text
    assert r.json()["metadata"] == {"b": 2}
    assert r.json()["configuration"] == {"dream": {"enabled": False}}

    r = await client.post("/v3/workspaces", json={"id": ws_id})
    assert r.status_code == 200
    assert r.json()["metadata"] == {"b": 2}


async def test_update_unknown_workspace_creates_it(
    client: httpx.AsyncClient, ws_id: str, db: Any
) -> None:
    # The Honcho SDK's set_metadata PUTs without ever POSTing the workspace first.
    r = await client.put(ws_url(ws_id), json={"metadata": {"k": "v"}})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == ws_id
    assert r.json()["metadata"] == {"k": "v"}
    assert r.json()["configuration"] == {}
    row = await (
        await db.execute("select metadata from workspaces where id = %s", (ws_id,))
    ).fetchone()
    assert row == ({"k": "v"},)
    again = await client.post("/v3/workspaces", json={"id": ws_id})
    assert again.status_code == 200
    assert again.json()["metadata"] == {"k": "v"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v3/workspaces/bad%20id", {"metadata": {}}),
        ("/v3/workspaces/ok", {"metadata": "text"}),
        ("/v3/workspaces/ok", {"extra": 1}),
    ],
    ids=["bad-id", "metadata-str", "extra"],
)
async def test_update_workspace_rejects_invalid_input(
    client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    assert_422(await client.put(path, json=body))


async def test_delete_workspace_removes_it_and_its_peers(
    client: httpx.AsyncClient, infra: InfraEndpoints, ws_id: str, db: Any
) -> None:
    await make_workspace(client, ws_id)
    assert (await client.post(ws_url(ws_id, "/peers"), json={"id": "p"})).status_code == 201
    r = await client.delete(ws_url(ws_id))
    assert r.status_code == 204
    assert r.content == b""
    for query in (
        "select count(*) from workspaces where id = %s",
        "select count(*) from peers where workspace_id = %s",
    ):
        row = await (await db.execute(query, (ws_id,))).fetchone()
        assert row == (0,), query
    r = await client.post(ws_url(ws_id, "/peers"), json={"id": "p"})
    assert r.status_code == 404
    assert r.json() == {"detail": f"Workspace '{ws_id}' not found"}
    events = await read_events(infra, f"{infra.prefix}.workspace.deleted.{ws_id}", expect=1)
    assert [e.data["workspace_id"] for e in events] == [ws_id]


async def test_delete_unknown_workspace_is_404(client: httpx.AsyncClient, ws_id: str) -> None:
    r = await client.delete(ws_url(ws_id))
    assert r.status_code == 404
    assert r.json() == {"detail": f"Workspace '{ws_id}' not found"}


async def test_delete_workspace_with_active_sessions_is_409_until_they_are_gone(
    client: httpx.AsyncClient, ws_id: str, db: Any
) -> None:
    await make_session(client, ws_id, "s1")
    await make_session(client, ws_id, "s2", ensure_workspace=False)
    r = await client.delete(ws_url(ws_id))
    assert r.status_code == 409
    assert r.json() == {
        "detail": f"Workspace '{ws_id}' still has 2 active session(s); delete them first"
    }
    row = await (
        await db.execute("select count(*) from workspaces where id = %s", (ws_id,))
    ).fetchone()
    assert row == (1,)
    for s in ("s1", "s2"):
        assert (await client.delete(ws_url(ws_id, f"/sessions/{s}"))).status_code == 204
    assert (await client.delete(ws_url(ws_id))).status_code == 204
