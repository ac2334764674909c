"""A live all-in-one server (deriver on) started as a real process, and helpers that run the
``rapport`` CLI as a real process against it.

The servers get their own database and stream. In a full test run, session-scoped in-process
apps (``app_factory``) keep outbox relays and deriver consumers on the shared database and
stream; these synchronous tests block the event loop those run on, so work they claimed would
sit still until it timed out.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from libs.common.migrate import upgrade_to_head
from tests.conftest import JWT_SECRET, InfraEndpoints, delete_stream

ROOT = Path(__file__).resolve().parents[3]
CHAT_ROUTE = "/v3/workspaces/{workspace_id}/peers/{peer_id}/chat"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any RAPPORT_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAPPORT_")}
    env.update(extra)
    return env


def start_server(infra: InfraEndpoints, **settings: str) -> tuple[str, subprocess.Popen[bytes]]:
    """``python -m allinone`` on a free port; returns its base URL once it is healthy."""
    port = free_port()
    env = clean_env(
        RAPPORT_DATABASE_URL=infra.database_url,
        RAPPORT_NATS_URL=infra.nats_url,
        RAPPORT_NATS_STREAM=infra.derive_stream,
        RAPPORT_NATS_SUBJECT_PREFIX=infra.derive_prefix,
        RAPPORT_PORT=str(port),
        RAPPORT_LOG_LEVEL="WARNING",
        RAPPORT_OUTBOX_POLL_INTERVAL_S="0.2",
        RAPPORT_DERIVER_ENABLED="true",
    )
    env.update(settings)
    proc = subprocess.Popen(
        [sys.executable, "-m", "allinone"], cwd=ROOT, env=env, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return base, proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            err = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"server did not become healthy: {err[-2000:]}")
        time.sleep(0.2)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="package")
def cli_infra(infra: InfraEndpoints) -> Iterator[InfraEndpoints]:
    """A database and a stream of their own for the servers of this package."""
    base, _, name = infra.database_url.rpartition("/")
    db_name = f"{name}_cli"

    def drop(conn: psycopg.Connection[Any]) -> None:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name))
        )

    with psycopg.connect(infra.admin_dsn, autocommit=True) as conn:
        drop(conn)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name)))
    own = InfraEndpoints(
        database_url=f"{base}/{db_name}",
        admin_dsn=infra.admin_dsn,
        nats_url=infra.nats_url,
        stream=f"{infra.stream}_CLI",
        prefix=f"{infra.prefix}cli",
    )
    upgrade_to_head(own.database_url)
    yield own
    with psycopg.connect(infra.admin_dsn, autocommit=True) as conn:
        drop(conn)
    asyncio.run(delete_stream(own.nats_url, own.stream))


@pytest.fixture(scope="package")
def server(cli_infra: InfraEndpoints) -> Iterator[str]:
    """Base URL of a live server with auth off (every request is admin) and the deriver on."""
    base, proc = start_server(cli_infra)
    yield base
    stop_server(proc)


@pytest.fixture(scope="package")
def auth_server(cli_infra: InfraEndpoints) -> Iterator[str]:
    """Base URL of a live server with JWT auth on (secret ``tests.conftest.JWT_SECRET``)."""
    base, proc = start_server(
        cli_infra,
        RAPPORT_AUTH_ENABLED="true",
        RAPPORT_JWT_SECRET=JWT_SECRET,
        RAPPORT_DERIVER_ENABLED="false",
    )
    yield base
    stop_server(proc)


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass(frozen=True)
class Cli:
    """Runs ``python -m rapport_cli`` against one server and one workspace."""

    base_url: str
    workspace: str

    def __call__(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> Result:
        command = [
            sys.executable,
            "-m",
            "rapport_cli",
            "--base-url",
            self.base_url,
            "--workspace",
            self.workspace,
            *args,
        ]
        return run_cli(command, stdin=stdin, env=env)

    def ok(self, *args: str, stdin: str | None = None) -> Result:
        """Run, and fail the test unless the exit code is 0."""
        result = self(*args, stdin=stdin)
        assert result.code == 0, f"rapport {' '.join(args)} exited {result.code}: {result.stderr}"
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def wait_idle(self, *, timeout: float = 60.0) -> dict[str, Any]:
        """Poll ``rapport queue status --json`` until the deriver has read everything."""
        deadline = time.monotonic() + timeout
        while True:
            status: dict[str, Any] = self.ok("queue", "status", "--json").json()
            busy = status["pending_work_units"] + status["in_progress_work_units"]
            if status["total_work_units"] > 0 and busy == 0:
                return status
            assert time.monotonic() < deadline, f"queue still busy: {status}"
            time.sleep(0.3)


def run_cli(
    command: list[str], *, stdin: str | None = None, env: dict[str, str] | None = None
) -> Result:
    proc = subprocess.run(
        command,
        cwd=ROOT,
        env=env if env is not None else clean_env(),
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def workspace() -> str:
    return f"cli-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def cli(server: str, workspace: str) -> Cli:
    return Cli(server, workspace)


def chat_route_served(base_url: str) -> bool:
    """Whether the server has the dialectic route (it landed in the read-path work)."""
    paths = httpx.get(f"{base_url}/openapi.json", timeout=10).json()["paths"]
    return CHAT_ROUTE in paths


def require_chat_route(base_url: str) -> None:
    if not chat_route_served(base_url):
        pytest.skip(f"the server does not serve POST {CHAT_ROUTE} (the dialectic) yet")
