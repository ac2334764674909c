"""``python -m services.deriver``: the deriver alone (scale-out, multi-process mode)."""

from __future__ import annotations

import uvicorn

from services.deriver.app import DeriverSettings, create_app


def main() -> None:
    settings = DeriverSettings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=settings.http_keep_alive_s,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
