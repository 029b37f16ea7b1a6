"""Embed the same stored texts with two embedder configs and say how far they agree.

The seeds' "compare vectorization outputs" check: after moving to another embedder (another
model, another server, a new version of the same model), are the vectors the same, and do the
same emails stay each other's neighbours?

- **cosine agreement** (same dimension only): the cosine between the two vectors of each text;
  min, mean and 5th percentile. 1.0 everywhere means the same vectors.
- **top-k overlap** (any dimensions): for each text, the share of its k nearest neighbours in
  the sample under A that are also among its k nearest under B; min and mean. It compares what
  search answers, so it also means something between two different models.

Embedder specs (``--a`` / ``--b``)::

    hashing            the hashing embedder at 384 dimensions
    hashing:256        ... at 256 dimensions
    local              the bundled all-MiniLM-L6-v2 (offline)
    local:/models/dir  a sentence-transformers model directory
    openai:URL:MODEL[:DIM]   an OpenAI-compatible endpoint, e.g.
                       openai:http://127.0.0.1:11434/v1:nomic-embed-text:768
                       (API key from embedder.api_key in the config, if any)
    config             the embedder the config file / environment selects
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from email_sender.db.engine import Database
from email_sender.db.schema import emails
from email_sender.errors import NotFound, ValidationError
from email_sender.settings import Settings
from email_sender.vectors.embedders import (
    OPENAI_URL,
    Embedder,
    HashingEmbedder,
    LocalEmbedder,
    OpenAIEmbedder,
    build_embedder,
)
from email_sender.vectors.payloads import document_text

DEFAULT_TOP_K = 10
MAX_SAMPLE = 20_000
# Rows of the similarity matrix computed at once: bounds memory at CHUNK x sample floats.
CHUNK = 512
EMBED_BATCH = 256

Progress = Callable[[int], None]


def parse_embedder_spec(spec: str, settings: Settings) -> Embedder:
    """Build the embedder a spec names (see the module docstring), or ValidationError."""
    kind, _, rest = spec.strip().partition(":")
    kind = kind.lower()
    if kind == "hashing":
        return HashingEmbedder(_dimension(spec, rest) if rest else 384)
    if kind == "local":
        return LocalEmbedder(rest) if rest else LocalEmbedder()
    if kind == "config" and not rest:
        return build_embedder(settings.embedder, settings.connection_pool)
    if kind == "openai" and rest:
        return _openai(spec, rest, settings)
    raise ValidationError(
        "embedder",
        f"{spec!r} is not an embedder spec: use hashing[:DIM], local[:MODEL_DIR], "
        "openai:URL:MODEL[:DIM] or config",
    )


def _openai(spec: str, rest: str, settings: Settings) -> OpenAIEmbedder:
    head, _, last = rest.rpartition(":")
    dimension: int | None = None
    if last.isdigit():
        dimension = int(last)
        rest = head
    url, _, model = rest.rpartition(":")
    if not url or not model or "://" not in url:
        raise ValidationError("embedder", f"{spec!r}: write openai:URL:MODEL[:DIM]")
    api_key = settings.embedder.api_key.get_secret_value() if settings.embedder.api_key else None
    return OpenAIEmbedder(
        model, url=url or OPENAI_URL, api_key=api_key, dimension=dimension,
        batch_size=settings.embedder.batch_size, timeout=settings.embedder.timeout,
    )


def _dimension(spec: str, text: str) -> int:
    if not text.isdigit() or int(text) < 2:
        raise ValidationError("embedder", f"{spec!r}: the dimension must be an integer >= 2")
    return int(text)


async def load_texts(settings: Settings, sample: int) -> list[str]:
    """Subject and body of the ``sample`` most recent stored emails, as they are embedded."""
    check_sample(sample)
    url = settings.database_url
    if url.startswith("sqlite") and ":///" in url:
        path = Path(url.split(":///", 1)[1])
        if not path.is_file():  # opening it would create an empty database
            raise NotFound(f"no database at {path}: check --data-dir or database.url")
    database = Database(url, pool_size=1, migrate=False)
    await database.start()
    try:
        query = (
            select(emails.c.subject, emails.c.text_body, emails.c.html_body)
            .order_by(emails.c.created_at.desc(), emails.c.id)
            .limit(sample)
        )
        async with database.connect() as connection:
            rows = list(await connection.execute(query))
    finally:
        await database.stop()
    if not rows:
        raise NotFound(f"no stored emails to compare in {settings.database_url}")
    return [document_text(row.subject, row.text_body, row.html_body) for row in rows]


def check_sample(sample: int) -> int:
    if isinstance(sample, bool) or not isinstance(sample, int) or not 1 <= sample <= MAX_SAMPLE:
        raise ValidationError("sample", f"must be between 1 and {MAX_SAMPLE}")
    return sample


@dataclass
class CompareReport:
    texts: int
    embedder_a: dict[str, Any]
    embedder_b: dict[str, Any]
    top_k: int
    cosine_min: float | None
    cosine_mean: float | None
    cosine_p5: float | None
    overlap_min: float | None
    overlap_mean: float | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "texts": self.texts,
            "a": self.embedder_a,
            "b": self.embedder_b,
            "cosine": None if self.cosine_mean is None else {
                "min": self.cosine_min, "mean": self.cosine_mean, "p5": self.cosine_p5,
            },
            "top_k": self.top_k,
            "overlap": None if self.overlap_mean is None else {
                "min": self.overlap_min, "mean": self.overlap_mean,
            },
            "seconds": round(self.seconds, 3),
        }


async def compare(
    texts: Sequence[str],
    embedder_a: Embedder,
    embedder_b: Embedder,
    *,
    top_k: int = DEFAULT_TOP_K,
    progress: Progress | None = None,
) -> CompareReport:
    """Embed ``texts`` with both embedders and measure their agreement."""
    if not texts:
        raise ValidationError("texts", "nothing to compare")
    started = time.perf_counter()
    vectors_a = await _embed_all(embedder_a, texts, progress)
    vectors_b = await _embed_all(embedder_b, texts, progress)
    cosine: tuple[float, float, float] | None = None
    if vectors_a.shape[1] == vectors_b.shape[1]:
        agreement = np.sum(_unit(vectors_a) * _unit(vectors_b), axis=1)
        cosine = (
            round(float(agreement.min()), 6),
            round(float(agreement.mean()), 6),
            round(float(np.percentile(agreement, 5)), 6),
        )
    k = min(top_k, len(texts) - 1)
    overlap: tuple[float, float] | None = None
    if k >= 1:
        shares = _neighbour_overlap(vectors_a, vectors_b, k)
        overlap = (round(float(shares.min()), 6), round(float(shares.mean()), 6))
    return CompareReport(
        texts=len(texts),
        embedder_a=_describe(embedder_a),
        embedder_b=_describe(embedder_b),
        top_k=k,
        cosine_min=cosine[0] if cosine else None,
        cosine_mean=cosine[1] if cosine else None,
        cosine_p5=cosine[2] if cosine else None,
        overlap_min=overlap[0] if overlap else None,
        overlap_mean=overlap[1] if overlap else None,
        seconds=time.perf_counter() - started,
    )


async def _embed_all(embedder: Embedder, texts: Sequence[str], progress: Progress | None
                     ) -> np.ndarray:
    rows = []
    for start in range(0, len(texts), EMBED_BATCH):
        batch = list(texts[start : start + EMBED_BATCH])
        rows.append(np.asarray(await embedder.embed(batch), dtype=np.float32))
        if progress is not None:
            progress(len(batch))
    return np.vstack(rows)


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0.0, 1.0, norms)


def _neighbours(vectors: np.ndarray, k: int) -> np.ndarray:
    """Row i: the indices of the k nearest other rows of ``vectors`` by cosine."""
    unit = _unit(vectors)
    found = np.empty((len(unit), k), dtype=np.int64)
    for start in range(0, len(unit), CHUNK):
        scores = unit[start : start + CHUNK] @ unit.T
        rows = np.arange(scores.shape[0])
        scores[rows, rows + start] = -np.inf  # a text is not its own neighbour
        found[start : start + CHUNK] = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return found


def _neighbour_overlap(vectors_a: np.ndarray, vectors_b: np.ndarray, k: int) -> np.ndarray:
    nearest_a, nearest_b = _neighbours(vectors_a, k), _neighbours(vectors_b, k)
    return np.array(
        [len(set(row_a) & set(row_b)) / k for row_a, row_b in zip(nearest_a, nearest_b,
                                                                   strict=True)]
    )


def _describe(embedder: Embedder) -> dict[str, Any]:
    return {"provider": embedder.name, "model": embedder.model, "dimension": embedder.dimension}
