"""The fuzzing harness itself finds what it is meant to find (no database needed): a 500, an
undocumented status, a body that contradicts its schema and a wrong content type, each once
per operation and mode, with the request that triggered it; and an SSE event whose JSON
payload contradicts its declared schema."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Annotated

import pytest
import schemathesis
from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel
from schemathesis.python.asgi import shutdown_lifespans

from libs.common.http import sse_responses
from tests.reliability.fuzzing import Seed, _lax_coercion, fuzz


class Item(BaseModel):
    id: str
    size: int


def broken_app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}", response_model=Item)
    async def get_item(item_id: str, size: Annotated[int, Query(ge=0, le=10)] = 0) -> Item:
        if size >= 5:
            raise RuntimeError("boom")  # unhandled: 500
        return Item(id=item_id, size=size)

    @app.get("/shape", response_model=Item)
    async def shape() -> JSONResponse:
        return JSONResponse({"id": 1, "size": "large"})  # contradicts Item

    @app.get("/teapot", response_model=Item)
    async def teapot() -> JSONResponse:
        return JSONResponse({"id": "t", "size": 1}, status_code=418)  # undocumented

    @app.get("/text", response_model=Item)
    async def text() -> PlainTextResponse:
        return PlainTextResponse("id=t size=1")  # declared JSON

    @app.get("/stream", response_model=Item, responses=sse_responses(Item, "Items"))
    async def stream() -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            yield b'data: {"id": "a", "size": 1}\n\n'
            yield b'data: {"id": "b", "size": "large"}\n\n'  # contradicts Item

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@pytest.fixture
def schema() -> schemathesis.BaseSchema:
    yield schemathesis.openapi.from_asgi("/openapi.json", broken_app())
    shutdown_lifespans()


def test_harness_reports_every_kind_of_failure(schema: schemathesis.BaseSchema) -> None:
    seen_items: list[str] = []

    def seed() -> Seed:
        seen_items.append("seeded")
        return Seed({"item_id": "known"})

    report = fuzz(schema, seed=seed, examples=20)

    assert sorted(report.operations) == [
        "GET /items/{item_id}",
        "GET /shape",
        "GET /stream",
        "GET /teapot",
        "GET /text",
    ]
    codes = {(op, mode, code) for op, mode, code in report.failures}
    assert ("GET /items/{item_id}", "positive", "ST101") in codes  # server error
    assert ("GET /shape", "positive", "ST108") in codes  # body violates the schema
    assert ("GET /teapot", "positive", "ST103") in codes  # undocumented status
    assert ("GET /text", "positive", "ST105") in codes  # undocumented content type
    assert ("GET /stream", "positive", "ST108") in codes  # an SSE event's JSON payload
    boom = report.failures[("GET /items/{item_id}", "positive", "ST101")]
    assert boom.status == 500 and "size=" in boom.request
    assert report.server_errors >= 1 and report.requests >= 20
    # Routes without parameters have no negative case; nothing else went wrong.
    assert sorted(report.no_cases) == [
        "GET /shape [negative]",
        "GET /stream [negative]",
        "GET /teapot [negative]",
        "GET /text [negative]",
    ]
    assert not report.errors
    # Seeded objects are made once per operation.
    assert len(seen_items) == 5


@pytest.mark.parametrize(
    ("message", "body", "coerced"),
    [
        # Found by campaigns: pydantic (like Honcho's server) takes 0 / 0.0 as false.
        (
            "Invalid component: in body - violates `type` at /properties/configuration/anyOf/0"
            "/properties/peer_card/anyOf/0/properties/create/anyOf/1 (was null, became integer)",
            {"configuration": {"peer_card": {"create": 0}}},
            True,
        ),
        (
            "Invalid component: in body - violates `anyOf` at /properties/configuration/anyOf/0"
            "/properties/summary/anyOf/0/properties/enabled",
            {"configuration": {"summary": {"enabled": 0.0}}},
            True,
        ),
        ("in body - violates `type` at /properties/top_k", {"top_k": "7"}, True),
        # Not a coercion: the check must keep failing for these.
        ("in body - violates `anyOf` at /properties/target", {"target": "no/slash"}, False),
        ("in body - violates `maxLength` at /properties/id", {"id": "x" * 600}, False),
        ("in body - violates `type` at /properties/peers", {"peers": []}, False),
        ("in body - violates `type` at /properties/messages/items", {"messages": [1]}, False),
    ],
)
def test_only_scalar_type_coercions_are_tolerated(
    message: str, body: object, coerced: bool
) -> None:
    assert _lax_coercion(SimpleNamespace(body=body), message) is coerced  # type: ignore[arg-type]
