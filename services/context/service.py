"""Read-path domain logic: get_context within a strict budget, summaries, representations,
peer cards, search and conclusion queries — always from one observer's perspective.

Token accounting (the budget of get_context): a message costs its stored ``token_count``, the
summary its ``token_count``, the representation ``count_tokens(text)`` and the card the sum of
``count_tokens(fact)`` — all o200k, the same tokenizer everywhere. The sum never exceeds
``tokens``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.errors import NotFoundError, ValidationError
from libs.common.filters import FieldSpec, build_filter
from libs.common.models import Conclusion, Message, Summary
from libs.common.retrieval.hybrid import (
    ConclusionScope,
    HybridRetriever,
    MessageScope,
    witnessed_by,
)
from libs.common.tokens import count_tokens
from services.context.repository import ContextRepository

#: Ceiling of get_context when the client gives no ``tokens``.
DEFAULT_CONTEXT_TOKENS = 100_000
SUMMARY_SHARE = 0.4
CARD_SHARE = 0.1
REPRESENTATION_SHARE = 0.25
DEFAULT_MAX_CONCLUSIONS = 25
MESSAGE_CHUNK = 200

MESSAGE_FIELDS = {
    "id": FieldSpec(Message.id, "str"),
    "session_id": FieldSpec(Message.session_id, "str"),
    "peer_id": FieldSpec(Message.peer_id, "str"),
    "created_at": FieldSpec(Message.created_at, "datetime"),
    "metadata": FieldSpec(Message.metadata_, "json"),
    "token_count": FieldSpec(Message.token_count, "int"),
    "workspace_id": FieldSpec(Message.workspace_id, "str"),
}
LEVEL_TITLES = {
    "explicit": "Explicit observations",
    "deductive": "Deductive observations",
    "inductive": "Inductive observations",
    "contradiction": "Contradictions",
}


@dataclass(frozen=True)
class RepresentationOptions:
    search_query: str | None = None
    search_top_k: int | None = None
    search_max_distance: float | None = None
    include_most_frequent: bool = False
    max_conclusions: int | None = None
    session_id: str | None = None


@dataclass(frozen=True)
class SessionContext:
    session_id: str
    messages: list[Message]
    summary: Summary | None
    representation: str | None
    card: list[str] | None

    def tokens(self) -> int:
        """The budget this context consumes (see the module docstring)."""
        return (
            sum(m.token_count for m in self.messages)
            + (self.summary.token_count if self.summary else 0)
            + (count_tokens(self.representation) if self.representation else 0)
            + sum(count_tokens(f) for f in self.card or [])
        )


def render_representation(conclusions: Sequence[Conclusion], max_tokens: int | None) -> str:
    """Conclusions grouped by level, newest first within a level, dated; cut to ``max_tokens``
    (whole lines only). Empty string when nothing fits."""
    by_level: dict[str, list[Conclusion]] = {}
    for c in conclusions:
        by_level.setdefault(c.level, []).append(c)
    lines: list[str] = []
    for level, title in LEVEL_TITLES.items():
        items = sorted(by_level.get(level, []), key=lambda c: c.created_at, reverse=True)
        if not items:
            continue
        block = [f"{title}:"] + [
            f"- [{c.created_at.date().isoformat()}] {c.content}" for c in items
        ]
        lines.extend(block)
    text = "\n".join(lines)
    if max_tokens is None or count_tokens(text) <= max_tokens:
        return text
    # Keep as many leading lines as fit (re-counting the whole text: BPE merges across lines).
    kept: list[str] = []
    for line in lines:
        candidate = "\n".join([*kept, line])
        if count_tokens(candidate) > max_tokens:
            break
        kept.append(line)
    while kept and kept[-1].endswith(":"):  # never end on an empty section title
        kept.pop()
    return "\n".join(kept)


def fit_card(facts: Sequence[str] | None, max_tokens: int) -> list[str] | None:
    if not facts:
        return None
    kept: list[str] = []
    used = 0
    for fact in facts:
        cost = count_tokens(fact)
        if used + cost > max_tokens:
            break
        kept.append(fact)
        used += cost
    return kept or None


def covers(windows: Sequence[tuple[int, int | None]], first: int, last: int) -> bool:
    """True when membership windows cover every seq in ``first..last`` (a peer witnessed them
    all)."""
    need = first
    for joined, left in sorted(windows):
        if joined >= need:  # a window covers seqs joined+1..left
            return False
        if left is None or left >= last:
            return True
        need = max(need, left + 1)
    return need > last


class ContextService:
    def __init__(self, db: AsyncSession, retriever: HybridRetriever) -> None:
        self.db = db
        self.repo = ContextRepository(db)
        self.retriever = retriever

    # -- existence checks ----------------------------------------------------------------
    async def require_workspace(self, workspace_id: str) -> None:
        if not await self.repo.workspace_exists(workspace_id):
            raise NotFoundError(f"Workspace '{workspace_id}' not found")

    async def require_peer(self, workspace_id: str, peer_id: str) -> None:
        if not await self.repo.peer_exists(workspace_id, peer_id):
            await self.require_workspace(workspace_id)
            raise NotFoundError(f"Peer '{peer_id}' not found in workspace '{workspace_id}'")

    async def require_session(self, workspace_id: str, session_id: str) -> None:
        if await self.repo.get_session(workspace_id, session_id) is None:
            await self.require_workspace(workspace_id)
            raise NotFoundError(f"Session '{session_id}' not found in workspace '{workspace_id}'")

    async def is_member(self, workspace_id: str, session_id: str, peer_id: str) -> bool:
        return await self.repo.is_member(workspace_id, session_id, peer_id)

    # -- summaries -----------------------------------------------------------------------
    async def visible_summary(
        self, workspace_id: str, session_id: str, summary_type: str, perspective: str | None
    ) -> Summary | None:
        """The latest summary of a type, unless ``perspective`` did not witness every message
        it covers (then nothing: a summary must not leak what the peer did not see)."""
        summary = await self.repo.latest_summary(workspace_id, session_id, summary_type)
        if summary is None or perspective is None:
            return summary
        windows = await self.repo.windows(workspace_id, session_id, perspective)
        return summary if covers(windows, 1, summary.message_seq) else None

    async def summaries(
        self, workspace_id: str, session_id: str, perspective: str | None
    ) -> tuple[Summary | None, Summary | None]:
        await self.require_session(workspace_id, session_id)
        return (
            await self.visible_summary(workspace_id, session_id, "short", perspective),
            await self.visible_summary(workspace_id, session_id, "long", perspective),
        )

    # -- representation & cards ----------------------------------------------------------
    async def select_conclusions(
        self, scope: ConclusionScope, options: RepresentationOptions
    ) -> list[Conclusion]:
        limit = options.max_conclusions or DEFAULT_MAX_CONCLUSIONS
        chosen: dict[str, Conclusion] = {}
        if options.search_query:
            hits = await self.retriever.search_conclusions(
                options.search_query,
                scope,
                limit=options.search_top_k or 10,
                min_similarity=(
                    None
                    if options.search_max_distance is None
                    else 1.0 - options.search_max_distance
                ),
            )
            for hit in hits:
                chosen.setdefault(hit.item.id, hit.item)
        # "Most frequent" has no separate signal yet: both fill with the newest conclusions.
        for c in await self.repo.recent_conclusions(scope, limit):
            if len(chosen) >= limit:
                break
            chosen.setdefault(c.id, c)
        return list(chosen.values())[:limit]

    async def representation(
        self,
        workspace_id: str,
        observer: str,
        observed: str,
        options: RepresentationOptions,
        *,
        max_tokens: int | None = None,
    ) -> str:
        scope = ConclusionScope(workspace_id, observer, observed, options.session_id)
        return render_representation(await self.select_conclusions(scope, options), max_tokens)

    async def card(self, workspace_id: str, observer: str, observed: str) -> list[str] | None:
        return await self.repo.card(workspace_id, observer, observed)

    async def set_card(
        self, workspace_id: str, observer: str, observed: str, facts: list[str]
    ) -> list[str]:
        await self.repo.set_card(workspace_id, observer, observed, facts)
        return facts

    async def views(
        self, workspace_id: str, observer: str | None
    ) -> list[tuple[str, str, int, int]]:
        """Every (observer, observed) view with its number of conclusions and card facts."""
        await self.require_workspace(workspace_id)
        return await self.repo.views(workspace_id, observer)

    # -- get_context ---------------------------------------------------------------------
    async def session_context(
        self,
        workspace_id: str,
        session_id: str,
        *,
        tokens: int | None,
        summary: bool,
        peer_target: str | None,
        peer_perspective: str | None,
        options: RepresentationOptions,
        limit_to_session: bool,
        witness: str | None = None,
    ) -> SessionContext:
        """Summary + newest messages + representation + card, in total ≤ ``tokens``.

        ``peer_perspective`` chooses whose view of ``peer_target`` is shown and, like
        ``witness``, limits messages and summaries to what that peer witnessed.
        """
        witness = witness or peer_perspective
        await self.require_session(workspace_id, session_id)
        if peer_perspective is not None and peer_target is None:
            raise ValidationError("peer_perspective needs peer_target")
        for peer in (peer_target, peer_perspective):
            if peer is not None:
                await self.require_peer(workspace_id, peer)
        budget = min(tokens or DEFAULT_CONTEXT_TOKENS, DEFAULT_CONTEXT_TOKENS * 10)
        used = 0
        card: list[str] | None = None
        representation: str | None = None
        if peer_target is not None:
            observer = peer_perspective or peer_target
            card = fit_card(
                await self.repo.card(workspace_id, observer, peer_target), int(budget * CARD_SHARE)
            )
            used += sum(count_tokens(f) for f in card or [])
            rep_options = RepresentationOptions(
                search_query=options.search_query,
                search_top_k=options.search_top_k,
                search_max_distance=options.search_max_distance,
                include_most_frequent=options.include_most_frequent,
                max_conclusions=options.max_conclusions,
                session_id=session_id if limit_to_session else None,
            )
            text = await self.representation(
                workspace_id,
                observer,
                peer_target,
                rep_options,
                max_tokens=int(budget * REPRESENTATION_SHARE),
            )
            representation = text or None
            used += count_tokens(representation) if representation else 0

        chosen: Summary | None = None
        if summary:
            cap = int((budget - used) * SUMMARY_SHARE)
            for kind in ("long", "short"):
                candidate = await self.visible_summary(workspace_id, session_id, kind, witness)
                if candidate is not None and 0 < candidate.token_count <= cap:
                    chosen = candidate
                    break
            used += chosen.token_count if chosen else 0

        messages = await self._newest_within(
            workspace_id,
            session_id,
            remaining=budget - used,
            after_seq=chosen.message_seq if chosen else 0,
            witness=witness,
        )
        return SessionContext(session_id, messages, chosen, representation, card)

    async def _newest_within(
        self,
        workspace_id: str,
        session_id: str,
        *,
        remaining: int,
        after_seq: int,
        witness: str | None,
    ) -> list[Message]:
        """The newest contiguous run of messages whose tokens fit ``remaining``.

        The run is chosen on ``(seq, token_count)`` pairs alone (an index-only read), then only
        the chosen messages are loaded: a 2,000-token context needs ~60 of the 200 rows a chunk
        scans, and loading every scanned row in full was most of the request's work.
        """
        picked: list[int] = []
        before: int | None = None
        condition = witnessed_by(witness) if witness is not None else None
        while remaining > 0:
            chunk = await self.repo.newest_token_counts(
                workspace_id,
                session_id,
                after_seq=after_seq,
                before_seq=before,
                limit=MESSAGE_CHUNK,
                condition=condition,
            )
            full = False
            for seq, tokens in chunk:
                if tokens > remaining:
                    full = True
                    break
                picked.append(seq)
                remaining -= tokens
            if full or len(chunk) < MESSAGE_CHUNK:
                break
            before = chunk[-1][0]
        return await self.repo.messages_by_seq(workspace_id, session_id, picked)

    # -- search --------------------------------------------------------------------------
    async def search_messages(
        self, query: str, scope: MessageScope, filters: dict[str, Any] | None, limit: int
    ) -> list[Message]:
        condition = build_filter(filters, MESSAGE_FIELDS) if filters else None
        scoped = MessageScope(
            workspace_id=scope.workspace_id,
            witness=scope.witness,
            author=scope.author,
            session_id=scope.session_id,
            condition=condition,
        )
        hits = await self.retriever.search_messages(query, scoped, limit=limit)
        return [h.item for h in hits]

    async def query_conclusions(
        self,
        workspace_id: str,
        query: str,
        filters: dict[str, Any],
        top_k: int,
        distance: float | None,
    ) -> list[Conclusion]:
        unknown = sorted(set(filters) - {"observer_id", "observed_id", "session_id"})
        if unknown:
            raise ValidationError(
                f"conclusion query filters accept observer_id, observed_id and session_id; "
                f"got {unknown}"
            )
        observer, observed = filters.get("observer_id"), filters.get("observed_id")
        if not isinstance(observer, str) or not isinstance(observed, str):
            raise ValidationError("filters.observer_id and filters.observed_id are required")
        session_id = filters.get("session_id")
        if session_id is not None and not isinstance(session_id, str):
            raise ValidationError("filters.session_id must be a string")
        await self.require_workspace(workspace_id)
        hits = await self.retriever.search_conclusions(
            query,
            ConclusionScope(workspace_id, observer, observed, session_id),
            limit=top_k,
            min_similarity=None if distance is None else 1.0 - distance,
        )
        return [h.item for h in hits]
