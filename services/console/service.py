"""The console's backend-for-frontend logic.

Every read goes through the public v3 REST API **with the user's own key**, so the API decides
what a key may see: the console holds no database connection and no privileges of its own.
This module turns API answers into what the pages draw (views side by side, the graph layout,
the token budget of a session context).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import jwt

from libs.common.tokens import count_tokens

PAGE_SIZE = 20
MAX_OBSERVATIONS = 100


class ApiError(Exception):
    """The API refused a call (its status and ``detail``) or could not be reached (502)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class NotAKeyError(ValueError):
    """The login form got something that is not a Rapport API key."""


@dataclass(frozen=True)
class KeyInfo:
    """A key's scope as its claims state it. Used for navigation only (where to land, which
    tabs to offer); the API verifies the key on every call."""

    kind: str
    workspace_id: str | None = None
    peer_id: str | None = None
    session_id: str | None = None


NO_KEY = KeyInfo(kind="none")


def key_info(key: str | None) -> KeyInfo:
    if not key:
        return NO_KEY
    try:
        claims = jwt.decode(key, options={"verify_signature": False, "verify_exp": False})
    except jwt.PyJWTError as exc:
        raise NotAKeyError(
            "That is not a Rapport API key: a key is a JWT (three base64url parts separated by "
            "dots), as returned by POST /v3/keys."
        ) from exc
    if not isinstance(claims, dict):
        raise NotAKeyError("That is not a Rapport API key: its claims are not an object.")

    def text(name: str) -> str | None:
        value = claims.get(name)
        return value if isinstance(value, str) and value else None

    w, p, s = text("w"), text("p"), text("s")
    if claims.get("ad") is True:
        return KeyInfo(kind="admin")
    if w and p:
        return KeyInfo(kind="peer", workspace_id=w, peer_id=p)
    if w and s:
        return KeyInfo(kind="session", workspace_id=w, session_id=s)
    if w:
        return KeyInfo(kind="workspace", workspace_id=w)
    raise NotAKeyError("That key has no scope (no admin, workspace, peer or session claim).")


def landing(info: KeyInfo) -> str:
    """Console path (below /console) where a key of this scope starts."""
    if info.kind in ("admin", "none") or info.workspace_id is None:
        return "/"
    w = quote(info.workspace_id, safe="")
    if info.peer_id is not None:
        return f"/w/{w}/peers/{quote(info.peer_id, safe='')}"
    if info.session_id is not None:
        return f"/w/{w}/sessions/{quote(info.session_id, safe='')}"
    return f"/w/{w}"


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(x) for x in item.get("loc", []) if x != "body")
                parts.append(f"{loc}: {item.get('msg', '')}".strip(": "))
        return "; ".join(parts) or json.dumps(detail)[:500]
    return json.dumps(body)[:500]


def _path(*parts: str) -> str:
    return "/".join(quote(p, safe="") for p in parts)


@dataclass(frozen=True)
class ApiClients:
    """Where each part of the API is reached. Behind a gateway (all-in-one, ``make up``) the
    three are one client; on Kubernetes the console may call the services directly."""

    api: httpx.AsyncClient
    context: httpx.AsyncClient
    dialectic: httpx.AsyncClient

    def of(self, via: str) -> httpx.AsyncClient:
        return {"context": self.context, "dialectic": self.dialectic}.get(via, self.api)

    async def aclose(self) -> None:
        for client in {id(c): c for c in (self.api, self.context, self.dialectic)}.values():
            await client.aclose()


class RapportApi:
    """Calls ``/v3`` with the user's key (or none, when the server has auth off)."""

    def __init__(self, clients: ApiClients, key: str | None) -> None:
        self.clients = clients
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        via: str = "api",
    ) -> Any:
        try:
            response = await self.clients.of(via).request(
                method,
                f"/v3{path}",
                json=body,
                params={k: v for k, v in (params or {}).items() if v is not None},
                headers=self.headers,
            )
        except httpx.HTTPError as exc:
            raise ApiError(502, f"The Rapport API could not be reached: {exc!r}") from exc
        if response.status_code >= 400:
            raise ApiError(response.status_code, _detail(response))
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    @asynccontextmanager
    async def stream(self, path: str, body: Any) -> AsyncIterator[httpx.Response]:
        """A streamed POST; raises :class:`ApiError` before any byte when the API refuses."""
        try:
            async with self.clients.dialectic.stream(
                "POST", f"/v3{path}", json=body, headers=self.headers
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise ApiError(response.status_code, _detail(response))
                yield response
        except httpx.HTTPError as exc:
            raise ApiError(502, f"The Rapport API could not be reached: {exc!r}") from exc


# -- page models -------------------------------------------------------------------------------
@dataclass
class Observation:
    id: str
    level: str
    content: str
    created_at: str
    session_id: str | None
    source_ids: list[str]


@dataclass
class PerspectiveColumn:
    """What one observer holds about the peer: ``global`` is the peer's own view of itself."""

    observer: str
    kind: str  # "global" | "local"
    observations: list[Observation] = field(default_factory=list)
    total: int = 0
    card: list[str] | None = None
    error: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class GraphNode:
    id: str
    x: float
    y: float
    self_view: int
    #: Where the global-view size is written: outside the circle, away from the edges.
    lx: float = 0.0
    ly: float = 0.0


@dataclass(frozen=True)
class GraphEdge:
    observer: str
    observed: str
    conclusions: int
    card_facts: int
    x1: float
    y1: float
    x2: float
    y2: float
    lx: float
    ly: float
    width: float


@dataclass(frozen=True)
class Graph:
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    size: int


def layout_graph(peers: list[str], views: list[dict[str, Any]], size: int = 560) -> Graph:
    """Peers on a circle; an arrow observer → observed per local view (width ~ its size); the
    global (self) view's size is written on the node."""
    names = sorted({*peers, *(v["observer_id"] for v in views), *(v["observed_id"] for v in views)})
    center, radius = size / 2, size / 2 - 70
    pos: dict[str, tuple[float, float]] = {}
    for i, name in enumerate(names):
        angle = -math.pi / 2 + 2 * math.pi * i / max(len(names), 1)
        pos[name] = (center + radius * math.cos(angle), center + radius * math.sin(angle))
    self_sizes = {
        v["observer_id"]: int(v["conclusions"])
        for v in views
        if v["observer_id"] == v["observed_id"]
    }
    nodes = []
    for n in names:
        x, y = pos[n]
        dx, dy = x - center, y - center
        dist = math.hypot(dx, dy) or 1.0
        nodes.append(
            GraphNode(
                n,
                round(x, 1),
                round(y, 1),
                self_view=self_sizes.get(n, 0),
                lx=round(x + dx / dist * 50, 1),
                ly=round(y + dy / dist * 50 + 4, 1),
            )
        )
    edges: list[GraphEdge] = []
    node_r = 34.0
    for v in views:
        a, b = v["observer_id"], v["observed_id"]
        if a == b:
            continue
        (x1, y1), (x2, y2) = pos[a], pos[b]
        dx, dy = x2 - x1, y2 - y1
        dist = math.hypot(dx, dy) or 1.0
        ux, uy = dx / dist, dy / dist
        # Offset sideways so a → b and b → a do not overlap.
        ox, oy = -uy * 7, ux * 7
        sx, sy = x1 + ux * node_r + ox, y1 + uy * node_r + oy
        ex, ey = x2 - ux * (node_r + 6) + ox, y2 - uy * (node_r + 6) + oy
        n = int(v["conclusions"])
        edges.append(
            GraphEdge(
                observer=a,
                observed=b,
                conclusions=n,
                card_facts=int(v["card_facts"]),
                x1=round(sx, 1),
                y1=round(sy, 1),
                x2=round(ex, 1),
                y2=round(ey, 1),
                lx=round((sx + ex) / 2 + ox * 2, 1),
                ly=round((sy + ey) / 2 + oy * 2, 1),
                width=round(1.5 + 2.5 * math.log1p(n), 1),
            )
        )
    return Graph(nodes=nodes, edges=edges, size=size)


@dataclass(frozen=True)
class BudgetSegment:
    name: str
    tokens: int
    percent: float


@dataclass(frozen=True)
class Budget:
    """How a session context spends its token budget."""

    budget: int
    segments: list[BudgetSegment]

    @property
    def used(self) -> int:
        return sum(s.tokens for s in self.segments)


def context_budget(ctx: dict[str, Any], budget: int) -> Budget:
    """The same accounting as the context service (o200k everywhere): messages and the summary
    cost their stored ``token_count``, the representation and each card fact are counted."""
    summary = ctx.get("summary") or {}
    representation = ctx.get("peer_representation") or ""
    card = ctx.get("peer_card") or []
    tokens = {
        "summary": int(summary.get("token_count", 0)),
        "messages": sum(int(m["token_count"]) for m in ctx.get("messages", [])),
        "representation": count_tokens(representation) if representation else 0,
        "card": sum(count_tokens(f) for f in card),
    }
    return Budget(
        budget=budget,
        segments=[
            BudgetSegment(name, n, round(100.0 * n / budget, 2) if budget else 0.0)
            for name, n in tokens.items()
        ],
    )


# -- the console's use of the API ------------------------------------------------------------
class ConsoleService:
    def __init__(self, api: RapportApi) -> None:
        self.api = api

    async def message_texts(self, ws: str, messages: list[dict[str, Any]]) -> dict[str, str]:
        """Contents of the messages an answer cites (its evidence names only their ids), read
        with the user's key, one list call per session."""
        by_session: dict[str, list[str]] = {}
        for m in messages:
            if isinstance(m.get("session_id"), str) and isinstance(m.get("id"), str):
                by_session.setdefault(m["session_id"], []).append(m["id"])
        texts: dict[str, str] = {}
        for session, ids in by_session.items():
            result = await self.api.call(
                "POST",
                f"/workspaces/{_path(ws)}/sessions/{_path(session)}/messages/list",
                body={"filters": {"id": {"in": ids[:100]}}},
                params={"size": 100},
            )
            texts.update({item["id"]: item["content"] for item in result.get("items", [])})
        return texts

    async def _page_by_id(self, path: str, page: int, query: str | None) -> dict[str, Any]:
        """One page of a ``…/list`` route, filtered to ids containing ``query`` when given."""
        filters = {"id": {"icontains": query}} if query else None
        result: dict[str, Any] = await self.api.call(
            "POST", path, body={"filters": filters}, params={"page": page, "size": PAGE_SIZE}
        )
        return result

    async def workspaces(self, page: int, query: str | None) -> dict[str, Any]:
        return await self._page_by_id("/workspaces/list", page, query)

    async def peers(self, ws: str, page: int, query: str | None) -> dict[str, Any]:
        return await self._page_by_id(f"/workspaces/{_path(ws)}/peers/list", page, query)

    async def sessions(self, ws: str, page: int, query: str | None) -> dict[str, Any]:
        return await self._page_by_id(f"/workspaces/{_path(ws)}/sessions/list", page, query)

    async def search_workspace(self, ws: str, query: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.api.call(
            "POST",
            f"/workspaces/{_path(ws)}/search",
            body={"query": query, "limit": 50},
            via="context",
        )
        return found

    async def messages(
        self, ws: str, session: str, page: int, peer: str | None, query: str | None
    ) -> dict[str, Any]:
        base = f"/workspaces/{_path(ws)}/sessions/{_path(session)}"
        filters = {"peer_id": peer} if peer else None
        if query:
            items: list[dict[str, Any]] = await self.api.call(
                "POST",
                f"{base}/search",
                body={"query": query, "limit": 50, "filters": filters},
                via="context",
            )
            return {"items": items, "total": len(items), "page": 1, "size": 50, "pages": 1}
        result: dict[str, Any] = await self.api.call(
            "POST",
            f"{base}/messages/list",
            body={"filters": filters},
            params={"page": page, "size": PAGE_SIZE},
        )
        return result

    async def session_peers(self, ws: str, session: str) -> list[str]:
        result = await self.api.call(
            "GET",
            f"/workspaces/{_path(ws)}/sessions/{_path(session)}/peers",
            params={"size": 100},
        )
        return [p["id"] for p in result["items"]]

    async def message(self, ws: str, session: str, message_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.api.call(
            "GET", f"/workspaces/{_path(ws)}/sessions/{_path(session)}/messages/{_path(message_id)}"
        )
        return found

    async def views(self, ws: str) -> list[dict[str, Any]]:
        result = await self.api.call("GET", f"/workspaces/{_path(ws)}/views", via="context")
        return list(result["items"])

    async def perspectives(
        self, ws: str, peer: str, views: list[dict[str, Any]]
    ) -> list[PerspectiveColumn]:
        """The peer's global view, then every other observer's local view of it."""
        observers = sorted({v["observer_id"] for v in views if v["observed_id"] == peer} - {peer})
        columns = [PerspectiveColumn(observer=peer, kind="global")]
        columns += [PerspectiveColumn(observer=o, kind="local") for o in observers]
        for column in columns:
            try:
                await self._fill_from_conclusions(ws, peer, column)
            except ApiError as exc:
                if exc.status not in (401, 403):
                    raise
                # A peer key cannot list conclusions, but may read the views it holds.
                try:
                    await self._fill_from_representation(ws, peer, column)
                except ApiError as again:
                    if again.status not in (401, 403):
                        raise
                    column.error = again.detail
        return columns

    async def _fill_from_conclusions(self, ws: str, peer: str, column: PerspectiveColumn) -> None:
        page = await self.api.call(
            "POST",
            f"/workspaces/{_path(ws)}/conclusions/list",
            body={"filters": {"observer_id": column.observer, "observed_id": peer}},
            params={"size": MAX_OBSERVATIONS},
        )
        column.total = int(page["total"])
        column.observations = [
            Observation(
                id=c["id"],
                level=c["level"],
                content=c["content"],
                created_at=str(c["created_at"])[:19].replace("T", " "),
                session_id=c.get("session_id"),
                source_ids=list(c.get("source_ids") or []),
            )
            for c in page["items"]
        ]
        card = await self.api.call(
            "GET",
            f"/workspaces/{_path(ws)}/peers/{_path(column.observer)}/card",
            params={"target": peer},
            via="context",
        )
        column.card = card.get("peer_card")

    async def _fill_from_representation(
        self, ws: str, peer: str, column: PerspectiveColumn
    ) -> None:
        """The view as its rendered representation (what a peer key may read of its own
        views): observations without their source links."""
        ctx = await self.api.call(
            "GET",
            f"/workspaces/{_path(ws)}/peers/{_path(column.observer)}/context",
            params={"target": peer, "max_conclusions": MAX_OBSERVATIONS},
            via="context",
        )
        level = "explicit"
        titles = {"Explicit": "explicit", "Deductive": "deductive", "Inductive": "inductive"}
        for line in (ctx.get("representation") or "").splitlines():
            if line.endswith(":"):
                level = titles.get(line.split()[0], line.split()[0].lower())
                continue
            text = line.removeprefix("- ")
            date, _, content = text.partition("] ")
            column.observations.append(
                Observation(
                    id="",
                    level=level,
                    content=content if date.startswith("[") else text,
                    created_at=date.removeprefix("[") if date.startswith("[") else "",
                    session_id=None,
                    source_ids=[],
                )
            )
        column.total = len(column.observations)
        column.card = ctx.get("peer_card")
        column.note = "Read through the representation (this key cannot list conclusions)."

    async def queue(self, ws: str) -> dict[str, Any]:
        status: dict[str, Any] = await self.api.call("GET", f"/workspaces/{_path(ws)}/queue/status")
        return status

    async def dead_letters(self, ws: str, include_retried: bool) -> dict[str, Any]:
        result: dict[str, Any] = await self.api.call(
            "GET",
            f"/workspaces/{_path(ws)}/queue/dead_letters",
            params={"include_retried": str(include_retried).lower(), "size": 100},
        )
        return result

    async def retry(self, ws: str, dead_letter_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.api.call(
            "POST", f"/workspaces/{_path(ws)}/queue/dead_letters/{_path(dead_letter_id)}/retry"
        )
        return result

    async def session_context(
        self,
        ws: str,
        session: str,
        *,
        tokens: int,
        peer_target: str | None,
        peer_perspective: str | None,
        search_query: str | None,
    ) -> tuple[dict[str, Any], Budget]:
        ctx: dict[str, Any] = await self.api.call(
            "GET",
            f"/workspaces/{_path(ws)}/sessions/{_path(session)}/context",
            params={
                "tokens": tokens,
                "peer_target": peer_target,
                "peer_perspective": peer_perspective if peer_target else None,
                "search_query": search_query if peer_target else None,
            },
            via="context",
        )
        return ctx, context_budget(ctx, tokens)

    def chat_path(self, ws: str, peer: str) -> str:
        return f"/workspaces/{_path(ws)}/peers/{_path(peer)}/chat"
