"""Identifiers: user-chosen resource ids and server-generated nanoids."""

from __future__ import annotations

import re
import secrets
import uuid

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz-"
NANOID_SIZE = 21
#: byte -> alphabet character by its low 6 bits (``bytes.translate`` table).
_BYTE_TO_CHAR = bytes(ord(_ALPHABET[b & 63]) for b in range(256))

RESOURCE_ID_PATTERN = r"^[A-Za-z0-9_-]+$"
RESOURCE_ID_MAX = 512
_RESOURCE_ID_RE = re.compile(RESOURCE_ID_PATTERN)


def nanoid(size: int = NANOID_SIZE) -> str:
    """A URL-safe random id (126 bits at the default size).

    One ``os.urandom`` read per id; each byte's low 6 bits pick a character (64 characters, so
    every character is equally likely). ``secrets.choice`` per character cost one read each and
    was a tenth of the CPU of a 100-message ingest batch.
    """
    return secrets.token_bytes(size).translate(_BYTE_TO_CHAR).decode("ascii")


def event_id() -> str:
    """Globally unique id of a domain event (also its JetStream ``Nats-Msg-Id``)."""
    return uuid.uuid4().hex


def is_valid_resource_id(value: str) -> bool:
    """True when ``value`` is a valid workspace / peer / session id."""
    return 0 < len(value) <= RESOURCE_ID_MAX and bool(_RESOURCE_ID_RE.match(value))
