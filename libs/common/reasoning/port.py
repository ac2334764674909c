"""The reasoner port: what the deriver (and later the dialectic) asks of a reasoning engine.

Two adapters implement it: :mod:`libs.common.reasoning.extractive` (no model; deterministic)
and :mod:`libs.common.reasoning.llm` (any OpenAI-compatible endpoint). Both are real: the
extractive one is the default when no LLM is configured, so the whole system works offline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

Level = Literal["explicit", "deductive", "inductive", "contradiction"]
LEVELS: tuple[Level, ...] = ("explicit", "deductive", "inductive", "contradiction")
SummaryKind = Literal["short", "long"]


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


class ReasonerError(Exception):
    """Base of reasoner failures."""


class TransientReasonerError(ReasonerError):
    """Worth retrying later (rate limits, timeouts, 5xx, unreachable endpoint)."""


class PermanentReasonerError(ReasonerError):
    """Retrying the same input will not help (unparseable output after repair, 4xx)."""


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
