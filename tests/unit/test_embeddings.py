"""Embedders, offline: the bundled ONNX model (with every socket blocked) and the
OpenAI-compatible adapter against a fake endpoint on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from libs.common.embeddings import (
    LOCAL_DIMENSIONS,
    TOKENIZER_PATH,
    TOKENIZER_SHA256,
    Embedder,
    LocalOnnxEmbedder,
    OpenAIEmbedder,
    create_embedder,
)
from libs.common.settings import EmbedderSettings


def cos(a: list[float], b: list[float]) -> float:
    return float(np.dot(np.asarray(a), np.asarray(b)))


@pytest.fixture(scope="module")
def local() -> LocalOnnxEmbedder:
    return LocalOnnxEmbedder(batch_size=4)


# --- local ONNX model -------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every outgoing connection and DNS look-up in this process fails."""

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


async def test_local_embedder_works_with_the_network_off(no_network: None) -> None:
    with pytest.raises(OSError, match="network disabled"):
        socket.create_connection(("pypi.org", 443), timeout=1)
    embedder = LocalOnnxEmbedder()  # a fresh instance: loads tokenizer and model right here
    vectors = await embedder.embed(["offline embedding works"])
    assert len(vectors) == 1 and len(vectors[0]) == LOCAL_DIMENSIONS
    await embedder.close()


async def test_semantic_sanity(local: LocalOnnxEmbedder) -> None:
    eggs, breakfast, stocks = await local.embed(
        ["I had eggs for breakfast", "morning meal: scrambled eggs", "the stock market fell"]
    )
    assert cos(eggs, breakfast) > cos(eggs, stocks) + 0.3
    assert cos(eggs, breakfast) > 0.6
    assert cos(eggs, stocks) < 0.3


async def test_vectors_are_normalised_and_sized(local: LocalOnnxEmbedder) -> None:
    texts = ["short", "", "a somewhat longer sentence about the weather in Lisbon", "🎉 ünïcødé"]
    vectors = await local.embed(texts)
    assert len(vectors) == len(texts)
    for v in vectors:
        assert len(v) == local.dimensions == 384
        assert math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, abs_tol=1e-5)
        assert all(math.isfinite(x) for x in v)
    assert local.name == "all-MiniLM-L6-v2"
    assert isinstance(local, Embedder)


async def test_batch_equals_single_and_keeps_order(local: LocalOnnxEmbedder) -> None:
    texts = [
        "The quick brown fox jumps over the lazy dog " * (i % 5 + 1) + f"#{i}" for i in range(11)
    ]
    batched = await local.embed(texts)  # batch_size 4: three batches, sorted by length inside
    for text, vector in zip(texts, batched, strict=True):
        (single,) = await local.embed([text])
        assert cos(single, vector) > 0.9999
    assert cos(batched[0], batched[5]) < 0.9999  # different texts, different vectors


async def test_concurrent_calls_match_sequential(local: LocalOnnxEmbedder) -> None:
    groups = [[f"group {g} sentence {i} about lunch" for i in range(g + 3)] for g in range(4)]
    sequential = [await local.embed(texts) for texts in groups]
    concurrent = await asyncio.gather(*(local.embed(texts) for texts in groups))
    for seq, conc in zip(sequential, concurrent, strict=True):
        assert np.allclose(np.asarray(seq), np.asarray(conc), atol=1e-6)


async def test_empty_input(local: LocalOnnxEmbedder) -> None:
    assert await local.embed([]) == []


async def test_long_text_is_truncated_at_256_wordpieces(local: LocalOnnxEmbedder) -> None:
    head = "word " * 300
    (a,) = await local.embed([head])
    (b,) = await local.embed([head + "completely different tail about quantum physics " * 50])
    assert cos(a, b) > 0.9999  # the tail lies past the 256th wordpiece


def test_onnx_threads_do_not_busy_wait(local: LocalOnnxEmbedder) -> None:
    # Spinning worker threads cost ~40 % more CPU per text on the shared 2-core machine.
    options = local._ensure_loaded().session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"


def test_vendored_tokenizer_matches_its_pin() -> None:
    assert hashlib.sha256(TOKENIZER_PATH.read_bytes()).hexdigest() == TOKENIZER_SHA256


def test_create_embedder_local() -> None:
    embedder = create_embedder(EmbedderSettings(embedder="local", embedding_batch_size=16))
    assert isinstance(embedder, LocalOnnxEmbedder)
    assert embedder.batch_size == 16 and embedder.dimensions == 384
    with pytest.raises(ValueError, match="384"):
        create_embedder(EmbedderSettings(embedder="local", embedding_dimensions=768))
    with pytest.raises(ValueError, match="unknown embedder"):
        create_embedder(EmbedderSettings(embedder="word2vec"))


# --- OpenAI-compatible endpoint ----------------------------------------------------------------


class FakeEmbeddingsAPI:
    """An /v1/embeddings endpoint: scripted failures first, then deterministic vectors (shuffled
    ``index`` order, not normalised) of ``dimensions`` floats."""

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions
        self.failures: list[int] = []
        self.requests: list[dict[str, Any]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @staticmethod
    def vector_for(text: str, dimensions: int) -> list[float]:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")
        return [3.0 * x for x in np.random.default_rng(seed).uniform(-1, 1, dimensions)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.requests.append(body)
                if api.failures:
                    status = api.failures.pop(0)
                    self._send(status, {"error": {"message": "scripted", "type": "x"}})
                    return
                data = [
                    {
                        "object": "embedding",
                        "index": i,
                        "embedding": api.vector_for(t, api.dimensions),
                    }
                    for i, t in enumerate(body["input"])
                ]
                data.reverse()
                self._send(
                    200,
                    {
                        "object": "list",
                        "data": data,
                        "model": body["model"],
                        "usage": {"prompt_tokens": 1, "total_tokens": 1},
                    },
                )

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(raw)

        return Handler


@pytest.fixture
def fake_api() -> Iterator[FakeEmbeddingsAPI]:
    api = FakeEmbeddingsAPI(dimensions=12)
    api.thread.start()
    yield api
    api.server.shutdown()
    api.server.server_close()


def make_openai(api: FakeEmbeddingsAPI, **kwargs: Any) -> OpenAIEmbedder:
    options: dict[str, Any] = {
        "model": "nomic-embed-text",
        "dimensions": api.dimensions,
        "base_url": api.base_url,
        "batch_size": 2,
        "backoff_base_s": 0.001,
        "timeout_s": 5.0,
    }
    options.update(kwargs)
    return OpenAIEmbedder(**options)


async def test_openai_batches_orders_and_normalises(fake_api: FakeEmbeddingsAPI) -> None:
    embedder = make_openai(fake_api)
    texts = ["one", "two", "three", "four", ""]
    vectors = await embedder.embed(texts)
    await embedder.close()
    assert [len(r["input"]) for r in fake_api.requests] == [2, 2, 1]
    assert fake_api.requests[-1]["input"] == [" "]  # empty strings are rejected by some APIs
    assert all("dimensions" not in r for r in fake_api.requests)
    assert all(r["encoding_format"] == "float" for r in fake_api.requests)
    for text, vector in zip(texts, vectors, strict=True):
        raw = np.asarray(fake_api.vector_for(text or " ", fake_api.dimensions))
        assert np.allclose(vector, raw / np.linalg.norm(raw), atol=1e-6)
        assert math.isclose(float(np.linalg.norm(vector)), 1.0, abs_tol=1e-5)
    assert await embedder.embed([]) == []


async def test_openai_retries_429_and_5xx(fake_api: FakeEmbeddingsAPI) -> None:
    fake_api.failures = [429, 503, 500]
    embedder = make_openai(fake_api, max_retries=3)
    (vector,) = await embedder.embed(["hello"])
    await embedder.close()
    assert len(fake_api.requests) == 4 and len(vector) == fake_api.dimensions


async def test_openai_gives_up_after_max_retries(fake_api: FakeEmbeddingsAPI) -> None:
    from openai import InternalServerError

    fake_api.failures = [500, 500, 500]
    embedder = make_openai(fake_api, max_retries=2)
    with pytest.raises(InternalServerError):
        await embedder.embed(["hello"])
    await embedder.close()
    assert len(fake_api.requests) == 3


async def test_openai_does_not_retry_client_errors(fake_api: FakeEmbeddingsAPI) -> None:
    from openai import BadRequestError

    fake_api.failures = [400]
    embedder = make_openai(fake_api, max_retries=3)
    with pytest.raises(BadRequestError):
        await embedder.embed(["hello"])
    await embedder.close()
    assert len(fake_api.requests) == 1


async def test_openai_checks_dimensions(fake_api: FakeEmbeddingsAPI) -> None:
    embedder = make_openai(fake_api, dimensions=16)
    with pytest.raises(ValueError, match="12-d"):
        await embedder.embed(["hello"])
    await embedder.close()


async def test_openai_sends_dimensions_to_text_embedding_3(fake_api: FakeEmbeddingsAPI) -> None:
    embedder = make_openai(fake_api, model="text-embedding-3-small")
    await embedder.embed(["hello"])
    await embedder.close()
    assert fake_api.requests[0]["dimensions"] == fake_api.dimensions


def test_create_embedder_openai() -> None:
    embedder = create_embedder(
        EmbedderSettings(
            embedder="openai",
            embedding_base_url="http://127.0.0.1:9/v1",
            embedding_model="text-embedding-3-small",
            embedding_dimensions=256,
            embedding_batch_size=100,
        )
    )
    assert isinstance(embedder, OpenAIEmbedder)
    assert embedder.name == "text-embedding-3-small" and embedder.dimensions == 256
