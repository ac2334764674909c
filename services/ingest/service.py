"""Ingest domain logic: get-or-create semantics, membership windows, message numbering and the
events each write commits with. Imports neither FastAPI nor FastStream; never commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common import outbox
from libs.common.broker import StreamLayout
from libs.common.errors import ConflictError, NotFoundError, ValidationError
from libs.common.events import (
    EVENTS_BY_TYPE,
    ConclusionDeleted,
    ConclusionsCreated,
    DreamScheduled,
    Event,
    MessageCreated,
    SessionDeleted,
    WebhookTestRequested,
    Witness,
    WorkspaceDeleted,
)
from libs.common.filters import build_filter
from libs.common.ids import event_id as new_event_id
from libs.common.ids import nanoid
from libs.common.models import (
    Conclusion,
    DeadLetter,
    Message,
    Peer,
    Session,
    WebhookEndpoint,
    Workspace,
)
from libs.common.pagination import PageResult
from libs.common.settings import LimitsSettings
from libs.common.tokens import count_tokens_many
from libs.common.webhooks import validate_webhook_url
from libs.common.wire import as_utc
from services.ingest import schemas
from services.ingest.repository import (
    CONCLUSION_FIELDS,
    MESSAGE_FIELDS,
    PEER_FIELDS,
    SESSION_FIELDS,
    WORKSPACE_FIELDS,
    IngestRepository,
    Member,
)

MAX_WEBHOOKS_PER_WORKSPACE = 10


def effective_observe_me(member: Member) -> bool:
    """Session-level setting wins over the peer default; observed unless switched off."""
    value = member.session_configuration.get("observe_me")
    if value is None:
        value = member.peer_configuration.get("observe_me")
    return True if value is None else bool(value)


def effective_observe_others(member: Member) -> bool:
    """Session-level setting wins over the peer default; off unless switched on."""
    value = member.session_configuration.get("observe_others")
    if value is None:
        value = member.peer_configuration.get("observe_others")
    return False if value is None else bool(value)


@dataclass(frozen=True)
class Created:
    """A get-or-create outcome."""

    value: Any
    created: bool


def _dump(model: Any) -> dict[str, Any]:
    return {} if model is None else dict(model.model_dump(mode="json", exclude_unset=True))


class IngestService:
    def __init__(
        self,
        db: AsyncSession,
        *,
        layout: StreamLayout,
        limits: LimitsSettings,
        allow_private_webhooks: bool = False,
        backpressure: outbox.OutboxBackpressure | None = None,
    ) -> None:
        self.db = db
        self.repo = IngestRepository(db)
        self.layout = layout
        self.limits = limits
        self.allow_private_webhooks = allow_private_webhooks
        self.backpressure = backpressure

    async def _publish(self, *events: Event) -> None:
        await outbox.enqueue(self.db, self.layout, events)

    # -- workspaces ------------------------------------------------------------------------
    async def get_or_create_workspace(self, body: schemas.WorkspaceCreate) -> Created:
        created = await self.repo.insert_workspace(
            body.id, body.metadata or {}, _dump(body.configuration)
        )
        if created is not None:
            return Created(created, True)
        existing = await self.repo.get_workspace(body.id)
        if existing is None:  # deleted between the two statements
            raise ConflictError(f"Workspace '{body.id}' is being deleted; retry")
        return Created(existing, False)

    async def require_workspace(self, workspace_id: str) -> Workspace:
        ws = await self.repo.get_workspace(workspace_id)
        if ws is None:
            raise NotFoundError(f"Workspace '{workspace_id}' not found")
        return ws

    async def update_workspace(self, workspace_id: str, body: schemas.WorkspaceUpdate) -> Workspace:
        """Update (or create: Honcho clients PUT before they ever POST a workspace)."""
        ws = await self.repo.get_workspace(workspace_id, lock=True)
        if ws is None:
            inserted = await self.repo.insert_workspace(
                workspace_id, body.metadata or {}, _dump(body.configuration)
            )
            if inserted is not None:
                return inserted
            ws = await self.require_workspace(workspace_id)
        if body.metadata is not None:
            ws.metadata_ = body.metadata
        if body.configuration is not None:
            ws.configuration = _dump(body.configuration)
        await self.db.flush()
        return ws

    async def list_workspaces(
        self, filters: dict[str, Any] | None, *, page: int, size: int, reverse: bool
    ) -> PageResult[Workspace]:
        cond = build_filter(filters, WORKSPACE_FIELDS)
        return await self.repo.list_workspaces(cond, page=page, size=size, reverse=reverse)

    async def delete_workspace(self, workspace_id: str) -> None:
        ws = await self.repo.get_workspace(workspace_id, lock=True)
        if ws is None:
            raise NotFoundError(f"Workspace '{workspace_id}' not found")
        active = await self.repo.count_active_sessions(workspace_id)
        if active:
            raise ConflictError(
                f"Workspace '{workspace_id}' still has {active} active session(s); "
                "delete them first"
            )
        await self.repo.delete_workspace(workspace_id)
        await self._publish(WorkspaceDeleted(workspace_id=workspace_id))

    # -- peers -----------------------------------------------------------------------------
    async def get_or_create_peer(self, workspace_id: str, body: schemas.PeerCreate) -> Created:
        await self.require_workspace(workspace_id)
        peer = await self.repo.insert_peer(
            workspace_id, body.id, body.metadata or {}, _dump(body.configuration)
        )
        if peer is not None:
            return Created(peer, True)
        return Created(await self.require_peer(workspace_id, body.id), False)

    async def require_peer(self, workspace_id: str, peer_id: str) -> Peer:
        peer = await self.repo.get_peer(workspace_id, peer_id)
        if peer is None:
            if not await self.repo.workspace_exists(workspace_id):
                raise NotFoundError(f"Workspace '{workspace_id}' not found")
            raise NotFoundError(f"Peer '{peer_id}' not found in workspace '{workspace_id}'")
        return peer

    async def update_peer(self, workspace_id: str, peer_id: str, body: schemas.PeerUpdate) -> Peer:
        peer = await self.require_peer(workspace_id, peer_id)
        if body.metadata is not None:
            peer.metadata_ = body.metadata
        if body.configuration is not None:
            peer.configuration = _dump(body.configuration)
        await self.db.flush()
        return peer

    async def list_peers(
        self,
        workspace_id: str,
        filters: dict[str, Any] | None,
        *,
        page: int,
        size: int,
        reverse: bool,
    ) -> PageResult[Peer]:
        cond = build_filter(filters, PEER_FIELDS)
        await self.require_workspace(workspace_id)
        return await self.repo.list_peers(workspace_id, cond, page=page, size=size, reverse=reverse)

    async def peer_sessions(
        self,
        workspace_id: str,
        peer_id: str,
        filters: dict[str, Any] | None,
        *,
        page: int,
        size: int,
        reverse: bool,
    ) -> PageResult[Session]:
        cond = build_filter(filters, SESSION_FIELDS)
        await self.require_peer(workspace_id, peer_id)
        stmt = self.repo.sessions_query(workspace_id, cond).where(
            self.repo.member_of_condition(workspace_id, peer_id)
        )
        return await self.repo.list_sessions(stmt, page=page, size=size, reverse=reverse)

    # -- sessions --------------------------------------------------------------------------
    async def get_or_create_session(
        self, workspace_id: str, body: schemas.SessionCreate
    ) -> Created:
        await self.require_workspace(workspace_id)
        session = await self.repo.insert_session(
            workspace_id, body.id, body.metadata or {}, _dump(body.configuration)
        )
        created = session is not None
        if session is None:
            session = await self.require_session(workspace_id, body.id)
        if body.peers:
            await self.add_peers(workspace_id, body.id, body.peers)
        return Created(session, created)

    async def require_session(
        self, workspace_id: str, session_id: str, *, lock: bool = False
    ) -> Session:
        session = await self.repo.get_session(workspace_id, session_id, lock=lock)
        if session is None:
            if not await self.repo.workspace_exists(workspace_id):
                raise NotFoundError(f"Workspace '{workspace_id}' not found")
            raise NotFoundError(f"Session '{session_id}' not found in workspace '{workspace_id}'")
        return session

    async def update_session(
        self, workspace_id: str, session_id: str, body: schemas.SessionUpdate
    ) -> Session:
        session = await self.require_session(workspace_id, session_id, lock=True)
        await self.repo.update_session(
            session,
            body.metadata,
            _dump(body.configuration) if body.configuration is not None else None,
        )
        return session

    async def list_sessions(
        self,
        workspace_id: str,
        filters: dict[str, Any] | None,
        *,
        page: int,
        size: int,
        reverse: bool,
    ) -> PageResult[Session]:
        cond = build_filter(filters, SESSION_FIELDS)
        await self.require_workspace(workspace_id)
        return await self.repo.list_sessions(
            self.repo.sessions_query(workspace_id, cond), page=page, size=size, reverse=reverse
        )

    async def delete_session(self, workspace_id: str, session_id: str) -> None:
        await self.require_session(workspace_id, session_id, lock=True)
        message_ids = await self.repo.delete_session(workspace_id, session_id)
        await self._publish(
            SessionDeleted(
                workspace_id=workspace_id, session_id=session_id, message_ids=message_ids
            )
        )

    async def clone_session(
        self, workspace_id: str, session_id: str, message_id: str | None
    ) -> Session:
        """Copy a session (its messages up to ``message_id``, its current members) under a
        new id. Copies are not re-derived: the peers already learned from the originals."""
        source = await self.require_session(workspace_id, session_id)
        max_seq: int | None = None
        if message_id is not None:
            cut = await self.repo.get_message(workspace_id, session_id, message_id)
            if cut is None:
                raise NotFoundError(f"Message '{message_id}' not found in session '{session_id}'")
            max_seq = cut.seq
        messages = await self.repo.messages_up_to(workspace_id, session_id, max_seq)
        new_id = nanoid()
        clone = await self.repo.insert_session(
            workspace_id, new_id, dict(source.metadata_), dict(source.configuration)
        )
        assert clone is not None
        members = await self.repo.current_members(workspace_id, session_id)
        await self.repo.join(
            workspace_id,
            new_id,
            {m.peer_id: dict(m.session_configuration) for m in members},
            at_seq=0,
        )
        if messages:
            rows = [
                {
                    "id": nanoid(),
                    "workspace_id": workspace_id,
                    "session_id": new_id,
                    "peer_id": m.peer_id,
                    "seq": i,
                    "content": m.content,
                    "metadata": m.metadata_,
                    "configuration": m.configuration,
                    "token_count": m.token_count,
                    "created_at": m.created_at.isoformat(),
                }
                for i, m in enumerate(messages, start=1)
            ]
            # Authors who have since left still appear in the copy.
            await self.repo.ensure_peers(workspace_id, {m.peer_id for m in messages})
            await self.repo.insert_messages(rows)
            await self.repo.reserve_seqs(workspace_id, new_id, len(rows))
            clone.last_seq = len(rows)
        return clone

    # -- membership ------------------------------------------------------------------------
    async def add_peers(
        self,
        workspace_id: str,
        session_id: str,
        peers: dict[str, schemas.SessionPeerConfig],
    ) -> Session:
        session = await self.require_session(workspace_id, session_id, lock=True)
        await self.repo.ensure_peers(workspace_id, peers)
        await self.repo.join(
            workspace_id,
            session_id,
            # An empty config keeps what a returning member had; a given one replaces it.
            {p: cfg.stored() or None for p, cfg in peers.items()},
            at_seq=session.last_seq,
        )
        return session

    async def set_peers(
        self,
        workspace_id: str,
        session_id: str,
        peers: dict[str, schemas.SessionPeerConfig],
    ) -> Session:
        session = await self.require_session(workspace_id, session_id, lock=True)
        current = {m.peer_id for m in await self.repo.current_members(workspace_id, session_id)}
        await self.repo.leave(
            workspace_id, session_id, sorted(current - set(peers)), at_seq=session.last_seq
        )
        await self.repo.ensure_peers(workspace_id, peers)
        await self.repo.join(
            workspace_id,
            session_id,
            # An empty config keeps what a returning member had; a given one replaces it.
            {p: cfg.stored() or None for p, cfg in peers.items()},
            at_seq=session.last_seq,
        )
        return session

    async def remove_peers(
        self, workspace_id: str, session_id: str, peer_ids: list[str]
    ) -> Session:
        session = await self.require_session(workspace_id, session_id, lock=True)
        await self.repo.leave(workspace_id, session_id, peer_ids, at_seq=session.last_seq)
        return session

    async def session_peers(
        self, workspace_id: str, session_id: str, *, page: int, size: int
    ) -> PageResult[Peer]:
        await self.require_session(workspace_id, session_id)
        return await self.repo.list_session_peers(workspace_id, session_id, page=page, size=size)

    async def get_peer_config(
        self, workspace_id: str, session_id: str, peer_id: str
    ) -> dict[str, Any]:
        await self.require_session(workspace_id, session_id)
        membership = await self.repo.get_membership(workspace_id, session_id, peer_id)
        if membership is None:
            raise NotFoundError(f"Peer '{peer_id}' is not a member of session '{session_id}'")
        return {
            "observe_me": membership.configuration.get("observe_me"),
            "observe_others": membership.configuration.get("observe_others"),
        }

    async def set_peer_config(
        self,
        workspace_id: str,
        session_id: str,
        peer_id: str,
        body: schemas.SessionPeerConfig,
    ) -> dict[str, Any]:
        await self.require_session(workspace_id, session_id, lock=True)
        membership = await self.repo.get_membership(workspace_id, session_id, peer_id)
        if membership is None:
            raise NotFoundError(f"Peer '{peer_id}' is not a member of session '{session_id}'")
        merged = {**membership.configuration, **body.stored()}
        await self.repo.set_member_configuration(workspace_id, session_id, peer_id, merged)
        return {
            "observe_me": merged.get("observe_me"),
            "observe_others": merged.get("observe_others"),
        }

    async def is_member(self, workspace_id: str, session_id: str, peer_id: str) -> bool:
        return await self.repo.is_member(workspace_id, session_id, peer_id)

    # -- messages --------------------------------------------------------------------------
    def _check_batch(self, messages: list[schemas.MessageCreate]) -> None:
        limit = self.limits.max_messages_per_batch
        if len(messages) > limit:
            raise ValidationError(
                f"A batch holds at most {limit} messages; got {len(messages)}. Split it."
            )
        max_chars = self.limits.max_message_chars
        for i, msg in enumerate(messages):
            if len(msg.content) > max_chars:
                raise ValidationError(
                    f"messages[{i}].content has {len(msg.content)} characters; the limit is "
                    f"{max_chars}. Split long text or upload it as a file."
                )

    async def create_messages(
        self, workspace_id: str, session_id: str, messages: list[schemas.MessageCreate]
    ) -> list[Message]:
        """Store a batch, number it, auto-join its authors and commit one ``message.created``
        event per message (with the witnesses of that moment) through the outbox."""
        self._check_batch(messages)
        if self.backpressure is not None:
            await self.backpressure.check(self.db)
        token_counts = count_tokens_many([m.content for m in messages])
        last = await self.repo.reserve_seqs(workspace_id, session_id, len(messages))
        if last is None:
            await self.require_session(workspace_id, session_id)
            raise NotFoundError(f"Session '{session_id}' not found")
        first = last - len(messages) + 1

        members = {m.peer_id: m for m in await self.repo.current_members(workspace_id, session_id)}
        joining: dict[str, int] = {}
        for offset, msg in enumerate(messages):
            if msg.peer_id not in members and msg.peer_id not in joining:
                joining[msg.peer_id] = first + offset - 1
        if joining:
            await self.repo.ensure_peers(workspace_id, joining)
            # Authors join just before their first message (windows open after ``at_seq``).
            for peer_id, at_seq in joining.items():
                await self.repo.join(workspace_id, session_id, {peer_id: None}, at_seq=at_seq)
            members = {
                m.peer_id: m for m in await self.repo.current_members(workspace_id, session_id)
            }

        rows: list[dict[str, Any]] = []
        for offset, (msg, tokens) in enumerate(zip(messages, token_counts, strict=True)):
            rows.append(
                {
                    "id": nanoid(),
                    "workspace_id": workspace_id,
                    "session_id": session_id,
                    "peer_id": msg.peer_id,
                    "seq": first + offset,
                    "content": msg.content,
                    "metadata": msg.metadata or {},
                    "configuration": _dump(msg.configuration),
                    "token_count": tokens,
                    "created_at": as_utc(msg.created_at).isoformat() if msg.created_at else None,
                }
            )
        stored = await self.repo.insert_messages(rows)
        events = [self._message_event(m, members, joining) for m in stored]
        await self._publish(*events)
        return stored

    @staticmethod
    def _message_event(
        message: Message, members: dict[str, Member], joining: dict[str, int]
    ) -> MessageCreated:
        author = members[message.peer_id]
        witnesses = [
            Witness(peer_id=m.peer_id, observe_others=effective_observe_others(m))
            for pid, m in members.items()
            if pid != message.peer_id and joining.get(pid, -1) < message.seq
        ]
        return MessageCreated(
            workspace_id=message.workspace_id,
            session_id=message.session_id,
            message_id=message.id,
            peer_id=message.peer_id,
            seq=message.seq,
            content=message.content,
            token_count=message.token_count,
            created_at=message.created_at,
            metadata=message.metadata_,
            configuration=message.configuration,
            observe_me=effective_observe_me(author),
            witnesses=witnesses,
        )

    async def list_messages(
        self,
        workspace_id: str,
        session_id: str,
        filters: dict[str, Any] | None,
        *,
        page: int,
        size: int,
        reverse: bool,
    ) -> PageResult[Message]:
        cond = build_filter(filters, MESSAGE_FIELDS)
        await self.require_session(workspace_id, session_id)
        return await self.repo.list_messages(
            workspace_id, session_id, cond, page=page, size=size, reverse=reverse
        )

    async def get_message(self, workspace_id: str, session_id: str, message_id: str) -> Message:
        message = await self.repo.get_message(workspace_id, session_id, message_id)
        if message is None:
            await self.require_session(workspace_id, session_id)
            raise NotFoundError(f"Message '{message_id}' not found in session '{session_id}'")
        return message

    async def update_message(
        self, workspace_id: str, session_id: str, message_id: str, metadata: dict[str, Any]
    ) -> Message:
        message = await self.get_message(workspace_id, session_id, message_id)
        message.metadata_ = metadata
        await self.db.flush()
        return message

    # -- conclusions -----------------------------------------------------------------------
    async def create_conclusions(
        self, workspace_id: str, items: list[schemas.ConclusionCreate]
    ) -> list[Conclusion]:
        await self.require_workspace(workspace_id)
        for i, item in enumerate(items):
            if len(item.content) > 65_535:
                raise ValidationError(f"conclusions[{i}].content exceeds 65,535 characters")
        peer_ids = {i.observer_id for i in items} | {i.observed_id for i in items}
        for pid in sorted(peer_ids):
            await self.require_peer(workspace_id, pid)
        for sid in sorted({i.session_id for i in items if i.session_id}):
            await self.require_session(workspace_id, sid)
        counts = count_tokens_many([i.content for i in items])
        rows = [
            {
                "id": nanoid(),
                "workspace_id": workspace_id,
                "observer_id": item.observer_id,
                "observed_id": item.observed_id,
                "session_id": item.session_id,
                "content": item.content,
                "level": "explicit",
                "token_count": n,
            }
            for item, n in zip(items, counts, strict=True)
        ]
        created = await self.repo.insert_conclusions(rows)
        await self._publish(
            ConclusionsCreated(workspace_id=workspace_id, conclusion_ids=[c.id for c in created])
        )
        return created

    async def list_conclusions(
        self,
        workspace_id: str,
        filters: dict[str, Any] | None,
        *,
        page: int,
        size: int,
        reverse: bool,
    ) -> PageResult[Conclusion]:
        cond = build_filter(filters, CONCLUSION_FIELDS)
        await self.require_workspace(workspace_id)
        # Honcho lists conclusions newest first; ``reverse`` flips to oldest first.
        return await self.repo.list_conclusions(
            workspace_id, cond, page=page, size=size, reverse=not reverse
        )

    async def get_conclusion(self, workspace_id: str, conclusion_id: str) -> Conclusion:
        page = await self.repo.list_conclusions(
            workspace_id,
            build_filter({"id": conclusion_id}, CONCLUSION_FIELDS),
            page=1,
            size=1,
            reverse=False,
        )
        if not page.items:
            await self.require_workspace(workspace_id)
            raise NotFoundError(f"Conclusion '{conclusion_id}' not found")
        return page.items[0]

    async def delete_conclusion(self, workspace_id: str, conclusion_id: str) -> None:
        if not await self.repo.delete_conclusion(workspace_id, conclusion_id):
            await self.require_workspace(workspace_id)
            raise NotFoundError(f"Conclusion '{conclusion_id}' not found")
        await self._publish(
            ConclusionDeleted(workspace_id=workspace_id, conclusion_id=conclusion_id)
        )

    # -- webhooks, dreams, queue -----------------------------------------------------------
    async def get_or_create_webhook(self, workspace_id: str, url: str) -> Created:
        url = url.strip()  # the URL that is validated is the one stored and matched
        validate_webhook_url(url, allow_private=self.allow_private_webhooks)
        await self.require_workspace(workspace_id)
        existing = await self.repo.get_webhook_by_url(workspace_id, url)
        if existing is not None:
            return Created(existing, False)
        if await self.repo.count_webhooks(workspace_id) >= MAX_WEBHOOKS_PER_WORKSPACE:
            raise ConflictError(
                f"A workspace has at most {MAX_WEBHOOKS_PER_WORKSPACE} webhooks; delete one first"
            )
        created = await self.repo.insert_webhook(workspace_id, nanoid(), url)
        if created is None:  # a concurrent request registered the same URL
            again = await self.repo.get_webhook_by_url(workspace_id, url)
            assert again is not None
            return Created(again, False)
        return Created(created, True)

    async def list_webhooks(self, workspace_id: str) -> list[WebhookEndpoint]:
        await self.require_workspace(workspace_id)
        return await self.repo.list_webhooks(workspace_id)

    async def delete_webhook(self, workspace_id: str, webhook_id: str) -> None:
        if not await self.repo.delete_webhook(workspace_id, webhook_id):
            await self.require_workspace(workspace_id)
            raise NotFoundError(f"Webhook '{webhook_id}' not found")

    async def test_webhooks(self, workspace_id: str) -> None:
        await self.require_workspace(workspace_id)
        await self._publish(WebhookTestRequested(workspace_id=workspace_id))

    async def schedule_dream(self, workspace_id: str, body: schemas.DreamRequest) -> None:
        await self.require_peer(workspace_id, body.observer)
        observed = body.observed or body.observer
        await self.require_peer(workspace_id, observed)
        if body.session_id is not None:
            await self.require_session(workspace_id, body.session_id)
        await self._publish(
            DreamScheduled(
                workspace_id=workspace_id,
                observer_id=body.observer,
                observed_id=observed,
                session_id=body.session_id,
                dream_type=body.dream_type,
            )
        )

    async def list_dead_letters(
        self, workspace_id: str, *, include_retried: bool, page: int, size: int
    ) -> PageResult[DeadLetter]:
        await self.require_workspace(workspace_id)
        return await self.repo.list_dead_letters(
            workspace_id, include_retried=include_retried, page=page, size=size
        )

    async def retry_dead_letter(self, workspace_id: str, dead_letter_id: str) -> DeadLetter:
        """Publish the dead event again (under a new event id) and mark the letter retried."""
        letter = await self.repo.get_dead_letter(workspace_id, dead_letter_id)
        if letter is None:
            await self.require_workspace(workspace_id)
            raise NotFoundError(f"Dead letter '{dead_letter_id}' not found")
        if letter.retried_at is not None:
            raise ConflictError(f"Dead letter '{dead_letter_id}' was already retried")
        event_cls = EVENTS_BY_TYPE.get(letter.event_type)
        if event_cls is None:
            raise ConflictError(
                f"Dead letter '{dead_letter_id}' holds an unknown event type "
                f"'{letter.event_type}'; it cannot be replayed"
            )
        try:
            event = event_cls.model_validate({**letter.payload, "event_id": new_event_id()})
        except PydanticValidationError as exc:
            raise ConflictError(
                f"Dead letter '{dead_letter_id}' holds an invalid event and cannot be replayed: "
                f"{exc.errors()[0]['msg']}"
            ) from exc
        if isinstance(event, MessageCreated):
            await self.repo.reset_derivation(event.message_id)
        await self._publish(event)
        letter.retried_at = datetime.now(UTC)
        await self.db.flush()
        return letter

    async def queue_status(
        self,
        workspace_id: str,
        *,
        observer_id: str | None,
        sender_id: str | None,
        session_id: str | None,
    ) -> schemas.QueueStatusOut:
        await self.require_workspace(workspace_id)
        if session_id is not None:
            await self.require_session(workspace_id, session_id)
        rows = await self.repo.queue_counts(
            workspace_id, session_id=session_id, sender_id=sender_id, observer_id=observer_id
        )
        sessions: dict[str, schemas.SessionQueueStatus] = {}
        totals = [0, 0, 0, 0]
        for sid, total, done, in_progress, dead in rows:
            pending = total - done - in_progress - dead
            sessions[sid] = schemas.SessionQueueStatus(
                session_id=sid,
                total_work_units=total,
                completed_work_units=done,
                in_progress_work_units=in_progress,
                pending_work_units=pending,
            )
            for i, v in enumerate((total, done, in_progress, dead)):
                totals[i] += v
        total, done, in_progress, dead = totals
        return schemas.QueueStatusOut(
            total_work_units=total,
            completed_work_units=done,
            in_progress_work_units=in_progress,
            pending_work_units=total - done - in_progress - dead,
            dead_letter_work_units=dead,
            sessions=sessions,
        )


def parse_created_at(value: str | None) -> datetime | None:
    if value is None or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationError(f"created_at '{value}' is not an ISO-8601 date-time") from exc
    try:
        return as_utc(parsed)
    except ValueError as exc:
        raise ValidationError(f"created_at '{value}' {exc}") from exc
