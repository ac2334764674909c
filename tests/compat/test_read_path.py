"""honcho-ai against Rapport: queue status, get_context with to_openai / to_anthropic,
summaries, chat (plain, streamed, with evidence), representation, peer card, peer context,
search, conclusions -- over what the deriver made of a real conversation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from honcho import Honcho, Peer, Session
from honcho.api_types import QueueStatusResponse, SessionPeerConfig

from tests.compat.conftest import wait_for_deriver


@dataclass
class World:
    client: Honcho
    alice: Peer
    bob: Peer
    charlie: Peer
    group: Session
    side: Session


@pytest.fixture(scope="module")
def world(base_url: str, admin_key: str) -> Iterator[World]:
    """A breakfast group chat (summaries every 10 messages) and a side chat without charlie,
    fully derived."""
    client = Honcho(
        base_url=base_url,
        api_key=admin_key,
        workspace_id=f"compat-read-{uuid.uuid4().hex[:8]}",
        max_retries=0,
    )
    alice, bob, charlie = client.peer("alice"), client.peer("bob"), client.peer("charlie")
    watching = SessionPeerConfig(observe_others=True)
    group = client.session(
        "group",
        peers=[(alice, watching), (bob, watching), (charlie, watching)],
        configuration={
            "summary": {"messages_per_short_summary": 10, "messages_per_long_summary": 20}
        },
    )
    group.add_messages(
        [
            alice.message("Good morning! What did everyone have for breakfast?"),
            bob.message("I had scrambled eggs for breakfast, with a double espresso."),
            charlie.message("Just a banana, I was running late for the train."),
        ]
        + [
            (alice, bob, charlie)[i % 3].message(f"Round {i}: we planned the hike near the lake.")
            for i in range(20)
        ]
        + [bob.message("By the way, I'm allergic to peanuts.")]
    )
    side = client.session("side", peers=[(alice, watching), (bob, watching)])
    side.add_messages([alice.message("Between us, I secretly dislike pancakes.")])
    wait_for_deriver(client)
    yield World(client, alice, bob, charlie, group, side)


def test_queue_status(world: World) -> None:
    status = world.client.queue_status()
    assert isinstance(status, QueueStatusResponse)
    assert status.total_work_units >= 25 and status.pending_work_units == 0
    assert status.total_work_units == status.completed_work_units
    session_status = world.group.queue_status()
    assert session_status.sessions is not None and set(session_status.sessions) == {"group"}
    scoped = world.client.queue_status(observer=world.alice, sender=world.bob)
    assert scoped.pending_work_units == 0


def test_summaries_and_context_with_converters(world: World) -> None:
    summaries = world.group.summaries()
    assert summaries.short_summary is not None and summaries.long_summary is not None
    assert summaries.short_summary.summary_type == "short"
    assert summaries.long_summary.token_count > 0

    # Rapport gives a summary up to 40 % of the budget: make room for the long one.
    budget = summaries.long_summary.token_count * 5 // 2 + 20
    context = world.group.context(summary=True, tokens=budget)
    assert context.summary is not None and context.summary.summary_type == "long"
    assert len(context) == len(context.messages) + 1
    assert 0 < len(context.messages) < 24
    total = context.summary.token_count + sum(m.token_count for m in context.messages)
    assert total <= budget
    assert context.messages[-1].content == "By the way, I'm allergic to peanuts."

    openai = context.to_openai(assistant=world.bob)
    assert openai[0] == {
        "role": "system",
        "content": f"<summary>{context.summary.content}</summary>",
    }
    for message, turn in zip(context.messages, openai[1:], strict=True):
        role = "assistant" if message.peer_id == "bob" else "user"
        assert turn == {"role": role, "name": message.peer_id, "content": message.content}
    anthropic = context.to_anthropic(assistant="bob")
    assert anthropic[0] == {
        "role": "user",
        "content": f"<summary>{context.summary.content}</summary>",
    }
    for message, turn in zip(context.messages, anthropic[1:], strict=True):
        if message.peer_id == "bob":
            assert turn == {"role": "assistant", "content": message.content}
        else:
            assert turn == {"role": "user", "content": f"{message.peer_id}: {message.content}"}

    everything = world.group.context(summary=False)
    assert everything.summary is None and len(everything.messages) == 24


def test_context_with_a_peer_target(world: World) -> None:
    context = world.group.context(
        summary=False, tokens=2000, peer_target="bob", peer_perspective="charlie"
    )
    assert context.peer_representation and "eggs" in context.peer_representation
    blocks = context.to_openai(assistant="charlie")
    assert blocks[0]["role"] == "system"
    assert blocks[0]["content"].startswith("<peer_representation>")
    # charlie was never in the side chat: nothing of it in charlie's view of alice
    about_alice = world.group.context(
        summary=False, peer_target="alice", peer_perspective="charlie", search_query="pancakes"
    )
    assert "pancakes" not in (about_alice.peer_representation or "")
    limited = world.group.context(
        peer_target="alice", limit_to_session=True, include_most_frequent=True, max_conclusions=5
    )
    assert "pancakes" not in (limited.peer_representation or "")


def test_chat_plain_targeted_and_scoped_to_a_session(world: World) -> None:
    answer = world.bob.chat("What did I have for breakfast?")
    assert isinstance(answer, str) and "eggs" in answer
    about_bob = world.alice.chat("What did Bob have for breakfast?", target=world.bob)
    assert isinstance(about_bob, str) and "eggs" in about_bob
    # charlie never saw the side chat
    charlie_view = world.charlie.chat("Does Alice like pancakes?", target="alice")
    assert "pancakes" not in (charlie_view or "").lower()
    in_side = world.alice.chat("What do I dislike?", session=world.side, reasoning_level="minimal")
    assert in_side is not None and "pancakes" in in_side
    allowlist = world.alice.chat("What do I dislike?", sessions=["group"])
    assert "pancakes" not in (allowlist or "")


def test_chat_streamed_and_with_evidence(world: World) -> None:
    chunks = list(world.bob.chat_stream("What am I allergic to?"))
    assert len(chunks) > 1 and "peanuts" in "".join(chunks)

    stream = world.alice.chat_stream("What did Bob eat?", target="bob", include_evidence=True)
    text = "".join(stream)
    assert "eggs" in text
    assert stream.evidence is not None
    assert stream.evidence.messages or stream.evidence.conclusions

    response = world.bob.chat("What am I allergic to?", include_evidence=True)
    assert response.content is not None and "peanuts" in response.content
    assert response.evidence is not None
    assert all(c.level == "explicit" for c in response.evidence.conclusions)


def test_representation_card_and_peer_context(world: World) -> None:
    own = world.bob.representation()
    assert "eggs" in own and "peanuts" in own
    alice_on_bob = world.alice.representation(target=world.bob, search_query="allergy")
    assert "peanuts" in alice_on_bob
    in_session = world.group.representation(world.alice, target="bob", max_conclusions=3)
    assert isinstance(in_session, str)
    assert "pancakes" not in world.charlie.representation(target="alice")
    assert "pancakes" not in world.group.representation("charlie", target="alice")

    world.charlie.set_card(["Runs late for trains", "Eats bananas"])
    assert world.charlie.get_card() == ["Runs late for trains", "Eats bananas"]
    assert world.alice.set_card(["Bob is allergic to peanuts"], target="bob") == [
        "Bob is allergic to peanuts"
    ]
    assert world.alice.get_card(target=world.bob) == ["Bob is allergic to peanuts"]

    context = world.alice.context(target="bob", search_query="breakfast", search_top_k=5)
    assert context.peer_id == "alice" and context.target_id == "bob"
    assert context.representation and "eggs" in context.representation
    assert context.peer_card == ["Bob is allergic to peanuts"]
    assert world.charlie.context().target_id == "charlie"


def test_search_workspace_session_and_peer(world: World) -> None:
    hits = world.client.search("eggs breakfast")
    assert hits and "eggs" in hits[0].content
    assert len(world.client.search("hike", limit=3)) == 3
    filtered = world.client.search("hike lake", filters={"peer_id": "charlie"}, limit=50)
    assert filtered and {m.peer_id for m in filtered} == {"charlie"}
    assert "pancakes" in world.side.search("pancakes")[0].content
    assert all(m.session_id == "group" for m in world.group.search("pancakes"))
    mine = world.bob.search("peanuts allergy")
    assert mine and all(m.peer_id == "bob" for m in mine)
    assert "peanuts" in mine[0].content


def test_conclusions_create_list_query_and_delete(world: World) -> None:
    view = world.charlie.conclusions_of(world.bob)
    created = view.create(
        [
            {"content": "Bob drinks double espressos", "session_id": "group"},
            {"content": "Bob likes hiking by the lake"},
        ]
    )
    assert [c.content for c in created] == [
        "Bob drinks double espressos",
        "Bob likes hiking by the lake",
    ]
    assert all(c.observer_id == "charlie" and c.observed_id == "bob" for c in created)
    ids = {c.id for c in created}
    # charlie also holds what the deriver concluded about bob (observe_others)
    listed = list(view.list(size=2))
    assert ids <= {c.id for c in listed} and len(listed) > 2
    assert all(c.observer_id == "charlie" and c.observed_id == "bob" for c in listed)
    in_group = {c.id for c in view.list(session="group")}
    assert created[0].id in in_group and created[1].id not in in_group
    found = view.query("espresso", top_k=3)
    assert created[0].id in {c.id for c in found}
    assert all(c.observer_id == "charlie" for c in found)
    assert view.get(created[0].id).content == "Bob drinks double espressos"
    assert {c.id for c in view.get_many(list(ids))} == ids
    assert ids <= {c.id for c in world.client.conclusions.list()}

    own = world.bob.conclusions.list()
    assert own.total is not None and own.total > 0
    assert all(c.observer_id == "bob" and c.observed_id == "bob" for c in own)

    view.delete(created[0].id)
    remaining = {c.id for c in view.list()}
    assert created[0].id not in remaining and created[1].id in remaining
