"""honcho-ai against Rapport: API keys, errors mapped to the SDK's exceptions, options Rapport
refuses (scopes, session allowlists on reads), and the ``.aio`` client."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from honcho import (
    AuthenticationError,
    ConflictError,
    Honcho,
    NotFoundError,
    PermissionDeniedError,
    UnprocessableEntityError,
)

from libs.common.auth import create_jwt
from tests.conftest import JWT_SECRET


def test_scoped_keys(base_url: str, workspace_id: str) -> None:
    key = create_jwt(JWT_SECRET, workspace_id=workspace_id)
    client = Honcho(base_url=base_url, api_key=key, workspace_id=workspace_id, max_retries=0)
    alice = client.peer("alice")
    client.session("s").add_messages([alice.message("hello")])
    with pytest.raises(PermissionDeniedError):
        list(client.workspaces())  # admin only
    other = Honcho(base_url=base_url, api_key=key, workspace_id=f"x-{uuid.uuid4().hex[:8]}")
    with pytest.raises(PermissionDeniedError):
        other.peer("alice")

    # a peer key reaches its own peer and the sessions it is a member of
    peer_key = create_jwt(JWT_SECRET, workspace_id=workspace_id, peer_id="alice")
    as_alice = Honcho(base_url=base_url, api_key=peer_key, workspace_id=workspace_id)
    me = as_alice.peer("alice")
    assert isinstance(me.chat("What did I say?"), str)
    assert [m.content for m in as_alice.session("s").messages()] == ["hello"]
    with pytest.raises(PermissionDeniedError):
        as_alice.peer("bob")

    for bad in ("not-a-jwt", create_jwt("another-secret-" + "y" * 40, admin=True)):
        stranger = Honcho(base_url=base_url, api_key=bad, workspace_id=workspace_id)
        with pytest.raises(AuthenticationError):
            stranger.peer("alice")


def test_errors_carry_the_servers_message(client: Honcho, workspace_id: str) -> None:
    session = client.session("s")
    with pytest.raises(NotFoundError) as missing:
        session.get_message("no-such-message")
    assert "no-such-message" in str(missing.value.message)
    with pytest.raises(UnprocessableEntityError) as bad_filter:
        list(client.peers(filters={"no_such_field": 1}))
    assert "no_such_field" in str(bad_filter.value.message)
    with pytest.raises(ConflictError):
        client.delete_workspace(workspace_id)  # it still has an active session
    with pytest.raises(UnprocessableEntityError):
        session.add_messages([client.peer("alice").message(str(i)) for i in range(101)])


def test_unsupported_options_are_refused_not_ignored(client: Honcho) -> None:
    """Rapport has no scopes or read-side session allowlists yet: asking for them is a 422,
    never a silently wider answer. (Chat does take ``sessions``.)"""
    alice = client.peer("alice")
    session = client.session("s", peers=[alice])
    calls = [
        lambda: alice.chat("hi?", scope="team"),
        lambda: alice.representation(scope="team"),
        lambda: alice.representation(sessions=["s"]),
        lambda: session.context(peer_target="alice", scope="team"),
        lambda: session.context(peer_target="alice", sessions=["s"]),
    ]
    for call in calls:
        with pytest.raises(UnprocessableEntityError) as refused:
            call()
        assert "not supported" in str(refused.value.message)


def test_async_client(client: Honcho) -> None:
    async def scenario() -> None:
        alice = await client.aio.peer("alice")
        bob = await client.aio.peer("bob")
        session = await client.aio.session("s")
        await session.aio.add_messages(
            [alice.message("I adopted a cat named Miso."), bob.message("Cute!")]
        )
        for _ in range(300):
            status = await client.aio.queue_status()
            if status.pending_work_units == status.in_progress_work_units == 0:
                break
            await asyncio.sleep(0.2)
        ids = [m.id async for m in await session.aio.messages(size=1)]
        assert len(ids) == 2
        assert [p.id async for p in await client.aio.peers()] == ["alice", "bob"]
        context = await session.aio.context(tokens=200)
        assert [m.peer_id for m in context.messages] == ["alice", "bob"]
        answer = await alice.aio.chat("What is my cat called?")
        assert answer is not None and "Miso" in answer
        chunks = [c async for c in await alice.aio.chat_stream("What is my cat called?")]
        assert "Miso" in "".join(chunks)
        assert "Miso" in (await alice.aio.representation())
        hits = await client.aio.search("cat")
        assert hits and hits[0].content == "I adopted a cat named Miso."

    asyncio.run(scenario())
