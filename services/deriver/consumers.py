"""FastStream JetStream subscribers of the deriver: decode, call the service, settle.

Every subscriber is a durable pull consumer with ``AckPolicy.MANUAL``; each message is settled by
:func:`libs.common.consumers.settle` (ack / nak with back-off / dead-letter). A message that was
delivered more than ``max_deliver`` times without being settled (its handler crashed the
process) is dead-lettered before it is processed again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from libs.common.broker import StreamLayout
from libs.common.consumers import (
    FailurePolicy,
    InFlight,
    PoisonMessageError,
    RawMessage,
    delivered_count,
    settle,
)
from libs.common.events import (
    ConclusionDeleted,
    ConclusionsCreated,
    DreamScheduled,
    Event,
    MessageCreated,
    QueueEmptied,
    SessionDeleted,
    WebhookTestRequested,
    WorkspaceDeleted,
)
from services.deriver.service import DeriverService, classify

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsumerSpec:
    name: str
    event: type[Event]
    batch_size: int


REPRESENTATION = ConsumerSpec("representation", MessageCreated, 32)
SUMMARIES = ConsumerSpec("summaries", MessageCreated, 16)
SIMPLE: tuple[tuple[ConsumerSpec, str], ...] = (
    (ConsumerSpec("conclusions-index", ConclusionsCreated, 16), "index_conclusions"),
    (ConsumerSpec("conclusions-forget", ConclusionDeleted, 16), "forget_conclusion"),
    (ConsumerSpec("sessions-forget", SessionDeleted, 4), "forget_session"),
    (ConsumerSpec("workspaces-forget", WorkspaceDeleted, 4), "forget_workspace"),
    (ConsumerSpec("dreams", DreamScheduled, 1), "dream"),
    (ConsumerSpec("webhooks-drained", QueueEmptied, 8), "deliver_webhooks"),
    (ConsumerSpec("webhooks-test", WebhookTestRequested, 8), "deliver_webhooks"),
)


def _decode(raw: RawMessage, event: type[Event]) -> Event:
    try:
        return event.model_validate_json(raw.data)
    except ValidationError as exc:
        raise PoisonMessageError(f"undecodable {event.EVENT_TYPE} event: {exc}") from exc


Outcomes = dict[int, BaseException | None]
BatchHandler = Callable[[list[tuple[RawMessage, Event]]], Awaitable[Outcomes]]


def _per_event(call: Callable[[Any], Awaitable[None]]) -> BatchHandler:
    """A batch handler that calls ``call`` for each event and records each outcome."""

    async def handle(items: list[tuple[RawMessage, Event]]) -> Outcomes:
        out: Outcomes = {}
        for i, (_, event) in enumerate(items):
            try:
                await call(event)
                out[i] = None
            except Exception as exc:  # noqa: BLE001 - settled per message by the policy
                out[i] = classify(exc)
        return out

    return handle


def register_consumers(
    broker: NatsBroker,
    *,
    layout: StreamLayout,
    service: DeriverService,
    policy: FailurePolicy,
    ack_wait_s: float,
    fetch_timeout_s: float,
    inflight: InFlight | None = None,
) -> list[str]:
    """Attach every deriver subscriber to ``broker``; returns their durable names.

    ``inflight`` records the messages handed to handlers until they are settled, so a stopping
    worker can hand back what it could not finish (:meth:`InFlight.release`).
    """
    tracker = inflight if inflight is not None else InFlight()
    stream = JStream(layout.stream, declare=False)

    async def derive(items: list[tuple[RawMessage, Event]]) -> Outcomes:
        events = [e for _, e in items if isinstance(e, MessageCreated)]
        by_event = await service.process_messages(events)
        return {i: by_event.get(e.event_id) for i, (_, e) in enumerate(items)}

    async def summaries(items: list[tuple[RawMessage, Event]]) -> Outcomes:
        events = [e for _, e in items if isinstance(e, MessageCreated)]
        by_event = await service.summarize_batch(events)
        return {i: by_event.get(e.event_id) for i, (_, e) in enumerate(items)}

    handlers: list[tuple[ConsumerSpec, BatchHandler]] = [
        (REPRESENTATION, derive),
        (SUMMARIES, summaries),
        *((spec, _per_event(getattr(service, method))) for spec, method in SIMPLE),
    ]
    durables = []
    for spec, handle in handlers:
        durable = f"deriver-{spec.name}"
        durables.append(durable)
        subscribe = broker.subscriber(
            layout.subjects_of_type(spec.event.EVENT_TYPE),
            stream=stream,
            durable=durable,
            pull_sub=PullSub(batch_size=spec.batch_size, timeout=fetch_timeout_s, batch=True),
            config=ConsumerConfig(
                durable_name=durable,
                ack_policy=JsAckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=ack_wait_s,
                # Unbounded at the server: the policy dead-letters (visibly) instead, so a
                # message is never dropped silently by JetStream.
                max_deliver=-1,
                max_ack_pending=1000,
            ),
            ack_policy=AckPolicy.MANUAL,
        )
        subscribe(_make_handler(spec, handle, service=service, policy=policy, inflight=tracker))
    return durables


def _make_handler(
    spec: ConsumerSpec,
    handle: BatchHandler,
    *,
    service: DeriverService,
    policy: FailurePolicy,
    inflight: InFlight,
) -> Callable[[Any, NatsMessage], Awaitable[None]]:
    async def sink(raw: RawMessage, error: str, attempts: int) -> None:
        try:
            payload = orjson.loads(raw.data)
        except orjson.JSONDecodeError:
            payload = {"raw": raw.data[:4000].decode("utf-8", "replace")}
        if not isinstance(payload, dict):
            payload = {"raw": payload}
        await service.record_dead_letter(
            consumer=spec.name,
            subject=raw.subject,
            payload=payload,
            error=error,
            attempts=attempts,
        )

    async def on_batch(body: Any, msg: NatsMessage) -> None:
        raws: list[RawMessage] = list(msg.raw_message)  # type: ignore[call-overload]
        # Unsettled until settle() below; a handler cancelled by a shutdown leaves them here.
        inflight.add(raws)
        ready: list[tuple[RawMessage, Event]] = []
        for raw in raws:
            try:
                if delivered_count(raw) > policy.max_deliver:
                    raise PoisonMessageError("delivered too often without being settled")
                ready.append((raw, _decode(raw, spec.event)))
            except PoisonMessageError as exc:
                await settle(raw, exc, consumer=spec.name, policy=policy, dead_letter=sink)
                inflight.discard(raw)
        if not ready:
            return
        try:
            outcomes = await handle(ready)
        except Exception as exc:  # noqa: BLE001 - every message of the batch is settled below
            outcomes = {i: classify(exc) for i in range(len(ready))}
        for i, (raw, _) in enumerate(ready):
            await settle(raw, outcomes.get(i), consumer=spec.name, policy=policy, dead_letter=sink)
            inflight.discard(raw)

    return on_batch
