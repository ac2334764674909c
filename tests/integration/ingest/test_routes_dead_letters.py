"""Dead-letter routes (a Rapport addition): list and retry events the deriver gave up on."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.conftest import InfraEndpoints
from tests.integration.ingest._routes_helpers import (
    add_messages,
    make_session,
    make_workspace,
    read_events,
    ws_url,
)

pytestmark = pytest.mark.reliability  # part of make test-reliability (issue 8)

FIELDS = {
    "id", "workspace_id", "session_id", "consumer", "event_type", "event_id", "error",
    "attempts", "created_at", "retried_at", "payload",
}  # fmt: skip


async def seed(
    db: Any,
    *,
    letter_id: str,
    ws: str,
    payload: dict[str, Any],
    event_type: str = "message.created",
    created_at: str = "2024-01-01T00:00:00Z",
    retried_at: str | None = None,
) -> None:
    await db.execute(
        "insert into dead_letters (id, workspace_id, session_id, consumer, event_id, event_type,"
        " subject, payload, error, attempts, created_at, retried_at)"
        " values (%s, %s, %s, 'representation', %s, %s, 'x', %s::jsonb, 'boom', 5, %s, %s)",
        (
            letter_id,
            ws,
            payload.get("session_id"),
            f"ev-{letter_id}",
            event_type,
            json.dumps(payload),
            created_at,
            retried_at,
        ),
    )


async def message_payload(client: httpx.AsyncClient, ws: str) -> dict[str, Any]:
    await make_session(client, ws, "s1")
    [m] = await add_messages(client, ws, "s1", ("alice", "hello"))
    return {
        "event_id": "original-event",
        "workspace_id": ws,
        "session_id": "s1",
        "message_id": m["id"],
        "peer_id": "alice",
        "seq": 1,
        "content": "hello",
        "token_count": 1,
        "created_at": m["created_at"],
        "observe_me": True,
        "witnesses": [],
    }


def url(ws: str, rest: str = "") -> str:
    return ws_url(ws, f"/queue/dead_letters{rest}")


async def test_list_dead_letters_newest_first_without_retried(
    client: httpx.AsyncClient, ws_id: str, db: Any
) -> None:
    await make_workspace(client, ws_id)
    payload = {"workspace_id": ws_id, "session_id": "s1"}
    await seed(db, letter_id="old", ws=ws_id, payload=payload, created_at="2024-01-01T00:00:00Z")
    await seed(db, letter_id="new", ws=ws_id, payload=payload, created_at="2024-02-01T00:00:00Z")
    await seed(db, letter_id="done", ws=ws_id, payload=payload, retried_at="2024-03-01T00:00:00Z")
    await seed(db, letter_id="elsewhere", ws=f"{ws_id}-b", payload=payload)

    r = await client.get(url(ws_id))
    assert r.status_code == 200, r.text
    page = r.json()
    assert [d["id"] for d in page["items"]] == ["new", "old"]
    assert (page["total"], page["pages"]) == (2, 1)
    first = page["items"][0]
    assert set(first) == FIELDS
    assert (first["workspace_id"], first["session_id"], first["consumer"]) == (
        ws_id,
        "s1",
        "representation",
    )
    assert (first["event_type"], first["event_id"], first["error"], first["attempts"]) == (
        "message.created",
        "ev-new",
        "boom",
        5,
    )
    assert first["retried_at"] is None
    assert first["payload"] == payload
    assert datetime.fromisoformat(first["created_at"]) == datetime(2024, 2, 1, tzinfo=UTC)

    r = await client.get(url(ws_id), params={"include_retried": "true", "size": 1, "page": 3})
    assert [d["id"] for d in r.json()["items"]] == ["old"]
    assert (r.json()["total"], r.json()["pages"]) == (3, 3)


async def test_list_dead_letters_of_unknown_workspace_is_404(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    r = await client.get(url(ws_id))
    assert r.status_code == 404
    assert r.json() == {"detail": f"Workspace '{ws_id}' not found"}


async def test_retry_republishes_under_a_new_event_id(
    client: httpx.AsyncClient, infra: InfraEndpoints, ws_id: str, db: Any
) -> None:
    payload = await message_payload(client, ws_id)
    subject = f"{infra.prefix}.message.created.{ws_id}.s1"
    assert len(await read_events(infra, subject, expect=1)) == 1
    await seed(db, letter_id="dl1", ws=ws_id, payload=payload)

    r = await client.post(url(ws_id, "/dl1/retry"))
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "dl1"
    assert r.json()["retried_at"] is not None
    events = await read_events(infra, subject, expect=2)
    assert len(events) == 2
    replay = events[1].data
    assert replay["message_id"] == payload["message_id"]
    assert replay["event_id"] not in ("original-event", events[0].data["event_id"])
    assert (await client.get(url(ws_id))).json()["items"] == []
    row = await (
        await db.execute("select retried_at from dead_letters where id = 'dl1'")
    ).fetchone()
    assert row is not None and row[0] is not None

    again = await client.post(url(ws_id, "/dl1/retry"))
    assert again.status_code == 409
    assert again.json() == {"detail": "Dead letter 'dl1' was already retried"}


@pytest.mark.parametrize(
    ("event_type", "payload", "fragment"),
    [
        ("thing.exploded", {}, "holds an unknown event type 'thing.exploded'"),
        ("message.created", {"workspace_id": "w"}, "holds an invalid event"),
    ],
    ids=["unknown-type", "invalid-payload"],
)
async def test_retry_of_unreplayable_letter_is_409(
    client: httpx.AsyncClient,
    ws_id: str,
    db: Any,
    event_type: str,
    payload: dict[str, Any],
    fragment: str,
) -> None:
    await make_workspace(client, ws_id)
    await seed(db, letter_id="bad", ws=ws_id, payload=payload, event_type=event_type)
    r = await client.post(url(ws_id, "/bad/retry"))
    assert r.status_code == 409
    assert fragment in r.json()["detail"]
    row = await (
        await db.execute("select retried_at from dead_letters where id = 'bad'")
    ).fetchone()
    assert row == (None,)


async def test_retry_unknown_dead_letter_is_404(client: httpx.AsyncClient, ws_id: str) -> None:
    await make_workspace(client, ws_id)
    r = await client.post(url(ws_id, "/missing/retry"))
    assert r.status_code == 404
    assert r.json() == {"detail": "Dead letter 'missing' not found"}


async def test_retry_dead_letter_of_another_workspace_is_404(
    client: httpx.AsyncClient, ws_id: str, db: Any
) -> None:
    await make_workspace(client, ws_id)
    await seed(db, letter_id="theirs", ws=f"{ws_id}-b", payload={})
    r = await client.post(url(ws_id, "/theirs/retry"))
    assert r.status_code == 404
    assert r.json() == {"detail": "Dead letter 'theirs' not found"}


async def test_retry_in_unknown_workspace_is_404(client: httpx.AsyncClient, ws_id: str) -> None:
    r = await client.post(url(ws_id, "/missing/retry"))
    assert r.status_code == 404
    assert r.json() == {"detail": f"Workspace '{ws_id}' not found"}
