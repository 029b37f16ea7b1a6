"""Migrate and verify throughput, edge → edge, against qdrant-client's own ``migrate()``.

    .venv/bin/python benchmarks/migrate.py            # 100,000 points, 384-d
    .venv/bin/python benchmarks/migrate.py --n 20000  # smaller
    .venv/bin/python benchmarks/migrate.py --quick    # 5,000 points

Ours: :func:`email_sender.ops.migrate.migrate` between two Qdrant Edge stores, as
``email-sender vectors migrate`` runs it, twice:

- into a store without the collection (the usual migration): the shard's files are copied;
- into a store that already has the collection (empty): points go page by page as the engine
  holds them, no conversion to Python objects in between.

then :func:`email_sender.ops.verify.verify` (per-point SHA-256 on both sides, collection
digests) of each copy. Peer: ``QdrantClient.migrate`` between two qdrant-client local-mode
folders holding the same points, in the same run, and for verify the check one writes by hand
with qdrant-client: scroll both local stores and compare ids, vectors and payloads. Filling the
sources is not timed; the peer copies at most ``--peer-n`` points (20,000: local mode slows
down as it grows). Counts are checked on both sides: a copy that lost a point fails the run.

Targets (issue 5, issue 12): migrate edge → edge >= 20,000 points/s; verify 100,000 points in
< 10 s (>= 10,000 points/s).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from _common import ratio_line, row, write_result
from qdrant_client import QdrantClient, models

from email_sender.ops.migrate import migrate
from email_sender.ops.verify import verify
from email_sender.vectors.edge import EdgeVectorStore
from email_sender.vectors.factory import EMAIL_PAYLOAD_INDEXES
from email_sender.vectors.store import Point

COLLECTION = "emails"
FILL_BATCH = 2000
QUICK_N = 5000
# qdrant-client's local mode slows down as it grows (it warns above 20,000 points): a 100,000
# point peer would take most of an hour. The peer copies at most this many points; the rate
# per point it reaches on fewer points is no lower than it would be on all of them.
PEER_MAX_N = 20_000
MIGRATE_TARGET = 20_000
VERIFY_TARGET = 10_000


class CountMismatch(SystemExit):
    """A copy does not hold what its source held: no figure is printed for it."""


def make_points(count: int, dim: int, seed: int = 42) -> list[Point]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    tags = ["invoice", "booking", "newsletter", "reminder", "contract"]
    return [
        Point(
            str(uuid.UUID(int=int(rng.integers(0, 2**62)) << 64 | n)),
            vectors[n],
            {
                "email_id": f"e-{n}",
                "direction": "outbound",
                "from": "bookings@venue.example",
                "to": [f"artist{n % 997}@example.org"],
                "subject": f"Offer {n}: dates for the autumn tour",
                "tags": [tags[n % 5]],
                "campaign": None if n % 4 else "autumn",
                "status": "sent",
                "created_at": round(1_700_000_000 + n * 1.5, 3),
                "embedding_model": "all-MiniLM-L6-v2",
            },
        )
        for n in range(count)
    ]


def check_count(what: str, found: int, expected: int) -> None:
    if found != expected:
        raise CountMismatch(f"{what}: {found} points, expected {expected}")


async def ours(work: Path, points: list[Point], dim: int, batch_size: int) -> dict[str, Any]:
    n = len(points)
    source = EdgeVectorStore(work / "edge-a")
    await source.ensure_collection(COLLECTION, dim, "Cosine", EMAIL_PAYLOAD_INDEXES)
    for start in range(0, n, FILL_BATCH):
        await source.upsert(COLLECTION, points[start : start + FILL_BATCH], wait=False)
    await source.optimize(COLLECTION)
    await source.close()
    # Opened again as ``vectors migrate --from edge://…`` opens it: from what is on disk.
    source = EdgeVectorStore(work / "edge-a")
    figures: dict[str, Any] = {}
    try:
        for label, existing in (("new_collection", False), ("existing_collection", True)):
            target = EdgeVectorStore(work / f"edge-{label}")
            try:
                if existing:
                    await target.ensure_collection(
                        COLLECTION, dim, "Cosine", EMAIL_PAYLOAD_INDEXES
                    )
                started = time.perf_counter()
                report = await migrate(source, target, batch_size=batch_size,
                                       state_path=work / f"state-{label}.json")
                migrate_seconds = time.perf_counter() - started
                check_count(f"migrate ({label}) reported", report.copied, n)
                check_count(f"edge target ({label})", await target.count(COLLECTION), n)
                started = time.perf_counter()
                check = await verify(source, target, batch_size=batch_size)
                verify_seconds = time.perf_counter() - started
                if not check.identical:
                    raise CountMismatch(f"verify ({label}) found differences: {check.as_dict()}")
            finally:
                await target.close()
            print(f"[ours, {label}: migrate {n / migrate_seconds:.0f} points/s "
                  f"({report.collections[0].method}), verify {n / verify_seconds:.0f} points/s]",
                  file=sys.stderr, flush=True)
            figures[label] = {
                "method": report.collections[0].method,
                "migrate_seconds": migrate_seconds,
                "migrate_points_per_second": n / migrate_seconds,
                "verify_seconds": verify_seconds,
                "verify_points_per_second": n / verify_seconds,
            }
    finally:
        await source.close()
    return figures


def peer(work: Path, points: list[Point], dim: int, batch_size: int) -> dict[str, Any]:
    source = QdrantClient(path=str(work / "local-a"))
    target = QdrantClient(path=str(work / "local-b"))
    try:
        source.create_collection(
            COLLECTION,
            vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
        )
        for start in range(0, len(points), FILL_BATCH):
            source.upsert(COLLECTION, points=[
                models.PointStruct(id=p.id, vector=np.asarray(p.vector).tolist(),
                                   payload=p.payload)
                for p in points[start : start + FILL_BATCH]
            ])
        started = time.perf_counter()
        source.migrate(target, batch_size=batch_size)
        migrate_seconds = time.perf_counter() - started
        check_count("qdrant-client migrate target", target.count(COLLECTION).count, len(points))
        started = time.perf_counter()
        seen_a, seen_b = _scan(source), _scan(target)
        same = seen_a.keys() == seen_b.keys() and all(
            np.allclose(seen_a[key][0], seen_b[key][0], atol=1e-6)
            and seen_a[key][1] == seen_b[key][1]
            for key in seen_a
        )
        verify_seconds = time.perf_counter() - started
        check_count("qdrant-client scan of the target", len(seen_b), len(points))
    finally:
        source.close()
        target.close()
    return {
        "n": len(points),
        "migrate_seconds": migrate_seconds,
        "migrate_points_per_second": len(points) / migrate_seconds,
        "verify_seconds": verify_seconds,
        "verify_points_per_second": len(points) / verify_seconds,
        "copy_equal_within_1e-6": same,
    }


def _scan(client: QdrantClient) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    found: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
    offset = None
    while True:
        records, offset = client.scroll(COLLECTION, limit=1000, offset=offset, with_vectors=True)
        for record in records:
            found[str(record.id)] = (np.asarray(record.vector, dtype=np.float32),
                                     dict(record.payload or {}))
        if offset is None:
            return found


def rows_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    new, existing, local = (
        result["ours"]["new_collection"], result["ours"]["existing_collection"], result["peer"]
    )
    peer_migrate = f"qdrant-client migrate(), local mode, {local['n']:,} points"
    return [
        row("vector migrate (points/s)", new["migrate_points_per_second"], "points/s",
            peer=peer_migrate, peer_value=local["migrate_points_per_second"],
            target=">= 20,000 points/s",
            met=new["migrate_points_per_second"] >= MIGRATE_TARGET,
            note="edge → edge into a new collection: the shard's files are copied"),
        row("vector migrate into an existing collection (points/s)",
            existing["migrate_points_per_second"], "points/s",
            peer=peer_migrate, peer_value=local["migrate_points_per_second"],
            note="edge → edge page by page, the engine's points as they are"),
        row("vector verify (points/s)", new["verify_points_per_second"], "points/s",
            peer=f"hand-written scroll-and-compare, local mode, {local['n']:,} points",
            peer_value=local["verify_points_per_second"],
            target=">= 10,000 points/s (100k in < 10 s)",
            met=new["verify_points_per_second"] >= VERIFY_TARGET,
            note="SHA-256 of every point on both sides, collection digests"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=100_000, help="points (default 100,000)")
    parser.add_argument("--dim", type=int, default=384, help="dimension (default 384)")
    parser.add_argument("--batch-size", type=int, default=1000, help="batch size (default 1000)")
    parser.add_argument("--peer-n", type=int, default=PEER_MAX_N,
                        help=f"points the qdrant-client peer copies (default {PEER_MAX_N:,})")
    parser.add_argument("--quick", action="store_true", help=f"a small run: --n {QUICK_N}")
    args = parser.parse_args()
    n = QUICK_N if args.quick else args.n
    args.peer_n = min(args.peer_n, n)
    for name, value in (("--n", n), ("--dim", args.dim), ("--batch-size", args.batch_size),
                        ("--peer-n", args.peer_n)):
        if value < 1:
            parser.error(f"{name} must be a positive integer")
    points = make_points(n, args.dim)
    with tempfile.TemporaryDirectory(prefix="bench-migrate-") as directory:
        work = Path(directory)
        mine = asyncio.run(ours(work, points, args.dim, args.batch_size))
        theirs = peer(work, points[: args.peer_n], args.dim, args.batch_size)
    result = {"n": n, "dim": args.dim, "batch_size": args.batch_size,
              "ours": mine, "peer": theirs}
    rows = rows_of(result)
    print(f"{n} points, {args.dim}-d, batch {args.batch_size}")
    print(ratio_line("migrate edge->edge, new (pt/s)",
                     mine["new_collection"]["migrate_points_per_second"],
                     "qdrant-client migrate local", theirs["migrate_points_per_second"], "pt/s"))
    print(ratio_line("migrate edge->edge, existing (pt/s)",
                     mine["existing_collection"]["migrate_points_per_second"],
                     "qdrant-client migrate local", theirs["migrate_points_per_second"], "pt/s"))
    print(ratio_line("verify edge+edge (points/s)",
                     mine["new_collection"]["verify_points_per_second"],
                     "hand check local+local", theirs["verify_points_per_second"], "pt/s"))
    for line in rows:
        if line["target"]:
            print(f"{line['figure']}: target {line['target']}: "
                  f"{'met' if line['met'] else 'NOT met'}")
    path = write_result("migrate", result, rows)
    print(f"written to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
