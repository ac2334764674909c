"""Honcho-compatible HS256 JWT authentication and the scope rules every route applies.

Claims: ``ad`` (admin), ``w`` (workspace), ``p`` (peer), ``s`` (session), ``exp`` (expiry: a
NumericDate, or an ISO-8601 string as some Honcho deployments mint). The narrowest claim
decides what a key reaches:

* admin — everything;
* workspace (``w``) — everything inside that workspace;
* peer (``w`` + ``p``) — its own peer routes, and read access to sessions it is a member of;
* session (``w`` + ``s``) — only that session's routes.

With auth disabled every request is admin.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

from libs.common.errors import AuthenticationError, ForbiddenError

ALGORITHM = "HS256"


@dataclass(frozen=True)
class Principal:
    """Who is calling, as proven by the token."""

    admin: bool = False
    workspace_id: str | None = None
    peer_id: str | None = None
    session_id: str | None = None

    @property
    def kind(self) -> str:
        if self.admin:
            return "admin"
        if self.session_id is not None:
            return "session"
        if self.peer_id is not None:
            return "peer"
        return "workspace"

    # -- checks (raise ForbiddenError) -----------------------------------------------------
    def require_admin(self) -> None:
        if not self.admin:
            raise ForbiddenError("This route needs an admin key")

    def _in_workspace(self, workspace_id: str) -> bool:
        return self.admin or self.workspace_id == workspace_id

    def require_workspace(self, workspace_id: str) -> None:
        """Workspace-wide routes: admin or a workspace key of this workspace."""
        if self.admin:
            return
        if self.workspace_id != workspace_id:
            raise ForbiddenError(f"This key has no access to workspace '{workspace_id}'")
        if self.peer_id is not None or self.session_id is not None:
            raise ForbiddenError(
                f"This {self.kind}-scoped key cannot use workspace-wide routes; use a workspace key"
            )

    def require_workspace_member(self, workspace_id: str) -> None:
        """Any key of this workspace (e.g. reading the workspace itself)."""
        if not self._in_workspace(workspace_id):
            raise ForbiddenError(f"This key has no access to workspace '{workspace_id}'")

    def require_peer(self, workspace_id: str, peer_id: str) -> None:
        """Peer routes: workspace-level keys, or a peer key of this very peer."""
        self.require_workspace_member(workspace_id)
        if self.admin or (self.peer_id is None and self.session_id is None):
            return
        if self.peer_id != peer_id:
            raise ForbiddenError(f"This key has no access to peer '{peer_id}'")

    async def require_session(
        self,
        workspace_id: str,
        session_id: str,
        *,
        write: bool,
        is_member: Callable[[str], Awaitable[bool]],
    ) -> None:
        """Session routes: workspace-level keys, this session's key, or (read only) a peer key
        of a member. ``is_member(peer_id)`` is only awaited for peer keys."""
        self.require_workspace_member(workspace_id)
        if self.admin or (self.peer_id is None and self.session_id is None):
            return
        if self.session_id is not None:
            if self.session_id != session_id:
                raise ForbiddenError(f"This key has no access to session '{session_id}'")
            return
        assert self.peer_id is not None
        if write:
            raise ForbiddenError("A peer-scoped key can read sessions but not change them")
        if not await is_member(self.peer_id):
            raise ForbiddenError(f"Peer '{self.peer_id}' is not a member of session '{session_id}'")


ADMIN = Principal(admin=True)


def create_jwt(
    secret: str,
    *,
    admin: bool = False,
    workspace_id: str | None = None,
    peer_id: str | None = None,
    session_id: str | None = None,
    expires_at: datetime | None = None,
) -> str:
    """Mint a key. Peer and session keys must name their workspace."""
    if (peer_id or session_id) and not workspace_id:
        raise ValueError("peer and session keys need a workspace")
    if peer_id and session_id:
        raise ValueError("a key is scoped to a peer or a session, not both")
    claims: dict[str, Any] = {"t": datetime.now(UTC).isoformat()}
    if admin:
        claims["ad"] = True
    if workspace_id:
        claims["w"] = workspace_id
    if peer_id:
        claims["p"] = peer_id
    if session_id:
        claims["s"] = session_id
    if expires_at is not None:
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        claims["exp"] = int(expires_at.timestamp())
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def _expiry(value: Any) -> datetime:
    if isinstance(value, bool):
        raise AuthenticationError("Invalid token: malformed 'exp' claim")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError) as exc:  # NaN, or beyond year 9999
            raise AuthenticationError("Invalid token: malformed 'exp' claim") from exc
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise AuthenticationError("Invalid token: malformed 'exp' claim") from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise AuthenticationError("Invalid token: malformed 'exp' claim")


def _str_claim(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise AuthenticationError(f"Invalid token: claim '{name}' must be a non-empty string")
    return value


def decode_jwt(token: str, secret: str) -> Principal:
    """Verify signature, algorithm and expiry; return the principal. Raises 401 on any flaw."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"verify_exp": False, "require": []},
        )
    except jwt.InvalidTokenError as exc:
        raise AuthenticationError(f"Invalid token: {exc}") from exc
    if not isinstance(claims, dict):
        raise AuthenticationError("Invalid token: claims must be an object")
    if (
        "exp" in claims
        and claims["exp"] is not None
        and _expiry(claims["exp"]) <= datetime.now(UTC)
    ):
        raise AuthenticationError("Token expired")
    admin = claims.get("ad") is True
    workspace_id = _str_claim(claims, "w")
    peer_id = _str_claim(claims, "p")
    session_id = _str_claim(claims, "s")
    if not admin and workspace_id is None:
        raise AuthenticationError("Invalid token: it grants no scope (no 'ad' or 'w' claim)")
    if admin:
        return ADMIN
    if peer_id and session_id:
        # Honcho treats the narrowest claim as decisive; a session is narrower than a peer.
        peer_id = None
    return Principal(workspace_id=workspace_id, peer_id=peer_id, session_id=session_id)


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise AuthenticationError("Missing Authorization header (expected 'Bearer <key>')")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("Malformed Authorization header (expected 'Bearer <key>')")
    return token.strip()
