"""Alembic environment: synchronous psycopg connection, one advisory lock per upgrade so
several processes starting at once migrate exactly once."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool, text

from libs.common.models import Base

MIGRATION_LOCK_KEY = 0x5241_4D47  # "RAMG"

config = context.config
target_metadata = Base.metadata


def _include(obj: object, name: str | None, type_: str, reflected: bool, other: object) -> bool:
    """Leave the vector store's own tables (created at run time, sized by configuration) out of
    autogenerate comparisons."""
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", "")
    return not (table or "").startswith("vec_")


def _url() -> str:
    return os.environ.get("RAPPORT_DATABASE_URL") or config.get_main_option("sqlalchemy.url") or ""


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    url = config.get_main_option("sqlalchemy.url") or _url()
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        conn.commit()
        try:
            context.configure(
                connection=conn, target_metadata=target_metadata, include_object=_include
            )
            with context.begin_transaction():
                context.run_migrations()
            conn.commit()
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
            conn.commit()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
