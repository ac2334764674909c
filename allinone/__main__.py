"""``python -m allinone``: migrate, then serve every router and consumer on one port."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from allinone.app import AllInOneSettings, create_app
from libs.common.migrate import upgrade_to_head


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rapport-server", description=__doc__)
    parser.add_argument("--host", default=None, help="bind address (RAPPORT_HOST)")
    parser.add_argument("--port", type=int, default=None, help="bind port (RAPPORT_PORT)")
    parser.add_argument(
        "--no-migrate", action="store_true", help="do not apply database migrations first"
    )
    args = parser.parse_args(argv)
    settings = AllInOneSettings()
    if not args.no_migrate:
        upgrade_to_head(settings.database_url)
    uvicorn.run(
        create_app(settings),
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_level=logging.getLevelName(logging.WARNING).lower(),
        access_log=False,
        timeout_keep_alive=settings.http_keep_alive_s,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
