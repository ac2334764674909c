"""Composition root of the ingest service: its settings, its routes and its outbox relay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from libs.common.http import configure_http, ops_router
from libs.common.outbox import OutboxBackpressure, OutboxRelay
from libs.common.runtime import Resources
from libs.common.settings import (
    AuthSettings,
    HttpSettings,
    LimitsSettings,
    NatsSettings,
    OutboxSettings,
    PostgresSettings,
    TelemetrySettings,
    WebhookSettings,
)
from libs.common.telemetry import setup_logging, setup_tracing
from services.ingest.endpoints import IngestState, router


class IngestSettings(
    PostgresSettings,
    NatsSettings,
    OutboxSettings,
    AuthSettings,
    LimitsSettings,
    TelemetrySettings,
    HttpSettings,
    WebhookSettings,
):
    """Every setting the ingest process reads (``RAPPORT_*`` environment variables)."""


class IngestComponent:
    """The ingest part of a process: route state plus the outbox relay."""

    def __init__(self, settings: IngestSettings, resources: Resources) -> None:
        self.settings = settings
        self.resources = resources
        self.relay: OutboxRelay | None = None
        self.backpressure = OutboxBackpressure(
            settings.outbox_max_backlog, retry_after_s=settings.overload_retry_after_s
        )

    def state(self) -> IngestState:
        return IngestState(
            session_factory=self.resources.session_factory,
            layout=self.resources.layout,
            limits=self.settings,
            auth=self.settings,
            webhooks=self.settings,
            backpressure=self.backpressure,
        )

    async def start(self) -> None:
        if self.settings.outbox_relay_enabled:
            self.relay = OutboxRelay(
                database_url=self.settings.database_url,
                nats_settings=self.settings,
                settings=self.settings,
            )
            self.relay.start()

    async def stop(self) -> None:
        if self.relay is not None:
            await self.relay.stop()

    async def readiness(self) -> dict[str, Any]:
        checks: dict[str, Any] = {}
        if self.relay is not None:
            checks["outbox_relay"] = "ok"
        return checks


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or IngestSettings()
    setup_logging(settings)
    setup_tracing(settings)
    holder: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resources = Resources.open(settings, settings)
        component = IngestComponent(settings, resources)
        app.state.ingest = component.state()
        holder["resources"] = resources
        await component.start()
        try:
            yield
        finally:
            await component.stop()
            await resources.close()

    async def readiness() -> dict[str, Any]:
        resources: Resources | None = holder.get("resources")
        return await resources.readiness() if resources else {"database": "starting"}

    app = FastAPI(title="Rapport ingest", version="0.1.0", lifespan=lifespan)
    configure_http(app, settings, settings)
    app.include_router(router)
    app.include_router(ops_router(readiness))
    return app
