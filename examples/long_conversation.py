"""A long conversation turned into the next LLM call's messages.

A runner and their coaching assistant talk for 45 rounds (90 messages) while the runner
trains for a half marathon. The deriver summarises the session as it grows (a short summary
every 20 messages, a long one every 60). ``session.get_context(summary=True, tokens=1500)``
then returns the freshest messages plus a summary of the older ones -- all of it within
1,500 tokens -- and ``to_openai`` / ``to_anthropic`` turn it into message lists ready for
either API, with the coach as the ``assistant``.

Run it against a local server (``make run`` in another terminal)::

    python examples/long_conversation.py [--workspace ID] [--base-url URL]

``--base-url`` defaults to ``$RAPPORT_BASE_URL`` (else http://localhost:8000) and
``--workspace`` to ``$RAPPORT_WORKSPACE_ID`` (else a fresh id, so reruns never collide).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid

from rapport import MessageCreate, Peer, Rapport

BUDGET = 1500

FEELINGS = [
    "Legs felt fresh.",
    "My left knee was stiff.",
    "It was hot, so I slowed down.",
    "I felt strong on the hills.",
    "I was tired after a bad night.",
    "I could talk the whole way.",
]
ADVICE = [
    "Nice work.",
    "Stretch that knee.",
    "Good call in the heat.",
    "Great hill work.",
    "Sleep matters more than mileage.",
    "Perfect aerobic pace.",
]
PLAN = [
    "rest, or a gentle walk.",
    "an easy 6 km.",
    "4 x 800 m intervals.",
    "a long slow run, 2 km longer than last week.",
]


def conversation(runner: Peer, coach: Peer) -> list[MessageCreate]:
    """90 messages: an introduction, 43 days of training logs with replies, and a wrap-up."""
    messages = [
        runner.message("Hi! I'm Sam. I want to run the Lisbon half marathon on October 12."),
        coach.message("Great goal, Sam. Log every run here and I'll adjust the plan as we go."),
    ]
    for day in range(1, 44):
        km = 5 + day % 7
        minutes = km * 6 + day % 5
        messages.append(
            runner.message(
                f"Day {day} done: {km} km in {minutes} min. {FEELINGS[day % 6]} "
                "Any changes for tomorrow?"
            )
        )
        messages.append(
            coach.message(
                f"{ADVICE[day % 6]} Tomorrow: {PLAN[day % 4]} That's {day} days in a row!"
            )
        )
    messages += [
        runner.message("Race week! Should I still run on Thursday?"),
        coach.message("Just 20 easy minutes on Thursday, then rest until Sunday's race."),
    ]
    return messages


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A long conversation as LLM messages.")
    parser.add_argument(
        "--base-url", default=os.environ.get("RAPPORT_BASE_URL", "http://localhost:8000")
    )
    parser.add_argument(
        "--workspace",
        default=os.environ.get("RAPPORT_WORKSPACE_ID") or f"coaching-{uuid.uuid4().hex[:8]}",
    )
    parser.add_argument("--max-wait", type=float, default=120.0, help="seconds for the deriver")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with Rapport(base_url=args.base_url, workspace_id=args.workspace) as client:
        print(f"server {client.base_url}, workspace {client.workspace_id}")
        runner, coach = client.peer("sam"), client.peer("coach")
        session = client.session("half-marathon-plan", peers=[runner, coach])

        stored = session.add_messages(conversation(runner, coach))
        print(f"added {len(stored)} messages ({sum(m.token_count for m in stored)} tokens)")

        # Summaries are written by the deriver: wait for the queue, then for the summaries.
        print("waiting for the deriver ...")
        client.wait_for_queue(session=session, max_wait=args.max_wait)
        deadline = time.monotonic() + args.max_wait
        summaries = session.summaries()
        while summaries.short_summary is None and time.monotonic() < deadline:
            time.sleep(0.5)
            summaries = session.summaries()
        for summary in (summaries.short_summary, summaries.long_summary):
            if summary is not None:
                print(f"{summary.summary_type} summary: {summary.token_count} tokens")

        context = session.get_context(summary=True, tokens=BUDGET)
        message_tokens = sum(m.token_count for m in context.messages)
        summary_tokens = context.summary.token_count if context.summary else 0
        print(
            f"context: {len(context.messages)} messages ({message_tokens} tokens)"
            f" + {'a ' + context.summary.summary_type if context.summary else 'no'} summary"
            f" ({summary_tokens} tokens)"
        )
        print(f"token total: {message_tokens + summary_tokens} of {BUDGET}")

        print("--- to_openai ---")
        print(json.dumps(context.to_openai(assistant=coach), indent=2))
        print("--- to_anthropic ---")
        print(json.dumps(context.to_anthropic(assistant=coach), indent=2))
        print("--- end ---")


if __name__ == "__main__":
    main()
