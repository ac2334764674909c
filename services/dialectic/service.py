"""The dialectic: answer a peer's question from exactly what that peer may know.

Scope (perspective)
-------------------
* No target (or the peer itself): the peer's own global view — conclusions (peer, peer) — and
  every message the peer *witnessed* (it was a member of the session when it was sent), by
  whoever wrote it.
* ``target=Y``: the peer's view of Y — conclusions (peer, Y) — and the messages Y wrote that
  the peer witnessed (``MessageScope(witness=peer, author=Y)``).
* ``session_id`` / ``filters.session_id`` restrict both to those sessions.
* The peer card of that view ((peer, peer) or (peer, Y)).

Nothing else is read, so nothing else can reach the answer — or the prompt of an LLM.

Retrieval
---------
Hybrid search (:class:`~libs.common.retrieval.hybrid.HybridRetriever`: vectors + Postgres full
text (BM25), score-fused, recency as a tie-breaker) over messages and conclusions. The
reasoning level sets the depth (evidence items handed to the answerer) and the number of
retrieval rounds:

============  =====  ======
level         depth  rounds
============  =====  ======
``minimal``   3      1
``low``       6      1
``medium``    10     2
``high``      16     2
``max``       24     3
============  =====  ======

A further round searches again with the question plus the most frequent content words of the
three best items found so far (query expansion: "breakfast" finds "eggs", the next round finds
the other egg stories); its hits count half as much as the previous round's. Scores are absolute
(see :mod:`libs.common.retrieval.hybrid`), so message and conclusion hits compete on one scale;
a conclusion's counts ``CONCLUSION_WEIGHT`` (0.6) of it. Conclusions are short restatements of
messages (the extractive reasoner writes "you" as the other peer's name), so one that shares a
single name with the question scored as high as the message that answers it; the weight was
chosen on LoCoMo conversation conv-26 (dialectic evidence recall 0.53 → 0.65 there) and
checked on held-out conversations (``bench/README.md``). A conclusion whose source messages
are all among the chosen evidence gives its slot to the next item that does not restate them
(when there is one). Both answerers (extractive and LLM) get the same evidence.

Time expressions ("yesterday", "last week", "in May") are resolved with
:func:`~libs.common.retrieval.timeparse.resolve_time_range` against the date of the newest
message in scope (so "today" means the day of the latest activity, also for imported history;
the current time when the scope has no message). The phrase is removed from the search text, an
extra message search is restricted to the range, hits inside it are boosted, and when any
evidence falls inside the range only that evidence is kept (otherwise all of it, with dates).

Citations
---------
The ids of the evidence the answer reproduces: an item is cited when at least 60 % of its
keywords (:func:`~libs.common.reasoning.answers.keywords`) occur in the answer. An abstention
cites nothing.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.errors import (
    BadRequestError,
    DependencyUnavailableError,
    NotFoundError,
    RapportError,
)
from libs.common.models import Conclusion, Message
from libs.common.reasoning.answers import ABSTENTION, content_words, keywords
from libs.common.reasoning.port import (
    AnswerRequest,
    Evidence,
    Reasoner,
    ReasonerError,
    ReasoningLevel,
    TransientReasonerError,
    UnsupportedRequestError,
)
from libs.common.retrieval.hybrid import (
    ConclusionScope,
    Hit,
    HybridRetriever,
    MessageScope,
    TimeWindow,
)
from libs.common.retrieval.timeparse import resolve_time_range, strip_time_expression
from services.dialectic.repository import DialecticRepository

DEPTH: dict[ReasoningLevel, int] = {"minimal": 3, "low": 6, "medium": 10, "high": 16, "max": 24}
ROUNDS: dict[ReasoningLevel, int] = {"minimal": 1, "low": 1, "medium": 2, "high": 2, "max": 3}
EXPANSION_SOURCES = 3
EXPANSION_TERMS = 8
NEXT_ROUND_WEIGHT = 0.5
#: A conclusion hit counts this much of a message hit with the same score (module docstring).
CONCLUSION_WEIGHT = 0.6
CITE_COVERAGE = 0.6

RESPONSE_FORMAT_NEEDS_LLM = (
    "response_format needs an LLM: structured answers are written by the LLM reasoner, and "
    "this server runs the extractive reasoner (no model). Set RAPPORT_LLM_BASE_URL to an "
    "OpenAI-compatible endpoint, or omit response_format."
)


class ModelError(RapportError):
    """The LLM endpoint answered, but not usably (a 4xx, or output that stays invalid)."""

    status_code = 502
    default_detail = "The LLM endpoint returned an unusable answer"


@dataclass(frozen=True)
class ChatQuery:
    """One ``peer.chat`` call, validated and authorised."""

    workspace_id: str
    peer_id: str
    query: str
    target: str | None = None
    #: Restrict to these sessions (None: every session).
    session_ids: tuple[str, ...] | None = None
    reasoning_level: ReasoningLevel = "low"
    response_format: dict[str, Any] | None = None


@dataclass(frozen=True)
class ChatPlan:
    """What to search (the asker's view), resolved from the database: scopes, time window,
    peer card. Retrieval then needs no database session of the request."""

    query: ChatQuery
    target: str | None
    messages: MessageScope
    conclusions: ConclusionScope
    search_text: str
    window: TimeWindow | None
    now: datetime
    peer_card: list[str]


@dataclass(frozen=True)
class PreparedChat:
    """The answerer's input plus the rows behind the evidence (for citations and evidence)."""

    request: AnswerRequest
    messages: dict[str, Message] = field(default_factory=dict)
    conclusions: dict[str, Conclusion] = field(default_factory=dict)
    window: TimeWindow | None = None


@dataclass(frozen=True)
class ChatAnswer:
    content: str
    message_ids: list[str]
    conclusion_ids: list[str]


@dataclass
class _Found:
    evidence: Evidence
    row: Message | Conclusion
    score: float


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _message_evidence(m: Message) -> Evidence:
    return Evidence(
        kind="message",
        id=m.id,
        content=m.content,
        speaker=m.peer_id,
        created_at=m.created_at,
        session_id=m.session_id,
    )


def _conclusion_evidence(c: Conclusion) -> Evidence:
    return Evidence(
        kind="conclusion",
        id=c.id,
        content=c.content,
        speaker=c.observed_id,
        created_at=c.created_at,
        session_id=c.session_id,
    )


class DialecticService:
    """The database part of a ``peer.chat`` call (in the request's unit of work): checks and
    the :class:`ChatPlan`. :class:`DialecticAnswerer` retrieves and answers."""

    def __init__(
        self,
        db: AsyncSession,
        *,
        reasoner: Reasoner,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.repo = DialecticRepository(db)
        self.reasoner = reasoner
        self.clock = clock

    async def is_member(self, workspace_id: str, session_id: str, peer_id: str) -> bool:
        return await self.repo.is_member(workspace_id, session_id, peer_id)

    def check_supported(self, query: ChatQuery) -> None:
        """400 before any work when the request needs what this reasoner cannot do."""
        if query.response_format is not None and self.reasoner.name == "extractive":
            raise BadRequestError(RESPONSE_FORMAT_NEEDS_LLM)

    async def require_resources(self, query: ChatQuery) -> None:
        """404 for an unknown workspace, peer, target or session."""
        ws = query.workspace_id
        if not await self.repo.workspace_exists(ws):
            raise NotFoundError(f"Workspace '{ws}' not found")
        wanted = [query.peer_id] + ([query.target] if query.target else [])
        found = await self.repo.existing_peers(ws, wanted)
        for peer in wanted:
            if peer not in found:
                raise NotFoundError(f"Peer '{peer}' not found in workspace '{ws}'")
        if query.session_ids:
            sessions = await self.repo.existing_sessions(ws, query.session_ids)
            for session in query.session_ids:
                if session not in sessions:
                    raise NotFoundError(f"Session '{session}' not found in workspace '{ws}'")

    async def plan(self, query: ChatQuery) -> ChatPlan:
        """Check, then resolve the asker's view, the time window and the peer card."""
        self.check_supported(query)
        await self.require_resources(query)
        target = query.target if query.target != query.peer_id else None
        subject = target or query.peer_id
        messages = MessageScope(
            workspace_id=query.workspace_id,
            witness=query.peer_id,
            author=target,
            session_ids=query.session_ids,
        )
        conclusions = ConclusionScope(
            workspace_id=query.workspace_id,
            observer=query.peer_id,
            observed=subject,
            session_ids=query.session_ids,
        )
        now = self.clock()
        window: TimeWindow | None = None
        search_text = query.query
        if resolve_time_range(query.query, now=now) is not None:
            now = await self.repo.newest_message_at(messages) or now
            found = resolve_time_range(query.query, now=now)
            if found is not None:
                window = TimeWindow(start=found.start, end=found.end)
                search_text = strip_time_expression(query.query, found).strip() or query.query
        return ChatPlan(
            query=query,
            target=target,
            messages=messages,
            conclusions=conclusions,
            search_text=search_text,
            window=window,
            now=now,
            peer_card=await self.repo.peer_card(query.workspace_id, query.peer_id, subject),
        )


class DialecticAnswerer:
    """Retrieves the evidence of a :class:`ChatPlan` and answers with the reasoner. It holds no
    database session of the request (the retriever opens short ones of its own), so answers —
    streamed ones included — never keep a request's connection checked out."""

    def __init__(self, *, retriever: HybridRetriever, reasoner: Reasoner) -> None:
        self.retriever = retriever
        self.reasoner = reasoner

    async def gather(self, plan: ChatPlan) -> PreparedChat:
        """The best evidence of the plan's view, ranked (see the module docstring)."""
        query = plan.query
        level = query.reasoning_level
        names = {query.peer_id, plan.target or query.peer_id}
        pool = await self._retrieve(plan, level, names)
        ranked = sorted(pool.values(), key=lambda f: f.score, reverse=True)
        window = plan.window
        if window is not None:
            inside = [f for f in ranked if window.start <= f.evidence.created_at < window.end]
            ranked = inside or ranked
        ranked = _without_echoes(ranked, DEPTH[level])[: DEPTH[level]]
        return PreparedChat(
            request=AnswerRequest(
                question=query.query,
                asker=query.peer_id,
                target=plan.target,
                evidence=[f.evidence for f in ranked],
                peer_card=plan.peer_card,
                now=plan.now,
                reasoning_level=level,
                response_format=query.response_format,
            ),
            messages={f.row.id: f.row for f in ranked if isinstance(f.row, Message)},
            conclusions={f.row.id: f.row for f in ranked if isinstance(f.row, Conclusion)},
            window=window,
        )

    async def _retrieve(
        self, plan: ChatPlan, level: ReasoningLevel, names: set[str]
    ) -> dict[str, _Found]:
        text, messages, conclusions, window = (
            plan.search_text,
            plan.messages,
            plan.conclusions,
            plan.window,
        )
        depth = DEPTH[level]
        pool: dict[str, _Found] = {}
        query = text
        question = keywords(text, names)
        for round_ in range(ROUNDS[level]):
            weight = NEXT_ROUND_WEIGHT**round_
            vector = await self.retriever.embed_query(query)
            searches: list[Any] = [
                self.retriever.search_messages(
                    query, messages, limit=depth, window=window, vector=vector
                ),
                self.retriever.search_conclusions(
                    query, conclusions, limit=depth, window=window, vector=vector
                ),
            ]
            if window is not None and round_ == 0:
                inside = and_(Message.created_at >= window.start, Message.created_at < window.end)
                scoped = replace(messages, condition=inside)
                searches.append(
                    self.retriever.search_messages(
                        query, scoped, limit=depth, window=window, vector=vector
                    )
                )
            results: list[list[Hit[Any]]] = await asyncio.gather(*searches)
            for hits in results:
                for hit in hits:
                    self._add(pool, hit, weight)
            if round_ + 1 >= ROUNDS[level]:
                break
            best = sorted(pool.values(), key=lambda f: f.score, reverse=True)
            counts: Counter[str] = Counter()
            for found in best[:EXPANSION_SOURCES]:
                counts.update(content_words(found.evidence.content, names))
            extra = [w for w, _ in counts.most_common() if not keywords(w) & question][
                :EXPANSION_TERMS
            ]
            if not extra:
                break
            query = f"{text} {' '.join(extra)}"
        return pool

    @staticmethod
    def _add(pool: dict[str, _Found], hit: Hit[Any], weight: float) -> None:
        item = hit.item
        if isinstance(item, Message):
            key, evidence = f"m:{item.id}", _message_evidence(item)
        elif isinstance(item, Conclusion):
            key, evidence = f"c:{item.id}", _conclusion_evidence(item)
        else:  # pragma: no cover - the retriever returns only these
            return
        score = hit.score * weight
        if isinstance(item, Conclusion):
            score *= CONCLUSION_WEIGHT
        known = pool.get(key)
        if known is None:
            pool[key] = _Found(evidence=evidence, row=item, score=score)
        elif score > known.score:
            known.score = score

    async def answer(self, prepared: PreparedChat) -> ChatAnswer:
        try:
            content = await self.reasoner.answer(prepared.request)
        except ReasonerError as exc:
            raise _mapped(exc) from exc
        return self.cite(prepared, content)

    async def stream(self, prepared: PreparedChat) -> AsyncIterator[str]:
        """The answer in chunks (their concatenation is what :meth:`answer` returns)."""
        try:
            async for chunk in self.reasoner.stream_answer(prepared.request):
                yield chunk
        except ReasonerError as exc:
            raise _mapped(exc) from exc

    @staticmethod
    def cite(prepared: PreparedChat, content: str) -> ChatAnswer:
        """The answer with the ids of the evidence it reproduces (see module docstring)."""
        if content.strip() == ABSTENTION:
            return ChatAnswer(content=content, message_ids=[], conclusion_ids=[])
        said = keywords(content)
        message_ids: list[str] = []
        conclusion_ids: list[str] = []
        for item in prepared.request.evidence:
            words = keywords(item.content)
            if not words or len(words & said) < CITE_COVERAGE * len(words):
                continue
            (message_ids if item.kind == "message" else conclusion_ids).append(item.id)
        return ChatAnswer(content=content, message_ids=message_ids, conclusion_ids=conclusion_ids)


def _without_echoes(ranked: list[_Found], depth: int) -> list[_Found]:
    """``ranked`` (best first) where the conclusions that only restate messages already among
    the best ``depth`` items (all their sources are there) give their slot to the next
    non-restating items — only as far as there are such items: with fewer candidates than
    ``depth`` nothing is dropped."""
    shown = {f.row.id for f in ranked[:depth] if isinstance(f.row, Message)}

    def echo(f: _Found) -> bool:
        return (
            isinstance(f.row, Conclusion)
            and bool(f.row.source_ids)
            and all(source in shown for source in f.row.source_ids)
        )

    kept = [f for f in ranked if not echo(f)]
    echoes = [f for f in ranked if echo(f)][: max(0, depth - len(kept))]
    restored = {id(f) for f in kept + echoes}
    return [f for f in ranked if id(f) in restored]


def _mapped(exc: ReasonerError) -> RapportError:
    if isinstance(exc, UnsupportedRequestError):
        return BadRequestError(str(exc))
    if isinstance(exc, TransientReasonerError):
        return DependencyUnavailableError(f"The LLM endpoint is unavailable, retry later: {exc}")
    return ModelError(f"The LLM endpoint returned an unusable answer: {exc}")
