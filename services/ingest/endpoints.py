"""Ingest HTTP routes: parse, authorise, call :class:`IngestService`, map the result."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, File, Form, Query, Request, Response, UploadFile, status
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.common.auth import Principal, create_jwt
from libs.common.broker import StreamLayout
from libs.common.db import unit_of_work
from libs.common.errors import (
    BadRequestError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from libs.common.http import (
    API_ERRORS,
    CurrentPrincipal,
    ObjectId,
    PagingParams,
    PeerId,
    SessionId,
    WorkspaceId,
    created_or_existing,
    error_responses,
)
from libs.common.ids import RESOURCE_ID_MAX, RESOURCE_ID_PATTERN
from libs.common.models import (
    DeadLetter,
    Message,
    Peer,
    Session,
    WebhookEndpoint,
    Workspace,
)
from libs.common.outbox import OutboxBackpressure
from libs.common.pagination import PageResult
from libs.common.settings import AuthSettings, LimitsSettings, WebhookSettings
from libs.common.wire import (
    ConclusionOut,
    IdKeyed,
    JsonObject,
    ListRequest,
    MessageOut,
    Page,
    ResourceId,
)
from services.ingest import schemas
from services.ingest.files import UnreadableFile, UnsupportedFileType, split_upload
from services.ingest.service import IngestService, parse_created_at


@dataclass(frozen=True)
class IngestState:
    """What the routes need, placed on ``app.state.ingest`` by the composition root."""

    session_factory: async_sessionmaker[AsyncSession]
    layout: StreamLayout
    limits: LimitsSettings
    auth: AuthSettings
    webhooks: WebhookSettings
    #: Refuses message batches while the outbox backlog is over its bound (one per process).
    backpressure: OutboxBackpressure


@asynccontextmanager
async def _service(request: Request) -> AsyncIterator[IngestService]:
    state: IngestState = request.app.state.ingest
    async with unit_of_work(state.session_factory) as db:
        yield IngestService(
            db,
            layout=state.layout,
            limits=state.limits,
            allow_private_webhooks=state.webhooks.allow_private_webhook_urls,
            backpressure=state.backpressure,
        )


# -- mapping ORM rows to wire shapes -------------------------------------------------------
def workspace_out(ws: Workspace) -> schemas.WorkspaceOut:
    return schemas.WorkspaceOut(
        id=ws.id, metadata=ws.metadata_, configuration=ws.configuration, created_at=ws.created_at
    )


# Official Honcho SDKs send this header, and validate a peer's ``configuration`` strictly: only
# ``observe_me`` may be there (honcho-ai's PeerConfig forbids other keys). They get that shape,
# without Rapport's ``observe_others``; every other client gets the configuration as stored.
HONCHO_SDK_HEADER = "x-honcho-host"
HONCHO_PEER_CONFIG_KEYS = frozenset({"observe_me"})


def peer_out(peer: Peer, *, honcho: bool = False) -> schemas.PeerOut:
    configuration = peer.configuration
    if honcho:
        configuration = {k: v for k, v in configuration.items() if k in HONCHO_PEER_CONFIG_KEYS}
    return schemas.PeerOut(
        id=peer.id,
        workspace_id=peer.workspace_id,
        metadata=peer.metadata_,
        configuration=configuration,
        created_at=peer.created_at,
    )


def peer_out_for(request: Request) -> Callable[[Peer], schemas.PeerOut]:
    """``peer_out`` in the shape the requesting client parses (see ``HONCHO_SDK_HEADER``)."""
    honcho = HONCHO_SDK_HEADER in request.headers
    return lambda peer: peer_out(peer, honcho=honcho)


def session_out(session: Session) -> schemas.SessionOut:
    return schemas.SessionOut(
        id=session.id,
        workspace_id=session.workspace_id,
        is_active=session.is_active,
        metadata=session.metadata_,
        configuration=session.configuration,
        created_at=session.created_at,
    )


def webhook_out(w: WebhookEndpoint) -> schemas.WebhookOut:
    return schemas.WebhookOut(
        id=w.id, url=w.url, workspace_id=w.workspace_id, created_at=w.created_at
    )


def _page(result: PageResult[Any], mapper: Any) -> dict[str, Any]:
    return {
        "items": [mapper(i) for i in result.items],
        "total": result.total,
        "page": result.page,
        "size": result.size,
        "pages": result.pages,
    }


def _filters(body: ListRequest | None) -> dict[str, Any] | None:
    return body.filters if body is not None else None


async def _authorize_session(
    principal: Principal, svc: IngestService, workspace_id: str, session_id: str, *, write: bool
) -> None:
    async def member(peer_id: str) -> bool:
        return await svc.is_member(workspace_id, session_id, peer_id)

    await principal.require_session(workspace_id, session_id, write=write, is_member=member)


router = APIRouter(prefix="/v3", responses=API_ERRORS)


# -- workspaces ----------------------------------------------------------------------------
@router.post(
    "/workspaces",
    response_model=schemas.WorkspaceOut,
    responses={**created_or_existing(schemas.WorkspaceOut), **error_responses(409)},
    tags=["workspaces"],
    summary="Get or create a workspace (201 created, 200 existing)",
)
async def get_or_create_workspace(
    request: Request, response: Response, body: schemas.WorkspaceCreate, principal: CurrentPrincipal
) -> schemas.WorkspaceOut:
    principal.require_workspace_member(body.id)
    async with _service(request) as svc:
        if principal.admin or principal.kind == "workspace":
            outcome = await svc.get_or_create_workspace(body)
            ws, created = outcome.value, outcome.created
        else:
            ws, created = await svc.require_workspace(body.id), False
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return workspace_out(ws)


@router.post("/workspaces/list", response_model=Page[schemas.WorkspaceOut], tags=["workspaces"])
async def list_workspaces(
    request: Request,
    principal: CurrentPrincipal,
    paging: PagingParams,
    body: ListRequest | None = None,
) -> dict[str, Any]:
    principal.require_admin()
    async with _service(request) as svc:
        result = await svc.list_workspaces(
            _filters(body), page=paging.page, size=paging.size, reverse=paging.reverse
        )
    return _page(result, workspace_out)


@router.put("/workspaces/{workspace_id}", response_model=schemas.WorkspaceOut, tags=["workspaces"])
async def update_workspace(
    request: Request,
    workspace_id: WorkspaceId,
    body: schemas.WorkspaceUpdate,
    principal: CurrentPrincipal,
) -> schemas.WorkspaceOut:
    principal.require_workspace(workspace_id)
    async with _service(request) as svc:
        ws = await svc.update_workspace(workspace_id, body)
    return workspace_out(ws)


@router.delete(
    "/workspaces/{workspace_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(409),
    tags=["workspaces"],
)
async def delete_workspace(
    request: Request, workspace_id: WorkspaceId, principal: CurrentPrincipal
) -> Response:
    principal.require_workspace(workspace_id)
    async with _service(request) as svc:
        await svc.delete_workspace(workspace_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/workspaces/{workspace_id}/queue/status",
    response_model=schemas.QueueStatusOut,
    tags=["workspaces"],
)
async def queue_status(
    request: Request,
    workspace_id: WorkspaceId,
    principal: CurrentPrincipal,
    observer_id: Annotated[ResourceId | None, Query()] = None,
    sender_id: Annotated[ResourceId | None, Query()] = None,
    session_id: Annotated[ResourceId | None, Query()] = None,
) -> schemas.QueueStatusOut:
    async with _service(request) as svc:
        if session_id is not None:
            await _authorize_session(principal, svc, workspace_id, session_id, write=False)
        else:
            principal.require_workspace(workspace_id)
        return await svc.queue_status(
            workspace_id, observer_id=observer_id, sender_id=sender_id, session_id=session_id
        )


def dead_letter_out(d: DeadLetter) -> schemas.DeadLetterOut:
    return schemas.DeadLetterOut(
        id=d.id,
        workspace_id=d.workspace_id,
        session_id=d.session_id,
        consumer=d.consumer,
        event_type=d.event_type,
        event_id=d.event_id,
        error=d.error,
        attempts=d.attempts,
        created_at=d.created_at,
        retried_at=d.retried_at,
        payload=d.payload,
    )


@router.get(
    "/workspaces/{workspace_id}/queue/dead_letters",
    response_model=Page[schemas.DeadLetterOut],
    tags=["workspaces"],
    summary="Events the deriver gave up on, with their errors (Rapport addition)",
)
async def list_dead_letters(
    request: Request,
    workspace_id: WorkspaceId,
    principal: CurrentPrincipal,
    paging: PagingParams,
    include_retried: bool = False,
) -> dict[str, Any]:
    principal.require_workspace(workspace_id)
    async with _service(request) as svc:
        result = await svc.list_dead_letters(
            workspace_id, include_retried=include_retried, page=paging.page, size=paging.size
        )
    return _page(result, dead_letter_out)


@router.post(
    "/workspaces/{workspace_id}/queue/dead_letters/{dead_letter_id}/retry",
    response_model=schemas.DeadLetterOut,
    responses=error_responses(409),
    tags=["workspaces"],
    summary="Publish a dead-lettered event again (Rapport addition)",
)
async def retry_dead_letter(
    request: Request,
    workspace_id: WorkspaceId,
    dead_letter_id: ObjectId,
    principal: CurrentPrincipal,
) -> schemas.DeadLetterOut:
    principal.require_workspace(workspace_id)
    async with _service(request) as svc:
        return dead_letter_out(await svc.retry_dead_letter(workspace_id, dead_letter_id))


@router.post(
    "/workspaces/{workspace_id}/schedule_dream",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["workspaces"],
)
async def schedule_dream(
    request: Request,
    workspace_id: WorkspaceId,
    body: schemas.DreamRequest,
    principal: CurrentPrincipal,
) -> Response:
    principal.require_workspace(workspace_id)
    async with _service(request) as svc:
        await svc.schedule_dream(workspace_id, body)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- peers ---------------------------------------------------------------------------------
@router.post(
    "/workspaces/{workspace_id}/peers",
    response_model=schemas.PeerOut,
    responses=created_or_existing(schemas.PeerOut),
    tags=["peers"],
    summary="Get or create a peer (201 created, 200 existing)",
)
async def get_or_create_peer(
    request: Request,
    response: Response,
    workspace_id: WorkspaceId,
    body: schemas.PeerCreate,
    principal: CurrentPrincipal,
) -> schemas.PeerOut:
    principal.require_peer(workspace_id, body.id)  # session keys are refused here
    async with _service(request) as svc:
        outcome = await svc.get_or_create_peer(workspace_id, body)
        peer, created = outcome.value, outcome.created
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return peer_out_for(request)(peer)


@router.post(
    "/workspaces/{workspace_id}/peers/list", response_model=Page[schemas.PeerOut], tags=["peers"]
)
async def list_peers(
    request: Request,
    workspace_id: WorkspaceId,
    principal: CurrentPrincipal,
    paging: PagingParams,
    body: ListRequest | None = None,
) -> dict[str, Any]:
    principal.require_workspace(workspace_id)
    async with _service(request) as svc:
        result = await svc.list_peers(
            workspace_id,
            _filters(body),
            page=paging.page,
            size=paging.size,
            reverse=paging.reverse,
        )
    return _page(result, peer_out_for(request))


@router.put(
    "/workspaces/{workspace_id}/peers/{peer_id}", response_model=schemas.PeerOut, tags=["peers"]
)
async def update_peer(
    request: Request,
    workspace_id: WorkspaceId,
    peer_id: PeerId,
    body: schemas.PeerUpdate,
    principal: CurrentPrincipal,
) -> schemas.PeerOut:
    principal.require_peer(workspace_id, peer_id)
    async with _service(request) as svc:
        return peer_out_for(request)(await svc.update_peer(workspace_id, peer_id, body))


@router.post(
    "/workspaces/{workspace_id}/peers/{peer_id}/sessions",
    response_model=Page[schemas.SessionOut],
    tags=["peers"],
)
async def peer_sessions(
    request: Request,
    workspace_id: WorkspaceId,
    peer_id: PeerId,
    principal: CurrentPrincipal,
    paging: PagingParams,
    body: ListRequest | None = None,
) -> dict[str, Any]:
    principal.require_peer(workspace_id, peer_id)
    async with _service(request) as svc:
        result = await svc.peer_sessions(
            workspace_id,
            peer_id,
            _filters(body),
            page=paging.page,
            size=paging.size,
            reverse=paging.reverse,
        )
    return _page(result, session_out)


# -- sessions ------------------------------------------------------------------------------
@router.post(
    "/workspaces/{workspace_id}/sessions",
    response_model=schemas.SessionOut,
    responses=created_or_existing(schemas.SessionOut),
    tags=["sessions"],
    summary="Get or create a session (201 created, 200 existing)",
)
async def get_or_create_session(
    request: Request,
    response: Response,
    workspace_id: WorkspaceId,
    body: schemas.SessionCreate,
    principal: CurrentPrincipal,
) -> schemas.SessionOut:
    async with _service(request) as svc:
        await _authorize_session(
            principal, svc, workspace_id, body.id, write=principal.kind != "peer"
        )
        if principal.kind == "peer":  # a member may read the session, not create or change it
            session, created = await svc.require_session(workspace_id, body.id), False
        else:
            outcome = await svc.get_or_create_session(workspace_id, body)
            session, created = outcome.value, outcome.created
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return session_out(session)


@router.post(
    "/workspaces/{workspace_id}/sessions/list",
    response_model=Page[schemas.SessionOut],
    tags=["sessions"],
)
async def list_sessions(
    request: Request,
    workspace_id: WorkspaceId,
    principal: CurrentPrincipal,
    paging: PagingParams,
    body: ListRequest | None = None,
) -> dict[str, Any]:
    principal.require_workspace(workspace_id)
    async with _service(request) as svc:
        result = await svc.list_sessions(
            workspace_id,
            _filters(body),
            page=paging.page,
            size=paging.size,
            reverse=paging.reverse,
        )
    return _page(result, session_out)


@router.put(
    "/workspaces/{workspace_id}/sessions/{session_id}",
    response_model=schemas.SessionOut,
    tags=["sessions"],
)
async def update_session(
    request: Request,
    workspace_id: WorkspaceId,
    session_id: SessionId,
    body: schemas.SessionUpdate,
    principal: CurrentPrincipal,
) -> schemas.SessionOut:
    async with _service(request) as svc:
        await _authorize_session(principal, svc, workspace_id, session_id, write=True)
        return session_out(await svc.update_session(workspace_id, session_id, body))


@router.delete(
    "/workspaces/{workspace_id}/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["sessions"],
)
async def delete_session(
    request: Request, workspace_id: WorkspaceId, session_id: SessionId, principal: CurrentPrincipal
) -> Response:
    async with _service(request) as svc:
        await _authorize_session(principal, svc, workspace_id, session_id, write=True)
        await svc.delete_session(workspace_id, session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/workspaces/{workspace_id}/sessions/{session_id}/clone",
    response_model=schemas.SessionOut,
    status_code=status.HTTP_201_CREATED,
    tags=["sessions"],
)
async def clone_session(
    request: Request,
    workspace_id: WorkspaceId,
    session_id: SessionId,
    principal: CurrentPrincipal,
    message_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> schemas.SessionOut:
    principal.require_workspace(workspace_id)
    async with _service(request) as svc:
        return session_out(await svc.clone_session(workspace_id, session_id, message_id))


PeerMap = Annotated[IdKeyed[schemas.SessionPeerConfig], Body()]


@router.post(
    "/workspaces/{workspace_id}/sessions/{session_id}/peers",
    response_model=schemas.SessionOut,
    tags=["sessions"],
    summary="Add peers to a session ({peer_id: {observe_me?, observe_others?}})",
)
async def add_session_peers(
    request: Request,
    workspace_id: WorkspaceId,
    session_id: SessionId,
    peers: PeerMap,
    principal: CurrentPrincipal,
) -> schemas.SessionOut:
    _bounded_peers(peers)
    async with _service(request) as svc:
        await _authorize_session(principal, svc, workspace_id, session_id, write=True)
        return session_out(await svc.add_peers(workspace_id, session_id, peers))


@router.put(
    "/workspaces/{workspace_id}/sessions/{session_id}/peers",
    response_model=schemas.SessionOut,
    tags=["sessions"],
    summary="Set the exact members of a session",
)
async def set_session_peers(
    request: Request,
    workspace_id: WorkspaceId,
    session_id: SessionId,
    peers: PeerMap,
    principal: CurrentPrincipal,
) -> schemas.SessionOut:
    _bounded_peers(peers)
    async with _service(request) as svc:
        await _authorize_session(principal, svc, workspace_id, session_id, write=True)
        return session_out(await svc.set_peers(workspace_id, session_id, peers))


@router.delete(
    "/workspaces/{workspace_id}/sessions/{session_id}/peers",
    response_model=schemas.SessionOut,
    tags=["sessions"],
    summary="Remove peers from a session (body: list of peer ids)",
)
async def remove_session_peers(
    request: Request,
    workspace_id: WorkspaceId,
    session_id: SessionId,
    peer_ids: Annotated[list[ResourceId], Body(max_length=1000)],
    principal: CurrentPrincipal,
) -> schemas.SessionOut:
    async with _service(request) as svc:
        await _authorize_session(principal, svc, workspace_id, session_id, write=True)
        return session_out(await svc.remove_peers(workspace_id, session_id, peer_ids))


@router.get(
    "/workspaces/{workspace_id}/sessions/{session_id}/peers",
    response_model=Page[schemas.PeerOut],
    tags=["sessions"],
)
async def get_session_peers(
    request: Request,
    workspace_id: WorkspaceId,
    session_id: SessionId,
    principal: CurrentPrincipal,
    paging: PagingParams,
) -> dict[str, Any]:
    async with _service(request) as svc:
        await _authorize_session(principal, svc, workspace_id, session_id, write=False)
        result = await svc.session_peers(
            workspace_id, session_id, page=paging.page, size=paging.size
        )
    return _page(result, peer_out_for(request))


@router.get(
    "/workspaces/{workspace_id}/sessions/{session_id}/peers/{peer_id}/config",
    response_model=schemas.SessionPeerConfig,
    tags=["sessions"],
)
async def get_session_peer_config(
    request: Request,
    workspace_id: WorkspaceId,
    session_id: SessionId,
    peer_id: PeerId,
    principal: CurrentPrincipal,
) -> dict[str, Any]:
    async with _service(request) as svc:
        await _authorize_session(principal, svc, workspace_id, session_id, write=False)
        return await svc.get_peer_config(workspace_id, session_id, peer_id)


@router.put(
    "/workspaces/{workspace_id}/sessions/{session_id}/peers/{peer_id}/config",
    response_model=schemas.SessionPeerConfig,
    tags=["sessions"],
)
async def set_session_peer_config(
    request: Request,
    workspace_id: WorkspaceId,
    session_id: SessionId,
    peer_id: PeerId,
    body: schemas.SessionPeerConfig,
    principal: CurrentPrincipal,
) -> dict[str, Any]:
    async with _service(request) as svc:
        await _authorize_session(principal, svc, workspace_id, session_id, write=True)
        return await svc.set_peer_config(workspace_id, session_id, peer_id, body)


def _bounded_peers(peers: dict[str, Any]) -> None:
    if len(peers) > 1000:
        raise ValidationError("At most 1000 peers per request")


# -- messages ------------------------------------------------------------------------------
MESSAGES = "/workspaces/{workspace_id}/sessions/{session_id}/messages"


@router.post(
    MESSAGES,
    response_model=list[MessageOut],
    status_code=status.HTTP_201_CREATED,
    tags=["messages"],
    summary="Add 1-100 messages; authors join the session automatically",
)
async def create_messages(
    request: Request,
    workspace_id: WorkspaceId,
    session_id: SessionId,
    body: schemas.MessageBatch,
    principal: CurrentPrincipal,
) -> list[MessageOut]:
    async with _service(request) as svc:
        await _authorize_session(principal, svc, workspace_id, session_id, write=True)
        stored = await svc.create_messages(workspace_id, session_id, body.messages)
    return [MessageOut.of(m) for m in stored]


_json_object = TypeAdapter(JsonObject)


def _form_json(name: str, raw: str | None) -> dict[str, Any] | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"Form field '{name}' is not valid JSON: {exc.msg}") from exc
    try:
        return _json_object.validate_python(value)
    except PydanticValidationError as exc:
        raise ValidationError(
            f"Form field '{name}' must be a JSON object: {exc.errors()[0]['msg']}"
        ) from exc


@router.post(
    f"{MESSAGES}/upload",
    response_model=list[MessageOut],
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(415),
    tags=["messages"],
    summary="Upload a text, markdown, JSON or PDF file as messages",
)
async def upload_file(
    request: Request,
    workspace_id: WorkspaceId,
    session_id: SessionId,
    principal: CurrentPrincipal,
    file: Annotated[UploadFile, File()],
    peer_id: Annotated[
        str, Form(min_length=1, max_length=RESOURCE_ID_MAX, pattern=RESOURCE_ID_PATTERN)
    ],
    metadata: Annotated[str | None, Form()] = None,
    configuration: Annotated[str | None, Form()] = None,
    created_at: Annotated[str | None, Form()] = None,
) -> list[MessageOut]:
    state: IngestState = request.app.state.ingest
    async with _service(request) as svc:  # authorise before reading and parsing the file
        await _authorize_session(principal, svc, workspace_id, session_id, write=True)
    data = await file.read(state.limits.max_upload_bytes + 1)
    if len(data) > state.limits.max_upload_bytes:
        raise PayloadTooLargeError(
            f"File too large; the limit is {state.limits.max_upload_bytes} bytes"
        )
    meta = _form_json("metadata", metadata)
    config = _form_json("configuration", configuration)
    when: datetime | None = parse_created_at(created_at)
    try:
        chunks = split_upload(
            filename=file.filename,
            content_type=file.content_type,
            data=data,
            max_chars=state.limits.max_message_chars,
        )
    except UnsupportedFileType as exc:
        raise UnsupportedMediaTypeError(str(exc)) from exc
    except UnreadableFile as exc:
        raise BadRequestError(str(exc)) from exc
    try:
        messages = [
            schemas.MessageCreate(
                content=chunk,
                peer_id=peer_id,
                metadata=meta,
                configuration=config,
                created_at=when,
            )
            for chunk in chunks
        ]
    except PydanticValidationError as exc:
        raise ValidationError(f"Invalid upload fields: {exc.errors()[0]['msg']}") from exc
    stored: list[Message] = []
    async with _service(request) as svc:
        await _authorize_session(principal, svc, workspace_id, session_id, write=True)
        limit = state.limits.max_messages_per_batch
        for start in range(0, len(messages), limit):
            stored.extend(
                await svc.create_messages(workspace_id, session_id, messages[start : start + limit])
            )
    return [MessageOut.of(m) for m in stored]


@router.post(f"{MESSAGES}/list", response_model=Page[MessageOut], tags=["messages"])
async def list_messages(
    request: Request,
    workspace_id: WorkspaceId,
    session_id: SessionId,
    principal: CurrentPrincipal,
    paging: PagingParams,
    body: ListRequest | None = None,
) -> dict[str, Any]:
    async with _service(request) as svc:
        await _authorize_session(principal, svc, workspace_id, session_id, write=False)
        result = await svc.list_messages(
            workspace_id,
            session_id,
            _filters(body),
            page=paging.page,
            size=paging.size,
            reverse=paging.reverse,
        )
    return _page(result, MessageOut.of)


@router.get(f"{MESSAGES}/{{message_id}}", response_model=MessageOut, tags=["messages"])
async def get_message(
    request: Request,
    workspace_id: WorkspaceId,
    session_id: SessionId,
    message_id: ObjectId,
    principal: CurrentPrincipal,
) -> MessageOut:
    async with _service(request) as svc:
        await _authorize_session(principal, svc, workspace_id, session_id, write=False)
        return MessageOut.of(await svc.get_message(workspace_id, session_id, message_id))


@router.put(f"{MESSAGES}/{{message_id}}", response_model=MessageOut, tags=["messages"])
async def update_message(
    request: Request,
    workspace_id: WorkspaceId,
    session_id: SessionId,
    message_id: ObjectId,
    body: schemas.MessageUpdate,
    principal: CurrentPrincipal,
) -> MessageOut:
    async with _service(request) as svc:
        await _authorize_session(principal, svc, workspace_id, session_id, write=True)
        return MessageOut.of(
            await svc.update_message(workspace_id, session_id, message_id, body.metadata)
        )


# -- conclusions ---------------------------------------------------------------------------
CONCLUSIONS = "/workspaces/{workspace_id}/conclusions"


@router.post(
    CONCLUSIONS,
    response_model=list[ConclusionOut],
    status_code=status.HTTP_201_CREATED,
    tags=["conclusions"],
)
async def create_conclusions(
    request: Request,
    workspace_id: WorkspaceId,
    body: schemas.ConclusionBatch,
    principal: CurrentPrincipal,
) -> list[ConclusionOut]:
    principal.require_workspace(workspace_id)
    async with _service(request) as svc:
        created = await svc.create_conclusions(workspace_id, body.conclusions)
    return [ConclusionOut.of(c) for c in created]


@router.post(f"{CONCLUSIONS}/list", response_model=Page[ConclusionOut], tags=["conclusions"])
async def list_conclusions(
    request: Request,
    workspace_id: WorkspaceId,
    principal: CurrentPrincipal,
    paging: PagingParams,
    body: ListRequest | None = None,
) -> dict[str, Any]:
    principal.require_workspace(workspace_id)
    async with _service(request) as svc:
        result = await svc.list_conclusions(
            workspace_id,
            _filters(body),
            page=paging.page,
            size=paging.size,
            reverse=paging.reverse,
        )
    return _page(result, ConclusionOut.of)


@router.get(f"{CONCLUSIONS}/{{conclusion_id}}", response_model=ConclusionOut, tags=["conclusions"])
async def get_conclusion(
    request: Request,
    workspace_id: WorkspaceId,
    conclusion_id: ObjectId,
    principal: CurrentPrincipal,
) -> ConclusionOut:
    principal.require_workspace(workspace_id)
    async with _service(request) as svc:
        return ConclusionOut.of(await svc.get_conclusion(workspace_id, conclusion_id))


@router.delete(
    f"{CONCLUSIONS}/{{conclusion_id}}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["conclusions"],
)
async def delete_conclusion(
    request: Request,
    workspace_id: WorkspaceId,
    conclusion_id: ObjectId,
    principal: CurrentPrincipal,
) -> Response:
    principal.require_workspace(workspace_id)
    async with _service(request) as svc:
        await svc.delete_conclusion(workspace_id, conclusion_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- webhooks ------------------------------------------------------------------------------
WEBHOOKS = "/workspaces/{workspace_id}/webhooks"


@router.post(
    WEBHOOKS,
    response_model=schemas.WebhookOut,
    responses={**created_or_existing(schemas.WebhookOut), **error_responses(409)},
    tags=["webhooks"],
)
async def get_or_create_webhook(
    request: Request,
    response: Response,
    workspace_id: WorkspaceId,
    body: schemas.WebhookCreate,
    principal: CurrentPrincipal,
) -> schemas.WebhookOut:
    principal.require_workspace(workspace_id)
    async with _service(request) as svc:
        outcome = await svc.get_or_create_webhook(workspace_id, body.url)
    response.status_code = status.HTTP_201_CREATED if outcome.created else status.HTTP_200_OK
    return webhook_out(outcome.value)


@router.get(WEBHOOKS, response_model=Page[schemas.WebhookOut], tags=["webhooks"])
async def list_webhooks(
    request: Request, workspace_id: WorkspaceId, principal: CurrentPrincipal
) -> dict[str, Any]:
    principal.require_workspace(workspace_id)
    async with _service(request) as svc:
        hooks = await svc.list_webhooks(workspace_id)
    size = max(len(hooks), 1)
    return _page(PageResult(items=hooks, total=len(hooks), page=1, size=size), webhook_out)


@router.get(f"{WEBHOOKS}/test", status_code=status.HTTP_202_ACCEPTED, tags=["webhooks"])
async def test_webhooks(
    request: Request, workspace_id: WorkspaceId, principal: CurrentPrincipal
) -> dict[str, str]:
    principal.require_workspace(workspace_id)
    async with _service(request) as svc:
        await svc.test_webhooks(workspace_id)
    return {"status": "queued"}


@router.delete(
    f"{WEBHOOKS}/{{webhook_id}}", status_code=status.HTTP_204_NO_CONTENT, tags=["webhooks"]
)
async def delete_webhook(
    request: Request, workspace_id: WorkspaceId, webhook_id: ObjectId, principal: CurrentPrincipal
) -> Response:
    principal.require_workspace(workspace_id)
    async with _service(request) as svc:
        await svc.delete_webhook(workspace_id, webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- keys ----------------------------------------------------------------------------------
@router.post("/keys", response_model=schemas.KeyOut, tags=["keys"])
async def create_key(
    request: Request,
    principal: CurrentPrincipal,
    workspace_id: Annotated[ResourceId | None, Query()] = None,
    peer_id: Annotated[ResourceId | None, Query()] = None,
    session_id: Annotated[ResourceId | None, Query()] = None,
    expires_at: Annotated[datetime | None, Query()] = None,
) -> schemas.KeyOut:
    principal.require_admin()
    state: IngestState = request.app.state.ingest
    if not (workspace_id or peer_id or session_id):
        raise ValidationError("Name at least one scope: workspace_id, peer_id or session_id")
    if (peer_id or session_id) and not workspace_id:
        raise ValidationError("peer_id and session_id keys also need workspace_id")
    if peer_id and session_id:
        raise ValidationError("A key is scoped to a peer or a session, not both")
    key = create_jwt(
        state.auth.jwt_secret.get_secret_value(),
        workspace_id=workspace_id,
        peer_id=peer_id,
        session_id=session_id,
        expires_at=expires_at,
    )
    return schemas.KeyOut(key=key)
