"""Shared pieces of the benchmarks: the bench infrastructure, the server under test, latency
statistics and the results file.

The load generators (``bench/bench_*.py``) run in their own process and drive a separate
all-in-one server process (``python -m allinone``) over loopback HTTP. The Postgres and NATS
servers are devinfra's ``bench`` profile (``.data/bench``), never the ``run`` or ``test`` data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / ".data" / "bench-results"
PROFILE = "bench"


@dataclass(frozen=True)
class Infra:
    database_url: str  # SQLAlchemy URL (postgresql+psycopg://…)
    nats_url: str

    @property
    def dsn(self) -> str:
        """The libpq DSN for psycopg."""
        return self.database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def infra_up() -> Infra:
    """Start (or reuse) the bench profile's Postgres and NATS and migrate the database."""
    from scripts import devinfra

    ep = devinfra.ensure_up(profile=PROFILE)
    from libs.common.migrate import upgrade_to_head

    upgrade_to_head(ep.database_url)
    return Infra(database_url=ep.database_url, nats_url=ep.nats_url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerUrl(str):
    """The server's base URL, carrying its process id (for CPU accounting and profilers)."""

    pid: int


@contextmanager
def server(
    infra: Infra, *, deriver: bool, module: str = "allinone", **env: str
) -> Iterator[ServerUrl]:
    """Run ``python -m allinone`` on a free port until ``/health`` answers; yield its URL.

    ``BENCH_SERVER_ROOT=<dir>`` runs the server from another checkout of the code (e.g. a
    ``git archive`` of an older commit) with the same venv and bench infrastructure, for a
    before/after comparison in one session.
    """
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RAPPORT_")}
    environ.update(
        RAPPORT_DATABASE_URL=infra.database_url,
        RAPPORT_NATS_URL=infra.nats_url,
        RAPPORT_PORT=str(port),
        RAPPORT_LOG_LEVEL="WARNING",
        RAPPORT_LOG_JSON="false",
        RAPPORT_DERIVER_ENABLED="true" if deriver else "false",
        RAPPORT_DB_POOL_SIZE="20",
    )
    environ.update(env)
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *(["--no-migrate"] if module == "allinone" else [])],
            cwd=os.environ.get("BENCH_SERVER_ROOT", ROOT),
            env=environ,
            stdout=log,
            stderr=log,
        )
        base = ServerUrl(f"http://127.0.0.1:{port}")
        base.pid = proc.pid
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"server did not start: {log.read().decode()[-3000:]}")
                time.sleep(0.2)
            print(f"{module} pid {proc.pid} on {base} (deriver {'on' if deriver else 'off'})")
            yield base
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
            proc.wait()


_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()  # fields from the 3rd (state) on


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 when it is gone)."""
    fields = _proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS if fields else 0.0


def postgres_pids(dsn: str) -> list[int]:
    """The bench Postgres' postmaster and every process it forked (backends, walwriter …)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        fields = _proc_stat(int(row[0])) if row else None
    if not fields:
        return []
    master = int(fields[1])
    pids = [master]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            f = _proc_stat(int(entry.name))
            if f and int(f[1]) == master:
                pids.append(int(entry.name))
    return pids


class CpuMeter:
    """CPU used during a phase by the server, the bench Postgres and this load generator,
    in cores (CPU seconds / wall seconds); 2.0 is the whole machine here."""

    def __init__(self, server_pid: int, dsn: str, **others: int) -> None:
        self.server_pid = server_pid
        self.dsn = dsn
        self.others = others  # more processes by name, e.g. deriver=<pid>

    def _sample(self) -> dict[str, dict[int, float]]:
        return {
            "server": {self.server_pid: cpu_seconds(self.server_pid)},
            **{name: {pid: cpu_seconds(pid)} for name, pid in self.others.items()},
            "postgres": {p: cpu_seconds(p) for p in postgres_pids(self.dsn)},
            "load_generator": {os.getpid(): sum(os.times()[:2])},
        }

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._c0 = self._sample()

    def stop(self) -> dict[str, float]:
        """Cores used per group since :meth:`start`. A process that exited meanwhile is not
        counted (its CPU is lost), one started meanwhile counts from zero."""
        c1 = self._sample()
        wall = time.monotonic() - self._t0
        out: dict[str, float] = {}
        for group, now in c1.items():
            before = self._c0.get(group, {})
            used = sum(max(0.0, t - before.get(pid, 0.0)) for pid, t in now.items())
            out[group] = round(used / wall, 2)
        out["machine_load_1min"] = round(os.getloadavg()[0], 1)
        return out


async def outbox_backlog(dsn: str, workspace: str) -> int:
    """Outbox rows of ``workspace`` committed but not yet published to NATS by the relay."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL AND ordering_key LIKE %s",
            (workspace.replace("%", r"\%").replace("_", r"\_") + "%",),
        )
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def analyze(dsn: str, tables: list[str]) -> None:
    """``ANALYZE`` the given tables (fresh planner statistics after a bulk seed)."""
    import psycopg
    from psycopg import sql

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for table in tables:
            await conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))


async def wait_outbox_drained(dsn: str, workspace: str, max_seconds: float) -> tuple[int, float]:
    """Wait until the relay has published every outbox row (or ``max_seconds``); returns the backlog
    found first and the seconds it took to drain (``max_seconds`` when it did not)."""
    start = time.monotonic()
    first = await outbox_backlog(dsn, workspace)
    backlog = first
    while backlog and time.monotonic() - start < max_seconds:
        await asyncio.sleep(0.25)
        backlog = await outbox_backlog(dsn, workspace)
    return first, round(time.monotonic() - start, 2)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary_ms(samples_s: list[float]) -> dict[str, float]:
    """p50/p95/p99/mean in milliseconds, plus the sample count."""
    ms = [s * 1000 for s in samples_s]
    return {
        "n": len(ms),
        "p50": round(pct(ms, 50), 2),
        "p95": round(pct(ms, 95), 2),
        "p99": round(pct(ms, 99), 2),
        "mean": round(sum(ms) / len(ms), 2) if ms else float("nan"),
    }


@dataclass
class Timer:
    """Collects request latencies; ``measure`` times one awaited call."""

    samples: list[float] = field(default_factory=list)
    errors: int = 0

    async def measure(self, call: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
        start = time.perf_counter()
        response = await call()
        self.samples.append(time.perf_counter() - start)
        if response.status_code >= 400:
            self.errors += 1
        return response


async def timed_loop(
    call: Callable[[int], Awaitable[httpx.Response]], *, requests: int, max_seconds: float
) -> Timer:
    """Run ``call(i)`` sequentially ``requests`` times (or until ``max_seconds``)."""
    timer = Timer()
    deadline = time.monotonic() + max_seconds
    for i in range(requests):
        if time.monotonic() > deadline:
            break
        r = await timer.measure(lambda i=i: call(i))  # type: ignore[misc]
        if r.status_code >= 400:
            raise RuntimeError(f"{r.request.method} {r.request.url}: {r.status_code} {r.text}")
    return timer


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    with contextlib.suppress(OSError, IndexError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def write_results(name: str, results: dict[str, Any]) -> Path:
    """Print ``results`` and store them as ``.data/bench-results/<name>-<utc time>.json``."""
    now = datetime.now(UTC)
    doc = {"bench": name, "date": now.isoformat(timespec="seconds"), "machine": machine()}
    doc.update(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{now.strftime('%Y%m%dT%H%M%SZ')}.json"
    text = json.dumps(doc, indent=2, default=str)
    path.write_text(text + "\n")
    print(text)
    print(f"results: {path}")
    return path


def run(main: Callable[[], Awaitable[None]]) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a server dependency
        pass
    asyncio.run(main())


async def setup_session(http: httpx.AsyncClient, ws: str, session: str, peers: list[str]) -> None:
    """Create the workspace (if needed) and a session with ``peers`` as members."""
    r = await http.post("/v3/workspaces", json={"id": ws})
    if r.status_code not in (200, 201):
        raise RuntimeError(f"workspace: {r.status_code} {r.text}")
    r = await http.post(
        f"/v3/workspaces/{ws}/sessions",
        json={"id": session, "peers": {p: {} for p in peers}},
    )
    if r.status_code not in (200, 201):
        raise RuntimeError(f"session: {r.status_code} {r.text}")
