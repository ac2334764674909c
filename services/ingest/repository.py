"""Every SQL statement of the ingest service."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    delete,
    exists,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.filters import FieldSpec
from libs.common.models import (
    Conclusion,
    DeadLetter,
    DerivationStatus,
    MembershipWindow,
    Message,
    Peer,
    Session,
    SessionPeer,
    WebhookEndpoint,
    Workspace,
)
from libs.common.pagination import PageResult, paginate
from libs.common.retrieval.hybrid import witnessed_by

WORKSPACE_FIELDS = {
    "id": FieldSpec(Workspace.id, "str"),
    "created_at": FieldSpec(Workspace.created_at, "datetime"),
    "metadata": FieldSpec(Workspace.metadata_, "json"),
}
PEER_FIELDS = {
    "id": FieldSpec(Peer.id, "str"),
    "workspace_id": FieldSpec(Peer.workspace_id, "str"),
    "created_at": FieldSpec(Peer.created_at, "datetime"),
    "metadata": FieldSpec(Peer.metadata_, "json"),
}
SESSION_FIELDS = {
    "id": FieldSpec(Session.id, "str"),
    "workspace_id": FieldSpec(Session.workspace_id, "str"),
    "created_at": FieldSpec(Session.created_at, "datetime"),
    "metadata": FieldSpec(Session.metadata_, "json"),
    "is_active": FieldSpec(Session.is_active, "bool"),
}
MESSAGE_FIELDS = {
    "id": FieldSpec(Message.id, "str"),
    "workspace_id": FieldSpec(Message.workspace_id, "str"),
    "session_id": FieldSpec(Message.session_id, "str"),
    "peer_id": FieldSpec(Message.peer_id, "str"),
    "created_at": FieldSpec(Message.created_at, "datetime"),
    "metadata": FieldSpec(Message.metadata_, "json"),
    "token_count": FieldSpec(Message.token_count, "int"),
}
CONCLUSION_FIELDS = {
    "id": FieldSpec(Conclusion.id, "str"),
    "workspace_id": FieldSpec(Conclusion.workspace_id, "str"),
    "observer_id": FieldSpec(Conclusion.observer_id, "str"),
    "observed_id": FieldSpec(Conclusion.observed_id, "str"),
    "session_id": FieldSpec(Conclusion.session_id, "str"),
    "level": FieldSpec(Conclusion.level, "str"),
    "created_at": FieldSpec(Conclusion.created_at, "datetime"),
    "source_ids": FieldSpec(Conclusion.source_ids, "str_array"),
}


@dataclass(frozen=True)
class Member:
    """A current member of a session with the configuration that decides observation."""

    peer_id: str
    peer_configuration: dict[str, Any]
    session_configuration: dict[str, Any]


_INSERT_MESSAGES = text(
    """
    INSERT INTO messages (id, workspace_id, session_id, peer_id, seq, content, metadata,
                          configuration, token_count, created_at)
    SELECT r.id, r.workspace_id, r.session_id, r.peer_id, r.seq, r.content, r.metadata,
           r.configuration, r.token_count, COALESCE(r.created_at, now())
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
        id text, workspace_id text, session_id text, peer_id text, seq bigint, content text,
        metadata jsonb, configuration jsonb, token_count int, created_at timestamptz)
    ORDER BY r.seq
    RETURNING seq, created_at, inserted_at
    """
)


class IngestRepository:
    """SQL of the ingest service. Never commits: the boundary owns the transaction."""

    def __init__(self, db: AsyncSession) -> None:
        self.db = db

    # -- workspaces ------------------------------------------------------------------------
    async def insert_workspace(
        self, workspace_id: str, metadata: dict[str, Any], configuration: dict[str, Any]
    ) -> Workspace | None:
        stmt = (
            insert(Workspace)
            .values(id=workspace_id, metadata_=metadata, configuration=configuration)
            .on_conflict_do_nothing(index_elements=[Workspace.id])
            .returning(Workspace)
        )
        return (await self.db.execute(stmt)).scalar_one_or_none()

    async def get_workspace(self, workspace_id: str, *, lock: bool = False) -> Workspace | None:
        stmt = select(Workspace).where(Workspace.id == workspace_id)
        if lock:
            stmt = stmt.with_for_update()
        return (await self.db.execute(stmt)).scalar_one_or_none()

    async def workspace_exists(self, workspace_id: str) -> bool:
        stmt = select(exists().where(Workspace.id == workspace_id))
        return bool((await self.db.execute(stmt)).scalar_one())

    async def list_workspaces(
        self, condition: ColumnElement[bool], *, page: int, size: int, reverse: bool
    ) -> PageResult[Workspace]:
        order = (
            (Workspace.created_at.desc(), Workspace.id.desc())
            if reverse
            else (Workspace.created_at, Workspace.id)
        )
        return await paginate(
            self.db, select(Workspace).where(condition).order_by(*order), page=page, size=size
        )

    async def count_active_sessions(self, workspace_id: str) -> int:
        stmt = select(func.count()).where(
            Session.workspace_id == workspace_id, Session.is_active.is_(True)
        )
        return int((await self.db.execute(stmt)).scalar_one())

    async def delete_workspace(self, workspace_id: str) -> None:
        await self.db.execute(delete(Workspace).where(Workspace.id == workspace_id))

    # -- peers -----------------------------------------------------------------------------
    async def insert_peer(
        self,
        workspace_id: str,
        peer_id: str,
        metadata: dict[str, Any],
        configuration: dict[str, Any],
    ) -> Peer | None:
        stmt = (
            insert(Peer)
            .values(
                workspace_id=workspace_id,
                id=peer_id,
                metadata_=metadata,
                configuration=configuration,
            )
            .on_conflict_do_nothing(index_elements=[Peer.workspace_id, Peer.id])
            .returning(Peer)
        )
        return (await self.db.execute(stmt)).scalar_one_or_none()

    async def ensure_peers(self, workspace_id: str, peer_ids: Iterable[str]) -> None:
        rows = [{"workspace_id": workspace_id, "id": p} for p in sorted(set(peer_ids))]
        if rows:
            await self.db.execute(insert(Peer).values(rows).on_conflict_do_nothing())

    async def get_peer(self, workspace_id: str, peer_id: str) -> Peer | None:
        stmt = select(Peer).where(Peer.workspace_id == workspace_id, Peer.id == peer_id)
        return (await self.db.execute(stmt)).scalar_one_or_none()

    async def list_peers(
        self,
        workspace_id: str,
        condition: ColumnElement[bool],
        *,
        page: int,
        size: int,
        reverse: bool,
    ) -> PageResult[Peer]:
        order = (Peer.created_at.desc(), Peer.id.desc()) if reverse else (Peer.created_at, Peer.id)
        stmt = select(Peer).where(Peer.workspace_id == workspace_id, condition).order_by(*order)
        return await paginate(self.db, stmt, page=page, size=size)

    # -- sessions --------------------------------------------------------------------------
    async def insert_session(
        self,
        workspace_id: str,
        session_id: str,
        metadata: dict[str, Any],
        configuration: dict[str, Any],
    ) -> Session | None:
        stmt = (
            insert(Session)
            .values(
                workspace_id=workspace_id,
                id=session_id,
                metadata_=metadata,
                configuration=configuration,
            )
            .on_conflict_do_nothing(index_elements=[Session.workspace_id, Session.id])
            .returning(Session)
        )
        return (await self.db.execute(stmt)).scalar_one_or_none()

    async def get_session(
        self, workspace_id: str, session_id: str, *, lock: bool = False
    ) -> Session | None:
        stmt = select(Session).where(Session.workspace_id == workspace_id, Session.id == session_id)
        if lock:
            stmt = stmt.with_for_update()
        return (await self.db.execute(stmt)).scalar_one_or_none()

    async def reserve_seqs(self, workspace_id: str, session_id: str, count: int) -> int | None:
        """Lock the session row and reserve ``count`` sequence numbers; returns the last one.

        The row lock serializes writers of one session until commit, so sequence numbers and
        outbox ids of a session grow in commit order.
        """
        stmt = (
            update(Session)
            .where(Session.workspace_id == workspace_id, Session.id == session_id)
            .values(last_seq=Session.last_seq + count)
            .returning(Session.last_seq)
        )
        return (await self.db.execute(stmt)).scalar_one_or_none()

    def sessions_query(
        self, workspace_id: str, condition: ColumnElement[bool]
    ) -> Select[tuple[Session]]:
        return select(Session).where(Session.workspace_id == workspace_id, condition)

    async def list_sessions(
        self, stmt: Select[tuple[Session]], *, page: int, size: int, reverse: bool
    ) -> PageResult[Session]:
        order = (
            (Session.created_at.desc(), Session.id.desc())
            if reverse
            else (Session.created_at, Session.id)
        )
        return await paginate(self.db, stmt.order_by(*order), page=page, size=size)

    def member_of_condition(self, workspace_id: str, peer_id: str) -> ColumnElement[bool]:
        """Sessions the peer currently belongs to."""
        return exists().where(
            SessionPeer.workspace_id == workspace_id,
            SessionPeer.session_id == Session.id,
            SessionPeer.peer_id == peer_id,
            SessionPeer.left_at.is_(None),
        )

    async def update_session(
        self,
        session: Session,
        metadata: dict[str, Any] | None,
        configuration: dict[str, Any] | None,
    ) -> None:
        if metadata is not None:
            session.metadata_ = metadata
        if configuration is not None:
            session.configuration = configuration
        await self.db.flush()

    async def delete_session(self, workspace_id: str, session_id: str) -> list[str]:
        ids = await self.db.execute(
            select(Message.id).where(
                Message.workspace_id == workspace_id, Message.session_id == session_id
            )
        )
        message_ids = list(ids.scalars().all())
        # Session (and, by cascade, its messages) first: a concurrent derivation holds a key
        # lock on its message through the status row it writes, so this waits for it to commit
        # — and the conclusions statement below, starting later, then sees what it wrote.
        await self.db.execute(
            delete(Session).where(Session.workspace_id == workspace_id, Session.id == session_id)
        )
        await self.db.execute(
            delete(Conclusion).where(
                Conclusion.workspace_id == workspace_id, Conclusion.session_id == session_id
            )
        )
        return message_ids

    # -- membership ------------------------------------------------------------------------
    async def current_members(self, workspace_id: str, session_id: str) -> list[Member]:
        stmt = (
            select(SessionPeer.peer_id, Peer.configuration, SessionPeer.configuration)
            .join(
                Peer,
                and_(Peer.workspace_id == SessionPeer.workspace_id, Peer.id == SessionPeer.peer_id),
            )
            .where(
                SessionPeer.workspace_id == workspace_id,
                SessionPeer.session_id == session_id,
                SessionPeer.left_at.is_(None),
            )
            .order_by(SessionPeer.peer_id)
        )
        rows = (await self.db.execute(stmt)).all()
        return [
            Member(peer_id=r[0], peer_configuration=r[1], session_configuration=r[2]) for r in rows
        ]

    async def is_member(self, workspace_id: str, session_id: str, peer_id: str) -> bool:
        stmt = select(
            exists().where(
                SessionPeer.workspace_id == workspace_id,
                SessionPeer.session_id == session_id,
                SessionPeer.peer_id == peer_id,
                SessionPeer.left_at.is_(None),
            )
        )
        return bool((await self.db.execute(stmt)).scalar_one())

    async def get_membership(
        self, workspace_id: str, session_id: str, peer_id: str
    ) -> SessionPeer | None:
        stmt = select(SessionPeer).where(
            SessionPeer.workspace_id == workspace_id,
            SessionPeer.session_id == session_id,
            SessionPeer.peer_id == peer_id,
        )
        return (await self.db.execute(stmt)).scalar_one_or_none()

    async def join(
        self,
        workspace_id: str,
        session_id: str,
        peer_configs: dict[str, dict[str, Any] | None],
        *,
        at_seq: int,
    ) -> None:
        """Make peers members (opening a membership window after ``at_seq``).

        A ``None`` configuration keeps a returning member's stored configuration; a dict
        replaces it. Peers already present stay as they are apart from a given configuration.
        """
        if not peer_configs:
            return
        # Few peers join at once; one upsert each keeps per-peer configuration handling plain.
        for peer_id, cfg in sorted(peer_configs.items()):
            base = insert(SessionPeer).values(
                workspace_id=workspace_id,
                session_id=session_id,
                peer_id=peer_id,
                configuration=cfg or {},
            )
            set_: dict[str, Any] = {"left_at": None}
            if cfg is not None:
                set_["configuration"] = base.excluded.configuration
            await self.db.execute(
                base.on_conflict_do_update(
                    index_elements=[
                        SessionPeer.workspace_id,
                        SessionPeer.session_id,
                        SessionPeer.peer_id,
                    ],
                    set_=set_,
                )
            )
        # Open a window for every peer without an open one.
        await self.db.execute(
            text(
                """
                INSERT INTO membership_windows (workspace_id, session_id, peer_id, joined_seq)
                SELECT v.w, v.s, p, v.seq
                FROM (SELECT CAST(:w AS varchar) AS w, CAST(:s AS varchar) AS s,
                             CAST(:seq AS bigint) AS seq) AS v,
                     unnest(CAST(:peers AS varchar[])) AS p
                WHERE NOT EXISTS (
                    SELECT 1 FROM membership_windows mw
                    WHERE mw.workspace_id = v.w AND mw.session_id = v.s AND mw.peer_id = p
                      AND mw.left_seq IS NULL)
                """
            ),
            {"w": workspace_id, "s": session_id, "seq": at_seq, "peers": sorted(peer_configs)},
        )

    async def leave(
        self, workspace_id: str, session_id: str, peer_ids: Sequence[str], *, at_seq: int
    ) -> None:
        if not peer_ids:
            return
        await self.db.execute(
            update(SessionPeer)
            .where(
                SessionPeer.workspace_id == workspace_id,
                SessionPeer.session_id == session_id,
                SessionPeer.peer_id.in_(peer_ids),
                SessionPeer.left_at.is_(None),
            )
            .values(left_at=func.now())
        )
        await self.db.execute(
            update(MembershipWindow)
            .where(
                MembershipWindow.workspace_id == workspace_id,
                MembershipWindow.session_id == session_id,
                MembershipWindow.peer_id.in_(peer_ids),
                MembershipWindow.left_seq.is_(None),
            )
            .values(left_seq=at_seq, left_at=func.now())
        )

    async def set_member_configuration(
        self, workspace_id: str, session_id: str, peer_id: str, configuration: dict[str, Any]
    ) -> None:
        await self.db.execute(
            update(SessionPeer)
            .where(
                SessionPeer.workspace_id == workspace_id,
                SessionPeer.session_id == session_id,
                SessionPeer.peer_id == peer_id,
            )
            .values(configuration=configuration)
        )

    async def list_session_peers(
        self, workspace_id: str, session_id: str, *, page: int, size: int
    ) -> PageResult[Peer]:
        stmt = (
            select(Peer)
            .join(
                SessionPeer,
                and_(SessionPeer.workspace_id == Peer.workspace_id, SessionPeer.peer_id == Peer.id),
            )
            .where(
                SessionPeer.workspace_id == workspace_id,
                SessionPeer.session_id == session_id,
                SessionPeer.left_at.is_(None),
            )
            .order_by(SessionPeer.joined_at, Peer.id)
        )
        return await paginate(self.db, stmt, page=page, size=size)

    # -- messages --------------------------------------------------------------------------
    async def insert_messages(self, rows: list[dict[str, Any]]) -> list[Message]:
        """Insert a batch with one statement (one bound parameter, whatever the batch size).

        Only the server-set columns come back (``created_at`` when the row has none, and
        ``inserted_at``); the returned messages are built from ``rows`` as transient objects,
        not loaded into the session: the ORM identity map and a round trip of every content
        cost more than the INSERT's own Python work on a 100-message batch.
        """
        result = await self.db.execute(_INSERT_MESSAGES, {"rows": orjson.dumps(rows).decode()})
        stamps = {seq: (created, inserted) for seq, created, inserted in result.all()}
        messages = []
        for r in sorted(rows, key=lambda r: r["seq"]):
            created, inserted = stamps[r["seq"]]
            messages.append(
                Message(
                    id=r["id"],
                    workspace_id=r["workspace_id"],
                    session_id=r["session_id"],
                    peer_id=r["peer_id"],
                    seq=r["seq"],
                    content=r["content"],
                    metadata_=r["metadata"],
                    configuration=r["configuration"],
                    token_count=r["token_count"],
                    created_at=created,
                    inserted_at=inserted,
                )
            )
        return messages

    async def get_message(
        self, workspace_id: str, session_id: str, message_id: str
    ) -> Message | None:
        stmt = select(Message).where(
            Message.workspace_id == workspace_id,
            Message.session_id == session_id,
            Message.id == message_id,
        )
        return (await self.db.execute(stmt)).scalar_one_or_none()

    async def list_messages(
        self,
        workspace_id: str,
        session_id: str,
        condition: ColumnElement[bool],
        *,
        page: int,
        size: int,
        reverse: bool,
    ) -> PageResult[Message]:
        order = Message.seq.desc() if reverse else Message.seq
        stmt = (
            select(Message)
            .where(
                Message.workspace_id == workspace_id, Message.session_id == session_id, condition
            )
            .order_by(order)
        )
        return await paginate(self.db, stmt, page=page, size=size)

    async def messages_up_to(
        self, workspace_id: str, session_id: str, max_seq: int | None
    ) -> list[Message]:
        stmt = select(Message).where(
            Message.workspace_id == workspace_id, Message.session_id == session_id
        )
        if max_seq is not None:
            stmt = stmt.where(Message.seq <= max_seq)
        return list((await self.db.execute(stmt.order_by(Message.seq))).scalars().all())

    # -- conclusions -----------------------------------------------------------------------
    async def insert_conclusions(self, rows: list[dict[str, Any]]) -> list[Conclusion]:
        stmt = insert(Conclusion).values(rows).returning(Conclusion)
        result = await self.db.execute(stmt)
        by_id = {c.id: c for c in result.scalars().all()}
        return [by_id[r["id"]] for r in rows]

    async def list_conclusions(
        self,
        workspace_id: str,
        condition: ColumnElement[bool],
        *,
        page: int,
        size: int,
        reverse: bool,
    ) -> PageResult[Conclusion]:
        order = (
            (Conclusion.created_at.desc(), Conclusion.id.desc())
            if reverse
            else (Conclusion.created_at, Conclusion.id)
        )
        stmt = (
            select(Conclusion)
            .where(Conclusion.workspace_id == workspace_id, condition)
            .order_by(*order)
        )
        return await paginate(self.db, stmt, page=page, size=size)

    async def delete_conclusion(self, workspace_id: str, conclusion_id: str) -> bool:
        result = await self.db.execute(
            delete(Conclusion)
            .where(Conclusion.workspace_id == workspace_id, Conclusion.id == conclusion_id)
            .returning(Conclusion.id)
        )
        return result.scalar_one_or_none() is not None

    # -- webhooks --------------------------------------------------------------------------
    async def insert_webhook(
        self, workspace_id: str, webhook_id: str, url: str
    ) -> WebhookEndpoint | None:
        stmt = (
            insert(WebhookEndpoint)
            .values(id=webhook_id, workspace_id=workspace_id, url=url)
            .on_conflict_do_nothing(
                index_elements=[WebhookEndpoint.workspace_id, WebhookEndpoint.url]
            )
            .returning(WebhookEndpoint)
        )
        return (await self.db.execute(stmt)).scalar_one_or_none()

    async def get_webhook_by_url(self, workspace_id: str, url: str) -> WebhookEndpoint | None:
        stmt = select(WebhookEndpoint).where(
            WebhookEndpoint.workspace_id == workspace_id, WebhookEndpoint.url == url
        )
        return (await self.db.execute(stmt)).scalar_one_or_none()

    async def count_webhooks(self, workspace_id: str) -> int:
        stmt = select(func.count()).where(WebhookEndpoint.workspace_id == workspace_id)
        return int((await self.db.execute(stmt)).scalar_one())

    async def list_webhooks(self, workspace_id: str) -> list[WebhookEndpoint]:
        stmt = (
            select(WebhookEndpoint)
            .where(WebhookEndpoint.workspace_id == workspace_id)
            .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )
        return list((await self.db.execute(stmt)).scalars().all())

    async def delete_webhook(self, workspace_id: str, webhook_id: str) -> bool:
        result = await self.db.execute(
            delete(WebhookEndpoint)
            .where(WebhookEndpoint.workspace_id == workspace_id, WebhookEndpoint.id == webhook_id)
            .returning(WebhookEndpoint.id)
        )
        return result.scalar_one_or_none() is not None

    # -- queue status ----------------------------------------------------------------------
    async def queue_counts(
        self,
        workspace_id: str,
        *,
        session_id: str | None,
        sender_id: str | None,
        observer_id: str | None,
    ) -> list[tuple[str, int, int, int, int]]:
        """Per session: (session_id, total, done, in_progress, dead) message work units."""
        conds: list[ColumnElement[bool]] = [Message.workspace_id == workspace_id]
        if session_id is not None:
            conds.append(Message.session_id == session_id)
        if sender_id is not None:
            conds.append(Message.peer_id == sender_id)
        if observer_id is not None:
            # Messages the observer witnessed (its own included).
            conds.append(witnessed_by(observer_id))
        status = DerivationStatus.status
        stmt = (
            select(
                Message.session_id,
                func.count(),
                func.count().filter(status == "done"),
                func.count().filter(status == "in_progress"),
                func.count().filter(status == "dead"),
            )
            .select_from(Message)
            .outerjoin(DerivationStatus, DerivationStatus.message_id == Message.id)
            .where(*conds)
            .group_by(Message.session_id)
            .order_by(Message.session_id)
        )
        rows = (await self.db.execute(stmt)).all()
        return [(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]

    async def list_dead_letters(
        self, workspace_id: str, *, include_retried: bool, page: int, size: int
    ) -> PageResult[DeadLetter]:
        stmt = select(DeadLetter).where(DeadLetter.workspace_id == workspace_id)
        if not include_retried:
            stmt = stmt.where(DeadLetter.retried_at.is_(None))
        stmt = stmt.order_by(DeadLetter.created_at.desc(), DeadLetter.id)
        return await paginate(self.db, stmt, page=page, size=size)

    async def get_dead_letter(self, workspace_id: str, dead_letter_id: str) -> DeadLetter | None:
        stmt = (
            select(DeadLetter)
            .where(DeadLetter.workspace_id == workspace_id, DeadLetter.id == dead_letter_id)
            .with_for_update()
        )
        return (await self.db.execute(stmt)).scalar_one_or_none()

    async def reset_derivation(self, message_id: str) -> None:
        """Forget a dead message's status so the deriver takes it up again."""
        await self.db.execute(
            delete(DerivationStatus).where(
                DerivationStatus.message_id == message_id, DerivationStatus.status == "dead"
            )
        )


def utc_iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
