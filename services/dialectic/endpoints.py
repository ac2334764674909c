"""Dialectic HTTP route: parse, authorise, call :class:`DialecticService`, map the result.

``POST /v3/workspaces/{w}/peers/{p}/chat`` answers as JSON ``{"content", "citations",
"evidence"?}`` or, with ``"stream": true``, as ``text/event-stream``::

    data: {"delta": {"content": "<chunk>"}, "done": false}\\n\\n      (repeated)
    data: {"done": true}\\n\\n                                         (last)

The concatenated chunks equal the ``content`` of the same request without streaming. With
``include_evidence`` the last event also carries ``"evidence"``. Failures before the first
chunk are ordinary HTTP errors; a failure after it ends the stream with
``data: {"error": "<message>", "done": true}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.common.db import unit_of_work
from libs.common.errors import RapportError, ValidationError
from libs.common.http import API_ERRORS, CurrentPrincipal, PeerId, WorkspaceId, sse_responses
from libs.common.reasoning.port import Reasoner
from libs.common.retrieval.hybrid import HybridRetriever
from services.dialectic import schemas
from services.dialectic.service import (
    ChatAnswer,
    ChatQuery,
    DialecticAnswerer,
    DialecticService,
    PreparedChat,
)

log = logging.getLogger(__name__)

SCOPES_NOT_SUPPORTED = (
    "scope is not supported yet: Rapport has no scopes. Restrict a chat to sessions with "
    'session_id or filters: {"session_id": [...]} instead.'
)


@dataclass(frozen=True)
class DialecticState:
    """What the route needs, placed on ``app.state.dialectic`` by the composition root."""

    session_factory: async_sessionmaker[AsyncSession]
    retriever: HybridRetriever
    reasoner: Reasoner


@asynccontextmanager
async def _service(request: Request) -> AsyncIterator[DialecticService]:
    state: DialecticState = request.app.state.dialectic
    async with unit_of_work(state.session_factory) as db:
        yield DialecticService(db, reasoner=state.reasoner)


def _answerer(request: Request) -> DialecticAnswerer:
    state: DialecticState = request.app.state.dialectic
    return DialecticAnswerer(retriever=state.retriever, reasoner=state.reasoner)


def _evidence(prepared: PreparedChat) -> schemas.EvidenceOut:
    conclusions = [
        schemas.EvidenceConclusion(
            id=c.id,
            level=c.level,
            content=c.content,
            created_at=c.created_at,
            session_id=c.session_id,
            observer_id=c.observer_id,
            observed_id=c.observed_id,
            source_ids=[str(s) for s in c.source_ids],
        )
        for c in prepared.conclusions.values()
    ]
    messages = [
        schemas.EvidenceMessage(
            id=m.id, session_id=m.session_id, peer_id=m.peer_id, created_at=m.created_at
        )
        for m in prepared.messages.values()
    ]
    return schemas.EvidenceOut(conclusions=conclusions, messages=messages)


def _frame(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


async def _events(
    first: str | None,
    rest: AsyncIterator[str],
    done: dict[str, Any],
) -> AsyncIterator[bytes]:
    if first is not None:
        if first:
            yield _frame({"delta": {"content": first}, "done": False})
        try:
            async for chunk in rest:
                if chunk:
                    yield _frame({"delta": {"content": chunk}, "done": False})
        except RapportError as exc:
            log.warning("chat stream failed after it started: %s", exc.detail)
            yield _frame({"error": exc.detail, "done": True})
            return
    yield _frame(done)


router = APIRouter(prefix="/v3", responses=API_ERRORS)


@router.post(
    "/workspaces/{workspace_id}/peers/{peer_id}/chat",
    response_model=schemas.ChatResponse,
    tags=["peers"],
    summary="Ask a peer's memory a question (JSON, or SSE with stream: true)",
    responses=sse_responses(
        schemas.ChatStreamEvent,
        'With stream: true, data: {"delta": {"content": "…"}, "done": false} events, then '
        'data: {"done": true} (with "evidence" when asked for, "error" if the answer failed '
        "after it started).",
    ),
)
async def chat(
    request: Request,
    workspace_id: WorkspaceId,
    peer_id: PeerId,
    body: schemas.ChatRequest,
    principal: CurrentPrincipal,
) -> Any:
    principal.require_peer(workspace_id, peer_id)
    if body.scope is not None:
        raise ValidationError(SCOPES_NOT_SUPPORTED)
    sessions = body.session_ids()
    query = ChatQuery(
        workspace_id=workspace_id,
        peer_id=peer_id,
        query=body.query,
        target=body.target,
        session_ids=tuple(sessions) if sessions is not None else None,
        reasoning_level=body.reasoning_level,
        response_format=body.response_format,
    )
    async with _service(request) as svc:
        svc.check_supported(query)
        if principal.peer_id is not None:
            for session_id in sessions or ():

                async def member(pid: str, session_id: str = session_id) -> bool:
                    return await svc.is_member(workspace_id, session_id, pid)

                await principal.require_session(
                    workspace_id, session_id, write=False, is_member=member
                )
        plan = await svc.plan(query)

    answerer = _answerer(request)
    prepared = await answerer.gather(plan)
    if body.stream:
        chunks = answerer.stream(prepared)
        # The first chunk is awaited here so that a failure before any output is a real HTTP
        # error (the SDK maps statuses; errors inside an SSE body are invisible to it).
        first = await anext(chunks, None)
        done: dict[str, Any] = {"done": True}
        if body.include_evidence:
            done["evidence"] = _evidence(prepared).model_dump(mode="json")
        return StreamingResponse(
            _events(first, chunks, done),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    answer: ChatAnswer = await answerer.answer(prepared)
    response = schemas.ChatResponse(
        content=answer.content,
        citations=schemas.Citations(messages=answer.message_ids, conclusions=answer.conclusion_ids),
        evidence=_evidence(prepared) if body.include_evidence else None,
    )
    payload = response.model_dump(mode="json")
    if not body.include_evidence:
        payload.pop("evidence")
    return JSONResponse(payload)
