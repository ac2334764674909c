"""Against a running server: set ``RAPPORT_SDK_LIVE_URL`` (e.g. http://localhost:8000).

Skipped otherwise. Uses a fresh workspace and deletes it at the end. Covers the write path and
lists; the read path (chat, context, search...) is exercised by the project's examples.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from rapport import NotFoundError, Rapport, UnprocessableEntityError

LIVE_URL = os.environ.get("RAPPORT_SDK_LIVE_URL")

pytestmark = pytest.mark.skipif(not LIVE_URL, reason="RAPPORT_SDK_LIVE_URL is not set")


@pytest.fixture
def live() -> Iterator[Rapport]:
    workspace = f"sdk-live-{uuid.uuid4().hex[:10]}"
    with Rapport(LIVE_URL, workspace_id=workspace) as client:
        yield client
        for session in client.sessions():
            session.delete()
        client.delete_workspace()


def test_write_path_round_trip(live: Rapport, sleeps: list[float]) -> None:
    alice, bob = live.peer("alice", metadata={"role": "human"}), live.peer("bob")
    session = live.session("breakfast", peers=[alice, (bob, {"observe_others": True})])
    stored = session.add_messages(
        alice.message("What did you have for breakfast?"),
        [bob.message(f"bite {i}") for i in range(120)],
    )
    assert len(stored) == 121 and stored[0].peer_id == "alice"
    assert [m.content for m in session.messages(size=50)] == [m.content for m in stored]
    assert len(list(session.messages({"peer_id": "alice"}))) == 1
    assert {p.id for p in session.peers()} == {"alice", "bob"}
    assert session.get_peer_configuration(bob).observe_others is True
    assert [p.id for p in live.peers(size=1)] == ["alice", "bob"]

    uploaded = session.upload_file(("notes.md", "# Notes\n\nEggs."), alice, metadata={"k": 1})
    assert uploaded and all(m.metadata == {"k": 1} for m in uploaded)

    view = alice.conclusions_of(bob)
    made = view.create("Bob eats eggs", session=session)
    assert [c.content for c in view.list()] == ["Bob eats eggs"]
    view.delete(made[0])
    with pytest.raises(NotFoundError):
        session.get_message("missing")
    with pytest.raises(UnprocessableEntityError):
        live.peers({"no_such_field": 1}).to_list()
    assert live.queue_status(session=session).total_work_units >= 0
