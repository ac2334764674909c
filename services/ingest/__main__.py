"""``python -m services.ingest``: the ingest service alone (scale-out, multi-process mode)."""

from __future__ import annotations

from libs.common.serving import serve_with
from services.ingest.app import IngestSettings, create_app


def main() -> int:
    settings = IngestSettings()
    return serve_with(create_app(settings), settings)


if __name__ == "__main__":
    raise SystemExit(main())
