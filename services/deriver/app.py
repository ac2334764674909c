"""Composition root of the deriver: reasoner, embedder, vector store and JetStream consumers.

``DeriverWorker`` runs inside the all-in-one process; ``python -m services.deriver`` runs it
alone (with ``/health`` and ``/metrics`` on its own port) for scale-out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from faststream.nats import NatsBroker
from pydantic import Field

from libs.common.broker import connect_nats, ensure_stream
from libs.common.consumers import FailurePolicy, InFlight
from libs.common.embeddings import Embedder
from libs.common.http import ops_router
from libs.common.reasoning import create_reasoner
from libs.common.runtime import Resources
from libs.common.settings import (
    EmbedderSettings,
    HttpSettings,
    LLMSettings,
    NatsSettings,
    PostgresSettings,
    TelemetrySettings,
    VectorStoreSettings,
    WebhookSettings,
)
from libs.common.telemetry import setup_logging, setup_tracing
from libs.common.vectorstore import VectorStore
from services.deriver.consumers import register_consumers
from services.deriver.service import DeriverConfig, DeriverService
from services.deriver.webhooks import WebhookDeliverer

log = logging.getLogger(__name__)


class DeriverSettings(
    PostgresSettings,
    NatsSettings,
    TelemetrySettings,
    LLMSettings,
    EmbedderSettings,
    VectorStoreSettings,
    HttpSettings,
    WebhookSettings,
):
    """Every setting the deriver reads."""

    deriver_enabled: bool = Field(
        default=True, description="Run the deriver consumers in this process."
    )
    deriver_max_deliver: int = Field(
        default=8, ge=1, le=100, description="Deliveries before an event is dead-lettered."
    )
    deriver_backoff_base_s: float = Field(
        default=1.0, gt=0, description="First retry delay; doubles per delivery."
    )
    deriver_backoff_max_s: float = Field(default=60.0, gt=0, description="Retry delay cap.")
    deriver_ack_wait_s: float = Field(
        default=300.0, gt=0, description="Seconds before an unacknowledged event is redelivered."
    )
    deriver_shutdown_grace_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="On shutdown, seconds in-flight events get to finish; the rest are handed "
        "back to JetStream (nak) for immediate redelivery.",
    )
    deriver_fetch_timeout_s: float = Field(
        default=0.2,
        gt=0,
        description="How long a pull waits to fill a batch (bounds the latency of a lone message).",
    )
    summary_short_every: int = Field(
        default=20, ge=2, description="Messages per short summary (session config overrides)."
    )
    summary_long_every: int = Field(
        default=60, ge=2, description="Messages per long summary (session config overrides)."
    )
    summary_short_max_tokens: int = Field(
        default=400,
        ge=50,
        description="Short summary size (fits get_context's 40 % share of 1,000+).",
    )
    summary_long_max_tokens: int = Field(default=1500, ge=100, description="Long summary size.")
    peer_card_max_facts: int = Field(default=40, ge=1, description="Facts kept per peer card.")


class DeriverWorker:
    """Consumers of one process. Starting never blocks on NATS: it connects in the background
    and keeps retrying, so the API of an all-in-one process serves while NATS is down."""

    def __init__(self, settings: DeriverSettings, resources: Resources) -> None:
        self.settings = settings
        self.resources = resources
        self.broker: NatsBroker | None = None
        self.embedder: Embedder | None = None
        self.vectors: VectorStore | None = None
        self.service: DeriverService | None = None
        self._task: asyncio.Task[None] | None = None
        self.inflight = InFlight()
        self.running = False
        self.last_error: str | None = None

    def build_service(self) -> DeriverService:
        s = self.settings
        self.embedder = self.resources.embedder(s)
        self.vectors = self.resources.vectors(s)
        return DeriverService(
            session_factory=self.resources.session_factory,
            reasoner=create_reasoner(s),
            embedder=self.embedder,
            vectors=self.vectors,
            layout=self.resources.layout,
            webhooks=WebhookDeliverer(
                secret=s.webhook_secret.get_secret_value(),
                allow_private=s.allow_private_webhook_urls,
                timeout_s=s.webhook_timeout_s,
            ),
            config=DeriverConfig(
                short_summary_every=s.summary_short_every,
                long_summary_every=s.summary_long_every,
                short_summary_tokens=s.summary_short_max_tokens,
                long_summary_tokens=s.summary_long_max_tokens,
                peer_card_max_facts=s.peer_card_max_facts,
            ),
        )

    async def start(self) -> None:
        if not self.settings.deriver_enabled:
            return
        self.service = self.build_service()
        self._task = asyncio.create_task(self._connect(), name="deriver-connect")

    async def _connect(self) -> None:
        assert self.service is not None
        s = self.settings
        await self._warm_embedder()
        delay = 0.5
        while True:
            try:
                nc = await connect_nats(s, name="rapport-deriver-setup")
                try:
                    await ensure_stream(nc.jetstream(), s)
                finally:
                    await nc.close()
                broker = NatsBroker(
                    [u.strip() for u in s.nats_url.split(",") if u.strip()],
                    max_reconnect_attempts=-1,
                    graceful_timeout=s.deriver_shutdown_grace_s,
                    logger=logging.getLogger("faststream.deriver"),
                )
                register_consumers(
                    broker,
                    layout=self.resources.layout,
                    service=self.service,
                    policy=FailurePolicy(
                        max_deliver=s.deriver_max_deliver,
                        backoff_base_s=s.deriver_backoff_base_s,
                        backoff_max_s=s.deriver_backoff_max_s,
                    ),
                    ack_wait_s=s.deriver_ack_wait_s,
                    fetch_timeout_s=s.deriver_fetch_timeout_s,
                    inflight=self.inflight,
                )
                await broker.start()
                self.broker = broker
                self.running = True
                self.last_error = None
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - NATS not reachable yet: retry
                self.last_error = repr(exc)
                log.warning("deriver: cannot start consumers yet (%r); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _warm_embedder(self) -> None:
        """Load a local model before consuming, so the first batch does not pay its ~1 s load
        (and every event of that batch its lag)."""
        load = getattr(self.embedder, "load", None)
        if callable(load):
            try:
                await asyncio.to_thread(load)
            except Exception as exc:  # noqa: BLE001 - the first embed reports it again
                log.warning("deriver: embedder did not load at start: %r", exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.broker is not None:
            # Stop fetching and let running handlers finish (up to deriver_shutdown_grace_s;
            # FastStream cancels them after that), then hand back what is still unsettled
            # while the connection is open, and only then close it.
            await asyncio.gather(*(sub.stop() for sub in self.broker.subscribers))
            await asyncio.sleep(0)  # let cancelled handlers unwind
            if released := await self.inflight.release():
                log.warning("deriver: handed %d unfinished events back for redelivery", released)
            await self.broker.stop()
            self.broker = None
        self.running = False

    def readiness(self) -> dict[str, Any]:
        if not self.settings.deriver_enabled:
            return {}
        return {"deriver": "ok" if self.running else f"starting: {self.last_error or ''}".strip()}


def create_app(settings: DeriverSettings | None = None) -> FastAPI:
    """The deriver as its own process: consumers plus ``/health`` and ``/metrics``."""
    settings = settings or DeriverSettings()
    setup_logging(settings)
    setup_tracing(settings)
    parts: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        resources = Resources.open(settings, settings)
        worker = DeriverWorker(settings, resources)
        parts.update(resources=resources, worker=worker)
        await worker.start()
        try:
            yield
        finally:
            await worker.stop()
            await resources.close()

    async def readiness() -> dict[str, Any]:
        if "resources" not in parts:
            return {"database": "starting"}
        checks: dict[str, Any] = await parts["resources"].readiness()
        checks.update(parts["worker"].readiness())
        return checks

    app = FastAPI(title="Rapport deriver", version="0.1.0", lifespan=lifespan)
    app.include_router(ops_router(readiness))
    return app
