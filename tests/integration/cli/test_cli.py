"""The ``rapport`` command line, run as a real process against a live all-in-one server."""

from __future__ import annotations

import base64
import json
import re
import sys

import pytest

from libs.common.auth import create_jwt
from tests.conftest import JWT_SECRET
from tests.integration.cli.conftest import (
    Cli,
    clean_env,
    free_port,
    require_chat_route,
    run_cli,
)

JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")

COMMANDS = [
    [],
    ["workspaces"],
    ["workspaces", "list"],
    ["peers"],
    ["peers", "list"],
    ["peers", "show"],
    ["sessions"],
    ["sessions", "list"],
    ["sessions", "show"],
    ["messages"],
    ["messages", "list"],
    ["messages", "add"],
    ["chat"],
    ["context"],
    ["search"],
    ["queue"],
    ["queue", "status"],
    ["queue", "dead-letters"],
    ["queue", "retry"],
    ["keys"],
    ["keys", "create"],
    ["mcp"],
]


def _claims(key: str) -> dict[str, object]:
    payload = key.split(".")[1]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return decoded


def _breakfast(cli: Cli, session: str = "kitchen") -> None:
    cli.ok("messages", "add", session, "--peer", "alice", "Morning!", "What", "did", "you", "eat?")
    cli.ok("messages", "add", session, "--peer", "bob", "I had scrambled eggs for breakfast")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "rapport")
def test_help_for_every_command(command: list[str]) -> None:
    result = run_cli([sys.executable, "-m", "rapport_cli", *command, "--help"])

    assert result.code == 0, result.stderr
    assert result.stdout.startswith(f"usage: rapport {' '.join(command)}".rstrip())
    assert "--json" in result.stdout
    assert "--base-url" in result.stdout


def test_messages_add_then_list_as_text_and_json(cli: Cli) -> None:
    added = cli.ok("messages", "add", "kitchen", "--peer", "alice", "Morning!", "Coffee?")
    header, row = added.stdout.splitlines()
    assert header.split() == ["ID", "CREATED", "PEER", "TOKENS", "CONTENT"]
    assert row.split()[2:] == ["alice", row.split()[3], "Morning!", "Coffee?"]
    piped = cli.ok(
        "--json", "messages", "add", "kitchen", "--peer", "bob", "-", stdin="Yes\nplease\n"
    )
    [stored] = piped.json()
    assert stored["content"] == "Yes\nplease"
    assert stored["peer_id"] == "bob"

    text = cli.ok("messages", "list", "kitchen").stdout.splitlines()
    assert len(text) == 3
    assert text[0].index("CONTENT") == text[1].index("Morning!") == text[2].index("Yes\\nplease")
    listed = cli.ok("messages", "list", "kitchen", "--json").json()
    assert [(m["peer_id"], m["content"]) for m in listed] == [
        ("alice", "Morning! Coffee?"),
        ("bob", "Yes\nplease"),
    ]
    assert listed[1]["id"] == stored["id"]

    newest = cli.ok("messages", "list", "kitchen", "--reverse", "--limit", "1", "--json").json()
    assert [m["content"] for m in newest] == ["Yes\nplease"]
    by_alice = cli.ok("messages", "list", "kitchen", "--peer", "alice", "--json").json()
    assert [m["peer_id"] for m in by_alice] == ["alice"]


def test_sessions_peers_workspaces_and_search(cli: Cli) -> None:
    _breakfast(cli)

    sessions = cli.ok("sessions", "list", "--json").json()
    assert [s["id"] for s in sessions] == ["kitchen"]
    assert cli.ok("sessions", "list").stdout.splitlines()[1].startswith("kitchen  ")
    shown = cli.ok("sessions", "show", "kitchen", "--json").json()
    assert shown["session"]["id"] == "kitchen"
    assert sorted(p["id"] for p in shown["peers"]) == ["alice", "bob"]
    assert set(shown["summaries"]) >= {"short_summary", "long_summary"}
    assert "Peers:" in cli.ok("sessions", "show", "kitchen").stdout

    assert sorted(p["id"] for p in cli.ok("peers", "list", "--json").json()) == ["alice", "bob"]
    peer = cli.ok("peers", "show", "bob", "--json").json()
    assert peer["peer"]["id"] == "bob"
    assert set(peer) == {"peer", "card", "representation"}
    human = cli.ok("peers", "show", "bob").stdout
    assert "Card:" in human
    assert "Representation:" in human

    workspaces = cli.ok("workspaces", "list", "--json").json()
    assert cli.workspace in [w["id"] for w in workspaces]

    found = cli.ok("search", "scrambled eggs", "--json").json()
    assert found[0]["content"] == "I had scrambled eggs for breakfast"
    only_alice = cli.ok("search", "eggs", "--session", "kitchen", "--peer", "alice", "--json")
    assert all(m["peer_id"] == "alice" for m in only_alice.json())
    assert "scrambled eggs" in cli.ok("search", "eggs", "--peer", "bob").stdout


def test_chat_streamed_and_not_streamed_print_the_same_answer(cli: Cli) -> None:
    require_chat_route(cli.base_url)
    _breakfast(cli)
    cli.wait_idle()

    streamed = cli.ok("chat", "bob", "What did I have for breakfast?")
    whole = cli.ok("chat", "bob", "What did I have for breakfast?", "--no-stream")
    as_json = cli.ok("chat", "bob", "What did I have for breakfast?", "--json").json()

    assert streamed.stdout.strip()
    assert streamed.stdout == whole.stdout
    assert as_json["content"] == whole.stdout.rstrip("\n")
    about_bob = cli.ok(
        "chat",
        "alice",
        "What did bob eat?",
        "--target",
        "bob",
        "--session",
        "kitchen",
        "--level",
        "minimal",
        "--no-stream",
    )
    assert about_bob.code == 0


def test_context_in_every_format(cli: Cli) -> None:
    _breakfast(cli)

    openai = cli.ok("context", "kitchen", "--format", "openai", "--assistant", "bob").json()
    assert [(m["role"], m["name"]) for m in openai if m["role"] != "system"] == [
        ("user", "alice"),
        ("assistant", "bob"),
    ]
    anthropic = cli.ok("context", "kitchen", "--format", "anthropic", "--assistant", "bob").json()
    assert anthropic[-2:] == [
        {"role": "user", "content": "alice: Morning! What did you eat?"},
        {"role": "assistant", "content": "I had scrambled eggs for breakfast"},
    ]
    raw = cli.ok("context", "kitchen", "--json", "--tokens", "500", "--no-summary").json()
    assert [m["peer_id"] for m in raw["messages"]] == ["alice", "bob"]
    as_json = cli.ok("context", "kitchen", "--json", "--format", "text").json()
    assert as_json["text"].endswith("bob: I had scrambled eggs for breakfast")
    assert as_json["messages"] == 2
    assert as_json["total_tokens"] == sum(m["token_count"] for m in raw["messages"]) > 0
    text = cli.ok("context", "kitchen", "--peer-target", "bob").stdout
    assert text.startswith("# Context of session 'kitchen': 2 messages, ")
    assert text.rstrip().endswith(
        "alice: Morning! What did you eat?\nbob: I had scrambled eggs for breakfast"
    )


def test_queue_status_and_empty_dead_letters(cli: Cli) -> None:
    _breakfast(cli)
    status = cli.wait_idle()
    assert status["dead_letter_work_units"] == 0
    assert status["completed_work_units"] == status["total_work_units"]
    human = cli.ok("queue", "status", "--session", "kitchen").stdout
    assert re.search(r"^Pending\s+0$", human, re.MULTILINE)
    assert re.search(r"^Idle\s+yes$", human, re.MULTILINE)

    assert cli.ok("queue", "dead-letters", "--json").json() == []
    assert cli.ok("queue", "dead-letters", "--all", "--json").json() == []
    assert cli.ok("queue", "dead-letters").stdout == "No dead letters waiting for a retry.\n"
    missing = cli("queue", "retry", "nosuchdeadletter")
    assert missing.code == 4
    assert "not found" in missing.stderr


def test_keys_create_with_auth_off_returns_a_jwt(cli: Cli) -> None:
    key = cli.ok("keys", "create").stdout.strip()
    assert JWT.match(key), key
    assert _claims(key)["w"] == cli.workspace

    peer_key = cli.ok("keys", "create", "--peer", "alice", "--expires-at", "2099-01-01T00:00:00Z")
    claims = _claims(peer_key.stdout.strip())
    assert (claims["w"], claims["p"]) == (cli.workspace, "alice")
    assert "exp" in claims
    as_json = cli.ok("keys", "create", "--session", "kitchen", "--json").json()
    assert JWT.match(as_json["key"])
    assert _claims(as_json["key"])["s"] == "kitchen"


def test_unknown_session_exits_4(cli: Cli) -> None:
    for command in (
        ["messages", "list", "nosuch"],
        ["sessions", "show", "nosuch"],
        ["context", "nosuch"],
        ["peers", "show", "nobody"],
    ):
        result = cli(*command)
        assert result.code == 4, (command, result.stderr)
        assert result.stdout == ""
        assert result.stderr.startswith("rapport: error: not found: ")
        assert "not found" in result.stderr.lower()
        assert "Traceback" not in result.stderr
    # Looking a session up does not create it.
    assert cli.ok("sessions", "list", "--json").json() == []


def test_nothing_listening_exits_3(workspace: str) -> None:
    cli = Cli(f"http://127.0.0.1:{free_port()}", workspace)

    result = cli("sessions", "list")

    assert result.code == 3
    assert result.stderr.startswith(f"rapport: error: cannot connect to {cli.base_url}")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["nosuchcommand"],
        ["peers"],
        ["messages", "add", "kitchen", "hello"],  # no --peer
        ["chat", "bob"],  # no QUERY
        ["search", "eggs", "--limit", "0"],
        ["chat", "bob", "hi", "--level", "extreme"],
        ["keys", "create", "--expires-at", "tomorrow"],
        ["--timeout", "-1", "sessions", "list"],
        ["context", "kitchen", "--format", "openai"],  # no --assistant
        ["context", "kitchen", "--peer-perspective", "alice"],  # no --peer-target
        ["keys", "create", "--peer", "alice", "--session", "kitchen"],
    ],
)
def test_bad_usage_exits_2(cli: Cli, args: list[str]) -> None:
    result = cli(*args)

    assert result.code == 2, result.stderr
    assert "error" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_global_options_after_the_command_and_from_the_environment(
    cli: Cli, workspace: str
) -> None:
    _breakfast(cli)
    env = clean_env(RAPPORT_BASE_URL=cli.base_url, RAPPORT_WORKSPACE_ID=workspace)
    from_env = run_cli([sys.executable, "-m", "rapport_cli", "sessions", "list", "--json"], env=env)
    assert from_env.code == 0, from_env.stderr
    assert [s["id"] for s in from_env.json()] == ["kitchen"]
    other = run_cli(
        [
            sys.executable,
            "-m",
            "rapport_cli",
            "sessions",
            "list",
            "--workspace",
            f"{workspace}-other",
            "--json",
        ],
        env=env,
    )
    assert other.json() == []


def test_auth_errors_exit_5(auth_server: str, workspace: str) -> None:
    cli = Cli(auth_server, workspace)
    workspace_key = create_jwt(JWT_SECRET, workspace_id=workspace)

    missing = cli("sessions", "list")
    assert missing.code == 5, missing.stderr
    assert missing.stderr.startswith("rapport: error: 401 unauthorized")
    forged = cli("--api-key", "not.a.jwt", "sessions", "list")
    assert forged.code == 5

    env = clean_env(RAPPORT_API_KEY=workspace_key)
    allowed = cli("sessions", "list", "--json", env=env)
    assert allowed.code == 0, allowed.stderr
    assert allowed.json() == []
    admin_only = cli("keys", "create", env=env)
    assert admin_only.code == 5
    assert admin_only.stderr.startswith("rapport: error: 403 forbidden")
