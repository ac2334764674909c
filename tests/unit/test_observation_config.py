"""Session-level observation settings override peer-level defaults, which override the
built-in defaults (observe_me on, observe_others off)."""

from __future__ import annotations

from typing import Any

import pytest

from services.ingest.repository import Member
from services.ingest.service import effective_observe_me, effective_observe_others


def _member(peer: dict[str, Any], session: dict[str, Any]) -> Member:
    return Member(peer_id="p", peer_configuration=peer, session_configuration=session)


@pytest.mark.parametrize(
    ("peer", "session", "expected"),
    [
        ({}, {}, True),
        ({"observe_me": False}, {}, False),
        ({"observe_me": False}, {"observe_me": True}, True),
        ({"observe_me": True}, {"observe_me": False}, False),
        ({"observe_me": False}, {"observe_me": None}, False),
    ],
)
def test_observe_me(peer: dict[str, Any], session: dict[str, Any], expected: bool) -> None:
    assert effective_observe_me(_member(peer, session)) is expected


@pytest.mark.parametrize(
    ("peer", "session", "expected"),
    [
        ({}, {}, False),
        ({"observe_others": True}, {}, True),
        ({"observe_others": True}, {"observe_others": False}, False),
        ({"observe_others": False}, {"observe_others": True}, True),
        ({"observe_others": True}, {"observe_others": None}, True),
    ],
)
def test_observe_others(peer: dict[str, Any], session: dict[str, Any], expected: bool) -> None:
    assert effective_observe_others(_member(peer, session)) is expected
