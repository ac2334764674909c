"""Render docs/configuration.md from the settings fragments (``python -m scripts.config_docs``).

A test compares the committed page with this output, so the reference never drifts.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic_settings import BaseSettings

from libs.common import settings as fragments

FRAGMENTS: tuple[type[BaseSettings], ...] = (
    fragments.HttpSettings,
    fragments.PostgresSettings,
    fragments.NatsSettings,
    fragments.OutboxSettings,
    fragments.AuthSettings,
    fragments.LimitsSettings,
    fragments.TelemetrySettings,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Every setting is an environment variable with the `RAPPORT_` prefix. This page is",
        "generated from `libs/common/settings.py` by `python -m scripts.config_docs`.",
        "",
    ]
    for fragment in FRAGMENTS:
        doc = (fragment.__doc__ or "").strip().splitlines()[0]
        lines += [
            f"## {fragment.__name__}",
            "",
            doc,
            "",
            "| variable | default | meaning |",
            "|---|---|---|",
        ]
        for name, field in fragment.model_fields.items():
            default = field.default
            shown = "*(secret)*" if "secret" in name else f"`{default}`"
            lines.append(f"| `RAPPORT_{name.upper()}` | {shown} | {field.description or ''} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    DOC.write_text(render())
    sys.stdout.write(f"wrote {DOC}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
