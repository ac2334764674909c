"""Diplomacy: each peer knows only what it witnessed.

Alice, Bob and Charlie play a turn of Diplomacy. In the group chat ``diplomacy-turn-1`` everyone
promises peace; in ``side-chat``, where only Alice and Bob are members, Alice reveals that she
will attack Charlie. Every player has ``observe_others`` on, so each one builds its own view of
the others from the messages it was present for.

Charlie then asks his memory whether he can trust Alice (``target=alice``): the answer comes from
the group chat only -- Charlie was never in the side chat. Bob asks the same and, having been
there, knows better.

Run it against a local server (``make run`` in another terminal)::

    python examples/diplomacy.py [--workspace ID] [--base-url URL]

``--base-url`` defaults to ``$RAPPORT_BASE_URL`` (else http://localhost:8000) and
``--workspace`` to ``$RAPPORT_WORKSPACE_ID`` (else a fresh id, so reruns never collide).
"""

from __future__ import annotations

import argparse
import os
import uuid

from rapport import Rapport


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Diplomacy with observe_others and a side chat.")
    parser.add_argument(
        "--base-url", default=os.environ.get("RAPPORT_BASE_URL", "http://localhost:8000")
    )
    parser.add_argument(
        "--workspace",
        default=os.environ.get("RAPPORT_WORKSPACE_ID") or f"diplomacy-{uuid.uuid4().hex[:8]}",
    )
    parser.add_argument("--max-wait", type=float, default=120.0, help="seconds for the deriver")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with Rapport(base_url=args.base_url, workspace_id=args.workspace) as client:
        print(f"server {client.base_url}, workspace {client.workspace_id}")
        alice, bob, charlie = client.peer("alice"), client.peer("bob"), client.peer("charlie")

        # Members observe each other in both sessions: each builds its own view of the others.
        watching = {"observe_others": True}
        group = client.session(
            "diplomacy-turn-1", peers=[(alice, watching), (bob, watching), (charlie, watching)]
        )
        side = client.session("side-chat", peers=[(alice, watching), (bob, watching)])
        print(f"{group.id}: {', '.join(p.id for p in group.peers())}")
        print(f"{side.id}: {', '.join(p.id for p in side.peers())}")

        for session, messages in (
            (
                group,
                [
                    alice.message("I'm going to be peaceful this turn. No moves against anyone."),
                    bob.message("Same for me, I'll hold all my positions."),
                    charlie.message("Good to hear. I'll stay put and keep my fleets at home."),
                ],
            ),
            (
                side,
                [
                    alice.message("Between us: I'm actually going to attack Charlie next turn."),
                    bob.message("Understood. I'll support your attack on Charlie in the north."),
                ],
            ),
        ):
            for message in session.add_messages(messages):
                print(f"  [{session.id}] {message.peer_id}: {message.content}")

        print("waiting for the deriver ...")
        client.wait_for_queue(max_wait=args.max_wait)

        question = "Can I trust that Alice won't attack me?"
        print(f"charlie asks about alice: {question}")
        print(f"charlie's answer: {_one_line(charlie.chat(question, target=alice))}")

        question = "Can Charlie trust that Alice won't attack him?"
        print(f"bob asks about alice: {question}")
        print(f"bob's answer: {_one_line(bob.chat(question, target=alice))}")

        print("what charlie knows about alice:")
        print(charlie.representation(target=alice) or "  (nothing yet)")
        print("what bob knows about alice:")
        print(bob.representation(target=alice) or "  (nothing yet)")


def _one_line(text: str | None) -> str:
    return " ".join((text or "(no answer)").split())


if __name__ == "__main__":
    main()
