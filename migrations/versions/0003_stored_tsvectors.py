"""stored tsvector columns for full-text search

Ranking matched rows with ``ts_rank_cd(to_tsvector(content), …)`` recomputed the vector of every
matching row per query (≈150 ms at 10k matches, measured by bench/bench_search.py); a stored,
indexed tsvector is computed once, at insert.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("messages", "conclusions"):
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS content_tsv tsvector "
            "GENERATED ALWAYS AS (to_tsvector('english', content)) STORED"
        )
        op.execute(
            f"CREATE INDEX IF NOT EXISTS ix_{table}_content_tsv ON {table} USING gin (content_tsv)"
        )
        op.execute(f"DROP INDEX IF EXISTS ix_{table}_fts")


def downgrade() -> None:
    for table in ("messages", "conclusions"):
        op.execute(
            f"CREATE INDEX IF NOT EXISTS ix_{table}_fts ON {table} "
            "USING gin (to_tsvector('english', content))"
        )
        op.execute(f"DROP INDEX IF EXISTS ix_{table}_content_tsv")
        op.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS content_tsv")
