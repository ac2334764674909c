"""Event contracts: every event's JSON Schema is snapshotted, so a breaking change shows in
review. Regenerate deliberately with ``RAPPORT_UPDATE_SNAPSHOTS=1 pytest tests/contract``."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from libs.common.broker import StreamLayout
from libs.common.events import ALL_EVENTS, EVENTS_BY_TYPE, Event, MessageCreated, Witness

SNAPSHOTS = Path(__file__).parent / "snapshots"


@pytest.mark.parametrize("event_cls", ALL_EVENTS, ids=lambda c: c.EVENT_TYPE)
def test_event_schema_matches_snapshot(event_cls: type[Event]) -> None:
    schema = json.dumps(event_cls.model_json_schema(), indent=2, sort_keys=True) + "\n"
    path = SNAPSHOTS / f"{event_cls.EVENT_TYPE}.json"
    if os.environ.get("RAPPORT_UPDATE_SNAPSHOTS") == "1":
        path.write_text(schema)
    assert path.exists(), f"no snapshot for {event_cls.EVENT_TYPE}; regenerate deliberately"
    assert path.read_text() == schema, (
        f"{event_cls.EVENT_TYPE} changed shape: add optional fields only, or bump "
        "schema_version and regenerate the snapshot"
    )


def test_event_names_are_noun_past_verb_and_unique() -> None:
    assert len(EVENTS_BY_TYPE) == len(ALL_EVENTS)
    for name in EVENTS_BY_TYPE:
        noun, _, verb = name.partition(".")
        assert noun and verb.endswith("ed"), name


def test_consumers_ignore_unknown_fields_and_roundtrip() -> None:
    event = MessageCreated(
        workspace_id="w",
        session_id="s",
        message_id="m" * 21,
        peer_id="alice",
        seq=3,
        content="hi",
        token_count=1,
        created_at=datetime(2026, 1, 2, tzinfo=UTC),
        observe_me=True,
        witnesses=[Witness(peer_id="bob", observe_others=True)],
    )
    wire = event.model_dump(mode="json") | {"added_in_a_later_version": 1}
    parsed = MessageCreated.model_validate(wire)
    assert parsed == event


def test_subjects_route_by_workspace_and_session() -> None:
    layout = StreamLayout(stream="S", prefix="rapport")
    event = MessageCreated(
        workspace_id="w1",
        session_id="s-1",
        message_id="m",
        peer_id="p",
        seq=1,
        content="x",
        token_count=1,
        created_at=datetime.now(UTC),
        observe_me=True,
    )
    assert layout.subject_for(event) == "rapport.message.created.w1.s-1"
    assert event.ordering_key() == "w1/s-1"
    assert layout.subjects_of_type("message.created") == "rapport.message.created.>"
