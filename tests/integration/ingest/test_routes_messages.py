"""Message routes: batch create, list, get, update; numbering and message.created events."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
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


def msgs_url(ws: str, session: str = "s1", rest: str = "") -> str:
    return ws_url(ws, f"/sessions/{session}/messages{rest}")


# -- create ----------------------------------------------------------------------------------
async def test_create_messages_returns_them_in_order_with_every_field(
    client: httpx.AsyncClient, ws_id: str, db: Any
) -> None:
    await make_session(client, ws_id, "s1")
    r = await client.post(
        msgs_url(ws_id),
        json={
            "messages": [
                {"peer_id": "alice", "content": "hello world", "metadata": {"k": 1}},
                {
                    "peer_id": "bob",
                    "content": "",
                    "configuration": {"reasoning": {"enabled": False}},
                },
            ]
        },
    )
    assert r.status_code == 201, r.text
    first, second = r.json()
    assert set(first) == {
        "id",
        "content",
        "peer_id",
        "session_id",
        "workspace_id",
        "metadata",
        "created_at",
        "token_count",
    }
    assert (first["content"], first["peer_id"], first["metadata"]) == (
        "hello world",
        "alice",
        {"k": 1},
    )
    assert (first["session_id"], first["workspace_id"], first["token_count"]) == ("s1", ws_id, 2)
    assert (second["content"], second["peer_id"], second["metadata"]) == ("", "bob", {})
    assert second["token_count"] == 0
    assert len(first["id"]) == 21 and first["id"] != second["id"]
    row = await (
        await db.execute(
            "select content, peer_id, metadata, token_count from messages where id = %s",
            (first["id"],),
        )
    ).fetchone()
    assert row == ("hello world", "alice", {"k": 1}, 2)


async def test_seq_numbers_messages_one_to_n_across_batches(
    client: httpx.AsyncClient, ws_id: str, db: Any
) -> None:
    await make_session(client, ws_id, "s1")
    await make_session(client, ws_id, "s2", ensure_workspace=False)
    made = await add_messages(client, ws_id, "s1", ("a", "1"), ("b", "2"), ("a", "3"))
    await add_messages(client, ws_id, "s2", ("a", "other session"))
    made += await add_messages(client, ws_id, "s1", ("c", "4"), ("a", "5"))
    made += await add_messages(client, ws_id, "s1", ("b", "6"))
    seqs = await message_seqs(db, ws_id, "s1")
    assert [seqs[m["id"]] for m in made] == [1, 2, 3, 4, 5, 6]
    assert list((await message_seqs(db, ws_id, "s2")).values()) == [1]
    row = await (
        await db.execute(
            "select last_seq from sessions where workspace_id = %s and id = 's1'", (ws_id,)
        )
    ).fetchone()
    assert row == (6,)


async def test_concurrent_batches_get_distinct_consecutive_seqs(
    client: httpx.AsyncClient, ws_id: str, db: Any
) -> None:
    await make_session(client, ws_id, "s1")
    batches = await asyncio.gather(
        *(
            add_messages(client, ws_id, "s1", *[(f"p{b}", f"b{b}m{i}") for i in range(3)])
            for b in range(4)
        )
    )
    seqs = await message_seqs(db, ws_id, "s1")
    assert sorted(seqs.values()) == list(range(1, 13))
    for batch in batches:  # each batch is contiguous and in order
        numbers = [seqs[m["id"]] for m in batch]
        assert numbers == list(range(numbers[0], numbers[0] + 3))
    listed = (await client.post(msgs_url(ws_id, rest="/list"), params={"size": 100})).json()[
        "items"
    ]
    assert [seqs[m["id"]] for m in listed] == list(range(1, 13))


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("2020-01-02T03:04:05Z", datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2020-01-02T05:04:05.250+02:00", datetime(2020, 1, 2, 3, 4, 5, 250000, tzinfo=UTC)),
        ("2020-01-02T03:04:05", datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ],
    ids=["utc", "offset", "naive-is-utc"],
)
async def test_client_supplied_created_at_is_kept(
    client: httpx.AsyncClient, ws_id: str, db: Any, sent: str, expected: datetime
) -> None:
    await make_session(client, ws_id, "s1")
    [m] = await add_messages(
        client, ws_id, "s1", {"peer_id": "alice", "content": "old", "created_at": sent}
    )
    assert datetime.fromisoformat(m["created_at"]) == expected
    row = await (
        await db.execute("select created_at from messages where id = %s", (m["id"],))
    ).fetchone()
    assert row is not None and row[0] == expected
    got = (await client.get(msgs_url(ws_id, rest=f"/{m['id']}"))).json()
    assert datetime.fromisoformat(got["created_at"]) == expected


async def test_created_at_defaults_to_now(client: httpx.AsyncClient, ws_id: str) -> None:
    await make_session(client, ws_id, "s1")
    before = datetime.now(UTC)
    [m] = await add_messages(client, ws_id, "s1", ("alice", "now"))
    created = datetime.fromisoformat(m["created_at"])
    assert abs((created - before).total_seconds()) < 60


async def test_create_messages_in_unknown_session_is_404(
    client: httpx.AsyncClient, ws_id: str, db: Any
) -> None:
    await make_workspace(client, ws_id)
    r = await client.post(
        msgs_url(ws_id, "nope"), json={"messages": [{"peer_id": "a", "content": "x"}]}
    )
    assert r.status_code == 404
    assert r.json() == {"detail": f"Session 'nope' not found in workspace '{ws_id}'"}
    row = await (
        await db.execute("select count(*) from peers where workspace_id = %s", (ws_id,))
    ).fetchone()
    assert row == (0,)


async def test_create_messages_in_unknown_workspace_is_404(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    r = await client.post(msgs_url(ws_id), json={"messages": [{"peer_id": "a", "content": "x"}]})
    assert r.status_code == 404
    assert r.json() == {"detail": f"Workspace '{ws_id}' not found"}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"messages": []}, "at least 1"),
        ({"messages": [{"peer_id": "a", "content": "x"}] * 101}, "at most 100 messages"),
        ({"messages": [{"peer_id": "a", "content": "x" * 25_001}]}, "limit is 25000"),
        ({"messages": [{"content": "x"}]}, "Field required"),
        ({"messages": [{"peer_id": "a b", "content": "x"}]}, "pattern"),
        ({"messages": [{"peer_id": "a", "content": "nul\u0000"}]}, "NUL"),
        ({"messages": [{"peer_id": "a", "content": "x", "role": "user"}]}, "Extra inputs"),
        ({"messages": [{"peer_id": "a", "content": "x", "created_at": "soon"}]}, "datetime"),
        (
            {"messages": [{"peer_id": "a", "content": "x", "configuration": {"x": 1}}]},
            "Extra inputs",
        ),
        ({"messages": [{"peer_id": "a", "content": "x", "metadata": [1]}]}, "dictionary"),
    ],
    ids=[
        "empty",
        "too-many",
        "too-long",
        "no-peer",
        "bad-peer",
        "nul",
        "extra",
        "bad-date",
        "bad-config",
        "metadata-list",
    ],
)
async def test_create_messages_rejects_invalid_batches(
    client: httpx.AsyncClient, ws_id: str, db: Any, body: dict[str, Any], fragment: str
) -> None:
    await make_session(client, ws_id, "s1")
    assert_422(await client.post(msgs_url(ws_id), json=body), fragment)
    assert await message_seqs(db, ws_id, "s1") == {}


async def test_message_of_exactly_the_limit_is_accepted(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    await make_session(client, ws_id, "s1")
    [m] = await add_messages(client, ws_id, "s1", ("a", "y" * 25_000))
    assert len(m["content"]) == 25_000


async def test_batch_limit_follows_settings(app_factory: Any, ws_id: str) -> None:
    client = await app_factory(max_messages_per_batch=5)
    await make_session(client, ws_id, "s1")
    ok = await client.post(
        msgs_url(ws_id), json={"messages": [{"peer_id": "a", "content": "x"}] * 5}
    )
    assert ok.status_code == 201
    r = await client.post(
        msgs_url(ws_id), json={"messages": [{"peer_id": "a", "content": "x"}] * 6}
    )
    assert_422(r, "at most 5 messages; got 6")


async def test_json_body_over_the_request_limit_is_413(app_factory: Any, ws_id: str) -> None:
    client = await app_factory(max_request_bytes=2048)
    await make_session(client, ws_id, "s1")
    r = await client.post(
        msgs_url(ws_id), json={"messages": [{"peer_id": "a", "content": "x" * 3000}]}
    )
    assert r.status_code == 413
    assert r.json() == {"detail": "Request body too large; the limit is 2048 bytes"}


# -- list, get, update -----------------------------------------------------------------------
async def test_list_messages_in_order_reverse_and_filtered(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    await make_session(client, ws_id, "s1")
    made = await add_messages(
        client,
        ws_id,
        "s1",
        {"peer_id": "alice", "content": "one", "metadata": {"tag": "x"}},
        ("bob", "two"),
        {"peer_id": "alice", "content": "three", "metadata": {"tag": "y"}},
    )
    r = await client.post(msgs_url(ws_id, rest="/list"))
    assert r.status_code == 200, r.text
    assert r.json()["items"] == made
    assert (r.json()["total"], r.json()["pages"]) == (3, 1)
    r = await client.post(msgs_url(ws_id, rest="/list"), params={"reverse": "true"})
    assert [m["content"] for m in r.json()["items"]] == ["three", "two", "one"]
    r = await client.post(msgs_url(ws_id, rest="/list"), json={"filters": {"peer_id": "alice"}})
    assert [m["content"] for m in r.json()["items"]] == ["one", "three"]
    r = await client.post(
        msgs_url(ws_id, rest="/list"), json={"filters": {"metadata": {"tag": "y"}}}
    )
    assert [m["content"] for m in r.json()["items"]] == ["three"]
    r = await client.post(msgs_url(ws_id, rest="/list"), json={"filters": None})
    assert r.json()["total"] == 3


async def test_list_messages_rejects_bad_filter(client: httpx.AsyncClient, ws_id: str) -> None:
    await make_session(client, ws_id, "s1")
    r = await client.post(msgs_url(ws_id, rest="/list"), json={"filters": {"token_count": "x"}})
    assert_422(r, "Invalid filter", "integer")


async def test_get_message_returns_it(client: httpx.AsyncClient, ws_id: str) -> None:
    await make_session(client, ws_id, "s1")
    [m] = await add_messages(client, ws_id, "s1", ("alice", "hello"))
    r = await client.get(msgs_url(ws_id, rest=f"/{m['id']}"))
    assert r.status_code == 200, r.text
    assert r.json() == m


async def test_get_unknown_message_is_404(client: httpx.AsyncClient, ws_id: str) -> None:
    await make_session(client, ws_id, "s1")
    r = await client.get(msgs_url(ws_id, rest="/missing"))
    assert r.status_code == 404
    assert r.json() == {"detail": "Message 'missing' not found in session 's1'"}


async def test_get_message_through_another_session_is_404(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    await make_session(client, ws_id, "s1")
    await make_session(client, ws_id, "s2", ensure_workspace=False)
    [m] = await add_messages(client, ws_id, "s1", ("alice", "hello"))
    r = await client.get(msgs_url(ws_id, "s2", f"/{m['id']}"))
    assert r.status_code == 404
    assert r.json() == {"detail": f"Message '{m['id']}' not found in session 's2'"}


async def test_get_message_in_unknown_session_is_404(client: httpx.AsyncClient, ws_id: str) -> None:
    await make_workspace(client, ws_id)
    r = await client.get(msgs_url(ws_id, "nope", "/missing"))
    assert r.status_code == 404
    assert r.json() == {"detail": f"Session 'nope' not found in workspace '{ws_id}'"}


async def test_update_message_metadata(client: httpx.AsyncClient, ws_id: str, db: Any) -> None:
    await make_session(client, ws_id, "s1")
    [m] = await add_messages(
        client, ws_id, "s1", {"peer_id": "alice", "content": "hi", "metadata": {"old": 1}}
    )
    r = await client.put(msgs_url(ws_id, rest=f"/{m['id']}"), json={"metadata": {"new": 2}})
    assert r.status_code == 200, r.text
    assert r.json() == {**m, "metadata": {"new": 2}}
    row = await (
        await db.execute("select metadata, content from messages where id = %s", (m["id"],))
    ).fetchone()
    assert row == ({"new": 2}, "hi")


@pytest.mark.parametrize(
    "body", [{}, {"metadata": "x"}, {"metadata": {}, "content": "edit"}], ids=str
)
async def test_update_message_rejects_invalid_body(
    client: httpx.AsyncClient, ws_id: str, body: dict[str, Any]
) -> None:
    await make_session(client, ws_id, "s1")
    [m] = await add_messages(client, ws_id, "s1", ("alice", "hi"))
    assert_422(await client.put(msgs_url(ws_id, rest=f"/{m['id']}"), json=body))


async def test_update_unknown_message_is_404(client: httpx.AsyncClient, ws_id: str) -> None:
    await make_session(client, ws_id, "s1")
    r = await client.put(msgs_url(ws_id, rest="/missing"), json={"metadata": {}})
    assert r.status_code == 404
    assert r.json() == {"detail": "Message 'missing' not found in session 's1'"}


# -- message.created events ------------------------------------------------------------------
async def test_message_created_events_carry_witnesses_of_their_moment(
    client: httpx.AsyncClient, infra: InfraEndpoints, ws_id: str
) -> None:
    await make_workspace(client, ws_id)
    r = await client.post(
        ws_url(ws_id, "/peers"), json={"id": "quiet", "configuration": {"observe_me": False}}
    )
    assert r.status_code == 201
    await make_session(
        client,
        ws_id,
        "s1",
        peers={"alice": {}, "bob": {"observe_others": True}},
        ensure_workspace=False,
    )
    made = await add_messages(client, ws_id, "s1", ("alice", "m1"), ("bob", "m2"))
    # carol joins after m1 and m2; dave joins by writing m4 in the middle of a batch.
    await client.post(ws_url(ws_id, "/sessions/s1/peers"), json={"carol": {}})
    made += await add_messages(client, ws_id, "s1", ("alice", "m3"), ("dave", "m4"), ("bob", "m5"))
    # bob leaves, then quiet (observe_me off) writes.
    await client.request("DELETE", ws_url(ws_id, "/sessions/s1/peers"), json=["bob"])
    made += await add_messages(client, ws_id, "s1", ("quiet", "m6"))

    subject = f"{infra.prefix}.message.created.{ws_id}.>"
    events = await read_events(infra, subject, expect=len(made))
    # Nothing more arrives (a second relay pass would duplicate): each is published once.
    await asyncio.sleep(1.0)
    events = await read_events(infra, subject)
    assert [e.data["message_id"] for e in events] == [m["id"] for m in made]
    assert len({e.msg_id for e in events}) == len(made)
    assert all(e.subject == f"{infra.prefix}.message.created.{ws_id}.s1" for e in events)

    def witnesses(i: int) -> dict[str, bool]:
        return {w["peer_id"]: w["observe_others"] for w in events[i].data["witnesses"]}

    assert [e.data["seq"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert [e.data["peer_id"] for e in events] == ["alice", "bob", "alice", "dave", "bob", "quiet"]
    assert witnesses(0) == {"bob": True}
    assert witnesses(1) == {"alice": False}
    assert witnesses(2) == {"bob": True, "carol": False}  # dave not yet a member
    assert witnesses(3) == {"alice": False, "bob": True, "carol": False}
    assert witnesses(4) == {"alice": False, "carol": False, "dave": False}
    assert witnesses(5) == {"alice": False, "carol": False, "dave": False}  # bob has left
    assert [e.data["observe_me"] for e in events] == [True] * 5 + [False]
    first = events[0].data
    assert (first["workspace_id"], first["session_id"], first["content"]) == (ws_id, "s1", "m1")
    assert first["token_count"] == made[0]["token_count"]
    assert datetime.fromisoformat(first["created_at"]) == datetime.fromisoformat(
        made[0]["created_at"]
    )


async def test_session_config_overrides_peer_config_in_witnesses(
    client: httpx.AsyncClient, infra: InfraEndpoints, ws_id: str
) -> None:
    await make_workspace(client, ws_id)
    for peer, cfg in (("eve", {"observe_others": True}), ("fay", {"observe_others": True})):
        r = await client.post(ws_url(ws_id, "/peers"), json={"id": peer, "configuration": cfg})
        assert r.status_code == 201
    await make_session(
        client,
        ws_id,
        "s1",
        peers={"eve": {}, "fay": {"observe_others": False}, "gus": {}},
        ensure_workspace=False,
    )
    # Re-added after leaving: a witness again, with the configuration it is given.
    await client.request("DELETE", ws_url(ws_id, "/sessions/s1/peers"), json=["gus"])
    await client.post(ws_url(ws_id, "/sessions/s1/peers"), json={"gus": {"observe_others": True}})
    [m] = await add_messages(client, ws_id, "s1", ("author", "hello"))
    [event] = await read_events(infra, f"{infra.prefix}.message.created.{ws_id}.>", expect=1)
    assert event.data["message_id"] == m["id"]
    assert {w["peer_id"]: w["observe_others"] for w in event.data["witnesses"]} == {
        "eve": True,
        "fay": False,
        "gus": True,
    }
