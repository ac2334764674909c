"""The container image, tested without a Docker engine: every path the Dockerfile copies exists
(and is not excluded from the build context), and every process the entrypoint names starts
against the test infrastructure and answers ``/health``."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import InfraEndpoints

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "deploy" / "docker-entrypoint.sh"
SERVICES = ("ingest", "deriver", "context", "dialectic", "console", "allinone")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [p.strip() for p in lines if p.strip() and not p.startswith("#")]


def _ignored(path: str, patterns: list[str]) -> bool:
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        pat = pattern.removeprefix("**/")
        for prefix in prefixes:
            if fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(Path(prefix).name, pat):
                return True
    return False


def _context_copies() -> list[str]:
    """Sources of every COPY from the build context (not ``--from=`` another stage)."""
    sources: list[str] = []
    for word, args in _instructions():
        if word != "COPY":
            continue
        tokens = shlex.split(args)
        if any(t.startswith("--from=") for t in tokens):
            continue
        plain = [t for t in tokens if not t.startswith("--")]
        sources.extend(plain[:-1])
    return sources


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    sources = _context_copies()
    assert "deploy/docker-entrypoint.sh" in sources
    ignore = _dockerignore()
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: no such path"
        assert not _ignored(src, ignore), f"COPY {src}: excluded by .dockerignore"


def test_image_shape_multistage_non_root_and_entrypoint() -> None:
    inst = _instructions()
    stages = [args for word, args in inst if word == "FROM"]
    assert len(stages) >= 2, "multi-stage build expected"
    users = [args for word, args in inst if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "must run as non-root"
    [entrypoint] = [args for word, args in inst if word == "ENTRYPOINT"]
    assert entrypoint == '["rapport-entrypoint"]'
    # The runtime stage copies the entrypoint script under that name, executable.
    assert any(
        word == "COPY" and "deploy/docker-entrypoint.sh" in args and "rapport-entrypoint" in args
        for word, args in inst
    )
    assert os.access(ENTRYPOINT, os.X_OK)
    # The project's dependencies are what gets installed (no hand list that can drift).
    assert any(word == "RUN" and "pip install ." in args for word, args in inst)


def test_entrypoint_names_every_process_and_each_module_exists() -> None:
    script = ENTRYPOINT.read_text()
    for name in SERVICES:
        assert re.search(rf"(^|[|\s]){name}[|)]", script, re.M), f"entrypoint lacks {name}"
    assert re.search(r"^\s*migrate\)", script, re.M)
    for module in (
        "services/ingest",
        "services/deriver",
        "services/context",
        "services/dialectic",
        "services/console",
    ):
        assert (ROOT / module / "__main__.py").exists()
    assert (ROOT / "allinone" / "__main__.py").exists()
    assert (ROOT / "alembic.ini").exists() and (ROOT / "migrations" / "env.py").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(infra: InfraEndpoints, **extra: str) -> dict[str, str]:
    stream, prefix = infra.private_stream()
    env = dict(os.environ)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHON=sys.executable,
        PYTHONPATH=str(ROOT),
        RAPPORT_DATABASE_URL=infra.database_url,
        RAPPORT_NATS_URL=infra.nats_url,
        RAPPORT_NATS_STREAM=stream,
        RAPPORT_NATS_SUBJECT_PREFIX=prefix,
        RAPPORT_LOG_LEVEL="WARNING",
        RAPPORT_DB_POOL_SIZE="2",
        RAPPORT_OUTBOX_RELAY_ENABLED="false",
        RAPPORT_HOST="127.0.0.1",
    )
    env.update(extra)
    return env


def test_entrypoint_migrate_applies_the_history(infra: InfraEndpoints) -> None:
    done = subprocess.run(
        ["sh", str(ENTRYPOINT), "migrate"],
        cwd=ROOT,
        env=_env(infra),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def test_every_entrypoint_process_starts_and_answers_health(infra: InfraEndpoints) -> None:
    procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        for name in SERVICES:
            port = _free_port()
            extra = {"RAPPORT_PORT": str(port), "RAPPORT_SERVICE_NAME": f"rapport-{name}"}
            if name == "allinone":  # already migrated; keep its deriver out of the run's stream
                extra["RAPPORT_DERIVER_ENABLED"] = "false"
            if name == "console":  # needs the API's URL to start (not to answer /health)
                extra["RAPPORT_CONSOLE_API_URL"] = "http://127.0.0.1:9"
            args = ["sh", str(ENTRYPOINT), name]
            if name == "allinone":
                args.append("--no-migrate")
            proc = subprocess.Popen(
                args, cwd=ROOT, env=_env(infra, **extra), stderr=subprocess.PIPE
            )
            procs[name] = (proc, port)
        pending = dict(procs)
        deadline = time.monotonic() + 90
        while pending:
            for name, (proc, port) in list(pending.items()):
                if proc.poll() is not None:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    pytest.fail(f"{name} exited with {proc.returncode}: {err[-2000:]}")
                try:
                    r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                except httpx.HTTPError:
                    continue
                if r.status_code == 200:
                    assert r.json()["status"] == "ok"
                    del pending[name]
            if time.monotonic() > deadline:
                pytest.fail(f"not healthy in time: {sorted(pending)}")
            time.sleep(0.2)
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
