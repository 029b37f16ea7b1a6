"""Migrate and verify throughput, edge → edge, against qdrant-client's own ``migrate()``.

    .venv/bin/python benchmarks/migrate.py            # 100,000 points, 384-d
    .venv/bin/python benchmarks/migrate.py --n 20000  # smaller

Ours: :func:`email_sender.ops.migrate.migrate` between two Qdrant Edge stores (scroll → upsert
with ``wait=True`` per batch, progress recorded per batch), then
:func:`email_sender.ops.verify.verify` (per-point SHA-256 on both sides, collection digests).
Peer: ``QdrantClient.migrate`` between two qdrant-client local-mode folders in the same run, and,
for verify, the check one writes by hand with qdrant-client: scroll both local stores and compare
ids, vectors and payloads. Filling the sources is not timed.

Targets (issue 5): migrate edge → edge >= 20,000 points/s; verify 100,000 points in < 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from _common import ratio_line
from qdrant_client import QdrantClient, models

from email_sender.ops.migrate import migrate
from email_sender.ops.verify import verify
from email_sender.vectors.edge import EdgeVectorStore
from email_sender.vectors.factory import EMAIL_PAYLOAD_INDEXES
from email_sender.vectors.store import Point

COLLECTION = "emails"
FILL_BATCH = 2000


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


async def ours(work: Path, points: list[Point], dim: int, batch_size: int) -> tuple[float, float]:
    source = EdgeVectorStore(work / "edge-a")
    await source.ensure_collection(COLLECTION, dim, "Cosine", EMAIL_PAYLOAD_INDEXES)
    for start in range(0, len(points), FILL_BATCH):
        await source.upsert(COLLECTION, points[start : start + FILL_BATCH], wait=False)
    await source.optimize(COLLECTION)
    target = EdgeVectorStore(work / "edge-b")
    started = time.perf_counter()
    report = await migrate(source, target, batch_size=batch_size,
                           state_path=work / "state.json")
    migrate_seconds = time.perf_counter() - started
    assert report.copied == len(points)
    started = time.perf_counter()
    check = await verify(source, target, batch_size=batch_size)
    verify_seconds = time.perf_counter() - started
    assert check.identical, check.as_dict()
    await source.close()
    await target.close()
    return migrate_seconds, verify_seconds


def peer(work: Path, points: list[Point], dim: int, batch_size: int) -> tuple[float, float]:
    source = QdrantClient(path=str(work / "local-a"))
    source.create_collection(
        COLLECTION, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE)
    )
    for start in range(0, len(points), FILL_BATCH):
        source.upsert(COLLECTION, points=[
            models.PointStruct(id=p.id, vector=np.asarray(p.vector).tolist(), payload=p.payload)
            for p in points[start : start + FILL_BATCH]
        ])
    target = QdrantClient(path=str(work / "local-b"))
    started = time.perf_counter()
    source.migrate(target, batch_size=batch_size)
    migrate_seconds = time.perf_counter() - started
    started = time.perf_counter()
    seen_a, seen_b = _scan(source), _scan(target)
    same = seen_a.keys() == seen_b.keys() and all(
        np.allclose(seen_a[key][0], seen_b[key][0], atol=1e-6) and seen_a[key][1] == seen_b[key][1]
        for key in seen_a
    )
    verify_seconds = time.perf_counter() - started
    assert len(seen_b) == len(points), "qdrant-client migrate lost points"
    if not same:
        print("note: the peer's copy differs from its source beyond 1e-6")
    source.close()
    target.close()
    return migrate_seconds, verify_seconds


def _scan(client: QdrantClient) -> dict[str, tuple[np.ndarray, dict]]:
    found: dict[str, tuple[np.ndarray, dict]] = {}
    offset = None
    while True:
        records, offset = client.scroll(COLLECTION, limit=1000, offset=offset, with_vectors=True)
        for record in records:
            found[str(record.id)] = (np.asarray(record.vector, dtype=np.float32),
                                     dict(record.payload or {}))
        if offset is None:
            return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=100_000, help="points (default 100,000)")
    parser.add_argument("--dim", type=int, default=384, help="dimension (default 384)")
    parser.add_argument("--batch-size", type=int, default=1000, help="batch size (default 1000)")
    args = parser.parse_args()
    points = make_points(args.n, args.dim)
    with tempfile.TemporaryDirectory(prefix="bench-migrate-") as directory:
        work = Path(directory)
        migrate_ours, verify_ours = asyncio.run(ours(work, points, args.dim, args.batch_size))
        migrate_peer, verify_peer = peer(work, points, args.dim, args.batch_size)
    n = args.n
    print(f"{n} points, {args.dim}-d, batch {args.batch_size}")
    print(ratio_line("migrate edge->edge (points/s)", n / migrate_ours,
                     "qdrant-client migrate local", n / migrate_peer, "pt/s"))
    print(ratio_line("verify edge+edge (points/s)", n / verify_ours,
                     "hand check local+local", n / verify_peer, "pt/s"))
    print(f"migrate {migrate_ours:.2f} s (target >= 20000 pt/s: "
          f"{'met' if n / migrate_ours >= 20_000 else 'NOT met'}); "
          f"verify {verify_ours:.2f} s (target 100k < 10 s, i.e. >= 10000 pt/s: "
          f"{'met' if n / verify_ours >= 10_000 else 'NOT met'})")


if __name__ == "__main__":
    main()
