"""``python -m services.console``: the web console alone, calling ``RAPPORT_CONSOLE_API_URL``."""

from __future__ import annotations

from libs.common.serving import serve
from services.console.app import ConsoleAppSettings, create_app


def main() -> int:
    settings = ConsoleAppSettings()
    return serve(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        shutdown_grace_s=settings.shutdown_grace_s,
        keep_alive_s=settings.http_keep_alive_s,
    )


if __name__ == "__main__":
    raise SystemExit(main())
