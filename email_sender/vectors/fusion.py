"""Fusing a dense ranking (meaning) and a sparse one (BM25 words) into one.

:func:`fuse` is what hybrid search does; :func:`rrf`, :func:`normalised_sum` and
:func:`ungated` are the alternatives ``benchmarks/relevance.py`` measures it against
(docs/performance.md has the figures that led to the choice).

:func:`fuse`, "the words decide when an email holds most of them": each candidate scores its
cosine plus ``WORDS_WEIGHT x gate x bm25 / best bm25``, where ``gate`` grows from 0 to 1 as the
share of the query's terms the email holds (its *coverage*, counted in the email's own language)
goes from one half to two thirds. An email holding the town, the venue and the invoice number
the query names comes first, however its meaning ranks; a word or two that a paraphrase happens
to share with unrelated emails ("concert", "date") covers too little of the query to move them,
and meaning decides. A candidate the dense ranking did not bring gets the lowest cosine it
brought.

The gate is what the measurements asked for: without it (:func:`ungated`), BM25's order wins on
paraphrases too and loses the answers meaning had found; with it, hybrid matched the better of
dense and sparse on every kind of query, over a broad range of weights and bounds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from email_sender.vectors.store import ScoredPoint

RRF_K = 60
WORDS_WEIGHT = 1.0
# Coverage below which the words add nothing, and from which they add their full weight.
GATE_FROM = 1 / 2
GATE_FULL = 2 / 3

QueryTerms = Mapping[str, frozenset[int]]


def fuse(
    dense: Sequence[ScoredPoint],
    sparse: Sequence[ScoredPoint],
    terms: QueryTerms,
    limit: int,
) -> list[ScoredPoint]:
    """Cosine plus the BM25 score relative to the best, gated by the query terms covered.

    ``sparse`` hits must carry their sparse vectors (``search_sparse(..., with_terms=True)``);
    ``terms`` are the query's terms per language (``TextAnalyser.query_terms``)."""
    best = sparse[0].score if sparse else 0.0
    words = {
        hit.id: WORDS_WEIGHT * _gate(coverage(hit, terms)) * hit.score / best
        for hit in sparse
        if best > 0
    }
    return _combine(dense, sparse, words, limit)


def coverage(hit: ScoredPoint, terms: QueryTerms) -> float:
    """The share of the query's terms the hit holds, in the hit's language (``lang`` in its
    payload); the best share over the languages when it has none."""
    held = frozenset(hit.sparse.indices) if hit.sparse is not None else frozenset()
    language = str(hit.payload.get("lang"))
    asked = [terms[language]] if language in terms else list(terms.values())
    return max((len(query & held) / len(query) for query in asked if query), default=0.0)


def _gate(share: float) -> float:
    return min(1.0, max(0.0, (share - GATE_FROM) / (GATE_FULL - GATE_FROM)))


def ungated(
    dense: Sequence[ScoredPoint], sparse: Sequence[ScoredPoint], limit: int
) -> list[ScoredPoint]:
    """:func:`fuse` without its gate: cosine plus the BM25 score relative to the best."""
    best = sparse[0].score if sparse else 0.0
    words = {hit.id: WORDS_WEIGHT * hit.score / best for hit in sparse if best > 0}
    return _combine(dense, sparse, words, limit)


def rrf(
    dense: Sequence[ScoredPoint], sparse: Sequence[ScoredPoint], limit: int, k: int = RRF_K
) -> list[ScoredPoint]:
    """Reciprocal rank fusion: each ranking adds 1 / (k + rank)."""
    scores: dict[str, float] = {}
    hits: dict[str, ScoredPoint] = {}
    for ranking in (dense, sparse):
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + 1.0 / (k + rank)
            hits.setdefault(hit.id, hit)
    return _ranked(scores, hits, limit)


def normalised_sum(
    dense: Sequence[ScoredPoint], sparse: Sequence[ScoredPoint], limit: int
) -> list[ScoredPoint]:
    """Each ranking's scores scaled to [0, 1] by its min and max, then added."""
    scores: dict[str, float] = {}
    hits: dict[str, ScoredPoint] = {}
    for ranking in (dense, sparse):
        if not ranking:
            continue
        high, low = ranking[0].score, ranking[-1].score
        span = high - low or 1.0
        for hit in ranking:
            scores[hit.id] = scores.get(hit.id, 0.0) + (hit.score - low) / span
            hits.setdefault(hit.id, hit)
    return _ranked(scores, hits, limit)


def _combine(
    dense: Sequence[ScoredPoint],
    sparse: Sequence[ScoredPoint],
    words: dict[str, float],
    limit: int,
) -> list[ScoredPoint]:
    """Cosine (the lowest one brought, for a hit of the words alone) plus the words' score."""
    floor = dense[-1].score if dense else 0.0
    scores: dict[str, float] = {}
    hits: dict[str, ScoredPoint] = {}
    for hit in dense:
        scores[hit.id] = hit.score + words.get(hit.id, 0.0)
        hits[hit.id] = hit
    for hit in sparse:
        if hit.id not in scores:
            scores[hit.id] = floor + words.get(hit.id, 0.0)
            hits[hit.id] = hit
    return _ranked(scores, hits, limit)


def _ranked(
    scores: dict[str, float], hits: dict[str, ScoredPoint], limit: int
) -> list[ScoredPoint]:
    order = sorted(scores, key=lambda pid: (-scores[pid], pid))[:limit]
    return [ScoredPoint(pid, scores[pid], hits[pid].payload) for pid in order]
