"""``source_ids`` (a list field) filters as the Honcho SDK's ``conclusions.derived()`` sends it."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest


async def _seed(client: httpx.AsyncClient, db: Any, ws: str) -> None:
    await client.post("/v3/workspaces", json={"id": ws})
    await client.post(f"/v3/workspaces/{ws}/peers", json={"id": "alice"})
    for cid, sources in (("c1", ["m1", "m2"]), ("c2", ["m2"]), ("c3", [])):
        await db.execute(
            "INSERT INTO conclusions (id, workspace_id, observer_id, observed_id, content, "
            "source_ids) VALUES (%s, %s, 'alice', 'alice', %s, %s::jsonb)",
            (cid, ws, f"fact {cid}", orjson.dumps(sources).decode()),
        )


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"source_ids": {"contains": "m1"}}, {"c1"}),
        ({"source_ids": "m2"}, {"c1", "c2"}),
        ({"source_ids": ["m1", "zz"]}, {"c1"}),
        ({"source_ids": {"in": ["m2"]}}, {"c1", "c2"}),
        ({"NOT": [{"source_ids": "m2"}]}, {"c3"}),
    ],
)
async def test_source_ids_filters(
    client: httpx.AsyncClient, db: Any, ws_id: str, flt: dict[str, Any], expected: set[str]
) -> None:
    await _seed(client, db, ws_id)
    r = await client.post(f"/v3/workspaces/{ws_id}/conclusions/list", json={"filters": flt})
    assert r.status_code == 200, r.text
    assert {c["id"] for c in r.json()["items"]} == expected
    assert all("source_ids" in c for c in r.json()["items"])


async def test_source_ids_rejects_ill_typed_values(
    client: httpx.AsyncClient, db: Any, ws_id: str
) -> None:
    await _seed(client, db, ws_id)
    r = await client.post(
        f"/v3/workspaces/{ws_id}/conclusions/list",
        json={"filters": {"source_ids": {"gte": "m1"}}},
    )
    assert r.status_code == 422
    assert "filters.source_ids" in r.json()["detail"]
