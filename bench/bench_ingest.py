"""Ingest throughput: batches of 100 messages (~200 characters) from 8 concurrent clients over
50 sessions, 3 peers alternating, for ``--duration`` seconds, against a raw baseline measured in
the same run (psycopg multi-row INSERTs of the same rows into the same ``messages`` table, 8
connections, 100 rows per statement). The baseline runs before *and* after the API phase (the
machine drifts); the ratio is taken against their mean. Then single-message POST latency.

    python -m bench.bench_ingest [--duration 60] [--clients 8] [--sessions 50]

The server runs with the deriver disabled (``RAPPORT_DERIVER_ENABLED=false``): this is the pure
write path (commit + outbox; the outbox relay still publishes to NATS in the same process).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import secrets
import time
from typing import Any

import httpx
import orjson
import psycopg

from bench import common

WORDS = [
    "the",
    "a",
    "we",
    "I",
    "you",
    "they",
    "went",
    "saw",
    "made",
    "took",
    "found",
    "said",
    "coffee",
    "train",
    "garden",
    "music",
    "book",
    "movie",
    "school",
    "dinner",
    "weekend",
    "morning",
    "friend",
    "sister",
    "brother",
    "dog",
    "cat",
    "park",
    "city",
    "beach",
    "paint",
    "guitar",
    "yesterday",
    "today",
    "tomorrow",
    "really",
    "very",
    "quite",
    "happy",
    "tired",
    "excited",
    "because",
    "after",
    "before",
    "with",
    "about",
    "into",
    "over",
    "under",
    "new",
    "old",
    "little",
    "big",
    "lovely",
    "strange",
    "work",
    "project",
    "meeting",
    "trip",
    "photo",
]
PEERS = ("alice", "bob", "carol")


def sentence(rng: random.Random, chars: int = 200) -> str:
    out: list[str] = []
    size = 0
    while size < chars:
        w = rng.choice(WORDS)
        out.append(w)
        size += len(w) + 1
    return (" ".join(out)[: chars - 1] + ".").capitalize()


def make_batches(n: int, size: int, seed: int = 7) -> list[list[dict[str, str]]]:
    rng = random.Random(seed)
    return [
        [{"peer_id": PEERS[j % len(PEERS)], "content": sentence(rng)} for j in range(size)]
        for _ in range(n)
    ]


async def api_phase(
    base: str,
    ws: str,
    sessions: list[str],
    batches: list[bytes],
    clients: int,
    duration: float,
    meter: common.CpuMeter,
) -> dict[str, Any]:
    latencies: list[float] = []
    accepted = 0
    errors = 0
    counter = itertools.count()
    deadline = time.monotonic() + duration

    async def client(cid: int) -> None:
        nonlocal accepted, errors
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        headers = {"content-type": "application/json"}
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
            while time.monotonic() < deadline:
                i = next(counter)
                session = sessions[i % len(sessions)]
                body = batches[i % len(batches)]
                start = time.perf_counter()
                r = await http.post(
                    f"/v3/workspaces/{ws}/sessions/{session}/messages",
                    content=body,
                    headers=headers,
                )
                latencies.append(time.perf_counter() - start)
                if r.status_code == 201:
                    accepted += 100
                else:
                    errors += 1

    meter.start()
    start = time.monotonic()
    await asyncio.gather(*(client(c) for c in range(clients)))
    elapsed = time.monotonic() - start
    cpu = meter.stop()
    return {
        "cpu_cores": cpu,
        "messages": accepted,
        "seconds": round(elapsed, 2),
        "messages_per_s": round(accepted / elapsed, 1),
        "errors": errors,
        "post_batch_latency_ms": common.summary_ms(latencies),
    }


async def raw_phase(
    dsn: str,
    ws: str,
    sessions: list[str],
    batches: list[list[dict[str, str]]],
    clients: int,
    duration: float,
    seq_start: dict[str, int],
    meter: common.CpuMeter,
) -> dict[str, Any]:
    """Multi-row INSERT of 100 rows per statement, one connection per client, autocommit."""
    placeholders = ",".join(["(%s,%s,%s,%s,%s,%s,'{}'::jsonb,'{}'::jsonb,%s,now())"] * 100)
    sql = (
        "INSERT INTO messages (id, workspace_id, session_id, peer_id, seq, content, metadata, "
        f"configuration, token_count, created_at) VALUES {placeholders}"
    )
    inserted = 0
    counter = itertools.count()
    lock = asyncio.Lock()
    conns = [await psycopg.AsyncConnection.connect(dsn, autocommit=True) for _ in range(clients)]
    deadline = time.monotonic() + duration

    async def client(cid: int) -> None:
        nonlocal inserted
        conn = conns[cid]
        while time.monotonic() < deadline:
            i = next(counter)
            session = sessions[i % len(sessions)]
            async with lock:
                first = seq_start[session]
                seq_start[session] = first + 100
            params: list[Any] = []
            for off, m in enumerate(batches[i % len(batches)]):
                params += [
                    secrets.token_urlsafe(16)[:21],
                    ws,
                    session,
                    m["peer_id"],
                    first + off,
                    m["content"],
                    len(m["content"]) // 4,
                ]
            await conn.execute(sql, params)
            inserted += 100

    meter.start()
    start = time.monotonic()
    await asyncio.gather(*(client(c) for c in range(clients)))
    elapsed = time.monotonic() - start
    cpu = meter.stop()  # before the connections close: their backends' CPU is counted
    for conn in conns:
        await conn.close()
    return {
        "cpu_cores": cpu,
        "rows": inserted,
        "seconds": round(elapsed, 2),
        "rows_per_s": round(inserted / elapsed, 1),
    }


async def single_phase(base: str, ws: str, session: str, requests: int) -> dict[str, Any]:
    rng = random.Random(11)
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        timer = await common.timed_loop(
            lambda i: http.post(
                f"/v3/workspaces/{ws}/sessions/{session}/messages",
                json={"messages": [{"peer_id": PEERS[i % 3], "content": sentence(rng)}]},
            ),
            requests=requests,
            max_seconds=60,
        )
    return {"post_single_latency_ms": common.summary_ms(timer.samples)}


async def main_async(args: argparse.Namespace) -> None:
    infra = common.infra_up()
    ws = f"bench-ingest-{int(time.time())}"
    api_sessions = [f"s{i}" for i in range(args.sessions)]
    raw_sessions = [f"raw{i}" for i in range(args.sessions)]
    batches = make_batches(64, 100)
    bodies = [orjson.dumps({"messages": b}) for b in batches]
    results: dict[str, Any] = {
        "params": {
            "duration_s": args.duration,
            "clients": args.clients,
            "sessions": args.sessions,
            "batch": 100,
            "chars": 200,
            "peers": len(PEERS),
            "deriver": "disabled (RAPPORT_DERIVER_ENABLED=false)",
        }
    }
    with common.server(infra, deriver=False) as base:
        meter = common.CpuMeter(base.pid, infra.dsn)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            for s in api_sessions + raw_sessions + ["single"]:
                await common.setup_session(http, ws, s, list(PEERS))
        seqs = dict.fromkeys(raw_sessions, 1)
        print("raw baseline (before)…")
        raw1 = await raw_phase(
            infra.dsn, ws, raw_sessions, batches, args.clients, args.duration, seqs, meter
        )
        print(raw1)
        print("API…")
        api = await api_phase(base, ws, api_sessions, bodies, args.clients, args.duration, meter)
        # The API phase counts committed messages; the relay publishes their events to NATS
        # after commit, in the same process. Report how far it fell behind, and let it finish
        # before the next phase.
        api["outbox_backlog_at_end"], api["outbox_drain_s"] = await common.wait_outbox_drained(
            infra.dsn, ws, max_seconds=600
        )
        print(api)
        print("raw baseline (after)…")
        raw2 = await raw_phase(
            infra.dsn, ws, raw_sessions, batches, args.clients, args.duration, seqs, meter
        )
        print(raw2)
        print("single-message POSTs…")
        single = await single_phase(base, ws, "single", args.single_requests)
    raw_mean = (raw1["rows_per_s"] + raw2["rows_per_s"]) / 2
    results.update(
        raw_before=raw1,
        api=api,
        raw_after=raw2,
        raw_mean_rows_per_s=round(raw_mean, 1),
        ratio_api_to_raw=round(api["messages_per_s"] / raw_mean, 3),
        single=single,
    )
    common.write_results("ingest", results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per phase")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--single-requests", type=int, default=1000)
    common.run(lambda: main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
