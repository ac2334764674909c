"""Typed models of what the server returns, and of the messages a client sends.

Response models ignore keys they do not know, so a newer server that adds fields does not break
an older SDK. ``metadata`` and ``configuration`` are plain JSON objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Conclusion",
    "DeadLetter",
    "Message",
    "MessageCreate",
    "Page",
    "PeerContext",
    "PeerInfo",
    "QueueStatus",
    "SessionInfo",
    "SessionPeerConfig",
    "SessionQueueStatus",
    "SessionSummaries",
    "Summary",
    "Workspace",
]

T = TypeVar("T")
U = TypeVar("U")


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Workspace(_Response):
    """A workspace: the tenant that holds peers, sessions and everything derived from them."""

    id: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    configuration: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class PeerInfo(_Response):
    """What the server stores about a peer (returned by get-or-create, lists and updates)."""

    id: str
    workspace_id: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    configuration: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class SessionInfo(_Response):
    """What the server stores about a session."""

    id: str
    workspace_id: str
    is_active: bool = True
    metadata: dict[str, Any] = Field(default_factory=dict)
    configuration: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class Message(_Response):
    """A stored message. ``id`` is server-generated; ``token_count`` uses an o200k tokenizer."""

    id: str
    content: str
    peer_id: str
    session_id: str
    workspace_id: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    token_count: int = 0


class Conclusion(_Response):
    """Something an observer peer concluded about an observed peer.

    ``level`` is one of ``"explicit"``, ``"deductive"``, ``"inductive"`` or ``"contradiction"``.
    """

    id: str
    content: str
    observer_id: str
    observed_id: str
    session_id: str | None = None
    level: str = "explicit"
    source_ids: list[str] = Field(default_factory=list)
    created_at: datetime


class Summary(_Response):
    """A short or long summary of a session, up to (and including) ``message_id``."""

    content: str
    message_id: str | None = None
    summary_type: str = "short"
    created_at: datetime | None = None
    token_count: int = 0


class SessionSummaries(_Response):
    """The newest short and long summaries of a session (either may still be missing)."""

    id: str | None = None
    short_summary: Summary | None = None
    long_summary: Summary | None = None


class SessionQueueStatus(_Response):
    """Background work for one session."""

    session_id: str | None = None
    total_work_units: int
    completed_work_units: int
    in_progress_work_units: int
    pending_work_units: int


class QueueStatus(_Response):
    """How much background (deriver) work is done, running and waiting.

    ``dead_letter_work_units`` (a Rapport addition) counts events the deriver gave up on; see
    :meth:`rapport.Rapport.dead_letters`.
    """

    total_work_units: int
    completed_work_units: int
    in_progress_work_units: int
    pending_work_units: int
    sessions: dict[str, SessionQueueStatus] | None = None
    dead_letter_work_units: int = 0

    @property
    def is_idle(self) -> bool:
        """True when nothing is pending or in progress."""
        return self.pending_work_units == 0 and self.in_progress_work_units == 0


class DeadLetter(_Response):
    """An event the deriver gave up on, with the error that stopped it (a Rapport addition)."""

    id: str
    workspace_id: str | None = None
    session_id: str | None = None
    consumer: str
    event_type: str
    event_id: str
    error: str
    attempts: int = 0
    created_at: datetime
    retried_at: datetime | None = None
    payload: dict[str, Any] = Field(default_factory=dict)


class PeerContext(_Response):
    """A peer's representation and card, of itself or of ``target_id``."""

    peer_id: str
    target_id: str
    representation: str | None = None
    peer_card: list[str] | None = None


class SessionPeerConfig(BaseModel):
    """How a member of a session observes: ``None`` falls back to the peer's own setting.

    Attributes:
        observe_me: Whether the peer's global representation learns from its messages here.
        observe_others: Whether the peer builds its own views of the other members here.
    """

    model_config = ConfigDict(extra="ignore")

    observe_me: bool | None = None
    observe_others: bool | None = None


class MessageCreate(BaseModel):
    """A message to add to a session; build it with :meth:`rapport.Peer.message`.

    ``created_at`` back-dates the message (imports keep their original time).
    """

    model_config = ConfigDict(extra="forbid")

    content: str
    peer_id: str = Field(min_length=1)
    metadata: dict[str, Any] | None = None
    configuration: dict[str, Any] | None = None
    created_at: datetime | None = None

    def to_wire(self) -> dict[str, Any]:
        """The JSON object sent to the server (unset fields left out)."""
        return self.model_dump(mode="json", exclude_none=True)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: ``items`` plus the server's counts (pages are numbered from 1)."""

    items: list[T]
    total: int
    page: int
    size: int
    pages: int

    @property
    def has_next(self) -> bool:
        """True when the server reports pages after this one."""
        return self.page < self.pages

    def map(self, fn: Callable[[T], U]) -> Page[U]:
        """The same page with ``fn`` applied to every item."""
        return Page([fn(item) for item in self.items], self.total, self.page, self.size, self.pages)


class _WirePage(BaseModel, Generic[T]):
    model_config = ConfigDict(extra="ignore")

    items: list[T] = Field(default_factory=list)
    total: int | None = None
    page: int | None = None
    size: int | None = None
    pages: int | None = None

    def to_page(self, requested_page: int, requested_size: int) -> Page[T]:
        page = self.page if self.page is not None else requested_page
        return Page(
            items=list(self.items),
            total=self.total if self.total is not None else len(self.items),
            page=page,
            size=self.size if self.size is not None else requested_size,
            pages=self.pages if self.pages is not None else page,
        )


class _Representation(_Response):
    representation: str


class _Card(_Response):
    peer_card: list[str] | None = None


class _ChatAnswer(_Response):
    content: str | None = None


class _Key(_Response):
    key: str
