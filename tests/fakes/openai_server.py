"""A scripted OpenAI-compatible HTTP server for tests.

It listens on ``127.0.0.1`` on a random port (uvicorn + Starlette in a background thread, so it
works from sync and async tests alike) and serves ``POST /v1/chat/completions`` and
``POST /v1/embeddings``. Each endpoint answers from a queue of scripted :class:`Reply` objects
(a chat request with ``"stream": true`` gets the content as SSE chunks);
when a queue is empty a default handler answers (for embeddings, deterministic vectors derived
from the input text; for chat, HTTP 500 unless a handler is given). Every request is recorded.

Usage::

    with scripted_openai() as server:
        server.enqueue(Reply.json({"summary": "..."}), Reply.status(429, retry_after="0.2"))
        client = AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        ...
        assert server.chat_requests[0].body["model"] == "m"

Modes (settable at construction or later as attributes):

- ``ignores_response_format``: JSON replies come back wrapped in prose and a code fence, as
  from a provider that ignores ``response_format``;
- ``rejects_json_schema`` / ``rejects_json_object``: requests with that ``response_format``
  type get an OpenAI-style HTTP 400 without consuming the queue.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import itertools
import json
import math
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = [
    "RecordedRequest",
    "Reply",
    "ScriptedOpenAI",
    "fake_embedding",
    "scripted_openai",
]

Endpoint = Literal["chat", "embeddings"]
ReplyKind = Literal["content", "status", "raw", "embeddings"]
Handler = Callable[["RecordedRequest"], "Reply"]

_PATHS: dict[str, Endpoint] = {
    "/v1/chat/completions": "chat",
    "/v1/embeddings": "embeddings",
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or None when the body was not JSON
    raw: bytes
    received_at: float  # time.monotonic()

    @property
    def endpoint(self) -> Endpoint | None:
        return _PATHS.get(self.path)

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        if isinstance(self.body, dict) and isinstance(self.body.get("messages"), list):
            return list(self.body["messages"])
        return []

    @property
    def system_prompt(self) -> str:
        """Concatenated content of the system messages."""
        return "\n".join(
            str(m.get("content", "")) for m in self.messages if m.get("role") == "system"
        )

    @property
    def prompt_text(self) -> str:
        """Concatenated content of every message."""
        return "\n".join(str(m.get("content", "")) for m in self.messages)

    @property
    def response_format(self) -> dict[str, Any] | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("response_format"), dict):
            return dict(self.body["response_format"])
        return None

    @property
    def response_format_type(self) -> str | None:
        fmt = self.response_format
        return str(fmt.get("type")) if fmt else None


@dataclass(frozen=True)
class Reply:
    """One scripted answer. Build with the class methods."""

    kind: ReplyKind
    content: str | None = None
    status_code: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    content_type: str = "application/json"
    delay: float = 0.0
    finish_reason: str = "stop"
    vectors: list[list[float]] | None = None
    is_json: bool = False  # content is JSON (wrapped in prose by ignores_response_format)

    @classmethod
    def json(cls, value: Any, *, delay: float = 0.0, finish_reason: str = "stop") -> Reply:
        """A chat completion whose message content is ``json.dumps(value)``."""
        return cls(
            kind="content",
            content=json.dumps(value),
            delay=delay,
            finish_reason=finish_reason,
            is_json=True,
        )

    @classmethod
    def text(cls, content: str, *, delay: float = 0.0, finish_reason: str = "stop") -> Reply:
        """A chat completion whose message content is ``content`` verbatim."""
        return cls(kind="content", content=content, delay=delay, finish_reason=finish_reason)

    @classmethod
    def status(
        cls,
        status: int,
        message: str | None = None,
        *,
        retry_after: str | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        error_type: str = "server_error",
        param: str | None = None,
    ) -> Reply:
        """An HTTP error with an OpenAI-style ``{"error": {...}}`` body."""
        all_headers = dict(headers or {})
        if retry_after is not None:
            all_headers["Retry-After"] = retry_after
        error = {
            "message": message or f"scripted error {status}",
            "type": error_type,
            "param": param,
            "code": None,
        }
        return cls(
            kind="status",
            status_code=status,
            headers=all_headers,
            body=json.dumps({"error": error}).encode(),
            delay=delay,
        )

    @classmethod
    def raw(
        cls,
        body: bytes | str,
        *,
        status: int = 200,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> Reply:
        """Exactly these bytes, e.g. a truncated or non-JSON body."""
        data = body.encode() if isinstance(body, str) else body
        return cls(
            kind="raw",
            status_code=status,
            body=data,
            content_type=content_type,
            headers=dict(headers or {}),
            delay=delay,
        )

    @classmethod
    def garbage(cls, *, delay: float = 0.0) -> Reply:
        """HTTP 200 claiming JSON with a body that is not JSON."""
        return cls.raw(b"\x00<html>502 Bad Gateway</html>{{{", delay=delay)

    @classmethod
    def slow(cls, seconds: float, then: Reply | None = None) -> Reply:
        """``then`` (default: an empty JSON object as content) after ``seconds``."""
        return dataclasses.replace(then or cls.json({}), delay=seconds)

    @classmethod
    def embeddings(cls, vectors: list[list[float]], *, delay: float = 0.0) -> Reply:
        return cls(kind="embeddings", vectors=vectors, delay=delay)


def fake_embedding(text: str, dimensions: int = 8) -> list[float]:
    """A deterministic unit vector for ``text`` (same text, same vector)."""
    values: list[float] = []
    for counter in itertools.count():
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        for (number,) in struct.iter_unpack(">I", digest):
            values.append(number / 2**32 - 0.5)
            if len(values) == dimensions:
                norm = math.sqrt(sum(v * v for v in values)) or 1.0
                return [v / norm for v in values]
    raise AssertionError("unreachable")


def _wrap_in_prose(content: str) -> str:
    return (
        "Sure! Here is the information you asked for:\n\n```json\n"
        f"{content}\n```\n\nLet me know if you need anything else."
    )


class ScriptedOpenAI:
    """The server. Use :func:`scripted_openai` to start and stop it."""

    def __init__(
        self,
        *,
        default: Handler | None = None,
        default_embeddings: Handler | None = None,
        ignores_response_format: bool = False,
        rejects_json_schema: bool = False,
        rejects_json_object: bool = False,
    ) -> None:
        self.default = default
        self.default_embeddings = default_embeddings
        self.ignores_response_format = ignores_response_format
        self.rejects_json_schema = rejects_json_schema
        self.rejects_json_object = rejects_json_object
        self.requests: list[RecordedRequest] = []
        self.unscripted: list[RecordedRequest] = []  # answered by the built-in fallback
        self._queues: dict[Endpoint, deque[Reply | Handler]] = {
            "chat": deque(),
            "embeddings": deque(),
        }
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # -- scripting -----------------------------------------------------------------------------

    def enqueue(self, *replies: Reply | Handler, endpoint: Endpoint = "chat") -> None:
        """Append replies (or handlers called with the request) to ``endpoint``'s queue."""
        with self._lock:
            self._queues[endpoint].extend(replies)

    def enqueue_forever(self, reply: Reply, count: int = 100) -> None:
        """Enqueue ``reply`` ``count`` times on the chat endpoint."""
        self.enqueue(*([reply] * count))

    def pending(self, endpoint: Endpoint = "chat") -> int:
        with self._lock:
            return len(self._queues[endpoint])

    def clear(self) -> None:
        """Empty the queues and forget recorded requests."""
        with self._lock:
            for queue in self._queues.values():
                queue.clear()
            self.requests.clear()
            self.unscripted.clear()

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.endpoint == "chat"]

    @property
    def embedding_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.endpoint == "embeddings"]

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1`` — what ``AsyncOpenAI(base_url=...)`` expects."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        self._stopping.clear()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        app = Starlette(routes=[Route(path, self._handle, methods=["POST"]) for path in _PATHS])
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        self._server = server
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="scripted-openai", daemon=True
        )
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("scripted OpenAI server failed to start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    # -- serving -------------------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            raw=raw,
            received_at=time.monotonic(),
        )
        endpoint = _PATHS[request.url.path]
        with self._lock:
            self.requests.append(recorded)
        rejection = self._format_rejection(recorded) if endpoint == "chat" else None
        if rejection is not None:
            return self._render(rejection, recorded)
        reply = self._next_reply(endpoint, recorded)
        if reply.delay > 0 and not await self._wait(reply.delay, request):
            return Response(status_code=499)  # the client went away (or the server stops)
        return self._render(reply, recorded)

    async def _wait(self, seconds: float, request: Request) -> bool:
        """Sleep ``seconds``; False as soon as the client disconnects or the server stops."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if self._stopping.is_set() or await request.is_disconnected():
                return False
            await asyncio.sleep(min(remaining, 0.02))
        return True

    def _format_rejection(self, request: RecordedRequest) -> Reply | None:
        fmt = request.response_format_type
        if (fmt == "json_schema" and self.rejects_json_schema) or (
            fmt == "json_object" and self.rejects_json_object
        ):
            return Reply.status(
                400,
                f"Invalid parameter: 'response_format' of type '{fmt}' is not supported "
                "with this model.",
                error_type="invalid_request_error",
                param="response_format",
            )
        return None

    def _next_reply(self, endpoint: Endpoint, request: RecordedRequest) -> Reply:
        with self._lock:
            queue = self._queues[endpoint]
            item: Reply | Handler | None = queue.popleft() if queue else None
        if item is None:
            handler = self.default if endpoint == "chat" else self.default_embeddings
            if handler is not None:
                return handler(request)
            with self._lock:
                self.unscripted.append(request)
            if endpoint == "embeddings":
                return _default_embeddings(request)
            return Reply.status(500, "scripted_openai: no scripted reply left")
        if isinstance(item, Reply):
            return item
        return item(request)

    def _render(self, reply: Reply, request: RecordedRequest) -> Response:
        if reply.kind in ("status", "raw"):
            return Response(
                content=reply.body or b"",
                status_code=reply.status_code,
                headers=dict(reply.headers),
                media_type=reply.content_type,
            )
        if reply.kind == "embeddings":
            return _json_response(_embeddings_body(reply.vectors or [], request), reply)
        content = reply.content or ""
        if reply.is_json and self.ignores_response_format:
            content = _wrap_in_prose(content)
        number = next(self._ids)
        if isinstance(request.body, dict) and request.body.get("stream") is True:
            return _stream_response(content, reply, request, number)
        payload = {
            "id": f"chatcmpl-scripted-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model or "scripted",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "finish_reason": reply.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": len(request.raw) // 4,
                "completion_tokens": len(content) // 4,
                "total_tokens": (len(request.raw) + len(content)) // 4,
            },
        }
        return _json_response(payload, reply)


def _stream_response(content: str, reply: Reply, request: RecordedRequest, number: int) -> Response:
    """``stream: true``: the content as ``chat.completion.chunk`` SSE events, a few characters
    per chunk (split inside words too, as real providers do), then ``data: [DONE]``."""
    base = {
        "id": f"chatcmpl-scripted-{number}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": request.model or "scripted",
    }
    pieces = [content[i : i + 5] for i in range(0, len(content), 5)]
    events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    events += [
        {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        for piece in pieces
    ]
    events.append(
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}]}
    )
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return Response(
        content=body.encode(),
        status_code=200,
        headers=dict(reply.headers),
        media_type="text/event-stream",
    )


def _json_response(payload: Any, reply: Reply) -> Response:
    return Response(
        content=json.dumps(payload).encode(),
        status_code=200,
        headers=dict(reply.headers),
        media_type="application/json",
    )


def _embedding_inputs(request: RecordedRequest) -> list[str]:
    value = request.body.get("input") if isinstance(request.body, dict) else None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(item) for item in value]
    return []


def _embeddings_body(vectors: list[list[float]], request: RecordedRequest) -> dict[str, Any]:
    as_base64 = isinstance(request.body, dict) and request.body.get("encoding_format") == "base64"

    def encode(vector: list[float]) -> list[float] | str:
        if not as_base64:
            return vector
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()

    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": encode(vector)}
            for index, vector in enumerate(vectors)
        ],
        "model": request.model or "scripted",
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }


def _default_embeddings(request: RecordedRequest) -> Reply:
    dimensions = 8
    if isinstance(request.body, dict) and isinstance(request.body.get("dimensions"), int):
        dimensions = request.body["dimensions"]
    vectors = [fake_embedding(text, dimensions) for text in _embedding_inputs(request)]
    return Reply.embeddings(vectors)


@contextmanager
def scripted_openai(
    *,
    default: Handler | None = None,
    default_embeddings: Handler | None = None,
    ignores_response_format: bool = False,
    rejects_json_schema: bool = False,
    rejects_json_object: bool = False,
) -> Iterator[ScriptedOpenAI]:
    """Start a :class:`ScriptedOpenAI` for the ``with`` block (sync or async tests)."""
    server = ScriptedOpenAI(
        default=default,
        default_embeddings=default_embeddings,
        ignores_response_format=ignores_response_format,
        rejects_json_schema=rejects_json_schema,
        rejects_json_object=rejects_json_object,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
