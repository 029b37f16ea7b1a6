"""Semantic search benchmark: API search latency, raw Edge and qdrant-client local mode as peers,
and indexing throughput against the embedder's own batch throughput, all in one run.

    .venv/bin/python benchmarks/search.py            # 100,000 emails
    .venv/bin/python benchmarks/search.py --n 20000  # a smaller run

What runs is the real service: SQLite outbox, the bundled all-MiniLM-L6-v2 model, Qdrant Edge,
the vector processor, and the HTTP API served by uvicorn on loopback. Queries are sent one at a
time by an httpx client in a thread of the same process (so client and server share the CPU, as
they do on a 2-core box). Steps:

1. Write N synthetic booking emails (French and English) to SQL.
2. The embedder alone: embed a sample of those texts in batches (its own batch throughput).
3. Start a ``vectors`` node and time the processor draining the backlog of N (indexing
   throughput), then the optimisation it schedules after the bulk load.
   The embedder alone is measured again after the drain; the ratio uses the mean of both.
4. Start an ``api`` node and measure, with distinct query texts (cache misses) and limit 10:
   API text search (hybrid, the default mode) against the same done in-process (embed the
   query, the dense and the sparse Edge queries, the fusion: the peer for the "API overhead
   < 2x" target); the dense and sparse modes against their in-process peers; API vector search,
   the embedder on one query, a raw Edge vector query, and qdrant-client local mode holding the
   same points.
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
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from email_sender.db.engine import Database
from email_sender.mail.message import EmailIn, prepare_email
from email_sender.mail.outbox import Outbox
from email_sender.service import Service, build_service
from email_sender.settings import MailSettings, Settings, load_settings
from email_sender.vectors.embedders import LocalEmbedder
from email_sender.vectors.fusion import fuse
from email_sender.vectors.payloads import document_text
from email_sender.vectors.search import FUSION_CANDIDATES
from email_sender.vectors.server import ServerVectorStore
from email_sender.vectors.sparse import union_of_terms

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
        while processor.counters["indexed"] < n:
            await asyncio.sleep(0.05)
        indexing = time.perf_counter() - started
        optimize_started = time.perf_counter()
        while n > processor.options.optimize_after and processor.counters["optimized"] < 1:
            await asyncio.sleep(0.1)
        optimizing = time.perf_counter() - optimize_started
    finally:
        await node.stop()
    return {"seconds": indexing, "per_second": n / indexing, "optimize_seconds": optimizing}


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
            assert answer.json()["results"], body
    return timings


async def query_latencies(settings: Settings, queries: list[str]) -> dict[str, Any]:
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
        for vector in vectors:
            started = time.perf_counter()
            await store.search("emails", vector, limit=10)
            timings.append(time.perf_counter() - started)
        results["edge_raw_query"] = percentiles(timings)

        # The API's text search done in-process, without HTTP, cache, SQL join or JSON.
        timings = []
        for query in queries:
            started = time.perf_counter()
            await store.search("emails", await embedder.embed_one(query + "  "), limit=10)
            timings.append(time.perf_counter() - started)
        results["edge_raw_text_query"] = percentiles(timings)

        local = ServerVectorStore(location=":memory:")
        try:
            await local.ensure_collection("emails", embedder.dimension, sparse=True)
            load_started = time.perf_counter()
            async for points in store.scroll("emails", batch_size=1000, with_vectors=True):
                await local.upsert("emails", points)
            results["qdrant_local_load_seconds"] = time.perf_counter() - load_started
            timings = []
            for vector in vectors:
                started = time.perf_counter()
                await local.search("emails", vector, limit=10)
                timings.append(time.perf_counter() - started)
            results["qdrant_local_query"] = percentiles(timings)
            # Many synthetic emails share one text, so ids tie; compare scores instead: a hit
            # counts when it scores at least the exact 10th-best score.
            recall = []
            for vector in vectors[:100]:
                edge_hits = await store.search("emails", vector, limit=10)
                exact = await local.search("emails", vector, limit=10)
                floor = exact[-1].score - 1e-5
                recall.append(sum(hit.score >= floor for hit in edge_hits) / len(exact))
            results["edge_recall_at_10_vs_exact"] = float(np.mean(recall))
        finally:
            await local.close()
    finally:
        await node.stop()
    return results


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
        latencies = await query_latencies(settings, distinct_queries(random.Random(seed), queries))
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


def report(result: dict[str, Any]) -> str:
    def line(name: str, figure: float, peer_name: str, peer: float, target: str) -> str:
        return (
            f"| {name} | {figure:.2f} | {peer_name} | {peer:.2f} | {figure / peer:.2f}x "
            f"| {target} |"
        )

    api_text = result["api_text_search"]
    raw_hybrid = result["edge_raw_hybrid_query"]
    raw_text = result["edge_raw_text_query"]
    raw_sparse = result["edge_raw_sparse_query"]
    api_vector = result["api_vector_search"]
    edge = result["edge_raw_query"]
    local = result["qdrant_local_query"]
    rows = [
        "| figure | value | peer | peer value | ratio | target |",
        "|---|---|---|---|---|---|",
        line(
            "API hybrid text search p50 (ms)",
            api_text["p50_ms"],
            "in-process hybrid query p50",
            raw_hybrid["p50_ms"],
            "",
        ),
        line(
            "API hybrid text search p95 (ms)",
            api_text["p95_ms"],
            "in-process hybrid query p95",
            raw_hybrid["p95_ms"],
            "p95 < 50 ms; < 2x",
        ),
        line(
            "API hybrid text search, repeated query p95 (ms)",
            result["api_text_search_cached"]["p95_ms"],
            "in-process hybrid query p95",
            raw_hybrid["p95_ms"],
            "",
        ),
        line(
            "API dense text search p95 (ms)",
            result["api_dense_search"]["p95_ms"],
            "raw Edge text query p95",
            raw_text["p95_ms"],
            "p95 < 50 ms",
        ),
        line(
            "API sparse text search p95 (ms)",
            result["api_sparse_search"]["p95_ms"],
            "raw Edge sparse query p95",
            raw_sparse["p95_ms"],
            "p95 < 50 ms",
        ),
        line(
            "embed one query p95 (ms)",
            result["embed_one_query"]["p95_ms"],
            "raw Edge text query p95",
            raw_text["p95_ms"],
            "",
        ),
        line(
            "API vector search p50 (ms)",
            api_vector["p50_ms"],
            "raw Edge vector query p50",
            edge["p50_ms"],
            "",
        ),
        line(
            "API vector search p95 (ms)",
            api_vector["p95_ms"],
            "raw Edge vector query p95",
            edge["p95_ms"],
            "",
        ),
        line(
            "raw Edge vector query p50 (ms)",
            edge["p50_ms"],
            "qdrant-client local p50",
            local["p50_ms"],
            "",
        ),
        line(
            "raw Edge vector query p95 (ms)",
            edge["p95_ms"],
            "qdrant-client local p95",
            local["p95_ms"],
            "",
        ),
        line(
            "indexing (emails/s)",
            result["indexing"]["per_second"],
            "embedder batch, mean before/after",
            result["embedder_batch_per_second"],
            ">= 0.9x",
        ),
    ]
    shipped = result.get("api_text_search_without_nodelay")
    if shipped:
        rows.append(
            line(
                "API text search p95, server without TCP_NODELAY (ms)",
                shipped["p95_ms"],
                "raw Edge text query p95",
                raw_text["p95_ms"],
                "",
            )
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="emails to index")
    parser.add_argument("--queries", type=int, default=300, help="distinct search queries")
    parser.add_argument(
        "--sample", type=int, default=5000, help="texts embedded by the embedder alone"
    )
    parser.add_argument("--batch", type=int, default=256, help="embedding and indexing batch")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = asyncio.run(run(args.n, args.queries, min(args.sample, args.n), args.batch, args.seed))
    if args.json:
        print(json.dumps(result, indent=2))
    print(report(result))
    print(
        f"\nN = {result['n']}, batch {result['batch']}, {result['cpu_count']} CPUs; "
        f"Edge recall@10 against exact search: {result['edge_recall_at_10_vs_exact']:.3f}; "
        f"drained to optimised: {result['indexing']['optimize_seconds']:.1f} s; "
        f"qdrant-client local load: {result['qdrant_local_load_seconds']:.1f} s"
    )


if __name__ == "__main__":
    main()
