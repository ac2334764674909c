"""Process resources shared by the services of one process (built in a lifespan)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from libs.common.broker import StreamLayout
from libs.common.db import create_engine, create_session_factory
from libs.common.settings import NatsSettings, PostgresSettings
from libs.common.telemetry import instrument_engine


@dataclass
class Resources:
    """Database engine and session factory plus the stream layout of this install."""

    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    layout: StreamLayout

    @classmethod
    def open(cls, postgres: PostgresSettings, nats: NatsSettings) -> Resources:
        engine = create_engine(postgres)
        instrument_engine(engine)
        return cls(
            engine=engine,
            session_factory=create_session_factory(engine),
            layout=StreamLayout.from_settings(nats),
        )

    async def close(self) -> None:
        await self.engine.dispose()

    async def check_database(self) -> str:
        try:
            async with asyncio.timeout(2):
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - reported, not raised: this is a probe
            return f"error: {type(exc).__name__}"
        return "ok"

    async def readiness(self) -> dict[str, Any]:
        return {"database": await self.check_database()}
