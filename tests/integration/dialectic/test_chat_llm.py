"""``peer.chat`` with the LLM reasoner against the scripted OpenAI-compatible server: what the
prompt contains (only what the asker may know), streaming, structured answers, abstention.

The app runs the deriver on a stream of its own (its LLM deriver must not share work with the
extractive one of the other tests). The scripted model answers each kind of request from the
request itself: extraction turns every new message into ``"<peer> said: <text>"``, and the
dialectic answer repeats the evidence texts it was given.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from allinone.app import create_app
from libs.common.reasoning.answers import ABSTENTION
from libs.common.reasoning.schema_check import schema_errors
from tests.conftest import InfraEndpoints, delete_stream, make_settings
from tests.fakes.openai_server import RecordedRequest, Reply, ScriptedOpenAI, scripted_openai
from tests.integration.dialectic._helpers import (
    chat,
    diplomacy,
    group_chat,
    sse_events,
    wait_derived,
)

TRUST = "Can I trust that Alice won't attack me?"
DIALECTIC_MODEL = "dialectic-model"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answer": {"type": "string"},
        "trustworthy": {"type": "boolean"},
        "sources": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["answer", "trustworthy"],
    "additionalProperties": False,
}


def is_dialectic(request: RecordedRequest) -> bool:
    return request.system_prompt.startswith("You are the memory of the peer")


def evidence_texts(request: RecordedRequest) -> list[str]:
    user = next(m["content"] for m in request.messages if m["role"] == "user")
    _, _, block = user.partition("Evidence, one JSON object per line:\n")
    return [json.loads(line)["text"] for line in block.splitlines() if line.startswith("{")]


def scripted_model(request: RecordedRequest) -> Reply:
    system = request.system_prompt
    if is_dialectic(request):
        texts = evidence_texts(request)
        if request.response_format is not None or "JSON Schema" in system:
            return Reply.json({"answer": " / ".join(texts), "trustworthy": True})
        return Reply.text("From what I witnessed: " + " / ".join(texts))
    if "write down what" in system:
        user = next(m["content"] for m in request.messages if m["role"] == "user")
        observed = re.search(r"Observed: (\S+)", user)
        new = user.partition("New messages from")[2]
        lines = [json.loads(x) for x in new.splitlines() if x.startswith("{")]
        return Reply.json(
            {
                "observations": [
                    {
                        "content": f"{observed.group(1) if observed else '?'} said: {x['text']}",
                        "level": "explicit",
                        "source_message_ids": [x["id"]],
                    }
                    for x in lines
                ]
            }
        )
    if "card about" in system:
        return Reply.json({"facts": []})
    return Reply.json({"summary": "a summary"})


@pytest.fixture(scope="module")
def llm_server() -> Iterator[ScriptedOpenAI]:
    with scripted_openai(default=scripted_model) as server:
        yield server


@pytest.fixture(scope="module")
async def llm_app(
    infra: InfraEndpoints, llm_server: ScriptedOpenAI
) -> AsyncIterator[httpx.AsyncClient]:
    run = uuid.uuid4().hex[:8]
    stream = f"RT_{run}"
    app = create_app(
        make_settings(
            infra,
            deriver_enabled=True,
            nats_stream=stream,
            nats_subject_prefix=f"p{run}",
            llm_base_url=llm_server.base_url,
            llm_dialectic_model=DIALECTIC_MODEL,
            llm_max_retries=0,
            llm_timeout_s=5.0,
        )
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://rapport.test", timeout=30
        ) as client,
    ):
        yield client
    await delete_stream(infra.nats_url, stream)


@pytest.fixture
def llm(llm_server: ScriptedOpenAI) -> ScriptedOpenAI:
    llm_server.clear()
    llm_server.default = scripted_model
    return llm_server


def dialectic_requests(server: ScriptedOpenAI) -> list[RecordedRequest]:
    return [r for r in server.chat_requests if is_dialectic(r)]


async def test_charlies_prompt_holds_only_what_charlie_witnessed(
    llm_app: httpx.AsyncClient, llm: ScriptedOpenAI, ws_id: str
) -> None:
    await diplomacy(llm_app, ws_id)
    await wait_derived(llm_app, ws_id, expect_total=2)
    llm.clear()

    r = await chat(llm_app, ws_id, "charlie", TRUST, target="alice", reasoning_level="max")

    assert r.status_code == 200, r.text
    [request] = dialectic_requests(llm)
    assert request.model == DIALECTIC_MODEL
    assert "I'm going to be peaceful" in request.prompt_text
    assert "alice said: I'm going to be peaceful" in request.prompt_text  # a conclusion
    assert "attack Charlie" not in request.prompt_text
    assert "side-chat" not in request.prompt_text
    assert "peaceful" in r.json()["content"] and "attack" not in r.json()["content"]


async def test_bobs_prompt_holds_the_side_chat(
    llm_app: httpx.AsyncClient, llm: ScriptedOpenAI, ws_id: str
) -> None:
    await diplomacy(llm_app, ws_id)
    await wait_derived(llm_app, ws_id, expect_total=2)
    llm.clear()

    r = await chat(llm_app, ws_id, "bob", TRUST, target="alice")

    assert r.status_code == 200, r.text
    [request] = dialectic_requests(llm)
    assert "I'm actually going to attack Charlie" in request.prompt_text
    assert "attack Charlie" in r.json()["content"]


async def test_breakfast_answer_and_citations(
    llm_app: httpx.AsyncClient, llm: ScriptedOpenAI, ws_id: str
) -> None:
    eggs = await group_chat(llm_app, ws_id)
    await wait_derived(llm_app, ws_id, expect_total=1)

    r = await chat(llm_app, ws_id, "alice", "What did Bob have for breakfast today?")

    body = r.json()
    assert body["content"] == "From what I witnessed: I had eggs for breakfast today"
    assert body["citations"] == {"messages": [eggs["id"]], "conclusions": []}


async def test_streamed_deltas_reassemble_the_plain_answer(
    llm_app: httpx.AsyncClient, llm: ScriptedOpenAI, ws_id: str
) -> None:
    await diplomacy(llm_app, ws_id)
    await wait_derived(llm_app, ws_id, expect_total=2)
    llm.clear()

    plain = await chat(llm_app, ws_id, "bob", TRUST, target="alice")
    streamed = await chat(llm_app, ws_id, "bob", TRUST, target="alice", stream=True)

    events = sse_events(streamed.text)
    assert events[-1] == {"done": True}
    deltas = [e["delta"]["content"] for e in events[:-1]]
    assert len(deltas) > 5  # the provider's chunks are passed on as they come
    assert "".join(deltas) == plain.json()["content"]
    requests = dialectic_requests(llm)
    assert [r.body.get("stream") for r in requests] == [None, True]


async def test_a_reasoning_block_is_left_out_of_both_forms(
    llm_app: httpx.AsyncClient, llm: ScriptedOpenAI, ws_id: str
) -> None:
    await group_chat(llm_app, ws_id)
    await wait_derived(llm_app, ws_id, expect_total=1)
    llm.clear()
    reply = "<think>\nThe evidence says eggs. Keep it short.\n</think>\n\nBob had eggs."
    llm.enqueue(Reply.text(reply), Reply.text(reply))

    plain = await chat(llm_app, ws_id, "alice", "What did Bob have for breakfast?")
    streamed = await chat(llm_app, ws_id, "alice", "What did Bob have for breakfast?", stream=True)

    assert plain.json()["content"] == "Bob had eggs."
    assert "".join(e["delta"]["content"] for e in sse_events(streamed.text)[:-1]) == (
        "Bob had eggs."
    )


async def test_response_format_answer_validates(
    llm_app: httpx.AsyncClient, llm: ScriptedOpenAI, ws_id: str
) -> None:
    await diplomacy(llm_app, ws_id)
    await wait_derived(llm_app, ws_id, expect_total=2)
    llm.clear()

    r = await chat(llm_app, ws_id, "charlie", TRUST, target="alice", response_format=SCHEMA)

    assert r.status_code == 200, r.text
    answer = json.loads(r.json()["content"])
    assert schema_errors(answer, SCHEMA) == []
    assert "peaceful" in answer["answer"]
    [request] = dialectic_requests(llm)
    assert request.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": SCHEMA, "strict": False},
    }


async def test_an_invalid_structured_reply_is_retried_until_it_validates(
    llm_app: httpx.AsyncClient, llm: ScriptedOpenAI, ws_id: str
) -> None:
    await group_chat(llm_app, ws_id)
    await wait_derived(llm_app, ws_id, expect_total=1)
    llm.clear()
    llm.enqueue(Reply.json({"answer": "eggs"}))  # "trustworthy" is missing

    r = await chat(
        llm_app, ws_id, "alice", "What did Bob eat?", response_format=SCHEMA, stream=True
    )

    events = sse_events(r.text)
    answer = json.loads("".join(e["delta"]["content"] for e in events[:-1]))
    assert schema_errors(answer, SCHEMA) == []
    assert answer["trustworthy"] is True
    assert len(dialectic_requests(llm)) == 2


async def test_no_evidence_abstains_without_calling_the_model(
    llm_app: httpx.AsyncClient, llm: ScriptedOpenAI, ws_id: str
) -> None:
    await group_chat(llm_app, ws_id)
    await llm_app.post(f"/v3/workspaces/{ws_id}/peers", json={"id": "dave"})
    await wait_derived(llm_app, ws_id, expect_total=1)
    llm.clear()

    plain = await chat(llm_app, ws_id, "dave", "What did Bob have for breakfast?")
    streamed = await chat(llm_app, ws_id, "dave", "What did Bob have for breakfast?", stream=True)

    assert plain.json()["content"] == ABSTENTION
    assert "".join(e["delta"]["content"] for e in sse_events(streamed.text)[:-1]) == ABSTENTION
    assert dialectic_requests(llm) == []


async def test_model_failures_are_http_errors(
    llm_app: httpx.AsyncClient, llm: ScriptedOpenAI, ws_id: str
) -> None:
    await group_chat(llm_app, ws_id)
    await wait_derived(llm_app, ws_id, expect_total=1)
    llm.clear()
    llm.enqueue(Reply.status(503, "overloaded"), Reply.status(401, "bad key"))

    unavailable = await chat(llm_app, ws_id, "alice", "What did Bob have for breakfast?")
    refused = await chat(llm_app, ws_id, "alice", "What did Bob have for breakfast?", stream=True)

    assert unavailable.status_code == 503
    assert "LLM endpoint is unavailable" in unavailable.json()["detail"]
    assert refused.status_code == 502
    assert "HTTP 401" in refused.json()["detail"]


async def test_a_stream_that_breaks_off_ends_with_an_error_event(
    llm_app: httpx.AsyncClient, llm: ScriptedOpenAI, ws_id: str
) -> None:
    await group_chat(llm_app, ws_id)
    await wait_derived(llm_app, ws_id, expect_total=1)
    llm.clear()
    chunk = {
        "id": "x",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "Bob had"}, "finish_reason": None}],
    }
    llm.enqueue(
        Reply.raw(
            f"data: {json.dumps(chunk)}\n\ndata: {{not json\n\n",
            content_type="text/event-stream",
        )
    )

    r = await chat(llm_app, ws_id, "alice", "What did Bob have for breakfast?", stream=True)

    assert r.status_code == 200
    events = sse_events(r.text)
    assert events[0] == {"delta": {"content": "Bob had"}, "done": False}
    assert events[-1]["done"] is True
    assert "broke off" in events[-1]["error"]
    assert len(events) == 2
