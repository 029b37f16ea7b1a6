"""Fusing a dense ranking (meaning) and a sparse one (BM25 words) into one.

Each function takes the two candidate lists, best first, and returns the fused list, best first,
with the fused score. :func:`fuse` is the one search uses; the others are the alternatives
``benchmarks/relevance.py`` measures it against (docs/performance.md has the figures).

:func:`fuse`, "words decide when a rare one matches": a BM25 score with IDF weights is the sum of
the rare-ness of the query's terms an email holds. The sparse scores are divided by the best
one, so the email holding most of the query's rare words scores 1, and weighed by how clearly
that email stands out from the next one (``1 - second / best``): a term that only one email
holds (a town, an invoice number, a name) gives a weight near 1 and puts it first, while words
that many emails share (``concert``, ``date``) give a weight near 0 and leave the order to
meaning. The dense cosine is always added, so an email no word matched can still come first.
"""

from __future__ import annotations

from collections.abc import Sequence

from email_sender.vectors.store import ScoredPoint

RRF_K = 60
# How much a clear, sole match of the words weighs against the cosine (which spans ~0.2 to 0.8
# between unrelated and related emails with all-MiniLM-L6-v2).
WORDS_WEIGHT = 1.0


def fuse(
    dense: Sequence[ScoredPoint], sparse: Sequence[ScoredPoint], limit: int
) -> list[ScoredPoint]:
    """Cosine plus the sparse score relative to the best, weighed by the best's lead."""
    if not sparse:
        return list(dense[:limit])
    best = sparse[0].score
    second = sparse[1].score if len(sparse) > 1 else 0.0
    lead = 1.0 - second / best if best > 0 else 0.0
    words = {hit.id: WORDS_WEIGHT * lead * hit.score / best for hit in sparse} if best > 0 else {}
    return _combine(dense, sparse, words, limit, floor=_dense_floor(dense))


def rrf(
    dense: Sequence[ScoredPoint], sparse: Sequence[ScoredPoint], limit: int, k: int = RRF_K
) -> list[ScoredPoint]:
    """Reciprocal rank fusion: each list adds 1 / (k + rank)."""
    scores: dict[str, float] = {}
    payloads: dict[str, ScoredPoint] = {}
    for ranking in (dense, sparse):
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + 1.0 / (k + rank)
            payloads.setdefault(hit.id, hit)
    return _ranked(scores, payloads, limit)


def normalised_sum(
    dense: Sequence[ScoredPoint], sparse: Sequence[ScoredPoint], limit: int
) -> list[ScoredPoint]:
    """Each list's scores scaled to [0, 1] by min and max, then added (no lead weighting)."""
    scores: dict[str, float] = {}
    payloads: dict[str, ScoredPoint] = {}
    for ranking in (dense, sparse):
        if not ranking:
            continue
        high, low = ranking[0].score, ranking[-1].score
        span = high - low or 1.0
        for hit in ranking:
            scores[hit.id] = scores.get(hit.id, 0.0) + (hit.score - low) / span
            payloads.setdefault(hit.id, hit)
    return _ranked(scores, payloads, limit)


def _combine(
    dense: Sequence[ScoredPoint],
    sparse: Sequence[ScoredPoint],
    words: dict[str, float],
    limit: int,
    floor: float,
) -> list[ScoredPoint]:
    """Cosine (``floor`` for an email the dense list did not bring) plus the words' score."""
    scores: dict[str, float] = {}
    payloads: dict[str, ScoredPoint] = {}
    for hit in dense:
        scores[hit.id] = hit.score + words.get(hit.id, 0.0)
        payloads[hit.id] = hit
    for hit in sparse:
        if hit.id not in scores:
            scores[hit.id] = floor + words.get(hit.id, 0.0)
            payloads[hit.id] = hit
    return _ranked(scores, payloads, limit)


def _dense_floor(dense: Sequence[ScoredPoint]) -> float:
    """The cosine given to an email beyond the dense candidates: no more than the last one."""
    return dense[-1].score if dense else 0.0


def _ranked(
    scores: dict[str, float], payloads: dict[str, ScoredPoint], limit: int
) -> list[ScoredPoint]:
    order = sorted(scores, key=lambda pid: (-scores[pid], pid))[:limit]
    return [ScoredPoint(pid, scores[pid], payloads[pid].payload) for pid in order]
