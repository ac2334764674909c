"""Turn an uploaded file into message contents.

:func:`split_upload` detects the file's type, extracts its text and splits it into message-sized
pieces. Pure functions: no I/O beyond the bytes handed in, no web framework.

Supported types:

* plain text (``text/plain``, ``.txt``) and Markdown (``text/markdown``, ``.md``,
  ``.markdown``): UTF-8 (a BOM is dropped), chunked;
* JSON (``application/json``, ``.json``): a list of strings gives one message per string; a
  list of objects that each have a string ``"content"`` gives one message per object; any
  other JSON value is pretty-printed and chunked like text;
* PDF (``application/pdf``, ``.pdf``): text extracted page by page with pypdf, pages joined by
  a blank line, chunked.

The type comes from ``content_type`` first (parameters such as ``charset`` are ignored, and a
generic ``application/octet-stream`` counts as not given), then from the file name's extension,
then from sniffing the ``%PDF-`` signature; a file with none of these is read as plain text.

Chunking keeps every piece within ``max_chars`` characters (code points), cutting at the
coarsest boundary that fits: blank lines (paragraphs), then line breaks, then sentence ends,
then any whitespace, and only as a last resort in the middle of a word. Each piece is a slice
of the extracted text with its surrounding whitespace trimmed, so the text inside a piece is
unchanged and no non-whitespace character is lost. Every message (from a JSON list too) is cut
the same way when it is longer than ``max_chars``; empty and whitespace-only ones are dropped.
"""

from __future__ import annotations

import codecs
import io
import json
import re
from typing import Final, Literal

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, WrongPasswordError

__all__ = [
    "SUPPORTED_FILE_TYPES",
    "UnreadableFile",
    "UnsupportedFileType",
    "UploadError",
    "split_text",
    "split_upload",
]

FileKind = Literal["text", "markdown", "json", "pdf"]

SUPPORTED_FILE_TYPES: Final = (
    "text/plain (.txt), text/markdown (.md, .markdown), application/json (.json), "
    "application/pdf (.pdf)"
)
"""The supported types, as named in error messages."""

_CONTENT_TYPES: Final[dict[str, FileKind]] = {
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "application/json": "json",
    "text/json": "json",
    "application/pdf": "pdf",
    "application/x-pdf": "pdf",
}
_EXTENSIONS: Final[dict[str, FileKind]] = {
    ".txt": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".json": "json",
    ".pdf": "pdf",
}
# Content types that say nothing about the content: fall through to the extension.
_GENERIC_CONTENT_TYPES: Final = frozenset(
    {"", "application/octet-stream", "binary/octet-stream", "application/unknown"}
)
_PDF_MAGIC: Final = b"%PDF-"
# Readers tolerate a little junk before the signature; so do we.
_PDF_MAGIC_WINDOW: Final = 1024


class UploadError(ValueError):
    """An uploaded file cannot be turned into messages. The message is meant for a person."""


class UnsupportedFileType(UploadError):  # noqa: N818 - public name fixed by the API
    """The file's type is not one of :data:`SUPPORTED_FILE_TYPES`."""


class UnreadableFile(UploadError):  # noqa: N818 - public name fixed by the API
    """The file claims a supported type but its content cannot be read (or is empty)."""


def split_upload(
    *, filename: str | None, content_type: str | None, data: bytes, max_chars: int
) -> list[str]:
    """Message contents for an uploaded file, in order; never empty, no piece over ``max_chars``.

    Args:
        filename: The client's file name, if any (only its extension is used, and it is quoted
            in error messages).
        content_type: The declared media type, if any (``"text/plain; charset=utf-8"`` works).
        data: The file's bytes.
        max_chars: Longest message, in characters (code points); at least 1.

    Raises:
        UnsupportedFileType: The type is not supported.
        UnreadableFile: Empty file, text that is not UTF-8 or contains NUL characters, invalid
            JSON, a broken or password-protected PDF, or no text at all.
        ValueError: ``max_chars`` is below 1 (a programming error, not an :class:`UploadError`).
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    label = _label(filename)
    kind = _detect_kind(filename, content_type, data, label)
    if not data:
        raise UnreadableFile(f"{label} is empty; upload a file with some text in it.")

    if kind == "pdf":
        messages = split_text(_pdf_text(data, label), max_chars)
    elif kind == "json":
        messages = _split_json(_decode_text(data, label), max_chars, label)
    else:
        messages = split_text(_decode_text(data, label), max_chars)

    for message in messages:
        _check_message(message, label)
    if not messages:
        what = "no extractable text (is it a scan?)" if kind == "pdf" else "no text"
        raise UnreadableFile(f"{label} contains {what}; nothing to turn into messages.")
    return messages


def split_text(text: str, max_chars: int) -> list[str]:
    """Split ``text`` into trimmed, non-empty pieces of at most ``max_chars`` characters.

    Boundaries are preferred in this order: blank line, line break, sentence end, whitespace,
    and a hard cut only inside a run longer than ``max_chars`` without any of those. Adjacent
    pieces are packed together (with the original separators between them) while they fit.
    Whitespace-only text gives ``[]``.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    return [text[start:end] for start, end in _spans(text, 0, len(text), 0, max_chars)]


# --- type detection -------------------------------------------------------------------------


def _detect_kind(
    filename: str | None, content_type: str | None, data: bytes, label: str
) -> FileKind:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in _GENERIC_CONTENT_TYPES:
        kind = _CONTENT_TYPES.get(media_type)
        if kind is None and media_type.endswith("+json"):
            kind = "json"
        if kind is None:
            raise UnsupportedFileType(
                f"{label} has type {media_type!r}, which is not supported; "
                f"supported types: {SUPPORTED_FILE_TYPES}."
            )
        return kind

    extension = _extension(filename)
    if extension in _EXTENSIONS:
        return _EXTENSIONS[extension]
    if _PDF_MAGIC in data[:_PDF_MAGIC_WINDOW]:
        return "pdf"
    if extension:
        raise UnsupportedFileType(
            f"{label} has extension {extension!r}, which is not supported; "
            f"supported types: {SUPPORTED_FILE_TYPES}."
        )
    return "text"


def _extension(filename: str | None) -> str:
    if not filename:
        return ""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, suffix = base.rpartition(".")
    if not dot or not stem.strip("."):  # no dot, or a dot-file such as ".env"
        return ""
    return "." + suffix.lower()


def _label(filename: str | None) -> str:
    if not filename:
        return "The file"
    shown = filename if len(filename) <= 120 else filename[:117] + "..."
    return f"The file {shown!r}"


# --- decoding -------------------------------------------------------------------------------


def _decode_text(data: bytes, label: str) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise UnreadableFile(f"{label} is encoded as UTF-16; save it as UTF-8 and upload it again.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        hint = (
            " It looks like a PDF: send it as application/pdf or name it .pdf."
            if _PDF_MAGIC in data[:_PDF_MAGIC_WINDOW]
            else " Save it as UTF-8 and upload it again."
        )
        raise UnreadableFile(
            f"{label} is not valid UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}).{hint}"
        ) from exc


def _check_message(message: str, label: str) -> None:
    if "\x00" in message:
        raise UnreadableFile(
            f"{label} contains NUL characters (\\u0000), which messages cannot hold; "
            "it may be a binary file. Remove them and upload it again."
        )
    try:
        message.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnreadableFile(
            f"{label} contains an unpaired surrogate (\\u{ord(message[exc.start]):04x}), "
            "which is not valid Unicode text; fix the escape and upload it again."
        ) from exc


# --- JSON -----------------------------------------------------------------------------------


def _split_json(text: str, max_chars: int, label: str) -> list[str]:
    try:
        value: object = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnreadableFile(
            f"{label} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from exc
    except (ValueError, RecursionError) as exc:  # e.g. integer too long, nesting too deep
        raise UnreadableFile(f"{label} is not JSON that can be read: {exc}.") from exc

    items = _json_messages(value)
    if items is None:
        try:
            items = [json.dumps(value, indent=2, ensure_ascii=False)]
        except RecursionError as exc:
            raise UnreadableFile(f"{label} is JSON nested too deeply to turn into text.") from exc
    return [piece for item in items for piece in split_text(item, max_chars)]


def _json_messages(value: object) -> list[str] | None:
    """The message list for the two list forms, or ``None`` for any other JSON."""
    if not isinstance(value, list):
        return None
    if all(isinstance(item, str) for item in value):
        return [item for item in value if isinstance(item, str)]
    if all(isinstance(item, dict) and isinstance(item.get("content"), str) for item in value):
        return [str(item["content"]) for item in value if isinstance(item, dict)]
    return None


# --- PDF ------------------------------------------------------------------------------------


def _pdf_text(data: bytes, label: str) -> str:
    try:
        reader = PdfReader(io.BytesIO(data))
        # Many PDFs are encrypted with an empty user password (only editing is restricted).
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise _pdf_locked(label)
        pages = [page.extract_text() for page in reader.pages]
    except UnreadableFile:
        raise
    except (FileNotDecryptedError, WrongPasswordError, DependencyError) as exc:
        # DependencyError: AES encryption needs the optional `cryptography` package.
        raise _pdf_locked(label) from exc
    except Exception as exc:  # pypdf raises many error types on malformed input
        raise UnreadableFile(
            f"{label} could not be read as a PDF ({type(exc).__name__}); it may be damaged. "
            "Re-export it as a PDF or upload its text instead."
        ) from exc
    # NUL bytes in extracted text are font-mapping artefacts, not content the user wrote.
    return "\n\n".join(page.replace("\x00", "") for page in pages)


def _pdf_locked(label: str) -> UnreadableFile:
    return UnreadableFile(
        f"{label} is an encrypted or password-protected PDF that cannot be opened here; "
        "save an unprotected copy and upload that."
    )


# --- chunking -------------------------------------------------------------------------------

_WHITESPACE: Final = re.compile(r"\s+")
# Separators from coarsest to finest; each match is removed between two segments, and the
# segments are trimmed, which absorbs any whitespace around a separator. (No pattern may scan a
# whitespace run that it can fail to match at every start position: that would be quadratic.)
_SEPARATORS: Final[tuple[re.Pattern[str], ...]] = (
    re.compile(r"\n[^\S\n]*\n"),  # blank line(s): paragraph boundary
    re.compile(r"\n"),  # line break
    # Sentence end: whitespace after . ! ? or an ellipsis (optionally closed by a quote or
    # bracket), or right after the CJK full stop, exclamation and question marks, which take no
    # space after them.
    re.compile(
        r"(?<=[.!?\u2026][\"'\u201d\u2019)\]])\s+"
        r"|(?<=[.!?\u2026])\s+"
        r"|(?<=[\u3002\uff01\uff1f])\s*"
    ),
    _WHITESPACE,
)
_HARD_CUT: Final = len(_SEPARATORS)


def _spans(text: str, start: int, end: int, level: int, max_chars: int) -> list[tuple[int, int]]:
    """Trimmed ``(start, end)`` spans of ``text[start:end]``, each at most ``max_chars`` long."""
    start, end = _trim(text, start, end)
    if start >= end:
        return []
    if end - start <= max_chars:
        return [(start, end)]
    if level >= _HARD_CUT:
        return _hard_cut(text, start, end, max_chars)

    segments = _segments(text, start, end, _SEPARATORS[level])
    if len(segments) <= 1:
        return _spans(text, start, end, level + 1, max_chars)

    out: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    for seg_start, seg_end in segments:
        if current is not None and seg_end - current[0] <= max_chars:
            current = (current[0], seg_end)
            continue
        if current is not None:
            out.append(current)
            current = None
        if seg_end - seg_start <= max_chars:
            current = (seg_start, seg_end)
        else:
            out.extend(_spans(text, seg_start, seg_end, level + 1, max_chars))
    if current is not None:
        out.append(current)
    return out


def _segments(text: str, start: int, end: int, separator: re.Pattern[str]) -> list[tuple[int, int]]:
    """Non-empty trimmed spans between the separator's matches inside ``[start, end)``."""
    segments: list[tuple[int, int]] = []
    cursor = start
    for match in separator.finditer(text, start, end):
        _append_trimmed(text, cursor, match.start(), segments)
        cursor = max(match.end(), cursor)
    _append_trimmed(text, cursor, end, segments)
    return segments


def _append_trimmed(text: str, start: int, end: int, into: list[tuple[int, int]]) -> None:
    start, end = _trim(text, start, end)
    if start < end:
        into.append((start, end))


def _hard_cut(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    while start < end:
        cut = min(start + max_chars, end)
        out.append((start, cut))
        start = cut
    return out


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end
