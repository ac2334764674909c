"""A real all-in-one server process (``python -m allinone``) on a free port, for tests that
drive Rapport over real HTTP with real clients (the examples, the official ``honcho-ai`` SDK).

Its deriver consumes a stream of its own (``infra.private_stream()``), so it never derives
the events of tests that assert on pending work.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.conftest import InfraEndpoints

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class LiveServer:
    base_url: str
    pid: int
    log: IO[bytes]

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's stderr and stdout (for assertion messages)."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-chars:]


@contextmanager
def live_server(infra: InfraEndpoints, **env: str) -> Iterator[str]:
    """Start the server, wait until ``/health`` answers 200, yield its base URL; kill it after.

    ``env`` adds or overrides ``RAPPORT_*`` variables.
    """
    with live_server_process(infra, **env) as server:
        yield server.base_url


@contextmanager
def live_server_process(infra: InfraEndpoints, **env: str) -> Iterator[LiveServer]:
    """:func:`live_server`, also telling the server's process id (to watch its memory)."""
    port = free_port()
    stream, prefix = infra.private_stream()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RAPPORT_LLM_")}
    environ.update(
        RAPPORT_DATABASE_URL=infra.database_url,
        RAPPORT_NATS_URL=infra.nats_url,
        RAPPORT_NATS_STREAM=stream,
        RAPPORT_NATS_SUBJECT_PREFIX=prefix,
        RAPPORT_PORT=str(port),
        RAPPORT_LOG_LEVEL="WARNING",
        RAPPORT_LOG_JSON="false",
        RAPPORT_OUTBOX_POLL_INTERVAL_S="0.2",
    )
    environ.update(env)
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "allinone"], cwd=ROOT, env=environ, stderr=log, stdout=log
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"server did not become healthy: {log.read().decode()[-3000:]}")
                time.sleep(0.2)
            yield LiveServer(base_url=base, pid=proc.pid, log=log)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
