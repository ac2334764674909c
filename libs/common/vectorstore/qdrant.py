"""Qdrant adapter (``qdrant-client``'s ``AsyncQdrantClient``): a server by URL, or local mode.

* One collection per name and dimension: ``<namespace>_<name>_<dimensions>``, cosine distance.
* Payload-based multitenancy: every point carries ``workspace_id``, indexed as a keyword with
  ``is_tenant=True``; the collection builds per-tenant HNSW graphs (``payload_m=16``) instead of
  one global graph (``m=0``), as Qdrant recommends when every search filters on the tenant —
  which this port guarantees (:class:`~libs.common.vectorstore.VectorFilter` always has one).
* Qdrant ids must be integers or UUIDs: a record id maps to ``uuid5(ID_NAMESPACE, id)`` and the
  original id travels in the payload under ``_id`` (stripped from what queries return).
* Local mode (``":memory:"`` or a directory) implements the same API in Python, ignores payload
  indexes and opens a directory for one client only: for tests and demos, not for production.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from libs.common.vectorstore import (
    KEYWORD_KEYS,
    VectorFilter,
    VectorHit,
    VectorRecord,
    check_vector,
    validate_name,
)

#: Fixed forever: changing it would orphan every stored point.
ID_NAMESPACE = uuid.UUID("6f0a7e4c-3b1d-5c2e-9a47-7d3f1e2b8c90")
ORIGINAL_ID = "_id"
UPSERT_CHUNK = 256


def point_id(record_id: str) -> str:
    """The Qdrant point id (a UUID string) of a record id."""
    return str(uuid.uuid5(ID_NAMESPACE, record_id))


class QdrantVectorStore:
    """:class:`~libs.common.vectorstore.VectorStore` on Qdrant."""

    def __init__(
        self, client: AsyncQdrantClient, *, namespace: str = "rapport", local: bool = False
    ) -> None:
        self._client = client
        self._namespace = validate_name(namespace, "vector namespace")
        self._local = local
        self._collections: dict[str, tuple[str, int]] = {}

    @classmethod
    def connect(
        cls,
        *,
        url: str | None = None,
        path: str | None = None,
        api_key: str | None = None,
        namespace: str = "rapport",
        timeout_s: int = 30,
    ) -> QdrantVectorStore:
        """A store on a server (``url``), in memory (``url=":memory:"``) or in ``path``."""
        if url == ":memory:":
            return cls(AsyncQdrantClient(location=":memory:"), namespace=namespace, local=True)
        if url:
            client = AsyncQdrantClient(url=url, api_key=api_key, timeout=timeout_s)
            return cls(client, namespace=namespace, local=False)
        if path:
            return cls(AsyncQdrantClient(path=path), namespace=namespace, local=True)
        raise ValueError("QdrantVectorStore.connect needs url or path")

    def collection_name(self, name: str, dimensions: int) -> str:
        validate_name(name)
        if not 1 <= dimensions <= 65_536:
            raise ValueError(f"dimensions must be within 1..65536, got {dimensions}")
        return f"{self._namespace}_{name}_{dimensions}"

    def _collection(self, name: str) -> tuple[str, int]:
        try:
            return self._collections[name]
        except KeyError:
            raise LookupError(
                f"collection {name!r} is not ensured in this process; call ensure_collection"
            ) from None

    async def ensure_collection(self, name: str, dimensions: int) -> None:
        collection = self.collection_name(name, dimensions)
        if self._collections.get(name) == (collection, dimensions):
            return
        if not await self._client.collection_exists(collection):
            try:
                await self._client.create_collection(
                    collection,
                    vectors_config=models.VectorParams(
                        size=dimensions, distance=models.Distance.COSINE
                    ),
                    hnsw_config=models.HnswConfigDiff(payload_m=16, m=0),
                )
            except UnexpectedResponse as exc:  # another process created it first
                if exc.status_code != 409:
                    raise
            except ValueError:  # local mode: "Collection … already exists"
                if not await self._client.collection_exists(collection):
                    raise
        if not self._local:  # local mode ignores payload indexes
            await self._create_indexes(collection)
        self._collections[name] = (collection, dimensions)

    async def _create_indexes(self, collection: str) -> None:
        """Keyword indexes (tenant first) and a float index on ``created_at``; idempotent."""
        await self._client.create_payload_index(
            collection,
            "workspace_id",
            field_schema=models.KeywordIndexParams(
                type=models.KeywordIndexType.KEYWORD, is_tenant=True
            ),
        )
        for key in KEYWORD_KEYS:
            if key != "workspace_id":
                await self._client.create_payload_index(
                    collection, key, field_schema=models.PayloadSchemaType.KEYWORD
                )
        await self._client.create_payload_index(
            collection, "created_at", field_schema=models.PayloadSchemaType.FLOAT
        )

    async def upsert(self, name: str, records: Sequence[VectorRecord]) -> None:
        collection, dimensions = self._collection(name)
        latest: dict[str, VectorRecord] = {}
        for record in records:
            check_vector(record.vector, dimensions, f"record {record.id!r}")
            record.workspace_id()
            latest[record.id] = record
        points = [
            models.PointStruct(
                id=point_id(r.id),
                vector=[float(x) for x in r.vector],
                payload={**r.payload, ORIGINAL_ID: r.id},
            )
            for r in latest.values()
        ]
        for start in range(0, len(points), UPSERT_CHUNK):
            await self._client.upsert(
                collection, points=points[start : start + UPSERT_CHUNK], wait=True
            )

    async def delete(self, name: str, ids: Sequence[str]) -> None:
        collection, _ = self._collection(name)
        if not ids:
            return
        await self._client.delete(
            collection,
            points_selector=models.PointIdsList(points=[point_id(i) for i in set(ids)]),
            wait=True,
        )

    async def delete_where(self, name: str, flt: VectorFilter) -> None:
        collection, _ = self._collection(name)
        if flt.matches_nothing:
            return
        await self._client.delete(
            collection,
            points_selector=models.FilterSelector(filter=to_qdrant_filter(flt)),
            wait=True,
        )

    async def query(
        self,
        name: str,
        vector: Sequence[float],
        flt: VectorFilter,
        *,
        limit: int,
        min_score: float | None = None,
    ) -> list[VectorHit]:
        collection, dimensions = self._collection(name)
        check_vector(vector, dimensions, "query vector")
        if limit < 1 or flt.matches_nothing:
            return []
        response = await self._client.query_points(
            collection,
            query=[float(x) for x in vector],
            query_filter=to_qdrant_filter(flt),
            limit=limit,
            score_threshold=min_score,
            with_payload=True,
            with_vectors=False,
        )
        hits: list[VectorHit] = []
        for point in response.points:
            payload: dict[str, Any] = dict(point.payload or {})
            original = payload.pop(ORIGINAL_ID, None)
            hits.append(
                VectorHit(
                    id=str(original) if original is not None else str(point.id),
                    score=float(point.score),
                    payload=payload,
                )
            )
        return hits

    async def count(self, name: str, flt: VectorFilter) -> int:
        collection, _ = self._collection(name)
        if flt.matches_nothing:
            return 0
        result = await self._client.count(
            collection, count_filter=to_qdrant_filter(flt), exact=True
        )
        return int(result.count)

    async def close(self) -> None:
        await self._client.close()


def to_qdrant_filter(flt: VectorFilter) -> models.Filter:
    """``flt`` as a Qdrant filter (every condition in ``must``)."""
    conditions: list[models.Condition] = [
        models.FieldCondition(key="workspace_id", match=models.MatchValue(value=flt.workspace_id))
    ]
    for key, value in sorted(flt.must.items()):
        conditions.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
    for key, values in sorted(flt.any_of.items()):
        conditions.append(
            models.FieldCondition(key=key, match=models.MatchAny(any=[str(v) for v in values]))
        )
    for key, value in sorted(flt.contains.items()):
        # A keyword match on a list payload matches when any element equals the value.
        conditions.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
    if flt.created_after is not None or flt.created_before is not None:
        conditions.append(
            models.FieldCondition(
                key="created_at",
                range=models.Range(gte=flt.created_after, lt=flt.created_before),
            )
        )
    return models.Filter(must=conditions)
