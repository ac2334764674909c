"""HTTP models of the context routes (Honcho v3 wire shapes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from libs.common.wire import MessageOut, ResourceId, SafeStr, StrictModel

MAX_CARD_FACTS = 100
MAX_FACT_CHARS = 1000
SCOPES_NOT_SUPPORTED = (
    "scope is not supported yet: Rapport has no scopes. Read a representation from one session "
    "with session_id (or limit_to_session=true for a session's context) instead."
)
SESSIONS_NOT_SUPPORTED = (
    "a session allowlist (sessions / filters.session_id) is not supported here yet: use "
    "session_id (or limit_to_session=true for a session's context) instead."
)


class SummaryOut(BaseModel):
    content: str
    message_id: str
    summary_type: str
    created_at: datetime
    token_count: int


class SummariesOut(BaseModel):
    id: str
    short_summary: SummaryOut | None
    long_summary: SummaryOut | None


class SessionContextOut(BaseModel):
    id: str
    messages: list[MessageOut]
    summary: SummaryOut | None
    peer_representation: str | None
    peer_card: list[str] | None


class RepresentationRequest(StrictModel):
    session_id: ResourceId | None = None
    target: ResourceId | None = None
    search_query: SafeStr | None = Field(default=None, max_length=10_000)
    search_top_k: int | None = Field(default=None, ge=1, le=100)
    search_max_distance: float | None = Field(default=None, ge=0, le=1)
    include_most_frequent: bool | None = None
    max_conclusions: int | None = Field(default=None, ge=1, le=100)
    scope: Any = Field(default=None, description="Honcho scopes: not supported yet (422).")
    filters: Any = Field(
        default=None,
        description="Honcho's session allowlist (`sessions=`): not supported yet (422).",
    )


class RepresentationOut(BaseModel):
    representation: str


class PeerCardOut(BaseModel):
    peer_card: list[str] | None


class PeerCardIn(StrictModel):
    peer_card: list[SafeStr] = Field(max_length=MAX_CARD_FACTS)

    @field_validator("peer_card")
    @classmethod
    def _facts(cls, value: list[str]) -> list[str]:
        cleaned = [f.strip() for f in value]
        for i, fact in enumerate(cleaned):
            if not fact:
                raise ValueError(f"peer_card[{i}] is empty")
            if len(fact) > MAX_FACT_CHARS:
                raise ValueError(f"peer_card[{i}] is longer than {MAX_FACT_CHARS} characters")
        return cleaned


class PeerContextOut(BaseModel):
    peer_id: str
    target_id: str
    representation: str | None
    peer_card: list[str] | None


class SearchRequest(StrictModel):
    query: SafeStr = Field(min_length=1, max_length=10_000)
    filters: dict[str, Any] | None = None
    limit: int = Field(default=10, ge=1, le=100)
    #: Rapport addition: only messages this peer witnessed.
    peer_perspective: ResourceId | None = None


class ConclusionQueryRequest(StrictModel):
    query: SafeStr = Field(min_length=1, max_length=10_000, examples=["where does alice live"])
    top_k: int = Field(default=10, ge=1, le=100)
    distance: float | None = Field(default=None, ge=0, le=1)
    filters: dict[str, Any] = Field(
        description="The view to search: observer_id and observed_id (required), session_id.",
        examples=[{"observer_id": "bob", "observed_id": "alice"}],
    )


class ViewOut(BaseModel):
    """One perspective: what ``observer_id`` holds about ``observed_id`` (Rapport addition)."""

    observer_id: str
    observed_id: str
    conclusions: int
    card_facts: int


class ViewsOut(BaseModel):
    items: list[ViewOut]
