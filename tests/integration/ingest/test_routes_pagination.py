"""Paging edges of every list route: size and page bounds, pages past the end, reverse, empty."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.integration.ingest._routes_helpers import (
    add_messages,
    make_session,
    make_workspace,
    ws_url,
)


@dataclass(frozen=True)
class ListRoute:
    name: str
    method: str
    path: str  # "{w}" is the workspace
    #: Makes 0 or 3 items; returns their ids in the route's default order.
    build: Callable[[httpx.AsyncClient, str, bool], Awaitable[list[str]]]
    reverse: bool = True


async def _workspaces(client: httpx.AsyncClient, ws: str, fill: bool) -> list[str]:
    ids = [f"{ws}-{i}" for i in range(3)] if fill else []
    for w in ids:
        await make_workspace(client, w)
    return ids


async def _peers(client: httpx.AsyncClient, ws: str, fill: bool) -> list[str]:
    await make_workspace(client, ws)
    ids = ["p-c", "p-a", "p-b"] if fill else []
    for p in ids:
        assert (await client.post(ws_url(ws, "/peers"), json={"id": p})).status_code == 201
    return ids


async def _sessions(client: httpx.AsyncClient, ws: str, fill: bool) -> list[str]:
    await make_workspace(client, ws)
    ids = ["s-c", "s-a", "s-b"] if fill else []
    for s in ids:
        await make_session(client, ws, s, ensure_workspace=False)
    return ids


async def _messages(client: httpx.AsyncClient, ws: str, fill: bool) -> list[str]:
    await make_session(client, ws, "s1")
    if not fill:
        return []
    made = await add_messages(client, ws, "s1", ("a", "one"), ("b", "two"))
    made += await add_messages(client, ws, "s1", ("a", "three"))
    return [m["id"] for m in made]


async def _conclusions(client: httpx.AsyncClient, ws: str, fill: bool) -> list[str]:
    await make_session(client, ws, "s1", peers={"a": {}})
    ids = []
    for i in range(3 if fill else 0):
        r = await client.post(
            ws_url(ws, "/conclusions"),
            json={"conclusions": [{"content": f"c{i}", "observer_id": "a", "observed_id": "a"}]},
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()[0]["id"])
    return ids[::-1]  # newest first


async def _peer_sessions(client: httpx.AsyncClient, ws: str, fill: bool) -> list[str]:
    await make_workspace(client, ws)
    assert (await client.post(ws_url(ws, "/peers"), json={"id": "p"})).status_code == 201
    ids = ["s-c", "s-a", "s-b"] if fill else []
    for s in ids:
        await make_session(client, ws, s, peers={"p": {}}, ensure_workspace=False)
    await make_session(client, ws, "not-a-member", ensure_workspace=False)
    return ids


async def _session_peers(client: httpx.AsyncClient, ws: str, fill: bool) -> list[str]:
    await make_session(client, ws, "s1")
    ids = ["p-c", "p-a", "p-b"] if fill else []
    for p in ids:
        r = await client.post(ws_url(ws, "/sessions/s1/peers"), json={p: {}})
        assert r.status_code == 200, r.text
    return ids


ROUTES = [
    ListRoute("workspaces", "POST", "/v3/workspaces/list", _workspaces),
    ListRoute("peers", "POST", "/v3/workspaces/{w}/peers/list", _peers),
    ListRoute("sessions", "POST", "/v3/workspaces/{w}/sessions/list", _sessions),
    ListRoute("messages", "POST", "/v3/workspaces/{w}/sessions/s1/messages/list", _messages),
    ListRoute("conclusions", "POST", "/v3/workspaces/{w}/conclusions/list", _conclusions),
    ListRoute("peer-sessions", "POST", "/v3/workspaces/{w}/peers/p/sessions", _peer_sessions),
    # The Honcho SDK reads one page of session peers, without paging parameters or order.
    ListRoute(
        "session-peers", "GET", "/v3/workspaces/{w}/sessions/s1/peers", _session_peers, False
    ),
]
PARAMS = [pytest.param(r, id=r.name) for r in ROUTES]


async def fetch(
    client: httpx.AsyncClient, route: ListRoute, ws: str, **params: Any
) -> httpx.Response:
    return await client.request(
        route.method, route.path.format(w=ws), params={k: str(v) for k, v in params.items()}
    )


def ids_of(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return [item["id"] for item in r.json()["items"]]


def meta(r: httpx.Response) -> tuple[int, int, int, int]:
    body = r.json()
    return body["total"], body["page"], body["size"], body["pages"]


@pytest.mark.parametrize("route", PARAMS)
async def test_default_page_holds_everything_in_order(
    client: httpx.AsyncClient, ws_id: str, route: ListRoute
) -> None:
    expected = await route.build(client, ws_id, True)
    r = await fetch(client, route, ws_id)
    assert ids_of(r) == expected
    assert meta(r) == (3, 1, 50, 1)


@pytest.mark.parametrize("route", PARAMS)
async def test_size_one_walks_every_page(
    client: httpx.AsyncClient, ws_id: str, route: ListRoute
) -> None:
    expected = await route.build(client, ws_id, True)
    seen = []
    for page in (1, 2, 3):
        r = await fetch(client, route, ws_id, page=page, size=1)
        assert meta(r) == (3, page, 1, 3)
        seen += ids_of(r)
    assert seen == expected


@pytest.mark.parametrize("route", PARAMS)
async def test_page_past_the_end_is_empty_with_truthful_totals(
    client: httpx.AsyncClient, ws_id: str, route: ListRoute
) -> None:
    await route.build(client, ws_id, True)
    r = await fetch(client, route, ws_id, page=4, size=1)
    assert ids_of(r) == []
    assert meta(r) == (3, 4, 1, 3)
    r = await fetch(client, route, ws_id, page=2)
    assert ids_of(r) == []
    assert meta(r) == (3, 2, 50, 1)
    r = await fetch(client, route, ws_id, page=2, size=2)
    assert len(ids_of(r)) == 1
    assert meta(r) == (3, 2, 2, 2)


@pytest.mark.parametrize("route", PARAMS)
async def test_size_100_is_accepted(
    client: httpx.AsyncClient, ws_id: str, route: ListRoute
) -> None:
    expected = await route.build(client, ws_id, True)
    r = await fetch(client, route, ws_id, size=100)
    assert ids_of(r) == expected
    assert meta(r) == (3, 1, 100, 1)


BAD_PAGING = [
    {"size": 101},
    {"size": 0},
    {"page": 0},
    {"page": -1},
    {"page": "x"},
    {"reverse": "maybe"},
]


@pytest.mark.parametrize("route", PARAMS)
async def test_out_of_range_paging_is_422(
    client: httpx.AsyncClient, ws_id: str, route: ListRoute
) -> None:
    await route.build(client, ws_id, False)
    for params in BAD_PAGING:
        r = await fetch(client, route, ws_id, **params)
        assert r.status_code == 422, (params, r.text)
        [error] = r.json()["detail"]
        assert error["loc"] == ["query", next(iter(params))], params


@pytest.mark.parametrize("route", [p for p in PARAMS if p.values[0].reverse])
async def test_reverse_flips_the_order(
    client: httpx.AsyncClient, ws_id: str, route: ListRoute
) -> None:
    expected = await route.build(client, ws_id, True)
    r = await fetch(client, route, ws_id, reverse="true")
    assert ids_of(r) == expected[::-1]
    r = await fetch(client, route, ws_id, reverse="true", page=2, size=2)
    assert ids_of(r) == expected[::-1][2:]


@pytest.mark.parametrize("route", PARAMS)
async def test_empty_list_has_zero_pages(
    client: httpx.AsyncClient, ws_id: str, route: ListRoute
) -> None:
    await route.build(client, ws_id, False)
    r = await fetch(client, route, ws_id)
    assert ids_of(r) == []
    assert meta(r) == (0, 1, 50, 0)
    r = await fetch(client, route, ws_id, page=3, size=7)
    assert meta(r) == (0, 3, 7, 0)


@pytest.mark.parametrize("route", [p for p in PARAMS if p.values[0].method == "POST"])
async def test_list_accepts_empty_body_with_json_content_type(
    client: httpx.AsyncClient, ws_id: str, route: ListRoute
) -> None:
    # The Honcho SDK POSTs lists with Content-Length 0 but a JSON content type.
    expected = await route.build(client, ws_id, True)
    r = await client.post(
        route.path.format(w=ws_id), content=b"", headers={"Content-Type": "application/json"}
    )
    assert ids_of(r) == expected
