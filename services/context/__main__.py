"""``python -m services.context``: the context service alone (scale-out, multi-process mode)."""

from __future__ import annotations

from libs.common.serving import serve_with
from services.context.app import ContextSettings, create_app


def main() -> int:
    settings = ContextSettings()
    return serve_with(create_app(settings), settings)


if __name__ == "__main__":
    raise SystemExit(main())
