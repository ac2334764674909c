"""The vector-store port: tenant-scoped cosine search over records with a JSON payload.

Two adapters implement it — :mod:`libs.common.vectorstore.pgvector` (a table per collection in
the project's Postgres; the embedded default, shared by any number of processes) and
:mod:`libs.common.vectorstore.qdrant` (Qdrant server, or qdrant-client's local mode for tests
and demos) — and one contract suite (``tests/contract/test_vector_store_contract.py``) holds
both to the same behaviour.

Rules every adapter follows:

* A collection is ``(name, dimensions)``; call :meth:`VectorStore.ensure_collection` (idempotent,
  safe concurrently) before any other call on that name in the process. Changing the configured
  dimensions therefore selects a new, empty collection instead of corrupting the old one.
* Names match ``[a-z0-9_]+``. Record ids are strings, unique across workspaces (Rapport's ids
  are); upserting an existing id replaces its vector and payload.
* Every record's payload carries ``workspace_id``; every read and filtered delete is scoped to
  exactly one workspace (:class:`VectorFilter` has no way to leave it out).
* Scores are cosine similarities (1 = same direction); higher is better; hits are best first.
* Filter semantics: ``must`` is equality on payload values (type-sensitive: ``1``, ``"1"`` and
  ``True`` differ); ``any_of`` matches when the payload value is one of the strings (an empty
  list matches nothing); ``created_after`` ≤ ``payload["created_at"]`` < ``created_before``
  (epoch seconds; records without ``created_at`` fail any time bound); ``contains`` matches when
  the payload value is a list holding the string. All conditions AND.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from libs.common.settings import VectorStoreSettings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "CONCLUSION_VECTORS",
    "MESSAGE_VECTORS",
    "PAYLOAD_KEYS",
    "FilterValue",
    "VectorFilter",
    "VectorHit",
    "VectorRecord",
    "VectorStore",
    "create_vector_store",
    "validate_name",
]

FilterValue = str | int | bool

#: Rapport's two collections: one vector per message, one per conclusion.
MESSAGE_VECTORS = "messages"
CONCLUSION_VECTORS = "conclusions"

#: Payload keys Rapport writes (adapters may index them); others are allowed and stored as is.
PAYLOAD_KEYS: tuple[str, ...] = (
    "workspace_id",
    "kind",
    "observer_id",
    "observed_id",
    "session_id",
    "peer_id",
    "created_at",
    "level",
)
#: Keyword-valued keys among :data:`PAYLOAD_KEYS` (``created_at`` is a float).
KEYWORD_KEYS: tuple[str, ...] = tuple(k for k in PAYLOAD_KEYS if k != "created_at")

_NAME = re.compile(r"[a-z0-9_]+")


def validate_name(value: str, what: str = "collection name") -> str:
    """``value`` if it matches ``[a-z0-9_]+``; ``ValueError`` otherwise."""
    if not _NAME.fullmatch(value):
        raise ValueError(f"{what} {value!r} must match [a-z0-9_]+")
    return value


@dataclass(frozen=True, slots=True)
class VectorRecord:
    """One vector and its payload (``payload["workspace_id"]`` is required)."""

    id: str
    vector: list[float]
    payload: dict[str, Any]

    def workspace_id(self) -> str:
        ws = self.payload.get("workspace_id")
        if not isinstance(ws, str) or not ws:
            raise ValueError(f"record {self.id!r}: payload['workspace_id'] must be a string")
        return ws


@dataclass(frozen=True, slots=True)
class VectorFilter:
    """Which records of one workspace a query, count or delete applies to."""

    workspace_id: str
    must: Mapping[str, FilterValue] = field(default_factory=dict)
    any_of: Mapping[str, Sequence[str]] = field(default_factory=dict)
    #: ``{key: value}``: the payload's list under ``key`` holds the string ``value``.
    contains: Mapping[str, str] = field(default_factory=dict)
    created_after: float | None = None
    created_before: float | None = None

    def __post_init__(self) -> None:
        if not self.workspace_id:
            raise ValueError("VectorFilter.workspace_id is required")
        for key, values in self.any_of.items():
            if isinstance(values, str):
                raise ValueError(f"any_of[{key!r}] must be a list of strings, not a string")

    @property
    def matches_nothing(self) -> bool:
        """True when an empty ``any_of`` list (or an empty time range) excludes every record."""
        if any(len(values) == 0 for values in self.any_of.values()):
            return True
        return (
            self.created_after is not None
            and self.created_before is not None
            and self.created_after >= self.created_before
        )


@dataclass(frozen=True, slots=True)
class VectorHit:
    """A query result: cosine similarity ``score`` (higher is better)."""

    id: str
    score: float
    payload: dict[str, Any]


@runtime_checkable
class VectorStore(Protocol):
    """Tenant-scoped cosine vector search (see the module docstring for the rules)."""

    async def ensure_collection(self, name: str, dimensions: int) -> None:
        """Create the collection for ``(name, dimensions)`` if missing; idempotent."""
        ...

    async def upsert(self, name: str, records: Sequence[VectorRecord]) -> None:
        """Insert or replace records by id."""
        ...

    async def delete(self, name: str, ids: Sequence[str]) -> None:
        """Delete records by id (unknown ids are ignored)."""
        ...

    async def delete_where(self, name: str, flt: VectorFilter) -> None:
        """Delete every record of the filter's workspace that matches it."""
        ...

    async def query(
        self,
        name: str,
        vector: Sequence[float],
        flt: VectorFilter,
        *,
        limit: int,
        min_score: float | None = None,
    ) -> list[VectorHit]:
        """The ``limit`` nearest records matching ``flt``, best first, score ≥ ``min_score``."""
        ...

    async def count(self, name: str, flt: VectorFilter) -> int:
        """How many records match ``flt``."""
        ...

    async def close(self) -> None:
        """Release what the store owns (never a shared engine)."""
        ...


def check_vector(vector: Sequence[float], dimensions: int, what: str = "vector") -> None:
    if len(vector) != dimensions:
        raise ValueError(f"{what} has {len(vector)} dimensions; the collection has {dimensions}")


def create_vector_store(
    settings: VectorStoreSettings, engine: AsyncEngine | None = None
) -> VectorStore:
    """The store the settings name: ``'pgvector'`` (needs ``engine``) or ``'qdrant'``."""
    kind = settings.vector_store.strip().lower()
    namespace = validate_name(settings.vector_namespace, "vector_namespace")
    if kind == "pgvector":
        if engine is None:
            raise ValueError("the pgvector store needs the database engine")
        from libs.common.vectorstore.pgvector import PgVectorStore

        return PgVectorStore(engine, namespace=namespace)
    if kind == "qdrant":
        from libs.common.vectorstore.qdrant import QdrantVectorStore

        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        if settings.qdrant_url:
            return QdrantVectorStore.connect(
                url=settings.qdrant_url, api_key=api_key, namespace=namespace
            )
        if settings.qdrant_path:
            return QdrantVectorStore.connect(path=settings.qdrant_path, namespace=namespace)
        raise ValueError("the qdrant store needs RAPPORT_QDRANT_URL or RAPPORT_QDRANT_PATH")
    raise ValueError(f"unknown vector store {settings.vector_store!r} ('pgvector' or 'qdrant')")
