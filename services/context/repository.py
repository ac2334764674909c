"""Every SQL statement of the context service."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.models import (
    Conclusion,
    MembershipWindow,
    Message,
    Peer,
    PeerCard,
    Session,
    SessionPeer,
    Summary,
    Workspace,
)
from libs.common.retrieval.hybrid import ConclusionScope, conclusions_recent_first


class ContextRepository:
    def __init__(self, db: AsyncSession) -> None:
        self.db = db

    async def workspace_exists(self, workspace_id: str) -> bool:
        row = await self.db.execute(select(Workspace.id).where(Workspace.id == workspace_id))
        return row.scalar_one_or_none() is not None

    async def peer_exists(self, workspace_id: str, peer_id: str) -> bool:
        row = await self.db.execute(
            select(Peer.id).where(Peer.workspace_id == workspace_id, Peer.id == peer_id)
        )
        return row.scalar_one_or_none() is not None

    async def get_session(self, workspace_id: str, session_id: str) -> Session | None:
        row = await self.db.execute(
            select(Session).where(Session.workspace_id == workspace_id, Session.id == session_id)
        )
        return row.scalar_one_or_none()

    async def is_member(self, workspace_id: str, session_id: str, peer_id: str) -> bool:
        row = await self.db.execute(
            select(SessionPeer.peer_id).where(
                SessionPeer.workspace_id == workspace_id,
                SessionPeer.session_id == session_id,
                SessionPeer.peer_id == peer_id,
                SessionPeer.left_at.is_(None),
            )
        )
        return row.scalar_one_or_none() is not None

    async def windows(
        self, workspace_id: str, session_id: str, peer_id: str
    ) -> list[tuple[int, int | None]]:
        rows = await self.db.execute(
            select(MembershipWindow.joined_seq, MembershipWindow.left_seq)
            .where(
                MembershipWindow.workspace_id == workspace_id,
                MembershipWindow.session_id == session_id,
                MembershipWindow.peer_id == peer_id,
            )
            .order_by(MembershipWindow.joined_seq)
        )
        return [(int(r[0]), None if r[1] is None else int(r[1])) for r in rows.all()]

    async def latest_summary(
        self, workspace_id: str, session_id: str, summary_type: str
    ) -> Summary | None:
        row = await self.db.execute(
            select(Summary)
            .where(
                Summary.workspace_id == workspace_id,
                Summary.session_id == session_id,
                Summary.summary_type == summary_type,
            )
            .order_by(Summary.message_seq.desc())
            .limit(1)
        )
        return row.scalar_one_or_none()

    async def newest_token_counts(
        self,
        workspace_id: str,
        session_id: str,
        *,
        after_seq: int,
        before_seq: int | None,
        limit: int,
        condition: ColumnElement[bool] | None = None,
    ) -> list[tuple[int, int]]:
        """``(seq, token_count)`` newest first, ``after_seq < seq < before_seq``: read from the
        ``(workspace, session, seq DESC) INCLUDE (token_count)`` index, no message body."""
        stmt = select(Message.seq, Message.token_count).where(
            Message.workspace_id == workspace_id,
            Message.session_id == session_id,
            Message.seq > after_seq,
        )
        if before_seq is not None:
            stmt = stmt.where(Message.seq < before_seq)
        if condition is not None:
            stmt = stmt.where(condition)
        rows = await self.db.execute(stmt.order_by(Message.seq.desc()).limit(limit))
        return [(int(r[0]), int(r[1])) for r in rows.all()]

    async def messages_by_seq(
        self, workspace_id: str, session_id: str, seqs: Sequence[int]
    ) -> list[Message]:
        """The messages of a session with these sequence numbers, oldest first."""
        if not seqs:
            return []
        rows = await self.db.execute(
            select(Message)
            .where(
                Message.workspace_id == workspace_id,
                Message.session_id == session_id,
                Message.seq.in_(seqs),
            )
            .order_by(Message.seq)
        )
        return list(rows.scalars().all())

    async def recent_conclusions(self, scope: ConclusionScope, limit: int) -> list[Conclusion]:
        rows = await self.db.execute(conclusions_recent_first(scope, limit))
        return list(rows.scalars().all())

    async def card(self, workspace_id: str, observer: str, observed: str) -> list[str] | None:
        row = await self.db.execute(
            select(PeerCard.facts).where(
                PeerCard.workspace_id == workspace_id,
                PeerCard.observer_id == observer,
                PeerCard.observed_id == observed,
            )
        )
        facts = row.scalar_one_or_none()
        return list(facts) if facts else None

    async def set_card(
        self, workspace_id: str, observer: str, observed: str, facts: Sequence[str]
    ) -> None:
        stmt = insert(PeerCard).values(
            workspace_id=workspace_id, observer_id=observer, observed_id=observed, facts=facts
        )
        await self.db.execute(
            stmt.on_conflict_do_update(
                index_elements=[PeerCard.workspace_id, PeerCard.observer_id, PeerCard.observed_id],
                set_={"facts": stmt.excluded.facts, "updated_at": stmt.excluded.updated_at},
            )
        )

    async def views(
        self, workspace_id: str, observer: str | None
    ) -> list[tuple[str, str, int, int]]:
        """(observer, observed, conclusions, card facts) of every view that holds anything."""
        counts = select(
            Conclusion.observer_id, Conclusion.observed_id, func.count().label("n")
        ).where(Conclusion.workspace_id == workspace_id)
        cards = select(
            PeerCard.observer_id, PeerCard.observed_id, func.jsonb_array_length(PeerCard.facts)
        ).where(PeerCard.workspace_id == workspace_id)
        if observer is not None:
            counts = counts.where(Conclusion.observer_id == observer)
            cards = cards.where(PeerCard.observer_id == observer)
        found: dict[tuple[str, str], list[int]] = {}
        for obs, obd, n in (
            await self.db.execute(counts.group_by(Conclusion.observer_id, Conclusion.observed_id))
        ).all():
            found.setdefault((obs, obd), [0, 0])[0] = int(n)
        for obs, obd, n in (await self.db.execute(cards)).all():
            found.setdefault((obs, obd), [0, 0])[1] = int(n or 0)
        return sorted((k[0], k[1], v[0], v[1]) for k, v in found.items())
