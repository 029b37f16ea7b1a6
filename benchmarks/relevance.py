"""Relevance of search: dense, sparse and hybrid, and the fusions hybrid was chosen among.

    .venv/bin/python benchmarks/relevance.py          # the table
    .venv/bin/python benchmarks/relevance.py --json   # the raw figures too

The corpus is ``benchmarks/data/relevance/`` (540 booking emails, 100 labelled queries in three
kinds: exact terms, inflected keywords, paraphrases; 60 French, 40 English), written before any
measurement and used by no test. What runs is the real service: SQLite outbox, the bundled
all-MiniLM-L6-v2 model, Qdrant Edge, the vector processor and the search service, in-process.

For each query and each method, the rank of the first relevant email among the first 10 gives
hit@1, hit@3 and MRR, per kind. Methods:

- ``dense``, ``sparse``, ``hybrid``: the service's own search modes (hybrid is what
  ``POST /api/v1/search`` does by default);
- ``rrf``, ``normalised sum``, ``ungated``: the two rankings (50 candidates each) fused by
  reciprocal rank fusion, by min-max normalised score sum (the usual alternatives), and by the
  shipped fusion without its coverage gate (see ``email_sender/vectors/fusion.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import row, write_result
from search import bench_settings, vector_node
from sqlalchemy import select

from email_sender.db.engine import Database
from email_sender.db.schema import emails
from email_sender.mail.message import EmailIn, prepare_email
from email_sender.mail.outbox import Outbox
from email_sender.settings import MailSettings, Settings
from email_sender.vectors.fusion import normalised_sum, rrf, ungated
from email_sender.vectors.search import FUSION_CANDIDATES
from email_sender.vectors.store import ScoredPoint

CORPUS = Path(__file__).parent / "data" / "relevance"
KINDS = ("exact", "inflection", "paraphrase")
MODES = ("dense", "sparse", "hybrid")
FUSIONS: dict[str, Callable[[Sequence[ScoredPoint], Sequence[ScoredPoint], int], list[Any]]] = {
    "rrf": rrf,
    "normalised sum": normalised_sum,
    "ungated": ungated,
}
DEPTH = 10


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


async def fill_sql(settings: Settings, corpus: list[dict[str, Any]]) -> dict[str, str]:
    """The corpus as accepted emails; answers email id -> corpus id."""
    database = Database(settings.database_url)
    await database.start()
    outbox = Outbox(database, idempotency_retention=3600)
    limits = MailSettings()
    try:
        batch = [
            prepare_email(
                EmailIn.model_validate(
                    {"from": "booking@band.example", "to": ["desk@venue.example"],
                     "subject": item["subject"], "text": item["text"],
                     "metadata": {"corpus_id": item["id"]}}
                ),
                limits,
            )
            for item in corpus
        ]
        await outbox.accept_many(batch)
        async with database.connect() as connection:
            rows = await connection.execute(select(emails.c.id, emails.c.metadata))
            return {row.id: row.metadata["corpus_id"] for row in rows}
    finally:
        await database.stop()


async def index_all(settings: Settings, count: int) -> float:
    node = vector_node(settings, "vectors")
    processor = node.get("vector_processor")
    await node.start()
    try:
        started = time.perf_counter()
        while processor.counters["indexed"] < count:
            await asyncio.sleep(0.05)
        return time.perf_counter() - started
    finally:
        await node.stop()


def rank_of(found: list[str], relevant: set[str]) -> int:
    """1-based rank of the first relevant id among the first DEPTH, or 0."""
    for rank, key in enumerate(found[:DEPTH], start=1):
        if key in relevant:
            return rank
    return 0


async def rankings(settings: Settings, queries: list[dict[str, Any]], ids: dict[str, str]) -> dict:
    """For each method, the rank each query's relevant email got."""
    node = vector_node(settings, "api")
    await node.start()
    ranks: dict[str, list[int]] = {name: [] for name in (*MODES, *FUSIONS)}
    misses: dict[str, list[str]] = {name: [] for name in ranks}
    try:
        search = node.search
        store = await node.get("qdrant_manager").ready_store()
        analyser = node.get("qdrant_manager").analyser
        for query in queries:
            relevant = set(query["relevant"])
            for mode in MODES:
                hits = await search.search(query=query["query"], limit=DEPTH, mode=mode)
                found = [ids[hit["id"]] for hit in hits]
                ranks[mode].append(rank_of(found, relevant))
            vector = await search.embed_query(query["query"])
            dense = await store.search("emails", vector, limit=FUSION_CANDIDATES)
            sparse = await store.search_sparse(
                "emails", analyser.query(query["query"]), limit=FUSION_CANDIDATES
            )
            for name, fusion in FUSIONS.items():
                found = [ids[hit.id] for hit in fusion(dense, sparse, DEPTH)]
                ranks[name].append(rank_of(found, relevant))
            for name in ranks:
                if ranks[name][-1] != 1:
                    misses[name].append(f"{query['id']} {query['query']!r}: {ranks[name][-1]}")
    finally:
        await node.stop()
    return {"ranks": ranks, "misses": misses}


def scores(ranks: list[int]) -> dict[str, float]:
    return {
        "hit@1": sum(rank == 1 for rank in ranks) / len(ranks),
        "hit@3": sum(1 <= rank <= 3 for rank in ranks) / len(ranks),
        "mrr": statistics.fmean(1 / rank if rank else 0.0 for rank in ranks),
    }


def table(queries: list[dict[str, Any]], ranks: dict[str, list[int]]) -> dict[str, Any]:
    """Scores per method, per kind and in all; per language too."""
    out: dict[str, Any] = {}
    for name, got in ranks.items():
        out[name] = {"all": scores(got)}
        for kind in KINDS:
            out[name][kind] = scores([r for r, q in zip(got, queries, strict=True)
                                      if q["kind"] == kind])
        for lang in ("fr", "en"):
            out[name][lang] = scores([r for r, q in zip(got, queries, strict=True)
                                      if q["lang"] == lang])
    return out


def report(result: dict[str, Any]) -> str:
    """One row per method; each cell is hit@1 / hit@3 / MRR."""
    columns = (*KINDS, "fr", "en", "all")
    lines = [
        f"{result['emails']} emails, {result['queries']} queries "
        f"(indexing took {result['index_seconds']:.1f} s); each cell: hit@1 / hit@3 / MRR",
        "",
        "| method | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name, by_kind in result["scores"].items():
        cells = [
            f"{by_kind[c]['hit@1']:.0%} / {by_kind[c]['hit@3']:.0%} / {by_kind[c]['mrr']:.3f}"
            for c in columns
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    hybrid, dense, sparse = (result["scores"][m] for m in ("hybrid", "dense", "sparse"))
    lines.append("")
    lines.append(
        f"targets: hybrid hit@1 on exact terms {hybrid['exact']['hit@1']:.0%} (>= 95 %); "
        + "; ".join(
            f"{kind} {hybrid[kind]['hit@1']:.0%} vs best single "
            f"{max(dense[kind]['hit@1'], sparse[kind]['hit@1']):.0%}"
            for kind in KINDS
        )
    )
    return "\n".join(lines)


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Hybrid's hit@1 on exact terms, and on each kind against the better single mode."""
    hybrid, dense, sparse = (result["scores"][m] for m in ("hybrid", "dense", "sparse"))
    exact = hybrid["exact"]["hit@1"] * 100
    out = [row("hybrid hit@1, exact terms", exact, "%", target=">= 95 %", met=exact >= 95)]
    for kind in KINDS:
        best_name, best = max((("dense", dense), ("sparse", sparse)),
                              key=lambda pair: pair[1][kind]["hit@1"])
        ours = hybrid[kind]["hit@1"] * 100
        peer = best[kind]["hit@1"] * 100
        out.append(row(f"hybrid hit@1, {kind}", ours, "%", peer=f"{best_name} alone",
                       peer_value=peer, target=">= the better single mode", met=ours >= peer))
    return out


async def run() -> dict[str, Any]:
    corpus = read_jsonl(CORPUS / "emails.jsonl")
    queries = read_jsonl(CORPUS / "queries.jsonl")
    with tempfile.TemporaryDirectory(prefix="relevance-") as folder:
        settings = bench_settings(Path(folder))
        ids = await fill_sql(settings, corpus)
        seconds = await index_all(settings, len(corpus))
        measured = await rankings(settings, queries, ids)
    return {
        "emails": len(corpus),
        "queries": len(queries),
        "index_seconds": seconds,
        "scores": table(queries, measured["ranks"]),
        "misses": measured["misses"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the raw figures too")
    parser.add_argument("--quick", action="store_true",
                        help="accepted for make bench; the corpus is small, the run the same")
    args = parser.parse_args()
    result = asyncio.run(run())
    write_result("relevance", result, rows(result), details=report(result))
    print(report(result))
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
