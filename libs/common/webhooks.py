"""Webhook URL policy (applied at registration and again at delivery) and signing.

Only ``http``/``https`` URLs with a host are accepted. Hosts that are loopback, private,
link-local, multicast, reserved or unspecified IP literals — or names that always mean this
machine — are refused unless ``RAPPORT_ALLOW_PRIVATE_WEBHOOK_URLS`` is set, so a tenant cannot
point deliveries at the platform's own network. Delivery re-checks the resolved address
(names can change what they resolve to).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
from urllib.parse import urlsplit

from libs.common.errors import ValidationError

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def is_private_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return bool(
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def validate_webhook_url(url: str, *, allow_private: bool) -> None:
    """Raise a 422 naming the problem when ``url`` may not receive webhooks."""
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:  # e.g. an unbalanced "[" in the host
        raise ValidationError(f"Webhook URL is malformed: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise ValidationError("Webhook URL must start with http:// or https://")
    host = parts.hostname
    if not host:
        raise ValidationError("Webhook URL has no host")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValidationError(f"Webhook URL has an invalid port: {exc}") from exc
    if parts.username or parts.password:
        raise ValidationError("Webhook URL must not embed credentials")
    if allow_private:
        return
    lowered = host.lower().rstrip(".")
    if lowered in _LOCAL_NAMES or lowered.endswith(".localhost"):
        raise ValidationError(
            f"Webhook host '{host}' is this machine; refused "
            "(set RAPPORT_ALLOW_PRIVATE_WEBHOOK_URLS=true to allow private targets)"
        )
    try:
        address = ipaddress.ip_address(lowered)
    except ValueError:
        return
    if is_private_address(address):
        raise ValidationError(
            f"Webhook host '{host}' is a private, loopback or link-local address; refused "
            "(set RAPPORT_ALLOW_PRIVATE_WEBHOOK_URLS=true to allow private targets)"
        )


def sign(secret: str, body: bytes) -> str:
    """``X-Honcho-Signature``: hex HMAC-SHA256 of the exact body bytes."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def resolves_to_private(host: str) -> bool:
    """True when any address ``host`` resolves to is private (checked at delivery time, so a
    name that was public at registration cannot be re-pointed at the internal network)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    except OSError:
        return False  # unresolvable: the delivery itself will fail and be retried
    for info in infos:
        try:
            if is_private_address(ipaddress.ip_address(info[4][0])):
                return True
        except ValueError:
            continue
    return False
