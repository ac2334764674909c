"""Requests the schemathesis fuzzer found answering 500, kept as exact regressions.

``created_at`` offsets: ISO 8601 and Python accept UTC offsets up to ±23:59, Postgres only up
to ±15:59. ``POST …/messages`` with ``"created_at": "5374-07-18T22:45:47+17:03"`` reached
Postgres as written and failed ("time zone displacement out of range"): 500. Times are now
converted to UTC on input (the instant is kept), in JSON bodies and in upload forms alike.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx


async def _session(client: httpx.AsyncClient, ws_id: str) -> str:
    assert (await client.post("/v3/workspaces", json={"id": ws_id})).status_code == 201
    body = {"id": "s1", "peers": {"alice": {}}}
    assert (await client.post(f"/v3/workspaces/{ws_id}/sessions", json=body)).status_code == 201
    return f"/v3/workspaces/{ws_id}/sessions/s1/messages"


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_offsets_postgres_cannot_store_are_converted_to_utc(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    messages = await _session(client, ws_id)
    sent = ["5374-07-18T22:45:47+17:03", "1452-03-13T02:19:13.254-22:30", "2024-01-01T00:00-23:59"]
    response = await client.post(
        messages,
        json={"messages": [{"peer_id": "alice", "content": "x", "created_at": t} for t in sent]},
    )
    assert response.status_code == 201, response.text
    got = [_instant(m["created_at"]) for m in response.json()]
    assert got == [
        datetime(5374, 7, 18, 5, 42, 47, tzinfo=UTC),
        datetime(1452, 3, 14, 0, 49, 13, 254000, tzinfo=UTC),
        datetime(2024, 1, 1, 23, 59, tzinfo=UTC),
    ]
    # Stored as the same instants (read back, not echoed).
    listed = (await client.post(f"{messages}/list", json={})).json()["items"]
    assert sorted(_instant(m["created_at"]) for m in listed) == sorted(got)


async def test_upload_created_at_offsets_are_converted_to_utc(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    messages = await _session(client, ws_id)
    response = await client.post(
        f"{messages}/upload",
        files={"file": ("notes.txt", b"I play the cello on Sundays.", "text/plain")},
        data={"peer_id": "alice", "created_at": "2024-01-01T00:00:00+17:03"},
    )
    assert response.status_code == 201, response.text
    assert [_instant(m["created_at"]) for m in response.json()] == [
        datetime(2023, 12, 31, 6, 57, tzinfo=UTC)
    ]


async def test_offsets_that_leave_years_1_to_9999_are_refused(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    messages = await _session(client, ws_id)
    for created_at in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:00-01:00"):
        response = await client.post(
            messages,
            json={"messages": [{"peer_id": "alice", "content": "x", "created_at": created_at}]},
        )
        assert response.status_code == 422, response.text
        assert "outside years 1-9999" in response.text
        upload = await client.post(
            f"{messages}/upload",
            files={"file": ("notes.txt", b"hello", "text/plain")},
            data={"peer_id": "alice", "created_at": created_at},
        )
        assert upload.status_code == 422, upload.text
        assert upload.json()["detail"] == (
            f"created_at '{created_at}' is outside years 1-9999 once converted to UTC"
        )
    listed = (await client.post(f"{messages}/list", json={})).json()
    assert listed["total"] == 0
