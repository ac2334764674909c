"""Test helpers: a scripted server behind ``httpx.MockTransport`` and no real sleeping."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from rapport import AsyncRapport, Rapport, _http

NOW = "2024-05-01T12:00:00Z"

Handler = Callable[[httpx.Request], httpx.Response]


def workspace_json(wid: str = "ws", **extra: Any) -> dict[str, Any]:
    return {"id": wid, "metadata": {}, "configuration": {}, "created_at": NOW, **extra}


def peer_json(pid: str, wid: str = "ws", **extra: Any) -> dict[str, Any]:
    return {
        "id": pid,
        "workspace_id": wid,
        "metadata": {},
        "configuration": {},
        "created_at": NOW,
        **extra,
    }


def session_json(sid: str, wid: str = "ws", **extra: Any) -> dict[str, Any]:
    return {
        "id": sid,
        "workspace_id": wid,
        "is_active": True,
        "metadata": {},
        "configuration": {},
        "created_at": NOW,
        **extra,
    }


def message_json(
    mid: str, content: str, peer_id: str, session_id: str = "s1", **extra: Any
) -> dict[str, Any]:
    return {
        "id": mid,
        "content": content,
        "peer_id": peer_id,
        "session_id": session_id,
        "workspace_id": "ws",
        "metadata": {},
        "created_at": NOW,
        "token_count": 3,
        **extra,
    }


def conclusion_json(cid: str, observer: str, observed: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": cid,
        "content": f"conclusion {cid}",
        "observer_id": observer,
        "observed_id": observed,
        "session_id": None,
        "level": "explicit",
        "source_ids": [],
        "created_at": NOW,
        **extra,
    }


def body_of(request: httpx.Request) -> Any:
    """The JSON body of a recorded request (``None`` when it has none)."""
    content = request.content
    return json.loads(content) if content else None


class FakeServer:
    """Routes ``(method, path)`` to canned answers and records every request.

    A route is a response, a callable ``request -> response``, or a list of those consumed in
    order (the last one repeats). Unknown routes answer 404. ``POST /v3/workspaces`` answers a
    workspace by default.
    """

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Any] = {}
        self.requests: list[httpx.Request] = []
        self.on("POST", "/v3/workspaces", lambda r: httpx.Response(200, json=workspace_json()))

    def on(self, method: str, path: str, answer: Any) -> FakeServer:
        self.routes[(method, path)] = answer
        return self

    def json(self, method: str, path: str, payload: Any, status: int = 200) -> FakeServer:
        return self.on(method, path, lambda r: httpx.Response(status, json=payload))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        answer = self.routes.get((request.method, request.url.path))
        if answer is None:
            return httpx.Response(404, json={"detail": f"no route {request.url.path}"})
        if isinstance(answer, list):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, httpx.Response):  # a fresh copy: httpx binds a response to a client
            return httpx.Response(
                answer.status_code, headers=answer.headers, content=answer.content
            )
        return answer(request)  # type: ignore[no-any-return]

    def calls(self, method: str | None = None, path: str | None = None) -> list[httpx.Request]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (path is None or r.url.path == path)
        ]

    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.requests]

    def sync_client(self, **kwargs: Any) -> Rapport:
        kwargs.setdefault("base_url", "http://rapport.test")
        kwargs.setdefault("workspace_id", "ws")
        return Rapport(http_client=httpx.Client(transport=httpx.MockTransport(self)), **kwargs)

    def async_client(self, **kwargs: Any) -> AsyncRapport:
        kwargs.setdefault("base_url", "http://rapport.test")
        kwargs.setdefault("workspace_id", "ws")
        transport = httpx.MockTransport(self)
        return AsyncRapport(http_client=httpx.AsyncClient(transport=transport), **kwargs)


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def client(server: FakeServer) -> Iterator[Rapport]:
    with server.sync_client() as c:
        yield c


@pytest.fixture(autouse=True)
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every delay the SDK asked to sleep, without sleeping."""
    recorded: list[float] = []

    def fake_sleep(seconds: float) -> None:
        recorded.append(seconds)

    async def fake_async_sleep(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(_http, "_sleep", fake_sleep)
    monkeypatch.setattr(_http, "_async_sleep", fake_async_sleep)
    return recorded


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RAPPORT_BASE_URL", "RAPPORT_API_KEY", "RAPPORT_WORKSPACE_ID"):
        monkeypatch.delenv(name, raising=False)
