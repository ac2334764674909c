"""Identifiers: user-chosen resource ids and server-generated nanoids."""

from __future__ import annotations

import re
import secrets
import uuid

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz-"
NANOID_SIZE = 21

RESOURCE_ID_PATTERN = r"^[A-Za-z0-9_-]+$"
RESOURCE_ID_MAX = 512
_RESOURCE_ID_RE = re.compile(RESOURCE_ID_PATTERN)


def nanoid(size: int = NANOID_SIZE) -> str:
    """A URL-safe random id (126 bits at the default size)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(size))


def event_id() -> str:
    """Globally unique id of a domain event (also its JetStream ``Nats-Msg-Id``)."""
    return uuid.uuid4().hex


def is_valid_resource_id(value: str) -> bool:
    """True when ``value`` is a valid workspace / peer / session id."""
    return 0 < len(value) <= RESOURCE_ID_MAX and bool(_RESOURCE_ID_RE.match(value))
