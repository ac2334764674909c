"""``python -m services.console``: the web console alone, calling ``RAPPORT_CONSOLE_API_URL``."""

from __future__ import annotations

import uvicorn

from services.console.app import ConsoleAppSettings, create_app


def main() -> None:
    settings = ConsoleAppSettings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
