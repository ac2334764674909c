"""honcho-ai against Rapport: workspaces, peers, sessions, membership, messages, lists and
pages, uploads, metadata and configuration, clone, delete."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from honcho import Honcho
from honcho.api_types import PeerConfig, SessionPeerConfig
from rapport import Rapport


def test_get_or_create_keeps_what_exists(client: Honcho, workspace_id: str) -> None:
    alice = client.peer("alice", metadata={"role": "human"})
    assert alice.id == "alice" and alice.metadata == {"role": "human"}
    assert alice.created_at is not None
    # get-or-create again: the same peer, its metadata untouched
    again = client.peer("alice")
    assert again.get_metadata() == {"role": "human"}
    session = client.session("chat", metadata={"topic": "food"})
    assert session.is_active is True
    assert client.session("chat").get_metadata() == {"topic": "food"}
    assert client.get_metadata() == {}
    assert workspace_id in list(client.workspaces(filters={"id": workspace_id}))


def test_metadata_and_configuration_round_trip(client: Honcho) -> None:
    client.set_metadata({"team": "red"})
    assert client.get_metadata() == {"team": "red"}
    client.set_configuration({"reasoning": {"enabled": True}, "summary": {"enabled": True}})
    config = client.get_configuration()
    assert config.reasoning is not None and config.reasoning.enabled is True

    peer = client.peer("alice", configuration=PeerConfig(observe_me=False))
    assert peer.get_configuration() == PeerConfig(observe_me=False)
    peer.set_configuration(PeerConfig(observe_me=True))
    peer.set_metadata({"age": 30})
    assert peer.get_configuration().observe_me is True
    assert peer.get_metadata() == {"age": 30}

    session = client.session("s")
    session.set_metadata({"day": 1})
    session.set_configuration(
        {"summary": {"messages_per_short_summary": 10, "messages_per_long_summary": 20}}
    )
    assert session.get_metadata() == {"day": 1}
    summary = session.get_configuration().summary
    assert summary is not None and summary.messages_per_short_summary == 10


def test_put_creates_a_missing_workspace(base_url: str, admin_key: str) -> None:
    """The SDK's workspace setters PUT without get-or-creating first."""
    fresh = Honcho(base_url=base_url, api_key=admin_key, workspace_id=f"new-{uuid.uuid4().hex}")
    fresh.set_metadata({"created": "by put"})
    assert fresh.get_metadata() == {"created": "by put"}


def test_peer_configuration_set_by_rapport_clients_still_parses(
    base_url: str, admin_key: str, client: Honcho, workspace_id: str
) -> None:
    """Rapport's peer-level ``observe_others`` (set here with Rapport's own SDK) must not break
    the SDK's strict peer configuration model; Rapport's own clients still see it."""
    with Rapport(base_url, api_key=admin_key, workspace_id=workspace_id) as rapport:
        rapport.peer("watcher", configuration={"observe_others": True, "observe_me": False})
        watcher = client.peer("watcher")
        assert watcher.configuration == PeerConfig(observe_me=False)
        assert [p.id for p in client.peers()] == ["watcher"]
        session = client.session("s", peers=["watcher"])
        assert [p.id for p in session.peers()] == ["watcher"]
        watcher.set_metadata({"k": 1})
        info = rapport.peer("watcher").info
        assert info is not None
        assert info.configuration == {"observe_others": True, "observe_me": False}


def test_messages_lists_filters_and_pages(client: Honcho) -> None:
    alice, bob = client.peer("alice"), client.peer("bob")
    session = client.session("chat")
    first = session.add_messages(
        [alice.message(f"alice line {i}", metadata={"i": i}) for i in range(15)]
    )
    second = session.add_messages([bob.message(f"bob line {i}") for i in range(10)])
    stored = first + second
    assert [m.content for m in stored][:2] == ["alice line 0", "alice line 1"]
    assert all(m.token_count > 0 and m.workspace_id == client.workspace_id for m in stored)

    # iterating a page fetches the following pages (same size, filters and order)
    page = session.messages(size=10)
    assert (page.page, page.size, page.total, page.pages) == (1, 10, 25, 3)
    assert [m.id for m in page] == [m.id for m in stored]
    assert [m.id for m in session.messages(size=7, reverse=True)] == [m.id for m in stored][::-1]
    nxt = page.get_next_page()
    assert nxt is not None and [m.id for m in nxt.items] == [m.id for m in stored[10:20]]
    assert [m.id for m in session.messages(page=3, size=10).items] == [m.id for m in stored[20:]]

    assert len(list(session.messages(filters={"peer_id": "bob"}, size=4))) == 10
    assert [m.content for m in session.messages(filters={"metadata": {"i": 3}})] == ["alice line 3"]
    only = session.messages(
        filters={"AND": [{"peer_id": "alice"}, {"metadata": {"i": {"gte": 13}}}]}
    )
    assert [m.content for m in only] == ["alice line 13", "alice line 14"]

    assert session.get_message(stored[0].id).content == "alice line 0"
    updated = session.update_message(stored[0], {"edited": True})
    assert updated.metadata == {"edited": True} and updated.content == "alice line 0"

    assert [p.id for p in client.peers(size=1)] == ["alice", "bob"]
    assert [s.id for s in client.sessions()] == ["chat"]
    assert [s.id for s in alice.sessions()] == ["chat"]
    assert [s.id for s in client.sessions(filters={"metadata": {"nope": 1}})] == []


def test_backdated_messages_keep_their_time(client: Honcho) -> None:
    alice = client.peer("alice")
    session = client.session("import")
    when = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    [old, naive] = session.add_messages(
        [
            alice.message("from the archive", created_at=when),
            alice.message("naive time", created_at=datetime(2024, 5, 2, 9, 30)),
        ]
    )
    assert old.created_at == when
    assert naive.created_at == datetime(2024, 5, 2, 9, 30, tzinfo=UTC)
    early = session.messages(filters={"created_at": {"lt": "2024-05-02T00:00:00Z"}})
    assert [m.content for m in early] == ["from the archive"]


def test_session_membership_and_peer_configuration(client: Honcho) -> None:
    alice, bob, carol = client.peer("alice"), client.peer("bob"), client.peer("carol")
    session = client.session("s", peers=[alice])
    session.add_peers([(bob, SessionPeerConfig(observe_others=True)), "carol"])
    assert sorted(p.id for p in session.peers()) == ["alice", "bob", "carol"]
    assert session.get_peer_configuration(bob) == SessionPeerConfig(observe_others=True)
    assert session.get_peer_configuration(alice) == SessionPeerConfig()
    session.set_peer_configuration(bob, SessionPeerConfig(observe_others=False, observe_me=False))
    assert session.get_peer_configuration("bob") == SessionPeerConfig(
        observe_others=False, observe_me=False
    )
    session.remove_peers([carol])
    assert sorted(p.id for p in session.peers()) == ["alice", "bob"]
    session.set_peers([carol])
    assert [p.id for p in session.peers()] == ["carol"]
    # authors join the session automatically
    session.add_messages([alice.message("I'm back")])
    assert sorted(p.id for p in session.peers()) == ["alice", "carol"]


def test_upload_a_text_file(client: Honcho) -> None:
    session = client.session("files")
    alice = client.peer("alice")
    messages = session.upload_file(
        ("notes.txt", b"Alice loves hiking.\n\nShe goes every Sunday.", "text/plain"),
        alice,
        metadata={"source": "notes.txt"},
        created_at=datetime(2024, 2, 2, 10, 0, tzinfo=UTC),
    )
    assert messages and all(m.peer_id == "alice" for m in messages)
    assert "hiking" in " ".join(m.content for m in messages)
    assert all(m.metadata == {"source": "notes.txt"} for m in messages)
    assert all(m.created_at == datetime(2024, 2, 2, 10, 0, tzinfo=UTC) for m in messages)
    assert [m.id for m in session.messages()] == [m.id for m in messages]


def test_clone_and_delete(client: Honcho, workspace_id: str) -> None:
    alice = client.peer("alice")
    session = client.session("original", metadata={"k": "v"})
    stored = session.add_messages([alice.message(f"m{i}") for i in range(4)])
    whole = session.clone()
    assert whole.id != "original"
    assert [m.content for m in whole.messages()] == ["m0", "m1", "m2", "m3"]
    head = session.clone(message_id=stored[1].id)
    assert [m.content for m in head.messages()] == ["m0", "m1"]
    assert sorted(s.id for s in client.sessions()) == sorted(["original", whole.id, head.id])

    for s in (whole, head, session):
        s.delete()
    assert [s.id for s in client.sessions(filters={"is_active": True})] == []
    client.delete_workspace(workspace_id)
    assert workspace_id not in list(client.workspaces(filters={"id": workspace_id}))


@pytest.mark.parametrize("size", [1, 100])
def test_page_sizes_at_the_bounds(client: Honcho, size: int) -> None:
    session = client.session("s")
    alice = client.peer("alice")
    session.add_messages([alice.message(f"m{i}") for i in range(3)])
    assert [m.content for m in session.messages(size=size)] == ["m0", "m1", "m2"]
