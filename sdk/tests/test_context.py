"""SessionContext: parsing get_context, and the OpenAI and Anthropic converters."""

from __future__ import annotations

from typing import Any

import pytest

from rapport import Peer, Session, SessionContext

from .conftest import NOW, FakeServer, message_json

SUMMARY = {
    "content": "Alice and Bob planned a trip.",
    "message_id": "m0",
    "summary_type": "short",
    "created_at": NOW,
    "token_count": 7,
}


def context(**overrides: Any) -> SessionContext:
    data: dict[str, Any] = {
        "id": "s1",
        "messages": [
            message_json("m1", "Hi, I'm Alice", "alice"),
            message_json("m2", "Hello Alice, how can I help?", "assistant"),
            message_json("m3", "Bob here too", "bob"),
        ],
        "summary": SUMMARY,
        "peer_representation": "Alice likes hiking.",
        "peer_card": ["Name: Alice", "Likes tea"],
    }
    data.update(overrides)
    return SessionContext.model_validate(data)


def test_openai_blocks_come_first_in_order_as_system_messages() -> None:
    out = context().to_openai(assistant="assistant")
    assert out[:3] == [
        {
            "role": "system",
            "content": "<peer_representation>Alice likes hiking.</peer_representation>",
        },
        {"role": "system", "content": "<peer_card>['Name: Alice', 'Likes tea']</peer_card>"},
        {"role": "system", "content": "<summary>Alice and Bob planned a trip.</summary>"},
    ]


def test_openai_assistant_peer_becomes_assistant_others_user_with_names() -> None:
    out = context().to_openai(assistant="assistant")
    assert out[3:] == [
        {"role": "user", "name": "alice", "content": "Hi, I'm Alice"},
        {"role": "assistant", "name": "assistant", "content": "Hello Alice, how can I help?"},
        {"role": "user", "name": "bob", "content": "Bob here too"},
    ]


def test_the_assistant_is_whoever_is_named(client: Any) -> None:
    out = context(summary=None, peer_representation=None, peer_card=None).to_openai(
        assistant=Peer(client, "bob")
    )
    assert [m["role"] for m in out] == ["user", "user", "assistant"]
    assert [m["name"] for m in out] == ["alice", "assistant", "bob"]


def test_anthropic_blocks_are_user_turns() -> None:
    out = context().to_anthropic(assistant="assistant")
    assert out[:3] == [
        {
            "role": "user",
            "content": "<peer_representation>Alice likes hiking.</peer_representation>",
        },
        {"role": "user", "content": "<peer_card>['Name: Alice', 'Likes tea']</peer_card>"},
        {"role": "user", "content": "<summary>Alice and Bob planned a trip.</summary>"},
    ]


def test_anthropic_prefixes_other_peers_and_has_no_name_key() -> None:
    out = context().to_anthropic(assistant="assistant")
    assert out[3:] == [
        {"role": "user", "content": "alice: Hi, I'm Alice"},
        {"role": "assistant", "content": "Hello Alice, how can I help?"},
        {"role": "user", "content": "bob: Bob here too"},
    ]
    assert all("name" not in m for m in out)


def test_anthropic_does_not_merge_consecutive_user_turns() -> None:
    out = context(summary=None, peer_representation=None, peer_card=None).to_anthropic(
        assistant="nobody"
    )
    assert [m["role"] for m in out] == ["user", "user", "user"]
    assert out[1]["content"] == "assistant: Hello Alice, how can I help?"


@pytest.mark.parametrize("method", ["to_openai", "to_anthropic"])
def test_empty_or_missing_blocks_are_left_out(method: str) -> None:
    ctx = context(
        peer_representation="",
        peer_card=[],
        summary={**SUMMARY, "content": ""},
    )
    out = getattr(ctx, method)(assistant="assistant")
    assert len(out) == 3
    assert not any(m["content"].startswith("<") for m in out)
    assert ctx.peer_representation is None  # an empty representation reads as None

    bare = SessionContext.model_validate({"id": "s1", "messages": []})
    assert getattr(bare, method)(assistant="assistant") == []


def test_only_present_blocks_keep_their_order() -> None:
    out = context(peer_representation=None).to_openai(assistant="assistant")
    assert [m["content"][:9] for m in out[:2]] == ["<peer_car", "<summary>"]
    out = context(peer_card=None, summary=None).to_openai(assistant="assistant")
    assert out[0]["content"].startswith("<peer_representation>")
    assert out[1]["role"] == "user"


def test_len_counts_messages_and_summary() -> None:
    assert len(context()) == 4
    assert len(context(summary=None)) == 3


def test_get_context_sends_the_query_and_parses(server: FakeServer) -> None:
    path = "/v3/workspaces/ws/sessions/s1/context"
    server.json(
        "GET",
        path,
        {
            "id": "s1",
            "messages": [message_json("m1", "hi", "alice")],
            "summary": SUMMARY,
            "peer_representation": "rep",
            "peer_card": ["fact"],
        },
    )
    with server.sync_client() as client:
        ctx = Session(client, "s1").get_context(
            tokens=1500,
            peer_target="alice",
            peer_perspective=Peer(client, "bob"),
            search_query="hiking",
            search_top_k=5,
            max_conclusions=10,
        )
    assert ctx.summary is not None and ctx.summary.content == SUMMARY["content"]
    assert ctx.peer_card == ["fact"]
    (request,) = server.calls("GET", path)
    assert dict(request.url.params) == {
        "tokens": "1500",
        "summary": "true",
        "peer_target": "alice",
        "peer_perspective": "bob",
        "limit_to_session": "false",
        "search_query": "hiking",
        "search_top_k": "5",
        "max_conclusions": "10",
    }


def test_get_context_defaults_and_null_fields(server: FakeServer) -> None:
    path = "/v3/workspaces/ws/sessions/s1/context"
    server.json(
        "GET",
        path,
        {
            "id": "s1",
            "messages": [],
            "summary": None,
            "peer_representation": None,
            "peer_card": None,
        },
    )
    with server.sync_client() as client:
        ctx = Session(client, "s1").get_context(summary=False)
    assert ctx.summary is None and ctx.messages == []
    assert dict(server.calls("GET", path)[0].url.params) == {
        "summary": "false",
        "limit_to_session": "false",
    }


def test_get_context_argument_rules(client: Any) -> None:
    session = Session(client, "s1")
    with pytest.raises(ValueError, match="peer_perspective needs peer_target"):
        session.get_context(peer_perspective="bob")
    with pytest.raises(ValueError, match="tokens"):
        session.get_context(tokens=0)
