"""Client behaviour: configuration, lazy workspace, request shapes of every operation."""

from __future__ import annotations

import asyncio
import io
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from rapport import (
    AsyncPeer,
    AsyncRapport,
    AsyncSession,
    MessageCreate,
    NotFoundError,
    Peer,
    QueueStatus,
    Rapport,
    Session,
    SessionPeerConfig,
    WaitTimeoutError,
)

from .conftest import (
    NOW,
    FakeServer,
    body_of,
    conclusion_json,
    message_json,
    peer_json,
    session_json,
    workspace_json,
)

WS = "/v3/workspaces"
PEERS = "/v3/workspaces/ws/peers"
SESSIONS = "/v3/workspaces/ws/sessions"
MESSAGES = "/v3/workspaces/ws/sessions/s1/messages"


def echo_messages(request: httpx.Request) -> httpx.Response:
    sent = body_of(request)["messages"]
    stored = [
        message_json(f"m{i}", m["content"], m["peer_id"], metadata=m.get("metadata", {}))
        for i, m in enumerate(sent)
    ]
    return httpx.Response(201, json=stored)


def queue(pending: int, in_progress: int = 0) -> dict[str, int]:
    return {
        "total_work_units": 10,
        "completed_work_units": 10 - pending - in_progress,
        "in_progress_work_units": in_progress,
        "pending_work_units": pending,
    }


# -- configuration ------------------------------------------------------------------------------
def test_defaults_without_environment() -> None:
    client = Rapport()
    assert client.base_url == "http://localhost:8000"
    assert client.workspace_id == "default"
    assert "Authorization" not in client._core._headers
    assert client._core.timeout == 60.0 and client._core.max_retries == 2
    client.close()


def test_environment_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAPPORT_BASE_URL", "https://memory.example.com/")
    monkeypatch.setenv("RAPPORT_API_KEY", "env-key")
    monkeypatch.setenv("RAPPORT_WORKSPACE_ID", "env-ws")
    with Rapport() as client:
        assert client.base_url == "https://memory.example.com"
        assert client.workspace_id == "env-ws"
        assert client._core._headers["Authorization"] == "Bearer env-key"
    with Rapport("http://arg:1", "arg-key", "arg-ws") as client:
        assert (client.base_url, client.workspace_id) == ("http://arg:1", "arg-ws")
        assert client._core._headers["Authorization"] == "Bearer arg-key"


async def test_async_client_reads_the_same_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAPPORT_WORKSPACE_ID", "env-ws")
    async with AsyncRapport() as client:
        assert client.workspace_id == "env-ws"
        assert client.base_url == "http://localhost:8000"


def test_headers_sent(server: FakeServer) -> None:
    server.json("POST", PEERS, peer_json("alice"))
    with server.sync_client(api_key="secret", default_headers={"X-Trace": "t1"}) as client:
        client.peer("alice")
    for request in server.requests:
        assert request.headers["authorization"] == "Bearer secret"
        assert request.headers["x-trace"] == "t1"
        assert request.headers["user-agent"].startswith("rapport-python/")
        assert str(request.url).startswith("http://rapport.test/v3/")


def test_constructing_makes_no_request(server: FakeServer) -> None:
    with server.sync_client():
        pass
    assert server.requests == []


# -- lazy workspace -----------------------------------------------------------------------------
def test_workspace_is_created_once_before_the_first_scoped_call(server: FakeServer) -> None:
    server.json("POST", PEERS, peer_json("alice"))
    server.json("POST", SESSIONS, session_json("s1"))
    server.json("GET", "/v3/workspaces/ws/queue/status", queue(0))
    with server.sync_client() as client:
        client.peer("alice")
        client.peer("bob")
        client.session("s1")
        client.queue_status()
    assert server.paths() == [
        "POST /v3/workspaces",
        "POST /v3/workspaces/ws/peers",
        "POST /v3/workspaces/ws/peers",
        "POST /v3/workspaces/ws/sessions",
        "GET /v3/workspaces/ws/queue/status",
    ]
    assert body_of(server.requests[0]) == {"id": "ws"}


def test_failed_workspace_creation_is_tried_again(server: FakeServer) -> None:
    server.on(
        "POST",
        WS,
        [
            httpx.Response(401, json={"detail": "bad key"}),
            httpx.Response(200, json=workspace_json()),
        ],
    )
    server.json("POST", PEERS, peer_json("alice"))
    with server.sync_client() as client:
        with pytest.raises(Exception, match="bad key"):
            client.peer("alice")
        client.peer("alice")
        client.peer("alice")
    assert [p for p in server.paths() if p == "POST /v3/workspaces"] == ["POST /v3/workspaces"] * 2


def test_calls_outside_the_workspace_do_not_create_it(server: FakeServer) -> None:
    server.json("POST", "/v3/keys", {"key": "jwt"})
    server.json("PUT", "/v3/workspaces/ws", workspace_json(metadata={"a": 1}))
    with server.sync_client() as client:
        assert client.create_key(peer_id="alice") == "jwt"
        assert client.set_metadata({"a": 1}).metadata == {"a": 1}
    assert server.paths() == ["POST /v3/keys", "PUT /v3/workspaces/ws"]
    assert dict(server.requests[0].url.params) == {"workspace_id": "ws", "peer_id": "alice"}


def test_get_workspace_counts_as_the_creation(server: FakeServer) -> None:
    server.json("POST", WS, workspace_json(metadata={"team": "x"}, configuration={"dream": {}}))
    server.json("POST", PEERS, peer_json("alice"))
    with server.sync_client() as client:
        assert client.get_metadata() == {"team": "x"}
        client.peer("alice")
    assert server.paths() == ["POST /v3/workspaces", "POST /v3/workspaces/ws/peers"]


async def test_async_workspace_is_created_exactly_once_under_concurrency(
    server: FakeServer,
) -> None:
    server.json("POST", PEERS, peer_json("p"))
    async with server.async_client() as client:
        await asyncio.gather(*(client.peer(f"p{i}") for i in range(10)))
    assert len(server.calls("POST", WS)) == 1
    assert len(server.calls("POST", PEERS)) == 10
    assert server.paths()[0] == "POST /v3/workspaces"


def test_sync_workspace_is_created_exactly_once_across_threads(server: FakeServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    server.json("POST", PEERS, peer_json("p"))
    with server.sync_client() as client, ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: client.peer(f"p{i}"), range(16)))
    assert len(server.calls("POST", WS)) == 1


# -- peers and sessions -------------------------------------------------------------------------
def test_peer_get_or_create_body(server: FakeServer) -> None:
    server.json("POST", PEERS, peer_json("alice", metadata={"age": 30}))
    with server.sync_client() as client:
        alice = client.peer("alice", metadata={"age": 30}, configuration={"observe_me": False})
    assert alice.id == "alice" and alice.info is not None and alice.info.metadata == {"age": 30}
    assert body_of(server.calls("POST", PEERS)[0]) == {
        "id": "alice",
        "metadata": {"age": 30},
        "configuration": {"observe_me": False},
    }


def test_message_builds_locally(client: Rapport, server: FakeServer) -> None:
    when = datetime(2020, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    message = Peer(client, "alice").message("hi", metadata={"k": 1}, created_at=when)
    assert message == MessageCreate(
        content="hi", peer_id="alice", metadata={"k": 1}, created_at=when
    )
    assert message.to_wire() == {
        "content": "hi",
        "peer_id": "alice",
        "metadata": {"k": 1},
        "created_at": "2020-01-02T03:04:05Z",
    }
    assert server.requests == []


def test_session_with_peers_in_every_accepted_shape(server: FakeServer) -> None:
    server.json("POST", SESSIONS, session_json("s1"))
    with server.sync_client() as client:
        bob = Peer(client, "bob")
        client.session(
            "s1",
            metadata={"topic": "food"},
            peers=["alice", bob, ("carol", SessionPeerConfig(observe_others=True))],
        )
        client.session("s1", peers={"dave": {"observe_me": False, "observe_others": None}})
    first, second = (body_of(r) for r in server.calls("POST", SESSIONS))
    assert first == {
        "id": "s1",
        "metadata": {"topic": "food"},
        "peers": {"alice": {}, "bob": {}, "carol": {"observe_others": True}},
    }
    assert second == {"id": "s1", "peers": {"dave": {"observe_me": False}}}


def test_membership_calls(server: FakeServer) -> None:
    base = f"{SESSIONS}/s1/peers"
    for method in ("POST", "PUT", "DELETE"):
        server.json(method, base, session_json("s1"))
    server.json("GET", f"{base}/alice/config", {"observe_me": True, "observe_others": False})
    server.json("PUT", f"{base}/alice/config", {"observe_others": True})
    with server.sync_client() as client:
        session = Session(client, "s1")
        session.add_peers(["alice", ("bob", {"observe_others": True})])
        session.set_peers({"alice": None})
        session.remove_peers([Peer(client, "bob"), "carol"])
        config = session.get_peer_configuration("alice")
        session.set_peer_configuration("alice", SessionPeerConfig(observe_others=True))
    assert config == SessionPeerConfig(observe_me=True, observe_others=False)
    assert body_of(server.calls("POST", base)[0]) == {"alice": {}, "bob": {"observe_others": True}}
    assert body_of(server.calls("PUT", base)[0]) == {"alice": {}}
    assert body_of(server.calls("DELETE", base)[0]) == ["bob", "carol"]
    assert body_of(server.calls("PUT", f"{base}/alice/config")[0]) == {"observe_others": True}


# -- messages -----------------------------------------------------------------------------------
def test_add_messages_takes_varargs(server: FakeServer) -> None:
    server.on("POST", MESSAGES, echo_messages)
    with server.sync_client() as client:
        alice, bob = Peer(client, "alice"), Peer(client, "bob")
        stored = Session(client, "s1").add_messages(alice.message("hi"), bob.message("hello"))
    assert [(m.peer_id, m.content) for m in stored] == [("alice", "hi"), ("bob", "hello")]
    (request,) = server.calls("POST", MESSAGES)
    assert body_of(request) == {
        "messages": [{"content": "hi", "peer_id": "alice"}, {"content": "hello", "peer_id": "bob"}]
    }


def test_add_messages_takes_a_single_list(server: FakeServer) -> None:
    server.on("POST", MESSAGES, echo_messages)
    with server.sync_client() as client:
        alice = Peer(client, "alice")
        stored = Session(client, "s1").add_messages([alice.message("a"), alice.message("b")])
    assert [m.content for m in stored] == ["a", "b"]
    assert len(server.calls("POST", MESSAGES)) == 1


def test_add_messages_splits_more_than_100_into_batches(server: FakeServer) -> None:
    server.on("POST", MESSAGES, echo_messages)
    with server.sync_client() as client:
        alice = Peer(client, "alice")
        stored = Session(client, "s1").add_messages([alice.message(str(i)) for i in range(250)])
    sizes = [len(body_of(r)["messages"]) for r in server.calls("POST", MESSAGES)]
    assert sizes == [100, 100, 50]
    firsts = [body_of(r)["messages"][0]["content"] for r in server.calls("POST", MESSAGES)]
    assert firsts == ["0", "100", "200"]  # order kept across batches
    assert len(stored) == 250


def test_add_messages_exactly_100_is_one_batch(server: FakeServer) -> None:
    server.on("POST", MESSAGES, echo_messages)
    with server.sync_client() as client:
        alice = Peer(client, "alice")
        Session(client, "s1").add_messages(*[alice.message(str(i)) for i in range(100)])
    assert len(server.calls("POST", MESSAGES)) == 1


def test_add_messages_with_nothing_sends_nothing(server: FakeServer) -> None:
    with server.sync_client() as client:
        assert Session(client, "s1").add_messages() == []
        assert Session(client, "s1").add_messages([]) == []
    assert server.requests == []


def test_add_messages_rejects_other_things(client: Rapport) -> None:
    with pytest.raises(TypeError):
        Session(client, "s1").add_messages("hello")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Session(client, "s1").add_messages([{"content": "x", "peer_id": "a"}])  # type: ignore[list-item]


async def test_async_add_messages_batches(server: FakeServer) -> None:
    server.on("POST", MESSAGES, echo_messages)
    async with server.async_client() as client:
        alice = AsyncPeer(client, "alice")
        stored = await AsyncSession(client, "s1").add_messages(
            *[alice.message(str(i)) for i in range(101)]
        )
    assert len(stored) == 101
    assert [len(body_of(r)["messages"]) for r in server.calls("POST", MESSAGES)] == [100, 1]


def test_message_read_and_update(server: FakeServer) -> None:
    server.json("GET", f"{MESSAGES}/m1", message_json("m1", "hi", "alice"))
    server.json("PUT", f"{MESSAGES}/m1", message_json("m1", "hi", "alice", metadata={"x": 1}))
    with server.sync_client() as client:
        session = Session(client, "s1")
        message = session.get_message("m1")
        updated = session.update_message(message, {"x": 1})
    assert updated.metadata == {"x": 1}
    assert body_of(server.calls("PUT", f"{MESSAGES}/m1")[0]) == {"metadata": {"x": 1}}


@pytest.mark.parametrize("kind", ["path", "bytes", "binary", "text", "tuple"])
def test_upload_file_sends_multipart(server: FakeServer, tmp_path: Path, kind: str) -> None:
    upload = f"{MESSAGES}/upload"
    server.json("POST", upload, [message_json("m1", "# Notes", "alice")], status=201)
    path = tmp_path / "notes.md"
    path.write_text("# Notes")
    file: Any = {
        "path": path,
        "bytes": b"# Notes",
        "binary": io.BytesIO(b"# Notes"),
        "text": io.StringIO("# Notes"),
        "tuple": ("notes.md", "# Notes", "text/markdown"),
    }[kind]
    with server.sync_client() as client:
        stored = Session(client, "s1").upload_file(
            file,
            Peer(client, "alice"),
            metadata={"source": "disk"},
            created_at=datetime(2024, 1, 1, tzinfo=timezone.utc),
            filename="notes.md" if kind in ("bytes", "binary", "text") else None,
        )
    assert stored[0].content == "# Notes"
    (request,) = server.calls("POST", upload)
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    content = request.content.decode()
    assert 'name="file"; filename="notes.md"' in content
    assert "Content-Type: text/markdown" in content
    assert "# Notes" in content
    assert 'name="peer_id"\r\n\r\nalice' in content
    assert 'name="metadata"\r\n\r\n{"source": "disk"}' in content
    assert 'name="created_at"\r\n\r\n2024-01-01T00:00:00+00:00' in content
    assert 'name="configuration"' not in content


# -- reading --------------------------------------------------------------------------------------
def test_representation_card_and_peer_context(server: FakeServer) -> None:
    base = f"{PEERS}/alice"
    server.json("POST", f"{base}/representation", {"representation": "Alice likes tea."})
    server.json("GET", f"{base}/card", {"peer_card": ["likes tea"]})
    server.json("PUT", f"{base}/card", {"peer_card": ["a", "b"]})
    server.json(
        "GET",
        f"{base}/context",
        {"peer_id": "alice", "target_id": "bob", "representation": "r", "peer_card": None},
    )
    with server.sync_client() as client:
        alice = Peer(client, "alice")
        assert alice.representation(session="s1", search_query="tea", max_conclusions=5) == (
            "Alice likes tea."
        )
        assert alice.card() == ["likes tea"]
        assert alice.set_card(["a", "b"], target="bob") == ["a", "b"]
        ctx = alice.context(target="bob", search_top_k=3)
    assert ctx.target_id == "bob" and ctx.peer_card is None
    assert body_of(server.calls("POST", f"{base}/representation")[0]) == {
        "session_id": "s1",
        "search_query": "tea",
        "max_conclusions": 5,
    }
    assert dict(server.calls("PUT", f"{base}/card")[0].url.params) == {"target": "bob"}
    assert body_of(server.calls("PUT", f"{base}/card")[0]) == {"peer_card": ["a", "b"]}
    assert dict(server.calls("GET", f"{base}/context")[0].url.params) == {
        "target": "bob",
        "search_top_k": "3",
    }


def test_session_representation_summaries_and_search(server: FakeServer) -> None:
    server.json("POST", f"{PEERS}/bob/representation", {"representation": "Bob: eggs"})
    summary = {
        "content": "c",
        "message_id": "m9",
        "summary_type": "short",
        "created_at": NOW,
        "token_count": 1,
    }
    server.json(
        "GET",
        f"{SESSIONS}/s1/summaries",
        {"id": "s1", "short_summary": summary, "long_summary": None},
    )
    server.json("POST", f"{SESSIONS}/s1/search", [message_json("m1", "eggs", "bob")])
    server.json("POST", "/v3/workspaces/ws/search", [])
    server.json("POST", f"{PEERS}/bob/search", [])
    with server.sync_client() as client:
        session = Session(client, "s1")
        assert session.representation("bob", target="alice") == "Bob: eggs"
        summaries = session.summaries()
        found = session.search("eggs", limit=5)
        assert client.search("eggs", filters={"peer_id": "bob"}) == []
        assert Peer(client, "bob").search("eggs") == []
    assert summaries.short_summary is not None and summaries.short_summary.message_id == "m9"
    assert summaries.long_summary is None
    assert found[0].content == "eggs"
    assert body_of(server.calls("POST", f"{PEERS}/bob/representation")[0]) == {
        "session_id": "s1",
        "target": "alice",
    }
    assert body_of(server.calls("POST", f"{SESSIONS}/s1/search")[0]) == {
        "query": "eggs",
        "limit": 5,
    }
    assert body_of(server.calls("POST", "/v3/workspaces/ws/search")[0]) == {
        "query": "eggs",
        "limit": 10,
        "filters": {"peer_id": "bob"},
    }


def test_clone_delete_and_metadata(server: FakeServer) -> None:
    server.json("POST", f"{SESSIONS}/s1/clone", session_json("s1-copy"), status=201)
    server.on("DELETE", f"{SESSIONS}/s1", httpx.Response(204))
    server.json("PUT", f"{SESSIONS}/s1", session_json("s1", metadata={"k": "v"}))
    server.json("POST", SESSIONS, session_json("s1", configuration={"summary": {"enabled": False}}))
    with server.sync_client() as client:
        session = Session(client, "s1")
        copy = session.clone(message_id="m5")
        session.set_metadata({"k": "v"})
        assert session.info is not None and session.info.metadata == {"k": "v"}
        assert session.get_configuration() == {"summary": {"enabled": False}}
        session.delete()
    assert isinstance(copy, Session) and copy.id == "s1-copy"
    assert dict(server.calls("POST", f"{SESSIONS}/s1/clone")[0].url.params) == {"message_id": "m5"}


# -- workspace operations ----------------------------------------------------------------------
def test_queue_status_parameters(server: FakeServer) -> None:
    path = "/v3/workspaces/ws/queue/status"
    server.json("GET", path, {**queue(2, 1), "sessions": None, "dead_letter_work_units": 1})
    with server.sync_client() as client:
        status = client.queue_status(observer="alice", sender=Peer(client, "bob"), session="s1")
        Session(client, "s1").queue_status()
    assert isinstance(status, QueueStatus) and not status.is_idle
    assert status.dead_letter_work_units == 1
    first, second = server.calls("GET", path)
    assert dict(first.url.params) == {
        "observer_id": "alice",
        "sender_id": "bob",
        "session_id": "s1",
    }
    assert dict(second.url.params) == {"session_id": "s1"}


def test_wait_for_queue_polls_until_idle(server: FakeServer, sleeps: list[float]) -> None:
    path = "/v3/workspaces/ws/queue/status"
    server.on(
        "GET",
        path,
        [
            httpx.Response(200, json=queue(3)),
            httpx.Response(200, json=queue(0, 1)),
            httpx.Response(200, json=queue(0)),
        ],
    )
    with server.sync_client() as client:
        assert client.wait_for_queue(session="s1", poll_interval=0.1).is_idle
    assert len(server.calls("GET", path)) == 3
    assert sleeps == [0.1, 0.1]


def test_wait_for_queue_times_out(server: FakeServer) -> None:
    server.json("GET", "/v3/workspaces/ws/queue/status", queue(5))
    with server.sync_client() as client, pytest.raises(WaitTimeoutError, match="5 pending"):
        client.wait_for_queue(max_wait=0.0)


def test_dead_letter_retry_and_dream(server: FakeServer) -> None:
    letter = {
        "id": "d1",
        "consumer": "deriver",
        "event_type": "message.created",
        "event_id": "e1",
        "error": "boom",
        "created_at": NOW,
        "retried_at": NOW,
    }
    server.json("POST", "/v3/workspaces/ws/queue/dead_letters/d1/retry", letter)
    server.on("POST", "/v3/workspaces/ws/schedule_dream", httpx.Response(204))
    with server.sync_client() as client:
        assert client.retry_dead_letter("d1").retried_at is not None
        client.schedule_dream("alice")
        client.schedule_dream("alice", observed="bob", session="s1")
    first, second = server.calls("POST", "/v3/workspaces/ws/schedule_dream")
    assert body_of(first) == {
        "observer": "alice",
        "observed": "alice",
        "session_id": None,
        "dream_type": "omni",
    }
    assert body_of(second) == {
        "observer": "alice",
        "observed": "bob",
        "session_id": "s1",
        "dream_type": "omni",
    }


def test_create_key_parameters(server: FakeServer) -> None:
    server.json("POST", "/v3/keys", {"key": "k"})
    expires = datetime(2030, 1, 1, tzinfo=timezone.utc)
    with server.sync_client() as client:
        client.create_key("other", session_id="s1", expires_at=expires)
    assert dict(server.requests[0].url.params) == {
        "workspace_id": "other",
        "session_id": "s1",
        "expires_at": "2030-01-01T00:00:00+00:00",
    }


def test_workspace_configuration_and_listing(server: FakeServer) -> None:
    server.json(
        "PUT", "/v3/workspaces/ws", workspace_json(configuration={"dream": {"enabled": False}})
    )
    server.json(
        "POST",
        "/v3/workspaces/list",
        {
            "items": [workspace_json("a"), workspace_json("b")],
            "total": 2,
            "page": 1,
            "size": 50,
            "pages": 1,
        },
    )
    server.on("DELETE", "/v3/workspaces/ws", httpx.Response(204))
    with server.sync_client() as client:
        client.set_configuration({"dream": {"enabled": False}})
        assert [w.id for w in client.workspaces()] == ["a", "b"]
        client.delete_workspace()
    assert body_of(server.calls("PUT", "/v3/workspaces/ws")[0]) == {
        "configuration": {"dream": {"enabled": False}}
    }
    assert "POST /v3/workspaces" not in server.paths()


# -- conclusions --------------------------------------------------------------------------------
def test_conclusion_views(server: FakeServer) -> None:
    base = "/v3/workspaces/ws/conclusions"
    server.json("POST", base, [conclusion_json("c1", "alice", "bob")], status=201)
    server.json("POST", f"{base}/query", [conclusion_json("c2", "alice", "bob")])
    server.json("GET", f"{base}/c1", conclusion_json("c1", "alice", "bob"))
    server.on("DELETE", f"{base}/c1", httpx.Response(204))
    with server.sync_client() as client:
        alice = Peer(client, "alice")
        view = alice.conclusions_of("bob")
        created = view.create(["Bob likes eggs"], session="s1")
        found = view.query("breakfast", top_k=3, distance=0.5)
        assert view.get("c1").id == "c1"
        with pytest.raises(NotFoundError):
            alice.conclusions.get("c1")  # observed is bob, not alice
        view.delete(created[0])
        client.conclusions.create([{"content": "x", "observer_id": "carol", "observed_id": "dave"}])
        with pytest.raises(ValueError, match="observer"):
            client.conclusions.create(["no observer"])
        with pytest.raises(ValueError, match="observer"):
            client.conclusions.query("q")
    assert found[0].id == "c2"
    creates = server.calls("POST", base)
    assert body_of(creates[0]) == {
        "conclusions": [
            {
                "content": "Bob likes eggs",
                "observer_id": "alice",
                "observed_id": "bob",
                "session_id": "s1",
            }
        ]
    }
    assert body_of(server.calls("POST", f"{base}/query")[0]) == {
        "query": "breakfast",
        "top_k": 3,
        "filters": {"observer_id": "alice", "observed_id": "bob"},
        "distance": 0.5,
    }


def test_conclusion_list_filters_combine(server: FakeServer) -> None:
    path = "/v3/workspaces/ws/conclusions/list"
    server.json("POST", path, {"items": [], "total": 0, "page": 1, "size": 50, "pages": 0})
    with server.sync_client() as client:
        alice = Peer(client, "alice")
        list(alice.conclusions.list({"level": "deductive"}))
        list(alice.conclusions.list({"observer_id": {"ne": "x"}}))
        list(client.conclusions.list())
    first, second, third = (body_of(r) for r in server.calls("POST", path))
    assert first == {
        "filters": {"observer_id": "alice", "observed_id": "alice", "level": "deductive"}
    }
    assert second == {
        "filters": {
            "AND": [{"observer_id": "alice", "observed_id": "alice"}, {"observer_id": {"ne": "x"}}]
        }
    }
    assert third is None


def test_conclusions_create_splits_batches(server: FakeServer) -> None:
    base = "/v3/workspaces/ws/conclusions"

    def echo(request: httpx.Request) -> httpx.Response:
        items = body_of(request)["conclusions"]
        return httpx.Response(
            201, json=[conclusion_json(f"c{i}", "a", "a") for i in range(len(items))]
        )

    server.on("POST", base, echo)
    with server.sync_client() as client:
        made = Peer(client, "a").conclusions.create([f"fact {i}" for i in range(150)])
    assert len(made) == 150
    assert [len(body_of(r)["conclusions"]) for r in server.calls("POST", base)] == [100, 50]


# -- timeouts -----------------------------------------------------------------------------------
def test_client_and_per_call_timeouts(server: FakeServer) -> None:
    chat = f"{PEERS}/alice/chat"
    server.json("POST", chat, {"content": "ok"})
    with server.sync_client(timeout=5.0) as client:
        alice = Peer(client, "alice")
        alice.chat("q")
        alice.chat("q", timeout=120.0)
        alice.chat("q", timeout=None)
    timeouts = [r.extensions["timeout"] for r in server.calls("POST", chat)]
    assert timeouts[0] == {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}
    assert timeouts[1]["read"] == 120.0
    assert timeouts[2]["read"] is None


async def test_async_per_call_timeout(server: FakeServer) -> None:
    server.json("POST", PEERS, peer_json("alice"))
    async with server.async_client() as client:
        await client.peer("alice", timeout=httpx.Timeout(3.0, connect=1.0))
    request = server.calls("POST", PEERS)[0]
    assert request.extensions["timeout"]["connect"] == 1.0
    assert request.extensions["timeout"]["read"] == 3.0


# -- async surface ------------------------------------------------------------------------------
async def test_async_client_end_to_end(server: FakeServer) -> None:
    server.json("POST", PEERS, peer_json("alice"))
    server.json("POST", SESSIONS, session_json("s1"))
    server.on("POST", MESSAGES, echo_messages)
    server.json(
        "GET",
        f"{SESSIONS}/s1/context",
        {"id": "s1", "messages": [message_json("m1", "hi", "alice")]},
    )
    async with server.async_client() as client:
        alice = await client.peer("alice")
        session = await client.session("s1", peers=[alice])
        await session.add_messages(alice.message("hi"))
        ctx = await session.get_context(tokens=100)
    assert ctx.to_openai(assistant=alice) == [
        {"role": "assistant", "name": "alice", "content": "hi"}
    ]
    assert server.paths() == [
        "POST /v3/workspaces",
        "POST /v3/workspaces/ws/peers",
        "POST /v3/workspaces/ws/sessions",
        "POST /v3/workspaces/ws/sessions/s1/messages",
        "GET /v3/workspaces/ws/sessions/s1/context",
    ]


async def test_async_surface_matches_the_sync_one(server: FakeServer, sleeps: list[float]) -> None:
    page = {"total": 1, "page": 1, "size": 100, "pages": 1}
    server.json("GET", f"{SESSIONS}/s1/peers", {"items": [peer_json("alice")], **page})
    server.json("POST", f"{PEERS}/alice/representation", {"representation": "rep"})
    server.json("GET", f"{PEERS}/alice/card", {})
    server.json("POST", f"{PEERS}/alice/sessions", {"items": [session_json("s1")], **page})
    server.json("POST", f"{MESSAGES}/upload", [message_json("m1", "x", "alice")], status=201)
    base = "/v3/workspaces/ws/conclusions"
    server.json("POST", base, [conclusion_json("c1", "alice", "bob")], status=201)
    server.json("POST", f"{base}/list", {"items": [conclusion_json("c1", "alice", "bob")], **page})
    server.json("POST", f"{base}/query", [conclusion_json("c1", "alice", "bob")])
    server.json("GET", f"{base}/c1", conclusion_json("c1", "alice", "bob"))
    server.on(
        "GET",
        "/v3/workspaces/ws/queue/status",
        [httpx.Response(200, json=queue(1)), httpx.Response(200, json=queue(0))],
    )
    async with server.async_client() as client:
        alice = AsyncPeer(client, "alice")
        session = AsyncSession(client, "s1")
        assert [p.id for p in await session.peers()] == ["alice"]
        assert await alice.representation(target="bob") == "rep"
        assert await alice.card() is None
        assert [s.id async for s in alice.sessions()] == ["s1"]
        assert len(await session.upload_file(b"x", alice, filename="x.txt")) == 1
        view = alice.conclusions_of("bob")
        assert [c.id for c in await view.create("Bob likes eggs")] == ["c1"]
        assert [c.id async for c in view.list()] == ["c1"]
        assert [c.id for c in await view.query("eggs")] == ["c1"]
        assert (await view.get("c1")).observed_id == "bob"
        with pytest.raises(NotFoundError):
            await alice.conclusions.get("c1")
        assert (await client.wait_for_queue(poll_interval=0.2)).is_idle
    assert sleeps == [0.2]
    upload = server.calls("POST", f"{MESSAGES}/upload")[0].content
    assert b'filename="x.txt"' in upload and b"Content-Type: text/plain" in upload


def test_remove_a_single_peer(server: FakeServer) -> None:
    path = f"{SESSIONS}/s1/peers"
    server.json("DELETE", path, session_json("s1"))
    with server.sync_client() as client:
        Session(client, "s1").remove_peers(Peer(client, "bob"))
        Session(client, "s1").remove_peers("carol")
    assert [body_of(r) for r in server.calls("DELETE", path)] == [["bob"], ["carol"]]
