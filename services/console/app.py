"""Composition root of the web console: settings, the API client, the standalone app.

The console is a backend-for-frontend: it renders HTML on the server (Jinja2) and calls the
public v3 API with the user's key. In the all-in-one process it is included at ``/console`` and
calls the process's own port on loopback; alone (``python -m services.console``) it calls
``RAPPORT_CONSOLE_API_URL`` (e.g. the gateway in front of the other services), or — without a
gateway in between, as on Kubernetes — the ingest service there and the context and dialectic
services at ``RAPPORT_CONSOLE_CONTEXT_URL`` / ``RAPPORT_CONSOLE_DIALECTIC_URL``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from libs.common.http import install_error_handlers, ops_router
from libs.common.settings import ConsoleSettings, HttpSettings, TelemetrySettings
from libs.common.telemetry import setup_logging
from services.console.endpoints import PREFIX, ConsoleState, router
from services.console.service import ApiClients

STATIC = Path(__file__).resolve().parent / "static"


class ConsoleAppSettings(ConsoleSettings, HttpSettings, TelemetrySettings):
    """Every setting the standalone console reads (``RAPPORT_*`` environment variables)."""


def api_url(settings: Any) -> str:
    """Where the console reaches the v3 API: the setting, else this process's own port."""
    if settings.console_api_url:
        return str(settings.console_api_url).rstrip("/")
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def open_state(settings: Any) -> ConsoleState:
    def client(url: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=url.rstrip("/"),
            timeout=httpx.Timeout(settings.console_api_timeout_s, connect=5.0),
            headers={"User-Agent": "rapport-console"},
        )

    api = client(api_url(settings))
    context, dialectic = settings.console_context_url, settings.console_dialectic_url
    return ConsoleState(
        clients=ApiClients(
            api=api,
            context=client(context) if context else api,
            dialectic=client(dialectic) if dialectic else api,
        )
    )


def mount_console(app: FastAPI) -> None:
    """Routes and static assets of the console under ``/console`` (state set by lifespan)."""
    app.include_router(router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="console-static")


def create_app(settings: ConsoleAppSettings | None = None) -> FastAPI:
    settings = settings or ConsoleAppSettings()
    setup_logging(settings)
    if not settings.console_api_url:
        raise SystemExit(
            "RAPPORT_CONSOLE_API_URL is required to run the console alone "
            "(the base URL of the Rapport API, e.g. http://127.0.0.1:8000)"
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.console = open_state(settings)
        try:
            yield
        finally:
            await app.state.console.clients.aclose()

    async def readiness() -> dict[str, Any]:
        return {"console": "ok"}

    app = FastAPI(title="Rapport console", version="0.1.0", lifespan=lifespan, docs_url=None)
    install_error_handlers(app)
    mount_console(app)
    app.include_router(ops_router(readiness))
    return app
