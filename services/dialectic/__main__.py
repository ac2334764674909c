"""``python -m services.dialectic``: the dialectic service alone (scale-out, multi-process mode)."""

from __future__ import annotations

from libs.common.serving import serve_with
from services.dialectic.app import DialecticSettings, create_app


def main() -> int:
    settings = DialecticSettings()
    return serve_with(create_app(settings), settings)


if __name__ == "__main__":
    raise SystemExit(main())
