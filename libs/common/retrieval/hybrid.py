"""Hybrid retrieval over what one observer may know: vectors + Postgres full text, rank-fused.

Every search takes a *scope* that states whose knowledge it searches, and every channel applies
it: the vector store filters on the message's ``witnesses`` (members at send time) or the
conclusion's ``observer_id``/``observed_id``, and the SQL that loads the hits re-applies the
membership windows (defence in depth) — so nothing reaches an observer it did not witness.

Ranking: reciprocal-rank fusion (k = 60) of the vector and full-text lists, plus two small
boosts — hits inside a time range resolved from the query ("yesterday", "in May"), and recency.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    Text,
    and_,
    cast,
    exists,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.common.db import unit_of_work
from libs.common.embeddings import Embedder
from libs.common.models import Conclusion, MembershipWindow, Message
from libs.common.vectorstore import (
    CONCLUSION_VECTORS,
    MESSAGE_VECTORS,
    FilterValue,
    VectorFilter,
    VectorStore,
)

T = TypeVar("T")

RRF_K = 60.0
TIME_BOOST = 1.0 / RRF_K
#: Recency only breaks near-ties: its largest value stays below the gap between adjacent
#: ranks near the top (1/((k+r+1)(k+r+2))), so it never outranks relevance.
RECENCY_BOOST = 0.25 / RRF_K**2
#: Largest vector pool of a search with a filter-DSL condition (see ``_nearest_messages``).
MAX_FILTERED_POOL = 500


@dataclass(frozen=True)
class MessageScope:
    """Which messages a search may return."""

    workspace_id: str
    #: Only messages this peer witnessed (was a member when they were sent); None = all.
    witness: str | None = None
    #: Only messages sent by this peer.
    author: str | None = None
    session_id: str | None = None
    #: Only messages of these sessions (None: no restriction; empty: nothing).
    session_ids: tuple[str, ...] | None = None
    #: Extra SQL condition (the filter DSL), applied when hits are loaded.
    condition: ColumnElement[bool] | None = None


@dataclass(frozen=True)
class ConclusionScope:
    """One view: what ``observer`` concluded about ``observed`` (optionally in one session)."""

    workspace_id: str
    observer: str
    observed: str
    session_id: str | None = None
    #: Only conclusions drawn in these sessions (None: no restriction; empty: nothing).
    session_ids: tuple[str, ...] | None = None


@dataclass(frozen=True)
class TimeWindow:
    start: datetime
    end: datetime


@dataclass
class Hit(Generic[T]):
    item: T
    score: float
    channels: set[str] = field(default_factory=set)


def witnessed_by(peer_id: str) -> ColumnElement[bool]:
    """SQL: the message was sent while ``peer_id`` was a member of its session."""
    return exists().where(
        MembershipWindow.workspace_id == Message.workspace_id,
        MembershipWindow.session_id == Message.session_id,
        MembershipWindow.peer_id == peer_id,
        MembershipWindow.joined_seq < Message.seq,
        or_(MembershipWindow.left_seq.is_(None), Message.seq <= MembershipWindow.left_seq),
    )


def message_conditions(scope: MessageScope) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [Message.workspace_id == scope.workspace_id]
    if scope.session_id is not None:
        conds.append(Message.session_id == scope.session_id)
    if scope.session_ids is not None:
        conds.append(Message.session_id.in_(scope.session_ids))
    if scope.author is not None:
        conds.append(Message.peer_id == scope.author)
    if scope.witness is not None:
        conds.append(witnessed_by(scope.witness))
    if scope.condition is not None:
        conds.append(scope.condition)
    return conds


def conclusion_conditions(scope: ConclusionScope) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [
        Conclusion.workspace_id == scope.workspace_id,
        Conclusion.observer_id == scope.observer,
        Conclusion.observed_id == scope.observed,
    ]
    if scope.session_id is not None:
        conds.append(Conclusion.session_id == scope.session_id)
    if scope.session_ids is not None:
        conds.append(Conclusion.session_id.in_(scope.session_ids))
    return conds


def _or_query(vector: Any, query: str) -> tuple[ColumnElement[bool], Any]:
    """Full-text match of a stored tsvector column on ANY query lexeme (plainto_tsquery ANDs
    them, too strict for questions), with its cover-density rank."""
    tsquery = func.to_tsquery(
        literal_column("'english'"),
        func.replace(
            cast(func.plainto_tsquery(literal_column("'english'"), query), Text), "&", "|"
        ),
    )
    return vector.op("@@")(tsquery), func.ts_rank_cd(vector, tsquery)


def without_names(query: str, names: Sequence[str]) -> str:
    """The query minus the peers a scope already fixes: in one view every conclusion is about
    the observed peer, so its name matches them all and only costs time."""
    words = [w for w in re.split(r"(\W+)", query) if w.lower() not in {n.lower() for n in names}]
    stripped = "".join(words).strip()
    return stripped or query


def fuse(
    lists: Sequence[Sequence[str]],
    *,
    in_window: set[str] | None = None,
    recency_order: Sequence[str] = (),
) -> dict[str, float]:
    """Reciprocal-rank fusion of ranked id lists, with the time and recency boosts."""
    scores: dict[str, float] = {}
    for ranked in lists:
        for rank, item in enumerate(ranked):
            scores[item] = scores.get(item, 0.0) + 1.0 / (RRF_K + rank + 1)
    for item in in_window or ():
        if item in scores:
            scores[item] += TIME_BOOST
    for rank, item in enumerate(recency_order):
        if item in scores:
            scores[item] += RECENCY_BOOST * (1.0 - rank / max(len(recency_order), 1))
    return scores


class HybridRetriever:
    """Searches messages and conclusions within a scope (see module docstring)."""

    def __init__(
        self,
        *,
        session_factory: async_sessionmaker[AsyncSession],
        embedder: Embedder,
        vectors: VectorStore,
    ) -> None:
        self.session_factory = session_factory
        self.embedder = embedder
        self.vectors = vectors
        self._ready = False

    async def _ensure(self) -> None:
        if not self._ready:
            for name in (MESSAGE_VECTORS, CONCLUSION_VECTORS):
                await self.vectors.ensure_collection(name, self.embedder.dimensions)
            self._ready = True

    async def embed_query(self, query: str) -> list[float]:
        [vector] = await self.embedder.embed([query])
        return vector

    async def search_messages(
        self,
        query: str,
        scope: MessageScope,
        *,
        limit: int,
        window: TimeWindow | None = None,
        min_similarity: float | None = None,
        keyword_query: str | None = None,
        vector: list[float] | None = None,
    ) -> list[Hit[Message]]:
        await self._ensure()
        pool = max(limit * 3, 20)
        must: dict[str, FilterValue] = {}
        if scope.session_id is not None:
            must["session_id"] = scope.session_id
        if scope.author is not None:
            must["peer_id"] = scope.author
        contains = {"witnesses": scope.witness} if scope.witness is not None else {}
        any_of = {"session_id": scope.session_ids} if scope.session_ids is not None else {}
        vector = vector or await self.embed_query(query)
        vector_ids = await self._nearest_messages(
            vector,
            VectorFilter(scope.workspace_id, must=must, any_of=any_of, contains=contains),
            scope,
            pool=pool,
            limit=limit,
            min_score=min_similarity,
        )
        async with unit_of_work(self.session_factory) as db:
            conds = message_conditions(scope)
            matches, rank = _or_query(Message.content_tsv, keyword_query or query)
            text_rows = await db.execute(
                select(Message.id).where(*conds, matches).order_by(rank.desc()).limit(pool)
            )
            text_ids = list(text_rows.scalars().all())
            candidates = list(dict.fromkeys(vector_ids + text_ids))
            if not candidates:
                return []
            # Loading re-applies the whole scope: a vector hit outside it is dropped here.
            rows = await db.execute(select(Message).where(*conds, Message.id.in_(candidates)))
            loaded = {m.id: m for m in rows.scalars().all()}
        return self._rank(
            [vector_ids, text_ids],
            loaded,
            window,
            limit,
            key=lambda m: (m.created_at, m.seq),
            when=lambda m: m.created_at,
            channels={"vector": set(vector_ids), "text": set(text_ids)},
        )

    async def _nearest_messages(
        self,
        vector: list[float],
        flt: VectorFilter,
        scope: MessageScope,
        *,
        pool: int,
        limit: int,
        min_score: float | None,
    ) -> list[str]:
        """Ids of the nearest message vectors. The filter DSL (``scope.condition``) exists only
        in SQL, so it may drop most of them: widen the pool until ``limit`` survive, the store
        has no more, or ``MAX_FILTERED_POOL``."""
        while True:
            hits = await self.vectors.query(
                MESSAGE_VECTORS, vector, flt, limit=pool, min_score=min_score
            )
            ids = [h.id for h in hits]
            if scope.condition is None or len(ids) < pool or pool >= MAX_FILTERED_POOL:
                return ids
            async with unit_of_work(self.session_factory) as db:
                kept = await db.execute(
                    select(func.count())
                    .select_from(Message)
                    .where(*message_conditions(scope), Message.id.in_(ids))
                )
            if kept.scalar_one() >= limit:
                return ids
            pool = min(pool * 8, MAX_FILTERED_POOL)

    async def search_conclusions(
        self,
        query: str,
        scope: ConclusionScope,
        *,
        limit: int,
        window: TimeWindow | None = None,
        min_similarity: float | None = None,
        keyword_query: str | None = None,
        vector: list[float] | None = None,
    ) -> list[Hit[Conclusion]]:
        await self._ensure()
        pool = max(limit * 3, 20)
        must: dict[str, FilterValue] = {
            "observer_id": scope.observer,
            "observed_id": scope.observed,
        }
        if scope.session_id is not None:
            must["session_id"] = scope.session_id
        any_of = {"session_id": scope.session_ids} if scope.session_ids is not None else {}
        vector = vector or await self.embed_query(query)
        vector_hits = await self.vectors.query(
            CONCLUSION_VECTORS,
            vector,
            VectorFilter(scope.workspace_id, must=must, any_of=any_of),
            limit=pool,
            min_score=min_similarity,
        )
        vector_ids = [h.id for h in vector_hits]
        async with unit_of_work(self.session_factory) as db:
            conds = conclusion_conditions(scope)
            matches, rank = _or_query(
                Conclusion.content_tsv,
                without_names(keyword_query or query, [scope.observed, scope.observer]),
            )
            text_rows = await db.execute(
                select(Conclusion.id).where(*conds, matches).order_by(rank.desc()).limit(pool)
            )
            text_ids = list(text_rows.scalars().all())
            candidates = list(dict.fromkeys(vector_ids + text_ids))
            if not candidates:
                return []
            rows = await db.execute(select(Conclusion).where(*conds, Conclusion.id.in_(candidates)))
            loaded = {c.id: c for c in rows.scalars().all()}
        return self._rank(
            [vector_ids, text_ids],
            loaded,
            window,
            limit,
            key=lambda c: (c.created_at, c.id),
            when=lambda c: c.created_at,
            channels={"vector": set(vector_ids), "text": set(text_ids)},
        )

    @staticmethod
    def _rank(
        lists: list[list[str]],
        loaded: dict[str, T],
        window: TimeWindow | None,
        limit: int,
        *,
        key: Any,
        when: Any,
        channels: dict[str, set[str]],
    ) -> list[Hit[T]]:
        present = [[i for i in ranked if i in loaded] for ranked in lists]
        in_window = (
            {i for i, item in loaded.items() if window.start <= when(item) < window.end}
            if window
            else None
        )
        newest_first = sorted(loaded, key=lambda i: key(loaded[i]), reverse=True)
        scores = fuse(present, in_window=in_window, recency_order=newest_first)
        ranked = sorted(scores, key=lambda i: scores[i], reverse=True)[:limit]
        return [
            Hit(
                item=loaded[i],
                score=scores[i],
                channels={name for name, ids in channels.items() if i in ids},
            )
            for i in ranked
        ]


def conclusions_recent_first(scope: ConclusionScope, limit: int) -> Any:
    """SELECT of the newest conclusions of a view."""
    return (
        select(Conclusion)
        .where(and_(*conclusion_conditions(scope)))
        .order_by(Conclusion.created_at.desc(), Conclusion.id)
        .limit(limit)
    )
