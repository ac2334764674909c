"""Hybrid retrieval over what one observer may know: vectors + Postgres full text, score-fused.

Every search takes a *scope* that states whose knowledge it searches, and every channel applies
it: the vector store filters on the message's ``witnesses`` (members at send time) or the
conclusion's ``observer_id``/``observed_id``, and the SQL that loads the hits re-applies the
membership windows (defence in depth) — so nothing reaches an observer it did not witness.

Channels
--------
* **vector**: the ``VECTOR_POOL`` nearest items (cosine similarity). A message is embedded as
  ``"peer_id: content"`` (:func:`message_index_text`): questions name the speaker.
* **full text**: Okapi BM25 (k1 1.2, b 0.75) over a *bounded* candidate set — the rows of the
  scope whose stored ``content_tsv`` (GIN-indexed; for messages it covers the speaker's peer id
  too) matches any lexeme of the query, at most ``TEXT_CANDIDATES`` of them. When a query has
  more matches than that, its most frequent lexeme is dropped from the match (it would weigh
  little in BM25 anyway) until the set fits, so the cost never grows with the number of rows
  a common word matches. Term statistics (document frequencies, lengths) are taken over the
  candidates, the collection size over the scope (counted up to ``SCOPE_COUNT_CAP``).

Ranking: a convex combination of the two channels' absolute scores,
``TEXT_WEIGHT * bm25 + (1 - TEXT_WEIGHT) * cosine``, where bm25 is divided by the query's
ceiling (:func:`bm25_scores`), so both lie in [0, 1] and a score means the same in every search
(the dialectic merges message and conclusion searches by score); an item the vector channel
did not return counts with the pool's lowest similarity. Reciprocal-rank fusion was measured
worse on LoCoMo (it throws away how far apart the scores are; ``bench/README.md``), and so was
dividing each channel by its best score in the query. Then two small boosts: hits inside a
time range resolved from the query ("yesterday", "in May"), and recency as a tie-breaker.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    Text,
    and_,
    bindparam,
    cast,
    exists,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import TSQUERY
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

#: Weight of the full-text (BM25) channel in the fused score; the vector channel has the rest.
TEXT_WEIGHT = 0.5
#: Nearest vectors asked for, and best BM25 candidates kept, per search (at least).
VECTOR_POOL = 60
TEXT_POOL = 60
#: Most rows the full-text channel scores per query (see the module docstring).
TEXT_CANDIDATES = 500
#: The collection size of the BM25 statistics is counted up to this many rows.
SCOPE_COUNT_CAP = 5000
BM25_K1 = 1.2
BM25_B = 0.75
#: Added to the fused score (at most 1.0) of an item inside the query's time range.
TIME_BOOST = 0.1
#: Recency only breaks ties: far below any meaningful score difference.
RECENCY_BOOST = 1e-6
#: Largest vector pool of a search with a filter-DSL condition (see ``_nearest_messages``).
MAX_FILTERED_POOL = 500
_TSV_ENTRY = re.compile(r"'((?:[^']|'')*)'(?::([0-9A-D,]+))?")


def message_index_text(peer_id: str, content: str) -> str:
    """What is embedded for a message: its speaker and its text."""
    return f"{peer_id}: {content}"


def parse_tsvector(text: str) -> dict[str, int]:
    """``'lexeme':1,4 'other':2`` (a tsvector's text form) → {lexeme: occurrences}."""
    out: dict[str, int] = {}
    for m in _TSV_ENTRY.finditer(text):
        lexeme = m.group(1).replace("''", "'")
        out[lexeme] = len(m.group(2).split(",")) if m.group(2) else 1
    return out


def term_counts(tsv: str, terms: Sequence[str]) -> tuple[dict[str, int], int]:
    """Occurrences of each of ``terms`` in the text form of a tsvector made by
    ``to_tsvector`` (``'a':1,3 'b':2``: entries separated by one space, lexemes without
    spaces), and the document's length (all its positions) — string scans, no full parse."""
    if not tsv:
        return {}, 1
    counts: dict[str, int] = {}
    for term in terms:
        quoted = "'" + term.replace("'", "''") + "'"
        at = -1
        while True:
            at = tsv.find(quoted, at + 1)
            if at < 0 or at == 0 or tsv[at - 1] == " ":
                break
        end = at + len(quoted)
        if at < 0 or (end < len(tsv) and tsv[end] not in ": "):
            continue
        if end < len(tsv) and tsv[end] == ":":
            stop = tsv.find(" ", end)
            counts[term] = tsv.count(",", end, stop if stop >= 0 else len(tsv)) + 1
        else:
            counts[term] = 1
    return counts, tsv.count(" ") + 1 + tsv.count(",")


def tsquery_any(lexemes: Sequence[str]) -> str:
    """The tsquery text matching any of ``lexemes`` (already normalised, quoted verbatim)."""
    return " | ".join("'" + lex.replace("'", "''") + "'" for lex in lexemes)


def bm25_scores(
    docs: dict[str, dict[str, int]],
    terms: Sequence[str],
    collection_size: int,
    known_df: dict[str, float] | None = None,
    lengths: dict[str, int] | None = None,
) -> dict[str, float]:
    """Okapi BM25 of each document (id → {lexeme: count}) for ``terms``, divided by the
    query's ceiling (the sum over its terms of idf * (k1 + 1), what an endless document made
    of them would score; a term no document has counts with the highest idf): a value in
    [0, 1) that is comparable between queries and collections. Statistics over ``docs``
    (document frequencies not in ``known_df``), with ``collection_size`` rows in the
    collection (≥ len(docs))."""
    if not docs or not terms:
        return {}
    n = max(collection_size, len(docs))
    lengths = {i: sum(d.values()) for i, d in docs.items()}
    avg = sum(lengths.values()) / len(lengths) or 1.0
    df: dict[str, float] = dict(Counter(t for d in docs.values() for t in terms if t in d))
    for t, f in (known_df or {}).items():
        if t in df:
            df[t] = max(df[t], f)
    idf = {t: math.log(1.0 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
    # A term no document has still counts in the ceiling, with the highest idf: a document
    # matching only the query's other words is that much less of a match.
    absent = math.log(1.0 + (n + 0.5) / 0.5) * len(set(terms) - idf.keys())
    ceiling = (sum(idf.values()) + absent) * (BM25_K1 + 1.0)
    if ceiling <= 0:
        return {}
    scores: dict[str, float] = {}
    for i, d in docs.items():
        norm = BM25_K1 * (1.0 - BM25_B + BM25_B * lengths[i] / avg)
        s = sum(idf[t] * d[t] * (BM25_K1 + 1.0) / (d[t] + norm) for t in idf if t in d)
        if s > 0:
            scores[i] = s / ceiling
    return scores


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


def without_names(query: str, names: Sequence[str]) -> str:
    """The query minus the peers a scope already fixes: in one view every conclusion is about
    the observed peer, so its name matches them all and only costs time."""
    words = [w for w in re.split(r"(\W+)", query) if w.lower() not in {n.lower() for n in names}]
    stripped = "".join(words).strip()
    return stripped or query


def fuse(
    vector_scores: dict[str, float],
    text_scores: dict[str, float],
    *,
    in_window: set[str] | None = None,
    recency_order: Sequence[str] = (),
) -> dict[str, float]:
    """Convex combination of the channels' absolute scores (cosine similarity, BM25 over its
    ceiling), plus the time and recency boosts (see the module docstring)."""
    floor_v = min(vector_scores.values(), default=0.0)
    scores: dict[str, float] = {}
    for item in vector_scores.keys() | text_scores.keys():
        cos = max(vector_scores.get(item, floor_v), 0.0)
        scores[item] = TEXT_WEIGHT * text_scores.get(item, 0.0) + (1.0 - TEXT_WEIGHT) * cos
    for item in in_window or ():
        if item in scores:
            scores[item] += TIME_BOOST
    for rank, item in enumerate(recency_order):
        if item in scores:
            scores[item] += RECENCY_BOOST * (1.0 - rank / max(len(recency_order), 1))
    return scores


async def full_text_scores(
    db: AsyncSession,
    id_col: Any,
    tsv_col: Any,
    conds: Sequence[ColumnElement[bool]],
    query: str,
    *,
    limit: int,
) -> dict[str, float]:
    """The ``limit`` best BM25 scores (id → score) of the rows matching ``conds`` for
    ``query``, over a bounded candidate set (see the module docstring)."""
    scope_rows = select(literal_column("1")).where(*conds).limit(SCOPE_COUNT_CAP).subquery()
    stats = await db.execute(
        select(
            cast(func.to_tsvector(literal_column("'english'"), query), Text),
            select(func.count()).select_from(scope_rows).scalar_subquery(),
        )
    )
    lexemes, collection = stats.one()
    terms = list(parse_tsvector(lexemes or ""))
    if not terms:
        return {}
    matching = list(terms)
    docs: dict[str, dict[str, int]] = {}
    lengths: dict[str, int] = {}
    #: Dropped (too frequent) lexemes: their frequency estimated from the larger sample.
    known_df: dict[str, float] = {}
    while matching:
        tsq = cast(bindparam("tsq", tsquery_any(matching), type_=Text), TSQUERY)
        rows = await db.execute(
            select(id_col, cast(tsv_col, Text))
            .where(*conds, tsv_col.op("@@")(tsq))
            .limit(TEXT_CANDIDATES)
        )
        docs, lengths = {}, {}
        for i, v in rows.all():
            docs[str(i)], lengths[str(i)] = term_counts(v or "", terms)
        if len(docs) < TEXT_CANDIDATES or len(matching) == 1:
            break
        seen = Counter(t for d in docs.values() for t in matching if t in d)
        common = max(matching, key=lambda t: seen[t])
        matching.remove(common)
        known_df[common] = max(seen[common], seen[common] / len(docs) * collection)
    scores = bm25_scores(docs, terms, int(collection), known_df, lengths)
    best = sorted(scores, key=lambda i: scores[i], reverse=True)[:limit]
    return {i: scores[i] for i in best}


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
        pool = max(limit * 3, VECTOR_POOL)
        must: dict[str, FilterValue] = {}
        if scope.session_id is not None:
            must["session_id"] = scope.session_id
        if scope.author is not None:
            must["peer_id"] = scope.author
        contains = {"witnesses": scope.witness} if scope.witness is not None else {}
        any_of = {"session_id": scope.session_ids} if scope.session_ids is not None else {}
        vector = vector or await self.embed_query(query)
        vector_scores = await self._nearest_messages(
            vector,
            VectorFilter(scope.workspace_id, must=must, any_of=any_of, contains=contains),
            scope,
            pool=pool,
            limit=limit,
            min_score=min_similarity,
        )
        async with unit_of_work(self.session_factory) as db:
            conds = message_conditions(scope)
            text_scores = await full_text_scores(
                db,
                Message.id,
                Message.content_tsv,
                conds,
                keyword_query or query,
                limit=max(limit * 3, TEXT_POOL),
            )
            candidates = list(dict.fromkeys([*vector_scores, *text_scores]))
            if not candidates:
                return []
            # Loading re-applies the whole scope: a vector hit outside it is dropped here.
            rows = await db.execute(select(Message).where(*conds, Message.id.in_(candidates)))
            loaded = {m.id: m for m in rows.scalars().all()}
        return self._rank(
            vector_scores,
            text_scores,
            loaded,
            window,
            limit,
            key=lambda m: (m.created_at, m.seq),
            when=lambda m: m.created_at,
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
    ) -> dict[str, float]:
        """The nearest message vectors (id → cosine similarity). The filter DSL
        (``scope.condition``) exists only in SQL, so it may drop most of them: widen the pool
        until ``limit`` survive, the store has no more, or ``MAX_FILTERED_POOL``."""
        while True:
            hits = await self.vectors.query(
                MESSAGE_VECTORS, vector, flt, limit=pool, min_score=min_score
            )
            found = {h.id: h.score for h in hits}
            if scope.condition is None or len(found) < pool or pool >= MAX_FILTERED_POOL:
                return found
            async with unit_of_work(self.session_factory) as db:
                kept = await db.execute(
                    select(func.count())
                    .select_from(Message)
                    .where(*message_conditions(scope), Message.id.in_(list(found)))
                )
            if kept.scalar_one() >= limit:
                return found
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
        pool = max(limit * 3, VECTOR_POOL)
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
        vector_scores = {h.id: h.score for h in vector_hits}
        async with unit_of_work(self.session_factory) as db:
            conds = conclusion_conditions(scope)
            text_scores = await full_text_scores(
                db,
                Conclusion.id,
                Conclusion.content_tsv,
                conds,
                without_names(keyword_query or query, [scope.observed, scope.observer]),
                limit=max(limit * 3, TEXT_POOL),
            )
            candidates = list(dict.fromkeys([*vector_scores, *text_scores]))
            if not candidates:
                return []
            rows = await db.execute(select(Conclusion).where(*conds, Conclusion.id.in_(candidates)))
            loaded = {c.id: c for c in rows.scalars().all()}
        return self._rank(
            vector_scores,
            text_scores,
            loaded,
            window,
            limit,
            key=lambda c: (c.created_at, c.id),
            when=lambda c: c.created_at,
        )

    @staticmethod
    def _rank(
        vector_scores: dict[str, float],
        text_scores: dict[str, float],
        loaded: dict[str, T],
        window: TimeWindow | None,
        limit: int,
        *,
        key: Any,
        when: Any,
    ) -> list[Hit[T]]:
        in_window = (
            {i for i, item in loaded.items() if window.start <= when(item) < window.end}
            if window
            else None
        )
        newest_first = sorted(loaded, key=lambda i: key(loaded[i]), reverse=True)
        scores = fuse(
            {i: v for i, v in vector_scores.items() if i in loaded},
            {i: t for i, t in text_scores.items() if i in loaded},
            in_window=in_window,
            recency_order=newest_first,
        )
        ranked = sorted(scores, key=lambda i: scores[i], reverse=True)[:limit]
        return [
            Hit(
                item=loaded[i],
                score=scores[i],
                channels={
                    name
                    for name, ids in (("vector", vector_scores), ("text", text_scores))
                    if i in ids
                },
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
