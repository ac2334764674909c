"""One contract suite for every vector-store adapter.

pgvector runs against the real test Postgres (a fresh per-run database from the ``infra``
fixture); Qdrant runs through qdrant-client's local mode (``":memory:"``). Both must behave the
same: ranking, idempotent upserts, tenant isolation, every filter kind, min_score, deletes,
counts, configurable dimensions (8-d test vectors and the real 384-d embedder) and concurrent
writers.
"""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from libs.common.db import create_engine
from libs.common.embeddings import LocalOnnxEmbedder
from libs.common.settings import PostgresSettings, VectorStoreSettings
from libs.common.vectorstore import (
    VectorFilter,
    VectorRecord,
    VectorStore,
    create_vector_store,
)

NAMESPACE = "ct" + uuid.uuid4().hex[:6]
DIM = 8
WS_A = "ws_alpha"
WS_B = "ws_beta"
T0 = 1_750_000_000.0


@dataclass(frozen=True)
class Backend:
    kind: str
    database_url: str | None = None


@pytest.fixture(params=["pgvector", "qdrant"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "pgvector":
        infra = request.getfixturevalue("infra")
        return Backend("pgvector", infra.database_url)
    return Backend("qdrant")


@dataclass
class Harness:
    backend: Backend
    store: VectorStore
    opened: list[Any]

    async def reopen(self) -> VectorStore:
        """Another store instance on the same storage (pgvector only: like another process)."""
        assert self.backend.kind == "pgvector"
        engine = create_engine(PostgresSettings(database_url=self.backend.database_url))
        self.opened.append(engine)
        return create_vector_store(
            VectorStoreSettings(vector_store="pgvector", vector_namespace=NAMESPACE), engine
        )


@pytest.fixture
async def harness(backend: Backend) -> AsyncIterator[Harness]:
    opened: list[Any] = []
    if backend.kind == "pgvector":
        engine = create_engine(PostgresSettings(database_url=backend.database_url, db_pool_size=8))
        opened.append(engine)
        store = create_vector_store(
            VectorStoreSettings(vector_store="pgvector", vector_namespace=NAMESPACE), engine
        )
    else:
        store = create_vector_store(
            VectorStoreSettings(
                vector_store="qdrant", qdrant_url=":memory:", vector_namespace=NAMESPACE
            )
        )
    yield Harness(backend, store, opened)
    await store.close()
    for engine in opened:
        await engine.dispose()


@pytest.fixture
async def store(harness: Harness) -> VectorStore:
    return harness.store


@pytest.fixture
async def coll(store: VectorStore) -> str:
    """A fresh 8-d collection for the test."""
    name = "c" + uuid.uuid4().hex[:10]
    await store.ensure_collection(name, DIM)
    return name


def unit(*xs: float, dim: int = DIM) -> list[float]:
    v = list(xs) + [0.0] * (dim - len(xs))
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def at_angle(degrees: float) -> list[float]:
    """Unit vector at ``degrees`` from e0 in the e0/e1 plane (cosine to e0 = cos(degrees))."""
    r = math.radians(degrees)
    return unit(math.cos(r), math.sin(r))


def rec(id_: str, vector: list[float], ws: str = WS_A, **payload: Any) -> VectorRecord:
    return VectorRecord(id=id_, vector=vector, payload={"workspace_id": ws, **payload})


def ids(hits: Sequence[Any]) -> list[str]:
    return [h.id for h in hits]


E0 = unit(1.0)
E1 = unit(0.0, 1.0)


# --- ranking, upsert ------------------------------------------------------------------------


async def test_query_ranks_by_cosine_similarity(store: VectorStore, coll: str) -> None:
    angles = [60, 0, 80, 20, 40]
    await store.upsert(coll, [rec(f"r{a}", at_angle(a), kind="message") for a in angles])

    top3 = await store.query(coll, E0, VectorFilter(WS_A), limit=3)
    assert ids(top3) == ["r0", "r20", "r40"]
    for hit, angle in zip(top3, [0, 20, 40], strict=True):
        assert hit.score == pytest.approx(math.cos(math.radians(angle)), abs=1e-4)
        assert hit.payload == {"workspace_id": WS_A, "kind": "message"}

    everything = await store.query(coll, E0, VectorFilter(WS_A), limit=50)
    assert ids(everything) == ["r0", "r20", "r40", "r60", "r80"]
    scores = [h.score for h in everything]
    assert scores == sorted(scores, reverse=True)

    # The query vector need not be normalised; scores stay cosine similarities.
    scaled = await store.query(coll, [3.0 * x for x in at_angle(80)], VectorFilter(WS_A), limit=1)
    assert ids(scaled) == ["r80"] and scaled[0].score == pytest.approx(1.0, abs=1e-4)


async def test_upsert_is_idempotent_and_replaces(store: VectorStore, coll: str) -> None:
    first = rec("a", E0, kind="message", session_id="s1")
    await store.upsert(coll, [first])
    await store.upsert(coll, [first])
    assert await store.count(coll, VectorFilter(WS_A)) == 1

    await store.upsert(coll, [rec("a", E1, kind="conclusion", level="explicit")])
    assert await store.count(coll, VectorFilter(WS_A)) == 1
    (hit,) = await store.query(coll, E1, VectorFilter(WS_A), limit=5)
    assert hit.id == "a" and hit.score == pytest.approx(1.0, abs=1e-4)
    assert hit.payload == {"workspace_id": WS_A, "kind": "conclusion", "level": "explicit"}
    assert await store.count(coll, VectorFilter(WS_A, must={"kind": "message"})) == 0

    # Duplicates inside one call: the last one wins.
    await store.upsert(coll, [rec("b", E0, kind="x"), rec("b", E1, kind="y")])
    hits = await store.query(coll, E1, VectorFilter(WS_A, must={"kind": "y"}), limit=5)
    assert ids(hits) == ["b"] and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert await store.count(coll, VectorFilter(WS_A, must={"kind": "x"})) == 0


async def test_payload_round_trips(store: VectorStore, coll: str) -> None:
    payload = {
        "kind": "message",
        "created_at": T0 + 0.125,
        "content": "naïve café — 日本語 🎉",
        "tags": ["a", "b"],
        "nested": {"x": 1, "y": [1.5, None, True]},
    }
    await store.upsert(coll, [rec("p1", E0, **payload)])
    (hit,) = await store.query(coll, E0, VectorFilter(WS_A), limit=1)
    assert hit.payload == {"workspace_id": WS_A, **payload}  # nothing added (e.g. no "_id")


async def test_empty_collection_and_empty_calls(store: VectorStore, coll: str) -> None:
    assert await store.query(coll, E0, VectorFilter(WS_A), limit=10) == []
    assert await store.count(coll, VectorFilter(WS_A)) == 0
    await store.upsert(coll, [])
    await store.delete(coll, [])
    await store.delete(coll, ["never-existed"])
    await store.delete_where(coll, VectorFilter(WS_A))
    await store.upsert(coll, [rec("z", E0)])
    assert await store.query(coll, E0, VectorFilter(WS_A), limit=0) == []


# --- tenants --------------------------------------------------------------------------------


async def test_tenant_isolation(store: VectorStore, coll: str) -> None:
    # A's vectors point away from the query; B's are exactly on it.
    await store.upsert(coll, [rec(f"a{i}", at_angle(60 + 5 * i), WS_A) for i in range(4)])
    await store.upsert(coll, [rec(f"b{i}", E0, WS_B, session_id="s1") for i in range(4)])

    hits = await store.query(coll, E0, VectorFilter(WS_A), limit=20)
    assert ids(hits) == ["a0", "a1", "a2", "a3"]
    assert all(h.payload["workspace_id"] == WS_A for h in hits)
    assert await store.count(coll, VectorFilter(WS_A)) == 4
    assert await store.count(coll, VectorFilter(WS_B)) == 4
    assert await store.count(coll, VectorFilter("ws_nobody")) == 0
    assert await store.query(coll, E0, VectorFilter("ws_nobody"), limit=5) == []

    # A filter on B's payload values from workspace A still sees only A.
    assert await store.count(coll, VectorFilter(WS_A, must={"workspace_id": WS_B})) == 0
    assert await store.query(coll, E0, VectorFilter(WS_A, must={"session_id": "s1"}), limit=5) == []
    assert await store.count(coll, VectorFilter(WS_A, any_of={"workspace_id": [WS_B]})) == 0

    await store.delete_where(coll, VectorFilter(WS_A))
    assert await store.count(coll, VectorFilter(WS_A)) == 0
    assert await store.count(coll, VectorFilter(WS_B)) == 4


# --- filters --------------------------------------------------------------------------------

FILTER_RECORDS = [
    # id, session, observer, observed, kind, level, created_at offset, turn, pinned
    ("m1", "s1", "alice", "alice", "message", None, 0.0, 1, False),
    ("m2", "s1", "bob", "alice", "message", None, 1.0, 2, True),
    ("m3", "s2", "alice", "bob", "message", None, 2.0, 2, False),
    ("c1", "s1", "alice", "alice", "conclusion", "explicit", 3.0, 3, True),
    ("c2", "s2", "bob", "alice", "conclusion", "deductive", 4.0, 1, False),
    ("c3", "s3", "charlie", "alice", "conclusion", "inductive", 5.5, 4, False),
]

FILTER_CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    ("no condition", {}, {"m1", "m2", "m3", "c1", "c2", "c3", "undated"}),
    ("must str", {"must": {"kind": "message"}}, {"m1", "m2", "m3", "undated"}),
    ("must two keys", {"must": {"session_id": "s1", "observer_id": "alice"}}, {"m1", "c1"}),
    ("must int", {"must": {"turn": 2}}, {"m2", "m3"}),
    ("must bool true", {"must": {"pinned": True}}, {"m2", "c1"}),
    ("must bool false", {"must": {"pinned": False}}, {"m1", "m3", "c2", "c3"}),
    ("must int is not str", {"must": {"turn": "2"}}, set()),
    ("must int is not bool", {"must": {"pinned": 0}}, set()),
    ("must bool is not int", {"must": {"turn": True}}, set()),
    ("must no match", {"must": {"kind": "summary"}}, set()),
    ("any_of", {"any_of": {"session_id": ["s1", "s3"]}}, {"m1", "m2", "c1", "c3", "undated"}),
    ("any_of one", {"any_of": {"observer_id": ["charlie"]}}, {"c3"}),
    (
        "any_of two keys",
        {"any_of": {"session_id": ["s1", "s2"], "level": ["explicit", "deductive"]}},
        {"c1", "c2"},
    ),
    ("any_of empty list", {"any_of": {"session_id": []}}, set()),
    ("any_of unknown values", {"any_of": {"session_id": ["s9"]}}, set()),
    ("created_after inclusive", {"created_after": T0 + 2.0}, {"m3", "c1", "c2", "c3"}),
    ("created_before exclusive", {"created_before": T0 + 2.0}, {"m1", "m2"}),
    ("created range", {"created_after": T0 + 1.0, "created_before": T0 + 4.0}, {"m2", "m3", "c1"}),
    ("created fractional", {"created_after": T0 + 5.25}, {"c3"}),
    ("created empty range", {"created_after": T0 + 3.0, "created_before": T0 + 3.0}, set()),
    (
        "everything",
        {
            "must": {"observed_id": "alice", "kind": "conclusion"},
            "any_of": {"observer_id": ["alice", "bob"]},
            "created_after": T0 + 3.5,
            "created_before": T0 + 10.0,
        },
        {"c2"},
    ),
]


async def _seed_filter_records(store: VectorStore, coll: str) -> None:
    rng = random.Random(7)
    records = []
    for id_, session, observer, observed, kind, level, offset, turn, pinned in FILTER_RECORDS:
        payload: dict[str, Any] = {
            "kind": kind,
            "session_id": session,
            "observer_id": observer,
            "observed_id": observed,
            "created_at": T0 + offset,
            "turn": turn,
            "pinned": pinned,
        }
        if level is not None:
            payload["level"] = level
        vector = unit(*(rng.uniform(-1, 1) for _ in range(DIM)))
        records.append(rec(id_, vector, WS_A, **payload))
        # The same records in workspace B must never leak into A's results.
        records.append(rec(f"{id_}-b", vector, WS_B, **payload))
    # In A only, a record without created_at (fails every time bound), turn 9, no observer.
    records.append(rec("undated", E0, WS_A, kind="message", session_id="s1", turn=9))
    await store.upsert(coll, records)


@pytest.mark.parametrize(
    ("case", "spec", "expected"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES]
)
async def test_filters(
    store: VectorStore, coll: str, case: str, spec: dict[str, Any], expected: set[str]
) -> None:
    await _seed_filter_records(store, coll)
    flt = VectorFilter(WS_A, **spec)
    hits = await store.query(coll, E0, flt, limit=100)
    assert set(ids(hits)) == expected
    assert len(hits) == len(expected)
    assert await store.count(coll, flt) == len(expected)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


async def test_delete_where_applies_the_filter(store: VectorStore, coll: str) -> None:
    await _seed_filter_records(store, coll)
    await store.delete_where(
        coll,
        VectorFilter(WS_A, must={"kind": "conclusion"}, created_before=T0 + 5.0),
    )
    remaining = await store.query(coll, E0, VectorFilter(WS_A), limit=100)
    assert set(ids(remaining)) == {"m1", "m2", "m3", "c3", "undated"}
    assert await store.count(coll, VectorFilter(WS_B)) == len(FILTER_RECORDS)
    await store.delete_where(coll, VectorFilter(WS_A, any_of={"kind": []}))  # matches nothing
    assert await store.count(coll, VectorFilter(WS_A)) == 5


# --- min_score, deletes, count ----------------------------------------------------------------


async def test_min_score(store: VectorStore, coll: str) -> None:
    await store.upsert(coll, [rec(f"r{a}", at_angle(a)) for a in (0, 20, 40, 60, 100)])
    flt = VectorFilter(WS_A)
    assert ids(await store.query(coll, E0, flt, limit=10, min_score=0.9)) == ["r0", "r20"]
    assert ids(await store.query(coll, E0, flt, limit=10, min_score=0.99)) == ["r0"]
    assert ids(await store.query(coll, E0, flt, limit=1, min_score=0.5)) == ["r0"]
    assert await store.query(coll, E0, flt, limit=10, min_score=1.01) == []
    # Negative similarities (r100 ≈ -0.17) are returned when the threshold allows them.
    assert ids(await store.query(coll, E0, flt, limit=10, min_score=-0.5))[-1] == "r100"
    assert len(await store.query(coll, E0, flt, limit=10, min_score=0.0)) == 4


async def test_delete_by_ids(store: VectorStore, coll: str) -> None:
    await store.upsert(coll, [rec(f"d{i}", at_angle(10 * i)) for i in range(5)])
    await store.upsert(coll, [rec("d0-other", E0, WS_B)])
    await store.delete(coll, ["d0", "d3", "missing", "d3"])
    assert ids(await store.query(coll, E0, VectorFilter(WS_A), limit=10)) == ["d1", "d2", "d4"]
    assert await store.count(coll, VectorFilter(WS_A)) == 3
    assert await store.count(coll, VectorFilter(WS_B)) == 1
    await store.upsert(coll, [rec("d0", E0)])  # a deleted id can come back
    assert ids(await store.query(coll, E0, VectorFilter(WS_A), limit=1)) == ["d0"]


async def test_delete_where_one_session(store: VectorStore, coll: str) -> None:
    await store.upsert(
        coll,
        [rec(f"a-s1-{i}", at_angle(i), WS_A, session_id="s1") for i in range(3)]
        + [rec(f"a-s2-{i}", at_angle(i), WS_A, session_id="s2") for i in range(2)]
        + [rec(f"b-s1-{i}", at_angle(i), WS_B, session_id="s1") for i in range(2)],
    )
    await store.delete_where(coll, VectorFilter(WS_A, must={"session_id": "s1"}))
    assert await store.count(coll, VectorFilter(WS_A, must={"session_id": "s1"})) == 0
    assert await store.count(coll, VectorFilter(WS_A, must={"session_id": "s2"})) == 2
    assert await store.count(coll, VectorFilter(WS_B, must={"session_id": "s1"})) == 2


# --- collections, dimensions, validation ------------------------------------------------------


async def test_dimensions_are_configuration(store: VectorStore) -> None:
    name = "d" + uuid.uuid4().hex[:10]
    await store.ensure_collection(name, 16)
    await store.ensure_collection(name, 16)  # idempotent
    await store.upsert(name, [rec("x", unit(1.0, dim=16))])
    assert await store.count(name, VectorFilter(WS_A)) == 1
    with pytest.raises(ValueError, match="dimensions"):
        await store.upsert(name, [rec("y", unit(1.0, dim=8))])
    with pytest.raises(ValueError, match="dimensions"):
        await store.query(name, unit(1.0, dim=8), VectorFilter(WS_A), limit=1)

    # Another dimension under the same name is another, empty collection.
    await store.ensure_collection(name, 32)
    assert await store.count(name, VectorFilter(WS_A)) == 0
    await store.upsert(name, [rec("x32", unit(1.0, dim=32))])
    assert ids(await store.query(name, unit(1.0, dim=32), VectorFilter(WS_A), limit=5)) == ["x32"]
    await store.ensure_collection(name, 16)
    assert ids(await store.query(name, unit(1.0, dim=16), VectorFilter(WS_A), limit=5)) == ["x"]


async def test_collection_survives_a_second_store(harness: Harness, coll: str) -> None:
    """ensure_collection on existing storage keeps the data (pgvector: another process)."""
    await harness.store.upsert(coll, [rec("keep", E0)])
    if harness.backend.kind != "pgvector":
        await harness.store.ensure_collection(coll, DIM)
        assert await harness.store.count(coll, VectorFilter(WS_A)) == 1
        return
    other = await harness.reopen()
    await other.ensure_collection(coll, DIM)
    assert ids(await other.query(coll, E0, VectorFilter(WS_A), limit=5)) == ["keep"]


async def test_validation(store: VectorStore, coll: str) -> None:
    for bad in ("Bad", "with-dash", "", "semi;colon", "space name"):
        with pytest.raises(ValueError, match=r"\[a-z0-9_\]"):
            await store.ensure_collection(bad, DIM)
    with pytest.raises(LookupError):
        await store.count("never_ensured", VectorFilter(WS_A))
    with pytest.raises(ValueError, match="workspace_id"):
        await store.upsert(coll, [VectorRecord(id="n", vector=E0, payload={"kind": "message"})])
    with pytest.raises(ValueError, match="workspace_id"):
        VectorFilter("")
    with pytest.raises(ValueError, match="any_of"):
        VectorFilter(WS_A, any_of={"session_id": "s1"})  # type: ignore[dict-item]


async def test_concurrent_writers(store: VectorStore) -> None:
    name = "cc" + uuid.uuid4().hex[:8]
    # Concurrent first-time creation of the same collection (several workers starting up).
    await asyncio.gather(*(store.ensure_collection(name, DIM) for _ in range(4)))
    rng = random.Random(3)

    async def writer(w: int) -> None:
        records = [
            rec(
                f"id{(w * 37 + i) % 300}",
                unit(*(rng.uniform(-1, 1) for _ in range(DIM))),
                WS_A if i % 3 else WS_B,
                writer=w,
            )
            for i in range(60)
        ]
        await store.upsert(name, records)

    await asyncio.gather(*(writer(w) for w in range(16)))
    total = await store.count(name, VectorFilter(WS_A)) + await store.count(
        name, VectorFilter(WS_B)
    )
    expected_ids = {f"id{(w * 37 + i) % 300}" for w in range(16) for i in range(60)}
    assert total == len(expected_ids)
    hits = await store.query(name, E0, VectorFilter(WS_A), limit=500)
    hits += await store.query(name, E0, VectorFilter(WS_B), limit=500)
    assert {h.id for h in hits} == expected_ids
    assert len(hits) == len(expected_ids)


# --- the real embedder through the store ------------------------------------------------------


@pytest.fixture(scope="module")
def embedder() -> LocalOnnxEmbedder:
    e = LocalOnnxEmbedder()
    e.load()
    return e


async def test_real_384d_embeddings(store: VectorStore, embedder: LocalOnnxEmbedder) -> None:
    name = "emb" + uuid.uuid4().hex[:8]
    await store.ensure_collection(name, embedder.dimensions)
    texts = {
        "eggs": "I had scrambled eggs and toast for breakfast this morning.",
        "stocks": "The stock market fell sharply after the interest rate decision.",
        "hike": "We hiked up the mountain trail and camped near the lake.",
        "cat": "My cat sleeps on the windowsill all afternoon.",
        "allergy": "I'm allergic to peanuts, so I avoid most desserts.",
    }
    vectors = await embedder.embed(list(texts.values()))
    await store.upsert(
        name,
        [rec(k, v, WS_A, kind="message") for k, v in zip(texts, vectors, strict=True)]
        + [rec(f"b-{k}", v, WS_B, kind="message") for k, v in zip(texts, vectors, strict=True)],
    )
    (q_food,) = await embedder.embed(["What did I eat in the morning?"])
    hits = await store.query(name, q_food, VectorFilter(WS_A), limit=3)
    assert hits[0].id == "eggs"
    assert all(not h.id.startswith("b-") for h in hits)
    (q_pet,) = await embedder.embed(["Where does the kitten like to nap?"])
    assert (await store.query(name, q_pet, VectorFilter(WS_A), limit=1))[0].id == "cat"
    (q_finance,) = await embedder.embed(["shares dropped on Wall Street"])
    top = await store.query(name, q_finance, VectorFilter(WS_A), limit=5, min_score=0.3)
    assert ids(top) == ["stocks"]


async def test_contains_matches_list_payload_elements(store: VectorStore, coll: str) -> None:
    await store.upsert(
        coll,
        [
            rec("m1", E0, witnesses=["alice", "bob"], kind="message"),
            rec("m2", at_angle(10), witnesses=["alice"], kind="message"),
            rec("m3", at_angle(20), witnesses=["carol"], kind="message"),
            rec("m1-b", E0, WS_B, witnesses=["bob"], kind="message"),
        ],
    )
    bob = VectorFilter(WS_A, contains={"witnesses": "bob"})
    assert ids(await store.query(coll, E0, bob, limit=10)) == ["m1"]
    alice = VectorFilter(WS_A, contains={"witnesses": "alice"}, must={"kind": "message"})
    assert ids(await store.query(coll, E0, alice, limit=10)) == ["m1", "m2"]
    assert await store.count(coll, VectorFilter(WS_A, contains={"witnesses": "dave"})) == 0
