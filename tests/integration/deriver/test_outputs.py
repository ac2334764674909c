"""What the deriver produces, end to end through the write path, JetStream and the consumers:
summaries, peer cards, the reasoning switches, message and conclusion vectors, the LLM reasoner
against a scripted OpenAI-compatible server, and dreams.

Tests that need a deriver with its own settings (a tiny summary budget, an LLM base URL) run it
in a private environment — its own database, stream and outbox relay — so it shares work with no
other deriver of the run, and everything it created is dropped when its module ends.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import psycopg
import pytest
from psycopg import sql
from sqlalchemy.ext.asyncio import create_async_engine

from allinone.app import AllInOneSettings, create_app
from libs.common.embeddings import create_embedder
from libs.common.migrate import upgrade_to_head
from libs.common.tokens import count_tokens
from libs.common.vectorstore import VectorFilter
from libs.common.vectorstore.pgvector import PgVectorStore
from tests.conftest import AppFactory, InfraEndpoints, delete_stream, make_settings
from tests.fakes.openai_server import RecordedRequest, Reply, ScriptedOpenAI, scripted_openai
from tests.integration.deriver._helpers import say, wait_derived

T = TypeVar("T")
Row = tuple[Any, ...]


# -- shared steps -------------------------------------------------------------------------------
@pytest.fixture
async def deriving(app_factory: AppFactory, clean_db: None) -> httpx.AsyncClient:
    return await app_factory(deriver_enabled=True)


async def poll(
    fetch: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    what: str,
    wait_s: float = 30.0,
    interval_s: float = 0.1,
) -> T:
    """``fetch()`` until ``done(value)``; fails with the last value after ``wait_s``."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        value = await fetch()
        if done(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: still {value!r} after {wait_s}s")
        await asyncio.sleep(interval_s)


async def rows(conn: psycopg.AsyncConnection[Any], query: Any, *params: Any) -> list[Row]:
    return list(await (await conn.execute(query, params)).fetchall())


async def setup_session(
    client: httpx.AsyncClient,
    ws: str,
    session: str,
    peers: dict[str, dict[str, Any]],
    configuration: dict[str, Any] | None = None,
) -> None:
    r = await client.post("/v3/workspaces", json={"id": ws})
    assert r.status_code in (200, 201), r.text
    body: dict[str, Any] = {"id": session, "peers": peers}
    if configuration is not None:
        body["configuration"] = configuration
    r = await client.post(f"/v3/workspaces/{ws}/sessions", json=body)
    assert r.status_code in (200, 201), r.text


async def conclusion_rows(
    client: httpx.AsyncClient, ws: str, **filters: str
) -> list[dict[str, Any]]:
    r = await client.post(
        f"/v3/workspaces/{ws}/conclusions/list?size=100", json={"filters": filters}
    )
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


@dataclass(frozen=True)
class Private:
    """A deriver-enabled app on its own database and stream."""

    client: httpx.AsyncClient
    conn: psycopg.AsyncConnection[Any]


@asynccontextmanager
async def private_deriver(infra: InfraEndpoints, **overrides: Any) -> AsyncIterator[Private]:
    run = uuid.uuid4().hex[:8]
    base, _, db_name = infra.database_url.rpartition("/")
    name = f"{db_name}_own_{run}"
    url = f"{base}/{name}"
    async with await psycopg.AsyncConnection.connect(infra.admin_dsn, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    stream = f"RT_{run}"
    try:
        await asyncio.to_thread(upgrade_to_head, url)
        settings = make_settings(
            infra,
            database_url=url,
            nats_stream=stream,
            nats_subject_prefix=f"p{run}",
            deriver_enabled=True,
            **overrides,
        )
        app = create_app(settings)
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app),
                    base_url="http://rapport.test",
                    timeout=30,
                )
            )
            conn = await stack.enter_async_context(
                await psycopg.AsyncConnection.connect(
                    url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
                )
            )
            yield Private(client=client, conn=conn)
    finally:
        await delete_stream(infra.nats_url, stream)
        async with await psycopg.AsyncConnection.connect(infra.admin_dsn, autocommit=True) as admin:
            await admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# -- 1. summaries -------------------------------------------------------------------------------
def pier(i: int) -> str:
    return f"I counted the sailing boats moored at pier P{i:03d} near the lighthouse"


async def summaries(conn: psycopg.AsyncConnection[Any], ws: str, session: str) -> list[Row]:
    return await rows(
        conn,
        "SELECT summary_type, message_seq, message_id, token_count, content FROM summaries "
        "WHERE workspace_id = %s AND session_id = %s ORDER BY summary_type DESC, message_seq",
        ws,
        session,
    )


def markers(text: str) -> set[int]:
    return {int(m) for m in re.findall(r"\bP(\d{3})\b", text)}


async def test_default_cadence_is_a_short_summary_every_20_and_a_long_one_every_60(
    deriving: httpx.AsyncClient, db: psycopg.AsyncConnection[Any], ws_id: str
) -> None:
    await setup_session(deriving, ws_id, "harbour", {"alice": {}, "bob": {}})
    sent = await say(
        deriving, ws_id, "harbour", *((("alice", "bob")[i % 2], pier(i)) for i in range(1, 61))
    )
    ids = [m["id"] for m in sent]

    got = await poll(
        lambda: summaries(db, ws_id, "harbour"),
        lambda r: {(t, s) for t, s, *_ in r} >= {("short", 60), ("long", 60)},
        what="summaries",
        wait_s=60,
    )
    assert [(t, s, m) for t, s, m, *_ in got] == [
        ("short", 20, ids[19]),
        ("short", 40, ids[39]),
        ("short", 60, ids[59]),
        ("long", 60, ids[59]),
    ]
    for kind, seq, _, tokens, content in got:
        assert content.strip(), (kind, seq)
        assert tokens == count_tokens(content), (kind, seq)
        mentioned = markers(content)
        # The newest message it covers is always in it; nothing after its last message is.
        assert seq in mentioned, (kind, seq, content)
        assert max(mentioned) == seq, (kind, seq, content)
    # A short summary keeps several of its messages, a long one many more.
    assert 2 <= len(markers(got[0][4])) < len(markers(got[3][4]))


async def test_session_configuration_overrides_the_cadence(
    deriving: httpx.AsyncClient, db: psycopg.AsyncConnection[Any], ws_id: str
) -> None:
    cadence = {"summary": {"messages_per_short_summary": 10, "messages_per_long_summary": 20}}
    await setup_session(deriving, ws_id, "quick", {"alice": {}, "bob": {}}, cadence)
    sent = await say(
        deriving, ws_id, "quick", *((("alice", "bob")[i % 2], pier(i)) for i in range(1, 21))
    )
    got = await poll(
        lambda: summaries(db, ws_id, "quick"),
        lambda r: {(t, s) for t, s, *_ in r} >= {("short", 20), ("long", 20)},
        what="summaries",
    )
    assert [(t, s, m) for t, s, m, *_ in got] == [
        ("short", 10, sent[9]["id"]),
        ("short", 20, sent[19]["id"]),
        ("long", 20, sent[19]["id"]),
    ]
    assert 10 in markers(got[0][4]) and max(markers(got[0][4])) == 10


async def test_summaries_disabled_by_session_configuration_are_never_written(
    deriving: httpx.AsyncClient, db: psycopg.AsyncConnection[Any], ws_id: str
) -> None:
    cadence = {"messages_per_short_summary": 10, "messages_per_long_summary": 20}
    await setup_session(
        deriving, ws_id, "off", {"alice": {}}, {"summary": {"enabled": False, **cadence}}
    )
    r = await deriving.post(
        f"/v3/workspaces/{ws_id}/sessions",
        json={"id": "on", "peers": {"alice": {}}, "configuration": {"summary": cadence}},
    )
    assert r.status_code == 201, r.text
    await say(deriving, ws_id, "off", *(("alice", pier(i)) for i in range(1, 21)))
    # The control session's events come after: once its summary exists, "off" was processed.
    await say(deriving, ws_id, "on", *(("alice", pier(i)) for i in range(1, 11)))
    await poll(lambda: summaries(db, ws_id, "on"), lambda r: len(r) == 1, what="control summary")
    assert await summaries(db, ws_id, "off") == []


@pytest.fixture(scope="module")
async def tiny_summaries(infra: InfraEndpoints) -> AsyncIterator[Private]:
    async with private_deriver(infra, summary_short_max_tokens=50) as env:
        yield env


async def test_second_short_summary_folds_the_previous_one_within_the_token_bound(
    tiny_summaries: Private, ws_id: str
) -> None:
    client, conn = tiny_summaries.client, tiny_summaries.conn
    animals = [
        "otter",
        "badger",
        "heron",
        "lynx",
        "walrus",
        "falcon",
        "beaver",
        "marmot",
        "ibis",
        "gecko",
        "puffin",
        "jackal",
        "ocelot",
        "tapir",
        "wombat",
        "narwhal",
        "koala",
        "meerkat",
        "pelican",
        "bison",
    ]
    cadence = {"summary": {"messages_per_short_summary": 10, "messages_per_long_summary": 20}}
    await setup_session(client, ws_id, "zoo", {"alice": {}, "bob": {}}, cadence)
    lines = [
        (("bob", "alice")[i % 2], f"I photographed a {animal} near the old stone bridge")
        for i, animal in enumerate(animals, start=1)
    ]
    await say(client, ws_id, "zoo", *lines)
    got = await poll(
        lambda: rows(
            conn,
            "SELECT message_seq, token_count, content FROM summaries WHERE workspace_id = %s "
            "AND session_id = 'zoo' AND summary_type = 'short' ORDER BY message_seq",
            ws_id,
        ),
        lambda r: len(r) == 2,
        what="short summaries",
    )
    (seq1, _, first), (seq2, tokens, second) = got
    assert (seq1, seq2) == (10, 20)
    assert tokens == count_tokens(second) <= 50
    in_second = {a for a in animals if re.search(rf"\b{a}\b", second)}
    assert "bison" in in_second, second  # the newest message always makes it in
    older = in_second & set(animals[:10])
    # Messages 1-10 are not among the messages this summary was made from: what it holds of
    # them can only come from the previous summary.
    assert older, second
    assert all(re.search(rf"\b{a}\b", first) for a in older), (first, second)
    # The bound bites: far from every new message fits.
    assert len(in_second - older) < 10


# -- 2. peer cards ------------------------------------------------------------------------------
async def cards(conn: psycopg.AsyncConnection[Any], ws: str) -> dict[tuple[str, str], list[str]]:
    got = await rows(
        conn,
        "SELECT observer_id, observed_id, facts FROM peer_cards WHERE workspace_id = %s",
        ws,
    )
    return {(o, d): list(f) for o, d, f in got}


async def alice_moves(client: httpx.AsyncClient, ws: str, configuration: Any = None) -> None:
    peers = {"alice": {}, "bob": {"observe_others": True}, "charlie": {}}
    await setup_session(client, ws, "s", peers, configuration)
    await say(client, ws, "s", ("alice", "I live in Paris"))
    await wait_derived(client, ws, expect_total=1)
    await say(client, ws, "s", ("alice", "I just moved to Berlin"))
    await wait_derived(client, ws, expect_total=2)


async def test_peer_card_keeps_the_newest_location(
    deriving: httpx.AsyncClient, db: psycopg.AsyncConnection[Any], ws_id: str
) -> None:
    await alice_moves(deriving, ws_id)
    facts = (await cards(db, ws_id))[("alice", "alice")]
    assert facts == ["Lives in Berlin"], facts


async def test_peer_cards_exist_only_for_views_that_observe(
    deriving: httpx.AsyncClient, db: psycopg.AsyncConnection[Any], ws_id: str
) -> None:
    await alice_moves(deriving, ws_id)
    got = await cards(db, ws_id)
    assert set(got) == {("alice", "alice"), ("bob", "alice")}, got
    assert got[("bob", "alice")] == ["Lives in Berlin"]


async def test_peer_card_creation_switched_off_by_the_session(
    deriving: httpx.AsyncClient, db: psycopg.AsyncConnection[Any], ws_id: str
) -> None:
    await alice_moves(deriving, ws_id, {"peer_card": {"create": False}})
    views = {(c["observer_id"], c["observed_id"]) for c in await conclusion_rows(deriving, ws_id)}
    assert views == {("alice", "alice"), ("bob", "alice")}  # reasoning itself still ran
    assert await cards(db, ws_id) == {}


# -- 3. reasoning switches ----------------------------------------------------------------------
@pytest.fixture(scope="module")
async def store(infra: InfraEndpoints, settings: AllInOneSettings) -> AsyncIterator[PgVectorStore]:
    """The vector store port on the test database (the deriver's tables)."""
    engine = create_async_engine(infra.database_url, pool_size=2)
    vectors = PgVectorStore(engine, namespace=settings.vector_namespace)
    for name in ("messages", "conclusions"):
        await vectors.ensure_collection(name, settings.embedding_dimensions)
    yield vectors
    await vectors.close()
    await engine.dispose()


@pytest.fixture(scope="module")
def tables(store: PgVectorStore, settings: AllInOneSettings) -> dict[str, str]:
    return {
        name: store.table_name(name, settings.embedding_dimensions)
        for name in ("messages", "conclusions")
    }


async def vector_ids(
    conn: psycopg.AsyncConnection[Any], table: str, ws: str
) -> dict[str, dict[str, Any]]:
    got = await rows(
        conn,
        sql.SQL("SELECT id, payload FROM {} WHERE workspace_id = %s").format(sql.Identifier(table)),
        ws,
    )
    return {i: dict(p) for i, p in got}


async def status_of(conn: psycopg.AsyncConnection[Any], message_id: str) -> str | None:
    got = await rows(conn, "SELECT status FROM derivation_status WHERE message_id = %s", message_id)
    return got[0][0] if got else None


async def test_message_with_reasoning_off_is_indexed_and_done_without_conclusions(
    deriving: httpx.AsyncClient,
    db: psycopg.AsyncConnection[Any],
    tables: dict[str, str],
    ws_id: str,
) -> None:
    await setup_session(deriving, ws_id, "s", {"alice": {}})
    r = await deriving.post(
        f"/v3/workspaces/{ws_id}/sessions/s/messages",
        json={
            "messages": [
                {
                    "peer_id": "alice",
                    "content": "I live in Oslo",
                    "configuration": {"reasoning": {"enabled": False}},
                },
                {"peer_id": "alice", "content": "I work as a baker"},
            ]
        },
    )
    assert r.status_code == 201, r.text
    off, on = (m["id"] for m in r.json())
    status = await wait_derived(deriving, ws_id, expect_total=2)
    assert status["completed_work_units"] == 2

    found = await conclusion_rows(deriving, ws_id)
    assert found and all(c["source_ids"] == [on] for c in found), found
    assert not any("Oslo" in c["content"] for c in found)
    assert await status_of(db, off) == "done"
    assert off in await vector_ids(db, tables["messages"], ws_id)


async def test_session_with_reasoning_off_yields_no_conclusions_but_indexes_messages(
    deriving: httpx.AsyncClient,
    db: psycopg.AsyncConnection[Any],
    tables: dict[str, str],
    ws_id: str,
) -> None:
    await setup_session(deriving, ws_id, "quiet", {"alice": {}}, {"reasoning": {"enabled": False}})
    r = await deriving.post(
        f"/v3/workspaces/{ws_id}/sessions", json={"id": "control", "peers": {"alice": {}}}
    )
    assert r.status_code == 201
    [quiet] = await say(deriving, ws_id, "quiet", ("alice", "I live in Oslo"))
    await say(deriving, ws_id, "control", ("alice", "I live in Oslo"))
    await wait_derived(deriving, ws_id, expect_total=2)

    sessions = [c["session_id"] for c in await conclusion_rows(deriving, ws_id)]
    assert sessions and set(sessions) == {"control"}
    assert await status_of(db, quiet["id"]) == "done"
    assert quiet["id"] in await vector_ids(db, tables["messages"], ws_id)


# -- 4. vectors ---------------------------------------------------------------------------------
async def test_message_vectors_carry_their_witnesses_at_the_time(
    deriving: httpx.AsyncClient,
    db: psycopg.AsyncConnection[Any],
    tables: dict[str, str],
    ws_id: str,
) -> None:
    await setup_session(deriving, ws_id, "s", {"alice": {}, "bob": {}})
    [m1] = await say(deriving, ws_id, "s", ("alice", "I grew up near the sea"))
    r = await deriving.post(f"/v3/workspaces/{ws_id}/sessions/s/peers", json={"charlie": {}})
    assert r.status_code in (200, 201), r.text
    [m2] = await say(deriving, ws_id, "s", ("bob", "I collect vintage radios"))
    r = await deriving.request("DELETE", f"/v3/workspaces/{ws_id}/sessions/s/peers", json=["alice"])
    assert r.status_code in (200, 204), r.text
    [m3] = await say(deriving, ws_id, "s", ("charlie", "I play the cello"))
    await wait_derived(deriving, ws_id, expect_total=3)

    got = await vector_ids(db, tables["messages"], ws_id)
    assert set(got) == {m1["id"], m2["id"], m3["id"]}
    expected = {
        m1["id"]: ("alice", 1, ["alice", "bob"]),
        m2["id"]: ("bob", 2, ["alice", "bob", "charlie"]),
        m3["id"]: ("charlie", 3, ["bob", "charlie"]),
    }
    for mid, (peer, seq, witnesses) in expected.items():
        payload = got[mid]
        assert {k: payload.get(k) for k in ("workspace_id", "session_id", "peer_id", "seq")} == {
            "workspace_id": ws_id,
            "session_id": "s",
            "peer_id": peer,
            "seq": seq,
        }
        assert payload["witnesses"] == witnesses, (mid, payload)


async def test_every_derived_conclusion_has_a_vector_of_its_view(
    deriving: httpx.AsyncClient,
    db: psycopg.AsyncConnection[Any],
    tables: dict[str, str],
    ws_id: str,
) -> None:
    await setup_session(deriving, ws_id, "s", {"alice": {}, "bob": {"observe_others": True}})
    await say(
        deriving,
        ws_id,
        "s",
        ("alice", "I work as a nurse and I have two cats"),
        ("bob", "I play chess on Sundays"),
    )
    await wait_derived(deriving, ws_id, expect_total=2)
    found = await conclusion_rows(deriving, ws_id)
    assert {(c["observer_id"], c["observed_id"]) for c in found} == {
        ("alice", "alice"),
        ("bob", "alice"),
        ("bob", "bob"),
    }
    got = await vector_ids(db, tables["conclusions"], ws_id)
    assert set(got) == {c["id"] for c in found}
    for c in found:
        payload = got[c["id"]]
        assert (payload["observer_id"], payload["observed_id"], payload["session_id"]) == (
            c["observer_id"],
            c["observed_id"],
            "s",
        )


async def manual_conclusions(
    client: httpx.AsyncClient, ws: str, *contents: str, session_id: str | None = None
) -> list[str]:
    r = await client.post(
        f"/v3/workspaces/{ws}/conclusions",
        json={
            "conclusions": [
                {
                    "content": c,
                    "observer_id": "alice",
                    "observed_id": "alice",
                    **({"session_id": session_id} if session_id else {}),
                }
                for c in contents
            ]
        },
    )
    assert r.status_code == 201, r.text
    return [c["id"] for c in r.json()]


async def test_created_conclusions_are_indexed_and_deleted_ones_forgotten(
    deriving: httpx.AsyncClient,
    db: psycopg.AsyncConnection[Any],
    tables: dict[str, str],
    ws_id: str,
) -> None:
    await deriving.post("/v3/workspaces", json={"id": ws_id})
    await deriving.post(f"/v3/workspaces/{ws_id}/peers", json={"id": "alice"})
    keep, drop = await manual_conclusions(
        deriving, ws_id, "alice is allergic to peanuts", "alice speaks Portuguese"
    )
    got = await poll(
        lambda: vector_ids(db, tables["conclusions"], ws_id),
        lambda v: len(v) == 2,
        what="conclusion vectors",
    )
    assert set(got) == {keep, drop}
    assert {(p["observer_id"], p["observed_id"]) for p in got.values()} == {("alice", "alice")}

    r = await deriving.delete(f"/v3/workspaces/{ws_id}/conclusions/{drop}")
    assert r.status_code == 204
    got = await poll(
        lambda: vector_ids(db, tables["conclusions"], ws_id),
        lambda v: drop not in v,
        what="vector of the deleted conclusion",
    )
    assert set(got) == {keep}


async def test_deleting_a_session_removes_its_vectors_only(
    deriving: httpx.AsyncClient,
    db: psycopg.AsyncConnection[Any],
    tables: dict[str, str],
    ws_id: str,
) -> None:
    await setup_session(deriving, ws_id, "gone", {"alice": {}})
    await deriving.post(
        f"/v3/workspaces/{ws_id}/sessions", json={"id": "kept", "peers": {"alice": {}}}
    )
    [gone] = await say(deriving, ws_id, "gone", ("alice", "I live in Oslo"))
    [kept] = await say(deriving, ws_id, "kept", ("alice", "I work as a baker"))
    await wait_derived(deriving, ws_id, expect_total=2)
    kept_conclusions = {
        c["id"] for c in await conclusion_rows(deriving, ws_id) if c["session_id"] == "kept"
    }
    assert kept_conclusions
    assert len(await vector_ids(db, tables["conclusions"], ws_id)) > len(kept_conclusions)

    assert (await deriving.delete(f"/v3/workspaces/{ws_id}/sessions/gone")).status_code in (
        200,
        202,
        204,
    )
    messages = await poll(
        lambda: vector_ids(db, tables["messages"], ws_id),
        lambda v: gone["id"] not in v,
        what="message vectors of the deleted session",
    )
    assert set(messages) == {kept["id"]}
    conclusions = await poll(
        lambda: vector_ids(db, tables["conclusions"], ws_id),
        lambda v: set(v) == kept_conclusions,
        what="conclusion vectors of the deleted session",
    )
    assert all(p["session_id"] == "kept" for p in conclusions.values())


async def test_a_session_deleted_during_its_derivation_leaves_no_vectors(
    deriving: httpx.AsyncClient,
    db: psycopg.AsyncConnection[Any],
    tables: dict[str, str],
    ws_id: str,
) -> None:
    await setup_session(deriving, ws_id, "gone", {"alice": {}})
    r = await deriving.post(
        f"/v3/workspaces/{ws_id}/sessions", json={"id": "kept", "peers": {"alice": {}}}
    )
    assert r.status_code == 201
    await say(
        deriving,
        ws_id,
        "gone",
        *(("alice", f"I visited the museum of {n} old clocks in town") for n in range(40)),
    )
    # Delete while the deriver is busy with the batch: once its first message is derived.
    await poll(
        lambda: rows(db, "SELECT count(*) FROM derivation_status WHERE workspace_id = %s", ws_id),
        lambda r: r[0][0] > 0,
        what="derivation start",
        interval_s=0.01,
    )
    assert (await deriving.delete(f"/v3/workspaces/{ws_id}/sessions/gone")).status_code == 204
    [kept] = await say(deriving, ws_id, "kept", ("alice", "I like green tea"))
    await wait_derived(deriving, ws_id, expect_total=1)

    def only_kept(v: dict[str, dict[str, Any]]) -> bool:
        return all(p["session_id"] == "kept" for p in v.values())

    messages = await poll(
        lambda: vector_ids(db, tables["messages"], ws_id), only_kept, what="message vectors"
    )
    assert set(messages) == {kept["id"]}
    await poll(
        lambda: vector_ids(db, tables["conclusions"], ws_id), only_kept, what="conclusion vectors"
    )


async def test_deleting_a_workspace_removes_all_its_vectors(
    deriving: httpx.AsyncClient,
    db: psycopg.AsyncConnection[Any],
    tables: dict[str, str],
    ws_id: str,
) -> None:
    await setup_session(deriving, ws_id, "s", {"alice": {}})
    await say(deriving, ws_id, "s", ("alice", "I live in Oslo"))
    await wait_derived(deriving, ws_id, expect_total=1)
    # Conclusions without a session outlive the session; only the workspace takes them along.
    manual = await manual_conclusions(deriving, ws_id, "alice likes jazz", "alice owns a kayak")
    await poll(
        lambda: vector_ids(db, tables["conclusions"], ws_id),
        lambda v: set(manual) < set(v),
        what="manual conclusion vectors",
    )
    assert (await deriving.delete(f"/v3/workspaces/{ws_id}/sessions/s")).status_code in (
        200,
        202,
        204,
    )
    await poll(
        lambda: vector_ids(db, tables["conclusions"], ws_id),
        lambda v: set(v) == set(manual),
        what="session vectors",
    )
    assert (await deriving.delete(f"/v3/workspaces/{ws_id}")).status_code == 204
    await poll(
        lambda: vector_ids(db, tables["conclusions"], ws_id), lambda v: not v, what="vectors"
    )
    assert await vector_ids(db, tables["messages"], ws_id) == {}


async def test_semantic_query_through_the_vector_store_port_finds_the_breakfast(
    deriving: httpx.AsyncClient, store: PgVectorStore, settings: AllInOneSettings, ws_id: str
) -> None:
    await setup_session(deriving, ws_id, "s", {"alice": {}, "bob": {}, "charlie": {}})
    sent = await say(
        deriving,
        ws_id,
        "s",
        ("alice", "I'm repainting my living room blue"),
        ("bob", "I had scrambled eggs for breakfast"),
        ("charlie", "The train to Lyon was delayed by an hour"),
        ("bob", "I'm reading a novel about sailors"),
        ("alice", "I ate a sandwich for dinner last night"),
        ("charlie", "My morning run was ten kilometres"),
    )
    await wait_derived(deriving, ws_id, expect_total=len(sent))
    embedder = create_embedder(settings)
    try:
        [query] = await embedder.embed(["what did bob eat in the morning"])
    finally:
        await embedder.close()
    hits = await store.query("messages", query, VectorFilter(workspace_id=ws_id), limit=10)
    assert len(hits) == len(sent)
    assert hits[0].id == sent[1]["id"], [(h.payload["peer_id"], h.score) for h in hits]
    assert hits[0].score > hits[1].score


# -- 5. the LLM reasoner through the whole pipeline ---------------------------------------------
EXTRACT, CARD, SUMMARY, DIALECTIC = (
    "extract-model",
    "card-model",
    "summary-model",
    "dialectic-model",
)
FOREIGN_ID = "not-a-message-of-this-batch"


def new_messages(request: RecordedRequest) -> list[dict[str, Any]]:
    """The JSON lines of the "New messages" section of an extraction request."""
    user = next(m["content"] for m in request.messages if m["role"] == "user")
    section = user.split("New messages from", 1)[1].split("\n\n", 1)[0]
    return [json.loads(line) for line in section.splitlines()[1:] if line.strip()]


def observed_of(request: RecordedRequest) -> str:
    match = re.search(r"^Observed: (\S+)$", request.prompt_text, re.M)
    assert match, request.prompt_text
    return match.group(1)


def scripted_model(request: RecordedRequest) -> Reply:
    if request.model == EXTRACT:
        observed = observed_of(request)
        observations = []
        for line in new_messages(request):
            observations += [
                {
                    "content": f"{observed} keeps bees on the roof",
                    "level": "explicit",
                    "source_message_ids": [line["id"], FOREIGN_ID],
                },
                {
                    "content": f"{observed} probably sells honey",
                    "level": "deductive",
                    "source_message_ids": [line["id"]],
                },
            ]
        return Reply.json({"observations": observations})
    if request.model == CARD:
        return Reply.json({"facts": ["Keeps bees"]})
    return Reply.status(500, f"unexpected model {request.model}")


@pytest.fixture(scope="module")
def openai_fake() -> Iterator[ScriptedOpenAI]:
    with scripted_openai(default=scripted_model) as server:
        yield server


@pytest.fixture(scope="module")
async def llm_env(infra: InfraEndpoints, openai_fake: ScriptedOpenAI) -> AsyncIterator[Private]:
    async with private_deriver(
        infra,
        llm_base_url=openai_fake.base_url,
        llm_extraction_model=EXTRACT,
        llm_dream_model=CARD,
        llm_summary_model=SUMMARY,
        llm_dialectic_model=DIALECTIC,
        llm_max_retries=0,
        deriver_backoff_base_s=0.1,
    ) as env:
        yield env


@pytest.fixture
def llm(llm_env: Private, openai_fake: ScriptedOpenAI) -> Private:
    openai_fake.clear()
    return llm_env


BEES = "I keep bees on my roof"


async def bees(client: httpx.AsyncClient, ws: str, configuration: Any = None) -> str:
    await setup_session(
        client, ws, "garden", {"alice": {}, "bob": {"observe_others": True}}, configuration
    )
    [m] = await say(client, ws, "garden", ("alice", BEES), created_at="2026-03-14T09:30:00Z")
    await wait_derived(client, ws, expect_total=1)
    return str(m["id"])


async def test_llm_extraction_request_carries_the_message_and_the_perspective(
    llm: Private, openai_fake: ScriptedOpenAI, ws_id: str
) -> None:
    mid = await bees(llm.client, ws_id)
    extraction = [r for r in openai_fake.chat_requests if r.model == EXTRACT]
    views = sorted(
        re.findall(r"^Observer: (\S+)\nObserved: (\S+)$", r.prompt_text, re.M)[0]
        for r in extraction
    )
    assert views == [("alice", "alice"), ("bob", "alice")]
    for request in extraction:
        [line] = new_messages(request)
        assert line["id"] == mid and line["speaker"] == "alice" and line["text"] == BEES
        assert line["time"] == "2026-03-14T09:30+00:00 (Saturday)"


async def test_llm_observations_become_conclusions_with_their_levels_and_own_sources(
    llm: Private, openai_fake: ScriptedOpenAI, ws_id: str
) -> None:
    mid = await bees(llm.client, ws_id)
    found = await conclusion_rows(llm.client, ws_id)
    got = sorted(
        (c["observer_id"], c["observed_id"], c["content"], c["level"], tuple(c["source_ids"]))
        for c in found
    )
    assert got == [
        ("alice", "alice", "alice keeps bees on the roof", "explicit", (mid,)),
        ("alice", "alice", "alice probably sells honey", "deductive", (mid,)),
        ("bob", "alice", "alice keeps bees on the roof", "explicit", (mid,)),
        ("bob", "alice", "alice probably sells honey", "deductive", (mid,)),
    ]
    # Extraction and peer cards only: the dialectic (and summaries) took no part.
    assert {r.model for r in openai_fake.chat_requests} == {EXTRACT, CARD}


async def test_llm_prompt_carries_the_session_custom_instructions(
    llm: Private, openai_fake: ScriptedOpenAI, ws_id: str
) -> None:
    note = "Record every colour that alice mentions, with its shade."
    await bees(llm.client, ws_id, {"reasoning": {"custom_instructions": note}})
    extraction = [r for r in openai_fake.chat_requests if r.model == EXTRACT]
    assert len(extraction) == 2
    for request in extraction:
        assert note in request.system_prompt, request.system_prompt


# -- 6. dreams ----------------------------------------------------------------------------------
async def test_dream_removes_near_duplicate_conclusions_and_rebuilds_the_card(
    deriving: httpx.AsyncClient,
    db: psycopg.AsyncConnection[Any],
    tables: dict[str, str],
    ws_id: str,
) -> None:
    await deriving.post("/v3/workspaces", json={"id": ws_id})
    await deriving.post(f"/v3/workspaces/{ws_id}/peers", json={"id": "alice"})
    # One call each, so the first wording is the oldest (the one a dream keeps).
    created = []
    for content in (
        "alice lives in Berlin",
        "alice works as a nurse",
        "Alice lives in Berlin.",
        "alice is living in Berlin",
    ):
        created += await manual_conclusions(deriving, ws_id, content)
    await poll(
        lambda: vector_ids(db, tables["conclusions"], ws_id),
        lambda v: len(v) == 4,
        what="conclusion vectors",
    )
    assert await cards(db, ws_id) == {}

    r = await deriving.post(f"/v3/workspaces/{ws_id}/schedule_dream", json={"observer": "alice"})
    assert r.status_code == 204, r.text
    card = await poll(lambda: cards(db, ws_id), lambda c: bool(c), what="peer card")
    assert card == {("alice", "alice"): ["Lives in Berlin", "Works as a nurse"]}
    kept = await conclusion_rows(deriving, ws_id)
    assert sorted(c["content"] for c in kept) == ["alice lives in Berlin", "alice works as a nurse"]
    vectors = await poll(
        lambda: vector_ids(db, tables["conclusions"], ws_id),
        lambda v: len(v) == 2,
        what="vectors of the removed duplicates",
    )
    assert set(vectors) == {created[0], created[1]}
