"""HTTP models of the ingest routes (Honcho v3 wire shapes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from libs.common.wire import IdKeyed, JsonObject, ResourceId, SafeStr, StrictModel, as_utc


class WorkspaceCreate(StrictModel):
    id: ResourceId
    metadata: JsonObject | None = None
    configuration: WorkspaceConfiguration | None = None


class WorkspaceUpdate(StrictModel):
    metadata: JsonObject | None = None
    configuration: WorkspaceConfiguration | None = None


class WorkspaceOut(BaseModel):
    id: str
    metadata: dict[str, Any]
    configuration: dict[str, Any]
    created_at: datetime


class PeerCreate(StrictModel):
    id: ResourceId
    metadata: JsonObject | None = None
    configuration: PeerConfiguration | None = None


class PeerUpdate(StrictModel):
    metadata: JsonObject | None = None
    configuration: PeerConfiguration | None = None


class PeerOut(BaseModel):
    id: str
    workspace_id: str
    metadata: dict[str, Any]
    configuration: dict[str, Any]
    created_at: datetime


class SessionPeerConfig(StrictModel):
    """Per-session observation settings of a member; unset fields fall back to the peer's."""

    observe_me: bool | None = Field(
        default=None, description="Whether this peer's global representation learns here."
    )
    observe_others: bool | None = Field(
        default=None, description="Whether this peer builds local views of the others here."
    )

    def stored(self) -> dict[str, Any]:
        """The configuration as the client set it (unset keys are not stored)."""
        return self.model_dump(exclude_unset=True)


class SessionCreate(StrictModel):
    id: ResourceId
    metadata: JsonObject | None = None
    configuration: WorkspaceConfiguration | None = None
    peers: IdKeyed[SessionPeerConfig] | None = None

    @field_validator("peers")
    @classmethod
    def _bounded(
        cls, value: dict[str, SessionPeerConfig] | None
    ) -> dict[str, SessionPeerConfig] | None:
        if value is not None and len(value) > 1000:
            raise ValueError("at most 1000 peers per request")
        return value


class SessionUpdate(StrictModel):
    metadata: JsonObject | None = None
    configuration: WorkspaceConfiguration | None = None


class SessionOut(BaseModel):
    id: str
    workspace_id: str
    is_active: bool
    metadata: dict[str, Any]
    configuration: dict[str, Any]
    created_at: datetime


class MessageCreate(StrictModel):
    content: SafeStr
    peer_id: ResourceId
    metadata: JsonObject | None = None
    configuration: MessageConfiguration | None = None
    created_at: datetime | None = None

    @field_validator("created_at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        # Stored as UTC: an offset may push year 1 / 9999 out of range (422), and an offset
        # beyond ±15:59 (valid in ISO 8601 and Python) would be refused by Postgres (500).
        return as_utc(value) if value is not None else None


class MessageBatch(StrictModel):
    messages: list[MessageCreate] = Field(min_length=1)


class MessageUpdate(StrictModel):
    metadata: JsonObject


class ConclusionCreate(StrictModel):
    content: SafeStr = Field(min_length=1)
    observer_id: ResourceId
    observed_id: ResourceId
    session_id: ResourceId | None = None


class ConclusionBatch(StrictModel):
    conclusions: list[ConclusionCreate] = Field(min_length=1, max_length=100)


class WebhookCreate(StrictModel):
    url: SafeStr = Field(
        min_length=1, max_length=2048, examples=["https://hooks.example.com/rapport"]
    )


class WebhookOut(BaseModel):
    id: str
    url: str
    workspace_id: str
    created_at: datetime


class DreamRequest(StrictModel):
    observer: ResourceId
    observed: ResourceId | None = None
    session_id: ResourceId | None = None
    dream_type: Literal["omni"] = "omni"


class KeyOut(BaseModel):
    key: str


class QueueCounts(BaseModel):
    total_work_units: int
    completed_work_units: int
    in_progress_work_units: int
    pending_work_units: int


class SessionQueueStatus(QueueCounts):
    session_id: str | None = None


class QueueStatusOut(QueueCounts):
    sessions: dict[str, SessionQueueStatus] | None = None
    #: Rapport addition: events the deriver gave up on (see dead letters).
    dead_letter_work_units: int = 0


# -- configuration objects (validated on write so responses always parse in Honcho clients) ----
class _Section(StrictModel):
    pass


class ReasoningConfiguration(_Section):
    enabled: bool | None = None
    custom_instructions: SafeStr | None = Field(default=None, max_length=10_000)


class PeerCardConfiguration(_Section):
    use: bool | None = None
    create: bool | None = None
    custom_instructions: SafeStr | None = Field(default=None, max_length=10_000)


class SummaryConfiguration(_Section):
    enabled: bool | None = None
    messages_per_short_summary: int | None = Field(default=None, ge=10, le=10_000)
    messages_per_long_summary: int | None = Field(default=None, ge=20, le=100_000)
    custom_instructions: SafeStr | None = Field(default=None, max_length=10_000)

    @field_validator("messages_per_long_summary")
    @classmethod
    def _long_after_short(cls, value: int | None, info: Any) -> int | None:
        short = info.data.get("messages_per_short_summary")
        if value is not None and short is not None and value <= short:
            raise ValueError("messages_per_long_summary must be greater than the short interval")
        return value


class DreamConfiguration(_Section):
    enabled: bool | None = None
    custom_instructions: SafeStr | None = Field(default=None, max_length=10_000)


class DialecticConfiguration(_Section):
    custom_instructions: SafeStr | None = Field(default=None, max_length=10_000)


class WorkspaceConfiguration(StrictModel):
    """Workspace (and session) configuration: the Honcho v3 sections, nothing else."""

    custom_instructions: SafeStr | None = Field(default=None, max_length=10_000)
    reasoning: ReasoningConfiguration | None = None
    peer_card: PeerCardConfiguration | None = None
    summary: SummaryConfiguration | None = None
    dream: DreamConfiguration | None = None
    dialectic: DialecticConfiguration | None = None


class PeerConfiguration(StrictModel):
    """Peer-level observation defaults (``observe_others`` is a Rapport addition)."""

    observe_me: bool | None = None
    observe_others: bool | None = None


class MessageConfiguration(StrictModel):
    reasoning: ReasoningConfiguration | None = None


class DeadLetterOut(BaseModel):
    """An event the deriver gave up on (a Rapport addition to the Honcho API)."""

    id: str
    workspace_id: str | None
    session_id: str | None
    consumer: str
    event_type: str
    event_id: str
    error: str
    attempts: int
    created_at: datetime
    retried_at: datetime | None
    payload: dict[str, Any]
