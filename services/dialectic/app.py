"""Composition root of the dialectic service (``peer.chat``): settings, state, standalone app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from libs.common.http import configure_http, ops_router
from libs.common.reasoning import create_reasoner
from libs.common.retrieval.hybrid import HybridRetriever
from libs.common.runtime import Resources
from libs.common.settings import (
    AuthSettings,
    EmbedderSettings,
    HttpSettings,
    LimitsSettings,
    LLMSettings,
    NatsSettings,
    PostgresSettings,
    TelemetrySettings,
    VectorStoreSettings,
)
from libs.common.telemetry import setup_logging, setup_tracing
from services.dialectic.endpoints import DialecticState, router


class DialecticSettings(
    PostgresSettings,
    NatsSettings,
    AuthSettings,
    LimitsSettings,
    TelemetrySettings,
    HttpSettings,
    LLMSettings,
    EmbedderSettings,
    VectorStoreSettings,
):
    """Every setting the dialectic service reads (``RAPPORT_*`` environment variables).

    The reasoner is the LLM one when ``RAPPORT_LLM_BASE_URL`` is set (model
    ``RAPPORT_LLM_DIALECTIC_MODEL``, else ``RAPPORT_LLM_MODEL``), else the extractive one.
    """


class DialecticComponent:
    """The dialectic part of a process: its reasoner and the route state."""

    def __init__(self, settings: Any, resources: Resources) -> None:
        self.settings = settings
        self.resources = resources
        self.reasoner = create_reasoner(settings)

    def state(self) -> DialecticState:
        return DialecticState(
            session_factory=self.resources.session_factory,
            retriever=HybridRetriever(
                session_factory=self.resources.session_factory,
                embedder=self.resources.embedder(self.settings),
                vectors=self.resources.vectors(self.settings),
            ),
            reasoner=self.reasoner,
        )

    async def stop(self) -> None:
        close = getattr(self.reasoner, "aclose", None)
        if close is not None:
            await close()


def create_app(settings: DialecticSettings | None = None) -> FastAPI:
    """The dialectic as its own process (stateless: scale by replicas)."""
    settings = settings or DialecticSettings()
    setup_logging(settings)
    setup_tracing(settings)
    holder: dict[str, Resources] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resources = Resources.open(settings, settings)
        component = DialecticComponent(settings, resources)
        holder["resources"] = resources
        app.state.dialectic = component.state()
        try:
            yield
        finally:
            await component.stop()
            await resources.close()

    async def readiness() -> dict[str, Any]:
        resources = holder.get("resources")
        return await resources.readiness() if resources else {"database": "starting"}

    app = FastAPI(title="Rapport dialectic", version="0.1.0", lifespan=lifespan)
    configure_http(app, settings, settings)
    app.include_router(router)
    app.include_router(ops_router(readiness))
    return app
