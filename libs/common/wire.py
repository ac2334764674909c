"""Wire models and validators shared by several HTTP services (Honcho v3 shapes)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
)
from pydantic_core import CoreSchema

from libs.common.ids import RESOURCE_ID_MAX, RESOURCE_ID_PATTERN
from libs.common.models import Conclusion, Message

T = TypeVar("T")

#: Nesting and size limits for user JSON (metadata / configuration). Settings may lower the size.
MAX_JSON_DEPTH = 8
MAX_JSON_BYTES = 64 * 1024


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates ("\ud800") cannot be stored
            raise ValueError("must not contain unpaired UTF-16 surrogates") from exc
    return value


ResourceId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=RESOURCE_ID_MAX, pattern=RESOURCE_ID_PATTERN),
]
"""A workspace / peer / session id: 1-512 of ``A-Z a-z 0-9 _ -``."""


class _OnlyIdKeys:
    """Pydantic describes the keys of ``dict[ResourceId, X]`` with ``patternProperties``,
    which in JSON Schema lets any other key through with any value; validation refuses them,
    so the schema says so too (``additionalProperties: false``)."""

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        out = handler(schema)
        out["additionalProperties"] = False
        return out


IdKeyed = Annotated[dict[ResourceId, T], _OnlyIdKeys()]
"""An object keyed by workspace / peer / session ids (e.g. a session's peers and their config)."""

SafeStr = Annotated[str, AfterValidator(_no_nul)]
"""Free text that Postgres can store (no NUL characters)."""


def _walk(value: Any, depth: int, path: str) -> None:
    # ``depth`` counts containers (objects and arrays): the object itself is level 1.
    if isinstance(value, dict | list) and depth > MAX_JSON_DEPTH:
        raise ValueError(f"nests deeper than {MAX_JSON_DEPTH} levels (at {path})")
    if isinstance(value, str):
        try:
            _no_nul(value)
        except ValueError as exc:
            raise ValueError(f"{exc} (at {path})") from None
    elif isinstance(value, bool):
        pass
    elif isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise ValueError(f"contains an integer outside the 64-bit range (at {path})")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"contains a non-finite number (at {path})")
        # Postgres stores 1e19 as the integer 18446744073709552000, which reads back beyond
        # what the event encoder (orjson, 64-bit integers) can serialize.
        if not -(2.0**63) <= value < 2.0**63:
            raise ValueError(f"contains a number outside the 64-bit range (at {path})")
    elif isinstance(value, dict):
        for k, v in value.items():
            try:
                _no_nul(k)
            except ValueError as exc:
                raise ValueError(f"has a key that {exc} (at {path})") from None
            _walk(v, depth + 1, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _walk(v, depth + 1, f"{path}[{i}]")


def _check_json_object(value: dict[str, Any]) -> dict[str, Any]:
    _walk(value, 1, "$")
    size = len(orjson.dumps(value))
    if size > MAX_JSON_BYTES:
        raise ValueError(f"is {size} bytes once serialized; the limit is {MAX_JSON_BYTES}")
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_check_json_object)]
"""A user JSON object (metadata, configuration): bounded depth and size, storable by Postgres."""


def as_utc(value: datetime) -> datetime:
    """``value`` converted to UTC (naive datetimes from clients are taken as UTC).

    Client offsets never reach the database: Python accepts UTC offsets up to ±23:59 but
    Postgres only up to ±15:59. Raises ``ValueError`` when the instant falls outside years
    1-9999 once converted.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("is outside years 1-9999 once converted to UTC") from exc


class StrictModel(BaseModel):
    """Request bodies: unknown fields are an error the client should hear about."""

    model_config = ConfigDict(extra="forbid")


class ListRequest(StrictModel):
    """Body of every ``POST …/list`` route."""

    filters: dict[str, Any] | None = Field(
        default=None, description="Filter DSL object (see docs/api.md)."
    )


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    page: int
    size: int
    pages: int


class MessageOut(BaseModel):
    id: str
    content: str
    peer_id: str
    session_id: str
    workspace_id: str
    metadata: dict[str, Any]
    created_at: datetime
    token_count: int

    @classmethod
    def of(cls, m: Message) -> MessageOut:
        """The wire shape of a stored message (every service returns messages this way)."""
        return cls(
            id=m.id,
            content=m.content,
            peer_id=m.peer_id,
            session_id=m.session_id,
            workspace_id=m.workspace_id,
            metadata=m.metadata_,
            created_at=m.created_at,
            token_count=m.token_count,
        )


class ConclusionOut(BaseModel):
    id: str
    content: str
    observer_id: str
    observed_id: str
    session_id: str | None
    level: str = "explicit"
    source_ids: list[str] = Field(default_factory=list)
    created_at: datetime

    @classmethod
    def of(cls, c: Conclusion) -> ConclusionOut:
        """The wire shape of a stored conclusion."""
        return cls(
            id=c.id,
            content=c.content,
            observer_id=c.observer_id,
            observed_id=c.observed_id,
            session_id=c.session_id,
            level=c.level,
            source_ids=list(c.source_ids),
            created_at=c.created_at,
        )
