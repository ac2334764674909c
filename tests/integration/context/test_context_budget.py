"""get_context never exceeds its token budget — property-based over sessions, budgets and
options — and follows its selection rules: the summary choice, the newest contiguous messages
in chronological order, and nothing left out that would still have fitted."""

from __future__ import annotations

import random
from typing import Any

import httpx
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs.common.tokens import count_tokens

WS = "budget-ws"
WORDS = [
    "alice",
    "bob",
    "coffee",
    "tea",
    "mountains",
    "river",
    "city",
    "train",
    "music",
    "jazz",
    "piano",
    "garden",
    "book",
    "novel",
    "project",
    "deadline",
    "weekend",
    "dinner",
    "pasta",
    "sushi",
    "football",
    "chess",
    "paris",
    "berlin",
    "tokyo",
    "rain",
    "sun",
]
_data: dict[str, Any] = {}


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)) + "."


async def _build(client: httpx.AsyncClient, db: Any) -> dict[str, Any]:
    """One workspace: sessions of 0, 7 and 45 messages, summaries, conclusions and cards."""
    if _data.get("built"):
        return _data
    rng = random.Random(42)
    await client.post("/v3/workspaces", json={"id": WS})
    sessions = {"s0": 0, "s1": 7, "s2": 45}
    for sid, n in sessions.items():
        r = await client.post(
            f"/v3/workspaces/{WS}/sessions",
            json={"id": sid, "peers": {"alice": {}, "bob": {"observe_others": True}}},
        )
        assert r.status_code == 201, r.text
        for start in range(0, n, 20):
            batch = [
                {
                    "peer_id": "alice" if i % 2 else "bob",
                    "content": _text(rng, rng.choice([3, 10, 40, 120, 400])),
                }
                for i in range(start, min(n, start + 20))
            ]
            assert (
                await client.post(
                    f"/v3/workspaces/{WS}/sessions/{sid}/messages", json={"messages": batch}
                )
            ).status_code == 201
    rows = await (
        await db.execute(
            "SELECT session_id, seq, id, token_count FROM messages WHERE workspace_id = %s "
            "ORDER BY session_id, seq",
            (WS,),
        )
    ).fetchall()
    messages: dict[str, list[tuple[int, str, int]]] = {s: [] for s in sessions}
    for sid, seq, mid, tc in rows:
        messages[sid].append((seq, mid, tc))
    # Summaries of s2: long up to seq 30, short up to seq 40.
    for kind, seq, words in (("long", 30, 300), ("short", 40, 60)):
        content = _text(rng, words)
        mid = messages["s2"][seq - 1][1]
        await db.execute(
            "INSERT INTO summaries (id, workspace_id, session_id, summary_type, content, "
            "message_id, message_seq, token_count) VALUES (%s,%s,'s2',%s,%s,%s,%s,%s)",
            (f"sum-{kind}", WS, kind, content, mid, seq, count_tokens(content)),
        )
    for observer in ("alice", "bob"):
        for i in range(30):
            await db.execute(
                "INSERT INTO conclusions (id, workspace_id, observer_id, observed_id, content, "
                "created_at) VALUES (%s,%s,%s,'alice',%s, now() - make_interval(mins => %s))",
                (f"c-{observer}-{i}", WS, observer, _text(rng, rng.choice([5, 15, 60])), i),
            )
        facts = [_text(rng, rng.choice([3, 8, 25])) for _ in range(12)]
        await db.execute(
            "INSERT INTO peer_cards (workspace_id, observer_id, observed_id, facts) "
            "VALUES (%s,%s,'alice',%s::jsonb)",
            (WS, observer, orjson.dumps(facts).decode()),
        )
    summaries = {}
    for kind, seq in (("long", 30), ("short", 40)):
        row = await (
            await db.execute("SELECT token_count FROM summaries WHERE id = %s", (f"sum-{kind}",))
        ).fetchone()
        summaries[kind] = (seq, int(row[0]))
    _data.update(built=True, messages=messages, summaries=summaries)
    return _data


options = st.fixed_dictionaries(
    {
        "session": st.sampled_from(["s0", "s1", "s2"]),
        "tokens": st.integers(min_value=1, max_value=4000),
        "summary": st.booleans(),
        "target": st.sampled_from([None, "alice"]),
        "perspective": st.sampled_from([None, "bob"]),
        "search": st.sampled_from([None, "coffee in paris"]),
        "max_conclusions": st.sampled_from([None, 1, 5, 100]),
    }
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(opts=options)
async def test_get_context_stays_within_budget_and_follows_its_rules(
    client: httpx.AsyncClient, db: Any, opts: dict[str, Any]
) -> None:
    data = await _build(client, db)
    params: dict[str, Any] = {"tokens": opts["tokens"], "summary": opts["summary"]}
    if opts["target"]:
        params["peer_target"] = opts["target"]
        if opts["perspective"]:
            params["peer_perspective"] = opts["perspective"]
        if opts["search"]:
            params["search_query"] = opts["search"]
        if opts["max_conclusions"]:
            params["max_conclusions"] = opts["max_conclusions"]
    r = await client.get(f"/v3/workspaces/{WS}/sessions/{opts['session']}/context", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"id", "messages", "summary", "peer_representation", "peer_card"}
    assert body["id"] == opts["session"]

    rep_tokens = count_tokens(body["peer_representation"]) if body["peer_representation"] else 0
    card_tokens = sum(count_tokens(f) for f in body["peer_card"] or [])
    summary = body["summary"]
    summary_tokens = summary["token_count"] if summary else 0
    message_tokens = sum(m["token_count"] for m in body["messages"])
    total = rep_tokens + card_tokens + summary_tokens + message_tokens
    assert total <= opts["tokens"], (total, opts)

    if not opts["target"]:
        assert body["peer_representation"] is None and body["peer_card"] is None

    # Summary choice: the long one if it fits 40 % of what is left, else the short one.
    session_messages = data["messages"][opts["session"]]
    left = opts["tokens"] - rep_tokens - card_tokens
    expected_summary = None
    if opts["summary"] and opts["session"] == "s2":
        for kind in ("long", "short"):
            seq, tc = data["summaries"][kind]
            if 0 < tc <= int(left * 0.4):
                expected_summary = (kind, seq)
                break
    if expected_summary is None:
        assert summary is None
    else:
        kind, seq = expected_summary
        assert summary["summary_type"] == kind
        assert summary["message_id"] == session_messages[seq - 1][1]
        assert set(summary) == {
            "content",
            "message_id",
            "summary_type",
            "created_at",
            "token_count",
        }

    # Messages: the newest contiguous run after the summary, chronological, maximal.
    after = expected_summary[1] if expected_summary else 0
    eligible = [m for m in session_messages if m[0] > after]
    got_ids = [m["id"] for m in body["messages"]]
    k = len(got_ids)
    assert got_ids == [m[1] for m in eligible[len(eligible) - k :]] if k else True
    if k < len(eligible):
        next_older = eligible[len(eligible) - k - 1]
        assert total + next_older[2] > opts["tokens"], "a message that fits was left out"
    created = [m["created_at"] for m in body["messages"]]
    assert created == sorted(created)
