"""HTTP routes of this service (none yet: the read-path issue adds them)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v3")
