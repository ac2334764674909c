"""``python -m allinone``: migrate, then serve every router and consumer on one port."""

from __future__ import annotations

import argparse

from allinone.app import AllInOneSettings, create_app
from libs.common.migrate import upgrade_to_head
from libs.common.serving import serve_with


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rapport-server", description=__doc__)
    parser.add_argument("--host", default=None, help="bind address (RAPPORT_HOST)")
    parser.add_argument("--port", type=int, default=None, help="bind port (RAPPORT_PORT)")
    parser.add_argument(
        "--no-migrate", action="store_true", help="do not apply database migrations first"
    )
    args = parser.parse_args(argv)
    settings = AllInOneSettings()
    overrides = {"host": args.host, "port": args.port}
    # The console calls this process's own port: it must know the one actually bound.
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v})
    if not args.no_migrate:
        upgrade_to_head(settings.database_url)
    return serve_with(create_app(settings), settings)


if __name__ == "__main__":
    raise SystemExit(main())
