"""``rapport mcp`` as a real process, driven by the ``mcp`` package's stdio client."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from tests.integration.cli.conftest import ROOT, Cli, chat_route_served

TOOLS = {"add_messages", "ask_memory", "get_context", "search", "list_sessions", "list_peers"}


@asynccontextmanager
async def connect(server: str, workspace: str) -> AsyncIterator[ClientSession]:
    """``rapport mcp`` started by the MCP stdio client, initialised. (Not a fixture: anyio's
    task groups must be entered and left in the same task.)"""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "rapport_cli", "mcp"],
        env={"RAPPORT_BASE_URL": server, "RAPPORT_WORKSPACE_ID": workspace},
        cwd=ROOT,
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """The wire form of a tool result (``content``, ``structuredContent``, ``isError``)."""
    result = await session.call_tool(tool, arguments)
    wire: dict[str, Any] = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    return wire


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert not result.get("isError"), result
    structured: dict[str, Any] = result["structuredContent"]
    # The text block carries the same result for clients that ignore structured content.
    assert json.loads(result["content"][0]["text"]) == structured
    return structured


async def test_lists_the_tools_with_their_input_schemas(server: str, workspace: str) -> None:
    async with connect(server, workspace) as mcp:
        listed = await mcp.list_tools()
    tools = {t.name: t.model_dump(mode="json", by_alias=True) for t in listed.tools}

    assert set(tools) == TOOLS
    for tool in tools.values():
        assert len(tool["description"]) > 40, tool["name"]
        assert tool["inputSchema"]["type"] == "object"
        assert tool["outputSchema"]["type"] == "object"

    add = tools["add_messages"]["inputSchema"]
    assert add["required"] == ["session_id", "messages"]
    item = add["properties"]["messages"]["items"]
    if "$ref" in item:
        item = add["$defs"][item["$ref"].rsplit("/", 1)[-1]]
    assert item["required"] == ["peer_id", "content"]
    assert add["properties"]["messages"]["maxItems"] == 100

    ask = tools["ask_memory"]["inputSchema"]
    assert ask["required"] == ["peer_id", "query"]
    assert set(ask["properties"]) == {"peer_id", "query", "target", "session_id"}
    assert "description" in ask["properties"]["target"]
    context = tools["get_context"]["inputSchema"]
    assert context["required"] == ["session_id"]
    assert set(context["properties"]) == {"session_id", "tokens", "peer_target", "peer_perspective"}
    search = tools["search"]["inputSchema"]
    assert search["required"] == ["query"]
    assert set(search["properties"]) == {"query", "session_id", "peer_id", "limit"}
    assert tools["search"]["annotations"]["readOnlyHint"] is True
    assert tools["add_messages"]["annotations"]["readOnlyHint"] is False


async def test_add_messages_search_and_get_context(server: str, workspace: str) -> None:
    async with connect(server, workspace) as mcp:
        added = ok(
            await call(
                mcp,
                "add_messages",
                session_id="breakfast",
                messages=[
                    {"peer_id": "alice", "content": "Morning! What did everyone have?"},
                    {"peer_id": "bob", "content": "Scrambled eggs and a double espresso."},
                ],
            )
        )
        found = ok(await call(mcp, "search", query="espresso", session_id="breakfast"))
        by_alice = ok(await call(mcp, "search", query="morning", peer_id="alice", limit=5))
        context = ok(await call(mcp, "get_context", session_id="breakfast", tokens=1000))
        sessions = ok(await call(mcp, "list_sessions"))
        peers = ok(await call(mcp, "list_peers", limit=1))

    assert added["session_id"] == "breakfast"
    assert [(m["peer_id"], m["session_id"]) for m in added["messages"]] == [
        ("alice", "breakfast"),
        ("bob", "breakfast"),
    ]
    assert found["results"][0]["id"] == added["messages"][1]["id"]
    assert by_alice["results"]
    assert {m["peer_id"] for m in by_alice["results"]} == {"alice"}
    assert context["text"].endswith(
        "alice: Morning! What did everyone have?\nbob: Scrambled eggs and a double espresso."
    )
    assert context["messages"] == 2
    assert context["message_tokens"] == sum(m["token_count"] for m in added["messages"]) > 0
    assert context["total_tokens"] == context["message_tokens"] + context["summary_tokens"]
    assert [s["id"] for s in sessions["sessions"]] == ["breakfast"]
    assert [p["id"] for p in peers["peers"]] == ["alice"]


async def test_ask_memory_answers_from_what_was_derived(server: str, cli: Cli) -> None:
    if not chat_route_served(server):
        pytest.skip("the server does not serve POST /v3/workspaces/{w}/peers/{p}/chat yet")
    async with connect(server, cli.workspace) as mcp:
        ok(
            await call(
                mcp,
                "add_messages",
                session_id="kitchen",
                messages=[{"peer_id": "bob", "content": "I had scrambled eggs for breakfast"}],
            )
        )
        cli.wait_idle()
        answer = ok(await call(mcp, "ask_memory", peer_id="bob", query="What did I eat?"))

    assert answer["peer_id"] == "bob"
    assert "eggs" in answer["answer"]
    # The CLI reads the same memory.
    assert (
        cli.ok("chat", "bob", "What did I eat?", "--no-stream").stdout.strip() == answer["answer"]
    )


async def test_errors_come_back_as_tool_errors_with_the_server_detail(
    server: str, workspace: str
) -> None:
    async with connect(server, workspace) as mcp:
        missing = await call(mcp, "get_context", session_id="nosuch")
        bad = await call(mcp, "get_context", session_id="s", peer_perspective="alice")
        invalid = await call(mcp, "search", query="x", limit=0)

    assert missing["isError"] is True
    # The mcp package prefixes "Error executing tool <name>: ".
    assert missing["content"][0]["text"].endswith(
        f"not found: Session 'nosuch' not found in workspace '{workspace}'"
    )
    assert bad["isError"] is True
    assert bad["content"][0]["text"].endswith("peer_perspective needs peer_target")
    assert invalid["isError"] is True
    assert "limit" in invalid["content"][0]["text"]
