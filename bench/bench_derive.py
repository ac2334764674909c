"""Derive lag: messages offered at a steady rate to the API with one deriver process beside it
(``python -m services.deriver``: extractive reasoner, local ONNX embedder, pgvector; or the
all-in-one server's deriver with ``--deriver allinone``); for each message, the time from its
commit to its observations being searchable.

    python -m bench.bench_derive [--rates 200,50] [--duration 60] [--sessions 50]

Definitions (stated in bench/README.md):

* **commit** — the moment the load generator receives the POST's 201 (the write transaction has
  committed before the response is sent).
* **searchable** — the message's ``derivation_status`` row reads ``done``. The deriver sets
  ``done`` in the transaction that follows the upsert of the message's vector *and* of the
  vectors of every conclusion drawn from it (pgvector, same database), so at that moment the
  conclusions answer ``/conclusions/query`` and the message answers ``/search``. The load
  generator polls ``derivation_status`` every ``--poll`` seconds (default 50 ms) over its own
  psycopg connection, so a lag is over-stated by at most one poll interval.
* **lag** — searchable time - commit time, per message. Messages still not ``done`` when the
  drain window (``--drain``) ends are reported as the backlog; their lag is not in the
  percentiles (so "keeps up" must be read together with the backlog).

The load is open-loop: one POST of ``--batch`` messages (default 1: a chat turn) is started every
``batch / rate`` seconds whatever the previous ones are doing (bounded by ``--clients``
connections in flight), sessions round-robin, 3 peers alternating inside each session. Each
rate runs in a fresh workspace; the server runs on a NATS stream of its own so no backlog of the
other benches is derived first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import random
import time
from datetime import timedelta
from typing import Any

import httpx
import orjson
import psycopg

from bench import common
from bench.bench_ingest import PEERS, sentence


async def offer(
    base: str,
    ws: str,
    sessions: list[str],
    *,
    rate: float,
    duration: float,
    batch: int,
    clients: int,
    grace: float,
    committed: dict[str, float],
) -> dict[str, Any]:
    """Open-loop POSTs at ``rate`` messages/s for ``duration`` s; records each id's commit time."""
    rng = random.Random(5)
    interval = batch / rate
    sem = asyncio.Semaphore(clients)
    latencies: list[float] = []
    errors = 0
    late = 0
    turn = itertools.count()
    tasks: set[asyncio.Task[None]] = set()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:

        async def post(session: str, body: bytes) -> None:
            nonlocal errors
            async with sem:
                start = time.perf_counter()
                r = await http.post(
                    f"/v3/workspaces/{ws}/sessions/{session}/messages",
                    content=body,
                    headers={"content-type": "application/json"},
                )
                now = time.perf_counter()
                latencies.append(now - start)
                if r.status_code != 201:
                    errors += 1
                    return
                for m in r.json():
                    committed[m["id"]] = now

        start = time.perf_counter()
        n = 0
        while (due := start + n * interval) < start + duration:
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -interval:
                late += 1  # the generator itself fell behind (CPU shared with the server)
            i = next(turn)
            session = sessions[i % len(sessions)]
            k = i // len(sessions)
            msgs = [
                {"peer_id": PEERS[(k * batch + j) % len(PEERS)], "content": sentence(rng)}
                for j in range(batch)
            ]
            task = asyncio.create_task(post(session, orjson.dumps({"messages": msgs})))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        # Bounded: POSTs still queued or in flight ``grace`` s after the schedule ended are
        # cancelled (the server could not take the offered rate); they count as not accepted.
        cancelled = 0
        if tasks:
            _, pending = await asyncio.wait(set(tasks), timeout=grace)
            for task in pending:
                task.cancel()
            cancelled = len(pending)
            await asyncio.gather(*pending, return_exceptions=True)
        elapsed = time.perf_counter() - start
    return {
        "offered_messages": n * batch,
        "accepted_messages": len(committed),
        "seconds": round(elapsed, 2),
        "accepted_per_s": round(len(committed) / elapsed, 1),
        "errors": errors,
        "cancelled_posts": cancelled,
        "generator_late_ticks": late,
        "post_latency_ms": common.summary_ms(latencies),
    }


async def watch(
    dsn: str,
    ws: str,
    committed: dict[str, float],
    searchable: dict[str, float],
    *,
    poll: float,
    stop: asyncio.Event,
) -> None:
    """Poll ``derivation_status`` for newly ``done`` messages of ``ws`` until ``stop``."""
    # ``updated_at`` is the writing transaction's start, which may commit a little later: the
    # window start trails the newest row seen by 10 s so no late-committing row is missed.
    sql = (
        "SELECT message_id, updated_at FROM derivation_status "
        "WHERE workspace_id = %s AND status = 'done' AND updated_at >= %s"
    )
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        row = await (await conn.execute("SELECT now() - interval '10 seconds'")).fetchone()
        since = row[0] if row else None
        while True:
            tick = time.perf_counter()
            cur = await conn.execute(sql, (ws, since))
            seen = time.perf_counter()
            for mid, updated in await cur.fetchall():
                if mid not in searchable:
                    searchable[mid] = seen
                if updated - timedelta(seconds=10) > since:
                    since = updated - timedelta(seconds=10)
            if stop.is_set():
                return
            await asyncio.sleep(max(0.0, poll - (time.perf_counter() - tick)))


async def run_rate(
    base: str, dsn: str, ws: str, args: argparse.Namespace, rate: float
) -> dict[str, Any]:
    sessions = [f"d{i}" for i in range(args.sessions)]
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for s in sessions:
            await common.setup_session(http, ws, s, list(PEERS))
    committed: dict[str, float] = {}
    searchable: dict[str, float] = {}
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch(dsn, ws, committed, searchable, poll=args.poll, stop=stop))
    print(f"rate {rate:g} msg/s for {args.duration:g} s…")
    t0 = time.perf_counter()
    load = await offer(
        base,
        ws,
        sessions,
        rate=rate,
        duration=args.duration,
        batch=args.batch,
        clients=args.clients,
        grace=args.grace,
        committed=committed,
    )
    t_load_end = time.perf_counter()
    done_at_load_end = sum(1 for m in committed if m in searchable)
    # Drain: wait until every accepted message is searchable, or the drain window ends.
    drain_deadline = t_load_end + args.drain
    while time.perf_counter() < drain_deadline:
        if all(m in searchable for m in committed):
            break
        await asyncio.sleep(args.poll)
    t_drained = time.perf_counter()
    stop.set()
    await watcher
    lags = [searchable[m] - t for m, t in committed.items() if m in searchable]
    backlog = len(committed) - len(lags)
    last_done = max((searchable[m] for m in committed if m in searchable), default=t0)
    derive_seconds = last_done - t0
    # Throughput of the deriver over the whole window in which it had work (first POST → last
    # message done); one deriver process (the all-in-one server).
    observations = await count_observations(dsn, ws)
    return {
        "rate_offered_msg_s": rate,
        "load": load,
        "backlog_at_load_end": len(committed) - done_at_load_end,
        "backlog_after_drain": backlog,
        "drain_seconds": round(t_drained - t_load_end, 2),
        "lag_ms": common.summary_ms(lags),
        "derived_messages": len(lags),
        "derived_messages_per_s": round(len(lags) / derive_seconds, 1) if derive_seconds else 0,
        "observations": observations,
        "observations_per_s": round(observations / derive_seconds, 1) if derive_seconds else 0,
        "keeps_up": backlog == 0 and (len(committed) - done_at_load_end) <= rate * 2,
    }


async def count_observations(dsn: str, ws: str) -> int:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute("SELECT count(*) FROM conclusions WHERE workspace_id = %s", (ws,))
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def main_async(args: argparse.Namespace) -> None:
    infra = common.infra_up()
    stamp = int(time.time())
    rates = [float(r) for r in args.rates.split(",")]
    results: dict[str, Any] = {
        "params": {
            "rates_msg_s": rates,
            "duration_s": args.duration,
            "drain_s": args.drain,
            "sessions": args.sessions,
            "peers": len(PEERS),
            "batch": args.batch,
            "poll_s": args.poll,
            "deriver": f"one process ({args.deriver}), extractive reasoner, local ONNX, pgvector",
            "lag": "POST 201 received -> derivation_status 'done' seen by the poller",
        },
        "runs": [],
    }
    # A stream of its own: the other benches leave undelivered events in the default stream.
    stream_env = {
        "RAPPORT_NATS_STREAM": f"BENCH_DERIVE_{stamp}",
        "RAPPORT_NATS_SUBJECT_PREFIX": f"derive{stamp}",
    }
    with contextlib.ExitStack() as stack:
        if args.deriver == "process":
            # The API (deriver off) and one deriver process (``python -m services.deriver``), as
            # in the multi-process mode: the deriver's figures are those of one process, and the
            # API's request handling does not share its event loop.
            base = stack.enter_context(common.server(infra, deriver=False, **stream_env))
            deriver = stack.enter_context(
                common.server(infra, deriver=True, module="services.deriver", **stream_env)
            )
            meter = common.CpuMeter(base.pid, infra.dsn, deriver=deriver.pid)
        else:
            base = stack.enter_context(common.server(infra, deriver=True, **stream_env))
            meter = common.CpuMeter(base.pid, infra.dsn)
        for rate in rates:
            ws = f"bench-derive-{stamp}-{int(rate)}"
            meter.start()
            t0 = time.monotonic()
            row = await run_rate(base, infra.dsn, ws, args, rate)
            wall = time.monotonic() - t0
            row["cpu_cores"] = cpu = meter.stop()
            # Load-independent efficiency: messages derived per CPU-second of the process that
            # derives (the machine is shared; wall-clock rates depend on what else runs).
            deriving = cpu.get("deriver", cpu["server"]) * wall
            row["derived_messages_per_cpu_s"] = (
                round(row["derived_messages"] / deriving, 1) if deriving else None
            )
            print(orjson.dumps(row).decode())
            results["runs"].append(row)
    common.write_results("derive", results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="200,50", help="messages/s, comma-separated")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load per rate")
    parser.add_argument(
        "--drain", type=float, default=120.0, help="seconds to wait for the backlog afterwards"
    )
    parser.add_argument(
        "--grace", type=float, default=30.0, help="seconds for queued POSTs after the schedule"
    )
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--batch", type=int, default=1, help="messages per POST")
    parser.add_argument("--clients", type=int, default=32, help="POSTs in flight at most")
    parser.add_argument(
        "--deriver",
        choices=("process", "allinone"),
        default="process",
        help="a deriver process beside the API (default) or the all-in-one server's deriver",
    )
    parser.add_argument("--poll", type=float, default=0.05, help="status poll interval, s")
    common.run(lambda: main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
