"""The reasoner port: what the deriver (and later the dialectic) asks of a reasoning engine.

Two adapters implement it: :mod:`libs.common.reasoning.extractive` (no model; deterministic)
and :mod:`libs.common.reasoning.llm` (any OpenAI-compatible endpoint). Both are real: the
extractive one is the default when no LLM is configured, so the whole system works offline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

Level = Literal["explicit", "deductive", "inductive", "contradiction"]
LEVELS: tuple[Level, ...] = ("explicit", "deductive", "inductive", "contradiction")
SummaryKind = Literal["short", "long"]
ReasoningLevel = Literal["minimal", "low", "medium", "high", "max"]
REASONING_LEVELS: tuple[ReasoningLevel, ...] = ("minimal", "low", "medium", "high", "max")
EvidenceKind = Literal["conclusion", "message"]


@dataclass(frozen=True)
class TranscriptLine:
    """One message as the reasoner sees it."""

    message_id: str
    speaker: str
    content: str
    created_at: datetime


@dataclass(frozen=True)
class ExtractionRequest:
    """Derive what ``observer`` can conclude about ``observed`` from ``messages``.

    ``messages`` are the new messages authored by ``observed`` (in order); ``context`` are a few
    earlier messages of the same session the observer also witnessed (for resolving references;
    nothing is concluded from them alone). ``known`` are conclusions already held about
    ``observed`` from this observer's view (for de-duplication and contradictions).
    """

    observer: str
    observed: str
    messages: list[TranscriptLine]
    context: list[TranscriptLine] = field(default_factory=list)
    known: list[str] = field(default_factory=list)
    custom_instructions: str | None = None


@dataclass(frozen=True)
class Observation:
    """One atomic, self-contained statement about the observed peer."""

    content: str
    level: Level
    source_message_ids: list[str]


@dataclass(frozen=True)
class SummaryRequest:
    """Fold ``messages`` into ``previous`` (the last summary of this kind, if any)."""

    kind: SummaryKind
    previous: str | None
    messages: list[TranscriptLine]
    max_tokens: int
    custom_instructions: str | None = None


@dataclass(frozen=True)
class PeerCardRequest:
    """Update the short list of stable facts ``observer`` keeps about ``observed``."""

    observer: str
    observed: str
    current: list[str]
    new_observations: list[str]
    max_facts: int = 40
    custom_instructions: str | None = None


@dataclass(frozen=True)
class Evidence:
    """One retrieved item the dialectic may answer from (already perspective-filtered).

    ``speaker`` is who wrote a message, or whom a conclusion is about; ``session_id`` is
    None for conclusions that belong to no session.
    """

    kind: EvidenceKind
    id: str
    content: str
    speaker: str | None
    created_at: datetime
    session_id: str | None = None


@dataclass(frozen=True)
class AnswerRequest:
    """Answer ``question`` for ``asker`` from ``evidence`` (best first) and ``peer_card`` only.

    ``target`` is the peer the question is about (None: the asker's own memory). With
    ``response_format`` (a JSON Schema) the answer is a JSON document that validates against it.
    """

    question: str
    asker: str
    target: str | None
    evidence: list[Evidence]
    peer_card: list[str]
    now: datetime
    reasoning_level: ReasoningLevel = "low"
    response_format: dict[str, Any] | None = None
    custom_instructions: str | None = None


class ReasonerError(Exception):
    """Base of reasoner failures."""


class TransientReasonerError(ReasonerError):
    """Worth retrying later (rate limits, timeouts, 5xx, unreachable endpoint)."""


class PermanentReasonerError(ReasonerError):
    """Retrying the same input will not help (unparseable output after repair, 4xx)."""


class UnsupportedRequestError(ReasonerError):
    """This reasoner cannot do what the request asks (e.g. ``response_format`` without a model)."""


class Reasoner(Protocol):
    """A reasoning engine. Implementations must be safe to call concurrently."""

    name: str

    async def extract(self, request: ExtractionRequest) -> list[Observation]:
        """Atomic observations about ``request.observed``; may be empty (chit-chat)."""
        ...

    async def summarize(self, request: SummaryRequest) -> str:
        """A summary of ``previous`` + ``messages`` within ``max_tokens`` (o200k)."""
        ...

    async def update_peer_card(self, request: PeerCardRequest) -> list[str]:
        """The new card: at most ``max_facts`` short, stable facts."""
        ...

    async def answer(self, request: AnswerRequest) -> str:
        """The dialectic's answer, from ``request.evidence`` and ``request.peer_card`` only."""
        ...

    def stream_answer(self, request: AnswerRequest) -> AsyncIterator[str]:
        """The same answer as :meth:`answer`, in chunks whose concatenation equals it."""
        ...
