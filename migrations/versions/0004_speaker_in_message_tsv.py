"""messages: the speaker's peer id in the full-text vector

Questions name people ("What did Caroline research?") while a message's text rarely names its
own author, so the message's full-text vector now covers ``peer_id || ' ' || content`` (the
embedded text of a message is "peer_id: content" likewise, see
``libs.common.retrieval.hybrid.message_index_text``). ``SET EXPRESSION`` recomputes the stored
column (a table rewrite) and its GIN index.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE messages ALTER COLUMN content_tsv SET EXPRESSION AS "
        "(to_tsvector('english', peer_id || ' ' || content))"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE messages ALTER COLUMN content_tsv SET EXPRESSION AS "
        "(to_tsvector('english', content))"
    )
