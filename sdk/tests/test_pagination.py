"""Pagination: iterating fetches page after page, stops at ``pages``, passes options."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from rapport import Page, Paginator, Peer, Session

from .conftest import FakeServer, body_of, conclusion_json, message_json, peer_json, session_json

PEERS_LIST = "/v3/workspaces/ws/peers/list"


def paged(items: list[Any], *, pages_total: int | None = None, honour_page: bool = True) -> Any:
    """A list route serving ``items`` in pages of the requested size."""

    def answer(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", "1")) if honour_page else 1
        size = int(request.url.params.get("size", "50"))
        pages = pages_total if pages_total is not None else max(1, -(-len(items) // size))
        chunk = items[(page - 1) * size : page * size]
        body = {"items": chunk, "total": len(items), "page": page, "size": size, "pages": pages}
        return httpx.Response(200, json=body)

    return answer


def test_iterates_across_every_page(server: FakeServer) -> None:
    server.on("POST", PEERS_LIST, paged([peer_json(f"p{i}") for i in range(7)]))
    with server.sync_client() as client:
        peers = list(client.peers(size=3))
    assert [p.id for p in peers] == [f"p{i}" for i in range(7)]
    assert all(isinstance(p, Peer) and p.info is not None for p in peers)
    pages = [r.url.params["page"] for r in server.calls("POST", PEERS_LIST)]
    assert pages == ["1", "2", "3"]


def test_stops_at_pages_even_if_items_keep_coming(server: FakeServer) -> None:
    # The server says there are 2 pages; the client must not ask for a third.
    server.on("POST", PEERS_LIST, paged([peer_json(f"p{i}") for i in range(9)], pages_total=2))
    with server.sync_client() as client:
        assert len(list(client.peers(size=3))) == 6
    assert len(server.calls("POST", PEERS_LIST)) == 2


def test_passes_filters_size_and_reverse(server: FakeServer) -> None:
    server.on("POST", PEERS_LIST, paged([peer_json("a"), peer_json("b")]))
    filters = {"metadata": {"team": "red"}, "created_at": {"gte": "2024-01-01"}}
    with server.sync_client() as client:
        list(client.peers(filters, size=1, reverse=True))
    calls = server.calls("POST", PEERS_LIST)
    assert len(calls) == 2
    for number, request in enumerate(calls, start=1):
        assert body_of(request) == {"filters": filters}
        assert dict(request.url.params) == {"page": str(number), "size": "1", "reverse": "true"}


def test_no_filters_sends_no_body_and_no_reverse(server: FakeServer) -> None:
    server.on("POST", PEERS_LIST, paged([]))
    with server.sync_client() as client:
        assert list(client.peers()) == []
    (request,) = server.calls("POST", PEERS_LIST)
    assert request.content == b""
    assert dict(request.url.params) == {"page": "1", "size": "50"}


def test_a_server_ignoring_page_does_not_loop_forever(server: FakeServer) -> None:
    items = [peer_json(f"p{i}") for i in range(4)]
    server.on("POST", PEERS_LIST, paged(items, pages_total=2, honour_page=False))
    with server.sync_client() as client:
        assert [p.id for p in client.peers(size=2)] == ["p0", "p1"]
    # Page 2 came back labelled page 1: its items are not yielded again, iteration stops.
    assert len(server.calls("POST", PEERS_LIST)) == 2


def test_empty_page_ends_iteration(server: FakeServer) -> None:
    server.on("POST", PEERS_LIST, paged([], pages_total=5))
    with server.sync_client() as client:
        assert list(client.peers()) == []
    assert len(server.calls("POST", PEERS_LIST)) == 1


def test_single_page_and_re_iteration(server: FakeServer) -> None:
    server.on("POST", PEERS_LIST, paged([peer_json(f"p{i}") for i in range(5)]))
    with server.sync_client() as client:
        paginator = client.peers(size=2)
        page = paginator.page(3)
        assert isinstance(page, Page)
        assert [p.id for p in page.items] == ["p4"]
        assert (page.page, page.pages, page.total, page.size, page.has_next) == (3, 3, 5, 2, False)
        assert len(paginator.to_list()) == 5
        assert len(list(paginator)) == 5  # each iteration starts again at page 1
        with pytest.raises(ValueError, match="from 1"):
            paginator.page(0)


def test_size_is_validated_before_any_request(server: FakeServer) -> None:
    with server.sync_client() as client:
        assert isinstance(client.peers(size=100), Paginator)
        with pytest.raises(ValueError, match="between 1 and 100"):
            client.peers(size=101)
        with pytest.raises(ValueError, match="between 1 and 100"):
            client.sessions(size=0)
    assert server.requests == []


def test_sessions_messages_and_conclusions_paginate(server: FakeServer) -> None:
    server.on("POST", "/v3/workspaces/ws/sessions/list", paged([session_json("s1")]))
    server.on("POST", "/v3/workspaces/ws/peers/alice/sessions", paged([session_json("s2")]))
    server.on(
        "POST",
        "/v3/workspaces/ws/sessions/s1/messages/list",
        paged([message_json(f"m{i}", f"text {i}", "alice") for i in range(3)]),
    )
    server.on(
        "POST",
        "/v3/workspaces/ws/conclusions/list",
        paged([conclusion_json("c1", "alice", "bob")]),
    )
    with server.sync_client() as client:
        assert [s.id for s in client.sessions()] == ["s1"]
        assert all(isinstance(s, Session) for s in client.sessions())
        alice = Peer(client, "alice")
        assert [s.id for s in alice.sessions()] == ["s2"]
        messages = list(Session(client, "s1").messages(size=2, filters={"peer_id": "alice"}))
        assert [m.content for m in messages] == ["text 0", "text 1", "text 2"]
        assert [c.id for c in alice.conclusions_of("bob").list(session="s9")] == ["c1"]
    listing = server.calls("POST", "/v3/workspaces/ws/conclusions/list")[0]
    assert body_of(listing) == {
        "filters": {"observer_id": "alice", "observed_id": "bob", "session_id": "s9"}
    }


def test_missing_page_counts_are_tolerated(server: FakeServer) -> None:
    server.json("POST", PEERS_LIST, {"items": [peer_json("solo")]})
    with server.sync_client() as client:
        assert [p.id for p in client.peers()] == ["solo"]
    assert len(server.calls("POST", PEERS_LIST)) == 1


def test_session_peers_and_dead_letters_use_get(server: FakeServer) -> None:
    server.on("GET", "/v3/workspaces/ws/sessions/s1/peers", paged([peer_json("a"), peer_json("b")]))
    dead = {
        "id": "d1",
        "workspace_id": "ws",
        "session_id": "s1",
        "consumer": "deriver",
        "event_type": "message.created",
        "event_id": "e1",
        "error": "boom",
        "attempts": 5,
        "created_at": "2024-05-01T12:00:00Z",
        "retried_at": None,
        "payload": {"x": 1},
    }
    server.on("GET", "/v3/workspaces/ws/queue/dead_letters", paged([dead]))
    with server.sync_client() as client:
        assert [p.id for p in Session(client, "s1").peers()] == ["a", "b"]
        letters = list(client.dead_letters(include_retried=True, size=10))
    assert letters[0].error == "boom" and letters[0].attempts == 5
    request = server.calls("GET", "/v3/workspaces/ws/queue/dead_letters")[0]
    assert dict(request.url.params) == {"page": "1", "size": "10", "include_retried": "true"}


async def test_async_paginator_iterates_across_pages(server: FakeServer) -> None:
    server.on("POST", PEERS_LIST, paged([peer_json(f"p{i}") for i in range(5)]))
    async with server.async_client() as client:
        ids = [p.id async for p in client.peers({"id": {"ne": "x"}}, size=2)]
        assert ids == [f"p{i}" for i in range(5)]
        page = await client.peers(size=2).page(2)
        assert [p.id for p in page.items] == ["p2", "p3"]
        assert len(await client.peers(size=4).to_list()) == 5
    first = server.calls("POST", PEERS_LIST)[0]
    assert body_of(first) == {"filters": {"id": {"ne": "x"}}}
