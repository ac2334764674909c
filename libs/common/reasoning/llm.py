"""The LLM reasoner: any OpenAI-compatible chat-completions endpoint through the ``openai`` SDK.

Structured output degrades gracefully, because providers differ in what they honour:

1. ``json_schema`` — ``response_format={"type": "json_schema", ..., "strict": true}``;
2. ``json_object`` — JSON mode, with the JSON Schema spelled out in the system prompt;
3. ``text`` — no ``response_format`` at all (only reached when JSON mode is rejected too).

With ``llm_structured_output="auto"`` a request starts at the first mode this process has seen
work for the endpoint + model and moves down when the provider rejects the format (HTTP 400/422
naming ``response_format``) or answers with something that is not a valid instance of the
schema. Every reply goes through a local repair step (``<think>`` blocks and code fences
stripped, the first JSON value extracted from prose, trailing commas removed) and pydantic
validation; when that fails in the last mode, the model gets one repair request quoting the
validation error. ``"json_schema"`` or ``"json_object"`` pin a single mode.

Transport failures are retried here (the SDK's own retries are off): 408/409/425/429 and 5xx
(honouring ``Retry-After`` / ``retry-after-ms``), timeouts and connection errors, with
exponential back-off and jitter, ``llm_max_retries`` times; then
:class:`~libs.common.reasoning.port.TransientReasonerError`. Other 4xx statuses, replies that
are not chat completions at all (after the same retries) and output that stays invalid after
repair raise :class:`~libs.common.reasoning.port.PermanentReasonerError`.

The dialectic (``answer`` / ``stream_answer``) answers from the evidence it is given only
(:data:`DIALECTIC_PROMPT`), abstains without a model call when there is none, streams the
model's deltas (``stream=True``; a leading ``<think>`` block is dropped from both forms), and
with a ``response_format`` runs the same structured-output chain, validating every reply with
:mod:`libs.common.reasoning.schema_check`.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import random
import re
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, Self, TypeVar

import httpx
import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONObject, ResponseFormatJSONSchema
from pydantic import (
    BaseModel,
    ConfigDict,
    RootModel,
    ValidationError,
    field_validator,
    model_validator,
)

from libs.common.reasoning.answers import ABSTENTION, word_chunks
from libs.common.reasoning.port import (
    LEVELS,
    AnswerRequest,
    Evidence,
    ExtractionRequest,
    Level,
    Observation,
    PeerCardRequest,
    PermanentReasonerError,
    SummaryRequest,
    TranscriptLine,
    TransientReasonerError,
)
from libs.common.reasoning.schema_check import schema_errors
from libs.common.settings import LLMSettings
from libs.common.tokens import truncate_to_tokens

__all__ = [
    "DIALECTIC_PROMPT",
    "EXTRACTION_PROMPT",
    "JSON_MODE_PROMPT",
    "PEER_CARD_PROMPT",
    "REPAIR_PROMPT",
    "SUMMARY_PROMPT",
    "LLMReasoner",
    "StructuredOutputMode",
    "create_llm_reasoner",
    "forget_structured_output_modes",
    "parse_retry_after",
    "remembered_structured_output_mode",
    "repair_json",
]

log = logging.getLogger(__name__)

StructuredOutputMode = Literal["auto", "json_schema", "json_object"]
"""Values of ``llm_structured_output``."""

WireMode = Literal["json_schema", "json_object", "text"]
"""How one request asks for JSON (``text``: by the prompt alone)."""

_CONFIGURED_MODES: Final[tuple[StructuredOutputMode, ...]] = ("auto", "json_schema", "json_object")
_AUTO_SEQUENCE: Final[tuple[WireMode, ...]] = ("json_schema", "json_object", "text")

# ---------------------------------------------------------------------------------------------
# Prompts. ``str.format`` templates: doubled braces are literal.
# ---------------------------------------------------------------------------------------------

EXTRACTION_PROMPT: Final = """\
You maintain the memory of {observer}. From the new messages written by {observed}, write \
down what {observer} has just learned about {observed}.

Rules:
- One observation = one atomic fact about {observed} only, as a self-contained sentence that \
makes sense without the conversation. Name people instead of using pronouns: write \
"{observed} ...", never "I", "you", "he", "she" or "they".
- Record only what {observer} learned from these messages, from {observer}'s point of view.
- Replace relative times ("yesterday", "next Friday", "in two weeks") with absolute dates \
computed from the message's timestamp.
- Choose a level for each observation:
  - "explicit": {observed} said it directly;
  - "deductive": follows with certainty from what {observed} said and what is already known;
  - "inductive": a probable pattern or generalisation, not certain;
  - "contradiction": conflicts with something already known; state both versions.
- "source_message_ids": ids of the new messages the observation rests on, and no other ids.
- Earlier messages only help to resolve references; conclude nothing from them alone.
- Ignore greetings, small talk, filler and anything that is not about {observed}.
- Do not restate what is already known. An empty list is a valid answer.

Answer in JSON: {{"observations": [{{"content": "...", "level": "explicit", \
"source_message_ids": ["..."]}}]}}"""

SELF_OBSERVATION_NOTE: Final = """\
Here {observer} and {observed} are the same peer: record what {observed} reveals about \
themself."""

SUMMARY_PROMPT: Final = """\
You keep a running summary of a conversation. Fold the new messages into the previous summary \
and return the updated summary.

- Keep what will matter later: who the participants are, facts they shared, decisions, plans, \
commitments, open questions.
- Name people; write absolute dates (each message has a timestamp).
- Drop greetings and filler. Newer information replaces older information it contradicts.
- {style}
- Use at most {max_tokens} tokens (about {max_words} words); shorter is fine.

Answer in JSON: {{"summary": "..."}}"""

SUMMARY_STYLES: Final[Mapping[str, str]] = {
    "short": "Be brief: the gist in a few sentences.",
    "long": "Be thorough: keep specifics such as names, numbers, places and dates.",
}

PEER_CARD_PROMPT: Final = """\
You keep {observer}'s card about {observed}: a short list of stable facts about {observed}, \
such as name, age, location, occupation, family and relationships, lasting preferences, \
important dates.

- Merge the new observations into the current card: keep facts that still hold, correct or \
remove facts the new observations contradict, add new stable facts.
- Leave out passing moods, one-off events and guesses.
- One short sentence per fact, naming {observed}; no duplicates.
- At most {max_facts} facts, most important first.

Answer in JSON: {{"facts": ["..."]}}"""

JSON_MODE_PROMPT: Final = """\
Reply with a single JSON value that conforms to this JSON Schema, and nothing else (no prose, \
no code fences):
{schema}"""

REPAIR_PROMPT: Final = """\
Your previous reply could not be used: {error}
Reply again with only the corrected JSON. It must conform to this JSON Schema:
{schema}"""

CUSTOM_INSTRUCTIONS_HEADER: Final = "Additional instructions:"

DIALECTIC_PROMPT: Final = """\
You are the memory of the peer "{asker}" and answer a question asked on {asker}'s behalf\
{about}. The evidence below is everything {asker} may know that bears on it: {scope}. \
It was retrieved by search, best match first, so some items may be unrelated.

Rules:
- Answer from the evidence and the peer card only. No outside knowledge, no guesses about \
people.
- If nothing in them answers the question, reply exactly "{abstention}" — or, when something \
comes close, say that you do not know and give what the evidence does show.
- Never mention, quote or hint at anything that is not in the evidence.
- Give dates when they matter. "Today", "yesterday" and the like inside an item are relative \
to that item's own time, not to the current time.
- When items disagree, prefer the newer one and say that they disagree.
- Be brief ({length}); plain text; no item numbers or ids.

Current time: {now}."""

DIALECTIC_LENGTHS: Final[Mapping[str, str]] = {
    "minimal": "one sentence",
    "low": "one to two sentences",
    "medium": "up to three sentences",
    "high": "up to five sentences",
    "max": "a short paragraph",
}

STRUCTURED_ANSWER_NOTE: Final = """\
Give the answer as JSON that conforms to the JSON Schema of this request; put what you would \
have said into its fields. When the evidence does not answer the question, fill the fields \
accordingly instead of inventing facts."""

# ---------------------------------------------------------------------------------------------
# Output schemas (strict-mode compatible) and the pydantic models that validate replies.
# ---------------------------------------------------------------------------------------------

_EXTRACTION_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "observations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "content": {"type": "string"},
                    "level": {"type": "string", "enum": list(LEVELS)},
                    "source_message_ids": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["content", "level", "source_message_ids"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["observations"],
    "additionalProperties": False,
}

_SUMMARY_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"summary": {"type": "string"}},
    "required": ["summary"],
    "additionalProperties": False,
}

_PEER_CARD_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"facts": {"type": "array", "items": {"type": "string"}}},
    "required": ["facts"],
    "additionalProperties": False,
}


class _ObservationOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    content: str
    level: Level
    source_message_ids: list[str] = []

    @field_validator("content")
    @classmethod
    def _content_not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("level", mode="before")
    @classmethod
    def _normalise_level(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("source_message_ids", mode="before")
    @classmethod
    def _ids_as_strings(cls, value: object) -> object:
        if value is None:
            return []
        if isinstance(value, str | int):
            value = [value]
        if isinstance(value, list):
            return [str(item) if isinstance(item, int) else item for item in value]
        return value


class _ExtractionOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    observations: list[_ObservationOut]


class _SummaryOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    summary: str


class _PeerCardOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    facts: list[str]


_T = TypeVar("_T", bound=BaseModel)

# Which field a bare top-level JSON array stands for, per output model.
_LIST_FIELDS: Final[Mapping[type[BaseModel], str]] = {
    _ExtractionOut: "observations",
    _PeerCardOut: "facts",
}

# ---------------------------------------------------------------------------------------------
# Per-process memory of the structured-output mode that works for (base_url, model).
# ---------------------------------------------------------------------------------------------

_working_modes: dict[tuple[str, str], WireMode] = {}


def remembered_structured_output_mode(base_url: str, model: str) -> WireMode | None:
    """The mode this process last saw work (or be required) for ``base_url`` + ``model``."""
    return _working_modes.get((_normalise_base_url(base_url), model))


def forget_structured_output_modes() -> None:
    """Forget every remembered mode (tests; or after reconfiguring a provider)."""
    _working_modes.clear()


def _normalise_base_url(base_url: str) -> str:
    return base_url.strip().rstrip("/")


# ---------------------------------------------------------------------------------------------
# The reasoner
# ---------------------------------------------------------------------------------------------

_RETRYABLE_STATUSES: Final = frozenset({408, 409, 425, 429})
_FORMAT_HINTS: Final = (
    "response_format",
    "response format",
    "json_schema",
    "json schema",
    "json_object",
    "structured output",
)
_MAX_ECHOED_REPLY_CHARS: Final = 4000
_MAX_ERROR_CHARS: Final = 1000
_WEEKDAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class _Task:
    name: str
    model: str
    schema_name: str
    schema: dict[str, Any]
    system: str
    user: str
    strict: bool = True


@dataclass(frozen=True)
class _Reply:
    text: str
    finish_reason: str | None


class _FormatRejectedError(Exception):
    """The provider refused the ``response_format`` of the request."""


class LLMReasoner:
    """:class:`~libs.common.reasoning.port.Reasoner` backed by an OpenAI-compatible endpoint.

    Safe to call concurrently. ``backoff_base_s`` / ``backoff_max_s`` shape the exponential
    back-off between retries; a ``Retry-After`` longer than ``max_retry_after_s`` is not waited
    for in-process: the call raises :class:`TransientReasonerError` at once.
    """

    name: str = "llm"

    def __init__(
        self,
        settings: LLMSettings,
        *,
        client: AsyncOpenAI | None = None,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 20.0,
        max_retry_after_s: float = 60.0,
    ) -> None:
        if not settings.llm_base_url:
            raise ValueError("llm_base_url is not set: use the extractive reasoner instead")
        configured = settings.llm_structured_output.strip().lower()
        if configured not in _CONFIGURED_MODES:
            raise ValueError(
                f"llm_structured_output must be one of {', '.join(_CONFIGURED_MODES)}; "
                f"got {settings.llm_structured_output!r}"
            )
        self._configured: StructuredOutputMode = configured
        self._base_url = _normalise_base_url(settings.llm_base_url)
        self._extraction_model = settings.llm_extraction_model or settings.llm_model
        self._summary_model = settings.llm_summary_model or settings.llm_model
        self._card_model = settings.llm_dream_model or settings.llm_model
        self._dialectic_model = settings.llm_dialectic_model or settings.llm_model
        self._temperature = settings.llm_temperature
        self._max_retries = settings.llm_max_retries
        self._timeout_s = settings.llm_timeout_s
        self._custom_instructions = _clean_instructions(settings.llm_custom_instructions)
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._max_retry_after_s = max_retry_after_s
        self._client = client or AsyncOpenAI(
            base_url=self._base_url,
            api_key=settings.llm_api_key.get_secret_value(),
            timeout=settings.llm_timeout_s,
            max_retries=0,
        )

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def models(self) -> Mapping[str, str]:
        """The model used for each task."""
        return {
            "extraction": self._extraction_model,
            "summary": self._summary_model,
            "peer_card": self._card_model,
        }

    async def aclose(self) -> None:
        """Close the underlying HTTP client."""
        await self._client.close()

    # -- the port ------------------------------------------------------------------------------

    async def extract(self, request: ExtractionRequest) -> list[Observation]:
        if not request.messages:
            return []
        system = EXTRACTION_PROMPT.format(observer=request.observer, observed=request.observed)
        if request.observer == request.observed:
            note = SELF_OBSERVATION_NOTE.format(
                observer=request.observer, observed=request.observed
            )
            system = f"{system}\n\n{note}"
        task = _Task(
            name="extraction",
            model=self._extraction_model,
            schema_name="observations",
            schema=_EXTRACTION_SCHEMA,
            system=self._with_instructions(system, request.custom_instructions),
            user=_extraction_user_prompt(request),
        )
        result = await self._structured(task, _ExtractionOut)
        return _observations_from(result, request)

    async def summarize(self, request: SummaryRequest) -> str:
        if request.max_tokens <= 0:
            return ""
        if not request.messages:
            return truncate_to_tokens((request.previous or "").strip(), request.max_tokens)
        system = SUMMARY_PROMPT.format(
            style=SUMMARY_STYLES.get(request.kind, SUMMARY_STYLES["short"]),
            max_tokens=request.max_tokens,
            max_words=max(1, request.max_tokens * 3 // 4),
        )
        task = _Task(
            name="summary",
            model=self._summary_model,
            schema_name="summary",
            schema=_SUMMARY_SCHEMA,
            system=self._with_instructions(system, request.custom_instructions),
            user=_summary_user_prompt(request),
        )
        result = await self._structured(task, _SummaryOut)
        return truncate_to_tokens(result.summary.strip(), request.max_tokens)

    async def update_peer_card(self, request: PeerCardRequest) -> list[str]:
        if request.max_facts <= 0:
            return []
        if not request.new_observations:
            return _clean_facts(request.current, request.max_facts)
        system = PEER_CARD_PROMPT.format(
            observer=request.observer, observed=request.observed, max_facts=request.max_facts
        )
        task = _Task(
            name="peer_card",
            model=self._card_model,
            schema_name="peer_card",
            schema=_PEER_CARD_SCHEMA,
            system=self._with_instructions(system, request.custom_instructions),
            user=_peer_card_user_prompt(request),
        )
        result = await self._structured(task, _PeerCardOut)
        return _clean_facts(result.facts, request.max_facts)

    async def answer(self, request: AnswerRequest) -> str:
        """An answer from the evidence only (see :data:`DIALECTIC_PROMPT`); :data:`ABSTENTION`
        without a model call when there is no evidence and no ``response_format``. With
        ``response_format`` the answer is a JSON document that validates against it."""
        if request.response_format is not None:
            return await self._structured_answer(request)
        if not request.evidence and not request.peer_card:
            return ABSTENTION
        task = self._answer_task(request)
        reply = await self._complete(task, "text", _chat(task))
        return _visible(reply.text) or ABSTENTION

    async def stream_answer(self, request: AnswerRequest) -> AsyncIterator[str]:
        """:meth:`answer` as the model's deltas (``stream=True``); a leading ``<think>`` block is
        held back. Structured answers are produced whole, then sent in word chunks."""
        if request.response_format is not None or (not request.evidence and not request.peer_card):
            for chunk in word_chunks(await self.answer(request)):
                yield chunk
            return
        task = self._answer_task(request)
        stream = await self._open_stream(task, _chat(task))
        sent = False
        async for chunk in _visible_stream(_deltas(stream, task, self._base_url)):
            sent = True
            yield chunk
        if not sent:
            yield ABSTENTION

    def _answer_task(self, request: AnswerRequest) -> _Task:
        return _Task(
            name="dialectic",
            model=self._dialectic_model,
            schema_name="answer",
            schema=request.response_format or {},
            system=self._with_instructions(_dialectic_system(request), request.custom_instructions),
            user=_dialectic_user_prompt(request),
            strict=False,
        )

    async def _structured_answer(self, request: AnswerRequest) -> str:
        schema = request.response_format or {}
        task = self._answer_task(request)
        task = _Task(
            name=task.name,
            model=task.model,
            schema_name=task.schema_name,
            schema=schema,
            system=f"{task.system}\n\n{STRUCTURED_ANSWER_NOTE}",
            user=task.user,
            strict=False,
        )
        value = await self._structured(task, _schema_output(schema))
        return json.dumps(value.root, ensure_ascii=False)

    async def _open_stream(
        self, task: _Task, messages: list[ChatCompletionMessageParam]
    ) -> openai.AsyncStream[ChatCompletionChunk]:
        """Start a streamed completion, retried like :meth:`_complete` until it starts."""
        attempts = self._max_retries + 1
        failure = "no attempt made"
        last_exc: BaseException | None = None
        for attempt in range(attempts):
            delay: float | None = None
            try:
                return await self._client.chat.completions.create(
                    model=task.model,
                    messages=messages,
                    temperature=self._temperature,
                    stream=True,
                )
            except openai.APIStatusError as exc:
                detail = _error_detail(exc)
                if not _is_retryable_status(exc.status_code):
                    raise PermanentReasonerError(
                        f"{task.name}: {task.model} at {self._base_url} answered "
                        f"HTTP {exc.status_code}: {detail}"
                    ) from exc
                failure, last_exc = f"HTTP {exc.status_code}: {detail}", exc
                delay = parse_retry_after(exc.response.headers)
                if delay is not None and delay > self._max_retry_after_s:
                    raise TransientReasonerError(
                        f"{task.name}: {self._base_url} asks to retry after {delay:.1f}s"
                    ) from exc
            except openai.APITimeoutError as exc:
                failure, last_exc = f"timed out after {self._timeout_s:g}s", exc
            except openai.APIConnectionError as exc:
                failure, last_exc = f"connection failed: {exc}", exc
            if attempt + 1 < attempts:
                await asyncio.sleep(delay if delay is not None else self._backoff(attempt))
        raise TransientReasonerError(
            f"{task.name}: {task.model} at {self._base_url} failed after {attempts} "
            f"attempt(s): {failure}"
        ) from last_exc

    # -- structured output ---------------------------------------------------------------------

    def _with_instructions(self, system: str, per_request: str | None) -> str:
        extra = [
            text
            for text in (_clean_instructions(per_request), self._custom_instructions)
            if text is not None
        ]
        if not extra:
            return system
        return "\n\n".join([system, CUSTOM_INSTRUCTIONS_HEADER, *extra])

    def _modes_for(self, key: tuple[str, str]) -> tuple[WireMode, ...]:
        if self._configured == "json_schema":
            return ("json_schema",)
        if self._configured == "json_object":
            return ("json_object",)
        remembered = _working_modes.get(key)
        start = _AUTO_SEQUENCE.index(remembered) if remembered is not None else 0
        return _AUTO_SEQUENCE[start:]

    def _remember(self, key: tuple[str, str], mode: WireMode) -> None:
        if self._configured != "auto":
            return
        previous = _working_modes.get(key)
        if previous != mode:
            _working_modes[key] = mode
            if previous is not None or mode != "json_schema":
                log.info(
                    "structured output for %s at %s: using %s (was %s)",
                    key[1],
                    key[0],
                    mode,
                    previous or "untested",
                )

    async def _structured(self, task: _Task, output: type[_T]) -> _T:
        key = (self._base_url, task.model)
        modes = self._modes_for(key)
        schema_text = json.dumps(task.schema, separators=(",", ":"))
        for index, mode in enumerate(modes):
            fallback = modes[index + 1] if index + 1 < len(modes) else None
            system = task.system
            if mode != "json_schema":
                system = f"{system}\n\n{JSON_MODE_PROMPT.format(schema=schema_text)}"
            messages: list[ChatCompletionMessageParam] = [
                {"role": "system", "content": system},
                {"role": "user", "content": task.user},
            ]
            try:
                reply = await self._complete(task, mode, messages)
            except _FormatRejectedError as exc:
                if fallback is None:
                    raise PermanentReasonerError(
                        f"{task.name}: {task.model} at {self._base_url} rejected "
                        f"response_format {mode}: {exc}"
                    ) from exc
                log.warning(
                    "%s at %s rejected response_format %s; falling back to %s",
                    task.model,
                    self._base_url,
                    mode,
                    fallback,
                )
                self._remember(key, fallback)
                continue
            value, clean, error = _parse_reply(reply.text, output)
            if value is not None:
                # A schema-enforcing provider never needs local repair; one that did ignores
                # schemas, so later requests describe the schema in the prompt instead.
                self._remember(key, mode if clean or mode != "json_schema" else "json_object")
                return value
            if mode == "json_schema" and fallback is not None:
                log.warning(
                    "%s: %s at %s returned output that does not match the JSON schema (%s); "
                    "retrying in %s mode",
                    task.name,
                    task.model,
                    self._base_url,
                    error,
                    fallback,
                )
                continue
            return await self._repair(task, mode, messages, reply, error, schema_text, output)
        raise PermanentReasonerError(f"{task.name}: no structured-output mode left")

    async def _repair(
        self,
        task: _Task,
        mode: WireMode,
        messages: list[ChatCompletionMessageParam],
        reply: _Reply,
        error: str,
        schema_text: str,
        output: type[_T],
    ) -> _T:
        key = (self._base_url, task.model)
        log.warning(
            "%s: invalid output from %s (%s); asking for a repair", task.name, task.model, error
        )
        repair_messages: list[ChatCompletionMessageParam] = [
            *messages,
            {"role": "assistant", "content": reply.text[:_MAX_ECHOED_REPLY_CHARS] or "(empty)"},
            {"role": "user", "content": REPAIR_PROMPT.format(error=error, schema=schema_text)},
        ]
        try:
            repaired = await self._complete(task, mode, repair_messages)
        except _FormatRejectedError as exc:
            raise PermanentReasonerError(
                f"{task.name}: {task.model} rejected response_format {mode} on repair: {exc}"
            ) from exc
        value, _, repair_error = _parse_reply(repaired.text, output)
        if value is None:
            raise PermanentReasonerError(
                f"{task.name}: output of {task.model} is still invalid after a repair request: "
                f"{repair_error}"
            )
        self._remember(key, mode)
        return value

    # -- transport -----------------------------------------------------------------------------

    async def _complete(
        self, task: _Task, mode: WireMode, messages: list[ChatCompletionMessageParam]
    ) -> _Reply:
        """One chat completion, retried on transient failures."""
        attempts = self._max_retries + 1
        malformed = False
        failure = "no attempt made"
        last_exc: BaseException | None = None
        for attempt in range(attempts):
            delay: float | None = None
            malformed = False
            try:
                completion = await self._create(task, mode, messages)
            except openai.APIStatusError as exc:
                status = exc.status_code
                detail = _error_detail(exc)
                if mode != "text" and status in (400, 422) and _mentions_format(exc, detail):
                    raise _FormatRejectedError(f"HTTP {status}: {detail}") from exc
                if not _is_retryable_status(status):
                    raise PermanentReasonerError(
                        f"{task.name}: {task.model} at {self._base_url} answered "
                        f"HTTP {status}: {detail}"
                    ) from exc
                failure, last_exc = f"HTTP {status}: {detail}", exc
                delay = parse_retry_after(exc.response.headers)
                if delay is not None and delay > self._max_retry_after_s:
                    raise TransientReasonerError(
                        f"{task.name}: {self._base_url} asks to retry after {delay:.1f}s "
                        f"(HTTP {status})"
                    ) from exc
            except openai.APITimeoutError as exc:
                failure, last_exc = f"timed out after {self._timeout_s:g}s", exc
            except openai.APIConnectionError as exc:
                failure, last_exc = f"connection failed: {exc}", exc
            except (openai.APIResponseValidationError, json.JSONDecodeError) as exc:
                malformed = True
                failure, last_exc = f"malformed response: {exc}", exc
            else:
                reply = _reply_of(completion)
                if reply is not None:
                    return reply
                malformed = True
                failure, last_exc = "the response is not a chat completion", None
            if attempt + 1 >= attempts:
                break
            if delay is None:
                delay = self._backoff(attempt)
            log.info(
                "%s: %s (attempt %d of %d); retrying in %.2fs",
                task.name,
                failure,
                attempt + 1,
                attempts,
                delay,
            )
            await asyncio.sleep(delay)
        message = (
            f"{task.name}: {task.model} at {self._base_url} failed after {attempts} "
            f"attempt(s): {failure}"
        )
        if malformed:
            raise PermanentReasonerError(message) from last_exc
        raise TransientReasonerError(message) from last_exc

    async def _create(
        self, task: _Task, mode: WireMode, messages: list[ChatCompletionMessageParam]
    ) -> object:
        # Typed as ``object``: for a non-JSON content type the SDK returns the body as ``str``.
        completions = self._client.chat.completions
        if mode == "json_schema":
            schema_format: ResponseFormatJSONSchema = {
                "type": "json_schema",
                "json_schema": {
                    "name": task.schema_name,
                    "schema": task.schema,
                    "strict": task.strict,
                },
            }
            return await completions.create(
                model=task.model,
                messages=messages,
                temperature=self._temperature,
                response_format=schema_format,
            )
        if mode == "json_object":
            object_format: ResponseFormatJSONObject = {"type": "json_object"}
            return await completions.create(
                model=task.model,
                messages=messages,
                temperature=self._temperature,
                response_format=object_format,
            )
        return await completions.create(
            model=task.model, messages=messages, temperature=self._temperature
        )

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self._backoff_max_s, self._backoff_base_s * math.pow(2.0, min(attempt, 30)))
        return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not cryptography


def create_llm_reasoner(settings: LLMSettings) -> LLMReasoner:
    """An :class:`LLMReasoner` for ``settings`` (``llm_base_url`` must be set)."""
    return LLMReasoner(settings)


# ---------------------------------------------------------------------------------------------
# Helpers: HTTP errors
# ---------------------------------------------------------------------------------------------


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait according to ``retry-after-ms`` or ``Retry-After``; None if absent.

    ``Retry-After`` is an integer number of seconds or an HTTP date (RFC 9110); fractional
    seconds are accepted too, as several providers (and the ``openai`` SDK) do. Negative,
    infinite and unparseable values are ignored; dates in the past give ``0``.
    """
    milliseconds = _finite_non_negative(headers.get("retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _finite_non_negative(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _finite_non_negative(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return number


def _is_retryable_status(status: int) -> bool:
    return status in _RETRYABLE_STATUSES or status >= 500


def _error_detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    message: object = None
    if isinstance(body, dict):
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if message is None:
            message = body.get("message") or body.get("detail")
    text = str(message) if message is not None else exc.message
    return text[:_MAX_ERROR_CHARS]


def _mentions_format(exc: openai.APIStatusError, detail: str) -> bool:
    haystack = f"{detail} {exc.message} {exc.body!r}".lower()
    return any(hint in haystack for hint in _FORMAT_HINTS)


def _reply_of(completion: object) -> _Reply | None:
    """Text of the first choice, or None when ``completion`` is not a usable chat completion."""
    if not isinstance(completion, ChatCompletion):
        return None
    choices = getattr(completion, "choices", None)
    if not isinstance(choices, list) or not choices:
        return None
    choice = choices[0]
    message = getattr(choice, "message", None)
    content = getattr(message, "content", None)
    if content is None:
        refusal = getattr(message, "refusal", None)
        content = f"(refused: {refusal})" if isinstance(refusal, str) and refusal else ""
    if not isinstance(content, str):
        return None
    finish_reason = getattr(choice, "finish_reason", None)
    return _Reply(
        text=content, finish_reason=finish_reason if isinstance(finish_reason, str) else None
    )


# ---------------------------------------------------------------------------------------------
# Helpers: parsing and repairing JSON
# ---------------------------------------------------------------------------------------------

_THINK_BLOCK = re.compile(r"<think(?:ing)?>.*?</think(?:ing)?>", re.DOTALL | re.IGNORECASE)
_CODE_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_-]*[ \t]*\r?\n?(.*?)```", re.DOTALL)
_MAX_CANDIDATE_STARTS: Final = 64


def _parse_reply(text: str, output: type[_T]) -> tuple[_T | None, bool, str]:
    """``(value, clean, error)``: the first JSON value in ``text`` that validates as ``output``.

    ``clean`` is true when the whole reply was that JSON value, with no repair.
    """
    if not text.strip():
        return None, False, "the reply was empty"
    first_error: str | None = None
    for data, clean, nested in _json_candidates(text):
        list_field = _LIST_FIELDS.get(output)
        if isinstance(data, list) and list_field is not None and not nested:
            data = {list_field: data}
        try:
            return output.model_validate(data), clean, ""
        except ValidationError as exc:
            if first_error is None:
                first_error = _describe_validation_error(exc)
    if first_error is None:
        return None, False, "the reply contains no valid JSON object"
    return None, False, f"the JSON does not match the schema: {first_error}"


def repair_json(text: str) -> Any:
    """The first JSON value found in ``text`` after local repair.

    Strips ``<think>`` blocks and Markdown code fences, extracts the first balanced JSON object
    or array from surrounding prose and drops trailing commas.

    Raises:
        ValueError: no JSON value could be recovered.
    """
    for data, _, _ in _json_candidates(text):
        return data
    raise ValueError("no JSON value found")


def _json_candidates(text: str) -> Iterator[tuple[Any, bool, bool]]:
    """``(value, clean, nested)`` for each JSON value recoverable from ``text``, best first."""
    try:
        whole_reply: Any = json.loads(text.strip())
    except ValueError:
        whole_reply = _NOTHING
    if whole_reply is not _NOTHING:
        yield whole_reply, True, False
    without_thinking = _THINK_BLOCK.sub("", text)
    sources = [match.group(1) for match in _CODE_FENCE.finditer(without_thinking)]
    sources.append(without_thinking)
    for source in sources:
        whole = _loads_lenient(source.strip())
        if whole is not _NOTHING:
            yield whole, False, False
        covered_until = -1
        starts = 0
        for start, char in enumerate(source):
            if char not in "{[":
                continue
            starts += 1
            if starts > _MAX_CANDIDATE_STARTS:
                break
            end = _balanced_end(source, start)
            if end is None:
                continue
            value = _loads_lenient(source[start:end])
            if value is _NOTHING:
                continue
            yield value, False, start < covered_until
            covered_until = max(covered_until, end)


class _Nothing:
    pass


_NOTHING: Final = _Nothing()


def _loads_lenient(text: str) -> Any:
    if not text:
        return _NOTHING
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return json.loads(_strip_trailing_commas(text))
    except ValueError:
        return _NOTHING


def _balanced_end(text: str, start: int) -> int | None:
    """Index just past the bracket closing the one at ``start`` (string-aware), or None."""
    closers = {"{": "}", "[": "]"}
    stack: list[str] = []
    in_string = False
    escaped = False
    for index in range(start, len(text)):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in closers:
            stack.append(closers[char])
        elif char in "}]":
            if not stack or stack.pop() != char:
                return None
            if not stack:
                return index + 1
    return None


def _strip_trailing_commas(text: str) -> str:
    """``text`` without commas that directly precede ``}`` or ``]`` (outside strings)."""
    out: list[str] = []
    in_string = False
    escaped = False
    length = len(text)
    for index, char in enumerate(text):
        if in_string:
            out.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char == ",":
            following = index + 1
            while following < length and text[following] in " \t\r\n":
                following += 1
            if following < length and text[following] in "}]":
                continue
        out.append(char)
    return "".join(out)


def _describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:8]:
        location = ".".join(str(part) for part in error["loc"]) or "(root)"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)[:_MAX_ERROR_CHARS]


# ---------------------------------------------------------------------------------------------
# Helpers: prompts and post-processing
# ---------------------------------------------------------------------------------------------


def _clean_instructions(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    return text or None


def _timestamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"{moment.isoformat(timespec='minutes')} ({_WEEKDAYS[moment.weekday()]})"


def _transcript(lines: Sequence[TranscriptLine]) -> str:
    return "\n".join(
        json.dumps(
            {
                "id": line.message_id,
                "time": _timestamp(line.created_at),
                "speaker": line.speaker,
                "text": line.content,
            },
            ensure_ascii=False,
        )
        for line in lines
    )


def _bullets(items: Sequence[str]) -> str:
    return "\n".join(f"- {item}" for item in items) if items else "(none)"


def _extraction_user_prompt(request: ExtractionRequest) -> str:
    sections = [f"Observer: {request.observer}\nObserved: {request.observed}"]
    if request.context:
        sections.append(
            "Earlier messages (context only), one JSON object per line:\n"
            + _transcript(request.context)
        )
    sections.append(
        f"New messages from {request.observed}, one JSON object per line:\n"
        + _transcript(request.messages)
    )
    sections.append(f"Already known about {request.observed}:\n{_bullets(request.known)}")
    return "\n\n".join(sections)


def _summary_user_prompt(request: SummaryRequest) -> str:
    previous = (request.previous or "").strip() or "(none)"
    return (
        f"Previous summary:\n{previous}\n\n"
        f"New messages, one JSON object per line:\n{_transcript(request.messages)}"
    )


def _peer_card_user_prompt(request: PeerCardRequest) -> str:
    return (
        f"Observer: {request.observer}\nObserved: {request.observed}\n\n"
        f"Current card:\n{_bullets(request.current)}\n\n"
        f"New observations:\n{_bullets(request.new_observations)}"
    )


def _normalised(text: str) -> str:
    return " ".join(text.casefold().split()).rstrip(".")


def _observations_from(result: _ExtractionOut, request: ExtractionRequest) -> list[Observation]:
    """Observations with sources restricted to ``request.messages`` and duplicates dropped.

    An observation whose every cited id is foreign is attributed to the whole batch: it was
    derived from these messages, just not cited precisely.
    """
    batch_ids = [line.message_id for line in request.messages]
    allowed = set(batch_ids)
    seen = {_normalised(known) for known in request.known}
    observations: list[Observation] = []
    for item in result.observations:
        key = _normalised(item.content)
        if not key or key in seen:
            continue
        seen.add(key)
        sources = list(dict.fromkeys(i for i in item.source_message_ids if i in allowed))
        observations.append(
            Observation(
                content=item.content,
                level=item.level,
                source_message_ids=sources or list(batch_ids),
            )
        )
    return observations


def _clean_facts(facts: Sequence[str], max_facts: int) -> list[str]:
    cleaned: list[str] = []
    seen: set[str] = set()
    for fact in facts:
        text = " ".join(fact.split())
        text = text[2:] if text.startswith("- ") else text
        key = _normalised(text)
        if not key or key in seen:
            continue
        seen.add(key)
        cleaned.append(text)
        if len(cleaned) >= max_facts:
            break
    return cleaned


# ---------------------------------------------------------------------------------------------
# Helpers: the dialectic
# ---------------------------------------------------------------------------------------------

_LEADING_THINK = re.compile(r"^\s*<think(?:ing)?>.*?</think(?:ing)?>", re.DOTALL | re.IGNORECASE)


def _dialectic_system(request: AnswerRequest) -> str:
    if request.target and request.target != request.asker:
        about = f" about {request.target}"
        scope = (
            f"what {request.asker} has concluded about {request.target}, and messages "
            f"{request.target} wrote that {request.asker} witnessed"
        )
    else:
        about = ""
        scope = (
            f"what {request.asker} has concluded about themself, and messages "
            f"{request.asker} witnessed (written by {request.asker} or by others)"
        )
    return DIALECTIC_PROMPT.format(
        asker=request.asker,
        about=about,
        scope=scope,
        abstention=ABSTENTION,
        length=DIALECTIC_LENGTHS.get(request.reasoning_level, DIALECTIC_LENGTHS["low"]),
        now=_timestamp(request.now),
    )


def _evidence_line(item: Evidence) -> str:
    fields: dict[str, Any] = {"kind": item.kind, "time": _timestamp(item.created_at)}
    if item.kind == "message":
        fields["speaker"] = item.speaker
    else:
        fields["about"] = item.speaker
    if item.session_id:
        fields["session"] = item.session_id
    fields["text"] = item.content
    return json.dumps(fields, ensure_ascii=False)


def _dialectic_user_prompt(request: AnswerRequest) -> str:
    subject = request.target or request.asker
    evidence = "\n".join(_evidence_line(e) for e in request.evidence) or "(none)"
    return (
        f"Question from {request.asker}: {request.question}\n\n"
        f"Peer card ({request.asker}'s stable facts about {subject}):\n"
        f"{_bullets(request.peer_card)}\n\n"
        f"Evidence, one JSON object per line:\n{evidence}"
    )


def _chat(task: _Task) -> list[ChatCompletionMessageParam]:
    return [
        {"role": "system", "content": task.system},
        {"role": "user", "content": task.user},
    ]


def _schema_output(schema: dict[str, Any]) -> type[RootModel[Any]]:
    """A pydantic model accepting exactly the JSON values that validate against ``schema``."""

    class _SchemaAnswer(RootModel[Any]):
        @model_validator(mode="after")
        def _conforms(self) -> Self:
            problems = schema_errors(self.root, schema)
            if problems:
                raise ValueError("; ".join(problems))
            return self

    return _SchemaAnswer


def _visible(text: str) -> str:
    """``text`` without a leading reasoning block and leading white space ("" when only an
    unterminated reasoning block is left)."""
    while match := _LEADING_THINK.match(text):
        text = text[match.end() :]
    text = text.lstrip()
    return "" if text[:6].lower() == "<think" else text


def _undecided(head: str) -> bool:
    low = head[:10].lower()
    return not low or low.startswith("<think") or any(t.startswith(low) for t in _THINK_TAGS)


_THINK_TAGS: Final = ("<think>", "<thinking>")


async def _visible_stream(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
    """The chunks with the same leading part removed as :func:`_visible` removes."""
    pending: str | None = ""
    async for chunk in chunks:
        if pending is None:
            yield chunk
            continue
        pending += chunk
        while match := _LEADING_THINK.match(pending):
            pending = pending[match.end() :]
        head = pending.lstrip()
        if _undecided(head):
            continue
        pending = None
        yield head
    if pending is not None:
        rest = _visible(pending)
        if rest:
            yield rest


async def _deltas(
    stream: openai.AsyncStream[ChatCompletionChunk], task: _Task, base_url: str
) -> AsyncIterator[str]:
    try:
        async for chunk in stream:
            for choice in chunk.choices[:1]:
                content = choice.delta.content if choice.delta is not None else None
                if content:
                    yield content
    except (openai.APIError, httpx.HTTPError, ValueError) as exc:
        raise TransientReasonerError(
            f"{task.name}: the stream from {task.model} at {base_url} broke off: {exc}"
        ) from exc
    finally:
        await stream.close()  # also when the client went away mid-answer
