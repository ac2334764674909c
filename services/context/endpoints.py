"""Context HTTP routes: parse, authorise (perspective included), call ContextService."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.common.auth import Principal
from libs.common.db import unit_of_work
from libs.common.errors import ForbiddenError, ValidationError
from libs.common.http import API_ERRORS, CurrentPrincipal, PeerId, SessionId, WorkspaceId
from libs.common.models import Summary
from libs.common.retrieval.hybrid import HybridRetriever, MessageScope
from libs.common.wire import ConclusionOut, MessageOut, ResourceId
from services.context import schemas
from services.context.service import ContextService, RepresentationOptions


@dataclass(frozen=True)
class ContextState:
    """What the routes need, placed on ``app.state.context`` by the composition root."""

    session_factory: async_sessionmaker[AsyncSession]
    retriever: HybridRetriever


@asynccontextmanager
async def _service(request: Request) -> AsyncIterator[ContextService]:
    state: ContextState = request.app.state.context
    async with unit_of_work(state.session_factory) as db:
        yield ContextService(db, state.retriever)


OptionalId = Annotated[ResourceId | None, Query()]


def summary_out(s: Summary | None) -> schemas.SummaryOut | None:
    if s is None:
        return None
    return schemas.SummaryOut(
        content=s.content,
        message_id=s.message_id,
        summary_type=s.summary_type,
        created_at=s.created_at,
        token_count=s.token_count,
    )


async def _authorize_session(
    principal: Principal, svc: ContextService, workspace_id: str, session_id: str
) -> None:
    async def member(peer_id: str) -> bool:
        return await svc.is_member(workspace_id, session_id, peer_id)

    await principal.require_session(workspace_id, session_id, write=False, is_member=member)


def _own_perspective(principal: Principal, requested: str | None) -> str | None:
    """A peer key reads only from its own perspective."""
    if principal.peer_id is None:
        return requested
    if requested is not None and requested != principal.peer_id:
        raise ForbiddenError(
            f"A key of peer '{principal.peer_id}' cannot read from peer '{requested}'s perspective"
        )
    return principal.peer_id


router = APIRouter(prefix="/v3", responses=API_ERRORS)


@router.get(
    "/workspaces/{workspace_id}/sessions/{session_id}/context",
    response_model=schemas.SessionContextOut,
    tags=["sessions"],
    summary="Summary + newest messages + representation + card, all within `tokens`",
)
async def session_context(
    request: Request,
    workspace_id: WorkspaceId,
    session_id: SessionId,
    principal: CurrentPrincipal,
    tokens: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    summary: bool = True,
    peer_target: OptionalId = None,
    peer_perspective: OptionalId = None,
    search_query: Annotated[str | None, Query(min_length=1, max_length=10_000)] = None,
    search_top_k: Annotated[int | None, Query(ge=1, le=100)] = None,
    search_max_distance: Annotated[float | None, Query(ge=0, le=1)] = None,
    include_most_frequent: bool = False,
    max_conclusions: Annotated[int | None, Query(ge=1, le=100)] = None,
    limit_to_session: bool = False,
    scope: Annotated[
        str | None, Query(description="Honcho scopes: not supported yet (422 when given).")
    ] = None,
    sessions: Annotated[
        list[str] | None,
        Query(description="Honcho's session allowlist: not supported yet (422 when given)."),
    ] = None,
) -> schemas.SessionContextOut:
    if peer_perspective is not None and peer_target is None:
        raise ValidationError("peer_perspective needs peer_target")
    # Refused rather than ignored: ignoring them would widen what the caller asked to read.
    if scope is not None:
        raise ValidationError(schemas.SCOPES_NOT_SUPPORTED)
    if sessions is not None:
        raise ValidationError(schemas.SESSIONS_NOT_SUPPORTED)
    # A peer key sees only what it witnessed, and its view of the target.
    perspective = _own_perspective(principal, peer_perspective)
    async with _service(request) as svc:
        await _authorize_session(principal, svc, workspace_id, session_id)
        ctx = await svc.session_context(
            workspace_id,
            session_id,
            tokens=tokens,
            summary=summary,
            peer_target=peer_target,
            peer_perspective=perspective if peer_target is not None else None,
            witness=perspective,
            options=RepresentationOptions(
                search_query=search_query,
                search_top_k=search_top_k,
                search_max_distance=search_max_distance,
                include_most_frequent=include_most_frequent,
                max_conclusions=max_conclusions,
            ),
            limit_to_session=limit_to_session,
        )
    return schemas.SessionContextOut(
        id=ctx.session_id,
        messages=[MessageOut.of(m) for m in ctx.messages],
        summary=summary_out(ctx.summary),
        peer_representation=ctx.representation,
        peer_card=ctx.card,
    )


@router.get(
    "/workspaces/{workspace_id}/sessions/{session_id}/summaries",
    response_model=schemas.SummariesOut,
    tags=["sessions"],
)
async def session_summaries(
    request: Request, workspace_id: WorkspaceId, session_id: SessionId, principal: CurrentPrincipal
) -> schemas.SummariesOut:
    async with _service(request) as svc:
        await _authorize_session(principal, svc, workspace_id, session_id)
        short, long = await svc.summaries(workspace_id, session_id, principal.peer_id)
    return schemas.SummariesOut(
        id=session_id, short_summary=summary_out(short), long_summary=summary_out(long)
    )


@router.post(
    "/workspaces/{workspace_id}/peers/{peer_id}/representation",
    response_model=schemas.RepresentationOut,
    tags=["peers"],
)
async def peer_representation(
    request: Request,
    workspace_id: WorkspaceId,
    peer_id: PeerId,
    principal: CurrentPrincipal,
    body: schemas.RepresentationRequest | None = None,
) -> schemas.RepresentationOut:
    principal.require_peer(workspace_id, peer_id)
    body = body or schemas.RepresentationRequest()
    if body.scope is not None:
        raise ValidationError(schemas.SCOPES_NOT_SUPPORTED)
    if body.filters is not None:
        raise ValidationError(schemas.SESSIONS_NOT_SUPPORTED)
    async with _service(request) as svc:
        await svc.require_peer(workspace_id, peer_id)
        target = body.target or peer_id
        if body.target is not None:
            await svc.require_peer(workspace_id, target)
        if body.session_id is not None:
            await svc.require_session(workspace_id, body.session_id)
        text = await svc.representation(
            workspace_id,
            peer_id,
            target,
            RepresentationOptions(
                search_query=body.search_query,
                search_top_k=body.search_top_k,
                search_max_distance=body.search_max_distance,
                include_most_frequent=bool(body.include_most_frequent),
                max_conclusions=body.max_conclusions,
                session_id=body.session_id,
            ),
        )
    return schemas.RepresentationOut(representation=text)


@router.get(
    "/workspaces/{workspace_id}/peers/{peer_id}/card",
    response_model=schemas.PeerCardOut,
    tags=["peers"],
)
async def get_peer_card(
    request: Request,
    workspace_id: WorkspaceId,
    peer_id: PeerId,
    principal: CurrentPrincipal,
    target: OptionalId = None,
) -> schemas.PeerCardOut:
    principal.require_peer(workspace_id, peer_id)
    async with _service(request) as svc:
        await svc.require_peer(workspace_id, peer_id)
        if target is not None:
            await svc.require_peer(workspace_id, target)
        return schemas.PeerCardOut(
            peer_card=await svc.card(workspace_id, peer_id, target or peer_id)
        )


@router.put(
    "/workspaces/{workspace_id}/peers/{peer_id}/card",
    response_model=schemas.PeerCardOut,
    tags=["peers"],
    summary="Replace the card (overrides what the deriver built)",
)
async def set_peer_card(
    request: Request,
    workspace_id: WorkspaceId,
    peer_id: PeerId,
    body: schemas.PeerCardIn,
    principal: CurrentPrincipal,
    target: OptionalId = None,
) -> schemas.PeerCardOut:
    principal.require_peer(workspace_id, peer_id)
    async with _service(request) as svc:
        await svc.require_peer(workspace_id, peer_id)
        if target is not None:
            await svc.require_peer(workspace_id, target)
        facts = await svc.set_card(workspace_id, peer_id, target or peer_id, body.peer_card)
    return schemas.PeerCardOut(peer_card=facts or None)


@router.get(
    "/workspaces/{workspace_id}/peers/{peer_id}/context",
    response_model=schemas.PeerContextOut,
    tags=["peers"],
)
async def peer_context(
    request: Request,
    workspace_id: WorkspaceId,
    peer_id: PeerId,
    principal: CurrentPrincipal,
    target: OptionalId = None,
    search_query: Annotated[str | None, Query(min_length=1, max_length=10_000)] = None,
    search_top_k: Annotated[int | None, Query(ge=1, le=100)] = None,
    search_max_distance: Annotated[float | None, Query(ge=0, le=1)] = None,
    include_most_frequent: bool = False,
    max_conclusions: Annotated[int | None, Query(ge=1, le=100)] = None,
) -> schemas.PeerContextOut:
    principal.require_peer(workspace_id, peer_id)
    async with _service(request) as svc:
        await svc.require_peer(workspace_id, peer_id)
        observed = target or peer_id
        if target is not None:
            await svc.require_peer(workspace_id, target)
        text = await svc.representation(
            workspace_id,
            peer_id,
            observed,
            RepresentationOptions(
                search_query=search_query,
                search_top_k=search_top_k,
                search_max_distance=search_max_distance,
                include_most_frequent=include_most_frequent,
                max_conclusions=max_conclusions,
            ),
        )
        card = await svc.card(workspace_id, peer_id, observed)
    return schemas.PeerContextOut(
        peer_id=peer_id, target_id=observed, representation=text or None, peer_card=card
    )


@router.post(
    "/workspaces/{workspace_id}/search", response_model=list[MessageOut], tags=["workspaces"]
)
async def search_workspace(
    request: Request,
    workspace_id: WorkspaceId,
    body: schemas.SearchRequest,
    principal: CurrentPrincipal,
) -> list[MessageOut]:
    principal.require_workspace(workspace_id)
    async with _service(request) as svc:
        await svc.require_workspace(workspace_id)
        if body.peer_perspective is not None:
            await svc.require_peer(workspace_id, body.peer_perspective)
        found = await svc.search_messages(
            body.query,
            MessageScope(workspace_id=workspace_id, witness=body.peer_perspective),
            body.filters,
            body.limit,
        )
    return [MessageOut.of(m) for m in found]


@router.post(
    "/workspaces/{workspace_id}/sessions/{session_id}/search",
    response_model=list[MessageOut],
    tags=["sessions"],
)
async def search_session(
    request: Request,
    workspace_id: WorkspaceId,
    session_id: SessionId,
    body: schemas.SearchRequest,
    principal: CurrentPrincipal,
) -> list[MessageOut]:
    witness = _own_perspective(principal, body.peer_perspective)
    async with _service(request) as svc:
        await _authorize_session(principal, svc, workspace_id, session_id)
        await svc.require_session(workspace_id, session_id)
        found = await svc.search_messages(
            body.query,
            MessageScope(workspace_id=workspace_id, session_id=session_id, witness=witness),
            body.filters,
            body.limit,
        )
    return [MessageOut.of(m) for m in found]


@router.post(
    "/workspaces/{workspace_id}/peers/{peer_id}/search",
    response_model=list[MessageOut],
    tags=["peers"],
    summary="Search the messages this peer sent",
)
async def search_peer(
    request: Request,
    workspace_id: WorkspaceId,
    peer_id: PeerId,
    body: schemas.SearchRequest,
    principal: CurrentPrincipal,
) -> list[MessageOut]:
    principal.require_peer(workspace_id, peer_id)
    witness = _own_perspective(principal, body.peer_perspective)
    async with _service(request) as svc:
        await svc.require_peer(workspace_id, peer_id)
        found = await svc.search_messages(
            body.query,
            MessageScope(workspace_id=workspace_id, author=peer_id, witness=witness),
            body.filters,
            body.limit,
        )
    return [MessageOut.of(m) for m in found]


@router.post(
    "/workspaces/{workspace_id}/conclusions/query",
    response_model=list[ConclusionOut],
    tags=["conclusions"],
    summary="Semantic + keyword search over one view's conclusions",
)
async def query_conclusions(
    request: Request,
    workspace_id: WorkspaceId,
    body: schemas.ConclusionQueryRequest,
    principal: CurrentPrincipal,
) -> list[ConclusionOut]:
    observer = body.filters.get("observer_id")
    if principal.peer_id is not None and observer == principal.peer_id:
        principal.require_peer(workspace_id, principal.peer_id)
    else:
        principal.require_workspace(workspace_id)
    async with _service(request) as svc:
        found = await svc.query_conclusions(
            workspace_id, body.query, body.filters, body.top_k, body.distance
        )
    return [ConclusionOut.of(c) for c in found]


@router.get(
    "/workspaces/{workspace_id}/views",
    response_model=schemas.ViewsOut,
    tags=["workspaces"],
    summary="Who knows what about whom: every observer → observed view and its size "
    "(Rapport addition)",
)
async def list_views(
    request: Request,
    workspace_id: WorkspaceId,
    principal: CurrentPrincipal,
    observer_id: OptionalId = None,
) -> schemas.ViewsOut:
    if principal.peer_id is not None:
        # A peer key sees the views it holds, nobody else's.
        principal.require_peer(workspace_id, principal.peer_id)
        observer_id = _own_perspective(principal, observer_id)
    else:
        principal.require_workspace(workspace_id)
    async with _service(request) as svc:
        found = await svc.views(workspace_id, observer_id)
    return schemas.ViewsOut(
        items=[
            schemas.ViewOut(observer_id=o, observed_id=d, conclusions=n, card_facts=c)
            for o, d, n, c in found
        ]
    )
