"""Semantic search benchmark: API search latency, raw Edge against a FAISS HNSW peer at equal
recall, and indexing throughput against the embedder's own batch throughput, all in one run.

    .venv/bin/python benchmarks/search.py            # 100,000 emails
    .venv/bin/python benchmarks/search.py --n 20000  # a smaller run
    .venv/bin/python benchmarks/search.py --quick    # 5,000 emails, 100 queries

What runs is the real service: SQLite outbox, the bundled all-MiniLM-L6-v2 model, Qdrant Edge,
the vector processor, and the HTTP API served by uvicorn on loopback. Queries are sent one at a
time by an httpx client in a thread of the same process (so client and server share the CPU, as
they do on a 2-core box). Steps:

1. Write N synthetic booking emails (French and English) to SQL.
2. The embedder alone: embed a sample of those texts in batches (its own batch throughput).
3. Start a ``vectors`` node and time the processor draining the backlog of N (indexing
   throughput), then the optimisation it schedules after the bulk load (Edge's HNSW graph).
   The embedder alone is measured again after the drain; the ratio uses the mean of both.
   Every email must be indexed and stored, none failed: otherwise the run fails.
4. Start an ``api`` node and measure, with distinct query texts (cache misses) and limit 10:
   API text search (hybrid, the default mode) against the same done in-process (embed the
   query, the dense and the sparse Edge queries, the fusion: the peer for the "API overhead
   < 2x" target); the dense and sparse modes against their in-process peers; API vector search,
   the embedder on one query, and a raw Edge vector query.
5. The approximate-nearest-neighbour peer: FAISS ``IndexHNSWFlat`` (inner product on the same
   normalised vectors, read back from the collection; Qdrant's default graph, m 16 and
   ef_construct 100), queried one query at a time on one thread for a range of efSearch. The
   exact top 10 of every query comes from numpy brute force on the same vectors; recall@10 is
   reported for Edge and for each efSearch, and Edge's p95 is compared with FAISS's at the
   smallest efSearch whose recall is not below Edge's.

Results go to ``benchmarks/results/search.json`` (``_common.write_result``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from _common import row, write_result

from email_sender.db.engine import Database
from email_sender.mail.message import EmailIn, prepare_email
from email_sender.mail.outbox import Outbox
from email_sender.service import Service, build_service
from email_sender.settings import MailSettings, Settings, load_settings
from email_sender.vectors.embedders import LocalEmbedder
from email_sender.vectors.fusion import fuse
from email_sender.vectors.payloads import document_text
from email_sender.vectors.search import FUSION_CANDIDATES
from email_sender.vectors.sparse import union_of_terms
from email_sender.vectors.store import VectorStore

VENUES = [
    "Le Trianon",
    "La Cigale",
    "The Roundhouse",
    "Le Bikini",
    "Paradiso",
    "The Leadmill",
    "La Laiterie",
    "Le Rocher de Palmer",
    "The Fleece",
    "Le Petit Bain",
    "Whelan's",
]
MONTHS_EN = ["January", "March", "April", "May", "June", "September", "October", "November"]
MONTHS_FR = ["janvier", "mars", "avril", "mai", "juin", "septembre", "octobre", "novembre"]
TEMPLATES_EN = [
    (
        "Availability at {venue} in {month}",
        "Hello, {venue} is free on the {day} and {day2} of {month}. Tell us which date suits the "
        "tour; another promoter holds an option.",
    ),
    (
        "Fee offer for {venue}",
        "We can offer a guaranteed fee of {amount} euros plus a share of the door, hotel and "
        "catering for {people} people included, for the {day} of {month}.",
    ),
    (
        "Re: booking request for {month}",
        "Thank you for the proposal, but our {month} programme at {venue} is complete and we "
        "cannot book the band this season.",
    ),
    (
        "Technical rider for {venue}",
        "Attached is the rider: {channels}-channel desk, {people} monitor wedges, drum riser and "
        "the stage plot. Load-in at {venue} is at {hour}pm.",
    ),
    (
        "Invoice for the {day} {month} concert",
        "Please find our invoice of {amount} euros for the concert at {venue}. Payment by bank "
        "transfer within 30 days.",
    ),
    (
        "Show on the {day} of {month} cancelled",
        "Sorry, the singer is ill and the show at {venue} has to be cancelled. Can we find a new "
        "date in {month}?",
    ),
]
TEMPLATES_FR = [
    (
        "Disponibilités {venue} en {month}",
        "Bonjour, la salle {venue} est libre le {day} et le {day2} {month}. Dites-nous quelle date "
        "convient à la tournée.",
    ),
    (
        "Proposition de cachet pour {venue}",
        "Nous proposons un cachet de {amount} euros, repas et hébergement compris pour {people} "
        "personnes, le {day} {month}.",
    ),
    (
        "Re: demande de programmation",
        "Merci, mais notre programmation de {month} à {venue} est complète : nous ne pourrons pas "
        "accueillir le groupe.",
    ),
    (
        "Fiche technique {venue}",
        "Ci-joint la fiche technique : console {channels} voies, {people} retours, plan de scène. "
        "Déchargement à {hour} heures.",
    ),
]
# Qdrant's default HNSW graph, which Edge builds, for the FAISS peer.
HNSW_M = 16
HNSW_EF_CONSTRUCT = 100
EF_SEARCH = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]
SCORE_TOLERANCE = 1e-5
STALL_SECONDS = 300
QUICK = {"n": 5000, "queries": 100, "sample": 1000}

QUERIES = [
    "is {venue} available in {month}",
    "fee offer for a concert in {month}",
    "they refused our booking at {venue}",
    "technical rider with {channels} channels",
    "invoice payment for the {venue} show",
    "concert cancelled because the singer is sick",
    "la salle {venue} est-elle libre en {month}",
    "cachet proposé pour {people} personnes",
    "fiche technique et plan de scène pour {venue}",
    "programmation complète en {month}",
]


def synthetic_email(rng: random.Random, n: int) -> dict[str, Any]:
    french = rng.random() < 0.4
    subject, text = rng.choice(TEMPLATES_FR if french else TEMPLATES_EN)
    values = _values(rng, french)
    return {
        "from": "booking@agency.example",
        "to": [f"venue{n % 500}@venues.example"],
        "subject": subject.format(**values),
        "text": text.format(**values),
        "tags": [rng.choice(["booking", "fees", "tech", "admin"])],
    }


def _values(rng: random.Random, french: bool) -> dict[str, Any]:
    day = rng.randint(1, 27)
    return {
        "venue": rng.choice(VENUES),
        "month": rng.choice(MONTHS_FR if french else MONTHS_EN),
        "day": day,
        "day2": day + 1,
        "amount": rng.randrange(800, 9000, 50),
        "people": rng.randint(2, 12),
        "channels": rng.choice([16, 24, 32, 48]),
        "hour": rng.randint(1, 6),
    }


def distinct_queries(rng: random.Random, count: int) -> list[str]:
    seen: dict[str, None] = {}
    while len(seen) < count:
        template = rng.choice(QUERIES)
        text = template.format(**_values(rng, "{month}" in template and rng.random() < 0.5))
        seen.setdefault(f"{text} #{len(seen)}" if text in seen else text, None)
    return list(seen)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    at = lambda q: ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]  # noqa: E731
    return {
        "p50_ms": at(0.50) * 1000,
        "p95_ms": at(0.95) * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
        "n": len(ordered),
    }


def bench_settings(data_dir: Path) -> Settings:
    settings = load_settings(data_dir=data_dir)
    settings.embedder.provider = "local"
    settings.server.port = 0
    settings.metrics.enabled = False
    settings.smtp.capture_sink.enabled = False
    settings.logging.level = "WARNING"
    return settings


def vector_node(settings: Settings, role: str) -> Service:
    from email_sender.vectors.wiring import add_vectors

    node = build_service(settings, role=role)
    if node.get("qdrant_manager") is None:
        add_vectors(node, with_processor=role in ("all", "vectors"))
    return node


async def fill_sql(settings: Settings, n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    database = Database(settings.database_url)
    await database.start()
    outbox = Outbox(database, idempotency_retention=3600)
    limits = MailSettings()
    texts: list[str] = []
    try:
        for start in range(0, n, 1000):
            batch = []
            for i in range(start, min(n, start + 1000)):
                email = prepare_email(EmailIn.model_validate(synthetic_email(rng, i)), limits)
                batch.append(email)
                texts.append(document_text(email.subject, email.text, email.html))
            await outbox.accept_many(batch)
    finally:
        await database.stop()
    return texts


async def embedder_batch_throughput(texts: list[str], batch: int) -> float:
    embedder = LocalEmbedder()
    await embedder.load()
    await embedder.embed(texts[:batch])  # warm-up
    started = time.perf_counter()
    for i in range(0, len(texts), batch):
        await embedder.embed(texts[i : i + batch])
    elapsed = time.perf_counter() - started
    await embedder.close()
    return len(texts) / elapsed


async def index_all(settings: Settings, n: int, batch: int) -> dict[str, float]:
    node = vector_node(settings, "vectors")
    processor = node.get("vector_processor")
    processor.options.batch_size = batch
    await node.start()
    try:
        started = time.perf_counter()
        await wait_for_progress(lambda: processor.counters["indexed"], n, "indexed")
        indexing = time.perf_counter() - started
        optimize_started = time.perf_counter()
        if n > processor.options.optimize_after:
            await wait_for_progress(lambda: processor.counters["optimized"], 1, "optimised")
        optimizing = time.perf_counter() - optimize_started
        failed = processor.counters["failed"] + processor.counters["retried"]
        stored = await (await node.get("qdrant_manager").ready_store()).count("emails")
    finally:
        await node.stop()
    if processor.counters["indexed"] != n or failed or stored != n:
        raise SystemExit(
            f"indexing: {processor.counters['indexed']} indexed, {failed} failed or retried, "
            f"{stored} points stored, expected {n}"
        )
    return {"seconds": indexing, "per_second": n / indexing, "optimize_seconds": optimizing}


async def wait_for_progress(counter: Callable[[], int], goal: int, what: str) -> None:
    """Wait until ``counter()`` reaches ``goal``; fail when it stops moving for a while."""
    last, moved = counter(), time.monotonic()
    while counter() < goal:
        await asyncio.sleep(0.05)
        if counter() != last:
            last, moved = counter(), time.monotonic()
        elif time.monotonic() - moved > STALL_SECONDS:
            raise SystemExit(f"{what}: stuck at {last} of {goal} for {STALL_SECONDS} s")


def http_timings(port: int, bodies: list[dict[str, Any]], path: str) -> list[float]:
    timings = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for body in bodies[:10]:
            client.post(path, json=body).raise_for_status()  # warm the connection and code
        for body in bodies:
            started = time.perf_counter()
            answer = client.post(path, json=body)
            timings.append(time.perf_counter() - started)
            answer.raise_for_status()
            if not answer.json()["results"]:
                raise SystemExit(f"{path} found nothing for {body}")
    return timings


async def query_latencies(settings: Settings, queries: list[str], n: int) -> dict[str, Any]:
    from email_sender.api.server import ApiServer

    node = vector_node(settings, "api")
    node.add(ApiServer(node, depends_on=tuple(node.registry.names)))
    await node.start()
    results: dict[str, Any] = {}
    try:
        api_socket = node.get("api").sockets["api"]
        port = node.get("api").port("api")
        if not api_socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY):
            # The listening socket hands accepted connections no TCP_NODELAY, so a response
            # written as headers then body waits for the client's delayed ACK (~40 ms). Measure
            # that as shipped, then set the option (inherited by new connections) and go on.
            shipped = [{"query": f"{q}, please", "limit": 10} for q in queries[:50]]
            results["api_text_search_without_nodelay"] = percentiles(
                await asyncio.to_thread(http_timings, port, shipped, "/api/v1/search")
            )
            api_socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        embedder = node.get("embedder")
        store = await node.get("qdrant_manager").ready_store()
        vectors = [await embedder.embed_one(q) for q in queries]

        # One query's embedding: the part of a text search that is not the store.
        timings = []
        for query in queries:
            started = time.perf_counter()
            await embedder.embed_one(query + " ")
            timings.append(time.perf_counter() - started)
        results["embed_one_query"] = percentiles(timings)

        text_bodies = [{"query": q, "limit": 10} for q in queries]
        results["api_text_search"] = percentiles(
            await asyncio.to_thread(http_timings, port, text_bodies, "/api/v1/search")
        )
        results["api_text_search_cached"] = percentiles(
            await asyncio.to_thread(http_timings, port, text_bodies, "/api/v1/search")
        )
        # The same texts, changed just enough to miss the query-embedding cache.
        dense_bodies = [{"query": f"{q} .", "limit": 10, "mode": "dense"} for q in queries]
        results["api_dense_search"] = percentiles(
            await asyncio.to_thread(http_timings, port, dense_bodies, "/api/v1/search")
        )
        sparse_bodies = [{"query": q, "limit": 10, "mode": "sparse"} for q in queries]
        results["api_sparse_search"] = percentiles(
            await asyncio.to_thread(http_timings, port, sparse_bodies, "/api/v1/search")
        )
        analyser = node.get("qdrant_manager").analyser
        timings = []
        for query in queries:
            started = time.perf_counter()
            await store.search_sparse("emails", analyser.query(query), limit=10)
            timings.append(time.perf_counter() - started)
        results["edge_raw_sparse_query"] = percentiles(timings)
        timings = []
        for query in queries:
            started = time.perf_counter()
            terms = analyser.query_terms(query)
            vector = await embedder.embed_one(query + " ,")
            dense = await store.search("emails", vector, limit=FUSION_CANDIDATES)
            words = await store.search_sparse(
                "emails", union_of_terms(terms), limit=FUSION_CANDIDATES, with_terms=True
            )
            fuse(dense, words, terms, 10)
            timings.append(time.perf_counter() - started)
        results["edge_raw_hybrid_query"] = percentiles(timings)

        vector_bodies = [{"vector": v.tolist(), "limit": 10} for v in vectors]
        results["api_vector_search"] = percentiles(
            await asyncio.to_thread(http_timings, port, vector_bodies, "/api/v1/search")
        )

        timings = []
        edge_scores = []
        for vector in vectors:
            started = time.perf_counter()
            hits = await store.search("emails", vector, limit=10)
            timings.append(time.perf_counter() - started)
            edge_scores.append([hit.score for hit in hits])
        results["edge_raw_query"] = percentiles(timings)

        # The API's text search done in-process, without HTTP, cache, SQL join or JSON.
        timings = []
        for query in queries:
            started = time.perf_counter()
            await store.search("emails", await embedder.embed_one(query + "  "), limit=10)
            timings.append(time.perf_counter() - started)
        results["edge_raw_text_query"] = percentiles(timings)

        stored = await stored_vectors(store)
        if stored.shape[0] != n:
            raise SystemExit(f"the collection holds {stored.shape[0]} points, expected {n}")
        results.update(hnsw_peer(stored, np.stack(vectors), edge_scores))
    finally:
        await node.stop()
    return results


async def stored_vectors(store: VectorStore) -> np.ndarray:
    """Every dense vector the collection holds, as Edge stores them (normalised for Cosine)."""
    chunks = []
    async for points in store.scroll("emails", batch_size=2000, with_vectors=True):
        chunks.append(np.stack([np.asarray(point.vector, dtype=np.float32) for point in points]))
    return np.vstack(chunks)


def exact_kth_scores(stored: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """The exact k-th best inner product of each query (numpy brute force, in chunks)."""
    kth = []
    for start in range(0, len(queries), 64):
        scores = queries[start : start + 64] @ stored.T
        kth.append(np.partition(scores, -k, axis=1)[:, -k])
    return np.concatenate(kth)


def recall_at_10(found: list[list[float]] | np.ndarray, kth: np.ndarray) -> float:
    """Share of the exact top 10 found. Many synthetic emails share one text, so ids tie:
    a hit counts when it scores at least the exact 10th-best score."""
    return float(np.mean([
        sum(score >= floor - SCORE_TOLERANCE for score in list(scores)[:10]) / 10
        for scores, floor in zip(found, kth, strict=True)
    ]))


def hnsw_peer(
    stored: np.ndarray, queries: np.ndarray, edge_scores: list[list[float]]
) -> dict[str, Any]:
    """FAISS ``IndexHNSWFlat`` on the same vectors (inner product on normalised vectors, which
    is the cosine), with Qdrant's default graph (m 16, ef_construct 100), queried one query at
    a time on one thread for each efSearch; recall@10 of both against numpy brute force."""
    import faiss

    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    started = time.perf_counter()
    kth = exact_kth_scores(stored, queries)
    exact_seconds = time.perf_counter() - started
    timings = []
    for query in queries:
        started = time.perf_counter()
        np.argpartition(stored @ query, -10)[-10:]
        timings.append(time.perf_counter() - started)
    index = faiss.IndexHNSWFlat(stored.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCT
    started = time.perf_counter()
    index.add(stored)
    build_seconds = time.perf_counter() - started
    faiss.omp_set_num_threads(1)  # one query at a time, as Edge is asked
    curve = []
    for ef in EF_SEARCH:
        index.hnsw.efSearch = ef
        batch = queries.reshape(len(queries), 1, -1)
        index.search(batch[0], 10)  # warm
        latencies, found = [], []
        for query in batch:
            started = time.perf_counter()
            scores, _ = index.search(query, 10)
            latencies.append(time.perf_counter() - started)
            found.append(scores[0])
        curve.append({"ef_search": ef, "recall_at_10": recall_at_10(found, kth),
                      **percentiles(latencies)})
    edge_recall = recall_at_10(edge_scores, kth)
    reaching = [point for point in curve if point["recall_at_10"] >= edge_recall]
    chosen = reaching[0] if reaching else curve[-1]
    return {
        "edge_recall_at_10": edge_recall,
        "exact_numpy_query": percentiles(timings),
        "exact_numpy_all_queries_seconds": exact_seconds,
        "faiss_hnsw_build_seconds": build_seconds,
        "faiss_hnsw_params": {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCT},
        "faiss_hnsw_curve": curve,
        "faiss_hnsw_at_edge_recall": chosen,
        "faiss_hnsw_reaches_edge_recall": bool(reaching),
    }


async def run(n: int, queries: int, sample: int, batch: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="search-bench-") as tmp:
        settings = bench_settings(Path(tmp) / "data")
        started = time.perf_counter()
        texts = await fill_sql(settings, n, seed)
        print(
            f"[{n} emails written to SQL in {time.perf_counter() - started:.1f} s]",
            file=sys.stderr,
            flush=True,
        )
        # The embedder alone is measured before and after the drain: on a shared machine one
        # short window can be 25 % off, and the ratio is taken against the mean of the two.
        before = await embedder_batch_throughput(texts[:sample], batch)
        print(f"[embedder alone: {before:.0f} texts/s]", file=sys.stderr, flush=True)
        indexing = await index_all(settings, n, batch)
        print(f"[indexed in {indexing['seconds']:.1f} s]", file=sys.stderr, flush=True)
        after = await embedder_batch_throughput(texts[-sample:], batch)
        print(f"[embedder alone again: {after:.0f} texts/s]", file=sys.stderr, flush=True)
        embedder_rate = (before + after) / 2
        latencies = await query_latencies(
            settings, distinct_queries(random.Random(seed), queries), n
        )
    return {
        "n": n,
        "cpu_count": os.cpu_count(),
        "threads": threading.active_count(),
        "batch": batch,
        "embedder_batch_per_second": embedder_rate,
        "embedder_batch_per_second_before_after": [before, after],
        "indexing": indexing,
        **latencies,
    }


def rows_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The table's rows: each figure with its in-run peer and its target."""
    api_text, raw_hybrid = result["api_text_search"], result["edge_raw_hybrid_query"]
    raw_text, raw_sparse = result["edge_raw_text_query"], result["edge_raw_sparse_query"]
    edge, hnsw = result["edge_raw_query"], result["faiss_hnsw_at_edge_recall"]
    n = result["n"]
    at_n = f"at {n:,}" + ("" if n >= 100_000 else " (target set at 100,000)")
    overhead = api_text["p95_ms"] / raw_hybrid["p95_ms"]
    edge_ratio = edge["p95_ms"] / hnsw["p95_ms"]
    indexing_ratio = result["indexing"]["per_second"] / result["embedder_batch_per_second"]
    # The peer is compared at Edge's recall; when no efSearch reaches it, at its highest, and
    # the bar (set at equal recall) is not judged.
    equal = result["faiss_hnsw_reaches_edge_recall"]
    at_recall = "at equal recall" if equal else "at its highest recall (lower than Edge's)"
    recall_note = (
        f"recall@10: Edge {result['edge_recall_at_10']:.3f}, FAISS {hnsw['recall_at_10']:.3f} "
        f"at efSearch {hnsw['ef_search']}"
        + ("" if result["faiss_hnsw_reaches_edge_recall"] else " (its highest: below Edge's)")
        + "; exact top 10 by numpy brute force"
    )
    rows = [
        row("API hybrid text search p95 (ms)", api_text["p95_ms"], "ms",
            peer="in-process hybrid query p95", peer_value=raw_hybrid["p95_ms"],
            target=f"< 50 ms {at_n}; < 2x the in-process query",
            met=api_text["p95_ms"] < 50 and overhead < 2,
            note="distinct queries (cache misses), limit 10"),
        row("API hybrid text search p50 (ms)", api_text["p50_ms"], "ms",
            peer="in-process hybrid query p50", peer_value=raw_hybrid["p50_ms"]),
        row("API hybrid text search, repeated query p95 (ms)",
            result["api_text_search_cached"]["p95_ms"], "ms",
            note="the same queries again: answered from the query cache; no peer caches"),
        row("API dense text search p95 (ms)", result["api_dense_search"]["p95_ms"], "ms",
            peer="raw Edge text query p95", peer_value=raw_text["p95_ms"],
            target=f"< 50 ms {at_n}", met=result["api_dense_search"]["p95_ms"] < 50),
        row("API sparse text search p95 (ms)", result["api_sparse_search"]["p95_ms"], "ms",
            peer="raw Edge sparse query p95", peer_value=raw_sparse["p95_ms"],
            target=f"< 50 ms {at_n}", met=result["api_sparse_search"]["p95_ms"] < 50),
        row("embed one query p95 (ms)", result["embed_one_query"]["p95_ms"], "ms",
            peer="raw Edge text query p95", peer_value=raw_text["p95_ms"],
            note="the part of a text search that is not the store"),
        row("API vector search p95 (ms)", result["api_vector_search"]["p95_ms"], "ms",
            peer="raw Edge vector query p95", peer_value=edge["p95_ms"]),
        row("raw Edge vector query p95 (ms)", edge["p95_ms"], "ms",
            peer=f"FAISS IndexHNSWFlat p95 {at_recall}", peer_value=hnsw["p95_ms"],
            target="<= 1.5x the HNSW peer at equal recall"
            + ("" if equal else ": the peer never reaches Edge's recall here"),
            met=edge_ratio <= 1.5 if equal else None, note=recall_note),
        row("raw Edge vector query p50 (ms)", edge["p50_ms"], "ms",
            peer=f"FAISS IndexHNSWFlat p50 {at_recall}", peer_value=hnsw["p50_ms"]),
        row("Edge recall@10", result["edge_recall_at_10"], "",
            peer=f"FAISS HNSW recall@10 at efSearch {hnsw['ef_search']}",
            peer_value=hnsw["recall_at_10"]),
        row("indexing (emails/s)", result["indexing"]["per_second"], "emails/s",
            peer="embedder alone, batch, mean before/after",
            peer_value=result["embedder_batch_per_second"],
            target=">= 0.9x" + ("" if n >= 100_000 else " (on a 100,000 run)"),
            met=indexing_ratio >= 0.9),
    ]
    shipped = result.get("api_text_search_without_nodelay")
    if shipped:
        rows.append(row("API text search p95, server without TCP_NODELAY (ms)",
                        shipped["p95_ms"], "ms", peer="raw Edge text query p95",
                        peer_value=raw_text["p95_ms"]))
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| figure | value | peer | peer value | ratio | target |", "|---|---|---|---|---|---|"]
    for line in rows:
        peer_value = "" if line["peer_value"] is None else f"{line['peer_value']:.3f}"
        ratio = "" if line["ratio"] is None else f"{line['ratio']:.2f}x"
        verdict = "" if line["met"] is None else (" (met)" if line["met"] else " (NOT met)")
        lines.append(f"| {line['figure']} | {line['ours']:.3f} | {line['peer'] or ''} | "
                     f"{peer_value} | {ratio} | {line['target'] or ''}{verdict} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="emails to index")
    parser.add_argument("--queries", type=int, default=300, help="distinct search queries")
    parser.add_argument(
        "--sample", type=int, default=5000, help="texts embedded by the embedder alone"
    )
    parser.add_argument("--batch", type=int, default=256, help="embedding and indexing batch")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true",
                        help="a small run: " + ", ".join(f"--{k} {v}" for k, v in QUICK.items()))
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    args = parser.parse_args()
    if args.quick:
        args.n, args.queries, args.sample = QUICK["n"], QUICK["queries"], QUICK["sample"]
    for name in ("n", "queries", "sample", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer")
    if args.n < 10:
        parser.error("--n must be at least 10 (recall@10 needs ten points)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = asyncio.run(run(args.n, args.queries, min(args.sample, args.n), args.batch, args.seed))
    rows = rows_of(result)
    if args.json:
        print(json.dumps(result, indent=2))
    print(table(rows))
    hnsw = result["faiss_hnsw_at_edge_recall"]
    print(
        f"\nN = {result['n']}, batch {result['batch']}, {result['cpu_count']} CPUs; "
        f"recall@10: Edge {result['edge_recall_at_10']:.3f}, FAISS HNSW "
        f"{hnsw['recall_at_10']:.3f} at efSearch {hnsw['ef_search']}; "
        f"FAISS build {result['faiss_hnsw_build_seconds']:.1f} s; "
        f"drained to optimised: {result['indexing']['optimize_seconds']:.1f} s"
    )
    path = write_result("search", result, rows)
    print(f"written to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
