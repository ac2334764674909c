"""HTTP mechanisms shared by every service: error rendering, body limits, admission control,
auth dependency, paging parameters, request metrics, ``/health`` and ``/metrics``."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest
from pydantic import BaseModel, TypeAdapter
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common.admission import AdmissionControlMiddleware, Budget
from libs.common.auth import ADMIN, Principal, bearer_token, decode_jwt
from libs.common.db import database_error
from libs.common.errors import RapportError, error_body
from libs.common.ids import RESOURCE_ID_MAX, RESOURCE_ID_PATTERN
from libs.common.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from libs.common.settings import AuthSettings, LimitsSettings
from libs.common.telemetry import instrument_app

log = logging.getLogger(__name__)

REQUEST_LATENCY = Histogram(
    "rapport_http_request_duration_seconds",
    "HTTP request latency by route template",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


# -- errors --------------------------------------------------------------------------------
class ValidationIssue(BaseModel):
    """One problem FastAPI found in a request (``detail`` items of a 422 for malformed input)."""

    type: str
    loc: list[str | int]
    msg: str


class ErrorOut(BaseModel):
    """Body of every error response: a message, or FastAPI's list of validation issues."""

    detail: str | list[ValidationIssue]


_ERROR_DESCRIPTIONS = {
    400: "The body could not be read (not UTF-8 JSON, unreadable upload)",
    401: "Missing or invalid credentials (auth on)",
    403: "The key's scope does not reach this resource",
    404: "A resource named in the path or body does not exist",
    409: "The request conflicts with the resource's current state",
    413: "Request body or upload too large",
    415: "Unsupported file type",
    422: "Invalid input: a message, or FastAPI's list of validation issues",
    503: "Overloaded, or a backing service is unavailable; retry later",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for error statuses, all with the ``ErrorOut`` body."""
    return {s: {"model": ErrorOut, "description": _ERROR_DESCRIPTIONS[s]} for s in statuses}


#: Errors any ``/v3`` route may answer: set once on each service's router.
API_ERRORS = error_responses(400, 401, 403, 404, 413, 422, 503)


def created_or_existing(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """``responses`` of a get-or-create route: 201 when created, 200 when it existed."""
    return {
        200: {"model": model, "description": "It already existed"},
        201: {"model": model, "description": "Created"},
    }


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    """FastAPI's shape, without echoing the rejected input back (it may be huge or private)."""
    out = []
    for err in exc.errors():
        item = {k: v for k, v in err.items() if k in ("type", "loc", "msg")}
        out.append(item)
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RapportError)
    async def _rapport_error(_: Request, exc: RapportError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.detail), status_code=exc.status_code, headers=exc.headers
        )

    async def _database_error(request: Request, exc: Exception) -> JSONResponse:
        # Raised outside a unit of work (the vector store's own connections): same answer as
        # inside one — 503 with Retry-After, never a 500 for a busy or unreachable database.
        mapped = database_error(exc)
        log.warning("database unavailable on %s %s: %r", request.method, request.url.path, exc)
        return JSONResponse(
            error_body(mapped.detail), status_code=mapped.status_code, headers=mapped.headers
        )

    app.add_exception_handler(PoolTimeoutError, _database_error)
    app.add_exception_handler(OperationalError, _database_error)
    app.add_exception_handler(InterfaceError, _database_error)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(jsonable_encoder(error_body(_validation_detail(exc))), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 404 and detail == "Not Found":
            detail = "No such route; see /docs for the API"
        if exc.status_code == 405:
            detail = "Method not allowed on this route"
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            detail = "The request body could not be read as JSON; send UTF-8 encoded JSON"
        return JSONResponse(error_body(detail), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("Internal server error"), status_code=500)


def sse_responses(event: Any, description: str) -> dict[int | str, dict[str, Any]]:
    """``responses`` of a route that may answer 200 as ``text/event-stream``: each event's
    ``data`` is a JSON document of type ``event`` (a model or a union of models).

    The schema describes one event (``data`` plus the optional ``event`` / ``id`` fields), with
    the JSON payload as ``contentSchema`` (refs inlined, so it stands alone in the document).
    """
    payload = TypeAdapter(event).json_schema()
    payload = _inline_refs(payload, payload.pop("$defs", {}))
    return {
        200: {
            "content": {
                "text/event-stream": {
                    "schema": {
                        "type": "object",
                        "description": description,
                        "required": ["data"],
                        "properties": {
                            "event": {"type": "string"},
                            "id": {"type": "string"},
                            "data": {
                                "type": "string",
                                "contentMediaType": "application/json",
                                "contentSchema": payload,
                            },
                        },
                    }
                }
            }
        }
    }


def _inline_refs(schema: Any, defs: dict[str, Any]) -> Any:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline_refs(v, defs) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inline_refs(v, defs) for v in schema]
    return schema


# -- body size limit -----------------------------------------------------------------------
class BodySizeLimitMiddleware:
    """Answer 413 before reading more than ``max_bytes`` of a request body.

    Checks ``Content-Length`` up front and counts streamed bytes (chunked uploads) as they
    arrive. Multipart uploads get ``upload_max_bytes`` (plus form overhead) instead.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, upload_max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_max_bytes = upload_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        ctype = headers.get(b"content-type", b"").decode("latin-1").lower()
        limit = (
            self.upload_max_bytes + 64 * 1024 if ctype.startswith("multipart/") else self.max_bytes
        )
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                too_big = False
            if too_big:
                await _send_413(send, limit)
                return
        seen = 0
        rejected = False

        async def limited_receive() -> Message:
            nonlocal seen, rejected
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    rejected = True
                    raise _BodyTooLarge
            return message

        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if rejected:
                # The app turned the aborted read into its own answer (FastAPI: 400 "error
                # parsing the body"); the client must hear 413 instead.
                if message["type"] == "http.response.start" and not response_started:
                    response_started = True
                    await _send_413(send, limit)
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await _send_413(send, limit)
        except Exception:
            if rejected and not response_started:
                await _send_413(send, limit)
                return
            raise


class _BodyTooLarge(Exception):  # noqa: N818 - internal control flow
    pass


async def _send_413(send: Send, limit: int) -> None:
    body = JSONResponse(
        error_body(f"Request body too large; the limit is {limit} bytes"), status_code=413
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body.body})


# -- composition ---------------------------------------------------------------------------
def configure_http(app: FastAPI, auth: AuthSettings, limits: LimitsSettings) -> None:
    """Middleware and handlers every Rapport HTTP app shares (ingest, context, dialectic and
    the all-in-one process).

    Middleware order, outermost first: admission control (a refused request costs no body
    read, no routing, no database work), body size limit, tracing, request metrics.
    """
    app.state.auth_settings = auth
    install_error_handlers(app)
    install_request_metrics(app)
    instrument_app(app)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=limits.max_request_bytes,
        upload_max_bytes=limits.max_upload_bytes,
    )
    if limits.admission_enabled:
        app.add_middleware(
            AdmissionControlMiddleware,
            read=Budget(limits.max_inflight_reads, limits.max_queued_reads),
            write=Budget(limits.max_inflight_writes, limits.max_queued_writes),
            queue_timeout_s=limits.admission_queue_timeout_s,
            retry_after_s=limits.overload_retry_after_s,
        )


# -- metrics middleware --------------------------------------------------------------------
def install_request_metrics(app: FastAPI) -> None:
    @app.middleware("http")
    async def _metrics(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        REQUEST_LATENCY.labels(request.method, template, str(response.status_code)).observe(
            time.perf_counter() - start
        )
        return response


def ops_router(readiness: Callable[[], Awaitable[dict[str, Any]]]) -> APIRouter:
    """``GET /health`` (200 when every dependency answers, else 503) and ``GET /metrics``."""
    router = APIRouter(include_in_schema=False)

    @router.get("/health")
    async def health() -> JSONResponse:
        checks = await readiness()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "degraded", "checks": checks},
            status_code=200 if ok else 503,
        )

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


# -- auth and paging dependencies ----------------------------------------------------------
def get_principal(request: Request) -> Principal:
    """The caller, from the ``Authorization`` header (admin when auth is disabled)."""
    settings: AuthSettings = request.app.state.auth_settings
    if not settings.auth_enabled:
        return ADMIN
    token = bearer_token(request.headers.get("authorization"))
    return decode_jwt(token, settings.jwt_secret.get_secret_value())


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


class Paging:
    def __init__(
        self,
        page: Annotated[int, Query(ge=1, le=1_000_000, description="1-based page number")] = 1,
        size: Annotated[
            int, Query(ge=1, le=MAX_PAGE_SIZE, description="Items per page (max 100)")
        ] = DEFAULT_PAGE_SIZE,
        reverse: Annotated[bool, Query(description="Newest first")] = False,
    ) -> None:
        self.page = page
        self.size = size
        self.reverse = reverse


PagingParams = Annotated[Paging, Depends()]


# -- path parameters -----------------------------------------------------------------------
def _id_path(name: str) -> Any:
    return Path(
        min_length=1,
        max_length=RESOURCE_ID_MAX,
        pattern=RESOURCE_ID_PATTERN,
        description=f"The {name} id",
    )


WorkspaceId = Annotated[str, _id_path("workspace")]
PeerId = Annotated[str, _id_path("peer")]
SessionId = Annotated[str, _id_path("session")]
#: Server-generated ids (messages, conclusions, webhooks, dead letters).
ObjectId = Annotated[str, _id_path("object")]
