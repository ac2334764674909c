"""Process resources shared by the services of one process (built in a lifespan)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from libs.common.broker import StreamLayout
from libs.common.db import create_engine, create_session_factory
from libs.common.embeddings import Embedder, create_embedder
from libs.common.settings import (
    EmbedderSettings,
    NatsSettings,
    PostgresSettings,
    VectorStoreSettings,
)
from libs.common.telemetry import instrument_engine
from libs.common.vectorstore import VectorStore, create_vector_store


@dataclass
class Resources:
    """Database engine and session factory plus the stream layout of this install; the
    embedder and vector store are created on first use and shared by the services of the
    process (one model in memory for the deriver and the read path)."""

    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    layout: StreamLayout
    _embedder: Embedder | None = None
    _vectors: VectorStore | None = None

    def embedder(self, settings: EmbedderSettings) -> Embedder:
        if self._embedder is None:
            self._embedder = create_embedder(settings)
        return self._embedder

    def vectors(self, settings: VectorStoreSettings) -> VectorStore:
        if self._vectors is None:
            self._vectors = create_vector_store(settings, self.engine)
        return self._vectors

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
        if self._vectors is not None:
            await self._vectors.close()
        if self._embedder is not None:
            await self._embedder.close()
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
