"""Webhook delivery: ``{type, data, timestamp}`` JSON, signed with ``X-Honcho-Signature``."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from libs.common.consumers import TransientError
from libs.common.webhooks import resolves_to_private, sign

log = logging.getLogger(__name__)


class WebhookDeliverer:
    """Posts one event to every endpoint of a workspace. A failed endpoint makes the whole
    delivery retry later (at-least-once; receivers de-duplicate on ``data.event_id``)."""

    def __init__(self, *, secret: str, allow_private: bool, timeout_s: float) -> None:
        self.secret = secret
        self.allow_private = allow_private
        self.timeout_s = timeout_s

    def body(self, event_type: str, data: dict[str, Any]) -> bytes:
        return orjson.dumps(
            {"type": event_type, "data": data, "timestamp": datetime.now(UTC).isoformat()}
        )

    async def deliver(self, urls: list[str], event_type: str, data: dict[str, Any]) -> int:
        """Returns how many endpoints accepted the event; raises TransientError on failures."""
        if not urls:
            return 0
        body = self.body(event_type, data)
        headers = {"content-type": "application/json", "user-agent": "rapport-webhooks/0.1"}
        if self.secret:
            headers["X-Honcho-Signature"] = sign(self.secret, body)
        failures: list[str] = []
        delivered = 0
        async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as http:
            for url in urls:
                host = urlsplit(url).hostname or ""
                if not self.allow_private and await resolves_to_private(host):
                    log.warning("webhook to %s skipped: it resolves to a private address", host)
                    continue
                try:
                    response = await http.post(url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    failures.append(f"{host}: {type(exc).__name__}")
                    continue
                if response.is_success:
                    delivered += 1
                else:
                    failures.append(f"{host}: HTTP {response.status_code}")
        if failures:
            raise TransientError("webhook delivery failed: " + "; ".join(failures))
        return delivered
