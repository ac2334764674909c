"""Composition root of the context service (get_context, search, representations, cards)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from libs.common.http import configure_http, ops_router
from libs.common.retrieval.hybrid import HybridRetriever
from libs.common.runtime import Resources
from libs.common.settings import (
    AuthSettings,
    EmbedderSettings,
    HttpSettings,
    LimitsSettings,
    NatsSettings,
    PostgresSettings,
    TelemetrySettings,
    VectorStoreSettings,
)
from libs.common.telemetry import setup_logging, setup_tracing
from services.context.endpoints import ContextState, router


class ContextSettings(
    PostgresSettings,
    NatsSettings,
    AuthSettings,
    LimitsSettings,
    TelemetrySettings,
    HttpSettings,
    EmbedderSettings,
    VectorStoreSettings,
):
    """Every setting the context service reads."""


def build_state(settings: Any, resources: Resources) -> ContextState:
    """Route state from shared process resources (also used by the all-in-one process)."""
    return ContextState(
        session_factory=resources.session_factory,
        retriever=HybridRetriever(
            session_factory=resources.session_factory,
            embedder=resources.embedder(settings),
            vectors=resources.vectors(settings),
        ),
    )


def create_app(settings: ContextSettings | None = None) -> FastAPI:
    settings = settings or ContextSettings()
    setup_logging(settings)
    setup_tracing(settings)
    holder: dict[str, Resources] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resources = Resources.open(settings, settings)
        holder["resources"] = resources
        app.state.context = build_state(settings, resources)
        try:
            yield
        finally:
            await resources.close()

    async def readiness() -> dict[str, Any]:
        resources = holder.get("resources")
        return await resources.readiness() if resources else {"database": "starting"}

    app = FastAPI(title="Rapport context", version="0.1.0", lifespan=lifespan)
    configure_http(app, settings, settings)
    app.include_router(router)
    app.include_router(ops_router(readiness))
    return app
