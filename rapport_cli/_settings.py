"""Connection settings: flags first, then the environment, then the defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass

from rapport import AsyncRapport, Rapport

DEFAULT_BASE_URL = "http://localhost:8000"
DEFAULT_WORKSPACE_ID = "default"
DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Settings:
    """Where and how to reach the server."""

    base_url: str
    api_key: str | None
    workspace_id: str
    timeout: float

    @classmethod
    def resolve(
        cls,
        base_url: str | None = None,
        api_key: str | None = None,
        workspace_id: str | None = None,
        timeout: float | None = None,
        environ: dict[str, str] | None = None,
    ) -> Settings:
        """Arguments, else ``RAPPORT_BASE_URL`` / ``RAPPORT_API_KEY`` / ``RAPPORT_WORKSPACE_ID``,
        else the defaults."""
        env = os.environ if environ is None else environ
        return cls(
            base_url=(base_url or env.get("RAPPORT_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"),
            api_key=api_key if api_key is not None else (env.get("RAPPORT_API_KEY") or None),
            workspace_id=workspace_id or env.get("RAPPORT_WORKSPACE_ID") or DEFAULT_WORKSPACE_ID,
            timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
        )

    def client(self) -> Rapport:
        """A blocking SDK client (no request is made yet)."""
        return Rapport(self.base_url, self.api_key, self.workspace_id, timeout=self.timeout)

    def async_client(self) -> AsyncRapport:
        """An async SDK client (no request is made yet)."""
        return AsyncRapport(self.base_url, self.api_key, self.workspace_id, timeout=self.timeout)
