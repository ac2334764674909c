"""Session routes: get-or-create, list, update, delete, clone, membership, member config."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.conftest import InfraEndpoints
from tests.integration.ingest._routes_helpers import (
    add_messages,
    assert_422,
    make_session,
    make_workspace,
    message_seqs,
    read_events,
    ws_url,
)


async def member_ids(client: httpx.AsyncClient, ws: str, session: str) -> list[str]:
    r = await client.get(ws_url(ws, f"/sessions/{session}/peers"))
    assert r.status_code == 200, r.text
    return [p["id"] for p in r.json()["items"]]


# -- get-or-create, list, update -----------------------------------------------------------
async def test_create_session_returns_201_with_every_field(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    await make_workspace(client, ws_id)
    r = await client.post(
        ws_url(ws_id, "/sessions"),
        json={
            "id": "s1",
            "metadata": {"topic": "tea"},
            "configuration": {"summary": {"enabled": False}},
            "peers": {"alice": {}, "bob": {"observe_others": True}},
        },
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {
        "id",
        "workspace_id",
        "is_active",
        "metadata",
        "configuration",
        "created_at",
    }
    assert (body["id"], body["workspace_id"], body["is_active"]) == ("s1", ws_id, True)
    assert body["metadata"] == {"topic": "tea"}
    assert body["configuration"] == {"summary": {"enabled": False}}
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None
    assert sorted(await member_ids(client, ws_id, "s1")) == ["alice", "bob"]
    # Peers named in the map are created.
    r = await client.post(ws_url(ws_id, "/peers"), json={"id": "bob"})
    assert r.status_code == 200


async def test_create_existing_session_returns_200_and_does_not_overwrite(
    client: httpx.AsyncClient, ws_id: str, db: Any
) -> None:
    first = await make_session(client, ws_id, "s1", metadata={"v": 1})
    r = await client.post(
        ws_url(ws_id, "/sessions"),
        json={"id": "s1", "metadata": {"v": 2}, "configuration": {"dream": {"enabled": True}}},
    )
    assert r.status_code == 200, r.text
    assert r.json() == first
    row = await (
        await db.execute(
            "select metadata, configuration from sessions where workspace_id = %s and id = 's1'",
            (ws_id,),
        )
    ).fetchone()
    assert row == ({"v": 1}, {})


async def test_create_session_in_unknown_workspace_is_404(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    r = await client.post(ws_url(ws_id, "/sessions"), json={"id": "s1"})
    assert r.status_code == 404
    assert r.json() == {"detail": f"Workspace '{ws_id}' not found"}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"id": "s/1"}, "pattern"),
        ({"id": "s1", "peers": ["alice"]}, "dictionary"),
        ({"id": "s1", "peers": {"bad id": {}}}, "pattern"),
        ({"id": "s1", "peers": {"alice": {"observe_everything": True}}}, "Extra inputs"),
        ({"id": "s1", "configuration": {"summary": {"messages_per_short_summary": 1}}}, "10"),
    ],
    ids=["bad-id", "peers-list", "bad-peer-id", "bad-peer-config", "summary-too-small"],
)
async def test_create_session_rejects_invalid_body(
    client: httpx.AsyncClient, ws_id: str, body: dict[str, Any], fragment: str
) -> None:
    await make_workspace(client, ws_id)
    assert_422(await client.post(ws_url(ws_id, "/sessions"), json=body), fragment)


async def test_list_sessions_with_filters(client: httpx.AsyncClient, ws_id: str) -> None:
    await make_session(client, ws_id, "s1", metadata={"lang": "en"})
    await make_session(client, ws_id, "s2", metadata={"lang": "fr"}, ensure_workspace=False)
    await make_session(client, ws_id, "s3", metadata={"lang": "en"}, ensure_workspace=False)
    r = await client.post(ws_url(ws_id, "/sessions/list"))
    assert r.status_code == 200, r.text
    assert [s["id"] for s in r.json()["items"]] == ["s1", "s2", "s3"]
    r = await client.post(
        ws_url(ws_id, "/sessions/list"),
        json={"filters": {"metadata": {"lang": "en"}, "is_active": True}},
    )
    assert [s["id"] for s in r.json()["items"]] == ["s1", "s3"]
    r = await client.post(ws_url(ws_id, "/sessions/list"), json={"filters": {"is_active": False}})
    assert (r.json()["items"], r.json()["total"], r.json()["pages"]) == ([], 0, 0)


async def test_list_sessions_of_unknown_workspace_is_404(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    r = await client.post(ws_url(ws_id, "/sessions/list"))
    assert r.status_code == 404
    assert r.json() == {"detail": f"Workspace '{ws_id}' not found"}


async def test_update_session_replaces_only_the_given_part(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    await make_session(
        client, ws_id, "s1", metadata={"a": 1}, configuration={"custom_instructions": "x"}
    )
    r = await client.put(ws_url(ws_id, "/sessions/s1"), json={"metadata": {"b": 2}})
    assert r.status_code == 200, r.text
    assert r.json()["metadata"] == {"b": 2}
    assert r.json()["configuration"] == {"custom_instructions": "x"}
    r = await client.put(
        ws_url(ws_id, "/sessions/s1"), json={"configuration": {"peer_card": {"use": False}}}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["metadata"], r.json()["configuration"]) == (
        {"b": 2},
        {"peer_card": {"use": False}},
    )


async def test_update_unknown_session_is_404(client: httpx.AsyncClient, ws_id: str) -> None:
    await make_workspace(client, ws_id)
    r = await client.put(ws_url(ws_id, "/sessions/nope"), json={"metadata": {}})
    assert r.status_code == 404
    assert r.json() == {"detail": f"Session 'nope' not found in workspace '{ws_id}'"}


# -- delete ----------------------------------------------------------------------------------
async def test_delete_session_removes_it_and_its_messages(
    client: httpx.AsyncClient, infra: InfraEndpoints, ws_id: str, db: Any
) -> None:
    await make_session(client, ws_id, "s1")
    await make_session(client, ws_id, "keep", ensure_workspace=False)
    msgs = await add_messages(client, ws_id, "s1", ("alice", "one"), ("bob", "two"))
    await add_messages(client, ws_id, "keep", ("alice", "stays"))
    r = await client.delete(ws_url(ws_id, "/sessions/s1"))
    assert r.status_code == 204
    assert await message_seqs(db, ws_id, "s1") == {}
    assert len(await message_seqs(db, ws_id, "keep")) == 1
    r = await client.get(ws_url(ws_id, f"/sessions/s1/messages/{msgs[0]['id']}"))
    assert r.status_code == 404
    r = await client.post(ws_url(ws_id, "/sessions/s1/messages/list"))
    assert r.status_code == 404
    assert r.json() == {"detail": f"Session 's1' not found in workspace '{ws_id}'"}
    events = await read_events(infra, f"{infra.prefix}.session.deleted.{ws_id}.s1", expect=1)
    assert len(events) == 1
    assert sorted(events[0].data["message_ids"]) == sorted(m["id"] for m in msgs)


async def test_delete_unknown_session_is_404(client: httpx.AsyncClient, ws_id: str) -> None:
    await make_workspace(client, ws_id)
    r = await client.delete(ws_url(ws_id, "/sessions/nope"))
    assert r.status_code == 404
    assert r.json() == {"detail": f"Session 'nope' not found in workspace '{ws_id}'"}


# -- clone -----------------------------------------------------------------------------------
async def _source_session(client: httpx.AsyncClient, ws: str) -> list[dict[str, Any]]:
    await make_session(
        client,
        ws,
        "src",
        metadata={"m": 1},
        configuration={"summary": {"enabled": False}},
        peers={"carol": {"observe_others": True}},
    )
    first = await add_messages(
        client,
        ws,
        "src",
        {"peer_id": "alice", "content": "a1", "metadata": {"i": 1}},
        {"peer_id": "bob", "content": "b1", "created_at": "2021-06-01T10:00:00Z"},
    )
    return first + await add_messages(client, ws, "src", ("alice", "a2"))


@pytest.mark.parametrize("cut", [None, 1], ids=["whole", "up-to-message"])
async def test_clone_session_copies_messages_in_order_with_new_ids(
    client: httpx.AsyncClient, ws_id: str, db: Any, cut: int | None
) -> None:
    source = await _source_session(client, ws_id)
    params = {"message_id": source[cut]["id"]} if cut is not None else {}
    r = await client.post(ws_url(ws_id, "/sessions/src/clone"), params=params)
    assert r.status_code == 201, r.text
    clone = r.json()
    assert clone["id"] != "src"
    assert (clone["workspace_id"], clone["is_active"]) == (ws_id, True)
    assert clone["metadata"] == {"m": 1}
    assert clone["configuration"] == {"summary": {"enabled": False}}

    expected = source if cut is None else source[: cut + 1]
    r = await client.post(ws_url(ws_id, f"/sessions/{clone['id']}/messages/list"))
    copied = r.json()["items"]
    keys = ("content", "peer_id", "metadata", "created_at", "token_count")
    assert [tuple(m[k] for k in keys) for m in copied] == [
        tuple(m[k] for k in keys) for m in expected
    ]
    assert all(m["session_id"] == clone["id"] for m in copied)
    assert not {m["id"] for m in copied} & {m["id"] for m in source}
    seqs = await message_seqs(db, ws_id, clone["id"])
    assert [seqs[m["id"]] for m in copied] == list(range(1, len(expected) + 1))
    # The source is untouched.
    assert len(await message_seqs(db, ws_id, "src")) == 3
    # Members are copied, with their session configuration.
    assert sorted(await member_ids(client, ws_id, clone["id"])) == ["alice", "bob", "carol"]
    r = await client.get(ws_url(ws_id, f"/sessions/{clone['id']}/peers/carol/config"))
    assert r.json() == {"observe_me": None, "observe_others": True}
    # New messages continue the clone's numbering.
    [new] = await add_messages(client, ws_id, clone["id"], ("bob", "later"))
    assert (await message_seqs(db, ws_id, clone["id"]))[new["id"]] == len(expected) + 1


async def test_clone_empty_session_has_no_messages(client: httpx.AsyncClient, ws_id: str) -> None:
    await make_session(client, ws_id, "src")
    r = await client.post(ws_url(ws_id, "/sessions/src/clone"))
    assert r.status_code == 201, r.text
    listed = await client.post(ws_url(ws_id, f"/sessions/{r.json()['id']}/messages/list"))
    assert (listed.json()["items"], listed.json()["total"]) == ([], 0)


async def test_clone_with_unknown_message_id_is_404(client: httpx.AsyncClient, ws_id: str) -> None:
    await _source_session(client, ws_id)
    r = await client.post(
        ws_url(ws_id, "/sessions/src/clone"), params={"message_id": "no-such-message"}
    )
    assert r.status_code == 404
    assert r.json() == {"detail": "Message 'no-such-message' not found in session 'src'"}
    r = await client.post(ws_url(ws_id, "/sessions/list"))
    assert [s["id"] for s in r.json()["items"]] == ["src"]


async def test_clone_with_message_of_another_session_is_404(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    await _source_session(client, ws_id)
    await make_session(client, ws_id, "other", ensure_workspace=False)
    [foreign] = await add_messages(client, ws_id, "other", ("alice", "elsewhere"))
    r = await client.post(
        ws_url(ws_id, "/sessions/src/clone"), params={"message_id": foreign["id"]}
    )
    assert r.status_code == 404
    assert r.json() == {"detail": f"Message '{foreign['id']}' not found in session 'src'"}


async def test_clone_unknown_session_is_404(client: httpx.AsyncClient, ws_id: str) -> None:
    await make_workspace(client, ws_id)
    r = await client.post(ws_url(ws_id, "/sessions/nope/clone"))
    assert r.status_code == 404
    assert r.json() == {"detail": f"Session 'nope' not found in workspace '{ws_id}'"}


# -- membership ------------------------------------------------------------------------------
async def test_add_peers_adds_members_and_returns_the_session(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    await make_session(client, ws_id, "s1", peers={"alice": {}})
    r = await client.post(
        ws_url(ws_id, "/sessions/s1/peers"), json={"bob": {}, "carol": {"observe_me": False}}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["id"], r.json()["workspace_id"]) == ("s1", ws_id)
    assert sorted(await member_ids(client, ws_id, "s1")) == ["alice", "bob", "carol"]
    r = await client.get(ws_url(ws_id, "/sessions/s1/peers"))
    page = r.json()
    assert (page["total"], page["page"], page["pages"]) == (3, 1, 1)
    assert set(page["items"][0]) == {
        "id",
        "workspace_id",
        "metadata",
        "configuration",
        "created_at",
    }


async def test_set_peers_replaces_the_membership(client: httpx.AsyncClient, ws_id: str) -> None:
    await make_session(client, ws_id, "s1", peers={"alice": {}, "bob": {}})
    r = await client.put(
        ws_url(ws_id, "/sessions/s1/peers"), json={"bob": {}, "dave": {"observe_others": True}}
    )
    assert r.status_code == 200, r.text
    assert sorted(await member_ids(client, ws_id, "s1")) == ["bob", "dave"]
    r = await client.get(ws_url(ws_id, "/sessions/s1/peers/dave/config"))
    assert r.json() == {"observe_me": None, "observe_others": True}
    r = await client.put(ws_url(ws_id, "/sessions/s1/peers"), json={})
    assert r.status_code == 200, r.text
    assert await member_ids(client, ws_id, "s1") == []


async def test_remove_peers_lists_only_current_members(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    await make_session(client, ws_id, "s1", peers={"alice": {}, "bob": {}, "carol": {}})
    r = await client.request(
        "DELETE", ws_url(ws_id, "/sessions/s1/peers"), json=["alice", "carol", "never-member"]
    )
    assert r.status_code == 200, r.text
    assert await member_ids(client, ws_id, "s1") == ["bob"]
    # The peers themselves still exist.
    r = await client.post(ws_url(ws_id, "/peers/list"))
    assert sorted(p["id"] for p in r.json()["items"]) == ["alice", "bob", "carol"]


async def test_removed_then_readded_peer_is_a_member_again(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    await make_session(client, ws_id, "s1", peers={"alice": {}, "bob": {}})
    await client.request("DELETE", ws_url(ws_id, "/sessions/s1/peers"), json=["alice"])
    assert await member_ids(client, ws_id, "s1") == ["bob"]
    r = await client.post(ws_url(ws_id, "/sessions/s1/peers"), json={"alice": {}})
    assert r.status_code == 200, r.text
    assert sorted(await member_ids(client, ws_id, "s1")) == ["alice", "bob"]
    r = await client.post(ws_url(ws_id, "/peers/alice/sessions"))
    assert [s["id"] for s in r.json()["items"]] == ["s1"]


async def test_message_authors_join_the_session(client: httpx.AsyncClient, ws_id: str) -> None:
    await make_session(client, ws_id, "s1", peers={"alice": {}})
    await add_messages(client, ws_id, "s1", ("zoe", "hello"), ("alice", "hi zoe"))
    assert sorted(await member_ids(client, ws_id, "s1")) == ["alice", "zoe"]
    r = await client.post(ws_url(ws_id, "/peers"), json={"id": "zoe"})
    assert r.status_code == 200  # created by the message


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("POST", ["alice"]),
        ("PUT", {"alice": {"observe_me": "maybe"}}),
        ("POST", {"bad id": {}}),
        ("DELETE", {"alice": {}}),
        ("DELETE", ["bad id"]),
    ],
    ids=["add-list", "set-bad-config", "add-bad-id", "remove-map", "remove-bad-id"],
)
async def test_membership_routes_reject_invalid_bodies(
    client: httpx.AsyncClient, ws_id: str, method: str, body: Any
) -> None:
    await make_session(client, ws_id, "s1")
    assert_422(await client.request(method, ws_url(ws_id, "/sessions/s1/peers"), json=body))


@pytest.mark.parametrize(
    ("method", "body"),
    [("POST", {"a": {}}), ("PUT", {"a": {}}), ("DELETE", ["a"]), ("GET", None)],
)
async def test_membership_routes_on_unknown_session_are_404(
    client: httpx.AsyncClient, ws_id: str, method: str, body: Any
) -> None:
    await make_workspace(client, ws_id)
    r = await client.request(method, ws_url(ws_id, "/sessions/nope/peers"), json=body)
    assert r.status_code == 404
    assert r.json() == {"detail": f"Session 'nope' not found in workspace '{ws_id}'"}


# -- member configuration ------------------------------------------------------------------
async def test_peer_config_put_merges_and_returns_both_flags(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    await make_session(client, ws_id, "s1", peers={"alice": {}})
    url = ws_url(ws_id, "/sessions/s1/peers/alice/config")
    r = await client.get(url)
    assert r.status_code == 200, r.text
    assert r.json() == {"observe_me": None, "observe_others": None}

    r = await client.put(url, json={"observe_others": True})
    assert r.status_code == 200, r.text
    assert r.json() == {"observe_me": None, "observe_others": True}
    r = await client.put(url, json={"observe_me": False})
    assert r.json() == {"observe_me": False, "observe_others": True}
    r = await client.put(url, json={})
    assert r.json() == {"observe_me": False, "observe_others": True}
    assert (await client.get(url)).json() == {"observe_me": False, "observe_others": True}
    # The peer-level configuration is not touched by session settings.
    r = await client.post(ws_url(ws_id, "/peers"), json={"id": "alice"})
    assert r.json()["configuration"] == {}


async def test_peer_config_given_at_session_creation_is_returned(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    await make_session(client, ws_id, "s1", peers={"bob": {"observe_me": False}})
    r = await client.get(ws_url(ws_id, "/sessions/s1/peers/bob/config"))
    assert r.json() == {"observe_me": False, "observe_others": None}


@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_peer_config_of_non_member_is_404(
    client: httpx.AsyncClient, ws_id: str, method: str
) -> None:
    await make_session(client, ws_id, "s1", peers={"alice": {}})
    r = await client.request(
        method,
        ws_url(ws_id, "/sessions/s1/peers/stranger/config"),
        json={"observe_me": True} if method == "PUT" else None,
    )
    assert r.status_code == 404
    assert r.json() == {"detail": "Peer 'stranger' is not a member of session 's1'"}


async def test_peer_config_of_unknown_session_is_404(client: httpx.AsyncClient, ws_id: str) -> None:
    await make_workspace(client, ws_id)
    r = await client.get(ws_url(ws_id, "/sessions/nope/peers/alice/config"))
    assert r.status_code == 404
    assert r.json() == {"detail": f"Session 'nope' not found in workspace '{ws_id}'"}


async def test_peer_config_put_rejects_unknown_keys(client: httpx.AsyncClient, ws_id: str) -> None:
    await make_session(client, ws_id, "s1", peers={"alice": {}})
    r = await client.put(
        ws_url(ws_id, "/sessions/s1/peers/alice/config"), json={"observe_all": True}
    )
    assert_422(r, "Extra inputs")
