"""A session's context window and its conversion to OpenAI and Anthropic message lists."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._models import Message, Summary

__all__ = ["SessionContext"]


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


def _peer_id(peer: str | _HasId) -> str:
    return peer if isinstance(peer, str) else peer.id


class SessionContext(BaseModel):
    """What ``session.get_context()`` returns: recent messages, a summary of older ones, and
    optionally a peer's representation and card, kept within the requested token budget.

    Attributes:
        id: The session id.
        messages: The most recent messages, oldest first.
        summary: A summary of the messages before them, or ``None``.
        peer_representation: What is known about ``peer_target`` (from ``peer_perspective``'s
            point of view when given), or ``None``.
        peer_card: Short facts about ``peer_target``, or ``None``.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = ""
    messages: list[Message] = Field(default_factory=list)
    summary: Summary | None = None
    peer_representation: str | None = None
    peer_card: list[str] | None = None

    @field_validator("peer_representation")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value if value else None

    def __len__(self) -> int:
        """The number of messages, plus one when there is a summary."""
        return len(self.messages) + (1 if self.summary is not None else 0)

    def _blocks(self) -> list[str]:
        blocks: list[str] = []
        if self.peer_representation:
            blocks.append(f"<peer_representation>{self.peer_representation}</peer_representation>")
        if self.peer_card:
            # str() of the list, exactly like the official Honcho SDK, so prompts do not change
            # when an application switches between the two clients.
            blocks.append(f"<peer_card>{self.peer_card!s}</peer_card>")
        if self.summary is not None and self.summary.content:
            blocks.append(f"<summary>{self.summary.content}</summary>")
        return blocks

    def to_openai(self, *, assistant: str | _HasId) -> list[dict[str, str]]:
        """The context as OpenAI chat messages.

        First one ``system`` message each for the peer representation, the peer card and the
        summary (in that order, each only when present and not empty), then every message:
        ``role`` ``"assistant"`` when its author is ``assistant`` (a peer id or a peer), else
        ``"user"``, always with ``"name"`` set to the author's peer id.
        """
        assistant_id = _peer_id(assistant)
        out: list[dict[str, str]] = [{"role": "system", "content": b} for b in self._blocks()]
        for message in self.messages:
            role = "assistant" if message.peer_id == assistant_id else "user"
            out.append({"role": role, "name": message.peer_id, "content": message.content})
        return out

    def to_anthropic(self, *, assistant: str | _HasId) -> list[dict[str, str]]:
        """The context as Anthropic messages.

        The representation, card and summary blocks come first as ``user`` turns (Anthropic
        takes the system prompt separately). The assistant peer's messages are ``assistant``
        turns; every other peer's are ``user`` turns whose content starts with
        ``"<peer_id>: "``. Consecutive turns of one role are not merged.
        """
        assistant_id = _peer_id(assistant)
        out: list[dict[str, str]] = [{"role": "user", "content": b} for b in self._blocks()]
        for message in self.messages:
            if message.peer_id == assistant_id:
                out.append({"role": "assistant", "content": message.content})
            else:
                out.append({"role": "user", "content": f"{message.peer_id}: {message.content}"})
        return out
