"""How the dialectic picks its evidence from the merged hits: conclusions that only restate
chosen messages give their slot to the next item."""

from __future__ import annotations

from datetime import UTC, datetime

from libs.common.models import Conclusion, Message
from services.dialectic.service import (
    _conclusion_evidence,
    _Found,
    _message_evidence,
    _without_echoes,
)

AT = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def msg(id_: str, score: float) -> _Found:
    row = Message(id=id_, peer_id="bob", session_id="s", content=f"text {id_}", created_at=AT)
    return _Found(evidence=_message_evidence(row), row=row, score=score)


def concl(id_: str, sources: list[str], score: float) -> _Found:
    row = Conclusion(
        id=id_, observed_id="bob", session_id="s", content=f"fact {id_}", source_ids=sources
    )
    row.created_at = AT
    return _Found(evidence=_conclusion_evidence(row), row=row, score=score)


def ids(found: list[_Found]) -> list[str]:
    return [f.row.id for f in found]


def test_conclusion_restating_a_chosen_message_is_dropped() -> None:
    ranked = [msg("m1", 0.9), concl("c1", ["m1"], 0.8), msg("m2", 0.7), msg("m3", 0.6)]
    assert ids(_without_echoes(ranked, 3)[:3]) == ["m1", "m2", "m3"]


def test_conclusion_with_a_source_outside_the_evidence_stays() -> None:
    ranked = [msg("m1", 0.9), concl("c1", ["m1", "m9"], 0.8), concl("c2", ["m8"], 0.7)]
    assert ids(_without_echoes(ranked, 3)) == ["m1", "c1", "c2"]


def test_client_created_conclusion_without_sources_stays() -> None:
    ranked = [msg("m1", 0.9), concl("c1", [], 0.8)]
    assert ids(_without_echoes(ranked, 2)) == ["m1", "c1"]


def test_message_beyond_the_depth_does_not_hide_a_conclusion() -> None:
    # m2 is not among the best 2, so c1 (restating m2) is the better evidence and stays.
    ranked = [msg("m1", 0.9), concl("c1", ["m2"], 0.8), msg("m2", 0.1)]
    assert ids(_without_echoes(ranked, 2)[:2]) == ["m1", "c1"]


def test_echo_stays_when_nothing_else_would_take_its_slot() -> None:
    ranked = [msg("m1", 0.9), concl("c1", ["m1"], 0.8)]
    assert ids(_without_echoes(ranked, 5)) == ["m1", "c1"]
    # one spare slot beyond the non-echo items: the best echo keeps it, in rank order
    ranked = [msg("m1", 0.9), concl("c1", ["m1"], 0.8), concl("c2", ["m1"], 0.7), msg("m2", 0.6)]
    assert ids(_without_echoes(ranked, 3)) == ["m1", "c1", "m2"]
