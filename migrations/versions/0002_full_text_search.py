"""full-text search indexes for hybrid retrieval

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_messages_fts ON messages "
        "USING gin (to_tsvector('english', content))"
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_conclusions_fts ON conclusions "
        "USING gin (to_tsvector('english', content))"
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_messages_session_seq_desc ON messages "
        "(workspace_id, session_id, seq DESC) INCLUDE (token_count)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_messages_session_seq_desc")
    op.execute("DROP INDEX IF EXISTS ix_conclusions_fts")
    op.execute("DROP INDEX IF EXISTS ix_messages_fts")
