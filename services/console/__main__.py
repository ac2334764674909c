"""``python -m services.console``: the web console alone, calling ``RAPPORT_CONSOLE_API_URL``."""

from __future__ import annotations

from libs.common.serving import serve_with
from services.console.app import ConsoleAppSettings, create_app


def main() -> int:
    settings = ConsoleAppSettings()
    return serve_with(create_app(settings), settings)


if __name__ == "__main__":
    raise SystemExit(main())
