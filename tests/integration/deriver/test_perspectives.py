"""Perspective semantics end to end: what each peer's view learns, through the real write path,
JetStream and the deriver (extractive reasoner, local embedder, pgvector)."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import AppFactory
from tests.integration.deriver._helpers import conclusions, say, wait_derived


@pytest.fixture
async def deriving(app_factory: AppFactory, clean_db: None) -> httpx.AsyncClient:
    return await app_factory(deriver_enabled=True)


async def test_breakfast_reaches_the_global_view_and_observing_witnesses_only(
    deriving: httpx.AsyncClient, ws_id: str
) -> None:
    await deriving.post("/v3/workspaces", json={"id": ws_id})
    await deriving.post(
        f"/v3/workspaces/{ws_id}/sessions",
        json={
            "id": "kitchen",
            "peers": {"alice": {}, "bob": {"observe_others": True}, "charlie": {}},
        },
    )
    await say(
        deriving,
        ws_id,
        "kitchen",
        ("bob", "I had eggs for breakfast today"),
        created_at="2026-11-20T08:00:00Z",
    )
    await wait_derived(deriving, ws_id, expect_total=1)

    own = await conclusions(deriving, ws_id, "bob", "bob")
    assert any("bob had eggs for breakfast" in c and "2026-11-20" in c for c in own), own
    # alice and charlie witnessed it but do not observe others: no local view.
    assert await conclusions(deriving, ws_id, "alice", "bob") == []
    assert await conclusions(deriving, ws_id, "charlie", "bob") == []


async def test_diplomacy_side_chat_never_reaches_the_excluded_peer(
    deriving: httpx.AsyncClient, ws_id: str
) -> None:
    await deriving.post("/v3/workspaces", json={"id": ws_id})
    everyone = {p: {"observe_others": True} for p in ("alice", "bob", "charlie")}
    await deriving.post(
        f"/v3/workspaces/{ws_id}/sessions", json={"id": "diplomacy-turn-1", "peers": everyone}
    )
    await deriving.post(
        f"/v3/workspaces/{ws_id}/sessions",
        json={
            "id": "side-chat",
            "peers": {"alice": {"observe_others": True}, "bob": {"observe_others": True}},
        },
    )
    await say(deriving, ws_id, "diplomacy-turn-1", ("alice", "I'm going to be peaceful"))
    await say(deriving, ws_id, "side-chat", ("alice", "I'm actually going to attack Charlie"))
    await wait_derived(deriving, ws_id, expect_total=2)

    charlie_view = await conclusions(deriving, ws_id, "charlie", "alice")
    bob_view = await conclusions(deriving, ws_id, "bob", "alice")
    alice_global = await conclusions(deriving, ws_id, "alice", "alice")
    assert charlie_view and all("attack" not in c for c in charlie_view), charlie_view
    assert any("peaceful" in c for c in charlie_view)
    assert any("attack" in c for c in bob_view) and any("peaceful" in c for c in bob_view)
    assert any("attack" in c for c in alice_global)


async def test_membership_windows_decide_who_witnessed_what(
    deriving: httpx.AsyncClient, ws_id: str
) -> None:
    await deriving.post("/v3/workspaces", json={"id": ws_id})
    await deriving.post(
        f"/v3/workspaces/{ws_id}/sessions",
        json={"id": "s", "peers": {"alice": {}, "bob": {"observe_others": True}}},
    )
    await say(deriving, ws_id, "s", ("alice", "I grew up in Lisbon"))
    # dave joins later: he did not witness the first message.
    await deriving.post(
        f"/v3/workspaces/{ws_id}/sessions/s/peers", json={"dave": {"observe_others": True}}
    )
    await say(deriving, ws_id, "s", ("alice", "I work as a nurse"))
    # bob leaves: he does not witness what follows.
    await deriving.request("DELETE", f"/v3/workspaces/{ws_id}/sessions/s/peers", json=["bob"])
    await say(deriving, ws_id, "s", ("alice", "I adopted a cat named Miso"))
    await wait_derived(deriving, ws_id, expect_total=3)

    bob = " | ".join(await conclusions(deriving, ws_id, "bob", "alice"))
    dave = " | ".join(await conclusions(deriving, ws_id, "dave", "alice"))
    assert "Lisbon" in bob and "nurse" in bob and "Miso" not in bob
    assert "Lisbon" not in dave and "nurse" in dave and "Miso" in dave


async def test_observe_me_off_keeps_the_global_view_empty(
    deriving: httpx.AsyncClient, ws_id: str
) -> None:
    await deriving.post("/v3/workspaces", json={"id": ws_id})
    await deriving.post(
        f"/v3/workspaces/{ws_id}/peers", json={"id": "bot", "configuration": {"observe_me": False}}
    )
    await deriving.post(
        f"/v3/workspaces/{ws_id}/sessions",
        json={"id": "s", "peers": {"bot": {}, "alice": {"observe_others": True}}},
    )
    await say(deriving, ws_id, "s", ("bot", "I am a helpful assistant living in the cloud"))
    await wait_derived(deriving, ws_id, expect_total=1)
    assert await conclusions(deriving, ws_id, "bot", "bot") == []
    assert await conclusions(deriving, ws_id, "alice", "bot") != []
