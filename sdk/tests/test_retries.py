"""Retries: which failures are retried, how often, how long the client waits."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest

from rapport import (
    APIConnectionError,
    APITimeoutError,
    AsyncSession,
    BadRequestError,
    InternalServerError,
    MessageCreate,
    NotFoundError,
    Peer,
    RateLimitError,
    Session,
    UnprocessableEntityError,
    _http,
)

from .conftest import FakeServer, message_json, peer_json

PEERS = "/v3/workspaces/ws/peers"
MESSAGES = "/v3/workspaces/ws/sessions/s1/messages"
PEER_OK = httpx.Response(200, json=peer_json("alice"))


def _created() -> httpx.Response:
    return httpx.Response(201, json=[message_json("m1", "hi", "alice")])


@pytest.fixture(autouse=True)
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_http, "_random", lambda: 0.0)


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_retryable_status_is_retried_until_success(
    server: FakeServer, sleeps: list[float], status: int
) -> None:
    server.on("POST", PEERS, [httpx.Response(status), httpx.Response(status), PEER_OK])
    with server.sync_client() as client:
        assert client.peer("alice").id == "alice"
    assert len(server.calls("POST", PEERS)) == 3
    assert sleeps == [0.5, 1.0]  # exponential back-off: 0.5 s, then 1 s


def test_gives_up_after_max_retries(server: FakeServer, sleeps: list[float]) -> None:
    server.on("POST", PEERS, httpx.Response(503, json={"detail": "db down"}))
    with server.sync_client(max_retries=3) as client, pytest.raises(InternalServerError) as caught:
        client.peer("alice")
    assert caught.value.detail == "db down"
    assert len(server.calls("POST", PEERS)) == 4
    assert sleeps == [0.5, 1.0, 2.0]


def test_max_retries_zero_sends_once(server: FakeServer, sleeps: list[float]) -> None:
    server.on("POST", PEERS, httpx.Response(503))
    with server.sync_client(max_retries=0) as client, pytest.raises(InternalServerError):
        client.peer("alice")
    assert len(server.calls("POST", PEERS)) == 1
    assert sleeps == []


def test_back_off_is_capped_and_jittered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_http, "_random", lambda: 0.0)
    assert [_http.backoff_delay(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    monkeypatch.setattr(_http, "_random", lambda: 1.0)
    assert _http.backoff_delay(0) == pytest.approx(0.375)  # at most 25 % taken off
    assert _http.backoff_delay(10) == pytest.approx(6.0)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 415, 422, 500])
def test_other_statuses_are_not_retried(
    server: FakeServer, sleeps: list[float], status: int
) -> None:
    server.on("POST", PEERS, [httpx.Response(status), PEER_OK])
    with server.sync_client() as client, pytest.raises(Exception) as caught:
        client.peer("alice")
    assert caught.value.status_code == status  # type: ignore[attr-defined]
    assert len(server.calls("POST", PEERS)) == 1
    assert sleeps == []


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, BadRequestError), (404, NotFoundError), (422, UnprocessableEntityError)],
)
def test_client_errors_raise_at_once(
    server: FakeServer, status: int, error: type[Exception]
) -> None:
    server.on("GET", "/v3/workspaces/ws/sessions/s1/summaries", httpx.Response(status))
    with server.sync_client() as client, pytest.raises(error):
        Session(client, "s1").summaries()
    assert len(server.calls("GET")) == 1


def test_retry_after_seconds_is_honoured(server: FakeServer, sleeps: list[float]) -> None:
    server.on("POST", PEERS, [httpx.Response(429, headers={"Retry-After": "3"}), PEER_OK])
    with server.sync_client() as client:
        client.peer("alice")
    assert sleeps == [3.0]


def test_retry_after_fractional_seconds(server: FakeServer, sleeps: list[float]) -> None:
    server.on("POST", PEERS, [httpx.Response(503, headers={"Retry-After": "0.25"}), PEER_OK])
    with server.sync_client() as client:
        client.peer("alice")
    assert sleeps == [0.25]


def test_retry_after_http_date_is_honoured(server: FakeServer, sleeps: list[float]) -> None:
    when = datetime.now(timezone.utc) + timedelta(seconds=5)
    header = format_datetime(when, usegmt=True)
    server.on("POST", PEERS, [httpx.Response(503, headers={"Retry-After": header}), PEER_OK])
    with server.sync_client() as client:
        client.peer("alice")
    assert len(sleeps) == 1
    assert 3.0 <= sleeps[0] <= 5.0  # HTTP dates have whole seconds


def test_retry_after_parsing() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert _http.parse_retry_after("12", now=now) == 12.0
    assert _http.parse_retry_after("Wed, 01 May 2024 12:00:30 GMT", now=now) == 30.0
    assert _http.parse_retry_after("Wed, 01 May 2024 11:00:00 GMT", now=now) == 0.0  # past
    assert _http.parse_retry_after("-4", now=now) == 0.0
    assert _http.parse_retry_after("soon", now=now) is None
    assert _http.parse_retry_after("", now=now) is None
    assert _http.parse_retry_after(None, now=now) is None


def test_retry_after_over_a_minute_is_not_waited_for(
    server: FakeServer, sleeps: list[float]
) -> None:
    server.on("POST", PEERS, [httpx.Response(429, headers={"Retry-After": "3600"}), PEER_OK])
    with server.sync_client() as client, pytest.raises(RateLimitError) as caught:
        client.peer("alice")
    assert caught.value.retry_after == 3600.0
    assert sleeps == []
    assert len(server.requests) == 2  # the workspace, then one attempt


def test_unparseable_retry_after_falls_back_to_back_off(
    server: FakeServer, sleeps: list[float]
) -> None:
    server.on("POST", PEERS, [httpx.Response(503, headers={"Retry-After": "later"}), PEER_OK])
    with server.sync_client() as client:
        client.peer("alice")
    assert sleeps == [0.5]


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("eof")],
)
def test_idempotent_call_retries_transport_errors(
    server: FakeServer, sleeps: list[float], exc: Exception
) -> None:
    server.on("POST", PEERS, [exc, PEER_OK])
    with server.sync_client() as client:
        assert client.peer("alice").id == "alice"
    assert len(server.calls("POST", PEERS)) == 2
    assert sleeps == [0.5]


def test_transport_errors_exhaust_into_connection_error(
    server: FakeServer, sleeps: list[float]
) -> None:
    server.on("POST", PEERS, httpx.ReadError("reset"))
    with server.sync_client(max_retries=2) as client, pytest.raises(APIConnectionError):
        client.peer("alice")
    assert len(server.calls("POST", PEERS)) == 3


# -- the rule for non-idempotent POSTs ---------------------------------------------------------
def _add_one(server: FakeServer) -> None:
    with server.sync_client() as client:
        Session(client, "s1").add_messages(MessageCreate(content="hi", peer_id="alice"))


@pytest.mark.parametrize("status", [429, 503])
def test_message_create_is_retried_when_the_server_refused_it(
    server: FakeServer, sleeps: list[float], status: int
) -> None:
    server.on("POST", MESSAGES, [httpx.Response(status), _created()])
    _add_one(server)
    assert len(server.calls("POST", MESSAGES)) == 2
    assert len(sleeps) == 1


@pytest.mark.parametrize("status", [502, 504])
def test_message_create_is_not_replayed_after_an_ambiguous_failure(
    server: FakeServer, sleeps: list[float], status: int
) -> None:
    server.on("POST", MESSAGES, [httpx.Response(status), _created()])
    with pytest.raises(InternalServerError):
        _add_one(server)
    assert len(server.calls("POST", MESSAGES)) == 1
    assert sleeps == []


@pytest.mark.parametrize(
    "exc", [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), httpx.PoolTimeout("full")]
)
def test_message_create_is_retried_when_it_was_never_sent(
    server: FakeServer, sleeps: list[float], exc: Exception
) -> None:
    server.on("POST", MESSAGES, [exc, _created()])
    _add_one(server)
    assert len(server.calls("POST", MESSAGES)) == 2


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (httpx.ReadTimeout("slow"), APITimeoutError),
        (httpx.WriteTimeout("slow"), APITimeoutError),
        (httpx.ReadError("reset"), APIConnectionError),
        (httpx.RemoteProtocolError("eof"), APIConnectionError),
    ],
)
def test_message_create_is_not_replayed_after_it_may_have_arrived(
    server: FakeServer, sleeps: list[float], exc: Exception, error: type[Exception]
) -> None:
    server.on("POST", MESSAGES, [exc, _created()])
    with pytest.raises(error):
        _add_one(server)
    assert len(server.calls("POST", MESSAGES)) == 1
    assert sleeps == []


def test_read_only_post_is_retried_like_a_get(server: FakeServer, sleeps: list[float]) -> None:
    path = "/v3/workspaces/ws/peers/alice/chat"
    server.on("POST", path, [httpx.Response(502), httpx.Response(200, json={"content": "eggs"})])
    with server.sync_client() as client:
        assert Peer(client, "alice").chat("breakfast?") == "eggs"
    assert len(server.calls("POST", path)) == 2


def test_retried_upload_sends_the_whole_file_again(server: FakeServer) -> None:
    path = "/v3/workspaces/ws/sessions/s1/messages/upload"
    server.on("POST", path, [httpx.Response(503), _created()])
    with server.sync_client() as client:
        Session(client, "s1").upload_file(("notes.txt", b"hello world"), "alice")
    first, second = server.calls("POST", path)
    for attempt in (first, second):  # each attempt has its own multipart boundary
        assert b'filename="notes.txt"' in attempt.content
        assert b"hello world" in attempt.content


async def test_async_client_follows_the_same_rule(server: FakeServer, sleeps: list[float]) -> None:
    server.on("POST", PEERS, [httpx.Response(503, headers={"Retry-After": "2"}), PEER_OK])
    server.on("POST", MESSAGES, [httpx.Response(504), _created()])
    async with server.async_client() as client:
        alice = await client.peer("alice")
        assert alice.id == "alice"
        with pytest.raises(InternalServerError):
            await AsyncSession(client, "s1").add_messages(alice.message("hi"))
    assert sleeps == [2.0]
    assert len(server.calls("POST", PEERS)) == 2
    assert len(server.calls("POST", MESSAGES)) == 1


async def test_async_retries_transport_errors(server: FakeServer, sleeps: list[float]) -> None:
    server.on("POST", PEERS, [httpx.ConnectError("refused"), httpx.ReadTimeout("x"), PEER_OK])
    async with server.async_client() as client:
        assert (await client.peer("alice")).id == "alice"
    assert sleeps == [0.5, 1.0]
