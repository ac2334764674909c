"""ORM models: the one schema every service reads and writes.

Natural keys: workspaces, peers and sessions are addressed by user-chosen ids scoped by their
workspace; messages and conclusions carry server-generated nanoids. Every table that belongs to a
workspace carries ``workspace_id`` so tenancy is a plain predicate on every query.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Computed,
    DateTime,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Json = dict[str, Any]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {Json: JSONB, datetime: DateTime(timezone=True)}


def _now() -> Mapped[datetime]:
    return mapped_column(server_default=func.now(), nullable=False)


def _json() -> Mapped[Json]:
    return mapped_column(JSONB, server_default=text("'{}'::jsonb"), nullable=False)


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(String(512), primary_key=True)
    metadata_: Mapped[Json] = mapped_column("metadata", JSONB, server_default=text("'{}'::jsonb"))
    configuration: Mapped[Json] = _json()
    created_at: Mapped[datetime] = _now()


class Peer(Base):
    __tablename__ = "peers"
    __table_args__ = (
        PrimaryKeyConstraint("workspace_id", "id"),
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
    )

    workspace_id: Mapped[str] = mapped_column(String(512))
    id: Mapped[str] = mapped_column(String(512))
    metadata_: Mapped[Json] = mapped_column("metadata", JSONB, server_default=text("'{}'::jsonb"))
    configuration: Mapped[Json] = _json()
    created_at: Mapped[datetime] = _now()


class Session(Base):
    __tablename__ = "sessions"
    __table_args__ = (
        PrimaryKeyConstraint("workspace_id", "id"),
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
    )

    workspace_id: Mapped[str] = mapped_column(String(512))
    id: Mapped[str] = mapped_column(String(512))
    metadata_: Mapped[Json] = mapped_column("metadata", JSONB, server_default=text("'{}'::jsonb"))
    configuration: Mapped[Json] = _json()
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    #: Sequence number of the last message; bumped under the session row lock so a session's
    #: messages (and their outbox events) are numbered in commit order.
    last_seq: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    created_at: Mapped[datetime] = _now()


class SessionPeer(Base):
    """Current membership of a peer in a session, with its per-session configuration."""

    __tablename__ = "session_peers"
    __table_args__ = (
        PrimaryKeyConstraint("workspace_id", "session_id", "peer_id"),
        ForeignKeyConstraint(
            ["workspace_id", "session_id"],
            ["sessions.workspace_id", "sessions.id"],
            ondelete="CASCADE",
        ),
        ForeignKeyConstraint(
            ["workspace_id", "peer_id"], ["peers.workspace_id", "peers.id"], ondelete="CASCADE"
        ),
        Index("ix_session_peers_peer", "workspace_id", "peer_id"),
    )

    workspace_id: Mapped[str] = mapped_column(String(512))
    session_id: Mapped[str] = mapped_column(String(512))
    peer_id: Mapped[str] = mapped_column(String(512))
    #: As the client set it (``observe_me`` / ``observe_others``); never filled with defaults.
    configuration: Mapped[Json] = _json()
    joined_at: Mapped[datetime] = _now()
    left_at: Mapped[datetime | None] = mapped_column(nullable=True)


class MembershipWindow(Base):
    """One stretch of membership, in message sequence numbers.

    A peer witnessed message ``seq`` of a session iff one of its windows has
    ``joined_seq < seq`` and (``left_seq`` is null or ``seq <= left_seq``).
    """

    __tablename__ = "membership_windows"
    __table_args__ = (
        ForeignKeyConstraint(
            ["workspace_id", "session_id"],
            ["sessions.workspace_id", "sessions.id"],
            ondelete="CASCADE",
        ),
        Index("ix_membership_windows_member", "workspace_id", "session_id", "peer_id"),
        Index("ix_membership_windows_peer", "workspace_id", "peer_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(512))
    session_id: Mapped[str] = mapped_column(String(512))
    peer_id: Mapped[str] = mapped_column(String(512))
    joined_seq: Mapped[int] = mapped_column(BigInteger)
    left_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    joined_at: Mapped[datetime] = _now()
    left_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        ForeignKeyConstraint(
            ["workspace_id", "session_id"],
            ["sessions.workspace_id", "sessions.id"],
            ondelete="CASCADE",
        ),
        ForeignKeyConstraint(
            ["workspace_id", "peer_id"], ["peers.workspace_id", "peers.id"], ondelete="CASCADE"
        ),
        UniqueConstraint("workspace_id", "session_id", "seq", name="uq_messages_session_seq"),
        Index("ix_messages_peer", "workspace_id", "peer_id", "created_at"),
        Index("ix_messages_workspace_created", "workspace_id", "created_at"),
        Index("ix_messages_content_tsv", "content_tsv", postgresql_using="gin"),
        Index(
            "ix_messages_session_seq_desc",
            "workspace_id",
            "session_id",
            text("seq DESC"),
            postgresql_include=["token_count"],
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(512))
    session_id: Mapped[str] = mapped_column(String(512))
    peer_id: Mapped[str] = mapped_column(String(512))
    seq: Mapped[int] = mapped_column(BigInteger)
    content: Mapped[str] = mapped_column(Text)
    metadata_: Mapped[Json] = mapped_column("metadata", JSONB, server_default=text("'{}'::jsonb"))
    configuration: Mapped[Json] = _json()
    token_count: Mapped[int] = mapped_column(Integer)
    #: Full-text vector of the speaker and ``content``, computed by Postgres at insert (never
    #: written by us; migration 0004).
    content_tsv: Mapped[Any] = mapped_column(
        TSVECTOR,
        Computed("to_tsvector('english', peer_id || ' ' || content)", persisted=True),
        deferred=True,
    )
    #: Client-settable (imports keep their original time); defaults to the insert time.
    created_at: Mapped[datetime] = _now()
    inserted_at: Mapped[datetime] = _now()


class Conclusion(Base):
    """An observation: something ``observer_id`` concluded about ``observed_id``."""

    __tablename__ = "conclusions"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        Index("ix_conclusions_view", "workspace_id", "observer_id", "observed_id", "created_at"),
        Index("ix_conclusions_session", "workspace_id", "session_id"),
        Index("ix_conclusions_content_tsv", "content_tsv", postgresql_using="gin"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(512))
    observer_id: Mapped[str] = mapped_column(String(512))
    observed_id: Mapped[str] = mapped_column(String(512))
    session_id: Mapped[str | None] = mapped_column(String(512), nullable=True)
    level: Mapped[str] = mapped_column(String(32), server_default=text("'explicit'"))
    content: Mapped[str] = mapped_column(Text)
    #: Messages the conclusion was derived from (empty for client-created conclusions).
    source_ids: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    token_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    content_tsv: Mapped[Any] = mapped_column(
        TSVECTOR, Computed("to_tsvector('english', content)", persisted=True), deferred=True
    )
    created_at: Mapped[datetime] = _now()


class Summary(Base):
    __tablename__ = "summaries"
    __table_args__ = (
        ForeignKeyConstraint(
            ["workspace_id", "session_id"],
            ["sessions.workspace_id", "sessions.id"],
            ondelete="CASCADE",
        ),
        UniqueConstraint(
            "workspace_id", "session_id", "summary_type", "message_seq", name="uq_summaries_point"
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(512))
    session_id: Mapped[str] = mapped_column(String(512))
    summary_type: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    #: Last message the summary covers.
    message_id: Mapped[str] = mapped_column(String(32))
    message_seq: Mapped[int] = mapped_column(BigInteger)
    token_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = _now()


class PeerCard(Base):
    """Short list of stable facts that ``observer_id`` holds about ``observed_id``."""

    __tablename__ = "peer_cards"
    __table_args__ = (
        PrimaryKeyConstraint("workspace_id", "observer_id", "observed_id"),
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
    )

    workspace_id: Mapped[str] = mapped_column(String(512))
    observer_id: Mapped[str] = mapped_column(String(512))
    observed_id: Mapped[str] = mapped_column(String(512))
    facts: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    updated_at: Mapped[datetime] = _now()


class OutboxEvent(Base):
    """An event committed with the change it describes, waiting for the relay to publish it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "ix_outbox_unpublished",
            "id",
            postgresql_where=text("published_at IS NULL"),
        ),
        Index("ix_outbox_published_at", "published_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    event_type: Mapped[str] = mapped_column(String(128))
    subject: Mapped[str] = mapped_column(String(1100))
    #: Ordering key: events with the same key are published strictly in id order.
    ordering_key: Mapped[str] = mapped_column(String(1100))
    payload: Mapped[Json] = mapped_column(JSONB)
    headers: Mapped[dict[str, str]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _now()
    published_at: Mapped[datetime | None] = mapped_column(nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        UniqueConstraint("workspace_id", "url", name="uq_webhook_endpoints_url"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(512))
    url: Mapped[str] = mapped_column(String(2048))
    created_at: Mapped[datetime] = _now()


class DerivationStatus(Base):
    """Background work state per message, written by the deriver (read by queue status)."""

    __tablename__ = "derivation_status"
    __table_args__ = (
        ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE"),
        Index("ix_derivation_status_session", "workspace_id", "session_id", "status"),
    )

    message_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(512))
    session_id: Mapped[str] = mapped_column(String(512))
    #: ``in_progress``, ``done`` or ``dead`` (dead-lettered; see ``dead_letters``).
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    updated_at: Mapped[datetime] = _now()


class DeadLetter(Base):
    """An event a consumer gave up on, kept with its error until retried or discarded."""

    __tablename__ = "dead_letters"
    __table_args__ = (Index("ix_dead_letters_workspace", "workspace_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str | None] = mapped_column(String(512), nullable=True)
    session_id: Mapped[str | None] = mapped_column(String(512), nullable=True)
    consumer: Mapped[str] = mapped_column(String(128))
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(128))
    subject: Mapped[str] = mapped_column(String(1100))
    payload: Mapped[Json] = mapped_column(JSONB)
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = _now()
    retried_at: Mapped[datetime | None] = mapped_column(nullable=True)
