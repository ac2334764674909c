"""Pure parts of the console: reading a key's scope, where it lands, the graph layout and the
token-budget accounting of a session context."""

from __future__ import annotations

import math

import pytest

from libs.common.auth import create_jwt
from libs.common.tokens import count_tokens
from services.console.service import (
    KeyInfo,
    NotAKeyError,
    context_budget,
    key_info,
    landing,
    layout_graph,
)

SECRET = "s" * 40


@pytest.mark.parametrize(
    ("claims", "expected", "path"),
    [
        ({"admin": True}, KeyInfo("admin"), "/"),
        ({"workspace_id": "w"}, KeyInfo("workspace", "w"), "/w/w"),
        ({"workspace_id": "w", "peer_id": "p"}, KeyInfo("peer", "w", "p"), "/w/w/peers/p"),
        (
            {"workspace_id": "w", "session_id": "s"},
            KeyInfo("session", "w", None, "s"),
            "/w/w/sessions/s",
        ),
    ],
)
def test_key_scope_and_landing(claims: dict[str, object], expected: KeyInfo, path: str) -> None:
    info = key_info(create_jwt(SECRET, **claims))  # type: ignore[arg-type]
    assert info == expected
    assert landing(info) == path


def test_no_key_means_auth_off_and_lands_on_the_workspace_list() -> None:
    assert key_info(None).kind == "none" and landing(key_info(None)) == "/"


@pytest.mark.parametrize("bad", ["hello", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.x"])
def test_garbage_is_not_a_key(bad: str) -> None:
    with pytest.raises(NotAKeyError):
        key_info(bad)


def test_graph_places_every_peer_and_one_arrow_per_local_view() -> None:
    views = [
        {"observer_id": "alice", "observed_id": "alice", "conclusions": 3, "card_facts": 1},
        {"observer_id": "bob", "observed_id": "alice", "conclusions": 2, "card_facts": 0},
        {"observer_id": "charlie", "observed_id": "alice", "conclusions": 1, "card_facts": 0},
    ]
    graph = layout_graph(["alice", "bob", "charlie", "dave"], views, size=500)
    assert [n.id for n in graph.nodes] == ["alice", "bob", "charlie", "dave"]
    assert {n.id: n.self_view for n in graph.nodes} == {
        "alice": 3,
        "bob": 0,
        "charlie": 0,
        "dave": 0,
    }
    for n in graph.nodes:  # every node inside the canvas, none on top of another
        assert 0 < n.x < 500 and 0 < n.y < 500
    points = [(n.x, n.y) for n in graph.nodes]
    assert min(math.dist(a, b) for i, a in enumerate(points) for b in points[i + 1 :]) > 100
    assert [(e.observer, e.observed, e.conclusions) for e in graph.edges] == [
        ("bob", "alice", 2),
        ("charlie", "alice", 1),
    ]
    # The bigger view is drawn wider.
    assert graph.edges[0].width > graph.edges[1].width


def test_budget_counts_like_the_context_service() -> None:
    ctx = {
        "messages": [{"token_count": 7}, {"token_count": 5}],
        "summary": {"token_count": 11},
        "peer_representation": "Explicit observations:\n- alice likes tea",
        "peer_card": ["alice likes tea", "alice plays chess"],
    }
    budget = context_budget(ctx, 200)
    tokens = {s.name: s.tokens for s in budget.segments}
    assert tokens == {
        "summary": 11,
        "messages": 12,
        "representation": count_tokens(ctx["peer_representation"]),  # type: ignore[arg-type]
        "card": count_tokens("alice likes tea") + count_tokens("alice plays chess"),
    }
    assert budget.used == sum(tokens.values())
    assert {s.name: s.percent for s in budget.segments}["messages"] == 6.0
    empty = context_budget({"messages": [], "summary": None}, 10)
    assert empty.used == 0
