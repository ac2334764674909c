"""A session's context as readable text, and its token counts (shared by the CLI and MCP)."""

from __future__ import annotations

from typing import Any

from rapport import SessionContext


def context_text(context: SessionContext) -> str:
    """The context as text an LLM (or a person) can read.

    Tagged blocks for what is known about the target peer and for the summary of older
    messages, each only when present, then one ``peer_id: content`` line per recent message.
    """
    parts: list[str] = []
    if context.peer_representation:
        parts.append(
            f"<peer_representation>\n{context.peer_representation}\n</peer_representation>"
        )
    if context.peer_card:
        facts = "\n".join(f"- {fact}" for fact in context.peer_card)
        parts.append(f"<peer_card>\n{facts}\n</peer_card>")
    if context.summary is not None and context.summary.content:
        parts.append(f"<summary>\n{context.summary.content}\n</summary>")
    parts.extend(f"{m.peer_id}: {m.content}" for m in context.messages)
    return "\n".join(parts)


def context_counts(context: SessionContext) -> dict[str, Any]:
    """Message count and token counts as the server counted them (o200k tokenizer).

    ``total_tokens`` is the messages plus the summary; the representation and card are not
    counted by the server.
    """
    message_tokens = sum(m.token_count for m in context.messages)
    summary_tokens = context.summary.token_count if context.summary is not None else 0
    return {
        "messages": len(context.messages),
        "message_tokens": message_tokens,
        "summary_tokens": summary_tokens,
        "total_tokens": message_tokens + summary_tokens,
        "has_summary": context.summary is not None and bool(context.summary.content),
        "has_peer_representation": bool(context.peer_representation),
        "has_peer_card": bool(context.peer_card),
    }
