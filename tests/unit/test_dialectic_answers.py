"""The extractive dialectic answerer and the schema check behind structured answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from libs.common.reasoning.answers import (
    ABSTENTION,
    NOT_SPECIFICALLY,
    content_words,
    keywords,
    word_chunks,
)
from libs.common.reasoning.extractive import ExtractiveReasoner
from libs.common.reasoning.port import (
    AnswerRequest,
    Evidence,
    ReasoningLevel,
    UnsupportedRequestError,
)
from libs.common.reasoning.schema_check import schema_errors

AT = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
REASONER = ExtractiveReasoner()


def message(content: str, speaker: str = "bob", id_: str = "m1", at: datetime = AT) -> Evidence:
    return Evidence("message", id_, content, speaker, at, "kitchen")


def conclusion(content: str, about: str = "bob", id_: str = "c1", at: datetime = AT) -> Evidence:
    return Evidence("conclusion", id_, content, about, at, "kitchen")


def ask(
    question: str,
    *evidence: Evidence,
    asker: str = "alice",
    target: str | None = None,
    card: list[str] | None = None,
    level: ReasoningLevel = "low",
) -> str:
    return REASONER.answer_sync(
        AnswerRequest(
            question=question,
            asker=asker,
            target=target,
            evidence=list(evidence),
            peer_card=card or [],
            now=AT,
            reasoning_level=level,
        )
    )


def test_a_message_is_quoted_with_its_speaker_and_date() -> None:
    answer = ask(
        "What did Bob have for breakfast today?", message("I had eggs for breakfast today")
    )
    assert answer == "bob said on 2026-11-20: I had eggs for breakfast today."


def test_a_conclusion_with_a_date_is_given_as_it_is() -> None:
    answer = ask(
        "What did Bob have for breakfast?",
        conclusion("bob had eggs for breakfast on 2026-11-20"),
        target="bob",
    )
    assert answer == "bob had eggs for breakfast on 2026-11-20."


def test_a_conclusion_without_a_date_gets_the_date_it_was_noted() -> None:
    answer = ask("Where does bob work?", conclusion("bob works at a bakery"), target="bob")
    assert answer == "bob works at a bakery (noted on 2026-11-20)."


def test_no_evidence_abstains() -> None:
    assert ask("What did Bob have for breakfast?") == ABSTENTION


def test_unrelated_evidence_about_nobody_named_abstains() -> None:
    assert ask("What is the capital of France?", message("I had eggs today")) == ABSTENTION


def test_a_question_about_a_peer_with_no_matching_evidence_says_so_and_gives_what_is_known() -> (
    None
):
    answer = ask(
        "Can I trust that Alice won't attack me?",
        conclusion("alice is going to be peaceful", about="alice"),
        asker="charlie",
        target="alice",
    )
    assert answer == (
        f"{NOT_SPECIFICALLY} What I know about alice: "
        "alice is going to be peaceful (noted on 2026-11-20)."
    )


def test_matching_evidence_beats_the_retrieval_order() -> None:
    answer = ask(
        "What did Bob eat for dinner?",
        message("I ate cereal for breakfast", id_="m1"),
        message("I ate sushi for dinner", id_="m2"),
        level="minimal",
    )
    assert answer == "bob said on 2026-11-20: I ate sushi for dinner."


def test_irregular_verbs_and_endings_match_their_base_form() -> None:
    assert keywords("What did Bob eat?", ["bob"]) == {"eat"}
    assert keywords("I ate pasta") == {"eat", "pasta"}
    assert keywords("baked") == keywords("baking") == keywords("bake") == {"bak"}
    assert keywords("What did alice say yesterday?", ["alice"]) == set()
    assert content_words("Bob's eggs and bacon today", ["bob"]) == ["eggs", "bacon"]


def test_higher_levels_give_more_items() -> None:
    evidence = [
        message(f"I ate {food} for lunch", id_=f"m{i}", at=AT - timedelta(days=i))
        for i, food in enumerate(["soup", "salad", "pizza", "tacos", "curry", "ramen"])
    ]
    minimal = ask("What did Bob eat for lunch?", *evidence, level="minimal")
    high = ask("What did Bob eat for lunch?", *evidence, level="high")
    assert minimal == "bob said on 2026-11-20: I ate soup for lunch."
    assert [f in high for f in ("soup", "salad", "pizza", "tacos", "curry")] == [
        True,
        True,
        True,
        True,
        False,
    ]


def test_a_conclusion_and_its_message_are_not_both_given() -> None:
    answer = ask(
        "Is alice going to be peaceful?",
        conclusion("alice is going to be peaceful", about="alice", id_="c1"),
        message("I'm going to be peaceful", speaker="alice", id_="m1"),
        asker="charlie",
        target="alice",
        level="max",
    )
    assert answer == "alice is going to be peaceful (noted on 2026-11-20)."


def test_a_long_message_is_cut_to_its_matching_sentence() -> None:
    filler = "The weather was grey and the trains were late again. " * 8
    answer = ask("What did Bob buy?", message(filler + "I bought a red bicycle. " + filler))
    assert answer == "bob said on 2026-11-20: I bought a red bicycle."


def test_matching_peer_card_facts_are_used() -> None:
    answer = ask("Where does alice live?", asker="bob", target="alice", card=["Lives in Berlin"])
    assert answer == "From alice's card: Lives in Berlin."


def test_tell_me_about_a_peer_gives_what_is_known_about_that_peer_only() -> None:
    answer = ask("Tell me about Bob", message("I had eggs for breakfast today"))
    assert answer == (
        "What I know about bob: bob said on 2026-11-20: I had eggs for breakfast today."
    )


def test_response_format_is_refused_without_a_model() -> None:
    request = AnswerRequest(
        question="q",
        asker="alice",
        target=None,
        evidence=[],
        peer_card=[],
        now=AT,
        response_format={"type": "object"},
    )
    with pytest.raises(UnsupportedRequestError, match="needs an LLM"):
        REASONER.answer_sync(request)


async def test_streaming_gives_the_same_text_in_word_chunks() -> None:
    request = AnswerRequest(
        question="What did Bob have for breakfast?",
        asker="alice",
        target=None,
        evidence=[message("I had eggs  for breakfast today")],
        peer_card=[],
        now=AT,
    )
    chunks = [c async for c in REASONER.stream_answer(request)]
    assert "".join(chunks) == await REASONER.answer(request)
    assert chunks[:3] == ["bob ", "said ", "on "]


def test_word_chunks_reassemble_any_text() -> None:
    for text in ["", "one", "  two  words ", "a\nb\tc"]:
        assert "".join(word_chunks(text)) == text


# -- schema check ---------------------------------------------------------------------------


class _Item(BaseModel):
    name: str
    qty: int


class _Order(BaseModel):
    items: list[_Item]
    note: str | None = None


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ({"items": [{"name": "egg", "qty": 2}]}, True),
        ({"items": [{"name": "egg", "qty": 2}], "note": None}, True),
        ({"items": [{"name": "egg", "qty": "2"}]}, False),
        ({"items": [{"name": "egg"}]}, False),
        ({"note": "x"}, False),
        ([], False),
    ],
)
def test_schema_check_follows_pydantic_schemas(value: Any, ok: bool) -> None:
    assert (schema_errors(value, _Order.model_json_schema()) == []) is ok


def test_schema_check_reports_what_is_wrong() -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "level": {"enum": ["a", "b"]}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    assert schema_errors({"answer": "x", "level": "a"}, schema) == []
    assert schema_errors({"level": "c", "extra": 1}, schema) == [
        "$: missing required property 'answer'",
        "$.level: must be one of ['a', 'b']",
        "$: unexpected property 'extra'",
    ]
    assert schema_errors(True, {"type": "integer"}) == ["$: expected integer"]
    assert schema_errors(3.0, {"type": "integer", "minimum": 4}) == ["$: below the minimum 4"]
