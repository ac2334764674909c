"""The filter DSL (libs/common/filters.py) through the real ``POST …/list`` routes.

Each test posts one filter over a small data set and asserts the exact set of ids returned.
Server-generated ids (messages, conclusions) and workspace ids are written as ``@label``
placeholders in the parametrized filters and substituted before the request.

The data sets are read-only, so each is built once per module in its own workspace (see
:func:`_cached`) instead of once per case; the workspace-list cases need a clean database and
use the truncating ``client`` fixture.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import AppFactory, InfraEndpoints

Json = Any
DB = psycopg.AsyncConnection[Any]
Built = tuple[str, dict[str, str]]
_BUILT: dict[str, tuple[str, Any]] = {}


@pytest.fixture
async def api(app_factory: AppFactory) -> httpx.AsyncClient:
    """The default app, without truncating the database first (unlike ``client``)."""
    return await app_factory()


async def _cached(
    api: httpx.AsyncClient,
    infra: InfraEndpoints,
    name: str,
    build: Callable[[httpx.AsyncClient, str, DB], Awaitable[Any]],
) -> Any:
    """``build``'s result for a fresh workspace, reused while that workspace still exists."""
    hit = _BUILT.get(name)
    if hit is not None:
        r = await api.post("/v3/workspaces", json={"id": hit[0]})
        if r.status_code == 200:
            return hit[1]
        # 201: a test using the ``client`` fixture truncated the database since; rebuild.
    ws_id = f"ws-{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(infra.dsn, autocommit=True) as db:
        data = await build(api, ws_id, db)
    _BUILT[name] = (ws_id, data)
    return data


# -- helpers -------------------------------------------------------------------------------


def _substitute(value: Json, ids: dict[str, str]) -> Json:
    """Replace ``"@label"`` strings anywhere in ``value`` by ``ids[label]``."""
    if isinstance(value, str) and value.startswith("@") and value[1:] in ids:
        return ids[value[1:]]
    if isinstance(value, dict):
        return {k: _substitute(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, ids) for v in value]
    return value


async def _list(client: httpx.AsyncClient, url: str, filters: Json) -> httpx.Response:
    return await client.post(url, params={"size": 100}, json={"filters": filters})


async def _labels(
    client: httpx.AsyncClient, url: str, filters: Json, ids: dict[str, str]
) -> set[str]:
    """The labels of the items a filtered list returns (asserting a 200 and a true total)."""
    r = await _list(client, url, _substitute(filters, ids))
    assert r.status_code == 200, r.text
    body = r.json()
    by_id = {v: k for k, v in ids.items()}
    got = [by_id.get(item["id"], f"?{item['id']}") for item in body["items"]]
    assert body["total"] == len(got)
    assert len(set(got)) == len(got), got
    return set(got)


def _split(labels: str) -> set[str]:
    return set(labels.split()) if labels else set()


async def _create_workspace(client: httpx.AsyncClient, ws_id: str) -> None:
    r = await client.post("/v3/workspaces", json={"id": ws_id})
    assert r.status_code == 201, r.text


async def _set_created_at(db: DB, table: str, ws_id: str, when: dict[str, str]) -> None:
    """Backdate rows (the API does not take ``created_at`` for these resources)."""
    column = "id" if table == "workspaces" else "workspace_id"
    for row_id, ts in when.items():
        if table == "workspaces":
            cur = await db.execute(
                "update workspaces set created_at = %s where id = %s", (ts, row_id)
            )
        else:
            cur = await db.execute(
                f"update {table} set created_at = %s where {column} = %s and id = %s",  # noqa: S608
                (ts, ws_id, row_id),
            )
        assert cur.rowcount == 1


# -- messages ------------------------------------------------------------------------------

MESSAGES = [
    # label, peer, content (token count), created_at, metadata
    (
        "m1",
        "alice",
        "alpha",
        1,
        "2024-01-01T00:00:00Z",
        {
            "score": 1,
            "tag": "red",
            "nested": {"a": {"b": 1}},
            "title": "100% done",
            "flag": True,
        },
    ),
    (
        "m2",
        "bob",
        "beta gamma",
        2,
        "2024-02-01T00:00:00Z",
        {
            "score": 3,
            "tag": "blue",
            "nested": {"a": {"b": 2}},
            "title": "file_name",
            "flag": False,
        },
    ),
    (
        "m3",
        "alice",
        "Gamma delta epsilon",
        3,
        "2024-03-01T00:00:00Z",
        {"score": 5.5, "tag": "Red", "title": "filename", "list": [1, 2]},
    ),
    (
        "m4",
        "carol",
        "one two three four five six seven",
        7,
        "2024-04-01T00:00:00Z",
        {"score": "3", "title": "back\\slash", "list": [2, 3]},
    ),
    ("m5", "bob", "x", 1, "2024-05-01T00:00:00Z", {}),
]


async def _build_messages(client: httpx.AsyncClient, ws_id: str, db: DB) -> Built:
    """Session ``s1`` with the five messages above; returns (list url, label → id)."""
    await _create_workspace(client, ws_id)
    r = await client.post(f"/v3/workspaces/{ws_id}/sessions", json={"id": "s1"})
    assert r.status_code == 201, r.text
    # A message in another session must never leak into s1's list.
    r = await client.post(f"/v3/workspaces/{ws_id}/sessions", json={"id": "s2"})
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/v3/workspaces/{ws_id}/sessions/s2/messages",
        json={"messages": [{"peer_id": "alice", "content": "alpha", "metadata": {"tag": "red"}}]},
    )
    assert r.status_code == 201, r.text
    base = f"/v3/workspaces/{ws_id}/sessions/s1/messages"
    r = await client.post(
        base,
        json={
            "messages": [
                {"peer_id": peer, "content": content, "created_at": ts, "metadata": md}
                for _, peer, content, _, ts, md in MESSAGES
            ]
        },
    )
    assert r.status_code == 201, r.text
    stored = r.json()
    assert [m["token_count"] for m in stored] == [m[3] for m in MESSAGES]
    ids = {label: m["id"] for (label, *_), m in zip(MESSAGES, stored, strict=True)}
    ids["ws"] = ws_id
    return f"{base}/list", ids


@pytest.fixture
async def messages(api: httpx.AsyncClient, infra: InfraEndpoints) -> Built:
    return await _cached(api, infra, "messages", _build_messages)  # type: ignore[no-any-return]


ALL_MESSAGES = "m1 m2 m3 m4 m5"

MESSAGE_CASES: list[tuple[str, Json, str]] = [
    # text columns: equality, bare list, every operator
    ("eq", {"peer_id": "alice"}, "m1 m3"),
    ("bare-list", {"peer_id": ["alice", "carol"]}, "m1 m3 m4"),
    ("in", {"peer_id": {"in": ["bob"]}}, "m2 m5"),
    ("in-empty", {"peer_id": {"in": []}}, ""),
    ("ne", {"peer_id": {"ne": "bob"}}, "m1 m3 m4"),
    ("contains", {"peer_id": {"contains": "o"}}, "m2 m4 m5"),
    ("contains-is-case-sensitive", {"peer_id": {"contains": "AL"}}, ""),
    ("icontains", {"peer_id": {"icontains": "AL"}}, "m1 m3"),
    ("gte-text", {"peer_id": {"gte": "bob"}}, "m2 m4 m5"),
    ("gt-text", {"peer_id": {"gt": "bob"}}, "m4"),
    ("lt-text", {"peer_id": {"lt": "bob"}}, "m1 m3"),
    ("lte-text", {"peer_id": {"lte": "bob"}}, "m1 m2 m3 m5"),
    ("ops-combined", {"peer_id": {"gte": "alice", "ne": "alice", "lt": "carol"}}, "m2 m5"),
    ("wildcard", {"peer_id": "*"}, ALL_MESSAGES),
    ("session-id", {"session_id": "s1"}, ALL_MESSAGES),
    ("other-session-id", {"session_id": "s2"}, ""),
    ("workspace-id", {"workspace_id": "@ws"}, ALL_MESSAGES),
    ("id-eq", {"id": "@m2"}, "m2"),
    ("id-bare-list", {"id": ["@m1", "@m3"]}, "m1 m3"),
    ("id-in", {"id": {"in": ["@m4", "nope"]}}, "m4"),
    ("id-ne", {"id": {"ne": "@m1"}}, "m2 m3 m4 m5"),
    # created_at (datetimes, with Z, +00:00 and other offsets)
    ("dt-eq", {"created_at": "2024-03-01T00:00:00Z"}, "m3"),
    ("dt-gte", {"created_at": {"gte": "2024-02-01T00:00:00Z"}}, "m2 m3 m4 m5"),
    ("dt-gt", {"created_at": {"gt": "2024-02-01T00:00:00Z"}}, "m3 m4 m5"),
    ("dt-lt", {"created_at": {"lt": "2024-03-01T00:00:00+00:00"}}, "m1 m2"),
    ("dt-lte", {"created_at": {"lte": "2024-03-01T00:00:00Z"}}, "m1 m2 m3"),
    ("dt-ne", {"created_at": {"ne": "2024-03-01T00:00:00Z"}}, "m1 m2 m4 m5"),
    (
        "dt-offset-range",
        # 23:00 at -01:00 is midnight UTC on April 1st: m4 is not before it.
        {"created_at": {"gte": "2024-02-01T01:00:00+01:00", "lt": "2024-03-31T23:00:00-01:00"}},
        "m2 m3",
    ),
    ("dt-bare-list", {"created_at": ["2024-01-01T00:00:00Z", "2024-05-01T00:00:00Z"]}, "m1 m5"),
    ("dt-in", {"created_at": {"in": ["2024-04-01T00:00:00+00:00"]}}, "m4"),
    # token_count (integers)
    ("int-eq", {"token_count": 1}, "m1 m5"),
    ("int-gte", {"token_count": {"gte": 2}}, "m2 m3 m4"),
    ("int-gt", {"token_count": {"gt": 2}}, "m3 m4"),
    ("int-lt", {"token_count": {"lt": 3}}, "m1 m2 m5"),
    ("int-lte-gte", {"token_count": {"lte": 3, "gte": 2}}, "m2 m3"),
    ("int-ne", {"token_count": {"ne": 1}}, "m2 m3 m4"),
    ("int-bare-list", {"token_count": [2, 7]}, "m2 m4"),
    ("int-in", {"token_count": {"in": [3]}}, "m3"),
    ("int-64-bit-bounds", {"token_count": {"lt": 2**40, "gt": -(2**63)}}, ALL_MESSAGES),
    # metadata: JSON containment
    ("md-eq", {"metadata": {"tag": "red"}}, "m1"),
    ("md-two-keys", {"metadata": {"tag": "red", "score": 1}}, "m1"),
    ("md-nested", {"metadata": {"nested": {"a": {"b": 2}}}}, "m2"),
    ("md-nested-empty-object", {"metadata": {"nested": {"a": {}}}}, "m1 m2"),
    ("md-array-subset", {"metadata": {"list": [2]}}, "m3 m4"),
    ("md-array-two", {"metadata": {"list": [1, 2]}}, "m3"),
    ("md-bool", {"metadata": {"flag": False}}, "m2"),
    ("md-string-is-not-number", {"metadata": {"score": "3"}}, "m4"),
    ("md-empty", {"metadata": {}}, ALL_MESSAGES),
    ("md-key-wildcard", {"metadata": {"tag": "*"}}, "m1 m2 m3"),
    ("md-wildcard", {"metadata": "*"}, ALL_MESSAGES),
    # metadata: per-key operators (numbers compare only with numbers)
    ("md-gte", {"metadata": {"score": {"gte": 3}}}, "m2 m3"),
    ("md-gt", {"metadata": {"score": {"gt": 3}}}, "m3"),
    ("md-lt", {"metadata": {"score": {"lt": 3}}}, "m1"),
    ("md-lte", {"metadata": {"score": {"lte": 3}}}, "m1 m2"),
    ("md-range", {"metadata": {"score": {"gte": 1, "lt": 5}}}, "m1 m2"),
    ("md-gte-float", {"metadata": {"score": {"gte": 5.5}}}, "m3"),
    ("md-ne-number", {"metadata": {"score": {"ne": 3}}}, "m1 m3 m4 m5"),
    ("md-in-numbers", {"metadata": {"score": {"in": [1, 5.5]}}}, "m1 m3"),
    ("md-in-string", {"metadata": {"score": {"in": ["3"]}}}, "m4"),
    ("md-in-strings", {"metadata": {"tag": {"in": ["red", "blue"]}}}, "m1 m2"),
    ("md-in-empty", {"metadata": {"tag": {"in": []}}}, ""),
    ("md-ne-string", {"metadata": {"tag": {"ne": "red"}}}, "m2 m3 m4 m5"),
    ("md-ne-bool", {"metadata": {"flag": {"ne": True}}}, "m2 m3 m4 m5"),
    ("md-in-bool", {"metadata": {"flag": {"in": [True]}}}, "m1"),
    ("md-contains", {"metadata": {"tag": {"contains": "e"}}}, "m1 m2 m3"),
    ("md-contains-case", {"metadata": {"tag": {"contains": "Re"}}}, "m3"),
    ("md-icontains", {"metadata": {"tag": {"icontains": "RE"}}}, "m1 m3"),
    ("md-lt-string", {"metadata": {"title": {"lt": "c"}}}, "m1 m4"),
    ("md-ops-and-containment", {"metadata": {"score": {"gte": 3}, "tag": "blue"}}, "m2"),
    # LIKE metacharacters are literal
    ("escape-percent", {"metadata": {"title": {"contains": "%"}}}, "m1"),
    ("escape-percent-inner", {"metadata": {"title": {"contains": "0% d"}}}, "m1"),
    ("escape-underscore", {"metadata": {"title": {"contains": "_"}}}, "m2"),
    ("escape-underscore-icontains", {"metadata": {"title": {"icontains": "E_N"}}}, "m2"),
    ("escape-backslash", {"metadata": {"title": {"contains": "\\"}}}, "m4"),
    ("escape-both", {"metadata": {"title": {"contains": "%_"}}}, ""),
    # logic
    ("and", {"AND": [{"peer_id": "alice"}, {"token_count": {"gte": 2}}]}, "m3"),
    ("and-empty", {"AND": []}, ALL_MESSAGES),
    ("or", {"OR": [{"peer_id": "carol"}, {"metadata": {"tag": "red"}}]}, "m1 m4"),
    (
        "or-of-and",
        {
            "OR": [
                {"peer_id": "alice"},
                {"AND": [{"peer_id": "bob"}, {"metadata": {"score": {"gte": 3}}}]},
            ]
        },
        "m1 m2 m3",
    ),
    ("not", {"NOT": [{"peer_id": "alice"}]}, "m2 m4 m5"),
    ("not-none-may-match", {"NOT": [{"peer_id": "alice"}, {"peer_id": "carol"}]}, "m2 m5"),
    ("not-missing-key-numeric", {"NOT": [{"metadata": {"score": {"gte": 3}}}]}, "m1 m4 m5"),
    ("not-missing-key-text", {"NOT": [{"metadata": {"tag": {"contains": "e"}}}]}, "m4 m5"),
    ("not-of-or", {"NOT": [{"OR": [{"peer_id": "alice"}, {"token_count": 7}]}]}, "m2 m5"),
    ("not-not", {"NOT": [{"NOT": [{"peer_id": "bob"}]}]}, "m2 m5"),
    ("field-and-not", {"peer_id": "bob", "NOT": [{"token_count": 1}]}, "m2"),
    (
        "and-or-not",
        {
            "AND": [
                {"OR": [{"peer_id": "alice"}, {"peer_id": "bob"}]},
                {"NOT": [{"created_at": {"gte": "2024-03-01T00:00:00Z"}}]},
            ]
        },
        "m1 m2",
    ),
]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [pytest.param(f, e, id=name) for name, f, e in MESSAGE_CASES],
)
async def test_message_filters(
    api: httpx.AsyncClient,
    messages: tuple[str, dict[str, str]],
    filters: Json,
    expected: str,
) -> None:
    url, ids = messages
    assert await _labels(api, url, filters, ids) == _split(expected)


async def test_filters_at_max_depth_are_accepted(
    api: httpx.AsyncClient, messages: tuple[str, dict[str, str]]
) -> None:
    url, ids = messages
    nested: Json = {"peer_id": "alice"}
    for _ in range(10):
        nested = {"AND": [nested]}
    assert await _labels(api, url, nested, ids) == {"m1", "m3"}


# -- 422: the detail names the offending path ----------------------------------------------

ERROR_CASES: list[tuple[str, Json, str, str]] = [
    ("unknown-field", {"bogus": 1}, "filters.bogus", "unknown field 'bogus'"),
    (
        "unknown-field-nested",
        {"OR": [{"peer_id": "a"}, {"AND": [{"nope": 1}]}]},
        "filters.OR[1].AND[0].nope",
        "unknown field 'nope'",
    ),
    ("unknown-operator", {"peer_id": {"like": "a%"}}, "filters.peer_id", "unknown operator"),
    (
        "unknown-operator-mixed",
        {"token_count": {"gte": 1, "between": [1, 2]}},
        "filters.token_count",
        "'between'",
    ),
    ("empty-operator-object", {"peer_id": {}}, "filters.peer_id", "empty operator object"),
    ("string-for-int", {"token_count": {"gte": "5"}}, "filters.token_count.gte", "integer"),
    ("string-for-int-eq", {"token_count": "5"}, "filters.token_count", "integer"),
    ("bool-for-int", {"token_count": True}, "filters.token_count", "integer"),
    ("float-for-int", {"token_count": 1.5}, "filters.token_count", "integer"),
    ("string-in-int-list", {"token_count": [1, "2"]}, "filters.token_count", "integer"),
    ("non-iso-date", {"created_at": {"gte": "yesterday"}}, "filters.created_at.gte", "ISO-8601"),
    ("number-for-date", {"created_at": 1700000000}, "filters.created_at", "ISO-8601"),
    ("number-for-id", {"id": 5}, "filters.id", "expected a string"),
    ("number-in-id-list", {"id": {"in": ["a", 5]}}, "filters.id.in", "expected a string"),
    ("in-not-list", {"peer_id": {"in": "alice"}}, "filters.peer_id.in", "'in' needs a list"),
    (
        "md-in-not-list",
        {"metadata": {"tag": {"in": "red"}}},
        "filters.metadata.tag.in",
        "'in' needs a list",
    ),
    ("contains-on-int", {"token_count": {"contains": "1"}}, "filters.token_count.contains", "text"),
    (
        "contains-on-date",
        {"created_at": {"icontains": "2024"}},
        "filters.created_at.icontains",
        "text",
    ),
    (
        "contains-number",
        {"peer_id": {"contains": 1}},
        "filters.peer_id.contains",
        "expected a string",
    ),
    (
        "md-contains-number",
        {"metadata": {"score": {"contains": 3}}},
        "filters.metadata.score.contains",
        "text values only",
    ),
    (
        "md-gte-bool",
        {"metadata": {"flag": {"gte": True}}},
        "filters.metadata.flag.gte",
        "boolean",
    ),
    (
        "md-gte-object",
        {"metadata": {"score": {"gte": {"a": 1}}}},
        "filters.metadata.score.gte",
        "strings, numbers or booleans",
    ),
    ("md-not-object", {"metadata": "red"}, "filters.metadata", "must be an object"),
    ("md-list", {"metadata": ["red"]}, "filters.metadata", "must be an object"),
    ("and-not-list", {"AND": {"peer_id": "a"}}, "filters.AND", "'AND' needs a list"),
    ("not-not-list", {"NOT": {"peer_id": "a"}}, "filters.NOT", "'NOT' needs a list"),
    ("not-item-not-object", {"NOT": ["alice"]}, "filters.NOT[0]", "must be an object"),
    ("nul-in-text", {"peer_id": "a\x00b"}, "filters.peer_id", "NUL"),
    ("nul-in-md-value", {"metadata": {"tag": "r\x00"}}, "filters.metadata.tag", "NUL"),
    ("nul-in-md-key", {"metadata": {"t\x00g": "r"}}, "filters.metadata", "NUL"),
    ("huge-int", {"token_count": {"gte": 2**64}}, "filters.token_count.gte", "64-bit"),
    (
        "huge-int-md",
        {"metadata": {"score": {"gte": 10**30}}},
        "filters.metadata.score.gte",
        "64-bit",
    ),
]


@pytest.mark.parametrize(
    ("filters", "path", "fragment"),
    [pytest.param(f, p, frag, id=name) for name, f, p, frag in ERROR_CASES],
)
async def test_bad_filter_is_422_naming_the_path(
    api: httpx.AsyncClient,
    messages: tuple[str, dict[str, str]],
    filters: Json,
    path: str,
    fragment: str,
) -> None:
    url, _ = messages
    r = await _list(api, url, filters)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str)
    assert detail.startswith(f"Invalid filter at '{path}':"), detail
    assert fragment in detail


@pytest.mark.parametrize(
    ("raw", "path", "fragment"),
    [
        pytest.param(
            b'{"filters": {"metadata": {"score": NaN}}}',
            "filters.metadata.score",
            "finite",
            id="nan",
        ),
        pytest.param(
            b'{"filters": {"metadata": {"score": {"gte": -Infinity}}}}',
            "filters.metadata.score.gte",
            "finite",
            id="-inf",
        ),
        pytest.param(
            b'{"filters": {"peer_id": "\\ud800"}}', "filters.peer_id", "surrogates", id="surrogate"
        ),
        pytest.param(
            b'{"filters": {"metadata": {"\\udc00": 1}}}',
            "filters.metadata",
            "surrogates",
            id="surrogate-key",
        ),
    ],
)
async def test_unstorable_filter_values_are_422(
    api: httpx.AsyncClient,
    messages: tuple[str, dict[str, str]],
    raw: bytes,
    path: str,
    fragment: str,
) -> None:
    url, _ = messages
    r = await api.post(url, content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith(f"Invalid filter at '{path}':"), detail
    assert fragment in detail


async def test_filters_nested_too_deep_are_422(
    api: httpx.AsyncClient, messages: tuple[str, dict[str, str]]
) -> None:
    url, _ = messages
    nested: Json = {"peer_id": "alice"}
    for _ in range(11):
        nested = {"AND": [nested]}
    r = await _list(api, url, nested)
    assert r.status_code == 422, r.text
    path = "filters" + ".AND[0]" * 11
    assert r.json()["detail"] == f"Invalid filter at '{path}': filters nest deeper than 10 levels"


@pytest.mark.parametrize(
    "filters", [pytest.param(v, id=repr(v)) for v in ("peer_id", ["peer_id"], 1, True)]
)
async def test_filters_that_are_not_an_object_are_422(
    api: httpx.AsyncClient, messages: tuple[str, dict[str, str]], filters: Json
) -> None:
    url, _ = messages
    r = await api.post(url, json={"filters": filters})
    assert r.status_code == 422, r.text
    [err] = r.json()["detail"]
    assert err["loc"] == ["body", "filters"]
    assert err["type"] == "dict_type"


async def test_unknown_list_body_key_is_422(
    api: httpx.AsyncClient, messages: tuple[str, dict[str, str]]
) -> None:
    url, _ = messages
    r = await api.post(url, json={"filter": {"peer_id": "alice"}})
    assert r.status_code == 422, r.text
    [err] = r.json()["detail"]
    assert err["loc"] == ["body", "filter"]
    assert err["type"] == "extra_forbidden"


# -- peers ---------------------------------------------------------------------------------


async def _build_peers(client: httpx.AsyncClient, ws_id: str, db: DB) -> Built:
    await _create_workspace(client, ws_id)
    specs = {
        "a_b": {"team": "red", "profile": {"lang": "en", "tz": "UTC"}},
        "axb": {"team": "blue", "profile": {"lang": "fr"}},
        "ABC": {"team": "red", "level": 10},
    }
    for pid, md in specs.items():
        r = await client.post(f"/v3/workspaces/{ws_id}/peers", json={"id": pid, "metadata": md})
        assert r.status_code == 201, r.text
    await _set_created_at(
        db,
        "peers",
        ws_id,
        {
            "a_b": "2024-01-01T00:00:00Z",
            "axb": "2024-06-01T00:00:00Z",
            "ABC": "2025-01-01T00:00:00Z",
        },
    )
    ids = {p: p for p in specs} | {"ws": ws_id}
    return f"/v3/workspaces/{ws_id}/peers/list", ids


@pytest.fixture
async def peers(api: httpx.AsyncClient, infra: InfraEndpoints) -> Built:
    return await _cached(api, infra, "peers", _build_peers)  # type: ignore[no-any-return]


PEER_CASES: list[tuple[str, Json, str]] = [
    ("id-eq", {"id": "axb"}, "axb"),
    ("id-bare-list", {"id": ["axb", "ABC", "zzz"]}, "axb ABC"),
    ("id-contains-underscore-is-literal", {"id": {"contains": "_"}}, "a_b"),
    ("id-icontains-underscore", {"id": {"icontains": "A_"}}, "a_b"),
    ("id-contains", {"id": {"contains": "a"}}, "a_b axb"),
    ("id-icontains", {"id": {"icontains": "a"}}, "a_b axb ABC"),
    ("id-ne", {"id": {"ne": "ABC"}}, "a_b axb"),
    ("workspace", {"workspace_id": "@ws"}, "a_b axb ABC"),
    ("workspace-other", {"workspace_id": "other"}, ""),
    ("dt-lt", {"created_at": {"lt": "2024-06-01T00:00:00Z"}}, "a_b"),
    ("dt-lte", {"created_at": {"lte": "2024-06-01T00:00:00Z"}}, "a_b axb"),
    ("dt-gt", {"created_at": {"gt": "2024-06-01T00:00:00Z"}}, "ABC"),
    ("dt-gte-date-and-offset", {"created_at": {"gte": "2024-05-31T20:00:00-04:00"}}, "axb ABC"),
    ("md-nested", {"metadata": {"profile": {"lang": "en"}}}, "a_b"),
    ("md-nested-key-wildcard", {"metadata": {"profile": "*"}}, "a_b axb"),
    ("md-number-op", {"metadata": {"level": {"gte": 10}}}, "ABC"),
    ("md-in", {"metadata": {"team": {"in": ["blue", "green"]}}}, "axb"),
    ("md-or", {"OR": [{"metadata": {"team": "blue"}}, {"id": "ABC"}]}, "axb ABC"),
    ("md-not", {"NOT": [{"metadata": {"team": "red"}}]}, "axb"),
]


@pytest.mark.parametrize(
    ("filters", "expected"), [pytest.param(f, e, id=name) for name, f, e in PEER_CASES]
)
async def test_peer_filters(
    api: httpx.AsyncClient, peers: tuple[str, dict[str, str]], filters: Json, expected: str
) -> None:
    url, ids = peers
    assert await _labels(api, url, filters, ids) == _split(expected)


# -- sessions ------------------------------------------------------------------------------


async def _build_sessions(client: httpx.AsyncClient, ws_id: str, db: DB) -> Built:
    await _create_workspace(client, ws_id)
    specs = {
        "sa": {"kind": "chat", "meta": {"v": 1}},
        "sb": {"kind": "import"},
        "sc": {"kind": "chat", "meta": {"v": 2}},
    }
    for sid, md in specs.items():
        r = await client.post(f"/v3/workspaces/{ws_id}/sessions", json={"id": sid, "metadata": md})
        assert r.status_code == 201, r.text
    # No route deactivates a session; do it in the database.
    cur = await db.execute(
        "update sessions set is_active = false where workspace_id = %s and id = 'sb'", (ws_id,)
    )
    assert cur.rowcount == 1
    await _set_created_at(
        db,
        "sessions",
        ws_id,
        {
            "sa": "2024-01-01T00:00:00Z",
            "sb": "2024-02-01T00:00:00Z",
            "sc": "2024-03-01T00:00:00Z",
        },
    )
    return f"/v3/workspaces/{ws_id}/sessions/list", {s: s for s in specs}


@pytest.fixture
async def sessions(api: httpx.AsyncClient, infra: InfraEndpoints) -> Built:
    return await _cached(api, infra, "sessions", _build_sessions)  # type: ignore[no-any-return]


SESSION_CASES: list[tuple[str, Json, str]] = [
    ("active-true", {"is_active": True}, "sa sc"),
    ("active-false", {"is_active": False}, "sb"),
    ("active-ne", {"is_active": {"ne": True}}, "sb"),
    ("active-bare-list", {"is_active": [False]}, "sb"),
    ("active-in-both", {"is_active": {"in": [True, False]}}, "sa sb sc"),
    ("active-wildcard", {"is_active": "*"}, "sa sb sc"),
    ("active-and-metadata", {"is_active": True, "metadata": {"meta": {"v": 2}}}, "sc"),
    ("id-gt", {"id": {"gt": "sa"}}, "sb sc"),
    (
        "dt-range",
        {"created_at": {"gt": "2024-01-01T00:00:00Z", "lte": "2024-03-01T00:00Z"}},
        "sb sc",
    ),
    ("dt-in", {"created_at": ["2024-02-01T00:00:00+00:00"]}, "sb"),
    ("md-number-op-nested-is-containment", {"metadata": {"meta": {"v": 1}}}, "sa"),
    ("not-active-or-import", {"NOT": [{"is_active": False}, {"metadata": {"v": 1}}]}, "sa sc"),
]


@pytest.mark.parametrize(
    ("filters", "expected"), [pytest.param(f, e, id=name) for name, f, e in SESSION_CASES]
)
async def test_session_filters(
    api: httpx.AsyncClient, sessions: tuple[str, dict[str, str]], filters: Json, expected: str
) -> None:
    url, ids = sessions
    assert await _labels(api, url, filters, ids) == _split(expected)


@pytest.mark.parametrize(
    ("filters", "path", "fragment"),
    [
        pytest.param({"is_active": "yes"}, "filters.is_active", "true or false", id="string"),
        pytest.param({"is_active": 1}, "filters.is_active", "true or false", id="number"),
        pytest.param(
            {"is_active": {"gte": True}}, "filters.is_active.gte", "boolean", id="gte-on-bool"
        ),
        pytest.param(
            {"is_active": {"contains": "t"}}, "filters.is_active.contains", "text", id="contains"
        ),
        pytest.param({"token_count": 1}, "filters.token_count", "unknown field", id="not-a-field"),
    ],
)
async def test_bad_session_filter_is_422(
    api: httpx.AsyncClient,
    sessions: tuple[str, dict[str, str]],
    filters: Json,
    path: str,
    fragment: str,
) -> None:
    url, _ = sessions
    r = await _list(api, url, filters)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith(f"Invalid filter at '{path}':"), detail
    assert fragment in detail


# -- workspaces ----------------------------------------------------------------------------


@pytest.fixture
async def workspaces(client: httpx.AsyncClient, db: DB) -> tuple[str, dict[str, str]]:
    specs = {
        "w-one": {"plan": "pro", "limits": {"seats": 5}},
        "w-two": {"plan": "free"},
        "w-three": {"plan": "pro", "limits": {"seats": 50}},
    }
    for wid, md in specs.items():
        r = await client.post("/v3/workspaces", json={"id": wid, "metadata": md})
        assert r.status_code == 201, r.text
    await _set_created_at(
        db,
        "workspaces",
        "",
        {
            "w-one": "2024-01-01T00:00:00Z",
            "w-two": "2024-02-01T00:00:00Z",
            "w-three": "2024-03-01T00:00:00Z",
        },
    )
    return "/v3/workspaces/list", {w: w for w in specs}


WORKSPACE_CASES: list[tuple[str, Json, str]] = [
    ("id-contains", {"id": {"contains": "w-t"}}, "w-two w-three"),
    ("id-in", {"id": {"in": ["w-one", "w-x"]}}, "w-one"),
    ("md", {"metadata": {"plan": "pro"}}, "w-one w-three"),
    ("md-nested", {"metadata": {"limits": {"seats": 50}}}, "w-three"),
    ("md-nested-op-is-containment", {"metadata": {"limits": {"seats": {"gte": 5}}}}, ""),
    ("not", {"NOT": [{"id": "w-one"}]}, "w-two w-three"),
    ("dt", {"created_at": {"gte": "2024-02-01T00:00:00Z"}}, "w-two w-three"),
    (
        "or-dt-md",
        {"OR": [{"created_at": {"lt": "2024-02-01T00:00:00Z"}}, {"id": "w-two"}]},
        "w-one w-two",
    ),
]


@pytest.mark.parametrize(
    ("filters", "expected"), [pytest.param(f, e, id=name) for name, f, e in WORKSPACE_CASES]
)
async def test_workspace_filters(
    client: httpx.AsyncClient, workspaces: tuple[str, dict[str, str]], filters: Json, expected: str
) -> None:
    url, ids = workspaces
    assert await _labels(client, url, filters, ids) == _split(expected)


# -- conclusions ---------------------------------------------------------------------------


async def _build_conclusions(client: httpx.AsyncClient, ws_id: str, db: DB) -> Built:
    await _create_workspace(client, ws_id)
    for pid in ("alice", "bob", "carol"):
        r = await client.post(f"/v3/workspaces/{ws_id}/peers", json={"id": pid})
        assert r.status_code == 201, r.text
    r = await client.post(f"/v3/workspaces/{ws_id}/sessions", json={"id": "s1"})
    assert r.status_code == 201, r.text
    specs = [
        ("c1", "alice", "alice", "s1", "likes 100% green tea"),
        ("c2", "alice", "bob", None, "bob plays chess"),
        ("c3", "bob", "alice", "s1", "alice_is tall"),
        ("c4", "carol", "bob", None, "bob is kind"),
    ]
    body = [
        {"content": content, "observer_id": obs, "observed_id": obd}
        | ({"session_id": sid} if sid else {})
        for _, obs, obd, sid, content in specs
    ]
    r = await client.post(f"/v3/workspaces/{ws_id}/conclusions", json={"conclusions": body})
    assert r.status_code == 201, r.text
    created = r.json()
    ids = {label: c["id"] for (label, *_), c in zip(specs, created, strict=True)}
    await _set_created_at(
        db,
        "conclusions",
        ws_id,
        {ids[label]: f"2024-0{i}-01T00:00:00Z" for i, label in enumerate(ids, start=1)},
    )
    return f"/v3/workspaces/{ws_id}/conclusions/list", ids


@pytest.fixture
async def conclusions(api: httpx.AsyncClient, infra: InfraEndpoints) -> Built:
    return await _cached(api, infra, "conclusions", _build_conclusions)  # type: ignore[no-any-return]


CONCLUSION_CASES: list[tuple[str, Json, str]] = [
    ("observer", {"observer_id": "alice"}, "c1 c2"),
    ("view", {"observer_id": "alice", "observed_id": "bob"}, "c2"),
    ("observed-bare-list", {"observed_id": ["alice"]}, "c1 c3"),
    ("observer-icontains", {"observer_id": {"icontains": "AR"}}, "c4"),
    ("session", {"session_id": "s1"}, "c1 c3"),
    ("session-null", {"session_id": None}, "c2 c4"),
    ("session-ne-keeps-null", {"session_id": {"ne": "s1"}}, "c2 c4"),
    ("session-not-keeps-null", {"NOT": [{"session_id": "s1"}]}, "c2 c4"),
    ("session-wildcard", {"session_id": "*"}, "c1 c2 c3 c4"),
    ("level", {"level": "explicit"}, "c1 c2 c3 c4"),
    ("level-ne", {"level": {"ne": "explicit"}}, ""),
    ("get-many", {"id": {"in": ["@c1", "@c4"]}, "observer_id": "carol"}, "c4"),
    ("dt-gte", {"created_at": {"gte": "2024-03-01T00:00:00Z"}}, "c3 c4"),
    ("dt-lt", {"created_at": {"lt": "2024-02-01T00:00:00Z"}}, "c1"),
    ("or-not", {"OR": [{"observer_id": "carol"}, {"NOT": [{"observed_id": "bob"}]}]}, "c1 c3 c4"),
]


@pytest.mark.parametrize(
    ("filters", "expected"), [pytest.param(f, e, id=name) for name, f, e in CONCLUSION_CASES]
)
async def test_conclusion_filters(
    api: httpx.AsyncClient,
    conclusions: tuple[str, dict[str, str]],
    filters: Json,
    expected: str,
) -> None:
    url, ids = conclusions
    assert await _labels(api, url, filters, ids) == _split(expected)


async def test_conclusion_list_is_newest_first(
    api: httpx.AsyncClient, conclusions: tuple[str, dict[str, str]]
) -> None:
    url, ids = conclusions
    r = await api.post(url, json={"filters": {"observed_id": "bob"}})
    assert r.status_code == 200, r.text
    assert [i["id"] for i in r.json()["items"]] == [ids["c4"], ids["c2"]]


# -- every list route: unknown fields, null filters, empty bodies ---------------------------


async def _build_every_list(client: httpx.AsyncClient, ws_id: str, db: DB) -> dict[str, Any]:
    """One item under each list route: route name → (url, expected ids with no filter).

    Messages live in a second workspace so that conclusions derived from them (once a deriver
    runs) cannot show up in the conclusion list."""
    await _create_workspace(client, ws_id)
    base = f"/v3/workspaces/{ws_id}"
    r = await client.post(f"{base}/peers", json={"id": "alice"})
    assert r.status_code == 201, r.text
    r = await client.post(f"{base}/sessions", json={"id": "s1"})
    assert r.status_code == 201, r.text
    r = await client.post(
        f"{base}/conclusions",
        json={"conclusions": [{"content": "c", "observer_id": "alice", "observed_id": "alice"}]},
    )
    assert r.status_code == 201, r.text
    conclusion_id = r.json()[0]["id"]
    other = f"{ws_id}-m"
    await _create_workspace(client, other)
    r = await client.post(f"/v3/workspaces/{other}/sessions", json={"id": "s1"})
    assert r.status_code == 201, r.text
    messages = f"/v3/workspaces/{other}/sessions/s1/messages"
    r = await client.post(messages, json={"messages": [{"peer_id": "bob", "content": "hi"}]})
    assert r.status_code == 201, r.text
    message_id = r.json()[0]["id"]
    return {
        "workspaces": ("/v3/workspaces/list", None),  # every workspace: read from the database
        "peers": (f"{base}/peers/list", {"alice"}),
        "sessions": (f"{base}/sessions/list", {"s1"}),
        "messages": (f"{messages}/list", {message_id}),
        "conclusions": (f"{base}/conclusions/list", {conclusion_id}),
    }


@pytest.fixture
async def every_list(api: httpx.AsyncClient, infra: InfraEndpoints) -> dict[str, Any]:
    return await _cached(api, infra, "every_list", _build_every_list)  # type: ignore[no-any-return]


ROUTES = ["workspaces", "peers", "sessions", "messages", "conclusions"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty-body"),
        pytest.param(b'{"filters":null}', id="null-filters"),
        pytest.param(b"{}", id="empty-object"),
        pytest.param(b'{"filters":{}}', id="empty-filters"),
    ],
)
async def test_list_accepts_what_the_sdk_sends(
    api: httpx.AsyncClient,
    db: DB,
    every_list: dict[str, Any],
    route: str,
    body: bytes,
) -> None:
    # The SDK posts an empty body with Content-Type: application/json when there are no filters.
    url, expected = every_list[route]
    if expected is None:
        rows = await (await db.execute("select id from workspaces")).fetchall()
        expected = {row[0] for row in rows}
    r = await api.post(
        url,
        content=body,
        params={"page": 1, "size": 100},
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    page = r.json()
    assert {i["id"] for i in page["items"]} == expected
    assert (page["total"], page["page"], page["size"], page["pages"]) == (len(expected), 1, 100, 1)


@pytest.mark.parametrize("route", ROUTES)
async def test_unknown_filter_field_is_422_on_every_route(
    api: httpx.AsyncClient, every_list: dict[str, Any], route: str
) -> None:
    url, _ = every_list[route]
    r = await _list(api, url, {"AND": [{"colour": "red"}]})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith("Invalid filter at 'filters.AND[0].colour': unknown field 'colour'")


@pytest.mark.parametrize("route", ROUTES)
async def test_filter_matching_nothing_is_an_empty_page(
    api: httpx.AsyncClient, every_list: dict[str, Any], route: str
) -> None:
    url, _ = every_list[route]
    r = await _list(api, url, {"id": {"in": []}})
    assert r.status_code == 200, r.text
    assert r.json() == {"items": [], "total": 0, "page": 1, "size": 100, "pages": 0}
