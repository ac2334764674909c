"""``python -m rapport_cli`` and the ``rapport`` console script."""

from __future__ import annotations

from rapport_cli.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
