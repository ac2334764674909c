"""Composition root of the all-in-one process (``make run``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from libs.common.http import configure_http, ops_router
from libs.common.runtime import Resources
from libs.common.settings import ConsoleSettings
from libs.common.telemetry import setup_logging, setup_tracing
from services.console.app import mount_console, open_state
from services.context.app import build_state as build_context_state
from services.context.endpoints import router as context_router
from services.deriver.app import DeriverSettings, DeriverWorker
from services.dialectic.app import DialecticComponent
from services.dialectic.endpoints import router as dialectic_router
from services.ingest.app import IngestComponent, IngestSettings
from services.ingest.endpoints import router as ingest_router


class AllInOneSettings(IngestSettings, DeriverSettings, ConsoleSettings):  # type: ignore[misc]  # pydantic diamond
    """Every setting of every service."""


def create_app(settings: AllInOneSettings | None = None) -> FastAPI:
    settings = settings or AllInOneSettings()
    setup_logging(settings)
    setup_tracing(settings)
    parts: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resources = Resources.open(settings, settings)
        ingest = IngestComponent(settings, resources)
        deriver = DeriverWorker(settings, resources)
        app.state.ingest = ingest.state()
        app.state.context = build_context_state(settings, resources)
        dialectic = DialecticComponent(settings, resources)
        app.state.dialectic = dialectic.state()
        if settings.console_enabled:
            app.state.console = open_state(settings)
        parts.update(resources=resources, ingest=ingest, deriver=deriver)
        await ingest.start()
        await deriver.start()
        try:
            yield
        finally:
            if settings.console_enabled:
                await app.state.console.clients.aclose()
            await deriver.stop()
            await ingest.stop()
            await dialectic.stop()
            await resources.close()

    async def readiness() -> dict[str, Any]:
        resources: Resources | None = parts.get("resources")
        if resources is None:
            return {"database": "starting"}
        checks = await resources.readiness()
        checks.update(parts["deriver"].readiness())
        return checks

    app = FastAPI(
        title="Rapport",
        version="0.1.0",
        description="Memory for LLM agents; wire-compatible with the Honcho v3 REST API.",
        lifespan=lifespan,
    )
    configure_http(app, settings, settings)
    app.include_router(ingest_router)
    app.include_router(dialectic_router)
    app.include_router(context_router)
    app.include_router(ops_router(readiness))
    if settings.console_enabled:
        mount_console(app)
    return app
