"""Search over indexed emails, similar emails, and the near-duplicate guard.

A text query is answered in one of three modes: ``dense`` (the nearest vectors: meaning),
``sparse`` (BM25 over the emails' words, see :mod:`~email_sender.vectors.sparse`) or ``hybrid``,
the default: both, fused by :func:`~email_sender.vectors.fusion.fuse` so that a rare word that
matches wins and meaning decides when none does. A vector query is dense. On a collection made
before the sparse vector existed, hybrid answers densely and sparse is refused (409) until
``vectors upgrade`` adds the sparse vector.

Query texts are embedded once per ``vector_cache.ttl``: a TTL cache keyed by model and text
(``vector_cache.max_size`` entries, 0 turns it off) saves the embedder for repeated queries.
Hits are joined with SQL for the subject and a snippet of the body, SQL being the source of truth.

A point's ``status`` is the status the email had when it was indexed, and delivery changes it
afterwards. A ``status`` filter is therefore answered by SQL, not by the payload: the store is
asked for the nearest points under the other conditions, a growing page at a time, and SQL keeps
those whose status is wanted now.

The near-duplicate guard (``PreparedEmail.dedupe``, or config ``dedupe.enabled``) holds an email
whose vector is within ``dedupe.threshold`` (cosine) of an email already *sent* to one of the same
recipients in the last ``dedupe.window_days`` days. Payloads carry the status at index time, so
the store proposes candidates by recipient and date, and SQL says which of them were sent. When
the store or the embedder is down the guard lets the email through: it must never block mail.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from cachetools import TTLCache
from sqlalchemy import select

from email_sender import metrics
from email_sender.db.engine import Database
from email_sender.db.schema import emails, inbound_messages
from email_sender.errors import NotFound, ValidationError, VectorError
from email_sender.mail.message import PreparedEmail
from email_sender.settings import Settings
from email_sender.vectors.fusion import fuse
from email_sender.vectors.managers import EmbedderManager, QdrantManager
from email_sender.vectors.payloads import (
    bare_addresses,
    document_text,
    email_document,
    snippet,
)
from email_sender.vectors.sparse import union_of_terms
from email_sender.vectors.store import (
    MatchAny,
    MatchValue,
    ScoredPoint,
    VectorStore,
    check_limit,
    parse_filter,
    point_id,
)
from email_sender.vectors.tasks import TaskService

logger = logging.getLogger(__name__)

MODES = ("hybrid", "dense", "sparse")
DEDUPE_CANDIDATES = 10
# Candidates each ranking brings to the fusion.
FUSION_CANDIDATES = 50
# A status filter reads candidates in pages of limit x this, growing by the same factor, up to
# STATUS_CANDIDATES_MAX points: past that, a status that rare is better asked of SQL directly.
STATUS_OVERSAMPLE = 4
STATUS_CANDIDATES_MAX = 10_000
_QDRANT_FILTER_KEYS = frozenset({"must", "should", "must_not", "min_should"})
_RANGE_KEYS = frozenset({"gt", "gte", "lt", "lte"})


class SearchService:
    def __init__(
        self,
        db: Database,
        qdrant: QdrantManager,
        embedder: EmbedderManager,
        settings: Settings,
    ) -> None:
        self.db = db
        self.qdrant = qdrant
        self.embedder = embedder
        self.collection = settings.collections.emails
        self.dedupe = settings.dedupe
        cache = settings.vector_cache
        self._cache: TTLCache[tuple[str, str], np.ndarray] | None = (
            TTLCache(maxsize=cache.max_size, ttl=cache.ttl) if cache.max_size > 0 else None
        )
        self.tasks = TaskService(
            db,
            qdrant,
            embedder,
            collection=settings.collections.tasks,
            options=settings.vector_processor.model_copy(),
        )

    async def embed_query(self, text: str) -> np.ndarray:
        """The query's vector, from the cache when it was asked recently."""
        key = (self.embedder.model, text)
        if self._cache is not None:
            cached = self._cache.get(key)
            if cached is not None:
                metrics.vector_cache.labels("hit").inc()
                return cached
            metrics.vector_cache.labels("miss").inc()
        vector = await self.embedder.embed_one(text)
        if self._cache is not None:
            self._cache[key] = vector
        return vector

    async def query_vector(
        self, query: str | None, vector: Sequence[float] | None
    ) -> np.ndarray | Sequence[float]:
        if (query is None) == (vector is None):
            raise ValidationError("query", "give exactly one of query or vector")
        if query is not None:
            return await self.embed_query(query)
        assert vector is not None
        return vector

    async def search(
        self,
        *,
        query: str | None = None,
        vector: Sequence[float] | None = None,
        limit: int = 10,
        filter: Mapping[str, Any] | None = None,
        mode: str = "hybrid",
    ) -> list[dict[str, Any]]:
        """Emails matching a text or nearest to a vector, each with score, subject, snippet,
        payload."""
        started = time.perf_counter()
        if mode not in MODES:
            raise ValidationError("mode", f"{mode!r} is not one of {', '.join(MODES)}")
        if mode == "sparse" and query is None:
            raise ValidationError("mode", "sparse search matches words: give a query text")
        store = await self.qdrant.ready_store()
        others, statuses = _split_status(filter)
        if query is not None and mode != "dense" and (
            mode == "sparse" or await store.has_sparse(self.collection)
        ):
            hits = await self._search_words(store, query, mode, limit, others, statuses)
        elif statuses is None:
            query_vector = await self.query_vector(query, vector)
            hits = await store.search(self.collection, query_vector, limit=limit, filter=filter)
        else:
            query_vector = await self.query_vector(query, vector)
            hits = await self._search_current_status(store, query_vector, limit, others, statuses)
        results = await self._with_sql(hits)
        metrics.vector_search_duration.observe(time.perf_counter() - started)
        return results

    async def similar(self, email_id: str, limit: int = 10) -> list[dict[str, Any]]:
        """Emails nearest to this one, itself left out; works before it is indexed too."""
        wanted = point_id(email_id)
        store = await self.qdrant.ready_store()
        stored = await store.retrieve(self.collection, [wanted], with_vectors=True)
        if stored and stored[0].vector is not None:
            vector: np.ndarray | Sequence[float] = stored[0].vector
        else:
            row = await self._email_row(wanted)
            vector = await self.embedder.embed_one(email_document(row))
        hits = await store.search(self.collection, vector, limit=limit + 1)
        return await self._with_sql([hit for hit in hits if hit.id != wanted][:limit])

    async def check(self, email: PreparedEmail) -> dict[str, Any] | None:
        """The guard: a held reason when this email nearly repeats one already sent, else None."""
        enabled = self.dedupe.enabled if email.dedupe is None else email.dedupe
        recipients = bare_addresses(email.to)
        if not enabled or not recipients:
            return None
        since = time.time() - self.dedupe.window_days * 86400.0
        try:
            vector = await self.embedder.embed_one(
                document_text(email.subject, email.text, email.html)
            )
            store = await self.qdrant.ready_store()
            hits = await store.search(
                self.collection,
                vector,
                limit=DEDUPE_CANDIDATES,
                filter={"to": recipients, "created_at": {"gte": since}},
            )
        except (VectorError, NotFound) as exc:
            logger.warning("dedupe_check_skipped", extra={"error": str(exc)})
            return None
        close = [hit for hit in hits if hit.score >= self.dedupe.threshold]
        if not close:
            return None
        sent = await self._sent_among([hit.id for hit in close])
        for hit in close:
            if hit.id in sent:
                logger.info(
                    "near_duplicate_held",
                    extra={"duplicate_of": hit.id, "score": round(hit.score, 4)},
                )
                return {
                    "reason": "near_duplicate",
                    "duplicate_of": hit.id,
                    "score": round(hit.score, 4),
                }
        return None

    async def _search_words(
        self,
        store: VectorStore,
        query: str,
        mode: str,
        limit: int,
        others: Mapping[str, Any],
        statuses: tuple[str, ...] | None,
    ) -> list[ScoredPoint]:
        """Sparse or hybrid: the candidates of each ranking, fused, then kept by status."""
        fetch = max(check_limit(limit) * (STATUS_OVERSAMPLE if statuses else 1), FUSION_CANDIDATES)
        terms = self.qdrant.analyser.query_terms(query)
        hits = await store.search_sparse(
            self.collection,
            union_of_terms(terms),
            limit=fetch,
            filter=others or None,
            with_terms=mode == "hybrid",
        )
        if mode == "hybrid":
            vector = await self.embed_query(query)
            dense = await store.search(self.collection, vector, limit=fetch, filter=others or None)
            hits = fuse(dense, hits, terms, fetch)
        if statuses is not None:
            wanted = await self._with_status([hit.id for hit in hits], statuses)
            hits = [hit for hit in hits if hit.id in wanted]
        return hits[:limit]

    async def _search_current_status(
        self,
        store: VectorStore,
        vector: np.ndarray | Sequence[float],
        limit: int,
        others: Mapping[str, Any],
        statuses: tuple[str, ...],
    ) -> list[ScoredPoint]:
        """The ``limit`` nearest points under ``others`` whose email has one of ``statuses``
        in SQL now."""
        fetch = check_limit(limit) * STATUS_OVERSAMPLE
        while True:
            fetch = min(fetch, STATUS_CANDIDATES_MAX)
            hits = await store.search(self.collection, vector, limit=fetch, filter=others or None)
            wanted = await self._with_status([hit.id for hit in hits], statuses)
            kept = [hit for hit in hits if hit.id in wanted]
            if len(kept) >= limit or len(hits) < fetch or fetch >= STATUS_CANDIDATES_MAX:
                return kept[:limit]
            fetch *= STATUS_OVERSAMPLE

    async def _with_status(self, ids: list[str], statuses: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        async with self.db.connect() as connection:
            rows = await connection.execute(
                select(emails.c.id).where(emails.c.id.in_(ids), emails.c.status.in_(statuses))
            )
            return {row.id for row in rows}

    async def _sent_among(self, ids: list[str]) -> set[str]:
        return await self._with_status(ids, ["sent"])

    async def _email_row(self, email_id: str) -> Any:
        async with self.db.connect() as connection:
            row = (
                await connection.execute(
                    select(emails.c.subject, emails.c.text_body, emails.c.html_body).where(
                        emails.c.id == email_id
                    )
                )
            ).first()
        if row is None:
            raise NotFound(f"no email with id {email_id}", id=email_id)
        return row

    async def _with_sql(self, hits: list[ScoredPoint]) -> list[dict[str, Any]]:
        """Each hit with its subject and snippet from SQL: an email, or a received message."""
        if not hits:
            return []
        ids = [hit.id for hit in hits]
        async with self.db.connect() as connection:
            rows = await connection.execute(
                select(emails.c.id, emails.c.subject, emails.c.text_body, emails.c.html_body).where(
                    emails.c.id.in_(ids)
                )
            )
            texts = {row.id: (row.subject, snippet(row.text_body, row.html_body)) for row in rows}
            received = await connection.execute(
                select(
                    inbound_messages.c.id, inbound_messages.c.subject, inbound_messages.c.own_words
                ).where(inbound_messages.c.id.in_([i for i in ids if i not in texts]))
            )
            texts.update(
                (row.id, (row.subject, snippet(row.own_words, None))) for row in received
            )
        results = []
        for hit in hits:
            subject, text = texts.get(hit.id, (hit.payload.get("subject", ""), ""))
            results.append(
                {
                    "id": hit.id,
                    "score": hit.score,
                    "subject": subject,
                    "snippet": text,
                    "payload": hit.payload,
                }
            )
        return results


def _split_status(
    spec: Mapping[str, Any] | None,
) -> tuple[dict[str, Any], tuple[str, ...] | None]:
    """The filter without ``status``, and the statuses it asked for (None: no status filter)."""
    conditions = {condition.key: condition for condition in parse_filter(spec)}
    wanted = conditions.get("status")
    if wanted is None:
        return dict(spec or {}), None
    if isinstance(wanted, MatchValue) and isinstance(wanted.value, str):
        statuses: tuple[str, ...] = (wanted.value,)
    elif isinstance(wanted, MatchAny) and all(isinstance(v, str) for v in wanted.values):
        statuses = tuple(str(v) for v in wanted.values)
    else:
        raise ValidationError("filter.status", "must be a status or a list of statuses")
    return {key: value for key, value in (spec or {}).items() if key != "status"}, statuses


def translate_qdrant_filter(spec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Qdrant's filter JSON, or the flat format, as the flat format of ``vectors.store``.

    Understood: ``{"must": [{"key", "match": {"value"}}, {"key", "match": {"any"}},
    {"key", "range": {gt, gte, lt, lte}}]}``. Anything else (``should``, ``must_not``, nested
    filters, other conditions, two match conditions on one key) is refused naming its place.
    """
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise ValidationError("filter", "must be an object")
    if not _QDRANT_FILTER_KEYS & set(spec):
        return dict(spec)
    for key in spec:
        if key != "must":
            raise ValidationError(
                f"filter.{key}", "not supported; use must with match value, match any or range"
            )
    must = spec["must"]
    if isinstance(must, Mapping):
        must = [must]
    if not isinstance(must, list):
        raise ValidationError("filter.must", "must be a list of conditions")
    flat: dict[str, Any] = {}
    for index, condition in enumerate(must):
        _add_condition(flat, condition, f"filter.must[{index}]")
    return flat


def _add_condition(flat: dict[str, Any], condition: Any, where: str) -> None:
    if not isinstance(condition, Mapping) or not isinstance(condition.get("key"), str):
        raise ValidationError(where, "must be an object with a key and a match or range")
    key = condition["key"]
    unknown = set(condition) - {"key", "match", "range"}
    if unknown or ("match" in condition) == ("range" in condition):
        raise ValidationError(where, "give a key with exactly one of match or range")
    if "range" in condition:
        bounds = condition["range"]
        if not isinstance(bounds, Mapping) or set(bounds) - _RANGE_KEYS:
            raise ValidationError(f"{where}.range", "takes gt, gte, lt and/or lte")
        given = {name: value for name, value in bounds.items() if value is not None}
        previous = flat.get(key)
        if previous is not None and not isinstance(previous, Mapping):
            raise ValidationError(where, f"a range and a match on {key!r} cannot be combined")
        merged = {**(previous or {})}
        for name, value in given.items():
            if name in merged:
                raise ValidationError(f"{where}.range.{name}", f"{key!r} already has {name}")
            merged[name] = value
        flat[key] = merged
        return
    match = condition["match"]
    if key in flat:
        raise ValidationError(where, f"a second condition on {key!r} is not supported")
    if isinstance(match, Mapping) and set(match) == {"value"}:
        flat[key] = match["value"]
    elif isinstance(match, Mapping) and set(match) == {"any"}:
        flat[key] = match["any"]
    else:
        raise ValidationError(f"{where}.match", 'supported: {"value": v} or {"any": [..]}')
