"""``peer.chat`` through HTTP with the extractive reasoner: the whole pipeline (ingest, JetStream,
deriver, hybrid retrieval) and the perspective rules, SSE framing, auth and errors."""

from __future__ import annotations

import json

import httpx
import pytest

from libs.common.reasoning.answers import ABSTENTION
from services.dialectic.app import DialecticSettings
from services.dialectic.app import create_app as create_dialectic_app
from tests.conftest import JWT_SECRET, AppFactory, InfraEndpoints, bearer
from tests.integration.dialectic._helpers import (
    chat,
    diplomacy,
    group_chat,
    group_without_messages,
    say,
    sse_events,
    wait_derived,
)

TRUST = "Can I trust that Alice won't attack me?"


@pytest.fixture
async def deriving(app_factory: AppFactory, clean_db: None) -> httpx.AsyncClient:
    return await app_factory(deriver_enabled=True)


async def test_breakfast_question_is_answered_with_eggs(
    deriving: httpx.AsyncClient, ws_id: str
) -> None:
    eggs = await group_chat(deriving, ws_id)
    await wait_derived(deriving, ws_id, expect_total=1)

    r = await chat(deriving, ws_id, "alice", "What did Bob have for breakfast today?")

    assert r.status_code == 200, r.text
    assert r.json() == {
        "content": "bob said on 2026-11-20: I had eggs for breakfast today.",
        "citations": {"messages": [eggs["id"]], "conclusions": []},
    }


async def test_diplomacy_charlie_is_answered_from_the_group_chat_only(
    deriving: httpx.AsyncClient, ws_id: str
) -> None:
    said = await diplomacy(deriving, ws_id)
    await wait_derived(deriving, ws_id, expect_total=2)

    r = await chat(
        deriving,
        ws_id,
        "charlie",
        TRUST,
        target="alice",
        reasoning_level="max",
        include_evidence=True,
    )

    assert r.status_code == 200, r.text
    body = r.json()
    assert "peaceful" in body["content"]
    assert "attack" not in body["content"].lower()
    evidence = body["evidence"]
    assert {m["session_id"] for m in evidence["messages"]} == {"diplomacy-turn-1"}
    assert [m["id"] for m in evidence["messages"]] == [said["group"][0]["id"]]
    assert evidence["conclusions"]
    assert all(c["observer_id"] == "charlie" for c in evidence["conclusions"])
    assert all("attack" not in c["content"] for c in evidence["conclusions"])
    assert body["citations"]["messages"] == [said["group"][0]["id"]]


async def test_diplomacy_bob_witnessed_the_side_chat(
    deriving: httpx.AsyncClient, ws_id: str
) -> None:
    said = await diplomacy(deriving, ws_id)
    await wait_derived(deriving, ws_id, expect_total=2)

    r = await chat(deriving, ws_id, "bob", TRUST, target="alice")

    assert r.status_code == 200, r.text
    assert "attack Charlie" in r.json()["content"]
    assert said["side"][0]["id"] in r.json()["citations"]["messages"]


async def test_a_peer_outside_every_session_knows_nothing(
    deriving: httpx.AsyncClient, ws_id: str
) -> None:
    await group_chat(deriving, ws_id)
    await deriving.post(f"/v3/workspaces/{ws_id}/peers", json={"id": "dave"})
    await wait_derived(deriving, ws_id, expect_total=1)

    r = await chat(deriving, ws_id, "dave", "What did Bob have for breakfast today?")

    assert r.json() == {"content": ABSTENTION, "citations": {"messages": [], "conclusions": []}}


async def test_unrelated_question_abstains(deriving: httpx.AsyncClient, ws_id: str) -> None:
    await group_chat(deriving, ws_id)
    await wait_derived(deriving, ws_id, expect_total=1)

    r = await chat(deriving, ws_id, "alice", "What is the capital of France?")

    assert r.json()["content"] == ABSTENTION


async def test_sse_frames_reassemble_the_json_answer(
    deriving: httpx.AsyncClient, ws_id: str
) -> None:
    await diplomacy(deriving, ws_id)
    await wait_derived(deriving, ws_id, expect_total=2)
    body = {"target": "alice", "reasoning_level": "medium"}
    plain = (await chat(deriving, ws_id, "charlie", TRUST, **body)).json()["content"]

    r = await chat(deriving, ws_id, "charlie", TRUST, stream=True, **body)

    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == {"done": True}
    assert r.text.endswith('data: {"done": true}\n\n')
    deltas = events[:-1]
    assert len(deltas) > 3
    assert all(set(e) == {"delta", "done"} and e["done"] is False for e in deltas)
    assert all(set(e["delta"]) == {"content"} for e in deltas)
    assert r.text.startswith('data: {"delta": {"content": ')
    assert "".join(e["delta"]["content"] for e in deltas) == plain


async def test_stream_with_evidence_puts_it_on_the_last_event(
    deriving: httpx.AsyncClient, ws_id: str
) -> None:
    eggs = await group_chat(deriving, ws_id)
    await wait_derived(deriving, ws_id, expect_total=1)

    r = await chat(
        deriving,
        ws_id,
        "alice",
        "What did Bob have for breakfast today?",
        stream=True,
        include_evidence=True,
    )

    last = sse_events(r.text)[-1]
    assert last["done"] is True
    assert [m["id"] for m in last["evidence"]["messages"]] == [eggs["id"]]


async def test_yesterday_picks_that_days_message(deriving: httpx.AsyncClient, ws_id: str) -> None:
    await deriving.post("/v3/workspaces", json={"id": ws_id})
    await deriving.post(
        f"/v3/workspaces/{ws_id}/sessions", json={"id": "s", "peers": {"alice": {}, "bob": {}}}
    )
    meals = [
        ("2026-11-17T19:00:00Z", "I ate pancakes at the diner"),
        ("2026-11-18T19:00:00Z", "I ate sushi with my sister"),
        ("2026-11-19T19:00:00Z", "I ate a burrito at the stadium"),
        ("2026-11-20T19:00:00Z", "I ate ramen after work"),
    ]
    for when, text in meals:
        await say(deriving, ws_id, "s", ("bob", text), created_at=when)
    await wait_derived(deriving, ws_id, expect_total=4)

    r = await chat(deriving, ws_id, "alice", "What did Bob eat yesterday?", reasoning_level="max")

    content = r.json()["content"]
    assert content == "bob said on 2026-11-19: I ate a burrito at the stadium."


async def test_session_filters_restrict_the_evidence(
    deriving: httpx.AsyncClient, ws_id: str
) -> None:
    await deriving.post("/v3/workspaces", json={"id": ws_id})
    for session in ("work", "home"):
        await deriving.post(
            f"/v3/workspaces/{ws_id}/sessions",
            json={"id": session, "peers": {"alice": {}, "bob": {}}},
        )
    [at_work] = await say(deriving, ws_id, "work", ("bob", "I drink espresso every morning"))
    await say(deriving, ws_id, "home", ("bob", "I drink green tea before bed"))
    await wait_derived(deriving, ws_id, expect_total=2)
    question = "What does Bob drink?"

    both = (await chat(deriving, ws_id, "alice", question)).json()["content"]
    only_work = await chat(deriving, ws_id, "alice", question, filters={"session_id": ["work"]})
    by_id = await chat(deriving, ws_id, "alice", question, session_id="work")

    assert "espresso" in both and "green tea" in both
    assert only_work.json()["content"] == by_id.json()["content"]
    assert "espresso" in by_id.json()["content"]
    assert "green tea" not in by_id.json()["content"]
    assert by_id.json()["citations"]["messages"] == [at_work["id"]]


async def test_response_format_needs_an_llm(deriving: httpx.AsyncClient, ws_id: str) -> None:
    await group_without_messages(deriving, ws_id)

    r = await chat(
        deriving,
        ws_id,
        "alice",
        "What did Bob eat?",
        response_format={"type": "object", "properties": {"food": {"type": "string"}}},
    )

    assert r.status_code == 400
    assert "needs an LLM" in r.json()["detail"]
    assert "RAPPORT_LLM_BASE_URL" in r.json()["detail"]


@pytest.mark.parametrize(
    ("path_ws", "peer", "body", "missing"),
    [
        ("nope", "alice", {}, "Workspace 'nope'"),
        (None, "zed", {}, "Peer 'zed'"),
        (None, "alice", {"target": "zed"}, "Peer 'zed'"),
        (None, "alice", {"session_id": "nope"}, "Session 'nope'"),
        (None, "alice", {"filters": {"session_id": {"in": ["kitchen", "nope"]}}}, "Session 'nope'"),
    ],
)
async def test_unknown_resources_are_404(
    deriving: httpx.AsyncClient,
    ws_id: str,
    path_ws: str | None,
    peer: str,
    body: dict[str, object],
    missing: str,
) -> None:
    await group_without_messages(deriving, ws_id)

    r = await chat(deriving, path_ws or ws_id, peer, "anything?", **body)

    assert r.status_code == 404, r.text
    assert r.json()["detail"].startswith(missing)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"query": ""}, "query"),
        ({"query": "x" * 10_001}, "query"),
        ({"query": "q", "reasoning_level": "extreme"}, "reasoning_level"),
        ({"query": "q", "semantic_query": "x"}, "semantic_query"),
        ({"query": "q", "filters": {"peer_id": "bob"}}, "only 'session_id'"),
        ({"query": "q", "filters": {"session_id": 3}}, "session id"),
        ({"query": "q", "target": "bad id!"}, "target"),
        ({"query": "q", "response_format": "json"}, "response_format"),
    ],
)
async def test_invalid_bodies_are_422(
    deriving: httpx.AsyncClient, ws_id: str, body: dict[str, object], needle: str
) -> None:
    await group_without_messages(deriving, ws_id)

    r = await deriving.post(f"/v3/workspaces/{ws_id}/peers/alice/chat", json=body)

    assert r.status_code == 422, r.text
    assert needle in json.dumps(r.json()["detail"])


async def test_scopes_are_refused_with_an_explanation(
    deriving: httpx.AsyncClient, ws_id: str
) -> None:
    await group_without_messages(deriving, ws_id)

    r = await chat(deriving, ws_id, "alice", "q", scope="team")

    assert r.status_code == 422
    assert r.json()["detail"].startswith("scope is not supported yet")


async def test_sdk_style_body_is_accepted(deriving: httpx.AsyncClient, ws_id: str) -> None:
    await group_chat(deriving, ws_id)
    await wait_derived(deriving, ws_id, expect_total=1)

    r = await deriving.post(
        f"/v3/workspaces/{ws_id}/peers/alice/chat",
        json={
            "query": "What did Bob have for breakfast today?",
            "stream": False,
            "reasoning_level": None,
            "target": None,
            "filters": {"session_id": ["kitchen"]},
        },
        headers={"Content-Type": "application/json"},
    )

    assert r.status_code == 200, r.text
    assert "eggs" in r.json()["content"]


async def test_the_dialectic_runs_as_its_own_process_app(
    deriving: httpx.AsyncClient, infra: InfraEndpoints, ws_id: str
) -> None:
    eggs = await group_chat(deriving, ws_id)
    await wait_derived(deriving, ws_id, expect_total=1)
    settings = DialecticSettings(
        database_url=infra.database_url,
        nats_url=infra.nats_url,
        log_json=False,
        log_level="WARNING",
        db_pool_size=2,
    )
    app = create_dialectic_app(settings)

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://dialectic.test"
        ) as alone,
    ):
        health = await alone.get("/health")
        r = await chat(alone, ws_id, "alice", "What did Bob have for breakfast today?")
        ingest_route = await alone.post("/v3/workspaces", json={"id": ws_id})

    assert health.status_code == 200
    assert r.json()["citations"]["messages"] == [eggs["id"]]
    assert "eggs" in r.json()["content"]
    assert ingest_route.status_code == 404  # only the chat route lives here


# -- auth -------------------------------------------------------------------------------------

ADMIN = bearer(admin=True)


@pytest.fixture
async def auth_deriving(app_factory: AppFactory, clean_db: None) -> httpx.AsyncClient:
    """Auth on, deriver on (its own stream): what it accepts is derived."""
    return await app_factory(deriver_enabled=True, auth_enabled=True, jwt_secret=JWT_SECRET)


async def _setup_with_auth(client: httpx.AsyncClient, ws: str, deriving: httpx.AsyncClient) -> None:
    assert (await client.post("/v3/workspaces", json={"id": ws}, headers=ADMIN)).status_code == 201
    await client.post(
        f"/v3/workspaces/{ws}/sessions",
        json={"id": "kitchen", "peers": {"alice": {}, "bob": {}, "charlie": {}}},
        headers=ADMIN,
    )
    await client.post(
        f"/v3/workspaces/{ws}/sessions",
        json={"id": "private", "peers": {"alice": {}}},
        headers=ADMIN,
    )
    r = await client.post(
        f"/v3/workspaces/{ws}/sessions/kitchen/messages",
        json={"messages": [{"peer_id": "bob", "content": "I had eggs for breakfast today"}]},
        headers=ADMIN,
    )
    assert r.status_code == 201
    # The run's deriver (auth off) derives it; waiting keeps it out of the next test's clean-up.
    await wait_derived(deriving, ws, expect_total=1)


async def test_a_peer_key_chats_as_itself_only(
    auth_deriving: httpx.AsyncClient, deriving: httpx.AsyncClient, ws_id: str
) -> None:
    await _setup_with_auth(auth_deriving, ws_id, deriving)
    charlie = bearer(workspace_id=ws_id, peer_id="charlie")
    question = {"query": "What did Bob have for breakfast today?"}

    as_charlie = await auth_deriving.post(
        f"/v3/workspaces/{ws_id}/peers/charlie/chat", json=question, headers=charlie
    )
    as_alice = await auth_deriving.post(
        f"/v3/workspaces/{ws_id}/peers/alice/chat", json=question, headers=charlie
    )
    anonymous = await auth_deriving.post(
        f"/v3/workspaces/{ws_id}/peers/charlie/chat", json=question
    )

    assert as_charlie.status_code == 200, as_charlie.text
    assert "eggs" in as_charlie.json()["content"]
    assert as_alice.status_code == 403
    assert as_alice.json() == {"detail": "This key has no access to peer 'alice'"}
    assert anonymous.status_code == 401


async def test_a_peer_key_reads_only_sessions_it_is_in(
    auth_deriving: httpx.AsyncClient, deriving: httpx.AsyncClient, ws_id: str
) -> None:
    await _setup_with_auth(auth_deriving, ws_id, deriving)
    charlie = bearer(workspace_id=ws_id, peer_id="charlie")

    member = await auth_deriving.post(
        f"/v3/workspaces/{ws_id}/peers/charlie/chat",
        json={"query": "breakfast?", "session_id": "kitchen"},
        headers=charlie,
    )
    outsider = await auth_deriving.post(
        f"/v3/workspaces/{ws_id}/peers/charlie/chat",
        json={"query": "breakfast?", "filters": {"session_id": ["kitchen", "private"]}},
        headers=charlie,
    )
    workspace_key = await auth_deriving.post(
        f"/v3/workspaces/{ws_id}/peers/alice/chat",
        json={"query": "breakfast?", "session_id": "private"},
        headers=bearer(workspace_id=ws_id),
    )

    assert member.status_code == 200, member.text
    assert outsider.status_code == 403
    assert "not a member of session 'private'" in outsider.json()["detail"]
    assert workspace_key.status_code == 200


async def test_a_session_key_cannot_chat(
    auth_deriving: httpx.AsyncClient, deriving: httpx.AsyncClient, ws_id: str
) -> None:
    await _setup_with_auth(auth_deriving, ws_id, deriving)

    r = await auth_deriving.post(
        f"/v3/workspaces/{ws_id}/peers/alice/chat",
        json={"query": "breakfast?"},
        headers=bearer(workspace_id=ws_id, session_id="kitchen"),
    )

    assert r.status_code == 403
