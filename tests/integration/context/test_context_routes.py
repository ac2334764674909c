"""The context service through HTTP: search (workspace, session, peer; hybrid; filters;
perspective), conclusion query, representation, peer card, peer context, summaries, the shape of
get_context, and what peer-scoped keys may read.

The reads run against one derived world (the deriver-enabled all-in-one app: extractive
reasoner, local embedder, pgvector), built once per module in its own workspace. Tests that write
(cards) use their own workspaces. The token budget of get_context is covered by
``test_context_budget.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.conftest import JWT_SECRET, AppFactory, bearer
from tests.integration.deriver._helpers import wait_derived

Json = Any
MESSAGE_FIELDS = {
    "id",
    "content",
    "peer_id",
    "session_id",
    "workspace_id",
    "metadata",
    "created_at",
    "token_count",
}
CONCLUSION_FIELDS = {
    "id",
    "content",
    "observer_id",
    "observed_id",
    "session_id",
    "level",
    "source_ids",
    "created_at",
}
SUMMARY_FIELDS = {"content", "message_id", "summary_type", "created_at", "token_count"}
EVERYONE = {"observe_others": True}

# (key, session, peer, content, created_at, metadata) in the order they are sent.
SCRIPT: list[tuple[str, str, str, str, str, dict[str, Any]]] = [
    ("eggs", "dip", "bob", "I had scrambled eggs this morning", "03-01", {"topic": "food"}),
    ("peace", "dip", "alice", "I'm going to be peaceful", "03-02", {"topic": "game"}),
    ("zanzibar", "dip", "charlie", "My cousin just flew back from Zanzibar", "03-03", {}),
    ("tax", "dip", "alice", "The quarterly tax report is due on Friday", "03-04", {}),
    ("laptop", "dip", "bob", "My laptop battery died during the meeting", "03-05", {}),
    ("garage", "dip", "charlie", "We should repaint the garage door blue", "03-06", {}),
    ("paris", "dip", "alice", "I live in Paris", "03-07", {"topic": "home"}),
    ("attack", "side", "alice", "I'm actually going to attack Charlie", "03-08", {}),
    ("password", "lobby", "alice", "The lobby password is swordfish", "03-09", {}),
    # dave joins the lobby here
    ("welcome", "lobby", "alice", "Welcome dave, make yourself at home", "03-10", {}),
]
DIP = ["eggs", "peace", "zanzibar", "tax", "laptop", "garage", "paris"]


@dataclass
class World:
    ws: str
    msgs: dict[str, Json] = field(default_factory=dict)

    def url(self, rest: str = "") -> str:
        return f"/v3/workspaces/{self.ws}{rest}"

    def id(self, key: str) -> str:
        return str(self.msgs[key]["id"])


_cache: dict[str, Any] = {}


@pytest.fixture
async def deriving(app_factory: AppFactory) -> httpx.AsyncClient:
    return await app_factory(deriver_enabled=True)


@pytest.fixture
async def authed(app_factory: AppFactory) -> httpx.AsyncClient:
    """Same database and stream, JWT auth on (the deriving app does the background work)."""
    return await app_factory(auth_enabled=True, jwt_secret=JWT_SECRET)


async def _alive(client: httpx.AsyncClient, ws: str) -> bool:
    """True when ``ws`` still exists (another module's test may have truncated the DB)."""
    r = await client.post("/v3/workspaces", json={"id": ws})
    return r.status_code == 200


async def _ok(r: httpx.Response, status: int = 200) -> Json:
    assert r.status_code == status, r.text
    return r.json()


async def build_world(client: httpx.AsyncClient) -> World:
    w = World(ws=f"ctx-{uuid.uuid4().hex[:10]}")
    await _ok(await client.post("/v3/workspaces", json={"id": w.ws}), 201)
    sessions = {
        "dip": {"alice": EVERYONE, "bob": EVERYONE, "charlie": EVERYONE},
        "side": {"alice": EVERYONE, "bob": EVERYONE},
        "lobby": {"alice": EVERYONE, "bob": EVERYONE},
    }
    for sid, peers in sessions.items():
        await _ok(await client.post(w.url("/sessions"), json={"id": sid, "peers": peers}), 201)
    for key, sid, peer, content, day, metadata in SCRIPT:
        if key == "welcome":
            r = await client.post(w.url("/sessions/lobby/peers"), json={"dave": EVERYONE})
            assert r.status_code == 200, r.text
        body = {
            "peer_id": peer,
            "content": content,
            "created_at": f"2026-{day}T08:00:00Z",
            "metadata": metadata,
        }
        r = await client.post(w.url(f"/sessions/{sid}/messages"), json={"messages": [body]})
        [w.msgs[key]] = await _ok(r, 201)
    await wait_derived(client, w.ws, expect_total=len(SCRIPT))
    return w


@pytest.fixture
async def world(deriving: httpx.AsyncClient) -> World:
    cached: World | None = _cache.get("world")
    if cached is None or not await _alive(deriving, cached.ws):
        cached = _cache["world"] = await build_world(deriving)
    return cached


def ids(messages: list[Json]) -> list[str]:
    return [m["id"] for m in messages]


def rep_lines(text: str) -> list[str]:
    """The conclusion contents of a rendered representation ("- [date] content" lines)."""
    return [line.split("] ", 1)[1] for line in text.splitlines() if line.startswith("- [")]


async def view_contents(
    client: httpx.AsyncClient, w: World, observer: str, observed: str, **extra: str
) -> set[str]:
    r = await client.post(
        w.url("/conclusions/list?size=100"),
        json={"filters": {"observer_id": observer, "observed_id": observed, **extra}},
    )
    return {c["content"] for c in (await _ok(r))["items"]}


def assert_422(r: httpx.Response, field_name: str) -> None:
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    if isinstance(detail, list):
        assert any(field_name in map(str, e["loc"]) for e in detail), detail
    else:
        assert field_name in detail, detail


# -- search ---------------------------------------------------------------------------------------
SEARCH_ROUTES = {
    "workspace": "/search",
    "session": "/sessions/dip/search",
    "peer": "/peers/charlie/search",
}


@pytest.mark.parametrize("route", sorted(SEARCH_ROUTES))
async def test_search_returns_a_bare_array_of_exact_messages(
    deriving: httpx.AsyncClient, world: World, route: str
) -> None:
    r = await deriving.post(world.url(SEARCH_ROUTES[route]), json={"query": "Zanzibar"})
    found = await _ok(r)
    assert isinstance(found, list) and found
    assert all(set(m) == MESSAGE_FIELDS for m in found), found
    # Exactly the stored message, as the create route returned it.
    assert found[0] == world.msgs["zanzibar"]


async def test_keyword_only_query_finds_the_rare_word(
    deriving: httpx.AsyncClient, world: World
) -> None:
    r = await deriving.post(world.url("/search"), json={"query": "zanzibar", "limit": 1})
    assert ids(await _ok(r)) == [world.id("zanzibar")]


async def test_meaning_only_query_finds_the_message_among_distractors(
    deriving: httpx.AsyncClient, world: World
) -> None:
    # No word in common with "I had scrambled eggs this morning" — and it is the OLDEST message,
    # so neither recency nor full text can put it first.
    r = await deriving.post(world.url("/search"), json={"query": "breakfast food", "limit": 3})
    found = await _ok(r)
    assert len(found) == 3
    assert found[0]["id"] == world.id("eggs"), [m["content"] for m in found]


async def test_search_limit_is_honoured(deriving: httpx.AsyncClient, world: World) -> None:
    r = await deriving.post(world.url("/search"), json={"query": "meeting report", "limit": 2})
    assert len(await _ok(r)) == 2


async def test_search_accepts_explicit_null_filters(
    deriving: httpx.AsyncClient, world: World
) -> None:
    r = await deriving.post(
        world.url("/search"), json={"query": "zanzibar", "filters": None, "limit": 1}
    )
    assert ids(await _ok(r)) == [world.id("zanzibar")]


async def test_search_filter_on_peer_id(deriving: httpx.AsyncClient, world: World) -> None:
    r = await deriving.post(
        world.url("/search"),
        json={"query": "eggs tax zanzibar", "filters": {"peer_id": "charlie"}, "limit": 100},
    )
    found = await _ok(r)
    assert found[0]["id"] == world.id("zanzibar")
    assert {m["peer_id"] for m in found} == {"charlie"}


async def test_search_filter_on_metadata(deriving: httpx.AsyncClient, world: World) -> None:
    r = await deriving.post(
        world.url("/search"),
        json={"query": "eggs tax zanzibar", "filters": {"metadata": {"topic": "food"}}},
    )
    assert ids(await _ok(r)) == [world.id("eggs")]


async def test_search_filter_on_created_at(deriving: httpx.AsyncClient, world: World) -> None:
    since = "2026-03-05T00:00:00Z"
    r = await deriving.post(
        world.url("/search"),
        json={"query": "scrambled eggs", "filters": {"created_at": {"gte": since}}, "limit": 100},
    )
    found = await _ok(r)
    assert found
    assert world.id("eggs") not in ids(found)  # the best match, but too old
    assert all(m["created_at"] >= "2026-03-05T" for m in found), found


async def test_filtered_meaning_only_search_looks_past_the_nearest_unfiltered_vectors(
    deriving: httpx.AsyncClient,
) -> None:
    """30 of alice's messages are closer to the query than bob's only food message: a filter
    on bob must still find his (the filter is not in the vector store, so the pool widens)."""
    w = World(ws=f"crowd-{uuid.uuid4().hex[:10]}")
    await _ok(await deriving.post("/v3/workspaces", json={"id": w.ws}), 201)
    peers = {"alice": {}, "bob": {}}
    await _ok(await deriving.post(w.url("/sessions"), json={"id": "s", "peers": peers}), 201)
    foods = ["pancakes", "waffles", "croissants", "porridge", "omelettes", "bagels", "muffins"]
    foods += ["toast", "cereal", "granola", "yogurt", "fruit", "bacon", "sausages", "crumpets"]
    lines = [{"peer_id": "alice", "content": f"For breakfast I love eating {f}"} for f in foods]
    lines += [{"peer_id": "alice", "content": f"My morning meal was {f} again"} for f in foods]
    lines[3:3] = [
        {"peer_id": "bob", "content": "I had a cheese sandwich at lunch"},
        {"peer_id": "bob", "content": "The tax office closes at noon"},
    ]
    r = await deriving.post(w.url("/sessions/s/messages"), json={"messages": lines})
    sandwich = (await _ok(r, 201))[3]
    await wait_derived(deriving, w.ws, expect_total=len(lines))
    r = await deriving.post(
        w.url("/search"),
        json={"query": "breakfast food", "filters": {"peer_id": "bob"}, "limit": 1},
    )
    assert ids(await _ok(r)) == [sandwich["id"]]


async def test_session_search_stays_in_the_session(
    deriving: httpx.AsyncClient, world: World
) -> None:
    r = await deriving.post(
        world.url("/sessions/side/search"), json={"query": "zanzibar eggs", "limit": 100}
    )
    assert ids(await _ok(r)) == [world.id("attack")]


async def test_peer_search_returns_only_that_peers_messages(
    deriving: httpx.AsyncClient, world: World
) -> None:
    r = await deriving.post(
        world.url("/peers/bob/search"), json={"query": "eggs laptop zanzibar", "limit": 100}
    )
    assert set(ids(await _ok(r))) == {world.id("eggs"), world.id("laptop")}


async def test_peer_perspective_never_returns_the_side_chat_to_charlie(
    deriving: httpx.AsyncClient, world: World
) -> None:
    query = {"query": "attack Charlie", "limit": 100}
    as_bob = await _ok(
        await deriving.post(world.url("/search"), json={**query, "peer_perspective": "bob"})
    )
    assert as_bob[0]["id"] == world.id("attack")  # control: the query does find it
    as_charlie = await _ok(
        await deriving.post(world.url("/search"), json={**query, "peer_perspective": "charlie"})
    )
    assert as_charlie, "charlie witnessed the group chat"
    assert {m["session_id"] for m in as_charlie} == {"dip"}


async def test_peer_perspective_on_a_session_the_peer_never_joined_is_empty(
    deriving: httpx.AsyncClient, world: World
) -> None:
    r = await deriving.post(
        world.url("/sessions/side/search"),
        json={"query": "attack Charlie", "peer_perspective": "charlie"},
    )
    assert await _ok(r) == []


async def test_peer_perspective_respects_the_membership_window(
    deriving: httpx.AsyncClient, world: World
) -> None:
    body = {"query": "lobby password swordfish", "limit": 100}
    everyone = await _ok(await deriving.post(world.url("/sessions/lobby/search"), json=body))
    assert everyone[0]["id"] == world.id("password")
    dave = await _ok(
        await deriving.post(
            world.url("/sessions/lobby/search"), json={**body, "peer_perspective": "dave"}
        )
    )
    assert ids(dave) == [world.id("welcome")]  # he joined after the password was given


async def test_peer_search_with_a_perspective(deriving: httpx.AsyncClient, world: World) -> None:
    r = await deriving.post(
        world.url("/peers/alice/search"),
        json={"query": "attack peaceful Paris", "peer_perspective": "charlie", "limit": 100},
    )
    assert set(ids(await _ok(r))) == {world.id(k) for k in ("peace", "tax", "paris")}


@pytest.mark.parametrize(
    "query",
    ["AT&T", "C++ & (x | y)", "'quoted' \"double\"", "!!!", "a:*b", "(((", "the", "   ", "東京 ü"],
)
async def test_odd_queries_are_searched_not_rejected(
    deriving: httpx.AsyncClient, world: World, query: str
) -> None:
    r = await deriving.post(world.url("/search"), json={"query": query, "limit": 3})
    found = await _ok(r)
    assert isinstance(found, list) and len(found) <= 3


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/v3/workspaces/nope-ws/search", "Workspace 'nope-ws' not found"),
        ("{ws}/sessions/nope/search", "Session 'nope' not found"),
        ("{ws}/peers/nope/search", "Peer 'nope' not found"),
    ],
)
async def test_search_404_for_unknown_resources(
    deriving: httpx.AsyncClient, world: World, path: str, detail: str
) -> None:
    r = await deriving.post(path.format(ws=world.url()), json={"query": "x"})
    assert r.status_code == 404, r.text
    assert detail in r.json()["detail"]


async def test_search_404_for_an_unknown_perspective(
    deriving: httpx.AsyncClient, world: World
) -> None:
    r = await deriving.post(world.url("/search"), json={"query": "x", "peer_perspective": "nope"})
    assert r.status_code == 404, r.text
    assert "Peer 'nope' not found" in r.json()["detail"]


BAD_SEARCH_BODIES = [
    ({"query": "x", "limit": 0}, "limit"),
    ({"query": "x", "limit": 101}, "limit"),
    ({"query": ""}, "query"),
    ({"limit": 5}, "query"),
    ({"query": "x\x00y"}, "query"),
    ({"query": "x", "unknown": 1}, "unknown"),
    ({"query": "x", "filters": {"nope": 1}}, "nope"),
    ({"query": "x", "filters": {"created_at": {"gte": "not a date"}}}, "created_at"),
    ({"query": "x", "filters": {"peer_id": {"between": 1}}}, "between"),
    ({"query": "x", "filters": [1]}, "filters"),
    ({"query": "x", "peer_perspective": "not an id!"}, "peer_perspective"),
]


@pytest.mark.parametrize("route", sorted(SEARCH_ROUTES))
@pytest.mark.parametrize(("body", "field_name"), BAD_SEARCH_BODIES)
async def test_search_422_for_a_bad_body(
    deriving: httpx.AsyncClient, world: World, route: str, body: Json, field_name: str
) -> None:
    assert_422(await deriving.post(world.url(SEARCH_ROUTES[route]), json=body), field_name)


# -- conclusions query ----------------------------------------------------------------------------
async def query(client: httpx.AsyncClient, w: World, body: Json) -> httpx.Response:
    return await client.post(w.url("/conclusions/query"), json=body)


async def test_conclusion_query_ranks_the_views_conclusions_by_meaning(
    deriving: httpx.AsyncClient, world: World
) -> None:
    body = {"query": "breakfast food", "top_k": 10, "filters": view("bob", "bob")}
    found = await _ok(await query(deriving, world, body))
    assert [c["content"] for c in found] == [
        "bob had scrambled eggs on the morning of 2026-03-01",
        "bob's laptop battery died during the meeting",
    ]


async def test_conclusion_query_shape(deriving: httpx.AsyncClient, world: World) -> None:
    body = {"query": "scrambled eggs", "top_k": 1, "filters": view("alice", "bob")}
    [found] = await _ok(await query(deriving, world, body))
    assert set(found) >= CONCLUSION_FIELDS
    assert found["observer_id"] == "alice" and found["observed_id"] == "bob"
    assert found["session_id"] == "dip"
    assert found["level"] == "explicit"
    assert found["source_ids"] == [world.id("eggs")]
    assert isinstance(found["id"], str) and len(found["id"]) == 21
    datetime.fromisoformat(found["created_at"])


async def test_conclusion_query_never_returns_another_views_conclusions(
    deriving: httpx.AsyncClient, world: World
) -> None:
    body = {"query": "attack Charlie", "top_k": 100}
    as_bob = await _ok(await query(deriving, world, {**body, "filters": view("bob", "alice")}))
    assert as_bob[0]["content"] == "alice is actually going to attack Charlie"  # control
    as_charlie = await _ok(
        await query(deriving, world, {**body, "filters": view("charlie", "alice")})
    )
    assert {c["content"] for c in as_charlie} == await view_contents(
        deriving, world, "charlie", "alice"
    )
    assert {(c["observer_id"], c["observed_id"]) for c in as_charlie} == {("charlie", "alice")}
    assert not any("attack" in c["content"] for c in as_charlie)


async def test_conclusion_query_top_k_is_honoured(
    deriving: httpx.AsyncClient, world: World
) -> None:
    body = {"query": "alice", "top_k": 2, "filters": view("alice", "alice")}
    assert len(await _ok(await query(deriving, world, body))) == 2


async def test_conclusion_query_distance_drops_far_vectors(
    deriving: httpx.AsyncClient, world: World
) -> None:
    body = {"query": "breakfast food", "top_k": 10, "filters": view("bob", "bob")}
    assert await _ok(await query(deriving, world, {**body, "distance": 0.05})) == []


@pytest.mark.parametrize(
    "filters",
    [
        {"observer_id": "bob"},
        {"observed_id": "bob"},
        {},
        {"observer_id": ["bob"], "observed_id": "bob"},
        {"observer_id": "bob", "observed_id": "bob", "nope": 1},
    ],
)
async def test_conclusion_query_needs_observer_and_observed(
    deriving: httpx.AsyncClient, world: World, filters: Json
) -> None:
    r = await query(deriving, world, {"query": "x", "filters": filters})
    assert r.status_code == 422, r.text
    assert "filters" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field_name"),
    [
        ({"query": "x"}, "filters"),
        ({"query": "", "filters": {}}, "query"),
        ({"query": "x", "top_k": 0, "filters": {}}, "top_k"),
        ({"query": "x", "top_k": 101, "filters": {}}, "top_k"),
        ({"query": "x", "distance": 1.5, "filters": {}}, "distance"),
    ],
)
async def test_conclusion_query_422_for_a_bad_body(
    deriving: httpx.AsyncClient, world: World, body: Json, field_name: str
) -> None:
    assert_422(await query(deriving, world, body), field_name)


def view(observer: str, observed: str) -> dict[str, str]:
    return {"observer_id": observer, "observed_id": observed}


# -- representation -------------------------------------------------------------------------------
async def representation(client: httpx.AsyncClient, w: World, peer: str, **body: Any) -> str:
    r = await client.post(w.url(f"/peers/{peer}/representation"), json=body)
    got = await _ok(r)
    assert set(got) == {"representation"}
    assert isinstance(got["representation"], str)
    return str(got["representation"])


async def test_representation_with_an_empty_body_is_the_peers_own_view(
    deriving: httpx.AsyncClient, world: World
) -> None:
    # The SDK sends Content-Type: application/json with no body at all.
    r = await deriving.post(
        world.url("/peers/alice/representation"), headers={"Content-Type": "application/json"}
    )
    text = (await _ok(r))["representation"]
    assert set(rep_lines(text)) == await view_contents(deriving, world, "alice", "alice")
    assert "alice is actually going to attack Charlie" in rep_lines(text)
    assert text.startswith("Explicit observations:\n- [2026-03-10] alice said Welcome dave")


async def test_representation_of_a_target_is_the_observers_view_only(
    deriving: httpx.AsyncClient, world: World
) -> None:
    lines = rep_lines(await representation(deriving, world, "charlie", target="alice"))
    assert set(lines) == await view_contents(deriving, world, "charlie", "alice")
    assert "alice is going to be peaceful" in lines
    assert not any("attack" in line for line in lines)


async def test_representation_session_id_restricts_to_that_session(
    deriving: httpx.AsyncClient, world: World
) -> None:
    side = rep_lines(
        await representation(deriving, world, "bob", target="alice", session_id="side")
    )
    assert side == ["alice is actually going to attack Charlie"]
    dip = rep_lines(await representation(deriving, world, "bob", target="alice", session_id="dip"))
    assert set(dip) == await view_contents(deriving, world, "bob", "alice", session_id="dip")
    assert not any("attack" in line for line in dip)


async def test_representation_search_query_pulls_the_relevant_conclusion(
    deriving: httpx.AsyncClient, world: World
) -> None:
    newest = rep_lines(await representation(deriving, world, "bob", max_conclusions=1))
    assert newest == ["bob's laptop battery died during the meeting"]  # control
    relevant = rep_lines(
        await representation(
            deriving, world, "bob", max_conclusions=1, search_query="breakfast food"
        )
    )
    assert relevant == ["bob had scrambled eggs on the morning of 2026-03-01"]


async def test_representation_max_conclusions_caps_the_lines(
    deriving: httpx.AsyncClient, world: World
) -> None:
    lines = rep_lines(await representation(deriving, world, "alice", max_conclusions=2))
    assert lines == [  # the newest two
        "alice said Welcome dave, make yourself at home",
        "alice said the lobby password is swordfish",
    ]


async def test_representation_of_an_empty_view_is_an_empty_string(
    deriving: httpx.AsyncClient, world: World
) -> None:
    assert await representation(deriving, world, "dave", target="charlie") == ""


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"target": "nope"}, "Peer 'nope' not found"),
        ({"session_id": "nope"}, "Session 'nope' not found"),
    ],
)
async def test_representation_404_for_unknown_references(
    deriving: httpx.AsyncClient, world: World, body: Json, detail: str
) -> None:
    r = await deriving.post(world.url("/peers/alice/representation"), json=body)
    assert r.status_code == 404, r.text
    assert detail in r.json()["detail"]


async def test_representation_404_for_an_unknown_peer(
    deriving: httpx.AsyncClient, world: World
) -> None:
    r = await deriving.post(world.url("/peers/nope/representation"), json={})
    assert r.status_code == 404, r.text
    assert "Peer 'nope' not found" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field_name"),
    [
        ({"max_conclusions": 0}, "max_conclusions"),
        ({"max_conclusions": 101}, "max_conclusions"),
        ({"search_top_k": 0}, "search_top_k"),
        ({"search_max_distance": 1.5}, "search_max_distance"),
        ({"target": "bad id!"}, "target"),
        ({"nope": True}, "nope"),
    ],
)
async def test_representation_422_for_a_bad_body(
    deriving: httpx.AsyncClient, world: World, body: Json, field_name: str
) -> None:
    r = await deriving.post(world.url("/peers/alice/representation"), json=body)
    assert_422(r, field_name)


# -- peer card ------------------------------------------------------------------------------------
@pytest.fixture
async def fresh(deriving: httpx.AsyncClient) -> World:
    """An empty workspace with peers alice and bob (for writes)."""
    w = World(ws=f"card-{uuid.uuid4().hex[:10]}")
    await _ok(await deriving.post("/v3/workspaces", json={"id": w.ws}), 201)
    for peer in ("alice", "bob"):
        await _ok(await deriving.post(w.url("/peers"), json={"id": peer}), 201)
    return w


async def card(client: httpx.AsyncClient, w: World, peer: str, target: str | None = None) -> Json:
    params = {"target": target} if target else {}
    return await _ok(await client.get(w.url(f"/peers/{peer}/card"), params=params))


async def test_peer_card_is_null_before_any(deriving: httpx.AsyncClient, fresh: World) -> None:
    assert await card(deriving, fresh, "alice") == {"peer_card": None}


async def test_peer_card_put_then_get(deriving: httpx.AsyncClient, fresh: World) -> None:
    facts = ["Likes tea", "Lives in Oslo"]
    r = await deriving.put(fresh.url("/peers/alice/card"), json={"peer_card": facts})
    assert await _ok(r) == {"peer_card": facts}
    assert await card(deriving, fresh, "alice") == {"peer_card": facts}


async def test_peer_card_put_replaces_the_previous_card(
    deriving: httpx.AsyncClient, fresh: World
) -> None:
    url = fresh.url("/peers/alice/card")
    await _ok(await deriving.put(url, json={"peer_card": ["Likes tea", "Lives in Oslo"]}))
    await _ok(await deriving.put(url, json={"peer_card": ["  Likes coffee  "]}))
    assert await card(deriving, fresh, "alice") == {"peer_card": ["Likes coffee"]}


async def test_peer_card_target_is_a_separate_view(
    deriving: httpx.AsyncClient, fresh: World
) -> None:
    r = await deriving.put(
        fresh.url("/peers/alice/card"), params={"target": "bob"}, json={"peer_card": ["Is tall"]}
    )
    assert await _ok(r) == {"peer_card": ["Is tall"]}
    assert await card(deriving, fresh, "alice", "bob") == {"peer_card": ["Is tall"]}
    assert await card(deriving, fresh, "alice") == {"peer_card": None}
    assert await card(deriving, fresh, "bob") == {"peer_card": None}
    assert await card(deriving, fresh, "bob", "alice") == {"peer_card": None}


@pytest.mark.parametrize(
    ("body", "field_name"),
    [
        ({"peer_card": [""]}, "peer_card"),
        ({"peer_card": ["ok", "   "]}, "peer_card"),
        ({"peer_card": ["fact"] * 101}, "peer_card"),
        ({"peer_card": [1, 2]}, "peer_card"),
        ({"peer_card": [None]}, "peer_card"),
        ({"peer_card": "Likes tea"}, "peer_card"),
        ({"peer_card": ["x" * 1001]}, "peer_card"),
        ({"peer_card": ["a\x00b"]}, "peer_card"),
        ({}, "peer_card"),
        ({"peer_card": ["ok"], "nope": 1}, "nope"),
    ],
)
async def test_peer_card_422_for_a_bad_card(
    deriving: httpx.AsyncClient, fresh: World, body: Json, field_name: str
) -> None:
    assert_422(await deriving.put(fresh.url("/peers/alice/card"), json=body), field_name)
    assert await card(deriving, fresh, "alice") == {"peer_card": None}


async def test_peer_card_of_100_facts_is_accepted(
    deriving: httpx.AsyncClient, fresh: World
) -> None:
    facts = [f"Fact number {i}" for i in range(100)]
    await _ok(await deriving.put(fresh.url("/peers/alice/card"), json={"peer_card": facts}))
    assert await card(deriving, fresh, "alice") == {"peer_card": facts}


@pytest.mark.parametrize(
    ("path", "params", "detail"),
    [
        ("/peers/nope/card", {}, "Peer 'nope' not found"),
        ("/peers/alice/card", {"target": "nope"}, "Peer 'nope' not found"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_peer_card_404_for_unknown_peers(
    deriving: httpx.AsyncClient,
    fresh: World,
    method: str,
    path: str,
    params: dict[str, str],
    detail: str,
) -> None:
    body = {"peer_card": ["x"]} if method == "PUT" else None
    r = await deriving.request(method, fresh.url(path), params=params, json=body)
    assert r.status_code == 404, r.text
    assert detail in r.json()["detail"]


async def test_deriver_card_of_a_view_appears_after_derivation(
    deriving: httpx.AsyncClient, world: World
) -> None:
    bobs = (await card(deriving, world, "bob", "alice"))["peer_card"]
    assert "Lives in Paris" in bobs
    charlies = (await card(deriving, world, "charlie", "alice"))["peer_card"]
    assert "Lives in Paris" in charlies
    assert not any("attack" in f.lower() for f in charlies)
    # dave never saw charlie speak: no view, no card.
    assert await card(deriving, world, "dave", "charlie") == {"peer_card": None}


# -- peer context ---------------------------------------------------------------------------------
async def test_peer_context_without_target_is_the_peers_own_view(
    deriving: httpx.AsyncClient, world: World
) -> None:
    got = await _ok(await deriving.get(world.url("/peers/alice/context")))
    assert set(got) == {"peer_id", "target_id", "representation", "peer_card"}
    assert got["peer_id"] == got["target_id"] == "alice"
    assert got["representation"] == await representation(deriving, world, "alice")
    assert got["peer_card"] == (await card(deriving, world, "alice"))["peer_card"]
    assert got["peer_card"]


async def test_peer_context_with_target_is_the_observers_view_of_it(
    deriving: httpx.AsyncClient, world: World
) -> None:
    got = await _ok(
        await deriving.get(world.url("/peers/charlie/context"), params={"target": "alice"})
    )
    assert (got["peer_id"], got["target_id"]) == ("charlie", "alice")
    assert got["representation"] == await representation(deriving, world, "charlie", target="alice")
    assert "attack" not in got["representation"]
    assert got["peer_card"] == (await card(deriving, world, "charlie", "alice"))["peer_card"]


async def test_peer_context_of_an_empty_view_has_nulls(
    deriving: httpx.AsyncClient, world: World
) -> None:
    r = await deriving.get(world.url("/peers/dave/context"), params={"target": "charlie"})
    assert await _ok(r) == {
        "peer_id": "dave",
        "target_id": "charlie",
        "representation": None,
        "peer_card": None,
    }


async def test_peer_context_options_reach_the_representation(
    deriving: httpx.AsyncClient, world: World
) -> None:
    r = await deriving.get(
        world.url("/peers/bob/context"),
        params={"search_query": "breakfast food", "max_conclusions": 1},
    )
    got = await _ok(r)
    assert rep_lines(got["representation"]) == [
        "bob had scrambled eggs on the morning of 2026-03-01"
    ]


async def test_peer_context_404_for_an_unknown_target(
    deriving: httpx.AsyncClient, world: World
) -> None:
    r = await deriving.get(world.url("/peers/alice/context"), params={"target": "nope"})
    assert r.status_code == 404, r.text
    assert "Peer 'nope' not found" in r.json()["detail"]


# -- summaries ------------------------------------------------------------------------------------
async def build_summarised(client: httpx.AsyncClient) -> World:
    """20 messages (one short summary at the default cadence), then dave joins."""
    w = World(ws=f"sum-{uuid.uuid4().hex[:10]}")
    await _ok(await client.post("/v3/workspaces", json={"id": w.ws}), 201)
    peers = {"alice": {}, "bob": {}}
    await _ok(await client.post(w.url("/sessions"), json={"id": "long", "peers": peers}), 201)
    lines = [
        {"peer_id": ("alice", "bob")[i % 2], "content": f"Harbour log entry {i}: boat B{i:02d}"}
        for i in range(1, 21)
    ]
    sent = await _ok(
        await client.post(w.url("/sessions/long/messages"), json={"messages": lines}), 201
    )
    w.msgs = {f"m{i}": m for i, m in enumerate(sent, start=1)}
    await _ok(await client.post(w.url("/sessions/long/peers"), json={"dave": {}}))
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        got = await _ok(await client.get(w.url("/sessions/long/summaries")))
        if got["short_summary"] is not None:
            return w
        assert asyncio.get_running_loop().time() < deadline, got
        await asyncio.sleep(0.1)


@pytest.fixture
async def summarised(deriving: httpx.AsyncClient) -> World:
    cached: World | None = _cache.get("summarised")
    if cached is None or not await _alive(deriving, cached.ws):
        cached = _cache["summarised"] = await build_summarised(deriving)
    return cached


async def test_summaries_are_null_before_20_messages(
    deriving: httpx.AsyncClient, world: World
) -> None:
    got = await _ok(await deriving.get(world.url("/sessions/dip/summaries")))
    assert got == {"id": "dip", "short_summary": None, "long_summary": None}


async def test_summaries_after_20_messages_have_the_five_keys(
    deriving: httpx.AsyncClient, summarised: World
) -> None:
    got = await _ok(await deriving.get(summarised.url("/sessions/long/summaries")))
    assert set(got) == {"id", "short_summary", "long_summary"}
    assert got["id"] == "long"
    assert got["long_summary"] is None  # every 60 messages
    short = got["short_summary"]
    assert set(short) == SUMMARY_FIELDS
    assert short["summary_type"] == "short"
    assert short["message_id"] == summarised.id("m20")
    assert isinstance(short["created_at"], str)
    datetime.fromisoformat(short["created_at"])
    assert isinstance(short["content"], str) and "B20" in short["content"]
    assert isinstance(short["token_count"], int) and short["token_count"] > 0


async def test_summaries_hidden_from_a_peer_that_joined_after_them(
    authed: httpx.AsyncClient, summarised: World
) -> None:
    url = summarised.url("/sessions/long/summaries")
    dave = bearer(workspace_id=summarised.ws, peer_id="dave")
    got = await _ok(await authed.get(url, headers=dave))
    assert got == {"id": "long", "short_summary": None, "long_summary": None}
    alice = bearer(workspace_id=summarised.ws, peer_id="alice")  # control: she saw them all
    assert (await _ok(await authed.get(url, headers=alice)))["short_summary"] is not None


async def test_summaries_404_for_an_unknown_session(
    deriving: httpx.AsyncClient, world: World
) -> None:
    r = await deriving.get(world.url("/sessions/nope/summaries"))
    assert r.status_code == 404, r.text
    assert "Session 'nope' not found" in r.json()["detail"]


# -- get_context (shape; the budget is test_context_budget.py's) ----------------------------------
async def context(client: httpx.AsyncClient, w: World, session: str, **params: Any) -> Json:
    got = await _ok(await client.get(w.url(f"/sessions/{session}/context"), params=params))
    assert set(got) == {"id", "messages", "summary", "peer_representation", "peer_card"}
    return got


async def test_context_fields_without_a_target(deriving: httpx.AsyncClient, world: World) -> None:
    got = await context(deriving, world, "dip")
    assert got["id"] == "dip"
    assert (got["summary"], got["peer_representation"], got["peer_card"]) == (None, None, None)


async def test_context_messages_are_chronological_and_exact(
    deriving: httpx.AsyncClient, world: World
) -> None:
    got = await context(deriving, world, "dip")
    assert got["messages"] == [world.msgs[k] for k in DIP]


async def test_context_summary_has_the_five_keys(
    deriving: httpx.AsyncClient, summarised: World
) -> None:
    got = await context(deriving, summarised, "long")
    assert set(got["summary"]) == SUMMARY_FIELDS
    assert got["summary"]["message_id"] == summarised.id("m20")
    # The messages the summary covers are not repeated.
    assert got["messages"] == []


async def test_context_with_target_shows_the_targets_own_view(
    deriving: httpx.AsyncClient, world: World
) -> None:
    got = await context(deriving, world, "dip", peer_target="alice")
    assert got["peer_representation"] == await representation(deriving, world, "alice")
    assert got["peer_card"] == (await card(deriving, world, "alice"))["peer_card"]
    assert got["peer_card"]


async def test_context_with_perspective_shows_the_perspectives_view_of_the_target(
    deriving: httpx.AsyncClient, world: World
) -> None:
    got = await context(deriving, world, "dip", peer_target="alice", peer_perspective="charlie")
    rep = got["peer_representation"]
    assert rep == await representation(deriving, world, "charlie", target="alice")
    assert "attack" not in rep
    assert got["peer_card"] == (await card(deriving, world, "charlie", "alice"))["peer_card"]


async def test_context_perspective_limits_the_messages_to_what_it_witnessed(
    deriving: httpx.AsyncClient, world: World
) -> None:
    everyone = await context(deriving, world, "lobby")
    assert ids(everyone["messages"]) == [world.id("password"), world.id("welcome")]
    dave = await context(deriving, world, "lobby", peer_target="alice", peer_perspective="dave")
    assert ids(dave["messages"]) == [world.id("welcome")]
    assert "swordfish" not in (dave["peer_representation"] or "")


async def test_context_limit_to_session_restricts_the_representation(
    deriving: httpx.AsyncClient, world: World
) -> None:
    got = await context(deriving, world, "lobby", peer_target="alice", limit_to_session="true")
    lines = rep_lines(got["peer_representation"])
    assert set(lines) == await view_contents(deriving, world, "alice", "alice", session_id="lobby")
    assert len(lines) == 2  # the two lobby messages, nothing from dip or side


async def test_context_hides_the_summary_from_a_peer_key_that_joined_after_it(
    authed: httpx.AsyncClient, summarised: World
) -> None:
    url = summarised.url("/sessions/long/context")
    dave = await _ok(
        await authed.get(url, headers=bearer(workspace_id=summarised.ws, peer_id="dave"))
    )
    assert (dave["summary"], dave["messages"]) == (None, [])
    alice = await _ok(
        await authed.get(url, headers=bearer(workspace_id=summarised.ws, peer_id="alice"))
    )
    assert alice["summary"]["message_id"] == summarised.id("m20")  # control


async def test_context_perspective_without_target_is_422(
    deriving: httpx.AsyncClient, world: World
) -> None:
    r = await deriving.get(world.url("/sessions/dip/context"), params={"peer_perspective": "bob"})
    assert r.status_code == 422, r.text
    assert "peer_perspective needs peer_target" in r.json()["detail"]


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"peer_target": "nope"}, "Peer 'nope' not found"),
        ({"peer_target": "alice", "peer_perspective": "nope"}, "Peer 'nope' not found"),
    ],
)
async def test_context_404_for_unknown_peers(
    deriving: httpx.AsyncClient, world: World, params: dict[str, str], detail: str
) -> None:
    r = await deriving.get(world.url("/sessions/dip/context"), params=params)
    assert r.status_code == 404, r.text
    assert detail in r.json()["detail"]


async def test_context_of_a_peer_key_holds_only_what_it_witnessed(
    authed: httpx.AsyncClient, world: World
) -> None:
    r = await authed.get(
        world.url("/sessions/lobby/context"),
        headers=bearer(workspace_id=world.ws, peer_id="dave"),
    )
    assert ids((await _ok(r))["messages"]) == [world.id("welcome")]


async def test_context_of_a_peer_key_uses_its_view_of_the_target(
    authed: httpx.AsyncClient, deriving: httpx.AsyncClient, world: World
) -> None:
    r = await authed.get(
        world.url("/sessions/dip/context"),
        params={"peer_target": "alice"},
        headers=bearer(workspace_id=world.ws, peer_id="charlie"),
    )
    rep = (await _ok(r))["peer_representation"]
    assert set(rep_lines(rep)) == await view_contents(deriving, world, "charlie", "alice")
    assert "attack" not in rep


async def test_context_peer_key_asking_another_perspective_is_403(
    authed: httpx.AsyncClient, world: World
) -> None:
    r = await authed.get(
        world.url("/sessions/lobby/context"),
        params={"peer_target": "alice", "peer_perspective": "alice"},
        headers=bearer(workspace_id=world.ws, peer_id="dave"),
    )
    assert r.status_code == 403, r.text
    assert "cannot read from peer 'alice'" in r.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/search", {"query": "x"}),
        ("POST", "/sessions/s/search", {"query": "x"}),
        ("POST", "/peers/p/search", {"query": "x"}),
        ("POST", "/conclusions/query", {"query": "x", "filters": view("p", "p")}),
        ("POST", "/peers/p/representation", {}),
        ("GET", "/peers/p/card", None),
        ("PUT", "/peers/p/card", {"peer_card": ["x"]}),
        ("GET", "/peers/p/context", None),
        ("GET", "/sessions/s/context", None),
        ("GET", "/sessions/s/summaries", None),
    ],
)
async def test_every_context_route_404s_for_an_unknown_workspace(
    deriving: httpx.AsyncClient, method: str, path: str, body: Json
) -> None:
    ws = f"ghost-{uuid.uuid4().hex[:8]}"
    r = await deriving.request(method, f"/v3/workspaces/{ws}{path}", json=body)
    assert r.status_code == 404, r.text
    assert f"Workspace '{ws}' not found" in r.json()["detail"]


# -- JWT: who may read what -----------------------------------------------------------------------
# (method, path under the workspace, body or None) for alice's key. The two PUTs write the
# cards (alice, charlie) and (bob, bob), which no other test reads.
OWN_ROUTES = [
    ("POST", "/peers/alice/representation", {"target": "bob"}),
    ("GET", "/peers/alice/card?target=bob", None),
    ("PUT", "/peers/alice/card?target=charlie", {"peer_card": ["Is quiet"]}),
    ("GET", "/peers/alice/context?target=bob", None),
    ("POST", "/peers/alice/search", {"query": "Paris"}),
    ("POST", "/sessions/dip/search", {"query": "Paris"}),
    ("GET", "/sessions/dip/context?peer_target=bob", None),
    ("GET", "/sessions/dip/summaries", None),
    ("POST", "/conclusions/query", {"query": "eggs", "filters": view("alice", "bob")}),
]
OTHERS_ROUTES = [
    ("POST", "/peers/bob/representation", {}),
    ("GET", "/peers/bob/card", None),
    ("PUT", "/peers/bob/card", {"peer_card": ["x"]}),
    ("GET", "/peers/bob/context", None),
    ("POST", "/peers/bob/search", {"query": "eggs"}),
    ("POST", "/peers/alice/search", {"query": "eggs", "peer_perspective": "bob"}),
    ("POST", "/search", {"query": "eggs"}),
    ("POST", "/sessions/dip/search", {"query": "eggs", "peer_perspective": "bob"}),
    ("GET", "/sessions/dip/context?peer_target=bob&peer_perspective=bob", None),
    ("POST", "/conclusions/query", {"query": "eggs", "filters": view("bob", "bob")}),
]


def _label(route: tuple[str, str, Any]) -> str:
    return f"{route[0]} {route[1]}"


async def call(
    client: httpx.AsyncClient, w: World, route: tuple[str, str, Any], headers: dict[str, str]
) -> httpx.Response:
    method, path, body = route
    return await client.request(method, w.url(path), json=body, headers=headers)


@pytest.mark.parametrize("route", OWN_ROUTES, ids=_label)
async def test_peer_key_reads_from_its_own_perspective(
    authed: httpx.AsyncClient, world: World, route: tuple[str, str, Any]
) -> None:
    r = await call(authed, world, route, bearer(workspace_id=world.ws, peer_id="alice"))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("route", OTHERS_ROUTES, ids=_label)
async def test_peer_key_cannot_read_another_perspective(
    authed: httpx.AsyncClient, world: World, route: tuple[str, str, Any]
) -> None:
    r = await call(authed, world, route, bearer(workspace_id=world.ws, peer_id="alice"))
    assert r.status_code == 403, r.text
    assert isinstance(r.json()["detail"], str)


@pytest.mark.parametrize("route", OWN_ROUTES + OTHERS_ROUTES, ids=_label)
async def test_workspace_key_reads_everything_in_its_workspace(
    authed: httpx.AsyncClient, world: World, route: tuple[str, str, Any]
) -> None:
    r = await call(authed, world, route, bearer(workspace_id=world.ws))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("route", OWN_ROUTES + OTHERS_ROUTES, ids=_label)
async def test_other_workspace_key_is_403(
    authed: httpx.AsyncClient, world: World, route: tuple[str, str, Any]
) -> None:
    r = await call(authed, world, route, bearer(workspace_id="someone-else"))
    assert r.status_code == 403, r.text
    assert world.ws in r.json()["detail"]


async def test_peer_key_session_search_sees_only_what_it_witnessed(
    authed: httpx.AsyncClient, world: World
) -> None:
    r = await authed.post(
        world.url("/sessions/lobby/search"),
        json={"query": "lobby password swordfish", "limit": 100},
        headers=bearer(workspace_id=world.ws, peer_id="dave"),
    )
    assert ids(await _ok(r)) == [world.id("welcome")]


async def test_peer_key_cannot_search_a_session_it_is_not_in(
    authed: httpx.AsyncClient, world: World
) -> None:
    r = await authed.post(
        world.url("/sessions/side/search"),
        json={"query": "attack"},
        headers=bearer(workspace_id=world.ws, peer_id="charlie"),
    )
    assert r.status_code == 403, r.text
    assert "not a member of session 'side'" in r.json()["detail"]
