"""Conclusion routes: create, list (newest first), get, delete."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.conftest import InfraEndpoints
from tests.integration.ingest._routes_helpers import assert_422, make_session, read_events, ws_url


def url(ws: str, rest: str = "") -> str:
    return ws_url(ws, f"/conclusions{rest}")


async def _setup(client: httpx.AsyncClient, ws: str) -> None:
    await make_session(client, ws, "s1", peers={"alice": {}, "bob": {}})


async def _create(client: httpx.AsyncClient, ws: str, *items: dict[str, Any]) -> list[Any]:
    r = await client.post(url(ws), json={"conclusions": list(items)})
    assert r.status_code == 201, r.text
    return list(r.json())


async def test_create_conclusions_returns_a_bare_array_with_every_field(
    client: httpx.AsyncClient, infra: InfraEndpoints, ws_id: str, db: Any
) -> None:
    await _setup(client, ws_id)
    r = await client.post(
        url(ws_id),
        json={
            "conclusions": [
                {"content": "alice likes tea", "observer_id": "bob", "observed_id": "alice"},
                {
                    "content": "alice is a chemist",
                    "observer_id": "alice",
                    "observed_id": "alice",
                    "session_id": "s1",
                },
            ]
        },
    )
    assert r.status_code == 201, r.text
    first, second = r.json()
    assert set(first) == {
        "id",
        "content",
        "observer_id",
        "observed_id",
        "session_id",
        "level",
        "source_ids",
        "created_at",
    }
    assert (first["content"], first["observer_id"], first["observed_id"]) == (
        "alice likes tea",
        "bob",
        "alice",
    )
    assert (first["session_id"], first["level"], first["source_ids"]) == (None, "explicit", [])
    assert (second["session_id"], second["observer_id"]) == ("s1", "alice")
    assert datetime.fromisoformat(first["created_at"]).tzinfo is not None
    assert len(first["id"]) == 21
    row = await (
        await db.execute(
            "select content, observer_id, observed_id, session_id, level from conclusions "
            "where id = %s",
            (second["id"],),
        )
    ).fetchone()
    assert row == ("alice is a chemist", "alice", "alice", "s1", "explicit")
    [event] = await read_events(infra, f"{infra.prefix}.conclusions.created.{ws_id}", expect=1)
    assert event.data["conclusion_ids"] == [first["id"], second["id"]]


@pytest.mark.parametrize(
    ("item", "detail"),
    [
        (
            {"observer_id": "ghost", "observed_id": "alice"},
            "Peer 'ghost' not found in workspace '{ws}'",
        ),
        (
            {"observer_id": "alice", "observed_id": "ghost"},
            "Peer 'ghost' not found in workspace '{ws}'",
        ),
        (
            {"observer_id": "alice", "observed_id": "bob", "session_id": "nope"},
            "Session 'nope' not found in workspace '{ws}'",
        ),
    ],
    ids=["observer", "observed", "session"],
)
async def test_create_conclusion_with_unknown_reference_is_404(
    client: httpx.AsyncClient, ws_id: str, db: Any, item: dict[str, Any], detail: str
) -> None:
    await _setup(client, ws_id)
    r = await client.post(url(ws_id), json={"conclusions": [{"content": "c", **item}]})
    assert r.status_code == 404
    assert r.json() == {"detail": detail.format(ws=ws_id)}
    row = await (
        await db.execute("select count(*) from conclusions where workspace_id = %s", (ws_id,))
    ).fetchone()
    assert row == (0,)


async def test_create_conclusion_in_unknown_workspace_is_404(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    r = await client.post(
        url(ws_id),
        json={"conclusions": [{"content": "c", "observer_id": "a", "observed_id": "a"}]},
    )
    assert r.status_code == 404
    assert r.json() == {"detail": f"Workspace '{ws_id}' not found"}


_OK = {"content": "c", "observer_id": "alice", "observed_id": "bob"}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"conclusions": []}, "at least 1"),
        ({"conclusions": [_OK] * 101}, "at most 100"),
        ({"conclusions": [{**_OK, "content": ""}]}, "at least 1 character"),
        ({"conclusions": [{"content": "c", "observer_id": "alice"}]}, "Field required"),
        ({"conclusions": [{**_OK, "level": "deductive"}]}, "Extra inputs"),
        ({"conclusions": [{**_OK, "observed_id": "b c"}]}, "pattern"),
    ],
    ids=["empty", "too-many", "empty-content", "no-observed", "extra", "bad-id"],
)
async def test_create_conclusions_rejects_invalid_body(
    client: httpx.AsyncClient, ws_id: str, body: dict[str, Any], fragment: str
) -> None:
    await _setup(client, ws_id)
    assert_422(await client.post(url(ws_id), json=body), fragment)


async def test_list_conclusions_newest_first_reverse_and_filtered(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    await _setup(client, ws_id)
    ids = []
    for content, observer in (("first", "alice"), ("second", "bob"), ("third", "alice")):
        [c] = await _create(
            client, ws_id, {"content": content, "observer_id": observer, "observed_id": "bob"}
        )
        ids.append(c["id"])
    r = await client.post(url(ws_id, "/list"))
    assert r.status_code == 200, r.text
    assert [c["id"] for c in r.json()["items"]] == ids[::-1]
    assert (r.json()["total"], r.json()["pages"]) == (3, 1)
    r = await client.post(url(ws_id, "/list"), params={"reverse": "true"})
    assert [c["content"] for c in r.json()["items"]] == ["first", "second", "third"]
    r = await client.post(url(ws_id, "/list"), json={"filters": {"observer_id": "alice"}})
    assert [c["content"] for c in r.json()["items"]] == ["third", "first"]
    r = await client.post(
        url(ws_id, "/list"), json={"filters": {"id": {"in": [ids[0], ids[1]]}, "level": "explicit"}}
    )
    assert [c["content"] for c in r.json()["items"]] == ["second", "first"]


async def test_list_conclusions_rejects_bad_filter(client: httpx.AsyncClient, ws_id: str) -> None:
    await _setup(client, ws_id)
    assert_422(await client.post(url(ws_id, "/list"), json={"filters": {"score": 1}}), "score")


async def test_list_conclusions_unknown_workspace_is_404(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    r = await client.post(url(ws_id, "/list"))
    assert r.status_code == 404
    assert r.json() == {"detail": f"Workspace '{ws_id}' not found"}


async def test_get_conclusion_returns_it(client: httpx.AsyncClient, ws_id: str) -> None:
    await _setup(client, ws_id)
    [c] = await _create(client, ws_id, {**_OK, "session_id": "s1"})
    r = await client.get(url(ws_id, f"/{c['id']}"))
    assert r.status_code == 200, r.text
    assert r.json() == c


async def test_get_unknown_conclusion_is_404(client: httpx.AsyncClient, ws_id: str) -> None:
    await _setup(client, ws_id)
    r = await client.get(url(ws_id, "/missing"))
    assert r.status_code == 404
    assert r.json() == {"detail": "Conclusion 'missing' not found"}


async def test_get_conclusion_of_another_workspace_is_404(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    await _setup(client, ws_id)
    [c] = await _create(client, ws_id, _OK)
    other = f"{ws_id}-b"
    await make_session(client, other, "s1")
    r = await client.get(url(other, f"/{c['id']}"))
    assert r.status_code == 404
    assert r.json() == {"detail": f"Conclusion '{c['id']}' not found"}


async def test_delete_conclusion(
    client: httpx.AsyncClient, infra: InfraEndpoints, ws_id: str, db: Any
) -> None:
    await _setup(client, ws_id)
    keep, gone = await _create(client, ws_id, _OK, {**_OK, "content": "to delete"})
    r = await client.delete(url(ws_id, f"/{gone['id']}"))
    assert r.status_code == 204
    assert r.content == b""
    assert (await client.get(url(ws_id, f"/{gone['id']}"))).status_code == 404
    r = await client.post(url(ws_id, "/list"))
    assert [c["id"] for c in r.json()["items"]] == [keep["id"]]
    row = await (
        await db.execute("select count(*) from conclusions where id = %s", (gone["id"],))
    ).fetchone()
    assert row == (0,)
    [event] = await read_events(infra, f"{infra.prefix}.conclusion.deleted.{ws_id}", expect=1)
    assert event.data["conclusion_id"] == gone["id"]
    r = await client.delete(url(ws_id, f"/{gone['id']}"))
    assert r.status_code == 404
    assert r.json() == {"detail": f"Conclusion '{gone['id']}' not found"}


async def test_delete_conclusion_in_unknown_workspace_is_404(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    r = await client.delete(url(ws_id, "/missing"))
    assert r.status_code == 404
    assert r.json() == {"detail": f"Workspace '{ws_id}' not found"}
