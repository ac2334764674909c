"""The full-text channel of the hybrid retriever against the real database: the speaker is in
a message's stored tsvector (migration 0004), BM25 ranks the candidates, and a query whose
common word matches more rows than the candidate bound still finds the rare match."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from libs.common.db import create_session_factory, unit_of_work
from libs.common.models import Message
from libs.common.retrieval import hybrid
from libs.common.retrieval.hybrid import MessageScope, full_text_scores, message_conditions
from tests.conftest import InfraEndpoints


async def _messages(client: httpx.AsyncClient, ws: str, lines: list[tuple[str, str]]) -> list[str]:
    r = await client.post("/v3/workspaces", json={"id": ws})
    assert r.status_code == 201, r.text
    peers: dict[str, Any] = {p: {} for p, _ in lines}
    r = await client.post(f"/v3/workspaces/{ws}/sessions", json={"id": "s", "peers": peers})
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/v3/workspaces/{ws}/sessions/s/messages",
        json={"messages": [{"peer_id": p, "content": c} for p, c in lines]},
    )
    assert r.status_code == 201, r.text
    return [m["id"] for m in r.json()]


async def _scores(infra: InfraEndpoints, ws: str, query: str) -> dict[str, float]:
    engine = create_async_engine(infra.database_url, pool_size=1)
    try:
        async with unit_of_work(create_session_factory(engine)) as db:
            conds = message_conditions(MessageScope(workspace_id=ws))
            return await full_text_scores(
                db, Message.id, Message.content_tsv, conds, query, limit=10
            )
    finally:
        await engine.dispose()


async def test_speaker_name_is_searchable_and_bm25_ranks(
    client: httpx.AsyncClient, infra: InfraEndpoints, ws_id: str
) -> None:
    ids = await _messages(
        client,
        ws_id,
        [
            ("caroline", "I went to a pottery class yesterday"),
            ("melanie", "Pottery is so relaxing, I love it"),
            ("melanie", "I painted a sunset by the lake"),
        ],
    )
    # Caroline's message never says "Caroline": only the indexed speaker matches it.
    assert list(await _scores(infra, ws_id, "Caroline?")) == [ids[0]]
    scores = await _scores(infra, ws_id, "What did Caroline do at the pottery class?")
    assert sorted(scores, key=lambda i: scores[i], reverse=True) == [ids[0], ids[1]]
    assert all(0 < s < 1 for s in scores.values())
    assert await _scores(infra, ws_id, "the and of") == {}  # stop words only


async def test_common_word_beyond_the_candidate_bound_still_finds_the_rare_match(
    client: httpx.AsyncClient,
    infra: InfraEndpoints,
    ws_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = [("bob", f"I like day number {i}") for i in range(12)]
    lines.append(("bob", "I like the zanzibar spice market"))
    ids = await _messages(client, ws_id, lines)
    monkeypatch.setattr(hybrid, "TEXT_CANDIDATES", 5)
    scores = await _scores(infra, ws_id, "like zanzibar")
    # "like" matches all 13 rows (> 5): it is dropped from the match, "zanzibar" is kept.
    assert list(scores) == [ids[-1]]
