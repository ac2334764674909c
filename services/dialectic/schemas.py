"""HTTP models of the dialectic route (``POST …/peers/{p}/chat``, Honcho v3 wire shape)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, TypeAdapter, field_validator

from libs.common.reasoning.port import ReasoningLevel
from libs.common.wire import JsonObject, ResourceId, SafeStr, StrictModel

MAX_QUERY_CHARS = 10_000
MAX_FILTER_SESSIONS = 100

_SESSION_ID = TypeAdapter(ResourceId)


def _session_list(value: Any) -> list[str]:
    if isinstance(value, str):
        values: list[Any] = [value]
    elif isinstance(value, list):
        values = value
    elif isinstance(value, dict) and set(value) == {"in"} and isinstance(value["in"], list):
        values = value["in"]
    else:
        raise ValueError('filters.session_id must be a session id, a list of ids or {"in": [ids]}')
    if len(values) > MAX_FILTER_SESSIONS:
        raise ValueError(f"filters.session_id lists at most {MAX_FILTER_SESSIONS} sessions")
    out: list[str] = []
    for item in values:
        if not isinstance(item, str):
            raise ValueError("filters.session_id holds session ids (strings)")
        out.append(_SESSION_ID.validate_python(item))
    return list(dict.fromkeys(out))


class ChatRequest(StrictModel):
    """Body of ``POST /v3/workspaces/{w}/peers/{p}/chat``."""

    query: SafeStr = Field(
        min_length=1, max_length=MAX_QUERY_CHARS, description="The question (1-10,000 chars)."
    )
    target: ResourceId | None = Field(
        default=None,
        description="Ask the peer's view of this peer (its observations of the target and the "
        "target's messages it witnessed); unset: the peer's own memory.",
    )
    session_id: ResourceId | None = Field(
        default=None, description="Only what was said (or concluded) in this session."
    )
    reasoning_level: ReasoningLevel = Field(
        default="low",
        description="minimal | low | medium | high | max: how much evidence is retrieved and "
        "how many retrieval rounds run.",
    )
    stream: bool = Field(default=False, description="Answer as text/event-stream (SSE).")
    response_format: JsonObject | None = Field(
        default=None,
        description="A JSON Schema: the answer is then a JSON document (as a string) that "
        "validates against it. Needs an LLM (RAPPORT_LLM_BASE_URL).",
    )
    include_evidence: bool = Field(
        default=False, description="Return the evidence the answer was drawn from."
    )
    filters: dict[str, Any] | None = Field(
        default=None,
        description='Only {"session_id": id | [ids] | {"in": [ids]}} is supported.',
    )
    scope: Any = Field(
        default=None, description="Honcho scopes; not supported yet (422 when given)."
    )

    @field_validator("reasoning_level", mode="before")
    @classmethod
    def _default_level(cls, value: Any) -> Any:
        return "low" if value is None else value

    @field_validator("stream", "include_evidence", mode="before")
    @classmethod
    def _null_is_false(cls, value: Any) -> Any:
        return False if value is None else value

    @field_validator("filters")
    @classmethod
    def _only_session_filter(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if not value:
            return None
        unknown = sorted(set(value) - {"session_id"})
        if unknown:
            raise ValueError(
                f"chat filters support only 'session_id'; unsupported: {', '.join(unknown)}"
            )
        return {"session_id": _session_list(value["session_id"])}

    @field_validator("response_format")
    @classmethod
    def _unwrap_openai_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """Also accept OpenAI's ``{"type": "json_schema", "json_schema": {"schema": …}}`` and
        ``{"type": "json_object"}`` wrappers."""
        if value is None:
            return None
        if value.get("type") == "json_schema" and isinstance(value.get("json_schema"), dict):
            schema = value["json_schema"].get("schema")
            if not isinstance(schema, dict):
                raise ValueError("response_format.json_schema.schema must be a JSON Schema object")
            return schema
        if value.get("type") == "json_object":
            return {"type": "object"}
        return value

    def session_ids(self) -> list[str] | None:
        """The sessions to restrict to (``session_id`` and ``filters`` intersected)."""
        listed = self.filters["session_id"] if self.filters else None
        if self.session_id is None:
            return listed
        if listed is None:
            return [self.session_id]
        return [self.session_id] if self.session_id in listed else []


class Citations(BaseModel):
    """Ids of the messages and conclusions the answer rests on (a Rapport addition)."""

    messages: list[str]
    conclusions: list[str]


class EvidenceConclusion(BaseModel):
    id: str
    level: str
    content: str
    created_at: datetime
    session_id: str | None
    observer_id: str
    observed_id: str
    source_ids: list[str]


class EvidenceMessage(BaseModel):
    id: str
    session_id: str
    peer_id: str
    created_at: datetime


class EvidenceOut(BaseModel):
    """What the answer was drawn from (``include_evidence``; the honcho-ai SDK's shape)."""

    conclusions: list[EvidenceConclusion]
    messages: list[EvidenceMessage]
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    reasoning_trace_id: str | None = None


class ChatResponse(BaseModel):
    content: str | None
    citations: Citations | None = None
    evidence: EvidenceOut | None = None


class ChatDelta(BaseModel):
    content: str


class ChatChunkEvent(BaseModel):
    """A streamed piece of the answer (``stream: true``)."""

    delta: ChatDelta
    done: Literal[False]


class ChatDoneEvent(BaseModel):
    """The last event of a stream: with ``evidence`` when asked for, with ``error`` when the
    answer failed after it started."""

    done: Literal[True]
    evidence: EvidenceOut | None = None
    error: str | None = None


ChatStreamEvent = ChatChunkEvent | ChatDoneEvent
