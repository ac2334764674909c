"""Deriver domain logic: perspectives, observations, peer cards, summaries, embeddings.

Imports neither FastAPI nor FastStream. Every step is idempotent so a redelivered event is
derived exactly once in effect:

* a message's status goes ``derived`` (its conclusions and peer-card updates are committed,
  with ids derived from their source) → ``done`` (its vectors are upserted, by the same ids);
  a replay of a ``derived`` message only redoes the vectors, a replay of a ``done`` one nothing;
* summaries are keyed by (session, type, message seq) and inserted ``ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.common import outbox
from libs.common.broker import StreamLayout
from libs.common.consumers import PoisonMessageError, TransientError
from libs.common.db import unit_of_work
from libs.common.embeddings import Embedder
from libs.common.errors import DependencyUnavailableError
from libs.common.events import (
    ConclusionDeleted,
    ConclusionsCreated,
    DreamScheduled,
    Event,
    MessageCreated,
    QueueEmptied,
    SessionDeleted,
    WebhookTestRequested,
    WorkspaceDeleted,
)
from libs.common.ids import nanoid
from libs.common.models import Conclusion
from libs.common.reasoning.port import (
    ExtractionRequest,
    PeerCardRequest,
    PermanentReasonerError,
    Reasoner,
    SummaryRequest,
    TranscriptLine,
    TransientReasonerError,
)
from libs.common.retrieval.hybrid import message_index_text
from libs.common.tokens import count_tokens_many
from libs.common.vectorstore import (
    CONCLUSION_VECTORS,
    MESSAGE_VECTORS,
    VectorFilter,
    VectorRecord,
    VectorStore,
)
from services.deriver.repository import DeriverRepository, StoredLine
from services.deriver.webhooks import WebhookDeliverer

log = logging.getLogger(__name__)

MESSAGES = MESSAGE_VECTORS
CONCLUSIONS = CONCLUSION_VECTORS
CONTEXT_MESSAGES = 6
KNOWN_CONCLUSIONS = 50


@dataclass(frozen=True)
class DeriverConfig:
    short_summary_every: int = 20
    long_summary_every: int = 60
    short_summary_tokens: int = 400
    long_summary_tokens: int = 1500
    peer_card_max_facts: int = 40
    dream_duplicate_similarity: float = 0.97


def conclusion_id(message_id: str, observer: str, observed: str, ordinal: int) -> str:
    """Deterministic id of the ``ordinal``-th conclusion drawn from a message for a view."""
    digest = hashlib.sha256(f"{message_id}|{observer}|{observed}|{ordinal}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:21]


def observers_of(event: MessageCreated) -> list[str]:
    """Whose representations of the author learn from this message (perspective semantics).

    The author's global view (author, author) when it is observed; a local view
    (witness, author) for every witness with ``observe_others``.
    """
    views = [event.peer_id] if event.observe_me else []
    views += [w.peer_id for w in event.witnesses if w.observe_others and w.peer_id != event.peer_id]
    return views


def _section(cfgs: Sequence[dict[str, Any]], name: str, key: str) -> Any:
    """The most specific setting among message > session > workspace configurations."""
    for cfg in cfgs:
        value = (cfg.get(name) or {}).get(key)
        if value is not None:
            return value
    return None


def classify(error: BaseException) -> BaseException:
    """Map domain failures onto the consumer failure policy."""
    if isinstance(error, PermanentReasonerError):
        return PoisonMessageError(str(error))
    if isinstance(error, TransientReasonerError | DependencyUnavailableError | OSError):
        return TransientError(str(error))
    return error


def _line(m: StoredLine) -> TranscriptLine:
    return TranscriptLine(
        message_id=m.message_id, speaker=m.peer_id, content=m.content, created_at=m.created_at
    )


def message_payload(e: MessageCreated) -> dict[str, Any]:
    return {
        "workspace_id": e.workspace_id,
        "kind": "message",
        "session_id": e.session_id,
        "peer_id": e.peer_id,
        "seq": e.seq,
        "created_at": e.created_at.timestamp(),
        # Everyone who witnessed the message (members at the time), for perspective filters.
        "witnesses": sorted({e.peer_id, *(w.peer_id for w in e.witnesses)}),
    }


def conclusion_payload(c: Conclusion) -> dict[str, Any]:
    return {
        "workspace_id": c.workspace_id,
        "kind": "conclusion",
        "observer_id": c.observer_id,
        "observed_id": c.observed_id,
        "session_id": c.session_id or "",
        "level": c.level,
        "created_at": c.created_at.timestamp(),
    }


class _Unset:
    """Marker type of "not given" where ``None`` is a meaningful value."""


_UNSET = _Unset()


class DeriverService:
    def __init__(
        self,
        *,
        session_factory: async_sessionmaker[AsyncSession],
        reasoner: Reasoner,
        embedder: Embedder,
        vectors: VectorStore,
        config: DeriverConfig | None = None,
        layout: StreamLayout | None = None,
        webhooks: WebhookDeliverer | None = None,
    ) -> None:
        self.layout = layout
        self.webhooks = webhooks
        self.session_factory = session_factory
        self.reasoner = reasoner
        self.embedder = embedder
        self.vectors = vectors
        self.config = config or DeriverConfig()
        self._collections_ready = False

    async def ensure_collections(self) -> None:
        if not self._collections_ready:
            for name in (MESSAGES, CONCLUSIONS):
                await self.vectors.ensure_collection(name, self.embedder.dimensions)
            self._collections_ready = True

    # -- messages → observations, cards, vectors ------------------------------------------
    async def process_messages(
        self, events: Sequence[MessageCreated]
    ) -> dict[str, BaseException | None]:
        """Derive a batch; returns the outcome per event id (None = done)."""
        results: dict[str, BaseException | None] = {}
        ordered = sorted(events, key=lambda e: (e.workspace_id, e.session_id, e.seq))
        ids = [e.message_id for e in ordered]
        try:
            async with unit_of_work(self.session_factory) as db:
                repo = DeriverRepository(db)
                statuses = await repo.statuses(ids)
                existing = await repo.existing_messages(ids)
                # Once per session of the batch, not once per message.
                configurations = {
                    key: await repo.configurations(*key)
                    for key in sorted({(e.workspace_id, e.session_id) for e in ordered})
                }
        except Exception as exc:  # noqa: BLE001 - every event of the batch retries
            return {e.event_id: classify(exc) for e in ordered}

        derived: list[MessageCreated] = []
        for event in ordered:
            status = statuses.get(event.message_id)
            if status in ("done", "dead") or event.message_id not in existing:
                results[event.event_id] = None  # replay, or deleted since: nothing to do
                continue
            if status != "derived":
                try:
                    await self._derive(
                        event, configurations[(event.workspace_id, event.session_id)]
                    )
                except Exception as exc:  # noqa: BLE001 - settled by the failure policy
                    log.warning("derivation of %s failed: %r", event.message_id, exc)
                    results[event.event_id] = classify(exc)
                    continue
            derived.append(event)

        if derived:
            try:
                kept = await self._index(derived)
                async with unit_of_work(self.session_factory) as db:
                    repo = DeriverRepository(db)
                    await repo.set_status(
                        [
                            (e.message_id, e.workspace_id, e.session_id)
                            for e in derived
                            if e.message_id in kept
                        ],
                        "done",
                    )
                    await self._announce_drained(db, repo, derived)
            except Exception as exc:  # noqa: BLE001 - settled by the failure policy
                log.warning("indexing failed for %d messages: %r", len(derived), exc)
                for e in derived:
                    results[e.event_id] = classify(exc)
                return results
            for e in derived:
                results[e.event_id] = None
        return results

    async def _announce_drained(
        self, db: AsyncSession, repo: DeriverRepository, events: Sequence[MessageCreated]
    ) -> None:
        """``queue.emptied`` for each touched session with nothing left pending, when its
        workspace has webhooks (committed with the status, published by the outbox relay)."""
        if self.layout is None:
            return
        drained: list[Event] = []
        for workspace_id, session_id in sorted({(e.workspace_id, e.session_id) for e in events}):
            if not await repo.webhook_urls(workspace_id):
                continue
            if await repo.pending_in_session(workspace_id, session_id) == 0:
                drained.append(QueueEmptied(workspace_id=workspace_id, session_id=session_id))
        await outbox.enqueue(db, self.layout, drained)

    async def deliver_webhooks(self, event: QueueEmptied | WebhookTestRequested) -> None:
        if self.webhooks is None:
            return
        async with unit_of_work(self.session_factory) as db:
            urls = await DeriverRepository(db).webhook_urls(event.workspace_id)
        if isinstance(event, QueueEmptied):
            kind, data = (
                "queue.empty",
                {
                    "workspace_id": event.workspace_id,
                    "session_id": event.session_id,
                    "queue_type": event.queue_type,
                    "event_id": event.event_id,
                },
            )
        else:
            kind, data = "test", {"workspace_id": event.workspace_id, "event_id": event.event_id}
        await self.webhooks.deliver(urls, kind, data)

    async def _derive(
        self, event: MessageCreated, cfgs: tuple[dict[str, Any], dict[str, Any]] | None
    ) -> None:
        """Observations for every view of the message, committed with the ``derived`` status.

        ``cfgs``: the (workspace, session) configurations, read once per batch."""
        views = observers_of(event)
        async with unit_of_work(self.session_factory) as db:
            repo = DeriverRepository(db)
            contexts = {
                o: await repo.witnessed_before(
                    event.workspace_id, event.session_id, o, event.seq, CONTEXT_MESSAGES
                )
                for o in views
            }
            known = {
                o: await repo.recent_conclusions(
                    event.workspace_id, o, event.peer_id, KNOWN_CONCLUSIONS
                )
                for o in views
            }
        layers = [event.configuration, *(cfgs[::-1] if cfgs else ())]
        reasoning_on = _section(layers, "reasoning", "enabled") is not False
        instructions = _section(layers, "reasoning", "custom_instructions")
        card_on = _section(layers, "peer_card", "create") is not False

        line = TranscriptLine(
            message_id=event.message_id,
            speaker=event.peer_id,
            content=event.content,
            created_at=event.created_at,
        )
        rows: list[dict[str, Any]] = []
        new_by_view: dict[str, list[str]] = {}
        if reasoning_on:
            for observer in views:
                observations = await self.reasoner.extract(
                    ExtractionRequest(
                        observer=observer,
                        observed=event.peer_id,
                        messages=[line],
                        context=[_line(m) for m in contexts[observer]],
                        known=known[observer],
                        custom_instructions=instructions,
                    )
                )
                counts = count_tokens_many([o.content for o in observations])
                for i, (obs, n) in enumerate(zip(observations, counts, strict=True)):
                    sources = [s for s in obs.source_message_ids if s == event.message_id]
                    rows.append(
                        {
                            "id": conclusion_id(event.message_id, observer, event.peer_id, i),
                            "workspace_id": event.workspace_id,
                            "observer_id": observer,
                            "observed_id": event.peer_id,
                            "session_id": event.session_id,
                            "level": obs.level,
                            "content": obs.content,
                            "source_ids": sources or [event.message_id],
                            "token_count": n,
                            "created_at": event.created_at,
                        }
                    )
                    new_by_view.setdefault(observer, []).append(obs.content)

        async with unit_of_work(self.session_factory) as db:
            repo = DeriverRepository(db)
            await repo.insert_conclusions(rows)
            if card_on:
                for observer, contents in new_by_view.items():
                    current = await repo.lock_card(event.workspace_id, observer, event.peer_id)
                    card = await self.reasoner.update_peer_card(
                        PeerCardRequest(
                            observer=observer,
                            observed=event.peer_id,
                            current=current,
                            new_observations=contents,
                            max_facts=self.config.peer_card_max_facts,
                        )
                    )
                    if card != current:
                        await repo.save_card(event.workspace_id, observer, event.peer_id, card)
            await repo.set_status(
                [(event.message_id, event.workspace_id, event.session_id)], "derived"
            )

    async def _index(self, events: Sequence[MessageCreated]) -> set[str]:
        """Embed and upsert the messages and their conclusions (idempotent by id); returns the
        ids of the messages that still exist (see :meth:`_drop_vanished`)."""
        await self.ensure_collections()
        async with unit_of_work(self.session_factory) as db:
            conclusions = await DeriverRepository(db).conclusions_from_messages(
                [e.message_id for e in events]
            )
        texts = [message_index_text(e.peer_id, e.content) for e in events] + [
            c.content for c in conclusions
        ]
        vectors = await self._embed(texts)
        message_records = [
            VectorRecord(id=e.message_id, vector=v, payload=message_payload(e))
            for e, v in zip(events, vectors[: len(events)], strict=True)
        ]
        conclusion_records = [
            VectorRecord(id=c.id, vector=v, payload=conclusion_payload(c))
            for c, v in zip(conclusions, vectors[len(events) :], strict=True)
        ]
        await self.vectors.upsert(MESSAGES, message_records)
        if conclusion_records:
            await self.vectors.upsert(CONCLUSIONS, conclusion_records)
        return await self._drop_vanished(
            [e.message_id for e in events], [c.id for c in conclusions]
        )

    async def _drop_vanished(
        self, message_ids: Sequence[str], conclusion_ids: Sequence[str]
    ) -> set[str]:
        """Remove the vectors just upserted for rows deleted meanwhile; returns the message ids
        that still exist. A delete committed before this check is seen here; one committed
        after it publishes its forget event afterwards, which then runs after the upserts.
        Without this, a session deleted while its messages were being indexed kept vectors."""
        async with unit_of_work(self.session_factory) as db:
            repo = DeriverRepository(db)
            messages = await repo.existing_messages(message_ids)
            conclusions = {c.id for c in await repo.conclusions_by_ids(conclusion_ids)}
        if gone := [m for m in message_ids if m not in messages]:
            await self.vectors.delete(MESSAGES, gone)
        if gone := [c for c in conclusion_ids if c not in conclusions]:
            await self.vectors.delete(CONCLUSIONS, gone)
        return messages

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        """Embed each distinct text once."""
        unique = list(dict.fromkeys(texts))
        vectors = dict(zip(unique, await self.embedder.embed(unique), strict=True))
        return [vectors[t] for t in texts]

    # -- summaries -------------------------------------------------------------------------
    async def summarize_batch(
        self, events: Sequence[MessageCreated]
    ) -> dict[str, BaseException | None]:
        """:meth:`summarize` for a batch, reading each session's configuration once (most
        messages end no summary, and then need no other statement); outcome per event id."""
        try:
            async with unit_of_work(self.session_factory) as db:
                repo = DeriverRepository(db)
                cfgs = {
                    key: await repo.configurations(*key)
                    for key in sorted({(e.workspace_id, e.session_id) for e in events})
                }
        except Exception as exc:  # noqa: BLE001 - every event of the batch retries
            return {e.event_id: classify(exc) for e in events}
        out: dict[str, BaseException | None] = {}
        for event in events:
            try:
                await self.summarize(event, cfgs[(event.workspace_id, event.session_id)])
                out[event.event_id] = None
            except Exception as exc:  # noqa: BLE001 - settled per message by the policy
                out[event.event_id] = classify(exc)
        return out

    async def summarize(
        self,
        event: MessageCreated,
        configurations: tuple[dict[str, Any], dict[str, Any]] | _Unset | None = _UNSET,
    ) -> None:
        """Create the short / long summary that ends at this message, when one is due.

        ``configurations`` (workspace, session) may be passed when already read; ``None``
        means the session is gone.
        """
        cfgs = configurations
        if isinstance(cfgs, _Unset):
            async with unit_of_work(self.session_factory) as db:
                cfgs = await DeriverRepository(db).configurations(
                    event.workspace_id, event.session_id
                )
        if cfgs is None:
            return  # session deleted since
        layers = list(cfgs[::-1])
        if _section(layers, "summary", "enabled") is False:
            return
        short_every = int(
            _section(layers, "summary", "messages_per_short_summary")
            or self.config.short_summary_every
        )
        long_every = int(
            _section(layers, "summary", "messages_per_long_summary")
            or self.config.long_summary_every
        )
        instructions = _section(layers, "summary", "custom_instructions")
        candidates = [
            (kind, budget)
            for kind, every, budget in (
                ("short", short_every, self.config.short_summary_tokens),
                ("long", long_every, self.config.long_summary_tokens),
            )
            if event.seq % every == 0
        ]
        if not candidates:
            return
        async with unit_of_work(self.session_factory) as db:
            repo = DeriverRepository(db)
            plans = []
            for kind, budget in candidates:
                if await repo.summary_exists(event.workspace_id, event.session_id, kind, event.seq):
                    continue
                previous = await repo.latest_summary(
                    event.workspace_id, event.session_id, kind, event.seq
                )
                after = previous.message_seq if previous else 0
                lines = await repo.messages_between(
                    event.workspace_id, event.session_id, max(after, event.seq - 500), event.seq
                )
                plans.append((kind, budget, previous.content if previous else None, lines))
        for kind, budget, previous_text, lines in plans:
            if not lines:
                continue
            content = await self.reasoner.summarize(
                SummaryRequest(
                    kind=kind,  # type: ignore[arg-type]
                    previous=previous_text,
                    messages=[_line(m) for m in lines],
                    max_tokens=budget,
                    custom_instructions=instructions,
                )
            )
            [tokens] = count_tokens_many([content])
            async with unit_of_work(self.session_factory) as db:
                await DeriverRepository(db).insert_summary(
                    {
                        "id": nanoid(),
                        "workspace_id": event.workspace_id,
                        "session_id": event.session_id,
                        "summary_type": kind,
                        "content": content,
                        "message_id": lines[-1].message_id,
                        "message_seq": lines[-1].seq,
                        "token_count": tokens,
                    }
                )

    # -- maintenance events ----------------------------------------------------------------
    async def index_conclusions(self, event: ConclusionsCreated) -> None:
        await self.ensure_collections()
        async with unit_of_work(self.session_factory) as db:
            conclusions = await DeriverRepository(db).conclusions_by_ids(event.conclusion_ids)
        if not conclusions:
            return
        vectors = await self._embed([c.content for c in conclusions])
        await self.vectors.upsert(
            CONCLUSIONS,
            [
                VectorRecord(id=c.id, vector=v, payload=conclusion_payload(c))
                for c, v in zip(conclusions, vectors, strict=True)
            ],
        )
        await self._drop_vanished([], [c.id for c in conclusions])

    async def forget_conclusion(self, event: ConclusionDeleted) -> None:
        await self.ensure_collections()
        await self.vectors.delete(CONCLUSIONS, [event.conclusion_id])

    async def forget_session(self, event: SessionDeleted) -> None:
        await self.ensure_collections()
        flt = VectorFilter(workspace_id=event.workspace_id, must={"session_id": event.session_id})
        await self.vectors.delete_where(MESSAGES, flt)
        await self.vectors.delete_where(CONCLUSIONS, flt)

    async def forget_workspace(self, event: WorkspaceDeleted) -> None:
        await self.ensure_collections()
        flt = VectorFilter(workspace_id=event.workspace_id)
        await self.vectors.delete_where(MESSAGES, flt)
        await self.vectors.delete_where(CONCLUSIONS, flt)

    async def dream(self, event: DreamScheduled) -> None:
        """Consolidate one view: drop near-duplicate conclusions, rebuild the peer card."""
        await self.ensure_collections()
        async with unit_of_work(self.session_factory) as db:
            conclusions = await DeriverRepository(db).view_conclusions(
                event.workspace_id, event.observer_id, event.observed_id
            )
        if not conclusions:
            return
        vectors = await self._embed([c.content for c in conclusions])
        keep: list[tuple[Conclusion, list[float]]] = []
        drop: list[str] = []
        for c, v in zip(conclusions, vectors, strict=True):
            if any(_dot(v, kv) >= self.config.dream_duplicate_similarity for _, kv in keep):
                drop.append(c.id)
            else:
                keep.append((c, v))
        async with unit_of_work(self.session_factory) as db:
            repo = DeriverRepository(db)
            await repo.delete_conclusions(drop)
            current = await repo.lock_card(event.workspace_id, event.observer_id, event.observed_id)
            card = await self.reasoner.update_peer_card(
                PeerCardRequest(
                    observer=event.observer_id,
                    observed=event.observed_id,
                    current=current,
                    new_observations=[c.content for c, _ in keep],
                    max_facts=self.config.peer_card_max_facts,
                )
            )
            await repo.save_card(event.workspace_id, event.observer_id, event.observed_id, card)
        if drop:
            await self.vectors.delete(CONCLUSIONS, drop)

    # -- dead letters ----------------------------------------------------------------------
    async def record_dead_letter(
        self,
        *,
        consumer: str,
        subject: str,
        payload: dict[str, Any],
        error: str,
        attempts: int,
    ) -> None:
        # Poison input may hold anything: keep what Postgres can store (no NUL characters,
        # column sizes), and fall back to the subject's tokens (<prefix>.<noun>.<verb>.<workspace>
        # [.<session>]) so an undecodable event is still listed under its workspace.
        tokens = subject.split(".")
        workspace_id = _storable_id(payload.get("workspace_id"))
        session_id = _storable_id(payload.get("session_id"))
        if workspace_id is None and len(tokens) >= 4:
            workspace_id = _storable_id(tokens[3])
            session_id = _storable_id(tokens[4]) if len(tokens) >= 5 else None
        async with unit_of_work(self.session_factory) as db:
            repo = DeriverRepository(db)
            await repo.insert_dead_letter(
                {
                    "id": nanoid(),
                    "workspace_id": workspace_id,
                    "session_id": session_id,
                    "consumer": consumer,
                    "event_id": _storable(str(payload.get("event_id", "")))[:64],
                    "event_type": f"{tokens[1]}.{tokens[2]}" if len(tokens) >= 3 else subject,
                    "subject": subject,
                    "payload": _storable(payload),
                    "error": _storable(error)[:4000],
                    "attempts": attempts,
                }
            )
            message_id = _storable(payload.get("message_id"))
            if (
                consumer.endswith("representation")
                and isinstance(message_id, str)
                and isinstance(workspace_id, str)
                and isinstance(session_id, str)
                and await repo.existing_messages([message_id])
            ):
                await repo.set_status([(message_id, workspace_id, session_id)], "dead")


def _storable(value: Any) -> Any:
    """``value`` with every NUL character replaced (Postgres text and jsonb refuse them)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(str(k)): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


def _storable_id(value: Any) -> str | None:
    """A workspace or session id fit for its column, or None."""
    return _storable(value)[:512] if isinstance(value, str) and value else None


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return float(sum(x * y for x, y in zip(a, b, strict=True)))
