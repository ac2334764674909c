"""Composition root of the deriver.

The consumers themselves (representations, summaries, peer cards, embeddings, webhooks) come
with the deriver issue; until then the worker starts nothing and says so in ``/health``.
Events accumulate durably in the JetStream stream meanwhile, so nothing is lost.
"""

from __future__ import annotations

from typing import Any

from libs.common.runtime import Resources
from libs.common.settings import NatsSettings, PostgresSettings, TelemetrySettings


class DeriverSettings(PostgresSettings, NatsSettings, TelemetrySettings):
    """Every setting the deriver process reads."""


class DeriverWorker:
    def __init__(self, settings: DeriverSettings, resources: Resources) -> None:
        self.settings = settings
        self.resources = resources

    async def start(self) -> None:
        """No consumers yet (see module docstring)."""

    async def stop(self) -> None:
        """Nothing to stop yet."""

    def readiness(self) -> dict[str, Any]:
        return {}
