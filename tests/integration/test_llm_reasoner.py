"""The LLM reasoner against a scripted OpenAI-compatible server, over real HTTP.

The real ``openai`` client talks to :mod:`tests.fakes.openai_server`; no Postgres or NATS needed::

    .venv/bin/python -m pytest tests/integration/test_llm_reasoner.py -q -p no:cacheprovider \
        --noconftest
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from openai import AsyncOpenAI
from pydantic import SecretStr

from libs.common.reasoning.llm import (
    LLMReasoner,
    create_llm_reasoner,
    forget_structured_output_modes,
    parse_retry_after,
    remembered_structured_output_mode,
    repair_json,
)
from libs.common.reasoning.port import (
    ExtractionRequest,
    Observation,
    PeerCardRequest,
    PermanentReasonerError,
    SummaryRequest,
    TranscriptLine,
    TransientReasonerError,
)
from libs.common.settings import LLMSettings
from libs.common.tokens import count_tokens
from tests.fakes.openai_server import (
    RecordedRequest,
    Reply,
    ScriptedOpenAI,
    fake_embedding,
    scripted_openai,
)

T0 = datetime(2024, 5, 3, 9, 30, tzinfo=UTC)  # a Friday

MESSAGES = [
    TranscriptLine("m1", "bob", "I moved to Lyon last month for a job at a bakery.", T0),
    TranscriptLine("m2", "bob", "Tomorrow I'm running my first half marathon!", T0 + timedelta(1)),
]
CONTEXT = [TranscriptLine("ctx-1", "alice", "How is the new city treating you?", T0)]

VALID_EXTRACTION = {
    "observations": [
        {
            "content": "Bob moved to Lyon in April 2024 to work at a bakery.",
            "level": "explicit",
            "source_message_ids": ["m1"],
        },
        {
            "content": "Bob runs a half marathon on 2024-05-05.",
            "level": "explicit",
            "source_message_ids": ["m2"],
        },
    ]
}
EXPECTED_OBSERVATIONS = [
    Observation("Bob moved to Lyon in April 2024 to work at a bakery.", "explicit", ["m1"]),
    Observation("Bob runs a half marathon on 2024-05-05.", "explicit", ["m2"]),
]


def extraction_request(**overrides: Any) -> ExtractionRequest:
    values: dict[str, Any] = {
        "observer": "alice",
        "observed": "bob",
        "messages": MESSAGES,
        "context": CONTEXT,
        "known": ["Bob has a sister named Chloe."],
    }
    values.update(overrides)
    return ExtractionRequest(**values)


def llm_settings(base_url: str, **overrides: Any) -> LLMSettings:
    values: dict[str, Any] = {
        "llm_base_url": base_url,
        "llm_api_key": SecretStr("test-key"),
        "llm_model": "base-model",
        "llm_extraction_model": None,
        "llm_summary_model": None,
        "llm_dream_model": None,
        "llm_timeout_s": 5.0,
        "llm_max_retries": 2,
        "llm_structured_output": "auto",
        "llm_temperature": 0.0,
        "llm_custom_instructions": None,
    }
    values.update(overrides)
    return LLMSettings(**values)


ReasonerFactory = Callable[..., LLMReasoner]


@pytest.fixture(autouse=True)
def _fresh_mode_memory() -> Iterator[None]:
    forget_structured_output_modes()
    yield
    forget_structured_output_modes()


@pytest.fixture
def server() -> Iterator[ScriptedOpenAI]:
    with scripted_openai() as scripted:
        yield scripted


@pytest.fixture
async def make_reasoner() -> AsyncIterator[ReasonerFactory]:
    """Reasoners with tiny back-off, closed after the test."""
    created: list[LLMReasoner] = []

    def make(base_url: str, **overrides: Any) -> LLMReasoner:
        reasoner = LLMReasoner(
            llm_settings(base_url, **overrides), backoff_base_s=0.01, backoff_max_s=0.05
        )
        created.append(reasoner)
        return reasoner

    yield make
    for reasoner in created:
        await reasoner.aclose()


def roles(request: RecordedRequest) -> list[str]:
    return [str(m.get("role")) for m in request.messages]


# --- structured output ------------------------------------------------------------------------


async def test_json_schema_path(server: ScriptedOpenAI, make_reasoner: ReasonerFactory) -> None:
    reasoner = make_reasoner(server.base_url)
    server.enqueue(Reply.json(VALID_EXTRACTION))

    observations = await reasoner.extract(extraction_request())

    assert observations == EXPECTED_OBSERVATIONS
    [request] = server.chat_requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.model == "base-model"
    assert request.body["temperature"] == 0.0
    fmt = request.response_format
    assert fmt is not None and fmt["type"] == "json_schema"
    assert fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["name"] == "observations"
    schema = fmt["json_schema"]["schema"]
    assert schema["required"] == ["observations"]
    assert schema["additionalProperties"] is False
    item = schema["properties"]["observations"]["items"]
    assert item["properties"]["level"]["enum"] == [
        "explicit",
        "deductive",
        "inductive",
        "contradiction",
    ]
    # The prompt: observer/observed, absolute timestamps, ids, context, known, no schema dump.
    assert roles(request) == ["system", "user"]
    system, user = request.messages[0]["content"], request.messages[1]["content"]
    assert "alice" in system and "bob" in system
    assert "JSON Schema" not in system
    assert '"id": "m1"' in user and '"id": "m2"' in user and '"id": "ctx-1"' in user
    assert "2024-05-03T09:30+00:00 (Friday)" in user
    assert "2024-05-04T09:30+00:00 (Saturday)" in user
    assert "Bob has a sister named Chloe." in user
    assert remembered_structured_output_mode(server.base_url, "base-model") == "json_schema"


async def test_falls_back_to_json_object_when_json_schema_is_rejected(
    make_reasoner: ReasonerFactory,
) -> None:
    with scripted_openai(rejects_json_schema=True) as server:
        reasoner = make_reasoner(server.base_url)
        server.enqueue(Reply.json(VALID_EXTRACTION), Reply.json(VALID_EXTRACTION))

        assert await reasoner.extract(extraction_request()) == EXPECTED_OBSERVATIONS

        first, second = server.chat_requests
        assert first.response_format_type == "json_schema"
        assert second.response_format_type == "json_object"
        assert "JSON Schema" in second.system_prompt
        assert '"source_message_ids"' in second.system_prompt  # the schema itself
        assert server.pending() == 1  # the 400 consumed nothing
        assert remembered_structured_output_mode(server.base_url, "base-model") == "json_object"

        # Remembered: the next call goes straight to JSON mode.
        assert await reasoner.extract(extraction_request()) == EXPECTED_OBSERVATIONS
        assert [r.response_format_type for r in server.chat_requests] == [
            "json_schema",
            "json_object",
            "json_object",
        ]


async def test_falls_back_to_prompt_only_when_json_mode_is_rejected_too(
    make_reasoner: ReasonerFactory,
) -> None:
    with scripted_openai(rejects_json_schema=True, rejects_json_object=True) as server:
        reasoner = make_reasoner(server.base_url)
        server.enqueue(Reply.json({"facts": ["Bob lives in Lyon."]}))

        card = await reasoner.update_peer_card(
            PeerCardRequest("alice", "bob", current=[], new_observations=["Bob lives in Lyon."])
        )

        assert card == ["Bob lives in Lyon."]
        assert [r.response_format_type for r in server.chat_requests] == [
            "json_schema",
            "json_object",
            None,
        ]
        assert "JSON Schema" in server.chat_requests[-1].system_prompt
        assert remembered_structured_output_mode(server.base_url, "base-model") == "text"


async def test_pinned_json_schema_rejected_is_permanent(make_reasoner: ReasonerFactory) -> None:
    with scripted_openai(rejects_json_schema=True) as server:
        reasoner = make_reasoner(server.base_url, llm_structured_output="json_schema")
        with pytest.raises(PermanentReasonerError, match="response_format"):
            await reasoner.extract(extraction_request())
        assert len(server.chat_requests) == 1


async def test_pinned_json_object_mode(
    server: ScriptedOpenAI, make_reasoner: ReasonerFactory
) -> None:
    reasoner = make_reasoner(server.base_url, llm_structured_output=" JSON_OBJECT ")
    server.enqueue(Reply.json(VALID_EXTRACTION))

    assert await reasoner.extract(extraction_request()) == EXPECTED_OBSERVATIONS
    [request] = server.chat_requests
    assert request.response_format == {"type": "json_object"}
    assert "JSON Schema" in request.system_prompt
    # Pinned modes are not "remembered": there is nothing to learn.
    assert remembered_structured_output_mode(server.base_url, "base-model") is None


async def test_prose_wrapped_json_is_repaired_locally(make_reasoner: ReasonerFactory) -> None:
    with scripted_openai(ignores_response_format=True) as server:
        reasoner = make_reasoner(server.base_url)
        server.enqueue(Reply.json(VALID_EXTRACTION), Reply.json(VALID_EXTRACTION))

        assert await reasoner.extract(extraction_request()) == EXPECTED_OBSERVATIONS
        [request] = server.chat_requests
        assert request.response_format_type == "json_schema"
        # It needed repair, so the provider does not enforce schemas: describe it in the prompt.
        assert remembered_structured_output_mode(server.base_url, "base-model") == "json_object"

        assert await reasoner.extract(extraction_request()) == EXPECTED_OBSERVATIONS
        assert server.chat_requests[-1].response_format_type == "json_object"
        assert len(server.chat_requests) == 2


async def test_think_blocks_fences_and_trailing_commas_are_repaired(
    server: ScriptedOpenAI, make_reasoner: ReasonerFactory
) -> None:
    reasoner = make_reasoner(server.base_url)
    server.enqueue(
        Reply.text(
            '<think>The card is {"facts": []}? No, keep Lyon.</think>\n'
            'Here you go:\n```json\n{"facts": ["Bob lives in Lyon.", "Bob is a baker.",],}\n```'
        )
    )

    card = await reasoner.update_peer_card(
        PeerCardRequest("alice", "bob", current=[], new_observations=["Bob is a baker."])
    )

    assert card == ["Bob lives in Lyon.", "Bob is a baker."]
    assert len(server.chat_requests) == 1


def test_repair_json_helper() -> None:
    assert repair_json('noise {"a": [1, 2,], "b": "}{",} tail') == {"a": [1, 2], "b": "}{"}
    assert repair_json("```\n[1, 2]\n```") == [1, 2]
    with pytest.raises(ValueError, match="no JSON"):
        repair_json("nothing here {")


async def test_invalid_output_then_repair_request(
    server: ScriptedOpenAI, make_reasoner: ReasonerFactory
) -> None:
    reasoner = make_reasoner(server.base_url)
    invalid = {"observations": [{"content": "Bob bakes.", "level": "certain"}]}
    server.enqueue(Reply.json(invalid), Reply.json(invalid), Reply.json(VALID_EXTRACTION))

    assert await reasoner.extract(extraction_request()) == EXPECTED_OBSERVATIONS

    schema_try, json_mode_try, repair = server.chat_requests
    assert schema_try.response_format_type == "json_schema"
    assert json_mode_try.response_format_type == "json_object"
    assert repair.response_format_type == "json_object"
    assert roles(repair) == ["system", "user", "assistant", "user"]
    assert repair.messages[2]["content"] == json.dumps(invalid)
    assert "observations.0.level" in repair.messages[3]["content"]
    assert "could not be used" in repair.messages[3]["content"]
    assert remembered_structured_output_mode(server.base_url, "base-model") == "json_object"


async def test_pinned_json_schema_invalid_then_repair_request(
    server: ScriptedOpenAI, make_reasoner: ReasonerFactory
) -> None:
    reasoner = make_reasoner(server.base_url, llm_structured_output="json_schema")
    server.enqueue(Reply.text("Bob moved to Lyon."), Reply.json({"summary": "Bob moved."}))

    summary = await reasoner.summarize(SummaryRequest("short", None, MESSAGES, max_tokens=50))

    assert summary == "Bob moved."
    first, repair = server.chat_requests
    assert first.response_format_type == repair.response_format_type == "json_schema"
    assert repair.messages[2] == {"role": "assistant", "content": "Bob moved to Lyon."}
    assert "no valid JSON" in repair.messages[3]["content"]


@pytest.mark.reliability
async def test_garbage_forever_is_permanent(make_reasoner: ReasonerFactory) -> None:
    with scripted_openai(default=lambda _: Reply.text("I'd rather talk about the weather.")) as s:
        reasoner = make_reasoner(s.base_url)
        with pytest.raises(PermanentReasonerError, match="still invalid after a repair"):
            await reasoner.extract(extraction_request())
        # json_schema try, JSON-mode try, one repair request; no more.
        assert [r.response_format_type for r in s.chat_requests] == [
            "json_schema",
            "json_object",
            "json_object",
        ]


async def test_empty_reply_is_repaired(
    server: ScriptedOpenAI, make_reasoner: ReasonerFactory
) -> None:
    reasoner = make_reasoner(server.base_url, llm_structured_output="json_object")
    server.enqueue(Reply.text(""), Reply.json({"facts": ["Bob is 34."]}))
    card = await reasoner.update_peer_card(
        PeerCardRequest("alice", "bob", current=[], new_observations=["Bob is 34."])
    )
    assert card == ["Bob is 34."]
    assert (
        server.chat_requests[1]
        .messages[3]["content"]
        .startswith("Your previous reply could not be used: the reply was empty")
    )


# --- retries ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after-ms": "150", "retry-after": "9"}, 0.15),
        ({"retry-after": "-1"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "nan"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date() -> None:
    later = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    seconds = parse_retry_after({"retry-after": later})
    assert seconds is not None and 27 <= seconds <= 30
    earlier = email.utils.format_datetime(datetime(2000, 1, 1, tzinfo=UTC), usegmt=True)
    assert parse_retry_after({"retry-after": earlier}) == 0.0


@pytest.mark.reliability
async def test_429_honours_retry_after(
    server: ScriptedOpenAI, make_reasoner: ReasonerFactory
) -> None:
    reasoner = make_reasoner(server.base_url)
    server.enqueue(
        Reply.status(429, "slow down", retry_after="0.3", error_type="rate_limit_error"),
        Reply.json(VALID_EXTRACTION),
    )

    assert await reasoner.extract(extraction_request()) == EXPECTED_OBSERVATIONS

    first, second = server.chat_requests
    gap = second.received_at - first.received_at
    assert 0.28 <= gap < 2.0, gap  # back-off alone would be ≤ 0.01 s
    assert second.body == first.body


@pytest.mark.reliability
async def test_retry_after_ms_is_honoured(
    server: ScriptedOpenAI, make_reasoner: ReasonerFactory
) -> None:
    reasoner = make_reasoner(server.base_url)
    server.enqueue(
        Reply.status(503, headers={"retry-after-ms": "250"}),
        Reply.json({"facts": ["Bob is 34."]}),
    )
    await reasoner.update_peer_card(PeerCardRequest("alice", "bob", [], ["Bob is 34."]))
    first, second = server.chat_requests
    assert 0.23 <= second.received_at - first.received_at < 2.0


@pytest.mark.reliability
async def test_retry_after_beyond_the_limit_raises_transient_at_once(
    server: ScriptedOpenAI, make_reasoner: ReasonerFactory
) -> None:
    reasoner = make_reasoner(server.base_url)
    server.enqueue(Reply.status(429, retry_after="3600"), Reply.json(VALID_EXTRACTION))
    with pytest.raises(TransientReasonerError, match="3600"):
        await reasoner.extract(extraction_request())
    assert len(server.chat_requests) == 1


@pytest.mark.reliability
async def test_5xx_until_retries_are_exhausted_is_transient(
    server: ScriptedOpenAI, make_reasoner: ReasonerFactory
) -> None:
    reasoner = make_reasoner(server.base_url, llm_max_retries=3)
    server.enqueue(*[Reply.status(500 + i % 4) for i in range(4)], Reply.json(VALID_EXTRACTION))

    started = time.monotonic()
    with pytest.raises(TransientReasonerError, match=r"after 4 attempt\(s\): HTTP 503"):
        await reasoner.extract(extraction_request())

    assert len(server.chat_requests) == 4
    assert server.pending() == 1
    assert time.monotonic() - started < 2.0


@pytest.mark.reliability
async def test_5xx_then_success(server: ScriptedOpenAI, make_reasoner: ReasonerFactory) -> None:
    reasoner = make_reasoner(server.base_url, llm_max_retries=2)
    server.enqueue(Reply.status(502), Reply.status(500), Reply.json(VALID_EXTRACTION))
    assert await reasoner.extract(extraction_request()) == EXPECTED_OBSERVATIONS
    assert len(server.chat_requests) == 3


@pytest.mark.reliability
async def test_timeout_is_retried(server: ScriptedOpenAI, make_reasoner: ReasonerFactory) -> None:
    reasoner = make_reasoner(server.base_url, llm_timeout_s=0.3)
    server.enqueue(Reply.slow(3.0, Reply.json(VALID_EXTRACTION)), Reply.json(VALID_EXTRACTION))

    started = time.monotonic()
    assert await reasoner.extract(extraction_request()) == EXPECTED_OBSERVATIONS

    assert len(server.chat_requests) == 2
    assert 0.3 <= time.monotonic() - started < 2.5


@pytest.mark.reliability
async def test_timeouts_forever_are_transient(make_reasoner: ReasonerFactory) -> None:
    with scripted_openai(default=lambda _: Reply.slow(3.0)) as server:
        reasoner = make_reasoner(server.base_url, llm_timeout_s=0.2, llm_max_retries=1)
        with pytest.raises(TransientReasonerError, match="timed out"):
            await reasoner.extract(extraction_request())
        assert len(server.chat_requests) == 2


@pytest.mark.reliability
async def test_unreachable_endpoint_is_transient(make_reasoner: ReasonerFactory) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    reasoner = make_reasoner(f"http://127.0.0.1:{port}/v1", llm_max_retries=1)
    with pytest.raises(TransientReasonerError, match="connection failed"):
        await reasoner.extract(extraction_request())


@pytest.mark.reliability
@pytest.mark.parametrize("status", [401, 403, 404, 400])
async def test_non_retryable_4xx_is_permanent(
    status: int, server: ScriptedOpenAI, make_reasoner: ReasonerFactory
) -> None:
    reasoner = make_reasoner(server.base_url)
    server.enqueue(Reply.status(status, "nope: bad model or key"), Reply.json(VALID_EXTRACTION))
    with pytest.raises(PermanentReasonerError, match=f"HTTP {status}: nope"):
        await reasoner.extract(extraction_request())
    assert len(server.chat_requests) == 1


@pytest.mark.reliability
async def test_malformed_http_body_is_retried(
    server: ScriptedOpenAI, make_reasoner: ReasonerFactory
) -> None:
    reasoner = make_reasoner(server.base_url)
    server.enqueue(
        Reply.garbage(),
        Reply.raw("<html>oops</html>", content_type="text/html"),
        Reply.json(VALID_EXTRACTION),
    )
    assert await reasoner.extract(extraction_request()) == EXPECTED_OBSERVATIONS
    assert len(server.chat_requests) == 3


@pytest.mark.reliability
async def test_malformed_http_body_forever_is_permanent(make_reasoner: ReasonerFactory) -> None:
    with scripted_openai(default=lambda _: Reply.raw('{"not": "a completion"}')) as server:
        reasoner = make_reasoner(server.base_url, llm_max_retries=2)
        with pytest.raises(PermanentReasonerError, match="not a chat completion"):
            await reasoner.extract(extraction_request())
        assert len(server.chat_requests) == 3


# --- task semantics ---------------------------------------------------------------------------


async def test_source_message_ids_are_restricted_to_the_given_messages(
    server: ScriptedOpenAI, make_reasoner: ReasonerFactory
) -> None:
    reasoner = make_reasoner(server.base_url)
    server.enqueue(
        Reply.json(
            {
                "observations": [
                    {
                        "content": "Bob works at a bakery in Lyon.",
                        "level": "Explicit",
                        "source_message_ids": ["m1", "m-invented", "m1"],
                    },
                    {
                        "content": "Bob is settling in to Lyon.",
                        "level": "inductive",
                        "source_message_ids": ["ctx-1", "m-invented"],
                    },
                    {
                        "content": "Bob likes sport.",
                        "level": "inductive",
                        "source_message_ids": ["m2"],
                    },
                    {  # a duplicate of the first, in other spacing/case
                        "content": "bob works at a  bakery in Lyon",
                        "level": "explicit",
                        "source_message_ids": ["m1"],
                    },
                    {  # already known
                        "content": "Bob has a sister named Chloe.",
                        "level": "explicit",
                        "source_message_ids": ["m1"],
                    },
                ]
            }
        )
    )

    observations = await reasoner.extract(extraction_request())

    assert observations == [
        Observation("Bob works at a bakery in Lyon.", "explicit", ["m1"]),
        # Only foreign ids (a context message, an invented one): attributed to the batch.
        Observation("Bob is settling in to Lyon.", "inductive", ["m1", "m2"]),
        Observation("Bob likes sport.", "inductive", ["m2"]),
    ]


async def test_chit_chat_gives_no_observations(
    server: ScriptedOpenAI, make_reasoner: ReasonerFactory
) -> None:
    reasoner = make_reasoner(server.base_url)
    server.enqueue(Reply.json({"observations": []}))
    hello = [TranscriptLine("m9", "bob", "haha ok, see you!", T0)]
    assert await reasoner.extract(extraction_request(messages=hello, context=[])) == []
    assert "Earlier messages" not in server.chat_requests[0].messages[1]["content"]


async def test_self_observation_prompt(
    server: ScriptedOpenAI, make_reasoner: ReasonerFactory
) -> None:
    reasoner = make_reasoner(server.base_url)
    server.enqueue(Reply.json({"observations": []}))
    await reasoner.extract(extraction_request(observer="bob"))
    assert "same peer" in server.chat_requests[0].system_prompt


async def test_naive_timestamps_are_taken_as_utc_and_offsets_kept(
    server: ScriptedOpenAI, make_reasoner: ReasonerFactory
) -> None:
    reasoner = make_reasoner(server.base_url)
    server.enqueue(Reply.json({"observations": []}))
    paris = timezone(timedelta(hours=2))
    lines = [
        TranscriptLine("n1", "bob", "a", datetime(2024, 1, 1, 8, 0)),
        TranscriptLine("n2", "bob", "b", datetime(2024, 6, 9, 23, 15, tzinfo=paris)),
    ]
    await reasoner.extract(extraction_request(messages=lines))
    user = server.chat_requests[0].messages[1]["content"]
    assert "2024-01-01T08:00+00:00 (Monday)" in user
    assert "2024-06-09T23:15+02:00 (Sunday)" in user


async def test_summary_bound_is_enforced(
    server: ScriptedOpenAI, make_reasoner: ReasonerFactory
) -> None:
    reasoner = make_reasoner(server.base_url, llm_summary_model="summary-model")
    long_text = " ".join(
        f"Bob told Alice fact number {i} about his life in Lyon." for i in range(60)
    )
    server.enqueue(Reply.json({"summary": long_text}))

    summary = await reasoner.summarize(
        SummaryRequest("long", "Alice and Bob met in March.", MESSAGES, max_tokens=25)
    )

    assert count_tokens(long_text) > 25
    assert 0 < count_tokens(summary) <= 25
    assert long_text.startswith(summary)
    [request] = server.chat_requests
    assert request.model == "summary-model"
    assert request.response_format is not None
    assert request.response_format["json_schema"]["name"] == "summary"
    assert "at most 25 tokens" in request.system_prompt
    assert "Be thorough" in request.system_prompt
    assert "Alice and Bob met in March." in request.prompt_text


async def test_summary_short_style_and_fitting_summary_unchanged(
    server: ScriptedOpenAI, make_reasoner: ReasonerFactory
) -> None:
    reasoner = make_reasoner(server.base_url)
    server.enqueue(Reply.json({"summary": "  Bob moved to Lyon.  "}))
    summary = await reasoner.summarize(SummaryRequest("short", None, MESSAGES, max_tokens=100))
    assert summary == "Bob moved to Lyon."
    assert "Be brief" in server.chat_requests[0].system_prompt
    assert "Previous summary:\n(none)" in server.chat_requests[0].prompt_text


async def test_peer_card_is_capped_and_deduplicated(
    server: ScriptedOpenAI, make_reasoner: ReasonerFactory
) -> None:
    reasoner = make_reasoner(server.base_url)
    server.enqueue(
        Reply.json(
            {
                "facts": [
                    "Bob lives in Lyon.",
                    "bob lives in  Lyon",
                    "",
                    "- Bob works at a bakery.",
                    "Bob runs half marathons.",
                    "Bob has a sister named Chloe.",
                ]
            }
        )
    )

    card = await reasoner.update_peer_card(
        PeerCardRequest(
            "alice",
            "bob",
            current=["Bob lives in Paris."],
            new_observations=["Bob moved to Lyon."],
            max_facts=3,
        )
    )

    assert card == ["Bob lives in Lyon.", "Bob works at a bakery.", "Bob runs half marathons."]
    [request] = server.chat_requests
    assert "At most 3 facts" in request.system_prompt
    assert "- Bob lives in Paris." in request.prompt_text
    assert "- Bob moved to Lyon." in request.prompt_text


async def test_bare_array_is_accepted_as_the_list(
    server: ScriptedOpenAI, make_reasoner: ReasonerFactory
) -> None:
    reasoner = make_reasoner(server.base_url)
    server.enqueue(Reply.json(["Bob lives in Lyon."]))
    card = await reasoner.update_peer_card(PeerCardRequest("alice", "bob", [], ["x"]))
    assert card == ["Bob lives in Lyon."]


async def test_models_per_task_and_custom_instructions(
    server: ScriptedOpenAI, make_reasoner: ReasonerFactory
) -> None:
    reasoner = make_reasoner(
        server.base_url,
        llm_extraction_model="extraction-model",
        llm_summary_model="summary-model",
        llm_custom_instructions="Write in British English.",
    )
    server.enqueue(
        Reply.json({"observations": []}),
        Reply.json({"summary": "s"}),
        Reply.json({"facts": []}),
    )

    await reasoner.extract(extraction_request(custom_instructions="Focus on hobbies."))
    await reasoner.summarize(
        SummaryRequest("short", None, MESSAGES, 50, custom_instructions="Mention places.")
    )
    await reasoner.update_peer_card(PeerCardRequest("alice", "bob", [], ["Bob is 34."]))

    extraction, summary, card = server.chat_requests
    assert [extraction.model, summary.model, card.model] == [
        "extraction-model",
        "summary-model",
        "base-model",  # llm_dream_model unset: llm_model
    ]
    assert extraction.system_prompt.endswith(
        "Additional instructions:\n\nFocus on hobbies.\n\nWrite in British English."
    )
    assert "Mention places." in summary.system_prompt
    assert "Focus on hobbies." not in summary.system_prompt
    assert "Write in British English." in summary.system_prompt
    assert "Write in British English." in card.system_prompt
    assert reasoner.models == {
        "extraction": "extraction-model",
        "summary": "summary-model",
        "peer_card": "base-model",
    }


async def test_mode_memory_is_per_model(make_reasoner: ReasonerFactory) -> None:
    with scripted_openai(rejects_json_schema=True) as server:
        reasoner = make_reasoner(server.base_url, llm_summary_model="summary-model")
        server.enqueue(Reply.json({"observations": []}), Reply.json({"summary": "s"}))
        await reasoner.extract(extraction_request())
        await reasoner.summarize(SummaryRequest("short", None, MESSAGES, 50))
        # The summary model had not been tried yet: it starts from json_schema again.
        assert [r.response_format_type for r in server.chat_requests] == [
            "json_schema",
            "json_object",
            "json_schema",
            "json_object",
        ]


async def test_inputs_needing_no_model_make_no_request(
    server: ScriptedOpenAI, make_reasoner: ReasonerFactory
) -> None:
    reasoner = make_reasoner(server.base_url)
    assert await reasoner.extract(extraction_request(messages=[])) == []
    assert await reasoner.summarize(SummaryRequest("short", "Old summary.", [], 50)) == (
        "Old summary."
    )
    assert await reasoner.summarize(SummaryRequest("short", "Old", MESSAGES, 0)) == ""
    card = await reasoner.update_peer_card(
        PeerCardRequest("alice", "bob", ["Bob is 34.", "Bob is 34", "Bob lives in Lyon."], [])
    )
    assert card == ["Bob is 34.", "Bob lives in Lyon."]
    assert server.requests == []


async def test_concurrent_calls(make_reasoner: ReasonerFactory) -> None:
    def answer(request: RecordedRequest) -> Reply:
        ids = [json.loads(line)["id"] for line in _new_message_lines(request)]
        return Reply.json(
            {
                "observations": [
                    {
                        "content": f"Bob said {ids[0]}.",
                        "level": "explicit",
                        "source_message_ids": ids,
                    }
                ]
            },
            delay=0.05,
        )

    with scripted_openai(default=answer) as server:
        reasoner = make_reasoner(server.base_url)
        requests = [
            extraction_request(messages=[TranscriptLine(f"c{i}", "bob", f"msg {i}", T0)])
            for i in range(12)
        ]
        results = await asyncio.gather(*(reasoner.extract(r) for r in requests))
        assert [r[0].source_message_ids for r in results] == [[f"c{i}"] for i in range(12)]
        assert len(server.chat_requests) == 12


def _new_message_lines(request: RecordedRequest) -> list[str]:
    user = request.messages[1]["content"]
    section = user.split("New messages from bob, one JSON object per line:\n", 1)[1]
    return [line for line in section.split("\n\n", 1)[0].splitlines() if line.startswith("{")]


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="llm_base_url"):
        create_llm_reasoner(LLMSettings(llm_base_url=None))
    with pytest.raises(ValueError, match="llm_structured_output"):
        create_llm_reasoner(
            LLMSettings(llm_base_url="http://127.0.0.1:1/v1", llm_structured_output="grammar")
        )


async def test_create_llm_reasoner(server: ScriptedOpenAI) -> None:
    reasoner = create_llm_reasoner(llm_settings(server.base_url + "/", llm_model="m"))
    try:
        assert reasoner.name == "llm"
        assert reasoner.base_url == server.base_url
        server.enqueue(Reply.json({"facts": ["Bob is 34."]}))
        assert await reasoner.update_peer_card(
            PeerCardRequest("alice", "bob", [], ["Bob is 34."])
        ) == ["Bob is 34."]
    finally:
        await reasoner.aclose()


# --- the fake server itself (reused by embedding tests) ---------------------------------------


async def test_fake_server_embeddings(server: ScriptedOpenAI) -> None:
    client = AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0)
    try:
        default = await client.embeddings.create(model="e", input=["alpha", "beta"])
        assert [d.embedding for d in default.data] == [
            pytest.approx(fake_embedding("alpha")),
            pytest.approx(fake_embedding("beta")),
        ]
        server.enqueue(Reply.embeddings([[1.0, 0.0], [0.0, 1.0]]), endpoint="embeddings")
        scripted = await client.embeddings.create(
            model="e", input=["a", "b"], encoding_format="float"
        )
        assert [d.embedding for d in scripted.data] == [[1.0, 0.0], [0.0, 1.0]]
        assert [r.body["input"] for r in server.embedding_requests] == [
            ["alpha", "beta"],
            ["a", "b"],
        ]
        assert server.unscripted == server.embedding_requests[:1]
    finally:
        await client.close()
