"""Search (``POST …/conclusions/query``) and dialectic (``POST …/peers/{p}/chat``, extractive
answerer, reasoning level ``low``) latency at N observations in one view.

Seeding bypasses the API for speed: the conclusions are COPYed straight into ``conclusions``
and their vectors upserted through the vector-store port (``libs.common.vectorstore``, pgvector
in the same Postgres) with embeddings of the bundled local ONNX model. Above ``--embed-pool``
distinct facts the texts repeat with a numbered suffix and reuse the fact's vector (embedding
100k texts on 2 cores would take longer than the whole bench).

Baseline, same run: the bare pgvector k-NN query (``ORDER BY embedding <=> q LIMIT 10`` in the
workspace, psycopg, query vector precomputed) — the floor of the vector channel alone.

    python -m bench.bench_search [--sizes 10000,100000] [--requests 200] [--state FILE]

``--state FILE`` records the seeded workspace of each size; a later run with the same file
reuses it instead of seeding again (seeding 100k takes minutes; the seeded rows do not depend
on the retrieval code, only on the schema).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench import common

SUBJECTS = ("alice",)
VERBS = (
    "likes",
    "dislikes",
    "bought",
    "visited",
    "talked about",
    "is learning",
    "plans to try",
    "lost",
    "painted",
    "wrote about",
)
OBJECTS = [
    "pottery classes",
    "the beach in Maine",
    "a red bicycle",
    "jazz records",
    "her sister's wedding",
    "sourdough bread",
    "a trip to Lisbon",
    "the marathon",
    "a rescue dog named Max",
    "oil painting",
    "the chess club",
    "camping gear",
    "a new job at the hospital",
    "Italian cooking",
    "the violin",
    "her grandmother's garden",
    "a vintage camera",
    "the book club",
    "hiking in Colorado",
    "yoga at dawn",
    "a concert in Berlin",
    "the science fair",
    "homemade candles",
    "a broken laptop",
    "the local library",
    "volunteering at the shelter",
    "a novel about whales",
    "salsa dancing",
    "the farmers market",
    "a promotion at work",
    "bird watching",
    "an old piano",
    "the family reunion",
    "surfing lessons",
]
WHEN = ("last week", "in May", "yesterday", "two years ago", "every Sunday", "this morning", "")
QUERIES = (
    "What does alice like?",
    "Where did alice travel?",
    "Does alice have a dog?",
    "What music does alice listen to?",
    "What is alice learning?",
    "What happened at alice's work?",
    "What does alice do on weekends?",
    "Did alice go camping?",
    "What instrument does alice play?",
    "What did alice buy recently?",
)


def facts(n: int, seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        when = rng.choice(WHEN)
        text = f"alice {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
        out.append(f"{text} {when} (fact {i})." if when else f"{text} (fact {i}).")
    return out


async def seed(infra: common.Infra, ws: str, n: int, pool: int) -> dict[str, float]:
    from sqlalchemy.ext.asyncio import create_async_engine

    from libs.common.embeddings import LocalOnnxEmbedder
    from libs.common.ids import nanoid
    from libs.common.settings import VectorStoreSettings
    from libs.common.vectorstore import CONCLUSION_VECTORS, VectorRecord, create_vector_store

    base_texts = facts(min(n, pool))
    t0 = time.monotonic()
    embedder = LocalOnnxEmbedder(batch_size=64)
    vectors: list[list[float]] = []
    for start in range(0, len(base_texts), 512):
        vectors += await embedder.embed(base_texts[start : start + 512])
    t_embed = time.monotonic() - t0

    now = datetime.now(UTC)
    rows = []
    for i in range(n):
        text = base_texts[i % len(base_texts)]
        if i >= len(base_texts):
            text = text.replace("(fact", f"(copy {i // len(base_texts)} of fact")
        created = now - timedelta(minutes=n - i)
        rows.append((nanoid(), text, created, i % len(base_texts)))
    t1 = time.monotonic()
    async with await psycopg.AsyncConnection.connect(infra.dsn) as conn:
        async with conn.cursor().copy(
            "COPY conclusions (id, workspace_id, observer_id, observed_id, session_id, level, "
            "content, source_ids, token_count, created_at) FROM STDIN"
        ) as copy:
            for cid, text, created, _ in rows:
                await copy.write_row(
                    (cid, ws, "bob", "alice", "s", "explicit", text, "[]", len(text) // 4, created)
                )
        await conn.commit()
    t_copy = time.monotonic() - t1

    t2 = time.monotonic()
    engine = create_async_engine(infra.database_url, pool_size=4)
    store = create_vector_store(VectorStoreSettings(), engine)
    await store.ensure_collection(CONCLUSION_VECTORS, embedder.dimensions)
    for start in range(0, n, 1000):
        await store.upsert(
            CONCLUSION_VECTORS,
            [
                VectorRecord(
                    id=cid,
                    vector=vectors[k],
                    payload={
                        "workspace_id": ws,
                        "kind": "conclusion",
                        "observer_id": "bob",
                        "observed_id": "alice",
                        "session_id": "s",
                        "level": "explicit",
                        "created_at": created.timestamp(),
                    },
                )
                for cid, _, created, k in rows[start : start + 1000]
            ],
        )
    await store.close()
    await engine.dispose()
    await embedder.close()
    return {
        "embed_s": round(t_embed, 1),
        "copy_s": round(t_copy, 1),
        "vector_upsert_s": round(time.monotonic() - t2, 1),
    }


async def raw_knn(infra: common.Infra, ws: str, requests: int) -> dict[str, Any]:
    from libs.common.embeddings import LocalOnnxEmbedder

    embedder = LocalOnnxEmbedder()
    qvecs = await embedder.embed(list(QUERIES))
    await embedder.close()
    table = "vec_rapport_conclusions_384"  # PgVectorStore.table_name, default namespace
    samples: list[float] = []
    async with await psycopg.AsyncConnection.connect(infra.dsn, autocommit=True) as conn:
        for i in range(requests):
            vec = "[" + ",".join(f"{x:.6f}" for x in qvecs[i % len(qvecs)]) + "]"
            start = time.perf_counter()
            await conn.execute(
                f"SELECT id FROM {table} WHERE workspace_id = %s "
                "ORDER BY embedding <=> %s::vector LIMIT 10",
                (ws, vec),
            )
            samples.append(time.perf_counter() - start)
    return common.summary_ms(samples)


def server_cpu_s() -> float:
    """CPU seconds (user + system) used so far by the server under test — this process's
    ``python -m allinone`` child. Unlike wall-clock latency it hardly depends on what else
    the (shared) machine runs; Postgres' own CPU is not in it."""
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if fields[1] == me and b"allinone" in cmdline:
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return float("nan")


async def measure(base: str, ws: str, requests: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        for i in range(10):  # warm-up
            await http.post(
                f"/v3/workspaces/{ws}/peers/bob/chat",
                json={"query": QUERIES[i % len(QUERIES)], "target": "alice"},
            )
        cpu0 = server_cpu_s()
        search = await common.timed_loop(
            lambda i: http.post(
                f"/v3/workspaces/{ws}/conclusions/query",
                json={
                    "query": QUERIES[i % len(QUERIES)],
                    "top_k": 10,
                    "filters": {"observer_id": "bob", "observed_id": "alice"},
                },
            ),
            requests=requests,
            max_seconds=90,
        )
        cpu1 = server_cpu_s()
        chat = await common.timed_loop(
            lambda i: http.post(
                f"/v3/workspaces/{ws}/peers/bob/chat",
                json={"query": QUERIES[i % len(QUERIES)], "target": "alice"},
            ),
            requests=requests,
            max_seconds=90,
        )
        cpu2 = server_cpu_s()
        sample = await http.post(
            f"/v3/workspaces/{ws}/peers/bob/chat",
            json={"query": QUERIES[0], "target": "alice"},
        )
    return {
        "search_ms": common.summary_ms(search.samples),
        "dialectic_ms": common.summary_ms(chat.samples),
        "server_cpu_ms_per_request": {
            "search": round((cpu1 - cpu0) * 1000 / max(len(search.samples), 1), 2),
            "dialectic": round((cpu2 - cpu1) * 1000 / max(len(chat.samples), 1), 2),
        },
        "dialectic_sample_answer": sample.json().get("content", "")[:300],
    }


async def main_async(args: argparse.Namespace) -> None:
    infra = common.infra_up()
    sizes = [int(s) for s in args.sizes.split(",")]
    stamp = int(time.time())
    results: dict[str, Any] = {
        "params": {
            "sizes": sizes,
            "requests": args.requests,
            "embed_pool": args.embed_pool,
            "dialectic": "extractive answerer (no LLM), reasoning_level low, target=alice",
            "seeding": "COPY into conclusions + VectorStore.upsert (bypasses the API)",
        },
        "sizes": {},
    }
    state_path = Path(args.state) if args.state else None
    state: dict[str, Any] = (
        json.loads(state_path.read_text()) if state_path and state_path.exists() else {}
    )
    with common.server(infra, deriver=False) as base:
        for n in sizes:
            known = state.get(str(n))
            if known is not None:
                ws, took = known["ws"], {"reused": known["seed"]}
                print(f"reusing {ws} ({n} observations)")
            else:
                ws = f"bench-search-{n}-{stamp}"
                async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                    await common.setup_session(http, ws, "s", ["alice", "bob"])
                took = await seed(infra, ws, n, args.embed_pool)
                print(f"seeded {n} observations: {took}")
                if state_path is not None:
                    state[str(n)] = {"ws": ws, "seed": took}
                    state_path.write_text(json.dumps(state))
            row = await measure(base, ws, args.requests)
            row["seed"] = took
            row["raw_knn_ms"] = await raw_knn(infra, ws, args.requests)
            row["search_p95_ratio_to_raw_knn"] = round(
                row["search_ms"]["p95"] / row["raw_knn_ms"]["p95"], 1
            )
            print(n, row)
            results["sizes"][str(n)] = row
    common.write_results("search", results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--embed-pool", type=int, default=10000)
    parser.add_argument("--state", help="JSON file of seeded workspaces (reused if present)")
    common.run(lambda: main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
