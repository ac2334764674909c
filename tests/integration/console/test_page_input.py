"""Invalid parameters on a console page render the console's error page (HTML, 422, naming the
field), while the console's JSON endpoints and the API keep their JSON errors."""

from __future__ import annotations

import httpx


async def test_an_invalid_page_parameter_renders_an_html_error_naming_it(
    client: httpx.AsyncClient, ws_id: str
) -> None:
    assert (await client.post("/v3/workspaces", json={"id": ws_id})).status_code == 201
    r = await client.get(f"/console/w/{ws_id}/playground", params={"tokens": "0"})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("text/html")
    assert "parameters were not valid" in r.text
    assert "tokens: Input should be greater than or equal to 1" in r.text

    r = await client.get("/console/", params={"page": "zero"})
    assert r.status_code == 422 and r.headers["content-type"].startswith("text/html")
    assert "page: Input should be a valid integer" in r.text


async def test_the_api_keeps_its_json_422(client: httpx.AsyncClient, ws_id: str) -> None:
    r = await client.post("/v3/workspaces/list", params={"page": "zero"})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/json")
    assert "detail" in r.json()
