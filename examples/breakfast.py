"""The breakfast question: a peer remembers what another peer said in a group chat.

Alice, Bob and Charlie chat in one session. Bob mentions what he had for breakfast. Once the
deriver has read the messages, Alice's memory can answer "What did Bob have for breakfast
today?" -- from what Alice witnessed, and nothing else.

Run it against a local server (``make run`` in another terminal)::

    python examples/breakfast.py
    python examples/breakfast.py --workspace my-demo --base-url http://localhost:8000

``--base-url`` defaults to ``$RAPPORT_BASE_URL`` (else http://localhost:8000) and
``--workspace`` to ``$RAPPORT_WORKSPACE_ID`` (else a fresh id, so reruns never collide).
"""

from __future__ import annotations

import argparse
import os
import uuid

from rapport import Rapport


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The group-chat breakfast question.")
    parser.add_argument(
        "--base-url", default=os.environ.get("RAPPORT_BASE_URL", "http://localhost:8000")
    )
    parser.add_argument(
        "--workspace",
        default=os.environ.get("RAPPORT_WORKSPACE_ID") or f"breakfast-{uuid.uuid4().hex[:8]}",
    )
    parser.add_argument("--max-wait", type=float, default=120.0, help="seconds for the deriver")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with Rapport(base_url=args.base_url, workspace_id=args.workspace) as client:
        print(f"server {client.base_url}, workspace {client.workspace_id}")

        # Every participant is a peer; get-or-create, so reruns in one workspace are harmless.
        alice = client.peer("alice")
        bob = client.peer("bob")
        charlie = client.peer("charlie")

        # One group chat with all three as members.
        chat = client.session("group-chat", peers=[alice, bob, charlie])
        conversation = [
            alice.message("Morning, you two! Ready for the hike later?"),
            bob.message("Almost. I had scrambled eggs with toast for breakfast today, so I'm set."),
            charlie.message("Lucky you. I only had a coffee on the way out."),
            alice.message("Let's meet at the trailhead at ten then."),
        ]
        for message in chat.add_messages(conversation):
            print(f"  [{chat.id}] {message.peer_id}: {message.content}")

        # The deriver works in the background; wait until it has read the new messages.
        print("waiting for the deriver ...")
        status = client.wait_for_queue(session=chat, max_wait=args.max_wait)
        print(
            f"queue: {status.completed_work_units}/{status.total_work_units} work units done, "
            f"{status.pending_work_units} pending"
        )

        question = "What did Bob have for breakfast today?"
        print(f"alice asks her memory: {question}")
        answer = alice.chat(question)
        print(f"answer: {answer}")


if __name__ == "__main__":
    main()
