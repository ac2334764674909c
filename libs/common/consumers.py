"""The failure policy every JetStream consumer applies, stated once.

FastStream's NATS default *terminates* a message on any exception, which silently loses work.
Rapport's subscribers take messages with ``AckPolicy.MANUAL`` and settle each one here:

* success → ``ack``;
* :class:`TransientError` (a dependency is down, a rate limit, a timeout) or any unexpected
  exception → ``nak`` with exponential back-off, so the message comes back later;
* :class:`PoisonMessageError` (input that can never succeed: undecodable, invalid) → recorded as a
  dead letter with its error, then ``term`` (no redelivery);
* when a message has been delivered ``max_deliver`` times and still fails, it is dead-lettered
  the same way. Dead letters are rows in ``dead_letters``, listed through the API and retried
  from there — nothing disappears silently. A message whose dead letter cannot be stored (the
  database is down) is not terminated: it comes back after a back-off, and the rest of its
  batch is settled as usual.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter

log = logging.getLogger(__name__)

CONSUMER_OUTCOMES = Counter(
    "rapport_consumer_messages_total",
    "Messages settled by consumers, by outcome",
    ["consumer", "outcome"],
)


class TransientError(Exception):
    """Worth retrying later."""


class PoisonMessageError(Exception):
    """Retrying can never help; dead-letter at once."""


class RawMessage(Protocol):
    """The subset of a nats-py JetStream message the policy uses."""

    subject: str
    data: bytes

    @property
    def metadata(self) -> Any: ...

    async def ack(self) -> None: ...

    async def nak(self, delay: float | None = None) -> None: ...

    async def term(self) -> None: ...


@dataclass(frozen=True)
class FailurePolicy:
    """Bounded redelivery with exponential back-off."""

    max_deliver: int = 8
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0

    def delay(self, delivered: int) -> float:
        """Back-off before delivery number ``delivered + 1`` (with ±20 % jitter)."""
        base = min(self.backoff_base_s * 2 ** max(delivered - 1, 0), self.backoff_max_s)
        return float(base * (0.8 + 0.4 * random.random()))  # noqa: S311 - jitter only


DeadLetterSink = Callable[[RawMessage, str, int], Awaitable[None]]


def delivered_count(raw: RawMessage) -> int:
    try:
        return int(raw.metadata.num_delivered)
    except (AttributeError, TypeError, ValueError):
        return 1


async def settle(
    raw: RawMessage,
    error: BaseException | None,
    *,
    consumer: str,
    policy: FailurePolicy,
    dead_letter: DeadLetterSink,
) -> str:
    """Ack, nak or dead-letter ``raw`` after its handler finished with ``error`` (or None).

    Returns the outcome: ``ack``, ``retry`` or ``dead``.
    """
    if error is None:
        await raw.ack()
        CONSUMER_OUTCOMES.labels(consumer, "ack").inc()
        return "ack"
    delivered = delivered_count(raw)
    reason = f"{type(error).__name__}: {error}"
    poison = isinstance(error, PoisonMessageError)
    if poison or delivered >= policy.max_deliver:
        why = "poison input" if poison else "redelivery limit reached"
        log.error(
            "%s: dead-lettering %s after %d deliveries (%s)", consumer, raw.subject, delivered, why
        )
        try:
            await dead_letter(raw, reason, delivered)
        except Exception:  # keep the message until its dead letter is stored
            delay = policy.delay(delivered)
            log.exception(
                "%s: cannot record the dead letter of %s; retrying in %.1fs",
                consumer,
                raw.subject,
                delay,
            )
            await raw.nak(delay=delay)
            CONSUMER_OUTCOMES.labels(consumer, "retry").inc()
            return "retry"
        await raw.term()
        CONSUMER_OUTCOMES.labels(consumer, "dead").inc()
        return "dead"
    delay = policy.delay(delivered)
    level = logging.WARNING if isinstance(error, TransientError) else logging.ERROR
    log.log(
        level,
        "%s: retrying %s in %.1fs (delivery %d/%d): %s",
        consumer,
        raw.subject,
        delay,
        delivered,
        policy.max_deliver,
        reason,
    )
    await raw.nak(delay=delay)
    CONSUMER_OUTCOMES.labels(consumer, "retry").inc()
    return "retry"


class InFlight:
    """Messages handed to a handler and not settled yet.

    A stopping process first lets its handlers finish (the broker's graceful timeout); whatever
    is still unsettled after that is handed back with :meth:`release` (``nak`` without delay),
    so it is redelivered at once instead of only after the consumer's ack wait.
    """

    def __init__(self) -> None:
        self._raws: dict[int, RawMessage] = {}

    def __len__(self) -> int:
        return len(self._raws)

    def add(self, raws: list[RawMessage]) -> None:
        for raw in raws:
            self._raws[id(raw)] = raw

    def discard(self, raw: RawMessage) -> None:
        self._raws.pop(id(raw), None)

    async def release(self) -> int:
        """``nak`` every unsettled message; returns how many were handed back."""
        raws = list(self._raws.values())
        self._raws.clear()
        released = 0
        for raw in raws:
            try:
                await raw.nak()
                released += 1
            except Exception as exc:  # noqa: BLE001 - it comes back after the ack wait instead
                log.warning(
                    "cannot hand %s back (%r); it returns after the ack wait", raw.subject, exc
                )
        return released
