"""Human output (aligned plain-text tables, readable text) and machine output (JSON)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

from pydantic import BaseModel


def cell(value: object) -> str:
    """A value as one line of table text (newlines shown as ``\\n``)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, Mapping | list):
        return compact_json(value) if value else "-"
    text = str(value)
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")


def timestamp(value: datetime) -> str:
    """A timestamp to the second, keeping its UTC offset."""
    return value.isoformat(timespec="seconds")


def compact_json(value: object) -> str:
    """JSON on one line, for metadata in tables."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """An aligned plain-text table: columns separated by two spaces, the last not padded."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))
    lines = []
    for row in [list(headers), *cells]:
        padded = [text.ljust(widths[i]) for i, text in enumerate(row[:-1])]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines)


def key_values(pairs: Sequence[tuple[str, object]]) -> str:
    """``key  value`` lines with the values aligned."""
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{k.ljust(width)}  {cell(v)}".rstrip() for k, v in pairs)


def to_jsonable(value: Any) -> Any:
    """Models, lists and mappings of models as plain JSON values."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class Output:
    """Where a command writes: one JSON document with ``--json``, else text."""

    def __init__(self, stream: TextIO, *, as_json: bool) -> None:
        self.stream = stream
        self.as_json = as_json

    def json(self, document: Any) -> None:
        """Write ``document`` as indented JSON."""
        self.stream.write(json.dumps(to_jsonable(document), indent=2, ensure_ascii=False))
        self.stream.write("\n")

    def text(self, text: str) -> None:
        """Write ``text`` followed by a newline."""
        self.stream.write(text)
        self.stream.write("\n")

    def write(self, chunk: str) -> None:
        """Write ``chunk`` as it is and flush (streamed answers)."""
        self.stream.write(chunk)
        self.stream.flush()
