"""Qdrant point ids may be unsigned integers as well as UUIDs: a collection made by another tool
with integer ids migrates into the Edge store (directly and through a JSONL export) with every
checksum kept.

The source is written by qdrant-client itself in local mode (``QdrantClient(path=...)``), the way
such a collection exists on an operator's disk.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
from qdrant_client import QdrantClient, models

from email_sender.ops.jsonl import JsonlStore
from email_sender.ops.migrate import migrate
from email_sender.ops.verify import verify
from email_sender.vectors.edge import EdgeVectorStore
from email_sender.vectors.server import ServerVectorStore

DIM = 16
COUNT = 120
MIXED_UUID = str(uuid.UUID(int=12345))


def write_client_collection(path: Path) -> list[int | str]:
    """A qdrant-client local store with integer ids 0..COUNT-2, the largest u64, and one UUID."""
    rng = np.random.default_rng(11)
    ids: list[int | str] = [*range(COUNT - 2), 2**64 - 1, MIXED_UUID]
    client = QdrantClient(path=str(path))
    try:
        client.create_collection(
            "legacy", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
        client.upsert("legacy", points=[
            models.PointStruct(id=pid, vector=rng.normal(size=DIM).astype(np.float32).tolist(),
                               payload={"n": n, "kind": "legacy"})
            for n, pid in enumerate(ids)
        ])
    finally:
        client.close()
    return ids


async def test_integer_ids_migrate_from_qdrant_client_into_edge(tmp_path: Path) -> None:
    ids = write_client_collection(tmp_path / "client")
    source = ServerVectorStore(path=tmp_path / "client")
    target = EdgeVectorStore(tmp_path / "edge")
    report = await migrate(source, target, batch_size=32, state_path=tmp_path / "s.json")
    assert [c.copied for c in report.collections] == [COUNT]
    check = await verify(source, target)
    assert check.identical, check.as_dict()

    found = await target.retrieve("legacy", ["0", str(2**64 - 1), MIXED_UUID])
    assert sorted(point.payload["n"] for point in found) == [0, COUNT - 2, COUNT - 1]
    assert await target.count("legacy") == len(ids)

    # Through the portable export and back: the ids stay what they were.
    export = JsonlStore(tmp_path / "legacy.jsonl.gz")
    await migrate(target, export, state_path=tmp_path / "e.json")
    await export.close()
    reread = JsonlStore(tmp_path / "legacy.jsonl.gz")
    copy = EdgeVectorStore(tmp_path / "copy")
    await migrate(reread, copy, state_path=tmp_path / "c.json")
    assert (await verify(target, copy)).identical
    assert {p.id async for batch in copy.scroll("legacy") for p in batch} == {
        str(pid) for pid in ids}
    for store in (source, target, reread, copy):
        await store.close()


def test_the_cli_migrates_integer_ids(tmp_path: Path) -> None:
    write_client_collection(tmp_path / "client")
    result = subprocess.run(
        [sys.executable, "-m", "email_sender", "vectors", "migrate",
         "--from", f"local://{tmp_path / 'client'}", "--to", f"edge://{tmp_path / 'edge'}"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "CI": "true"})
    assert result.returncode == 0, result.stderr
    assert "is not a UUID" not in result.stderr + result.stdout
    verified = subprocess.run(
        [sys.executable, "-m", "email_sender", "vectors", "verify",
         "--from", f"local://{tmp_path / 'client'}", "--to", f"edge://{tmp_path / 'edge'}"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "CI": "true"})
    assert verified.returncode == 0, verified.stdout + verified.stderr
