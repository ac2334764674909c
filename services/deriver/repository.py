"""Every SQL statement of the deriver."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.models import (
    Conclusion,
    DeadLetter,
    DerivationStatus,
    Message,
    PeerCard,
    Session,
    Summary,
    WebhookEndpoint,
    Workspace,
)
from libs.common.retrieval.hybrid import witnessed_by


@dataclass(frozen=True)
class StoredLine:
    message_id: str
    seq: int
    peer_id: str
    content: str
    created_at: datetime


class DeriverRepository:
    """SQL of the deriver. Never commits: the consumer boundary owns the transaction."""

    def __init__(self, db: AsyncSession) -> None:
        self.db = db

    # -- work status -----------------------------------------------------------------------
    async def statuses(self, message_ids: Sequence[str]) -> dict[str, str]:
        if not message_ids:
            return {}
        rows = await self.db.execute(
            select(DerivationStatus.message_id, DerivationStatus.status).where(
                DerivationStatus.message_id.in_(message_ids)
            )
        )
        return {r[0]: r[1] for r in rows.all()}

    async def existing_messages(self, message_ids: Sequence[str]) -> set[str]:
        if not message_ids:
            return set()
        rows = await self.db.execute(select(Message.id).where(Message.id.in_(message_ids)))
        return set(rows.scalars().all())

    async def set_status(self, rows: Sequence[tuple[str, str, str]], status: str) -> None:
        """Upsert ``(message_id, workspace_id, session_id)`` rows to ``status``."""
        if not rows:
            return
        values = [
            {"message_id": m, "workspace_id": w, "session_id": s, "status": status, "attempts": 1}
            for m, w, s in rows
        ]
        stmt = insert(DerivationStatus).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[DerivationStatus.message_id],
            set_={
                "status": stmt.excluded.status,
                "attempts": DerivationStatus.attempts + 1,
                "updated_at": text("now()"),
            },
        )
        await self.db.execute(stmt)

    # -- configuration ---------------------------------------------------------------------
    async def configurations(
        self, workspace_id: str, session_id: str
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        row = (
            await self.db.execute(
                select(Workspace.configuration, Session.configuration)
                .join(Session, Session.workspace_id == Workspace.id)
                .where(Workspace.id == workspace_id, Session.id == session_id)
            )
        ).first()
        return (row[0], row[1]) if row else None

    # -- messages --------------------------------------------------------------------------
    async def witnessed_before(
        self, workspace_id: str, session_id: str, observer: str, before_seq: int, limit: int
    ) -> list[StoredLine]:
        """The last ``limit`` messages before ``before_seq`` that ``observer`` witnessed."""
        rows = await self.db.execute(
            select(Message)
            .where(
                Message.workspace_id == workspace_id,
                Message.session_id == session_id,
                Message.seq < before_seq,
                witnessed_by(observer),
            )
            .order_by(Message.seq.desc())
            .limit(limit)
        )
        return [_line(m) for m in reversed(rows.scalars().all())]

    async def messages_between(
        self, workspace_id: str, session_id: str, after_seq: int, upto_seq: int
    ) -> list[StoredLine]:
        rows = await self.db.execute(
            select(Message)
            .where(
                Message.workspace_id == workspace_id,
                Message.session_id == session_id,
                Message.seq > after_seq,
                Message.seq <= upto_seq,
            )
            .order_by(Message.seq)
        )
        return [_line(m) for m in rows.scalars().all()]

    # -- conclusions -----------------------------------------------------------------------
    async def recent_conclusions(
        self, workspace_id: str, observer: str, observed: str, limit: int
    ) -> list[str]:
        rows = await self.db.execute(
            select(Conclusion.content)
            .where(
                Conclusion.workspace_id == workspace_id,
                Conclusion.observer_id == observer,
                Conclusion.observed_id == observed,
            )
            .order_by(Conclusion.created_at.desc())
            .limit(limit)
        )
        return list(rows.scalars().all())

    async def insert_conclusions(self, rows: list[dict[str, Any]]) -> None:
        """Idempotent: ids are derived from their source, so a replay inserts nothing new."""
        if rows:
            await self.db.execute(insert(Conclusion).values(rows).on_conflict_do_nothing())

    async def conclusions_by_ids(self, ids: Sequence[str]) -> list[Conclusion]:
        if not ids:
            return []
        rows = await self.db.execute(select(Conclusion).where(Conclusion.id.in_(ids)))
        return list(rows.scalars().all())

    async def conclusions_from_messages(self, message_ids: Sequence[str]) -> list[Conclusion]:
        if not message_ids:
            return []
        rows = await self.db.execute(
            select(Conclusion).where(Conclusion.source_ids.op("?|")(text("CAST(:ids AS text[])"))),
            {"ids": list(message_ids)},
        )
        return list(rows.scalars().all())

    async def messages_by_ids(self, ids: Sequence[str]) -> list[Message]:
        if not ids:
            return []
        rows = await self.db.execute(select(Message).where(Message.id.in_(ids)))
        return list(rows.scalars().all())

    async def view_conclusions(
        self, workspace_id: str, observer: str, observed: str
    ) -> list[Conclusion]:
        rows = await self.db.execute(
            select(Conclusion)
            .where(
                Conclusion.workspace_id == workspace_id,
                Conclusion.observer_id == observer,
                Conclusion.observed_id == observed,
            )
            .order_by(Conclusion.created_at, Conclusion.id)
        )
        return list(rows.scalars().all())

    async def delete_conclusions(self, ids: Sequence[str]) -> None:
        if ids:
            await self.db.execute(delete(Conclusion).where(Conclusion.id.in_(ids)))

    # -- peer cards ------------------------------------------------------------------------
    async def lock_card(self, workspace_id: str, observer: str, observed: str) -> list[str]:
        """The current card, row-locked until commit (created empty if missing)."""
        await self.db.execute(
            insert(PeerCard)
            .values(workspace_id=workspace_id, observer_id=observer, observed_id=observed)
            .on_conflict_do_nothing()
        )
        row = (
            await self.db.execute(
                select(PeerCard.facts)
                .where(
                    PeerCard.workspace_id == workspace_id,
                    PeerCard.observer_id == observer,
                    PeerCard.observed_id == observed,
                )
                .with_for_update()
            )
        ).scalar_one()
        return list(row)

    async def save_card(
        self, workspace_id: str, observer: str, observed: str, facts: list[str]
    ) -> None:
        await self.db.execute(
            update(PeerCard)
            .where(
                and_(
                    PeerCard.workspace_id == workspace_id,
                    PeerCard.observer_id == observer,
                    PeerCard.observed_id == observed,
                )
            )
            .values(facts=facts, updated_at=text("now()"))
        )

    # -- summaries -------------------------------------------------------------------------
    async def latest_summary(
        self, workspace_id: str, session_id: str, summary_type: str, before_seq: int
    ) -> Summary | None:
        return (
            await self.db.execute(
                select(Summary)
                .where(
                    Summary.workspace_id == workspace_id,
                    Summary.session_id == session_id,
                    Summary.summary_type == summary_type,
                    Summary.message_seq < before_seq,
                )
                .order_by(Summary.message_seq.desc())
                .limit(1)
            )
        ).scalar_one_or_none()

    async def summary_exists(
        self, workspace_id: str, session_id: str, summary_type: str, seq: int
    ) -> bool:
        return bool(
            (
                await self.db.execute(
                    select(
                        exists().where(
                            Summary.workspace_id == workspace_id,
                            Summary.session_id == session_id,
                            Summary.summary_type == summary_type,
                            Summary.message_seq == seq,
                        )
                    )
                )
            ).scalar_one()
        )

    async def insert_summary(self, row: dict[str, Any]) -> None:
        await self.db.execute(insert(Summary).values(row).on_conflict_do_nothing())

    # -- dead letters ----------------------------------------------------------------------
    async def insert_dead_letter(self, row: dict[str, Any]) -> None:
        await self.db.execute(insert(DeadLetter).values(row).on_conflict_do_nothing())

    async def webhook_urls(self, workspace_id: str) -> list[str]:
        rows = await self.db.execute(
            select(WebhookEndpoint.url)
            .where(WebhookEndpoint.workspace_id == workspace_id)
            .order_by(WebhookEndpoint.created_at)
        )
        return list(rows.scalars().all())

    async def pending_in_session(self, workspace_id: str, session_id: str) -> int:
        row = await self.db.execute(
            text(
                "SELECT count(*) FROM messages m LEFT JOIN derivation_status d "
                "ON d.message_id = m.id WHERE m.workspace_id = :w AND m.session_id = :s "
                "AND (d.status IS NULL OR d.status NOT IN ('done', 'dead'))"
            ),
            {"w": workspace_id, "s": session_id},
        )
        return int(row.scalar_one())


def _line(m: Message) -> StoredLine:
    return StoredLine(
        message_id=m.id, seq=m.seq, peer_id=m.peer_id, content=m.content, created_at=m.created_at
    )
