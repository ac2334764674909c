"""Every SQL statement of the dialectic service (reads only)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.models import Message, Peer, PeerCard, Session, SessionPeer, Workspace
from libs.common.retrieval.hybrid import MessageScope, message_conditions


class DialecticRepository:
    def __init__(self, db: AsyncSession) -> None:
        self.db = db

    async def workspace_exists(self, workspace_id: str) -> bool:
        stmt = select(exists().where(Workspace.id == workspace_id))
        return bool((await self.db.execute(stmt)).scalar_one())

    async def existing_peers(self, workspace_id: str, peer_ids: Sequence[str]) -> set[str]:
        stmt = select(Peer.id).where(Peer.workspace_id == workspace_id, Peer.id.in_(peer_ids))
        return set((await self.db.execute(stmt)).scalars().all())

    async def existing_sessions(self, workspace_id: str, session_ids: Sequence[str]) -> set[str]:
        stmt = select(Session.id).where(
            Session.workspace_id == workspace_id, Session.id.in_(session_ids)
        )
        return set((await self.db.execute(stmt)).scalars().all())

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

    async def peer_card(self, workspace_id: str, observer: str, observed: str) -> list[str]:
        stmt = select(PeerCard.facts).where(
            PeerCard.workspace_id == workspace_id,
            PeerCard.observer_id == observer,
            PeerCard.observed_id == observed,
        )
        facts = (await self.db.execute(stmt)).scalar_one_or_none()
        return [str(f) for f in facts or [] if isinstance(f, str) and f.strip()]

    async def newest_message_at(self, scope: MessageScope) -> datetime | None:
        """Date of the newest message in ``scope`` (the anchor of "today", "yesterday" …)."""
        stmt = (
            select(Message.created_at)
            .where(*message_conditions(scope))
            .order_by(Message.created_at.desc())
            .limit(1)
        )
        return (await self.db.execute(stmt)).scalar_one_or_none()
