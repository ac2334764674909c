"""Event contracts shared by publishers and consumers.

One pydantic class per event, named ``noun.past_verb``. Evolve by adding optional fields only;
consumers ignore fields they do not know (``extra="ignore"``). ``schema_version`` is bumped only
for a breaking change, which also needs a new contract snapshot (tests/contract).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from libs.common.ids import event_id as new_event_id


class Event(BaseModel):
    """Base of every domain event."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    #: Wire name of the event; also the middle tokens of its NATS subject.
    EVENT_TYPE: ClassVar[str] = ""

    event_id: str = Field(
        default_factory=new_event_id,
        description="Unique id; the JetStream Nats-Msg-Id, so replays are de-duplicated.",
    )
    occurred_at: datetime = Field(
        default_factory=lambda: datetime.now(UTC), description="When the change was made."
    )
    schema_version: int = Field(default=1, description="Bumped only on a breaking change.")
    workspace_id: str = Field(description="Tenant the event belongs to.")

    def subject_suffix(self) -> str:
        """Subject tokens after the event type (routing and consumer filtering)."""
        return self.workspace_id

    def ordering_key(self) -> str:
        """Events with equal keys are published in commit order."""
        return self.workspace_id


class Witness(BaseModel):
    """A session member other than the author, as of the message's commit."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    peer_id: str = Field(description="The member.")
    observe_others: bool = Field(
        description="Whether this member builds a local representation of the author."
    )


class MessageCreated(Event):
    """A message was stored. Carries everything derivation needs, as of commit time."""

    EVENT_TYPE: ClassVar[str] = "message.created"

    session_id: str = Field(description="Session the message was sent in.")
    message_id: str = Field(description="Server-generated message id.")
    peer_id: str = Field(description="Author of the message.")
    seq: int = Field(description="1-based position of the message in its session.")
    content: str = Field(description="Message text.")
    token_count: int = Field(description="o200k token count of the content.")
    created_at: datetime = Field(description="Message time (client-supplied for imports).")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Message metadata.")
    configuration: dict[str, Any] = Field(
        default_factory=dict,
        description="Message configuration as stored (e.g. reasoning.enabled: false).",
    )
    observe_me: bool = Field(
        description="Whether the author's global representation learns from this message."
    )
    witnesses: list[Witness] = Field(
        default_factory=list, description="Other members of the session when it was sent."
    )

    def subject_suffix(self) -> str:
        return f"{self.workspace_id}.{self.session_id}"

    def ordering_key(self) -> str:
        return f"{self.workspace_id}/{self.session_id}"


class ConclusionsCreated(Event):
    """Conclusions were created through the API (they need embedding)."""

    EVENT_TYPE: ClassVar[str] = "conclusions.created"

    conclusion_ids: list[str] = Field(description="Ids of the new conclusions.")


class ConclusionDeleted(Event):
    """A conclusion was deleted (its vectors must go too)."""

    EVENT_TYPE: ClassVar[str] = "conclusion.deleted"

    conclusion_id: str = Field(description="Id of the deleted conclusion.")


class SessionDeleted(Event):
    """A session and its messages were deleted (derived vectors must go too)."""

    EVENT_TYPE: ClassVar[str] = "session.deleted"

    session_id: str = Field(description="Id of the deleted session.")
    message_ids: list[str] = Field(
        default_factory=list, description="Ids of the messages deleted with it."
    )

    def subject_suffix(self) -> str:
        return f"{self.workspace_id}.{self.session_id}"

    def ordering_key(self) -> str:
        return f"{self.workspace_id}/{self.session_id}"


class WorkspaceDeleted(Event):
    """A workspace and everything in it was deleted."""

    EVENT_TYPE: ClassVar[str] = "workspace.deleted"


class DreamScheduled(Event):
    """A client asked for a dream (consolidation) over an observer's view."""

    EVENT_TYPE: ClassVar[str] = "dream.scheduled"

    observer_id: str = Field(description="Peer whose memory is consolidated.")
    observed_id: str = Field(description="Peer the memory is about.")
    session_id: str | None = Field(default=None, description="Optional session scope.")
    dream_type: str = Field(default="omni", description="Kind of dream.")


class WebhookTestRequested(Event):
    """A client asked for a test delivery to the workspace's webhooks."""

    EVENT_TYPE: ClassVar[str] = "webhook.test_requested"


class QueueEmptied(Event):
    """The deriver finished every pending message of a session (webhook ``queue.empty``)."""

    EVENT_TYPE: ClassVar[str] = "queue.emptied"

    session_id: str = Field(description="Session whose work drained.")
    queue_type: str = Field(default="representation", description="Which work drained.")


ALL_EVENTS: tuple[type[Event], ...] = (
    MessageCreated,
    ConclusionsCreated,
    ConclusionDeleted,
    SessionDeleted,
    WorkspaceDeleted,
    DreamScheduled,
    WebhookTestRequested,
    QueueEmptied,
)

EVENTS_BY_TYPE: dict[str, type[Event]] = {cls.EVENT_TYPE: cls for cls in ALL_EVENTS}

__all__ = [
    "ALL_EVENTS",
    "EVENTS_BY_TYPE",
    "ConclusionDeleted",
    "ConclusionsCreated",
    "DreamScheduled",
    "Event",
    "MessageCreated",
    "QueueEmptied",
    "SessionDeleted",
    "WebhookTestRequested",
    "Witness",
    "WorkspaceDeleted",
]
