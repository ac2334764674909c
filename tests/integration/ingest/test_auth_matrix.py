"""Who reaches what with auth on: every ingest route against every kind of key.

The world (built once per test by :func:`build_world`): workspace ``W`` with peers ``alice``
and ``bob``, session ``s1`` (alice, bob) and ``s2`` (bob only), one message in each, one
conclusion and one webhook; a second workspace ``W2`` with its own ``alice`` in ``s1``.

Key kinds: ``admin``; ``workspace`` (W); ``other_workspace`` (W2); ``peer`` (W, alice: a
member of s1, not of s2); ``session`` (W, s1). Each :class:`Route` names the kinds allowed;
every other kind must get 403 with a detail saying why and leave the database untouched.
Invalid credentials (expired, forged, ``alg: none``, tampered, malformed, missing) get 401 on
every route.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import psycopg
import pytest
from psycopg import sql

from tests.conftest import JWT_SECRET, bearer

pytestmark = pytest.mark.reliability  # part of make test-reliability (issue 8)

Json = Any
KINDS = ("admin", "workspace", "other_workspace", "peer", "session")
ADMIN_ONLY = frozenset({"admin"})
WS = frozenset({"admin", "workspace"})
W2 = frozenset({"admin", "other_workspace"})
SESSION_WRITE = frozenset({"admin", "workspace", "session"})
SESSION_READ = frozenset({"admin", "workspace", "session", "peer"})
PEER_SELF = frozenset({"admin", "workspace", "peer"})
MEMBER = frozenset({"admin", "workspace", "session", "peer"})


# -- the world -----------------------------------------------------------------------------
@dataclass(frozen=True)
class World:
    w: str
    w2: str
    m1: str  # message in W/s1 (by alice)
    m2: str  # message in W/s2 (by bob)
    c1: str  # conclusion in W
    hook: str  # webhook in W

    def fill(self, value: Json) -> Json:
        """Substitute ``{w}``, ``{m1}``… in a path or (recursively) in a JSON body."""
        names = {k: getattr(self, k) for k in ("w", "w2", "m1", "m2", "c1", "hook")}
        if isinstance(value, str):
            return value.format(**names)
        if isinstance(value, dict):
            return {self.fill(k): self.fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        return value

    def headers(self, kind: str) -> dict[str, str]:
        if kind == "admin":
            return bearer(admin=True)
        if kind == "workspace":
            return bearer(workspace_id=self.w)
        if kind == "other_workspace":
            return bearer(workspace_id=self.w2)
        if kind == "peer":
            return bearer(workspace_id=self.w, peer_id="alice")
        if kind == "session":
            return bearer(workspace_id=self.w, session_id="s1")
        raise AssertionError(kind)


async def _ok(client: httpx.AsyncClient, path: str, body: Json, want: int = 201) -> Json:
    r = await client.post(path, json=body, headers=bearer(admin=True))
    assert r.status_code == want, r.text
    return r.json()


async def build_world(
    client: httpx.AsyncClient,
    ws_id: str,
    *,
    second_workspace: bool = True,
    conclusion: bool = True,
    webhook: bool = True,
) -> World:
    """Create the world described in the module docstring; the optional parts only when asked
    for (fewer calls per test). Independent calls run together."""
    w, w2 = ws_id, f"{ws_id}-two"
    ws = f"/v3/workspaces/{w}"

    async def message(session_id: str, peer_id: str, content: str) -> Json:
        body = {"messages": [{"content": content, "peer_id": peer_id}]}
        [stored] = await _ok(client, f"{ws}/sessions/{session_id}/messages", body)
        return stored

    async def s2_and_m2() -> Json:
        await _ok(client, f"{ws}/sessions", {"id": "s2", "peers": {"bob": {}}})
        return await message("s2", "bob", "bob alone")

    async def other_workspace() -> None:
        await _ok(client, "/v3/workspaces", {"id": w2})
        await _ok(client, f"/v3/workspaces/{w2}/sessions", {"id": "s1", "peers": {"alice": {}}})

    async def add_conclusion() -> str:
        fact = {"content": "bob likes tea", "observer_id": "alice", "observed_id": "bob"}
        [stored] = await _ok(client, f"{ws}/conclusions", {"conclusions": [fact]})
        return str(stored["id"])

    async def add_webhook() -> str:
        stored = await _ok(client, f"{ws}/webhooks", {"url": "https://hooks.example.com/a"})
        return str(stored["id"])

    async def nothing() -> str:
        return ""

    await _ok(client, "/v3/workspaces", {"id": w})
    await _ok(client, f"{ws}/sessions", {"id": "s1", "peers": {"alice": {}, "bob": {}}})
    m1, m2, c1, hook, _ = await asyncio.gather(
        message("s1", "alice", "hello from alice"),
        s2_and_m2(),
        add_conclusion() if conclusion else nothing(),
        add_webhook() if webhook else nothing(),
        other_workspace() if second_workspace else nothing(),
    )
    return World(w=w, w2=w2, m1=m1["id"], m2=m2["id"], c1=c1, hook=hook)


async def world_for(client: httpx.AsyncClient, ws_id: str, route: Route) -> World:
    """The world with the parts ``route`` uses."""
    return await build_world(
        client,
        ws_id,
        second_workspace=route.ws == "w2" or route.id == "ws.list",
        conclusion="/conclusions" in route.path,
        webhook="/webhooks" in route.path,
    )


#: What the ingest routes store. Tables that background workers fill (summaries, peer cards,
#: derivation status, dead letters, vectors) are left out so a worker can never make a check
#: here flaky; the outbox counts rows only, because the relay stamps them as it publishes.
INGEST_TABLES = (
    "workspaces",
    "peers",
    "sessions",
    "session_peers",
    "membership_windows",
    "messages",
    "conclusions",
    "webhook_endpoints",
)
_ROWS_MD5 = sql.SQL(
    "(select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from {} t)"
)
DIGEST_SQL = sql.SQL("select (select count(*) from outbox), {}").format(
    sql.SQL(", ").join(_ROWS_MD5.format(sql.Identifier(name)) for name in INGEST_TABLES)
)


async def db_digest(db: psycopg.AsyncConnection[Any]) -> tuple[Any, ...]:
    """A fingerprint of every row the ingest routes store, and of the outbox's size."""
    row = await (await db.execute(DIGEST_SQL)).fetchone()
    assert row is not None
    return tuple(row)


# -- the routes ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    """One call. ``guard`` names the rule that decides it (see :func:`denial`): ``admin``,
    ``member`` (any key of the workspace), ``workspace`` (workspace-wide), ``peer:<id>``,
    ``session:<id>:r`` / ``session:<id>:w``. ``ws`` is ``w`` or ``w2``, the workspace in the
    path. ``mutates``: an allowed call changes stored state (a denied one never may)."""

    id: str
    method: str
    path: str
    allowed: frozenset[str]
    ok: int
    guard: str
    ws: str = "w"
    json: Json = None
    params: dict[str, str] | None = None
    upload: bool = False
    mutates: bool = False
    check: Callable[[Json, World], bool] | None = field(default=None, compare=False)


def _ids(body: Json) -> list[str]:
    return [item["id"] for item in body["items"]]


B = "/v3/workspaces/{w}"
S1, S2 = f"{B}/sessions/s1", f"{B}/sessions/s2"

# fmt: off
ROUTES: list[Route] = [
    # workspaces
    Route("ws.get_or_create", "POST", "/v3/workspaces", MEMBER, 200, "member",
          json={"id": "{w}"}, check=lambda b, w: b["id"] == w.w),
    Route("ws.list", "POST", "/v3/workspaces/list", ADMIN_ONLY, 200, "admin",
          check=lambda b, w: {w.w, w.w2} <= set(_ids(b))),
    Route("ws.update", "PUT", B, WS, 200, "workspace", json={"metadata": {"k": "v"}},
          mutates=True, check=lambda b, w: b["metadata"] == {"k": "v"}),
    # W has active sessions, so deleting it is a 409: the key got past auth, nothing changed.
    Route("ws.delete", "DELETE", B, WS, 409, "workspace"),
    Route("ws.queue_status", "GET", f"{B}/queue/status", WS, 200, "workspace"),
    Route("ws.queue_status.s1", "GET", f"{B}/queue/status", SESSION_READ, 200, "session:s1:r",
          params={"session_id": "s1"}),
    Route("ws.queue_status.s2", "GET", f"{B}/queue/status", WS, 200, "session:s2:r",
          params={"session_id": "s2"}),
    Route("ws.schedule_dream", "POST", f"{B}/schedule_dream", WS, 204, "workspace",
          json={"observer": "alice", "observed": "bob"}, mutates=True),
    Route("ws.dead_letters", "GET", f"{B}/queue/dead_letters", WS, 200, "workspace",
          check=lambda b, w: b["items"] == []),
    # No letter to retry: a 404 shows the key got past auth.
    Route("ws.dead_letter.retry", "POST", f"{B}/queue/dead_letters/nope/retry", WS, 404,
          "workspace"),
    # peers
    Route("peer.get_or_create.self", "POST", f"{B}/peers", PEER_SELF, 200, "peer:alice",
          json={"id": "alice"}, check=lambda b, w: b["id"] == "alice"),
    Route("peer.get_or_create.other", "POST", f"{B}/peers", WS, 200, "peer:bob",
          json={"id": "bob"}),
    Route("peer.get_or_create.new", "POST", f"{B}/peers", WS, 201, "peer:dave",
          json={"id": "dave"}, mutates=True),
    Route("peer.list", "POST", f"{B}/peers/list", WS, 200, "workspace",
          check=lambda b, w: sorted(_ids(b)) == ["alice", "bob"]),
    Route("peer.update.self", "PUT", f"{B}/peers/alice", PEER_SELF, 200, "peer:alice",
          json={"metadata": {"mood": "good"}}, mutates=True,
          check=lambda b, w: b["metadata"] == {"mood": "good"}),
    Route("peer.update.other", "PUT", f"{B}/peers/bob", WS, 200, "peer:bob",
          json={"metadata": {"mood": "bad"}}, mutates=True),
    Route("peer.sessions.self", "POST", f"{B}/peers/alice/sessions", PEER_SELF, 200,
          "peer:alice", check=lambda b, w: _ids(b) == ["s1"]),
    Route("peer.sessions.other", "POST", f"{B}/peers/bob/sessions", WS, 200, "peer:bob",
          check=lambda b, w: sorted(_ids(b)) == ["s1", "s2"]),
    # sessions (get-or-create is a read for a member's peer key, a write for everyone else)
    Route("session.get_or_create.s1", "POST", f"{B}/sessions", MEMBER, 200, "session:s1:r",
          json={"id": "s1"}, check=lambda b, w: b["id"] == "s1"),
    Route("session.get_or_create.s2", "POST", f"{B}/sessions", WS, 200, "session:s2:r",
          json={"id": "s2"}),
    Route("session.get_or_create.new", "POST", f"{B}/sessions", WS, 201, "session:s3:r",
          json={"id": "s3"}, mutates=True),
    Route("session.list", "POST", f"{B}/sessions/list", WS, 200, "workspace",
          check=lambda b, w: sorted(_ids(b)) == ["s1", "s2"]),
    Route("session.update.s1", "PUT", S1, SESSION_WRITE, 200, "session:s1:w",
          json={"metadata": {"topic": "x"}}, mutates=True),
    Route("session.update.s2", "PUT", S2, WS, 200, "session:s2:w",
          json={"metadata": {"topic": "y"}}, mutates=True),
    Route("session.delete.s1", "DELETE", S1, SESSION_WRITE, 204, "session:s1:w", mutates=True),
    Route("session.delete.s2", "DELETE", S2, WS, 204, "session:s2:w", mutates=True),
    # Cloning creates another session, so it is a workspace-wide route.
    Route("session.clone.s1", "POST", f"{S1}/clone", WS, 201, "workspace", mutates=True),
    Route("session.peers.add.s1", "POST", f"{S1}/peers", SESSION_WRITE, 200, "session:s1:w",
          json={"carol": {}}, mutates=True),
    Route("session.peers.add.s2", "POST", f"{S2}/peers", WS, 200, "session:s2:w",
          json={"alice": {}}, mutates=True),
    Route("session.peers.set.s1", "PUT", f"{S1}/peers", SESSION_WRITE, 200, "session:s1:w",
          json={"alice": {}}, mutates=True),
    Route("session.peers.remove.s1", "DELETE", f"{S1}/peers", SESSION_WRITE, 200,
          "session:s1:w", json=["bob"], mutates=True),
    Route("session.peers.get.s1", "GET", f"{S1}/peers", SESSION_READ, 200, "session:s1:r",
          check=lambda b, w: sorted(_ids(b)) == ["alice", "bob"]),
    Route("session.peers.get.s2", "GET", f"{S2}/peers", WS, 200, "session:s2:r",
          check=lambda b, w: _ids(b) == ["bob"]),
    Route("session.peer_config.get.s1", "GET", f"{S1}/peers/alice/config", SESSION_READ, 200,
          "session:s1:r"),
    Route("session.peer_config.get.s2", "GET", f"{S2}/peers/bob/config", WS, 200,
          "session:s2:r"),
    Route("session.peer_config.set.s1", "PUT", f"{S1}/peers/alice/config", SESSION_WRITE, 200,
          "session:s1:w", json={"observe_me": False}, mutates=True,
          check=lambda b, w: b["observe_me"] is False),
    # messages
    Route("message.create.s1", "POST", f"{S1}/messages", SESSION_WRITE, 201, "session:s1:w",
          json={"messages": [{"content": "more", "peer_id": "alice"}]}, mutates=True),
    Route("message.create.s2", "POST", f"{S2}/messages", WS, 201, "session:s2:w",
          json={"messages": [{"content": "more", "peer_id": "bob"}]}, mutates=True),
    Route("message.upload.s1", "POST", f"{S1}/messages/upload", SESSION_WRITE, 201,
          "session:s1:w", upload=True, mutates=True),
    Route("message.list.s1", "POST", f"{S1}/messages/list", SESSION_READ, 200, "session:s1:r",
          check=lambda b, w: _ids(b) == [w.m1]),
    Route("message.list.s2", "POST", f"{S2}/messages/list", WS, 200, "session:s2:r",
          check=lambda b, w: _ids(b) == [w.m2]),
    Route("message.get.s1", "GET", f"{S1}/messages/{{m1}}", SESSION_READ, 200, "session:s1:r",
          check=lambda b, w: b["content"] == "hello from alice"),
    Route("message.get.s2", "GET", f"{S2}/messages/{{m2}}", WS, 200, "session:s2:r",
          check=lambda b, w: b["content"] == "bob alone"),
    Route("message.update.s1", "PUT", f"{S1}/messages/{{m1}}", SESSION_WRITE, 200,
          "session:s1:w", json={"metadata": {"edited": True}}, mutates=True),
    # conclusions
    Route("conclusion.create", "POST", f"{B}/conclusions", WS, 201, "workspace", mutates=True,
          json={"conclusions": [{"content": "c", "observer_id": "bob", "observed_id": "alice"}]}),
    Route("conclusion.list", "POST", f"{B}/conclusions/list", WS, 200, "workspace",
          check=lambda b, w: _ids(b) == [w.c1]),
    Route("conclusion.get", "GET", f"{B}/conclusions/{{c1}}", WS, 200, "workspace",
          check=lambda b, w: b["content"] == "bob likes tea"),
    Route("conclusion.delete", "DELETE", f"{B}/conclusions/{{c1}}", WS, 204, "workspace",
          mutates=True),
    # webhooks
    Route("webhook.create", "POST", f"{B}/webhooks", WS, 201, "workspace",
          json={"url": "https://hooks.example.com/b"}, mutates=True),
    Route("webhook.list", "GET", f"{B}/webhooks", WS, 200, "workspace",
          check=lambda b, w: _ids(b) == [w.hook]),
    Route("webhook.test", "GET", f"{B}/webhooks/test", WS, 202, "workspace", mutates=True),
    Route("webhook.delete", "DELETE", f"{B}/webhooks/{{hook}}", WS, 204, "workspace",
          mutates=True),
    # keys
    Route("keys.create", "POST", "/v3/keys", ADMIN_ONLY, 200, "admin",
          params={"workspace_id": "{w}"}, check=lambda b, w: b["key"].count(".") == 2),
    # the second workspace: reached by its own key, by no key of W
    Route("w2.get_or_create", "POST", "/v3/workspaces", W2, 200, "member", ws="w2",
          json={"id": "{w2}"}),
    Route("w2.peer.list", "POST", "/v3/workspaces/{w2}/peers/list", W2, 200, "workspace",
          ws="w2", check=lambda b, w: _ids(b) == ["alice"]),
    Route("w2.peer.update", "PUT", "/v3/workspaces/{w2}/peers/alice", W2, 200, "peer:alice",
          ws="w2", json={"metadata": {"w2": True}}, mutates=True),
    Route("w2.message.list", "POST", "/v3/workspaces/{w2}/sessions/s1/messages/list", W2, 200,
          "session:s1:r", ws="w2", check=lambda b, w: b["items"] == []),
    Route("w2.message.create", "POST", "/v3/workspaces/{w2}/sessions/s1/messages", W2, 201,
          "session:s1:w", ws="w2", json={"messages": [{"content": "x", "peer_id": "alice"}]},
          mutates=True),
]
# fmt: on


def denial(route: Route, kind: str, world: World) -> str:
    """The 403 detail a kind not allowed on ``route`` must get."""
    if route.guard == "admin":
        return "This route needs an admin key"
    own_ws = world.w2 if kind == "other_workspace" else world.w
    route_ws = world.w2 if route.ws == "w2" else world.w
    if own_ws != route_ws:
        return f"This key has no access to workspace '{route_ws}'"
    if route.guard == "workspace":
        return f"This {kind}-scoped key cannot use workspace-wide routes; use a workspace key"
    rule, _, rest = route.guard.partition(":")
    if rule == "peer":
        return f"This key has no access to peer '{rest}'"
    if rule == "session":
        session_id, _, mode = rest.partition(":")
        if kind == "session":
            return f"This key has no access to session '{session_id}'"
        if mode == "w":
            return "A peer-scoped key can read sessions but not change them"
        return f"Peer 'alice' is not a member of session '{session_id}'"
    raise AssertionError(f"no denial rule for {route.id} / {kind}")


async def call(
    client: httpx.AsyncClient, route: Route, world: World, headers: dict[str, str]
) -> httpx.Response:
    kwargs: dict[str, Any] = {"headers": headers}
    if route.params is not None:
        kwargs["params"] = world.fill(route.params)
    if route.upload:
        kwargs["files"] = {"file": ("notes.txt", b"uploaded notes", "text/plain")}
        kwargs["data"] = {"peer_id": "alice"}
    elif route.json is not None:
        kwargs["json"] = world.fill(route.json)
    return await client.request(route.method, world.fill(route.path), **kwargs)


async def expect(
    client: httpx.AsyncClient, route: Route, world: World, kind: str
) -> list[tuple[Any, ...]]:
    """Call ``route`` as ``kind``; the ways the answer differs from the matrix (none: [])."""
    r = await call(client, route, world, world.headers(kind))
    if kind not in route.allowed:
        want = {"detail": denial(route, kind, world)}
        if r.status_code != 403 or r.json() != want:
            return [(kind, r.status_code, r.text, "want 403", want)]
        return []
    if r.status_code != route.ok:
        return [(kind, r.status_code, r.text, f"want {route.ok}")]
    if route.check is not None and not route.check(r.json(), world):
        return [(kind, r.status_code, r.text, "unexpected body")]
    return []


READS = [pytest.param(route, id=route.id) for route in ROUTES if not route.mutates]
WRITES = [pytest.param(route, id=route.id) for route in ROUTES if route.mutates]
WRITES_ALLOWED = [
    pytest.param(route, kind, id=f"{route.id}-{kind}")
    for route in ROUTES
    if route.mutates
    for kind in KINDS
    if kind in route.allowed
]


@pytest.mark.parametrize("route", READS)
async def test_read_route_answers_each_kind_as_the_matrix_says(
    auth_client: httpx.AsyncClient, db: psycopg.AsyncConnection[Any], ws_id: str, route: Route
) -> None:
    """Routes that change nothing: every kind, one after the other on one world, which must
    stay as it was."""
    world = await world_for(auth_client, ws_id, route)
    before = await db_digest(db)
    wrong = []
    for kind in KINDS:
        wrong += await expect(auth_client, route, world, kind)
        if await db_digest(db) != before:
            wrong.append((kind, "changed stored state"))
    assert wrong == []


@pytest.mark.parametrize("route", WRITES)
async def test_write_route_refuses_other_kinds_and_writes_nothing(
    auth_client: httpx.AsyncClient, db: psycopg.AsyncConnection[Any], ws_id: str, route: Route
) -> None:
    world = await world_for(auth_client, ws_id, route)
    before = await db_digest(db)
    wrong = []
    for kind in (k for k in KINDS if k not in route.allowed):
        wrong += await expect(auth_client, route, world, kind)
        if await db_digest(db) != before:
            wrong.append((kind, "a refused write changed stored state"))
    assert wrong == []


@pytest.mark.parametrize(("route", "kind"), WRITES_ALLOWED)
async def test_write_route_accepts_allowed_kind(
    auth_client: httpx.AsyncClient,
    db: psycopg.AsyncConnection[Any],
    ws_id: str,
    route: Route,
    kind: str,
) -> None:
    world = await world_for(auth_client, ws_id, route)
    before = await db_digest(db)
    assert await expect(auth_client, route, world, kind) == []
    assert await db_digest(db) != before, "an allowed write changed nothing"


def test_matrix_covers_every_ingest_route() -> None:
    """Every route of the ingest router is called by the matrix (a new route must be added)."""
    from fastapi.routing import APIRoute

    from services.ingest.endpoints import router

    world = World(w="W", w2="W2", m1="M1", m2="M2", c1="C1", hook="H1")
    missing = [
        (method, r.path)
        for r in router.routes
        if isinstance(r, APIRoute)
        for method in r.methods
        if not any(c.method == method and r.path_regex.match(world.fill(c.path)) for c in ROUTES)
    ]
    assert missing == []


# -- invalid credentials: 401 on every route -----------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(claims: dict[str, Any], secret: str = JWT_SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def unsigned(claims: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def tampered(token: str, **changes: Any) -> str:
    """The token with its payload edited after signing (signature kept)."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


PAST = datetime.now(UTC) - timedelta(minutes=5)
ANOTHER_SECRET = "another-secret-" + "y" * 40
BAD_SIGNATURE = "Invalid token: Signature verification failed"
MISSING = "Missing Authorization header (expected 'Bearer <key>')"
MALFORMED = "Malformed Authorization header (expected 'Bearer <key>')"

#: kind -> (Authorization header value or None for no header, expected 401 detail)
INVALID: dict[str, tuple[Callable[[World], str | None], str]] = {
    "expired_workspace": (
        lambda w: bearer(workspace_id=w.w, expires_at=PAST)["Authorization"],
        "Token expired",
    ),
    "expired_admin": (
        lambda w: bearer(admin=True, expires_at=PAST)["Authorization"],
        "Token expired",
    ),
    "expired_iso_string": (
        lambda w: "Bearer " + signed({"w": w.w, "exp": PAST.isoformat()}),
        "Token expired",
    ),
    "wrong_signature": (
        lambda w: "Bearer " + signed({"ad": True}, ANOTHER_SECRET),
        BAD_SIGNATURE,
    ),
    "alg_none": (
        lambda w: "Bearer " + unsigned({"ad": True}),
        "Invalid token: The specified alg value is not allowed",
    ),
    "tampered_workspace": (
        lambda w: "Bearer " + tampered(signed({"w": w.w2}), w=w.w),
        BAD_SIGNATURE,
    ),
    "tampered_to_admin": (
        lambda w: "Bearer " + tampered(signed({"w": w.w, "p": "alice"}), ad=True),
        BAD_SIGNATURE,
    ),
    "no_scope": (
        lambda w: "Bearer " + signed({"t": "x"}),
        "Invalid token: it grants no scope (no 'ad' or 'w' claim)",
    ),
    "no_bearer_prefix": (lambda w: signed({"ad": True}), MALFORMED),
    "basic_scheme": (lambda w: "Basic dXNlcjpwYXNz", MALFORMED),
    "bearer_without_token": (lambda w: "Bearer ", MALFORMED),
    "empty": (lambda w: "", MISSING),
    "garbage": (lambda w: "Bearer not-a-jwt", "Invalid token: Not enough segments"),
    "missing": (lambda w: None, MISSING),
}


@pytest.mark.parametrize("credential", list(INVALID))
async def test_invalid_credentials_get_401_everywhere(
    auth_client: httpx.AsyncClient,
    db: psycopg.AsyncConnection[Any],
    ws_id: str,
    credential: str,
) -> None:
    world = await build_world(auth_client, ws_id)
    make, detail = INVALID[credential]
    value = make(world)
    headers = {} if value is None else {"Authorization": value}
    before = await db_digest(db)
    wrong = []
    for route in ROUTES:
        r = await call(auth_client, route, world, headers)
        if r.status_code != 401 or r.json() != {"detail": detail}:
            wrong.append((route.id, r.status_code, r.text))
    assert wrong == []
    assert await db_digest(db) == before


# -- keys minted by POST /v3/keys ------------------------------------------------------------
CORE = {"second_workspace": False, "conclusion": False, "webhook": False}


async def mint(client: httpx.AsyncClient, **params: str) -> dict[str, str]:
    r = await client.post("/v3/keys", params=params, headers=bearer(admin=True))
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


async def test_minted_workspace_key_reaches_its_workspace_only(
    auth_client: httpx.AsyncClient, ws_id: str
) -> None:
    world = await build_world(auth_client, ws_id, conclusion=False, webhook=False)
    key = await mint(auth_client, workspace_id=world.w)
    r = await auth_client.post(f"/v3/workspaces/{world.w}/peers/list", headers=key)
    assert r.status_code == 200, r.text
    assert sorted(_ids(r.json())) == ["alice", "bob"]
    r = await auth_client.post(f"/v3/workspaces/{world.w2}/peers/list", headers=key)
    assert r.status_code == 403
    assert r.json() == {"detail": f"This key has no access to workspace '{world.w2}'"}


async def test_minted_peer_key_reaches_its_own_peer_only(
    auth_client: httpx.AsyncClient, ws_id: str
) -> None:
    world = await build_world(auth_client, ws_id, **CORE)
    key = await mint(auth_client, workspace_id=world.w, peer_id="alice")
    r = await auth_client.put(
        f"/v3/workspaces/{world.w}/peers/alice", json={"metadata": {"a": 1}}, headers=key
    )
    assert r.status_code == 200, r.text
    assert r.json()["metadata"] == {"a": 1}
    r = await auth_client.put(
        f"/v3/workspaces/{world.w}/peers/bob", json={"metadata": {"a": 1}}, headers=key
    )
    assert r.status_code == 403
    assert r.json() == {"detail": "This key has no access to peer 'bob'"}


async def test_minted_session_key_writes_its_session_only(
    auth_client: httpx.AsyncClient, db: psycopg.AsyncConnection[Any], ws_id: str
) -> None:
    world = await build_world(auth_client, ws_id, **CORE)
    key = await mint(auth_client, workspace_id=world.w, session_id="s1")
    body = {"messages": [{"content": "via minted key", "peer_id": "bob"}]}
    r = await auth_client.post(
        f"/v3/workspaces/{world.w}/sessions/s1/messages", json=body, headers=key
    )
    assert r.status_code == 201, r.text
    r = await auth_client.post(
        f"/v3/workspaces/{world.w}/sessions/s2/messages", json=body, headers=key
    )
    assert r.status_code == 403
    assert r.json() == {"detail": "This key has no access to session 's2'"}
    rows = await (
        await db.execute(
            "select session_id from messages where workspace_id = %s and content = %s",
            (world.w, "via minted key"),
        )
    ).fetchall()
    assert rows == [("s1",)]


async def test_minted_key_honours_expires_at(auth_client: httpx.AsyncClient, ws_id: str) -> None:
    world = await build_world(auth_client, ws_id, **CORE)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    live = await mint(auth_client, workspace_id=world.w, expires_at=later)
    dead = await mint(auth_client, workspace_id=world.w, expires_at=PAST.isoformat())
    path = f"/v3/workspaces/{world.w}/sessions/list"
    assert (await auth_client.post(path, headers=live)).status_code == 200
    r = await auth_client.post(path, headers=dead)
    assert r.status_code == 401
    assert r.json() == {"detail": "Token expired"}


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({}, "Name at least one scope: workspace_id, peer_id or session_id"),
        ({"peer_id": "alice"}, "peer_id and session_id keys also need workspace_id"),
        ({"session_id": "s1"}, "peer_id and session_id keys also need workspace_id"),
        (
            {"workspace_id": "w", "peer_id": "alice", "session_id": "s1"},
            "A key is scoped to a peer or a session, not both",
        ),
    ],
)
async def test_keys_route_refuses_unscoped_or_ambiguous_keys(
    auth_client: httpx.AsyncClient, params: dict[str, str], detail: str
) -> None:
    r = await auth_client.post("/v3/keys", params=params, headers=bearer(admin=True))
    assert r.status_code == 422
    assert r.json() == {"detail": detail}


async def test_peer_key_get_or_create_of_itself_creates_it(
    auth_client: httpx.AsyncClient, db: psycopg.AsyncConnection[Any], ws_id: str
) -> None:
    world = await build_world(auth_client, ws_id, **CORE)
    key = bearer(workspace_id=world.w, peer_id="dave")
    r = await auth_client.post(f"/v3/workspaces/{world.w}/peers", json={"id": "dave"}, headers=key)
    assert r.status_code == 201, r.text
    assert r.json()["id"] == "dave"
    r = await auth_client.post(f"/v3/workspaces/{world.w}/peers", json={"id": "dave"}, headers=key)
    assert r.status_code == 200
    row = await (
        await db.execute(
            "select count(*) from peers where workspace_id = %s and id = 'dave'", (world.w,)
        )
    ).fetchone()
    assert row == (1,)


# -- routes that need no token ---------------------------------------------------------------
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-jwt"}])
async def test_health_needs_no_token(
    auth_client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    r = await auth_client.get("/health", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ok"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-jwt"}])
async def test_metrics_need_no_token(
    auth_client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    r = await auth_client.get("/metrics", headers=headers)
    assert r.status_code == 200
    assert "rapport_http_request_duration_seconds" in r.text
