"""The programs in ``examples/``, run as written (subprocesses using the ``rapport`` SDK)
against a real server started by the test — the all-in-one process, and the multi-process
mode (ingest, two derivers, two dialectic processes, context, behind nginx)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts import multiproc
from tests.conftest import InfraEndpoints
from tests.live_server import live_server

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _nginx() -> bool:
    return shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()


@pytest.fixture(scope="module", params=["allinone", "multiprocess"])
def base_url(
    request: pytest.FixtureRequest,
    infra: InfraEndpoints,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    if request.param == "allinone":
        with live_server(infra) as url:
            yield url
        return
    if not _nginx():
        pytest.skip("nginx is not installed (apt-get install -y nginx; .ci/run does it)")
    stream, prefix = infra.private_stream()
    env = {
        "RAPPORT_DATABASE_URL": infra.database_url,
        "RAPPORT_NATS_URL": infra.nats_url,
        "RAPPORT_NATS_STREAM": stream,
        "RAPPORT_NATS_SUBJECT_PREFIX": prefix,
        "RAPPORT_LOG_LEVEL": "WARNING",
        "RAPPORT_LOG_JSON": "false",
        "RAPPORT_DB_POOL_SIZE": "3",
        "RAPPORT_OUTBOX_POLL_INTERVAL_S": "0.2",
    }
    data_dir = tmp_path_factory.mktemp("multiproc-examples")
    data_dir.chmod(0o755)
    cluster = multiproc.start(env, data_dir, multiproc.free_port())
    try:
        yield cluster.proxy_url
    finally:
        cluster.stop()


def run_example(name: str, base_url: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAPPORT_")}
    env["RAPPORT_BASE_URL"] = base_url
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args, "--max-wait", "60"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def line_after(output: str, prefix: str) -> str:
    [line] = [line for line in output.splitlines() if line.startswith(prefix)]
    return line.removeprefix(prefix)


def test_breakfast(base_url: str) -> None:
    out = run_example("breakfast.py", base_url)
    assert "alice asks her memory: What did Bob have for breakfast today?" in out
    answer = line_after(out, "answer: ")
    assert "eggs" in answer.lower()


def test_diplomacy(base_url: str) -> None:
    out = run_example("diplomacy.py", base_url)
    assert "side-chat: alice, bob\n" in out
    charlie = line_after(out, "charlie's answer: ")
    assert "peaceful" in charlie.lower()
    assert "attack" not in charlie.lower()  # the side chat never reaches charlie
    charlie_view = out.split("what charlie knows about alice:")[1].split("what bob knows")[0]
    assert "peaceful" in charlie_view and "attack" not in charlie_view.lower()
    # bob was in the side chat: his view of alice has the plan
    assert "attack" in line_after(out, "bob's answer: ").lower()
    assert "attack" in out.split("what bob knows about alice:")[1].lower()


def _json_block(out: str, name: str) -> list[dict[str, Any]]:
    block = out.split(f"--- {name} ---\n")[1].split("\n---")[0]
    data: list[dict[str, Any]] = json.loads(block)
    return data


def test_long_conversation(base_url: str) -> None:
    workspace = f"coaching-{uuid.uuid4().hex[:8]}"
    out = run_example("long_conversation.py", base_url, "--workspace", workspace)
    assert f"workspace {workspace}\n" in out
    assert "added 90 messages" in out
    totals = re.search(r"token total: (\d+) of (\d+)", out)
    assert totals, out
    total, budget = map(int, totals.groups())
    assert budget == 1500 and 0 < total <= 1500
    openai = _json_block(out, "to_openai")
    anthropic = _json_block(out, "to_anthropic")
    summary = re.search(r"\+ a (short|long) summary \((\d+) tokens\)", out)
    assert summary, "the conversation is long enough to be summarised"

    # a summary block first, then the newest messages (not all 90: the budget trims them)
    assert openai[0]["role"] == "system" and openai[0]["content"].startswith("<summary>")
    assert anthropic[0]["role"] == "user" and anthropic[0]["content"].startswith("<summary>")
    turns = openai[1:]
    assert 2 <= len(turns) < 90 and len(anthropic) == len(openai)
    for o, a in zip(turns, anthropic[1:], strict=True):
        assert o["name"] in {"sam", "coach"}
        if o["name"] == "coach":
            assert o["role"] == "assistant"
            assert a == {"role": "assistant", "content": o["content"]}
        else:
            assert o["role"] == "user"
            assert a == {"role": "user", "content": f"sam: {o['content']}"}
    assert {t["role"] for t in turns} == {"user", "assistant"}
    # the newest message of the conversation is the last one of the context
    assert turns[-1]["content"].startswith("Just 20 easy minutes on Thursday")
