"""Render docs/configuration.md from the settings fragments (``python -m scripts.config_docs``).

A test compares the committed page with this output, so the reference never drifts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings

from libs.common import settings as fragments

FRAGMENTS: tuple[type[BaseSettings], ...] = (
    fragments.HttpSettings,
    fragments.PostgresSettings,
    fragments.NatsSettings,
    fragments.OutboxSettings,
    fragments.AuthSettings,
    fragments.LimitsSettings,
    fragments.WebhookSettings,
    fragments.TelemetrySettings,
    fragments.LLMSettings,
    fragments.EmbedderSettings,
    fragments.VectorStoreSettings,
    fragments.ConsoleSettings,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def _deriver_fields() -> type[BaseSettings]:
    """The deriver's own fields (beyond the shared fragments it composes)."""
    from services.deriver.app import DeriverSettings

    return DeriverSettings


def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Every setting is an environment variable with the `RAPPORT_` prefix. This page is",
        "generated from the settings classes by `python -m scripts.config_docs`.",
        "",
    ]
    shared = {name for fragment in FRAGMENTS for name in fragment.model_fields}
    deriver = _deriver_fields()
    sections: list[tuple[str, str, dict[str, Any]]] = [
        (f.__name__, (f.__doc__ or "").strip().splitlines()[0], dict(f.model_fields))
        for f in FRAGMENTS
    ]
    sections.append(
        (
            "DeriverSettings",
            "Deriver tuning (consumers, retries, summaries, peer cards).",
            {n: f for n, f in deriver.model_fields.items() if n not in shared},
        )
    )
    for title, doc, fields in sections:
        lines += [f"## {title}", "", doc, "", "| variable | default | meaning |", "|---|---|---|"]
        for name, field in fields.items():
            shown = "*(secret)*" if "secret" in name or "api_key" in name else f"`{field.default}`"
            lines.append(f"| `RAPPORT_{name.upper()}` | {shown} | {field.description or ''} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    DOC.write_text(render())
    sys.stdout.write(f"wrote {DOC}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
