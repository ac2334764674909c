"""Async SQLAlchemy engine, session factory and the unit of work.

The boundary (one HTTP request, one consumed event) owns the transaction: it opens a
:func:`unit_of_work`, passes the session to service code (which only flushes), and the unit of
work commits on success or rolls back on error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from libs.common.errors import DependencyUnavailableError, OverloadedError
from libs.common.settings import PostgresSettings


def create_engine(settings: PostgresSettings) -> AsyncEngine:
    """Build the process-wide engine (call once per process, in a lifespan)."""
    engine = create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_s,
        pool_pre_ping=True,
        pool_recycle=1800,
    )
    timeout_ms = settings.db_statement_timeout_ms

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: object, _record: object) -> None:
        cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
        cursor.execute(f"SET statement_timeout = {int(timeout_ms)}")
        cursor.close()
        dbapi_conn.commit()  # type: ignore[attr-defined]

    return engine


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit (responses are built after it)."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def unit_of_work(
    factory: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One transaction: commit when the block succeeds, roll back when it raises.

    Connection-level failures, pool exhaustion (no free connection within
    ``RAPPORT_DB_POOL_TIMEOUT_S``) and a refused connection surface as
    :class:`DependencyUnavailableError` (503 with ``Retry-After``) so a client learns to retry
    instead of seeing a 500 (see :func:`database_error`).
    """
    try:
        async with factory() as session, session.begin():
            yield session
    except (OperationalError, InterfaceError, PoolTimeoutError) as exc:
        raise database_error(exc) from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise DependencyUnavailableError(
                "The database connection was lost, retry later"
            ) from exc
        raise


#: SQLSTATE of "sorry, too many clients already" / "too many connections for role".
TOO_MANY_CONNECTIONS = "53300"
_NO_SLOT_MESSAGES = (
    "too many connections",
    "too many clients",
    "remaining connection slots are reserved",
)
#: SQLSTATE of a statement cancelled by ``statement_timeout``.
QUERY_CANCELED = "57014"


def database_error(exc: Exception) -> DependencyUnavailableError:
    """The client-facing error (503 with ``Retry-After``) for a database that is saturated or
    unreachable: the pool had no free connection in time, the server refused a connection, the
    statement timeout cancelled the query, or the connection failed."""
    if isinstance(exc, PoolTimeoutError):
        return OverloadedError(
            "Server overloaded: no database connection became free in time; nothing was done, "
            "retry later (Retry-After)"
        )
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None)
    # A refused connection carries no SQLSTATE in psycopg (the server's FATAL arrives before
    # the session exists): recognise the server's wording as well.
    if sqlstate == TOO_MANY_CONNECTIONS or any(m in str(orig) for m in _NO_SLOT_MESSAGES):
        return OverloadedError(
            "Server overloaded: the database refused a new connection (too many connections); "
            "nothing was done, retry later (Retry-After)"
        )
    if sqlstate == QUERY_CANCELED:
        return OverloadedError(
            "Server overloaded: the database statement timeout cancelled the query; nothing "
            "was done, retry later (Retry-After)"
        )
    return DependencyUnavailableError("The database is unavailable, retry later")
