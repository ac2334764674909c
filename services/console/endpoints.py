"""Console pages: parse, call :class:`ConsoleService` with the user's key, render a template.

The key lives in an HttpOnly, SameSite=Strict cookie scoped to ``/console``; it is sent to the
API as ``Authorization: Bearer`` and never reaches page scripts. API refusals (401/403/404, an
unreachable API) render an explanatory page with the API's status, never a stack trace.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import httpx
from fastapi import APIRouter, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.responses import StreamingResponse

from libs.common.http import ObjectId, PeerId, SessionId, WorkspaceId
from services.console.service import (
    PAGE_SIZE,
    ApiClients,
    ApiError,
    ConsoleService,
    KeyInfo,
    NotAKeyError,
    RapportApi,
    key_info,
    landing,
    layout_graph,
)

PREFIX = "/console"
COOKIE = "rapport_console_key"
HERE = Path(__file__).resolve().parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
TEMPLATES.env.globals["C"] = PREFIX
TEMPLATES.env.filters["q"] = lambda v: quote(str(v), safe="")
TEMPLATES.env.filters["short_time"] = lambda v: str(v)[:19].replace("T", " ")
MAX_BUDGET = 1_000_000


@dataclass(frozen=True)
class ConsoleState:
    """Placed on ``app.state.console`` by the composition root: the HTTP clients of the API."""

    clients: ApiClients


class _PageRoute(APIRoute):
    """A page (GET, not ``*.json``) whose query parameters are invalid renders the console's
    error page with what was wrong, instead of the API's JSON 422."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                if request.method != "GET" or request.url.path.endswith(".json"):
                    raise
                return render(
                    request,
                    "error.html",
                    http_status=422,
                    title=ERROR_TITLES[422],
                    status_code=422,
                    detail=_describe(exc),
                    own_input=True,
                )

        return route


def _describe(exc: RequestValidationError) -> str:
    """``tokens: Input should be greater than or equal to 1`` — one line per invalid field."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "path"))
        lines.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg")))
    return "; ".join(lines) or "invalid input"


router = APIRouter(prefix=PREFIX, include_in_schema=False, route_class=_PageRoute)

Page = Annotated[int, Query(ge=1, le=100_000)]
Text = Annotated[str | None, Query(max_length=500)]


def _key(request: Request) -> str | None:
    return request.cookies.get(COOKIE) or None


def _info(request: Request) -> KeyInfo:
    try:
        return key_info(_key(request))
    except NotAKeyError:
        return KeyInfo(kind="invalid")


def _service(request: Request) -> ConsoleService:
    state: ConsoleState = request.app.state.console
    return ConsoleService(RapportApi(state.clients, _key(request)))


def render(request: Request, template: str, http_status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("key", _info(request))
    context.setdefault("ws", None)
    context.setdefault("tab", None)
    return TEMPLATES.TemplateResponse(request, template, context, status_code=http_status)


ERROR_TITLES = {
    401: "Your key was not accepted",
    403: "This key cannot see this",
    404: "Not found",
    409: "Conflict",
    422: "The request was not valid",
    502: "The Rapport API is unreachable",
    503: "Rapport is unavailable",
}


def error_page(request: Request, exc: ApiError, ws: str | None = None) -> Response:
    if exc.status == 401 and _key(request) is None:
        # Auth is on and nobody logged in yet.
        return RedirectResponse(f"{PREFIX}/login?next={quote(request.url.path)}", 303)
    status = exc.status if 400 <= exc.status < 600 else 502
    return render(
        request,
        "error.html",
        http_status=status,
        ws=ws,
        title=ERROR_TITLES.get(status, f"The API answered {status}"),
        status_code=status,
        detail=exc.detail,
    )


def _qs(**params: Any) -> str:
    return urlencode({k: v for k, v in params.items() if v not in (None, "")})


# -- login -------------------------------------------------------------------------------------
@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: Text = None) -> Response:
    return render(request, "login.html", next=next or "", error=None)


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    key: Annotated[str, Form(max_length=8192)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    key = key.strip()
    try:
        if not key:
            raise NotAKeyError("Paste an API key (a JWT minted with POST /v3/keys).")
        info = key_info(key)
    except NotAKeyError as exc:
        return render(request, "login.html", http_status=400, next=next, error=str(exc))
    # Ask the API whether it takes the key, on a route the key's scope may use.
    state: ConsoleState = request.app.state.console
    api = ConsoleService(RapportApi(state.clients, key))
    try:
        if info.kind == "admin":
            await api.workspaces(1, None)
        elif info.workspace_id is not None and info.kind == "workspace":
            await api.peers(info.workspace_id, 1, None)
        elif info.workspace_id is not None and info.session_id is not None:
            await api.messages(info.workspace_id, info.session_id, 1, None, None)
        elif info.workspace_id is not None and info.peer_id is not None:
            await api.views(info.workspace_id)
    except ApiError as exc:
        if exc.status in (401, 403):
            return render(
                request,
                "login.html",
                http_status=exc.status,
                next=next,
                error=f"The server did not accept this key ({exc.status}): {exc.detail}",
            )
        if exc.status != 404:
            return error_page(request, exc)
    target = next if next.startswith(f"{PREFIX}/") and "//" not in next else ""
    response = RedirectResponse(target or PREFIX + landing(info), 303)
    response.set_cookie(
        COOKIE,
        key,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=PREFIX,
    )
    return response


@router.post("/logout")
async def logout() -> Response:
    response = RedirectResponse(f"{PREFIX}/login", 303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


# -- browse ------------------------------------------------------------------------------------
@router.get("", include_in_schema=False)
async def root_redirect() -> Response:
    return RedirectResponse(f"{PREFIX}/", 307)


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, page: Page = 1, q: Text = None) -> Response:
    info = _info(request)
    if info.kind not in ("admin", "none"):
        if info.kind == "invalid":
            return RedirectResponse(f"{PREFIX}/login", 303)
        return RedirectResponse(PREFIX + landing(info), 303)
    try:
        found = await _service(request).workspaces(page, q)
    except ApiError as exc:
        return error_page(request, exc)
    return render(request, "workspaces.html", found=found, q=q or "", page=page)


@router.get("/w/{workspace_id}", response_class=HTMLResponse)
async def workspace(
    request: Request,
    workspace_id: WorkspaceId,
    page: Page = 1,
    speers: Page = 1,
    q: Text = None,
    peer_q: Text = None,
    search: Text = None,
) -> Response:
    svc = _service(request)
    try:
        peers = await svc.peers(workspace_id, speers, peer_q)
        sessions = await svc.sessions(workspace_id, page, q)
        hits = await svc.search_workspace(workspace_id, search) if search else None
    except ApiError as exc:
        return error_page(request, exc, workspace_id)
    return render(
        request,
        "workspace.html",
        ws=workspace_id,
        tab="browse",
        peers=peers,
        sessions=sessions,
        q=q or "",
        peer_q=peer_q or "",
        search=search or "",
        hits=hits,
        page=page,
        speers=speers,
        qs=_qs,
    )


@router.get("/w/{workspace_id}/sessions/{session_id}", response_class=HTMLResponse)
async def session_page(
    request: Request,
    workspace_id: WorkspaceId,
    session_id: SessionId,
    page: Page = 1,
    peer: Text = None,
    q: Text = None,
) -> Response:
    svc = _service(request)
    try:
        messages = await svc.messages(workspace_id, session_id, page, peer, q)
        members = await svc.session_peers(workspace_id, session_id)
    except ApiError as exc:
        return error_page(request, exc, workspace_id)
    return render(
        request,
        "session.html",
        ws=workspace_id,
        tab="browse",
        session_id=session_id,
        messages=messages,
        members=members,
        peer=peer or "",
        q=q or "",
        page=page,
        qs=_qs,
    )


@router.get(
    "/w/{workspace_id}/sessions/{session_id}/messages/{message_id}", response_class=HTMLResponse
)
async def message_page(
    request: Request,
    workspace_id: WorkspaceId,
    session_id: SessionId,
    message_id: ObjectId,
) -> Response:
    try:
        message = await _service(request).message(workspace_id, session_id, message_id)
    except ApiError as exc:
        return error_page(request, exc, workspace_id)
    return render(request, "message.html", ws=workspace_id, tab="browse", message=message)


# -- perspectives ------------------------------------------------------------------------------
@router.get("/w/{workspace_id}/peers/{peer_id}", response_class=HTMLResponse)
async def peer_page(request: Request, workspace_id: WorkspaceId, peer_id: PeerId) -> Response:
    svc = _service(request)
    try:
        views = await svc.views(workspace_id)
        columns = await svc.perspectives(workspace_id, peer_id, views)
    except ApiError as exc:
        return error_page(request, exc, workspace_id)
    return render(
        request, "peer.html", ws=workspace_id, tab="browse", peer_id=peer_id, columns=columns
    )


@router.get("/w/{workspace_id}/graph", response_class=HTMLResponse)
async def graph_page(request: Request, workspace_id: WorkspaceId) -> Response:
    svc = _service(request)
    try:
        views = await svc.views(workspace_id)
        peers = await svc.peers(workspace_id, 1, None)
    except ApiError as exc:
        return error_page(request, exc, workspace_id)
    graph = layout_graph([p["id"] for p in peers["items"]], views)
    return render(request, "graph.html", ws=workspace_id, tab="graph", graph=graph, views=views)


# -- deriver -----------------------------------------------------------------------------------
@router.get("/w/{workspace_id}/deriver", response_class=HTMLResponse)
async def deriver_page(
    request: Request,
    workspace_id: WorkspaceId,
    retried: Annotated[str | None, Query(max_length=64)] = None,
    include_retried: bool = False,
) -> Response:
    svc = _service(request)
    try:
        status = await svc.queue(workspace_id)
        letters = await svc.dead_letters(workspace_id, include_retried)
    except ApiError as exc:
        return error_page(request, exc, workspace_id)
    sessions = sorted((status.get("sessions") or {}).items())
    return render(
        request,
        "deriver.html",
        ws=workspace_id,
        tab="deriver",
        status=status,
        sessions=sessions,
        letters=letters,
        retried=retried,
        include_retried=include_retried,
        page_size=PAGE_SIZE,
    )


@router.get("/w/{workspace_id}/deriver/status.json")
async def deriver_status(request: Request, workspace_id: WorkspaceId) -> Response:
    try:
        status = await _service(request).queue(workspace_id)
    except ApiError as exc:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)
    return JSONResponse(status)


@router.post("/w/{workspace_id}/deriver/dead_letters/{dead_letter_id}/retry")
async def retry_dead_letter(
    request: Request,
    workspace_id: WorkspaceId,
    dead_letter_id: ObjectId,
) -> Response:
    try:
        await _service(request).retry(workspace_id, dead_letter_id)
    except ApiError as exc:
        return error_page(request, exc, workspace_id)
    url = f"{PREFIX}/w/{quote(workspace_id, safe='')}/deriver?{_qs(retried=dead_letter_id)}"
    return RedirectResponse(url, 303)


# -- playground --------------------------------------------------------------------------------
@router.get("/w/{workspace_id}/playground", response_class=HTMLResponse)
async def playground(
    request: Request,
    workspace_id: WorkspaceId,
    session: Text = None,
    tokens: Annotated[int, Query(ge=1, le=MAX_BUDGET)] = 2000,
    peer_target: Text = None,
    peer_perspective: Text = None,
    search_query: Text = None,
    peer: Text = None,
) -> Response:
    svc = _service(request)
    info = _info(request)
    context = budget = None
    try:
        if info.kind in ("peer", "session"):
            peers = [info.peer_id] if info.peer_id else []
            sessions = [info.session_id] if info.session_id else []
        else:
            peers = [p["id"] for p in (await svc.peers(workspace_id, 1, None))["items"]]
            sessions = [s["id"] for s in (await svc.sessions(workspace_id, 1, None))["items"]]
        if session:
            context, budget = await svc.session_context(
                workspace_id,
                session,
                tokens=tokens,
                peer_target=peer_target or None,
                peer_perspective=peer_perspective or None,
                search_query=search_query or None,
            )
    except ApiError as exc:
        return error_page(request, exc, workspace_id)
    return render(
        request,
        "playground.html",
        ws=workspace_id,
        tab="playground",
        peers=peers,
        sessions=sessions,
        session=session or "",
        tokens=tokens,
        peer_target=peer_target or "",
        peer_perspective=peer_perspective or "",
        search_query=search_query or "",
        chat_peer=peer or (peers[0] if peers else ""),
        context=context,
        budget=budget,
    )


async def _relay(
    response: httpx.Response, stack: AsyncExitStack, svc: ConsoleService, ws: str
) -> AsyncIterator[bytes]:
    """Passes the API's SSE frames through as they arrive; the final frame's evidence gets the
    cited messages' text added (the API's evidence names messages by id only)."""
    try:
        pending = b""
        async for chunk in response.aiter_raw():
            pending += chunk
            while b"\n\n" in pending:
                frame, pending = pending.split(b"\n\n", 1)
                yield await _with_message_texts(frame, svc, ws) + b"\n\n"
        if pending:
            yield pending
    finally:
        await stack.aclose()


async def _with_message_texts(frame: bytes, svc: ConsoleService, ws: str) -> bytes:
    if not frame.startswith(b"data: ") or b'"evidence"' not in frame:
        return frame
    try:
        event = json.loads(frame[len(b"data: ") :])
        messages = event["evidence"]["messages"]
        texts = await svc.message_texts(ws, messages)
    except (ValueError, KeyError, TypeError, ApiError):
        return frame  # the answer still shows; the evidence keeps its links without text
    for m in messages:
        if m.get("id") in texts:
            m["content"] = texts[m["id"]]
    return b"data: " + json.dumps(event).encode()


@router.post("/w/{workspace_id}/peers/{peer_id}/chat")
async def chat(request: Request, workspace_id: WorkspaceId, peer_id: PeerId) -> Response:
    """Relays the API's SSE answer (with evidence) to the page as it streams."""
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return JSONResponse({"detail": 'The body must be JSON: {"query": "..."}'}, 400)
    if not isinstance(body, dict):
        return JSONResponse({"detail": "The body must be a JSON object"}, 400)
    allowed = {"query", "target", "session_id", "reasoning_level"}
    payload = {k: v for k, v in body.items() if k in allowed and v not in (None, "")}
    payload.update(stream=True, include_evidence=True)
    svc = _service(request)
    stack = AsyncExitStack()  # closed by _relay once the stream is relayed
    try:
        response = await stack.enter_async_context(
            svc.api.stream(svc.chat_path(workspace_id, peer_id), payload)
        )
    except ApiError as exc:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)
    return StreamingResponse(
        _relay(response, stack, svc, workspace_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
