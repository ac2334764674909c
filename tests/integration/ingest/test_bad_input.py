"""Bad input answers 4xx with an actionable detail, never 5xx, and writes nothing.

Every rejection is checked against a snapshot of the row counts of every table a write route
touches (the outbox included: a rejected message batch must publish nothing). The read-only
base workspace (session ``s1``, peer ``alice``) is built once per module and rebuilt only when a
test with the truncating ``client`` fixture has wiped the database.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import AppFactory

pytestmark = pytest.mark.reliability  # part of make test-reliability (issue 8)

Json = Any
DB = psycopg.AsyncConnection[Any]

COUNTED = (
    "workspaces",
    "peers",
    "sessions",
    "session_peers",
    "membership_windows",
    "messages",
    "conclusions",
    "webhook_endpoints",
    "outbox",
)
_BASE: dict[str, str] = {}


# -- helpers -------------------------------------------------------------------------------


async def _counts(db: DB) -> dict[str, int]:
    query = "select " + ", ".join(f"(select count(*) from {t})" for t in COUNTED)  # noqa: S608
    row = await (await db.execute(query)).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return dict(zip(COUNTED, row, strict=True))


def _raw(body: Json) -> bytes:
    """JSON text as a client may send it: NaN / Infinity allowed, surrogates escaped."""
    return json.dumps(body, allow_nan=True, ensure_ascii=True).encode()


async def _send(api: httpx.AsyncClient, method: str, url: str, body: Json) -> httpx.Response:
    content = body if isinstance(body, bytes) else _raw(body)
    return await api.request(
        method, url, content=content, headers={"Content-Type": "application/json"}
    )


async def _rejected(
    api: httpx.AsyncClient, db: DB, method: str, url: str, body: Json, *, status: int = 422
) -> Json:
    """Send ``body``; assert ``status``, a ``detail`` and unchanged row counts; return detail."""
    before = await _counts(db)
    r = await _send(api, method, url, body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert detail
    assert await _counts(db) == before
    return detail


def _errors(detail: Json) -> dict[tuple[Any, ...], tuple[str, str]]:
    """FastAPI's validation list as {loc: (type, msg)}."""
    assert isinstance(detail, list), detail
    return {tuple(e["loc"]): (e["type"], e["msg"]) for e in detail}


def _assert_error(detail: Json, loc: tuple[Any, ...], fragment: str) -> None:
    errors = _errors(detail)
    assert loc in errors, errors
    kind, msg = errors[loc]
    assert fragment in kind or fragment in msg, errors[loc]


def _nest(levels: int, leaf: Json = "leaf") -> dict[str, Any]:
    """A JSON object ``levels`` objects deep (the outermost one is level 1)."""
    value: Json = leaf
    for i in range(levels, 0, -1):
        value = {f"l{i}": value}
    return value  # type: ignore[no-any-return]


def _msg(content: str = "hello", peer_id: str = "alice", **extra: Any) -> dict[str, Any]:
    return {"content": content, "peer_id": peer_id, **extra}


@pytest.fixture
async def api(app_factory: AppFactory) -> httpx.AsyncClient:
    """The default app, without truncating the database first (unlike ``client``)."""
    return await app_factory()


@pytest.fixture
async def ws(api: httpx.AsyncClient) -> str:
    """A workspace with session ``s1`` (member ``alice``); built once while it exists."""
    cached = _BASE.get("ws")
    if cached is not None:
        r = await api.post("/v3/workspaces", json={"id": cached})
        if r.status_code == 200:
            return cached
    ws_id = f"ws-{uuid.uuid4().hex[:12]}"
    assert (await api.post("/v3/workspaces", json={"id": ws_id})).status_code == 201
    r = await api.post(
        f"/v3/workspaces/{ws_id}/sessions", json={"id": "s1", "peers": {"alice": {}}}
    )
    assert r.status_code == 201, r.text
    _BASE["ws"] = ws_id
    return ws_id


def _fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# -- invalid ids ---------------------------------------------------------------------------

# (id as it appears in the URL path, expected status). Empty and slash ids change the route
# itself, so no route matches them: 404 with a pointer to the docs.
BAD_PATH_IDS = [
    pytest.param("", 404, id="empty"),
    pytest.param("a" * 513, 422, id="513-chars"),
    pytest.param("a%20b", 422, id="space"),
    pytest.param("a.b", 422, id="dot"),
    pytest.param("a%2Fb", 404, id="slash"),
    pytest.param("caf%C3%A9", 422, id="unicode"),
    pytest.param("a%00b", 422, id="nul"),
]
PATH_ROUTES = [
    pytest.param("POST", "/v3/workspaces/{id}/peers", {"id": "p1"}, "workspace_id", id="ws"),
    pytest.param(
        "POST",
        "/v3/workspaces/{ws}/sessions/{id}/messages",
        {"messages": [_msg()]},
        "session_id",
        id="session",
    ),
    pytest.param(
        "POST", "/v3/workspaces/{ws}/peers/{id}/sessions", None, "peer_id", id="peer-sessions"
    ),
    pytest.param(
        "POST", "/v3/workspaces/{id}/sessions/s1/messages/list", None, "workspace_id", id="list"
    ),
]


@pytest.mark.parametrize(("bad_id", "status"), BAD_PATH_IDS)
@pytest.mark.parametrize(("method", "template", "body", "param"), PATH_ROUTES)
async def test_invalid_id_in_path_is_rejected(
    api: httpx.AsyncClient,
    db: DB,
    ws: str,
    bad_id: str,
    status: int,
    method: str,
    template: str,
    body: Json,
    param: str,
) -> None:
    url = template.format(ws=ws, id=bad_id)
    detail = await _rejected(api, db, method, url, body or b"", status=status)
    if status == 404:
        assert detail == "No such route; see /docs for the API"
    else:
        _assert_error(detail, ("path", param), "string_")


BAD_BODY_IDS = [
    pytest.param("", "string_too_short", id="empty"),
    pytest.param("a" * 513, "string_too_long", id="513-chars"),
    pytest.param("a b", "string_pattern_mismatch", id="space"),
    pytest.param("a.b", "string_pattern_mismatch", id="dot"),
    pytest.param("a/b", "string_pattern_mismatch", id="slash"),
    pytest.param("café", "string_pattern_mismatch", id="unicode"),
    pytest.param("a\x00b", "string_pattern_mismatch", id="nul"),
]


def _body_id_cases(bad: str) -> list[tuple[str, str, Json, tuple[Any, ...]]]:
    return [
        ("POST", "/v3/workspaces", {"id": bad}, ("body", "id")),
        ("POST", "/v3/workspaces/{ws}/peers", {"id": bad}, ("body", "id")),
        ("POST", "/v3/workspaces/{ws}/sessions", {"id": bad}, ("body", "id")),
        (
            "POST",
            "/v3/workspaces/{ws}/sessions",
            {"id": "s-new", "peers": {bad: {}}},
            ("body", "peers", bad, "[key]"),
        ),
        (
            "POST",
            "/v3/workspaces/{ws}/sessions/s1/peers",
            {"alice": {}, bad: {}},
            ("body", bad, "[key]"),
        ),
        ("DELETE", "/v3/workspaces/{ws}/sessions/s1/peers", [bad], ("body", 0)),
        (
            "POST",
            "/v3/workspaces/{ws}/sessions/s1/messages",
            {"messages": [_msg(peer_id=bad)]},
            ("body", "messages", 0, "peer_id"),
        ),
        (
            "POST",
            "/v3/workspaces/{ws}/conclusions",
            {"conclusions": [{"content": "c", "observer_id": bad, "observed_id": "alice"}]},
            ("body", "conclusions", 0, "observer_id"),
        ),
    ]


BODY_ID_ROUTES = [
    "workspace",
    "peer",
    "session",
    "session-peer-map",
    "add-peers",
    "remove-peers",
    "message-author",
    "conclusion-observer",
]


@pytest.mark.parametrize(("bad_id", "error_type"), BAD_BODY_IDS)
@pytest.mark.parametrize("route", BODY_ID_ROUTES)
async def test_invalid_id_in_body_is_422(
    api: httpx.AsyncClient, db: DB, ws: str, bad_id: str, error_type: str, route: str
) -> None:
    method, template, body, loc = _body_id_cases(bad_id)[BODY_ID_ROUTES.index(route)]
    detail = await _rejected(api, db, method, template.format(ws=ws), body)
    _assert_error(detail, loc, error_type)


# -- message size and batch size -----------------------------------------------------------


async def test_content_of_exactly_25000_characters_is_stored(
    api: httpx.AsyncClient, db: DB, ws: str
) -> None:
    before = await _counts(db)
    r = await _send(
        api, "POST", f"/v3/workspaces/{ws}/sessions/s1/messages", {"messages": [_msg("é" * 25_000)]}
    )
    assert r.status_code == 201, r.text
    [stored] = r.json()
    assert stored["content"] == "é" * 25_000
    after = await _counts(db)
    assert (after["messages"], after["outbox"]) == (before["messages"] + 1, before["outbox"] + 1)


async def test_content_of_25001_characters_is_422(api: httpx.AsyncClient, db: DB, ws: str) -> None:
    detail = await _rejected(
        api,
        db,
        "POST",
        f"/v3/workspaces/{ws}/sessions/s1/messages",
        {"messages": [_msg(), _msg("x" * 25_001)]},
    )
    assert detail == (
        "messages[1].content has 25001 characters; the limit is 25000. "
        "Split long text or upload it as a file."
    )


async def test_batch_of_100_messages_is_stored(api: httpx.AsyncClient, db: DB, ws: str) -> None:
    before = await _counts(db)
    batch = [_msg(f"m{i}") for i in range(100)]
    r = await _send(api, "POST", f"/v3/workspaces/{ws}/sessions/s1/messages", {"messages": batch})
    assert r.status_code == 201, r.text
    assert [m["content"] for m in r.json()] == [f"m{i}" for i in range(100)]
    after = await _counts(db)
    assert after["messages"] - before["messages"] == 100
    assert after["outbox"] - before["outbox"] == 100


async def test_batch_of_101_messages_is_422(api: httpx.AsyncClient, db: DB, ws: str) -> None:
    batch = [_msg(f"m{i}") for i in range(101)]
    detail = await _rejected(
        api, db, "POST", f"/v3/workspaces/{ws}/sessions/s1/messages", {"messages": batch}
    )
    assert detail == "A batch holds at most 100 messages; got 101. Split it."


async def test_empty_batch_is_422(api: httpx.AsyncClient, db: DB, ws: str) -> None:
    detail = await _rejected(
        api, db, "POST", f"/v3/workspaces/{ws}/sessions/s1/messages", {"messages": []}
    )
    _assert_error(detail, ("body", "messages"), "too_short")


# -- unstorable text: NUL, lone surrogates -------------------------------------------------

STORABLE_TEXT_CASES = [
    pytest.param(
        "POST",
        "/v3/workspaces/{ws}/sessions/s1/messages",
        {"messages": [_msg("a\x00b")]},
        ("body", "messages", 0, "content"),
        "NUL",
        id="content",
    ),
    pytest.param(
        "POST",
        "/v3/workspaces/{ws}/sessions/s1/messages",
        {"messages": [_msg(metadata={"k": ["ok", "v\x00"]})]},
        ("body", "messages", 0, "metadata"),
        "NUL (\\u0000) characters (at $.k[1])",
        id="metadata-value",
    ),
    pytest.param(
        "POST",
        "/v3/workspaces/{ws}/sessions/s1/messages",
        {"messages": [_msg(metadata={"outer": {"k\x00": 1}})]},
        ("body", "messages", 0, "metadata"),
        "has a key that must not contain NUL (\\u0000) characters (at $.outer)",
        id="metadata-key",
    ),
    pytest.param(
        "POST",
        "/v3/workspaces",
        {"id": "w-nul", "metadata": {"k": "\x00"}},
        ("body", "metadata"),
        "NUL",
        id="workspace-metadata",
    ),
    pytest.param(
        "PUT",
        "/v3/workspaces/{ws}/peers/alice",
        {"metadata": {"\x00": "v"}},
        ("body", "metadata"),
        "NUL",
        id="peer-metadata-key",
    ),
    pytest.param(
        "POST",
        "/v3/workspaces",
        {"id": "w-nul", "configuration": {"custom_instructions": "x\x00"}},
        ("body", "configuration", "custom_instructions"),
        "NUL",
        id="configuration-text",
    ),
    pytest.param(
        "POST",
        "/v3/workspaces/{ws}/conclusions",
        {"conclusions": [{"content": "\x00", "observer_id": "alice", "observed_id": "alice"}]},
        ("body", "conclusions", 0, "content"),
        "NUL",
        id="conclusion-content",
    ),
    pytest.param(
        "POST",
        "/v3/workspaces/{ws}/sessions/s1/messages",
        {"messages": [_msg("half an emoji \ud83d")]},
        ("body", "messages", 0, "content"),
        "surrogates",
        id="surrogate-content",
    ),
    pytest.param(
        "POST",
        "/v3/workspaces/{ws}/sessions/s1/messages",
        {"messages": [_msg(metadata={"\udc00": 1})]},
        ("body", "messages", 0, "metadata"),
        "surrogates",
        id="surrogate-metadata-key",
    ),
]


@pytest.mark.parametrize(("method", "template", "body", "loc", "fragment"), STORABLE_TEXT_CASES)
async def test_unstorable_text_is_422(
    api: httpx.AsyncClient,
    db: DB,
    ws: str,
    method: str,
    template: str,
    body: Json,
    loc: tuple[Any, ...],
    fragment: str,
) -> None:
    detail = await _rejected(api, db, method, template.format(ws=ws), body)
    _assert_error(detail, loc, fragment)


# -- malformed bodies and wrong shapes -----------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "error_type"),
    [
        pytest.param(b'{"id":', "json_invalid", id="truncated"),
        pytest.param(b'{"id": "x",}', "json_invalid", id="trailing-comma"),
        pytest.param(b"{'id': 'x'}", "json_invalid", id="single-quotes"),
        pytest.param(b'{"id": "x"} {}', "json_invalid", id="trailing-data"),
        pytest.param(b"", "missing", id="empty"),
        pytest.param(b"null", "model_attributes_type", id="null"),
        pytest.param(b'"w1"', "model_attributes_type", id="string"),
    ],
)
async def test_malformed_json_body_is_422(
    api: httpx.AsyncClient, db: DB, raw: bytes, error_type: str
) -> None:
    detail = await _rejected(api, db, "POST", "/v3/workspaces", raw)
    assert error_type in {e["type"] for e in detail}, detail


async def test_body_that_is_not_utf8_is_400(api: httpx.AsyncClient, db: DB) -> None:
    detail = await _rejected(api, db, "POST", "/v3/workspaces", b'{"id": "\xff"}', status=400)
    assert detail == "The request body could not be read as JSON; send UTF-8 encoded JSON"


@pytest.mark.parametrize(
    ("method", "template", "body", "loc"),
    [
        pytest.param("POST", "/v3/workspaces", [{"id": "w1"}], ("body",), id="workspace"),
        pytest.param(
            "POST",
            "/v3/workspaces/{ws}/sessions/s1/messages",
            [_msg()],
            ("body",),
            id="unwrapped-messages",
        ),
        pytest.param(
            "POST", "/v3/workspaces/{ws}/sessions/s1/peers", ["alice"], ("body",), id="peer-map"
        ),
        pytest.param("PUT", "/v3/workspaces/{ws}/sessions/s1", [], ("body",), id="update"),
        pytest.param(
            "DELETE",
            "/v3/workspaces/{ws}/sessions/s1/peers",
            {"alice": {}},
            ("body",),
            id="list-expected",
        ),
        pytest.param(
            "POST",
            "/v3/workspaces/{ws}/sessions/s1/messages",
            {"messages": [[_msg()]]},
            ("body", "messages", 0),
            id="nested-list",
        ),
    ],
)
async def test_wrong_json_container_is_422(
    api: httpx.AsyncClient,
    db: DB,
    ws: str,
    method: str,
    template: str,
    body: Json,
    loc: tuple[Any, ...],
) -> None:
    detail = await _rejected(api, db, method, template.format(ws=ws), body)
    assert loc in _errors(detail), detail


WRONG_TYPES = [
    pytest.param({"messages": [_msg(content=5)]}, (0, "content"), "string_type", id="content-int"),
    pytest.param(
        {"messages": [_msg(content=None)]}, (0, "content"), "string_type", id="content-null"
    ),
    pytest.param(
        {"messages": [_msg(content=["a"])]}, (0, "content"), "string_type", id="content-list"
    ),
    pytest.param(
        {"messages": [{"peer_id": "alice"}]}, (0, "content"), "missing", id="content-missing"
    ),
    pytest.param({"messages": [_msg(peer_id=7)]}, (0, "peer_id"), "string_type", id="peer-int"),
    pytest.param(
        {"messages": [_msg(metadata=["a"])]}, (0, "metadata"), "dict_type", id="metadata-list"
    ),
    pytest.param(
        {"messages": [_msg(metadata="a=b")]}, (0, "metadata"), "dict_type", id="metadata-str"
    ),
    pytest.param(
        {"messages": [_msg(created_at="yesterday")]},
        (0, "created_at"),
        "datetime",
        id="created-at-text",
    ),
    pytest.param(
        {"messages": [_msg(configuration="on")]},
        (0, "configuration"),
        "model_attributes_type",
        id="configuration-str",
    ),
    pytest.param(
        {"messages": [_msg(configuration={"reasoning": {"enabled": "maybe"}})]},
        (0, "configuration", "reasoning", "enabled"),
        "bool",
        id="configuration-bool",
    ),
    pytest.param({"messages": "hello"}, (), "list_type", id="messages-str"),
    pytest.param({"messages": {"0": _msg()}}, (), "list_type", id="messages-object"),
]


@pytest.mark.parametrize(("body", "loc", "fragment"), WRONG_TYPES)
async def test_wrong_message_types_are_422(
    api: httpx.AsyncClient,
    db: DB,
    ws: str,
    body: Json,
    loc: tuple[Any, ...],
    fragment: str,
) -> None:
    url = f"/v3/workspaces/{ws}/sessions/s1/messages"
    detail = await _rejected(api, db, "POST", url, body)
    _assert_error(detail, ("body", "messages", *loc), fragment)


@pytest.mark.parametrize(
    ("method", "template", "body", "loc", "fragment"),
    [
        pytest.param(
            "POST",
            "/v3/workspaces/{ws}/sessions",
            {"id": "s-new", "peers": {"bob": 1}},
            ("body", "peers", "bob"),
            "model_attributes_type",
            id="create-int",
        ),
        pytest.param(
            "POST",
            "/v3/workspaces/{ws}/sessions",
            {"id": "s-new", "peers": {"bob": "observer"}},
            ("body", "peers", "bob"),
            "model_attributes_type",
            id="create-str",
        ),
        pytest.param(
            "POST",
            "/v3/workspaces/{ws}/sessions",
            {"id": "s-new", "peers": ["bob"]},
            ("body", "peers"),
            "dict_type",
            id="create-list",
        ),
        pytest.param(
            "POST",
            "/v3/workspaces/{ws}/sessions/s1/peers",
            {"bob": True},
            ("body", "bob"),
            "model_attributes_type",
            id="add-bool",
        ),
        pytest.param(
            "PUT",
            "/v3/workspaces/{ws}/sessions/s1/peers",
            {"alice": {"observe_me": "maybe"}},
            ("body", "alice", "observe_me"),
            "bool",
            id="set-bad-flag",
        ),
        pytest.param(
            "POST",
            "/v3/workspaces",
            {"id": "w-x", "metadata": ["a"]},
            ("body", "metadata"),
            "dict_type",
            id="workspace-metadata-list",
        ),
        pytest.param(
            "POST",
            "/v3/workspaces/{ws}/peers",
            {"id": "p-x", "metadata": "a"},
            ("body", "metadata"),
            "dict_type",
            id="peer-metadata-str",
        ),
    ],
)
async def test_wrong_types_elsewhere_are_422(
    api: httpx.AsyncClient,
    db: DB,
    ws: str,
    method: str,
    template: str,
    body: Json,
    loc: tuple[Any, ...],
    fragment: str,
) -> None:
    detail = await _rejected(api, db, method, template.format(ws=ws), body)
    _assert_error(detail, loc, fragment)


# -- metadata limits: depth, NaN / Infinity, size ------------------------------------------

# (method, url template, builder of a request body around a metadata value)
METADATA_ROUTES = [
    pytest.param("POST", "/v3/workspaces", lambda md: {"id": _fresh("w"), "metadata": md}, id="ws"),
    pytest.param(
        "POST",
        "/v3/workspaces/{ws}/peers",
        lambda md: {"id": _fresh("p"), "metadata": md},
        id="peer",
    ),
    pytest.param(
        "POST",
        "/v3/workspaces/{ws}/sessions",
        lambda md: {"id": _fresh("s"), "metadata": md},
        id="session",
    ),
    pytest.param("PUT", "/v3/workspaces/{ws}/sessions/s1", lambda md: {"metadata": md}, id="put"),
    pytest.param(
        "POST",
        "/v3/workspaces/{ws}/sessions/s1/messages",
        lambda md: {"messages": [_msg(metadata=md)]},
        id="message",
    ),
]


def _metadata_of(body: Json) -> Json:
    return body[0]["metadata"] if isinstance(body, list) else body["metadata"]


def _metadata_loc(template: str) -> tuple[Any, ...]:
    if template.endswith("/messages"):
        return ("body", "messages", 0, "metadata")
    return ("body", "metadata")


@pytest.mark.parametrize(("method", "template", "build"), METADATA_ROUTES)
async def test_metadata_eight_levels_deep_is_stored(
    api: httpx.AsyncClient, ws: str, method: str, template: str, build: Any
) -> None:
    # Both branches are 8 levels deep, counting the metadata object itself as level 1.
    metadata = {"list": [[{"a": [{"b": [[1]]}]}]], "deep": _nest(7)}
    r = await _send(api, method, template.format(ws=ws), build(metadata))
    assert r.status_code in (200, 201), r.text
    assert _metadata_of(r.json()) == metadata


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param(_nest(9), id="objects"),
        pytest.param({"a": [[[[[[[["x"]]]]]]]]}, id="arrays"),
        pytest.param({"a": [{"b": [{"c": [{"d": [{}]}]}]}]}, id="mixed"),
    ],
)
@pytest.mark.parametrize(("method", "template", "build"), METADATA_ROUTES)
async def test_metadata_nine_levels_deep_is_422(
    api: httpx.AsyncClient,
    db: DB,
    ws: str,
    metadata: Json,
    method: str,
    template: str,
    build: Any,
) -> None:
    detail = await _rejected(api, db, method, template.format(ws=ws), build(metadata))
    _assert_error(detail, _metadata_loc(template), "nests deeper than 8 levels")


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        pytest.param(b'{"id":"x","metadata":{"a":NaN}}', "$.a", id="nan"),
        pytest.param(b'{"id":"x","metadata":{"a":Infinity}}', "$.a", id="infinity"),
        pytest.param(b'{"id":"x","metadata":{"a":{"b":[1,-Infinity]}}}', "$.a.b[1]", id="-inf"),
    ],
)
@pytest.mark.parametrize(
    "template",
    [
        pytest.param("/v3/workspaces", id="workspace"),
        pytest.param("/v3/workspaces/{ws}/peers", id="peer"),
        pytest.param("/v3/workspaces/{ws}/sessions", id="session"),
    ],
)
async def test_non_finite_numbers_in_metadata_are_422(
    api: httpx.AsyncClient, db: DB, ws: str, raw: bytes, where: str, template: str
) -> None:
    detail = await _rejected(api, db, "POST", template.format(ws=ws), raw)
    _assert_error(detail, ("body", "metadata"), f"contains a non-finite number (at {where})")


async def test_non_finite_number_in_message_metadata_is_422(
    api: httpx.AsyncClient, db: DB, ws: str
) -> None:
    raw = b'{"messages":[{"peer_id":"alice","content":"x","metadata":{"score":NaN}}]}'
    url = f"/v3/workspaces/{ws}/sessions/s1/messages"
    detail = await _rejected(api, db, "POST", url, raw)
    _assert_error(detail, ("body", "messages", 0, "metadata"), "non-finite number (at $.score)")


@pytest.mark.parametrize(
    "number",
    [
        pytest.param(2**63, id="int"),
        pytest.param(-(2**63) - 1, id="negative-int"),
        # Postgres would store 1e19 as an integer too large for the event encoder.
        pytest.param(1e19, id="float"),
    ],
)
async def test_number_beyond_64_bits_in_metadata_is_422(
    api: httpx.AsyncClient, db: DB, ws: str, number: float
) -> None:
    url = f"/v3/workspaces/{ws}/sessions/s1/messages"
    body = {"messages": [_msg(metadata={"n": number})]}
    detail = await _rejected(api, db, "POST", url, body)
    _assert_error(detail, ("body", "messages", 0, "metadata"), "64-bit range (at $.n)")


async def test_numbers_at_the_64_bit_edges_are_stored_and_published(
    api: httpx.AsyncClient, db: DB, ws: str
) -> None:
    metadata = {"max": 2**63 - 1, "min": -(2**63), "float": 9.2e18, "tiny": 1e-300}
    before = await _counts(db)
    url = f"/v3/workspaces/{ws}/sessions/s1/messages"
    r = await _send(api, "POST", url, {"messages": [_msg(metadata=metadata)]})
    assert r.status_code == 201, r.text
    assert r.json()[0]["metadata"] == metadata
    assert (await _counts(db))["outbox"] == before["outbox"] + 1


@pytest.mark.parametrize(("method", "template", "build"), METADATA_ROUTES)
async def test_metadata_over_64_kib_is_422(
    api: httpx.AsyncClient, db: DB, ws: str, method: str, template: str, build: Any
) -> None:
    metadata = {"blob": "x" * (64 * 1024)}
    detail = await _rejected(api, db, method, template.format(ws=ws), build(metadata))
    _assert_error(
        detail,
        _metadata_loc(template),
        "is 65547 bytes once serialized; the limit is 65536",
    )


async def test_metadata_just_under_64_kib_is_stored(api: httpx.AsyncClient, ws: str) -> None:
    metadata = {"blob": "x" * (64 * 1024 - 11)}  # {"blob":"…"} is 11 bytes of framing
    r = await _send(api, "POST", "/v3/workspaces", {"id": _fresh("w"), "metadata": metadata})
    assert r.status_code == 201, r.text
    assert r.json()["metadata"] == metadata


# -- unknown fields ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "template", "body", "loc"),
    [
        pytest.param(
            "POST", "/v3/workspaces", {"id": "w1", "name": "x"}, ("body", "name"), id="workspace"
        ),
        pytest.param(
            "PUT", "/v3/workspaces/{ws}", {"metadata": {}, "foo": 1}, ("body", "foo"), id="ws-put"
        ),
        pytest.param(
            "POST",
            "/v3/workspaces/{ws}/peers",
            {"id": "p1", "peer_type": "user"},
            ("body", "peer_type"),
            id="peer",
        ),
        pytest.param(
            "POST",
            "/v3/workspaces/{ws}/sessions",
            {"id": "s-new", "peers": {"bob": {"observe_me": True, "role": "x"}}},
            ("body", "peers", "bob", "role"),
            id="session-peer-config",
        ),
        pytest.param(
            "POST",
            "/v3/workspaces/{ws}/sessions/s1/messages",
            {"messages": [_msg(role="user")]},
            ("body", "messages", 0, "role"),
            id="message",
        ),
        pytest.param(
            "POST",
            "/v3/workspaces/{ws}/sessions/s1/messages",
            {"messages": [_msg()], "session_id": "s1"},
            ("body", "session_id"),
            id="batch",
        ),
        pytest.param(
            "PUT",
            "/v3/workspaces/{ws}/sessions/s1/peers/alice/config",
            {"observe_me": False, "observe_everyone": True},
            ("body", "observe_everyone"),
            id="member-config",
        ),
        pytest.param(
            "POST",
            "/v3/workspaces/{ws}/conclusions",
            {"observations": [{"content": "c", "observer_id": "alice", "observed_id": "alice"}]},
            ("body", "observations"),
            id="conclusions",
        ),
    ],
)
async def test_unknown_body_fields_are_422(
    api: httpx.AsyncClient,
    db: DB,
    ws: str,
    method: str,
    template: str,
    body: Json,
    loc: tuple[Any, ...],
) -> None:
    detail = await _rejected(api, db, method, template.format(ws=ws), body)
    _assert_error(detail, loc, "extra_forbidden")


# -- unknown parents -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("POST", "/peers", {"id": "p1"}, id="peer-create"),
        pytest.param("POST", "/peers/list", None, id="peer-list"),
        pytest.param("PUT", "/peers/p1", {"metadata": {}}, id="peer-update"),
        pytest.param("POST", "/sessions", {"id": "s1"}, id="session-create"),
        pytest.param("POST", "/sessions/list", None, id="session-list"),
        pytest.param("POST", "/sessions/s1/messages", {"messages": [_msg()]}, id="messages"),
        pytest.param("POST", "/sessions/s1/messages/list", None, id="messages-list"),
        pytest.param("GET", "/sessions/s1/messages/m1", None, id="message-get"),
        pytest.param(
            "POST",
            "/conclusions",
            {"conclusions": [{"content": "c", "observer_id": "a", "observed_id": "a"}]},
            id="conclusions",
        ),
        pytest.param("POST", "/conclusions/list", None, id="conclusions-list"),
        pytest.param("GET", "/queue/status", None, id="queue-status"),
    ],
)
async def test_unknown_workspace_is_404(
    api: httpx.AsyncClient, db: DB, method: str, path: str, body: Json
) -> None:
    ws_id = _fresh("missing")
    url = f"/v3/workspaces/{ws_id}{path}"
    detail = await _rejected(api, db, method, url, body or b"", status=404)
    assert detail == f"Workspace '{ws_id}' not found"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("POST", "", {"messages": [_msg()]}, id="create"),
        pytest.param("POST", "/list", None, id="list"),
        pytest.param("GET", "/m1", None, id="get"),
        pytest.param("PUT", "/m1", {"metadata": {"a": 1}}, id="update"),
    ],
)
async def test_unknown_session_is_404_for_messages(
    api: httpx.AsyncClient, db: DB, ws: str, method: str, path: str, body: Json
) -> None:
    url = f"/v3/workspaces/{ws}/sessions/nope/messages{path}"
    detail = await _rejected(api, db, method, url, body or b"", status=404)
    assert detail == f"Session 'nope' not found in workspace '{ws}'"


async def test_unknown_message_is_404(api: httpx.AsyncClient, db: DB, ws: str) -> None:
    url = f"/v3/workspaces/{ws}/sessions/s1/messages/AAAAAAAAAAAAAAAAAAAAA"
    detail = await _rejected(api, db, "PUT", url, {"metadata": {}}, status=404)
    assert detail == "Message 'AAAAAAAAAAAAAAAAAAAAA' not found in session 's1'"


# -- request body limit --------------------------------------------------------------------


@pytest.fixture
async def small_app(app_factory: AppFactory) -> httpx.AsyncClient:
    return await app_factory(max_request_bytes=2048)


async def test_body_over_max_request_bytes_is_413(
    small_app: httpx.AsyncClient, db: DB, ws: str
) -> None:
    body = {"messages": [_msg("x" * 3000)]}
    url = f"/v3/workspaces/{ws}/sessions/s1/messages"
    detail = await _rejected(small_app, db, "POST", url, body, status=413)
    assert detail == "Request body too large; the limit is 2048 bytes"


async def test_chunked_body_over_max_request_bytes_is_413(
    small_app: httpx.AsyncClient, db: DB, ws: str
) -> None:
    payload = _raw({"messages": [_msg("x" * 3000)]})

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(payload), 500):
            yield payload[i : i + 500]

    before = await _counts(db)
    r = await small_app.post(
        f"/v3/workspaces/{ws}/sessions/s1/messages",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert "content-length" not in r.request.headers
    assert r.status_code == 413, r.text
    assert r.json()["detail"] == "Request body too large; the limit is 2048 bytes"
    assert await _counts(db) == before


async def test_body_under_max_request_bytes_is_accepted(
    small_app: httpx.AsyncClient, db: DB, ws: str
) -> None:
    body = _raw({"messages": [_msg("x" * 1900)]})
    assert len(body) <= 2048
    before = await _counts(db)
    r = await _send(small_app, "POST", f"/v3/workspaces/{ws}/sessions/s1/messages", body)
    assert r.status_code == 201, r.text
    assert (await _counts(db))["messages"] == before["messages"] + 1


# -- configuration -------------------------------------------------------------------------

FULL_CONFIGURATION = {
    "custom_instructions": "Be brief.",
    "reasoning": {"enabled": True, "custom_instructions": "Think."},
    "peer_card": {"use": True, "create": False, "custom_instructions": "Cards."},
    "summary": {
        "enabled": True,
        "messages_per_short_summary": 20,
        "messages_per_long_summary": 60,
        "custom_instructions": "Summaries.",
    },
    "dream": {"enabled": False, "custom_instructions": "Dreams."},
    "dialectic": {"custom_instructions": "Answers."},
}
CONFIGURATIONS = [
    pytest.param(FULL_CONFIGURATION, id="full"),
    pytest.param({"reasoning": {"enabled": False}}, id="one-section"),
    pytest.param({"summary": {"messages_per_short_summary": 10}}, id="one-key"),
    pytest.param({"peer_card": {}}, id="empty-section"),
    pytest.param({}, id="empty"),
]


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
async def test_workspace_configuration_is_echoed_as_sent(
    api: httpx.AsyncClient, configuration: Json
) -> None:
    ws_id = _fresh("w")
    r = await _send(api, "POST", "/v3/workspaces", {"id": ws_id, "configuration": configuration})
    assert r.status_code == 201, r.text
    assert r.json()["configuration"] == configuration
    r = await _send(api, "POST", "/v3/workspaces", {"id": ws_id})
    assert r.status_code == 200, r.text
    assert r.json()["configuration"] == configuration
    r = await _send(api, "PUT", f"/v3/workspaces/{ws_id}", {"configuration": configuration})
    assert r.status_code == 200, r.text
    assert r.json()["configuration"] == configuration


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
async def test_session_configuration_is_echoed_as_sent(
    api: httpx.AsyncClient, ws: str, configuration: Json
) -> None:
    sid = _fresh("s")
    base = f"/v3/workspaces/{ws}/sessions"
    r = await _send(api, "POST", base, {"id": sid, "configuration": configuration})
    assert r.status_code == 201, r.text
    assert r.json()["configuration"] == configuration
    r = await _send(api, "PUT", f"{base}/{sid}", {"configuration": configuration})
    assert r.status_code == 200, r.text
    assert r.json()["configuration"] == configuration
    r = await _send(api, "POST", f"{base}/list", {"filters": {"id": sid}})
    assert [s["configuration"] for s in r.json()["items"]] == [configuration]


@pytest.mark.parametrize(
    "configuration",
    [{"observe_me": False}, {"observe_me": True}, {}],
    ids=["off", "on", "empty"],
)
async def test_peer_configuration_is_echoed_as_sent(
    api: httpx.AsyncClient, ws: str, configuration: Json
) -> None:
    pid = _fresh("p")
    r = await _send(
        api, "POST", f"/v3/workspaces/{ws}/peers", {"id": pid, "configuration": configuration}
    )
    assert r.status_code == 201, r.text
    assert r.json()["configuration"] == configuration
    r = await _send(api, "POST", f"/v3/workspaces/{ws}/peers", {"id": pid})
    assert r.status_code == 200, r.text
    assert r.json()["configuration"] == configuration


BAD_CONFIGURATIONS = [
    pytest.param("POST", "/v3/workspaces", {"foo": 1}, ("foo",), "extra_forbidden", id="top"),
    pytest.param(
        "POST",
        "/v3/workspaces",
        {"reasoning": {"foo": 1}},
        ("reasoning", "foo"),
        "extra_forbidden",
        id="nested",
    ),
    pytest.param(
        "POST",
        "/v3/workspaces",
        {"deriver": {"enabled": True}},
        ("deriver",),
        "extra_forbidden",
        id="legacy-section",
    ),
    pytest.param(
        "PUT",
        "/v3/workspaces/{ws}",
        {"dream": {"enabled": True, "schedule": "daily"}},
        ("dream", "schedule"),
        "extra_forbidden",
        id="put-nested",
    ),
    pytest.param(
        "POST",
        "/v3/workspaces/{ws}/sessions",
        {"summary": {"enabled": True, "every": 5}},
        ("summary", "every"),
        "extra_forbidden",
        id="session-nested",
    ),
    pytest.param(
        "PUT",
        "/v3/workspaces/{ws}/sessions/s1",
        {"dialectic": {"custom_instructions": "x", "model": "gpt"}},
        ("dialectic", "model"),
        "extra_forbidden",
        id="session-put-nested",
    ),
    pytest.param(
        "POST",
        "/v3/workspaces/{ws}/peers",
        {"observe_me": True, "x": 1},
        ("x",),
        "extra_forbidden",
        id="peer",
    ),
    pytest.param(
        "POST",
        "/v3/workspaces",
        {"reasoning": True},
        ("reasoning",),
        "model_attributes_type",
        id="section-not-object",
    ),
    pytest.param(
        "POST", "/v3/workspaces", "fast", (), "model_attributes_type", id="configuration-string"
    ),
    pytest.param(
        "POST",
        "/v3/workspaces",
        {"summary": {"messages_per_short_summary": 5}},
        ("summary", "messages_per_short_summary"),
        "greater_than_equal",
        id="short-too-small",
    ),
    pytest.param(
        "POST",
        "/v3/workspaces",
        {"summary": {"messages_per_short_summary": 40, "messages_per_long_summary": 40}},
        ("summary", "messages_per_long_summary"),
        "greater than the short interval",
        id="long-not-after-short",
    ),
]


@pytest.mark.parametrize(("method", "template", "configuration", "loc", "kind"), BAD_CONFIGURATIONS)
async def test_bad_configuration_is_422(
    api: httpx.AsyncClient,
    db: DB,
    ws: str,
    method: str,
    template: str,
    configuration: Json,
    loc: tuple[Any, ...],
    kind: str,
) -> None:
    body: dict[str, Any] = {"configuration": configuration}
    if method == "POST":
        body["id"] = _fresh("new")
    detail = await _rejected(api, db, method, template.format(ws=ws), body)
    _assert_error(detail, ("body", "configuration", *loc), kind)


async def test_message_configuration_takes_only_reasoning(
    api: httpx.AsyncClient, db: DB, ws: str
) -> None:
    url = f"/v3/workspaces/{ws}/sessions/s1/messages"
    body = {"messages": [_msg(configuration={"summary": {"enabled": False}})]}
    detail = await _rejected(api, db, "POST", url, body)
    _assert_error(detail, ("body", "messages", 0, "configuration", "summary"), "extra_forbidden")
    ok = {"messages": [_msg(configuration={"reasoning": {"enabled": False}})]}
    assert (await _send(api, "POST", url, ok)).status_code == 201


# -- one bad message rejects the whole batch -----------------------------------------------

BAD_MEMBERS = [
    pytest.param(_msg("a\x00"), ("content",), "NUL", id="nul"),
    pytest.param(_msg(5), ("content",), "string_type", id="content-type"),
    pytest.param(_msg("x" * 25_001), None, "messages[2].content has 25001 characters", id="long"),
    pytest.param(_msg(peer_id="bad id"), ("peer_id",), "pattern", id="peer-id"),
    pytest.param(_msg(role="user"), ("role",), "extra_forbidden", id="unknown-field"),
    pytest.param(_msg(metadata=_nest(9)), ("metadata",), "deeper", id="deep-metadata"),
    pytest.param(_msg(metadata={"x": math.inf}), ("metadata",), "non-finite", id="inf"),
    pytest.param(
        _msg(created_at="9999-12-31T23:00:00-05:00"),
        ("created_at",),
        "outside years 1-9999",
        id="created-at-overflow",
    ),
    pytest.param(
        _msg(created_at="0001-01-01T00:30:00+01:00"),
        ("created_at",),
        "outside years 1-9999",
        id="created-at-underflow",
    ),
]


@pytest.mark.parametrize(("bad", "loc", "fragment"), BAD_MEMBERS)
async def test_one_bad_message_rejects_the_whole_batch(
    api: httpx.AsyncClient,
    db: DB,
    ws: str,
    bad: Json,
    loc: tuple[Any, ...] | None,
    fragment: str,
) -> None:
    # New authors too: their auto-join must not survive the rejection either.
    batch = [_msg("first", peer_id=_fresh("p")), _msg("second", peer_id=_fresh("p")), bad]
    url = f"/v3/workspaces/{ws}/sessions/s1/messages"
    detail = await _rejected(api, db, "POST", url, {"messages": batch})
    if loc is None:
        assert isinstance(detail, str)
        assert fragment in detail
    else:
        _assert_error(detail, ("body", "messages", 2, *loc), fragment)


async def test_created_at_at_the_edges_of_the_range_is_stored(
    api: httpx.AsyncClient, ws: str
) -> None:
    batch = [
        _msg("old", created_at="0001-01-01T00:00:00Z"),
        _msg("new", created_at="9999-12-31T23:59:59+00:00"),
    ]
    r = await _send(api, "POST", f"/v3/workspaces/{ws}/sessions/s1/messages", {"messages": batch})
    assert r.status_code == 201, r.text
    assert [m["created_at"][:19] for m in r.json()] == [
        "0001-01-01T00:00:00",
        "9999-12-31T23:59:59",
    ]


# -- property: never 5xx; 201 if and only if the batch was stored ---------------------------

_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | _text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=12,
)
_message_like = st.fixed_dictionaries(
    {
        "peer_id": st.sampled_from(["alice", "bob", "b-2"]) | _json_values,
        "content": _text | _json_values,
    },
    optional={
        "metadata": st.dictionaries(_text, _json_values, max_size=4) | _json_values,
        "created_at": st.sampled_from(
            ["2024-01-01T00:00:00Z", "2024-01-01", "0001-01-01T00:00:00-01:00"]
        )
        | _json_values,
        "configuration": st.fixed_dictionaries({"reasoning": _json_values}) | _json_values,
    },
)
_batches = st.one_of(
    st.fixed_dictionaries({"messages": st.lists(_message_like, min_size=1, max_size=4)}),
    st.fixed_dictionaries({"messages": _json_values}),
    _json_values,
)
_PROPERTY = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


async def _post_and_check(api: httpx.AsyncClient, db: DB, url: str, body: Json) -> None:
    before = await _counts(db)
    r = await _send(api, "POST", url, body)
    assert r.status_code < 500, r.text
    after = await _counts(db)
    stored = after["messages"] - before["messages"]
    if r.status_code == 201:
        sent = body["messages"]
        assert [m["content"] for m in r.json()] == [m["content"] for m in sent]
        assert stored == len(sent)
        assert after["outbox"] - before["outbox"] == len(sent)
    else:
        assert 400 <= r.status_code < 500, r.text
        assert r.json()["detail"]
        assert after == before


@_PROPERTY
@given(body=_batches)
async def test_random_message_batches_never_5xx(
    api: httpx.AsyncClient, db: DB, ws: str, body: Json
) -> None:
    await _post_and_check(api, db, f"/v3/workspaces/{ws}/sessions/s1/messages", body)


@_PROPERTY
@given(metadata=st.dictionaries(_text, _json_values, max_size=5))
async def test_random_metadata_never_5xx(
    api: httpx.AsyncClient, db: DB, ws: str, metadata: Json
) -> None:
    body = {"messages": [_msg(metadata=metadata)]}
    await _post_and_check(api, db, f"/v3/workspaces/{ws}/sessions/s1/messages", body)
