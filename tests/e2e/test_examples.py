"""The programs in ``examples/``, run as written (subprocesses using the ``rapport`` SDK)
against a real all-in-one server started by the test."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import InfraEndpoints
from tests.live_server import live_server

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def base_url(infra: InfraEndpoints) -> Iterator[str]:
    with live_server(infra) as url:
        yield url


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
