"""Streaming chat: SSE parsing, chunk reassembly, termination, errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from rapport import (
    AsyncChatStream,
    AsyncPeer,
    ChatStream,
    NotFoundError,
    Peer,
    StreamError,
)
from rapport._streaming import SSELineDecoder, interpret_event, parse_data_line

from .conftest import FakeServer, body_of

CHAT = "/v3/workspaces/ws/peers/alice/chat"


def frame(content: str) -> str:
    return "data: " + json.dumps({"delta": {"content": content}, "done": False}) + "\n\n"


DONE = 'data: {"done": true}\n\n'


def sse(*chunks: bytes) -> httpx.Response:
    def gen() -> Iterator[bytes]:
        yield from chunks

    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=gen())


def asse(*chunks: bytes) -> httpx.Response:
    async def gen() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=gen())


def stream_of(server: FakeServer, *chunks: bytes) -> list[str]:
    server.on("POST", CHAT, lambda r: sse(*chunks))
    with server.sync_client() as client:
        stream = Peer(client, "alice").chat("what?", stream=True)
        assert isinstance(stream, ChatStream)
        return list(stream)


def test_chunks_are_yielded_in_order_and_reassembled(server: FakeServer) -> None:
    body = (frame("Bob ") + frame("had ") + frame("eggs.") + DONE).encode()
    server.on("POST", CHAT, lambda r: sse(body))
    with (
        server.sync_client() as client,
        Peer(client, "alice").chat("breakfast?", target="bob", stream=True) as stream,
    ):
        chunks = list(stream)
        assert stream.text == "Bob had eggs."
        assert stream.done
    assert chunks == ["Bob ", "had ", "eggs."]
    request = server.calls("POST", CHAT)[0]
    assert body_of(request) == {"query": "breakfast?", "stream": True, "target": "bob"}
    assert request.headers["accept"] == "text/event-stream"


def test_done_terminates_even_if_more_follows(server: FakeServer) -> None:
    body = frame("one") + 'data: {"done": true, "delta": {"content": "ignored"}}\n\n'
    body += frame("after done")
    assert stream_of(server, body.encode()) == ["one"]


def test_frames_split_anywhere_across_network_chunks(server: FakeServer) -> None:
    body = (frame("héllo ") + frame("wörld ✓") + DONE).encode()
    pieces = [body[i : i + 3] for i in range(0, len(body), 3)]  # splits UTF-8 characters too
    assert stream_of(server, *pieces) == ["héllo ", "wörld ✓"]


def test_crlf_and_cr_line_endings(server: FakeServer) -> None:
    crlf = (frame("a") + frame("b") + DONE).replace("\n", "\r\n").encode()
    assert stream_of(server, crlf) == ["a", "b"]
    cr = (frame("c") + DONE).replace("\n", "\r").encode()
    assert stream_of(server, cr) == ["c"]
    # A CRLF split between two network chunks is one line ending, not two.
    split = (frame("d") + DONE).replace("\n", "\r\n").encode()
    cut = split.index(b"\r\n") + 1
    assert stream_of(server, split[:cut], split[cut:]) == ["d"]


def test_comments_events_ids_and_junk_are_ignored(server: FakeServer) -> None:
    body = (
        ": keep-alive comment\n"
        "event: message\n"
        "id: 42\n"
        "retry: 1000\n"
        "\n"
        "data: not json at all\n"
        "data: [1, 2, 3]\n"
        'data: {"delta": {"content": ""}, "done": false}\n'
        'data: {"delta": {}, "done": false}\n'
        'data:{"delta": {"content": "no space"}, "done": false}\n' + frame("x") + DONE
    )
    assert stream_of(server, body.encode()) == ["no space", "x"]


def test_stream_without_done_ends_at_eof_and_parses_last_line(server: FakeServer) -> None:
    body = frame("a") + 'data: {"delta": {"content": "tail"}, "done": false}'  # no newline
    assert stream_of(server, body.encode()) == ["a", "tail"]


def test_error_event_raises(server: FakeServer) -> None:
    body = frame("partial") + 'data: {"error": "model overloaded", "done": true}\n\n'
    server.on("POST", CHAT, lambda r: sse(body.encode()))
    with server.sync_client() as client:
        stream = Peer(client, "alice").chat("q", stream=True)
        assert next(stream) == "partial"
        with pytest.raises(StreamError, match="model overloaded"):
            next(stream)


def test_http_error_is_raised_before_the_first_chunk(server: FakeServer) -> None:
    server.json("POST", CHAT, {"detail": "Peer alice not found"}, status=404)
    with server.sync_client() as client, pytest.raises(NotFoundError) as caught:
        Peer(client, "alice").chat("q", stream=True)
    assert caught.value.detail == "Peer alice not found"


def test_until_done_and_close(server: FakeServer) -> None:
    server.on("POST", CHAT, lambda r: sse((frame("a") + frame("b") + DONE).encode()))
    with server.sync_client() as client:
        stream = Peer(client, "alice").chat("q", stream=True)
        assert stream.until_done() == "ab"
        stream.close()
        assert list(stream) == []


def test_line_decoder_unit() -> None:
    decoder = SSELineDecoder()
    assert decoder.feed(b"a\r") == []
    assert decoder.feed(b"\nb\nc") == ["a", "b"]
    assert decoder.feed(b"\xc3") == []  # half of "é"
    assert decoder.feed(b"\xa9\r\r\n") == ["cé", ""]
    assert decoder.feed(b"last") == []
    assert decoder.flush() == ["last"]
    assert decoder.flush() == []


def test_event_interpretation_unit() -> None:
    assert parse_data_line('data: {"a": 1}') == {"a": 1}
    assert parse_data_line('data:{"a": 1}') == {"a": 1}
    assert parse_data_line(": comment") is None
    assert parse_data_line("event: x") is None
    assert parse_data_line("data: 5") is None
    assert interpret_event({"delta": {"content": "x"}, "done": False}) == "x"
    assert interpret_event({"delta": {"content": 5}}) is None
    assert interpret_event({"done": True}) is not None
    with pytest.raises(StreamError):
        interpret_event({"error": "bad"})


async def test_async_stream(server: FakeServer) -> None:
    body = (frame("as") + frame("ync") + DONE + frame("never")).encode()
    server.on("POST", CHAT, lambda r: asse(body[:10], body[10:]))
    async with server.async_client() as client:
        stream = await AsyncPeer(client, "alice").chat("q", stream=True)
        assert isinstance(stream, AsyncChatStream)
        async with stream:
            chunks = [c async for c in stream]
        assert chunks == ["as", "ync"]
        assert stream.text == "async"


async def test_async_stream_http_error(server: FakeServer) -> None:
    server.json("POST", CHAT, {"detail": "gone"}, status=404)
    async with server.async_client() as client:
        with pytest.raises(NotFoundError):
            await AsyncPeer(client, "alice").chat("q", stream=True)


def test_plain_chat_returns_content_or_none(server: FakeServer) -> None:
    server.on(
        "POST",
        CHAT,
        [
            httpx.Response(200, json={"content": "Eggs."}),
            httpx.Response(200, json={"content": ""}),
            httpx.Response(200, json={"content": None}),
        ],
    )
    with server.sync_client() as client:
        alice = Peer(client, "alice")
        assert alice.chat("q", session="s1", reasoning_level="high") == "Eggs."
        assert alice.chat("q") is None
        assert alice.chat("q") is None
    assert body_of(server.calls("POST", CHAT)[0]) == {
        "query": "q",
        "stream": False,
        "session_id": "s1",
        "reasoning_level": "high",
    }


def test_chat_response_format_from_a_pydantic_model(server: FakeServer) -> None:
    from pydantic import BaseModel

    class Answer(BaseModel):
        food: str

    server.json("POST", CHAT, {"content": '{"food": "eggs"}'})
    with server.sync_client() as client:
        answer = Peer(client, "alice").chat("q", response_format=Answer)
    assert answer is not None and Answer.model_validate_json(answer).food == "eggs"
    sent = body_of(server.calls("POST", CHAT)[0])["response_format"]
    assert sent["properties"] == {"food": {"title": "Food", "type": "string"}}


def test_chat_query_is_validated_before_sending(client: object, server: FakeServer) -> None:
    alice = Peer(client, "alice")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        alice.chat("   ")
    with pytest.raises(ValueError):
        alice.chat("x" * 10_001)
    assert server.requests == []
