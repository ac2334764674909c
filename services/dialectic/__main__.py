"""``python -m services.dialectic``: the dialectic service alone (scale-out, multi-process mode)."""

from __future__ import annotations

from libs.common.serving import serve
from services.dialectic.app import DialecticSettings, create_app


def main() -> int:
    settings = DialecticSettings()
    return serve(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        shutdown_grace_s=settings.shutdown_grace_s,
        keep_alive_s=settings.http_keep_alive_s,
    )


if __name__ == "__main__":
    raise SystemExit(main())
