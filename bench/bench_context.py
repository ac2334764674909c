"""get_context (budget 2,000 tokens) and message-list latency at growing session lengths.

Each session is seeded through the API (batches of 100 messages of ~200 characters, 3 peers
alternating, deriver disabled: no summaries or conclusions, so the context is the newest
messages that fit). The baseline is the smallest session: "not growing with session length"
is reported as the p99 ratio of each size to it.

    python -m bench.bench_context [--sizes 1000,10000,100000] [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from typing import Any

import httpx
import orjson

from bench import common
from bench.bench_ingest import PEERS, make_batches


async def seed(base: str, ws: str, session: str, count: int, clients: int = 4) -> float:
    bodies = [orjson.dumps({"messages": b}) for b in make_batches(64, 100, seed=3)]
    counter = itertools.count()
    batches = count // 100

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            while (i := next(counter)) < batches:
                r = await http.post(
                    f"/v3/workspaces/{ws}/sessions/{session}/messages",
                    content=bodies[i % len(bodies)],
                    headers={"content-type": "application/json"},
                )
                if r.status_code != 201:
                    raise RuntimeError(f"seed: {r.status_code} {r.text}")

    start = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.monotonic() - start


async def main_async(args: argparse.Namespace) -> None:
    infra = common.infra_up()
    ws = f"bench-context-{int(time.time())}"
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[str, Any] = {
        "params": {
            "sizes": sizes,
            "tokens": args.tokens,
            "requests": args.requests,
            "seeding": "through the API, batches of 100, deriver disabled",
        },
        "sizes": {},
    }
    with common.server(infra, deriver=False) as base:
        meter = common.CpuMeter(base.pid, infra.dsn)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            for n in sizes:
                session = f"len{n}"
                await common.setup_session(http, ws, session, list(PEERS))
                took = await seed(base, ws, session, n)
                print(f"seeded {n} messages in {took:.1f} s")
            # The relay publishes the seeding's events after the fact; measuring while it
            # drains would time the relay's work, not get_context's.
            backlog, drain_s = await common.wait_outbox_drained(infra.dsn, ws, max_seconds=300)
            print(f"outbox: {backlog} events published in {drain_s} s after seeding")
            results["params"]["outbox_drained_before_measuring"] = {
                "backlog": backlog,
                "seconds": drain_s,
            }
            # Fresh statistics, as autovacuum keeps them in a steady state: right after a bulk
            # seed the planner still believes the new workspace is empty and scans
            # ix_messages_workspace_created for every row of it (~100-170 ms at 100k).
            await common.analyze(infra.dsn, ["messages", "outbox"])
            row: dict[str, Any]
            for n in sizes:
                session = f"/v3/workspaces/{ws}/sessions/len{n}"
                for _ in range(20):  # warm-up
                    await http.get(f"{session}/context", params={"tokens": args.tokens})
                meter.start()
                t0 = time.monotonic()
                ctx = await common.timed_loop(
                    lambda _i, s=session: http.get(  # type: ignore[misc]
                        f"{s}/context", params={"tokens": args.tokens}
                    ),
                    requests=args.requests,
                    max_seconds=60,
                )
                ctx_wall = time.monotonic() - t0
                cpu = meter.stop()
                r = await http.get(f"{session}/context", params={"tokens": args.tokens})
                body = r.json()
                lst = await common.timed_loop(
                    lambda _i, s=session: http.post(  # type: ignore[misc]
                        f"{s}/messages/list", params={"page": 1, "size": 50}, json={}
                    ),
                    requests=args.requests,
                    max_seconds=60,
                )
                lst_rev = await common.timed_loop(
                    lambda _i, s=session: http.post(  # type: ignore[misc]
                        f"{s}/messages/list",
                        params={"page": 1, "size": 50, "reverse": "true"},
                        json={},
                    ),
                    requests=args.requests,
                    max_seconds=60,
                )
                row = {
                    "context_ms": common.summary_ms(ctx.samples),
                    # CPU per request, independent of what else runs on the machine: the
                    # latencies above include waiting for a core on a shared 2-core box.
                    "context_cpu_ms_per_request": {
                        k: round(cpu[k] * ctx_wall / len(ctx.samples) * 1000, 2)
                        for k in ("server", "postgres")
                    },
                    "context_messages_returned": len(body.get("messages", [])),
                    "list_page1_ms": common.summary_ms(lst.samples),
                    "list_page1_reverse_ms": common.summary_ms(lst_rev.samples),
                }
                print(n, row)
                results["sizes"][str(n)] = row
    base_p99 = results["sizes"][str(sizes[0])]["context_ms"]["p99"]
    results["context_p99_ratio_to_smallest"] = {
        str(n): round(results["sizes"][str(n)]["context_ms"]["p99"] / base_p99, 2) for n in sizes
    }
    common.write_results("context", results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=300)
    common.run(lambda: main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
