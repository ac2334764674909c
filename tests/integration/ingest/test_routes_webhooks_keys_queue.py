"""Webhook, key, queue-status and schedule_dream routes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import JWT_SECRET, AppFactory, InfraEndpoints, bearer
from tests.integration.ingest._routes_helpers import (
    add_messages,
    assert_422,
    make_session,
    make_workspace,
    read_events,
    ws_url,
)

# -- webhooks --------------------------------------------------------------------------------


async def test_create_webhook_201_then_200(client: httpx.AsyncClient, ws_id: str, db: Any) -> None:
    await make_workspace(client, ws_id)
    r = await client.post(ws_url(ws_id, "/webhooks"), json={"url": "https://example.com/hook"})
    assert r.status_code == 201, r.text
    hook = r.json()
    assert set(hook) == {"id", "url", "workspace_id", "created_at"}
    assert (hook["url"], hook["workspace_id"]) == ("https://example.com/hook", ws_id)
    assert datetime.fromisoformat(hook["created_at"]).tzinfo is not None
    again = await client.post(ws_url(ws_id, "/webhooks"), json={"url": "https://example.com/hook"})
    assert again.status_code == 200
    assert again.json() == hook
    row = await (
        await db.execute("select count(*) from webhook_endpoints where workspace_id = %s", (ws_id,))
    ).fetchone()
    assert row == (1,)


async def test_webhook_url_is_stored_trimmed(client: httpx.AsyncClient, ws_id: str) -> None:
    await make_workspace(client, ws_id)
    r = await client.post(ws_url(ws_id, "/webhooks"), json={"url": "  https://e.com/x \n"})
    assert r.status_code == 201, r.text
    assert r.json()["url"] == "https://e.com/x"
    again = await client.post(ws_url(ws_id, "/webhooks"), json={"url": "https://e.com/x"})
    assert again.status_code == 200
    assert again.json()["id"] == r.json()["id"]


async def test_create_webhook_in_unknown_workspace_is_404(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    r = await client.post(ws_url(ws_id, "/webhooks"), json={"url": "https://example.com/h"})
    assert r.status_code == 404
    assert r.json() == {"detail": f"Workspace '{ws_id}' not found"}


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://127.0.0.1:8080/hook", "private, loopback or link-local"),
        ("http://10.1.2.3/hook", "private, loopback or link-local"),
        ("http://169.254.169.254/latest", "private, loopback or link-local"),
        ("http://[::1]/hook", "private, loopback or link-local"),
        ("http://localhost/hook", "is this machine"),
        ("http://api.localhost/hook", "is this machine"),
        ("ftp://example.com/hook", "must start with http:// or https://"),
        ("https:///nohost", "has no host"),
        ("https://user:pw@example.com/", "must not embed credentials"),
        ("https://example.com:99999/", "invalid port"),
        ("http://[zz/hook", "Webhook URL is malformed"),
    ],
)
async def test_create_webhook_refuses_bad_or_private_urls(
    client: httpx.AsyncClient, ws_id: str, url: str, fragment: str
) -> None:
    await make_workspace(client, ws_id)
    r = await client.post(ws_url(ws_id, "/webhooks"), json={"url": url})
    assert_422(r, fragment)


@pytest.mark.parametrize("body", [{}, {"url": ""}, {"url": "https://e.com", "secret": "x"}])
async def test_create_webhook_rejects_invalid_body(
    client: httpx.AsyncClient, ws_id: str, body: dict[str, Any]
) -> None:
    await make_workspace(client, ws_id)
    assert_422(await client.post(ws_url(ws_id, "/webhooks"), json=body))


@pytest.mark.reliability
async def test_private_webhook_urls_allowed_when_configured(
    app_factory: AppFactory, ws_id: str
) -> None:
    client = await app_factory(allow_private_webhook_urls=True)
    await make_workspace(client, ws_id)
    r = await client.post(ws_url(ws_id, "/webhooks"), json={"url": "http://127.0.0.1:9/hook"})
    assert r.status_code == 201, r.text
    assert r.json()["url"] == "http://127.0.0.1:9/hook"
    r = await client.post(ws_url(ws_id, "/webhooks"), json={"url": "ftp://127.0.0.1/"})
    assert_422(r, "must start with http")


async def test_webhook_limit_is_409_but_existing_urls_still_return_200(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    await make_workspace(client, ws_id)
    for i in range(10):
        r = await client.post(ws_url(ws_id, "/webhooks"), json={"url": f"https://e.com/{i}"})
        assert r.status_code == 201, r.text
    r = await client.post(ws_url(ws_id, "/webhooks"), json={"url": "https://e.com/11"})
    assert r.status_code == 409
    assert r.json() == {"detail": "A workspace has at most 10 webhooks; delete one first"}
    r = await client.post(ws_url(ws_id, "/webhooks"), json={"url": "https://e.com/3"})
    assert r.status_code == 200
    listed = (await client.get(ws_url(ws_id, "/webhooks"))).json()
    assert listed["total"] == 10


async def test_list_webhooks_in_creation_order(client: httpx.AsyncClient, ws_id: str) -> None:
    await make_workspace(client, ws_id)
    r = await client.get(ws_url(ws_id, "/webhooks"))
    assert r.status_code == 200, r.text
    assert (r.json()["items"], r.json()["total"], r.json()["pages"]) == ([], 0, 0)
    made = []
    for name in ("a", "b"):
        r = await client.post(ws_url(ws_id, "/webhooks"), json={"url": f"https://e.com/{name}"})
        made.append(r.json())
    r = await client.get(ws_url(ws_id, "/webhooks"))
    assert r.json() == {"items": made, "total": 2, "page": 1, "size": 2, "pages": 1}


async def test_list_webhooks_unknown_workspace_is_404(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    r = await client.get(ws_url(ws_id, "/webhooks"))
    assert r.status_code == 404
    assert r.json() == {"detail": f"Workspace '{ws_id}' not found"}


async def test_delete_webhook(client: httpx.AsyncClient, ws_id: str) -> None:
    await make_workspace(client, ws_id)
    keep = (await client.post(ws_url(ws_id, "/webhooks"), json={"url": "https://e.com/k"})).json()
    gone = (await client.post(ws_url(ws_id, "/webhooks"), json={"url": "https://e.com/g"})).json()
    r = await client.delete(ws_url(ws_id, f"/webhooks/{gone['id']}"))
    assert r.status_code == 204
    assert r.content == b""
    assert [h["id"] for h in (await client.get(ws_url(ws_id, "/webhooks"))).json()["items"]] == [
        keep["id"]
    ]
    r = await client.delete(ws_url(ws_id, f"/webhooks/{gone['id']}"))
    assert r.status_code == 404
    assert r.json() == {"detail": f"Webhook '{gone['id']}' not found"}


@pytest.mark.reliability
async def test_delete_webhook_of_another_workspace_is_404(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    await make_workspace(client, ws_id)
    other = f"{ws_id}-b"
    await make_workspace(client, other)
    hook = (await client.post(ws_url(ws_id, "/webhooks"), json={"url": "https://e.com/"})).json()
    r = await client.delete(ws_url(other, f"/webhooks/{hook['id']}"))
    assert r.status_code == 404
    assert len((await client.get(ws_url(ws_id, "/webhooks"))).json()["items"]) == 1


async def test_delete_webhook_in_unknown_workspace_is_404(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    r = await client.delete(ws_url(ws_id, "/webhooks/abc"))
    assert r.status_code == 404
    assert r.json() == {"detail": f"Workspace '{ws_id}' not found"}


async def test_webhook_test_is_queued_as_an_event(
    client: httpx.AsyncClient, infra: InfraEndpoints, ws_id: str
) -> None:
    await make_workspace(client, ws_id)
    r = await client.get(ws_url(ws_id, "/webhooks/test"))
    assert r.status_code == 202, r.text
    assert r.json() == {"status": "queued"}
    [event] = await read_events(infra, f"{infra.prefix}.webhook.test_requested.{ws_id}", expect=1)
    assert event.data["workspace_id"] == ws_id


async def test_webhook_test_unknown_workspace_is_404(client: httpx.AsyncClient, ws_id: str) -> None:
    r = await client.get(ws_url(ws_id, "/webhooks/test"))
    assert r.status_code == 404
    assert r.json() == {"detail": f"Workspace '{ws_id}' not found"}


# -- keys --------------------------------------------------------------------------------------


async def _mint(client: httpx.AsyncClient, **params: Any) -> str:
    r = await client.post("/v3/keys", params=params, headers=bearer(admin=True))
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"key"}
    return str(r.json()["key"])


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.reliability
async def test_workspace_key_reaches_its_workspace_only(
    auth_client: httpx.AsyncClient, ws_id: str
) -> None:
    key = await _mint(auth_client, workspace_id=ws_id)
    claims = jwt.decode(key, JWT_SECRET, algorithms=["HS256"])
    assert claims["w"] == ws_id and "ad" not in claims and "p" not in claims
    h = _auth(key)
    r = await auth_client.post("/v3/workspaces", json={"id": ws_id}, headers=h)
    assert r.status_code == 201, r.text
    r = await auth_client.post(ws_url(ws_id, "/sessions"), json={"id": "s1"}, headers=h)
    assert r.status_code == 201, r.text
    r = await auth_client.post("/v3/workspaces", json={"id": f"{ws_id}-x"}, headers=h)
    assert r.status_code == 403
    assert r.json() == {"detail": f"This key has no access to workspace '{ws_id}-x'"}
    r = await auth_client.post("/v3/workspaces/list", headers=h)
    assert r.status_code == 403
    r = await auth_client.post("/v3/keys", params={"workspace_id": ws_id}, headers=h)
    assert r.status_code == 403
    assert r.json() == {"detail": "This route needs an admin key"}


@pytest.mark.reliability
async def test_peer_key_reaches_its_peer_only(auth_client: httpx.AsyncClient, ws_id: str) -> None:
    admin = bearer(admin=True)
    r = await auth_client.post("/v3/workspaces", json={"id": ws_id}, headers=admin)
    assert r.status_code == 201, r.text
    r = await auth_client.post(
        ws_url(ws_id, "/sessions"),
        json={"id": "s1", "peers": {"alice": {}, "bob": {}}},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    key = await _mint(auth_client, workspace_id=ws_id, peer_id="alice")
    h = _auth(key)
    r = await auth_client.put(ws_url(ws_id, "/peers/alice"), json={"metadata": {"x": 1}}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["metadata"] == {"x": 1}
    r = await auth_client.get(ws_url(ws_id, "/sessions/s1/peers"), headers=h)  # member may read
    assert r.status_code == 200, r.text
    r = await auth_client.put(ws_url(ws_id, "/peers/bob"), json={"metadata": {}}, headers=h)
    assert r.status_code == 403
    assert r.json() == {"detail": "This key has no access to peer 'bob'"}
    r = await auth_client.post(ws_url(ws_id, "/sessions/list"), headers=h)
    assert r.status_code == 403


@pytest.mark.reliability
async def test_session_key_reaches_its_session_only(
    auth_client: httpx.AsyncClient, ws_id: str
) -> None:
    admin = bearer(admin=True)
    r = await auth_client.post("/v3/workspaces", json={"id": ws_id}, headers=admin)
    assert r.status_code == 201, r.text
    for s in ("s1", "s2"):
        r = await auth_client.post(ws_url(ws_id, "/sessions"), json={"id": s}, headers=admin)
        assert r.status_code == 201, r.text
    h = _auth(await _mint(auth_client, workspace_id=ws_id, session_id="s1"))
    body = {"messages": [{"peer_id": "alice", "content": "hi"}]}
    r = await auth_client.post(ws_url(ws_id, "/sessions/s1/messages"), json=body, headers=h)
    assert r.status_code == 201, r.text
    r = await auth_client.post(ws_url(ws_id, "/sessions/s2/messages"), json=body, headers=h)
    assert r.status_code == 403
    assert r.json() == {"detail": "This key has no access to session 's2'"}


@pytest.mark.reliability
async def test_expired_key_is_refused(auth_client: httpx.AsyncClient, ws_id: str) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    old = await _mint(auth_client, workspace_id=ws_id, expires_at=past)
    r = await auth_client.post("/v3/workspaces", json={"id": ws_id}, headers=_auth(old))
    assert r.status_code == 401
    assert r.json() == {"detail": "Token expired"}
    fresh = await _mint(auth_client, workspace_id=ws_id, expires_at=future)
    r = await auth_client.post("/v3/workspaces", json={"id": ws_id}, headers=_auth(fresh))
    assert r.status_code == 201, r.text


@pytest.mark.reliability
async def test_keys_route_needs_credentials(auth_client: httpx.AsyncClient, ws_id: str) -> None:
    r = await auth_client.post("/v3/keys", params={"workspace_id": ws_id})
    assert r.status_code == 401


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({}, "Name at least one scope: workspace_id, peer_id or session_id"),
        ({"peer_id": "p"}, "peer_id and session_id keys also need workspace_id"),
        ({"session_id": "s"}, "peer_id and session_id keys also need workspace_id"),
        (
            {"workspace_id": "w", "peer_id": "p", "session_id": "s"},
            "A key is scoped to a peer or a session, not both",
        ),
    ],
    ids=["no-scope", "peer-without-ws", "session-without-ws", "peer-and-session"],
)
async def test_keys_rejects_bad_scopes(
    auth_client: httpx.AsyncClient, params: dict[str, str], detail: str
) -> None:
    r = await auth_client.post("/v3/keys", params=params, headers=bearer(admin=True))
    assert r.status_code == 422
    assert r.json() == {"detail": detail}


@pytest.mark.parametrize(
    "params", [{"workspace_id": "bad id"}, {"workspace_id": "w", "expires_at": "tomorrow"}]
)
async def test_keys_rejects_malformed_params(
    auth_client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    assert_422(await auth_client.post("/v3/keys", params=params, headers=bearer(admin=True)))


# -- queue status ------------------------------------------------------------------------------

COUNTERS = (
    "total_work_units",
    "completed_work_units",
    "in_progress_work_units",
    "pending_work_units",
)


async def _queue_fixture(client: httpx.AsyncClient, ws: str) -> None:
    await make_session(client, ws, "s1", peers={"alice": {}})
    await make_session(client, ws, "s2", ensure_workspace=False)
    await add_messages(client, ws, "s1", ("alice", "m1"), ("alice", "m2"))
    await client.post(ws_url(ws, "/sessions/s1/peers"), json={"bob": {}})
    await add_messages(client, ws, "s1", ("bob", "m3"), ("alice", "m4"))
    await client.request("DELETE", ws_url(ws, "/sessions/s1/peers"), json=["bob"])
    await add_messages(client, ws, "s1", ("alice", "m5"))
    await add_messages(client, ws, "s2", ("carol", "n1"))


def _pending(n: int) -> dict[str, int]:
    return {
        "total_work_units": n,
        "completed_work_units": 0,
        "in_progress_work_units": 0,
        "pending_work_units": n,
    }


async def test_queue_status_shape_with_everything_pending(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    await _queue_fixture(client, ws_id)
    r = await client.get(ws_url(ws_id, "/queue/status"))
    assert r.status_code == 200, r.text
    assert r.json() == {
        **_pending(6),
        "dead_letter_work_units": 0,
        "sessions": {
            "s1": {"session_id": "s1", **_pending(5)},
            "s2": {"session_id": "s2", **_pending(1)},
        },
    }


@pytest.mark.parametrize(
    ("params", "per_session"),
    [
        ({"session_id": "s1"}, {"s1": 5}),
        ({"session_id": "s2"}, {"s2": 1}),
        ({"sender_id": "alice"}, {"s1": 4}),
        ({"sender_id": "carol"}, {"s2": 1}),
        ({"observer_id": "bob"}, {"s1": 2}),  # joined after m2, left after m4
        ({"observer_id": "alice"}, {"s1": 5}),
        ({"observer_id": "carol"}, {"s2": 1}),
        ({"observer_id": "alice", "sender_id": "bob"}, {"s1": 1}),
        ({"session_id": "s2", "sender_id": "alice"}, {}),
        ({"observer_id": "nobody"}, {}),
    ],
    ids=str,
)
async def test_queue_status_filters_count_the_right_messages(
    client: httpx.AsyncClient, ws_id: str, params: dict[str, str], per_session: dict[str, int]
) -> None:
    await _queue_fixture(client, ws_id)
    r = await client.get(ws_url(ws_id, "/queue/status"), params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert {k: body[k] for k in COUNTERS} == _pending(sum(per_session.values()))
    assert body["sessions"] == {s: {"session_id": s, **_pending(n)} for s, n in per_session.items()}


async def test_queue_status_of_empty_workspace_is_all_zero(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    await make_workspace(client, ws_id)
    r = await client.get(ws_url(ws_id, "/queue/status"))
    assert r.json() == {**_pending(0), "dead_letter_work_units": 0, "sessions": {}}


async def test_queue_status_unknown_workspace_is_404(client: httpx.AsyncClient, ws_id: str) -> None:
    r = await client.get(ws_url(ws_id, "/queue/status"))
    assert r.status_code == 404
    assert r.json() == {"detail": f"Workspace '{ws_id}' not found"}


async def test_queue_status_unknown_session_is_404(client: httpx.AsyncClient, ws_id: str) -> None:
    await make_workspace(client, ws_id)
    r = await client.get(ws_url(ws_id, "/queue/status"), params={"session_id": "nope"})
    assert r.status_code == 404
    assert r.json() == {"detail": f"Session 'nope' not found in workspace '{ws_id}'"}


async def test_queue_status_rejects_malformed_ids(client: httpx.AsyncClient, ws_id: str) -> None:
    await make_workspace(client, ws_id)
    r = await client.get(ws_url(ws_id, "/queue/status"), params={"observer_id": "a b"})
    assert_422(r, "observer_id")


# -- schedule_dream ----------------------------------------------------------------------------


async def test_schedule_dream_is_204_and_published(
    client: httpx.AsyncClient, infra: InfraEndpoints, ws_id: str
) -> None:
    await make_session(client, ws_id, "s1", peers={"alice": {}, "bob": {}})
    # What the Honcho SDK sends.
    r = await client.post(
        ws_url(ws_id, "/schedule_dream"),
        json={"observer": "alice", "session_id": None, "dream_type": "omni"},
    )
    assert r.status_code == 204, r.text
    assert r.content == b""
    r = await client.post(
        ws_url(ws_id, "/schedule_dream"),
        json={"observer": "alice", "observed": "bob", "session_id": "s1"},
    )
    assert r.status_code == 204, r.text
    events = await read_events(infra, f"{infra.prefix}.dream.scheduled.{ws_id}", expect=2)
    got = [
        (e.data["observer_id"], e.data["observed_id"], e.data["session_id"], e.data["dream_type"])
        for e in events
    ]
    assert got == [("alice", "alice", None, "omni"), ("alice", "bob", "s1", "omni")]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"observer": "ghost"}, "Peer 'ghost' not found in workspace '{ws}'"),
        ({"observer": "alice", "observed": "ghost"}, "Peer 'ghost' not found in workspace '{ws}'"),
        (
            {"observer": "alice", "session_id": "nope"},
            "Session 'nope' not found in workspace '{ws}'",
        ),
    ],
    ids=["observer", "observed", "session"],
)
async def test_schedule_dream_unknown_reference_is_404(
    client: httpx.AsyncClient, ws_id: str, body: dict[str, Any], detail: str
) -> None:
    await make_session(client, ws_id, "s1", peers={"alice": {}})
    r = await client.post(ws_url(ws_id, "/schedule_dream"), json=body)
    assert r.status_code == 404
    assert r.json() == {"detail": detail.format(ws=ws_id)}


@pytest.mark.parametrize(
    "body", [{}, {"observer": "alice", "dream_type": "nightmare"}, {"observer": "alice", "x": 1}]
)
async def test_schedule_dream_rejects_invalid_body(
    client: httpx.AsyncClient, ws_id: str, body: dict[str, Any]
) -> None:
    await make_session(client, ws_id, "s1", peers={"alice": {}})
    assert_422(await client.post(ws_url(ws_id, "/schedule_dream"), json=body))


async def test_schedule_dream_unknown_workspace_is_404(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    r = await client.post(ws_url(ws_id, "/schedule_dream"), json={"observer": "alice"})
    assert r.status_code == 404
    assert r.json() == {"detail": f"Workspace '{ws_id}' not found"}
