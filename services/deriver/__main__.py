"""``python -m services.deriver``: the deriver alone (scale-out, multi-process mode)."""

from __future__ import annotations

from libs.common.serving import serve_with
from services.deriver.app import DeriverSettings, create_app


def main() -> int:
    settings = DeriverSettings()
    return serve_with(create_app(settings), settings)


if __name__ == "__main__":
    raise SystemExit(main())
