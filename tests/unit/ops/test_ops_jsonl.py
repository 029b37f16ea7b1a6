"""The JSONL export as a store, the URI helpers, and the verify fingerprint."""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path

import numpy as np
import pytest

from email_sender.errors import Conflict, DimensionMismatch, IntegrityError, ValidationError
from email_sender.ops.jsonl import JsonlStore
from email_sender.ops.uris import (
    default_state_path,
    open_store,
    same_store,
    store_location,
)
from email_sender.ops.verify import _fingerprint
from email_sender.vectors.checksums import DigestAccumulator, point_checksum
from email_sender.vectors.store import Point

DIM = 8


def points(count: int, seed: int = 1) -> list[Point]:
    rng = np.random.default_rng(seed)
    return [
        Point(str(uuid.UUID(int=int(rng.integers(1, 2**62)))),
              rng.normal(size=DIM).astype(np.float32),
              {"subject": f"Réservation n°{n}", "tags": ["booking"], "created_at": 1.7e9 + n / 7,
               "campaign": None})
        for n in range(count)
    ]


async def stored(store: JsonlStore, name: str) -> list[Point]:
    return [point async for batch in store.scroll(name, batch_size=3) for point in batch]


@pytest.mark.parametrize("file_name", ["export.jsonl", "export.jsonl.gz"])
async def test_round_trip_is_bit_exact(tmp_path: Path, file_name: str) -> None:
    written = points(10)
    store = JsonlStore(tmp_path / file_name)
    await store.ensure_collection("emails", DIM, "Dot", {"tags": "keyword"})
    await store.upsert("emails", written[:6])
    await store.upsert("emails", written[4:])  # ids 4 and 5 again: still one line each
    await store.close()

    opened = open_store(f"jsonl://{tmp_path / file_name}", must_exist=True)
    assert isinstance(opened, JsonlStore)
    info = await opened.collection_info("emails")
    assert (info.points_count, info.dimension, info.distance) == (10, DIM, "Dot")
    assert info.payload_indexes == {"tags": "keyword"}
    back = await stored(opened, "emails")
    assert [p.id for p in back] == [p.id for p in written]
    for mine, theirs in zip(written, back, strict=True):
        assert np.asarray(theirs.vector).tobytes() == np.asarray(mine.vector).tobytes()
        assert theirs.payload == mine.payload
    found = await opened.retrieve("emails", [written[3].id], with_vectors=False)
    assert [(p.id, p.vector) for p in found] == [(written[3].id, None)]
    await opened.close()


async def test_rewrite_keeps_other_collections_and_applies_deletes(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    store = JsonlStore(path)
    for name in ("emails", "task_vectors"):
        await store.ensure_collection(name, DIM, "Cosine")
        await store.upsert(name, points(5, seed=len(name)))
    await store.close()

    again = JsonlStore(path)
    doomed = points(5, seed=len("emails"))[0].id
    await again.delete("emails", [doomed])
    await again.close()
    final = JsonlStore(path)
    assert await final.list_collections() == ["emails", "task_vectors"]
    assert await final.count("emails") == 4 and await final.count("task_vectors") == 5
    assert doomed not in {p.id for p in await stored(final, "emails")}
    await final.close()
    assert [p.name for p in tmp_path.iterdir()] == ["e.jsonl"]  # no work files left behind


async def test_a_changed_byte_or_a_missing_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl.gz"
    store = JsonlStore(path)
    await store.ensure_collection("emails", DIM, "Cosine")
    await store.upsert("emails", points(4))
    await store.close()
    lines = gzip.decompress(path.read_bytes()).decode().splitlines(keepends=True)

    edited = json.loads(lines[2])
    edited["payload"]["subject"] = "changed"
    path.write_bytes(gzip.compress("".join([*lines[:2], json.dumps(edited) + "\n",
                                            *lines[3:]]).encode()))
    with pytest.raises(IntegrityError, match="does not match its checksum"):
        await stored(JsonlStore(path), "emails")

    path.write_bytes(gzip.compress("".join(lines[:-1]).encode()))
    with pytest.raises(IntegrityError, match="has 3 points, its header says 4"):
        await JsonlStore(path).list_collections()

    path.write_bytes(gzip.compress("".join(lines).encode())[:-30])
    with pytest.raises(IntegrityError, match="cannot read"):
        await JsonlStore(path).list_collections()


async def test_store_rules_hold(tmp_path: Path) -> None:
    store = JsonlStore(tmp_path / "e.jsonl")
    await store.ensure_collection("emails", DIM, "Cosine")
    with pytest.raises(DimensionMismatch, match="got 4, expected 8"):
        await store.upsert("emails", [Point(str(uuid.uuid4()), [0.1] * 4, {})])
    with pytest.raises(DimensionMismatch):
        await store.ensure_collection("emails", 16, "Cosine")
    with pytest.raises(Conflict, match="cannot be searched"):
        await store.search("emails", [0.0] * DIM)
    with pytest.raises(ValidationError, match="not a valid name"):
        await store.ensure_collection("../x", DIM, "Cosine")
    await store.close()


def test_uris_and_state_paths(tmp_path: Path) -> None:
    assert store_location("jsonl:///data/x.jsonl.gz") == Path("/data/x.jsonl.gz")
    assert store_location("qdrant://db:6333?api_key=s3cret") is None
    with pytest.raises(ValidationError, match=r"must end \.jsonl"):
        store_location("jsonl:///data/x.csv")
    with pytest.raises(ValidationError, match="unknown scheme"):
        open_store("ftp://host/x")
    assert default_state_path(f"edge://{tmp_path}/qdrant") == tmp_path / "qdrant.migrate-state.json"
    assert "s3cret" not in str(default_state_path("qdrant://db:6333?api_key=s3cret"))
    assert same_store(f"edge://{tmp_path}/q", f"edge://{tmp_path}/./q")
    assert not same_store(f"edge://{tmp_path}/q", f"local://{tmp_path}/r")


def test_verify_fingerprint_is_the_point_checksum() -> None:
    for point in points(5):
        accumulator = DigestAccumulator()
        checksum, _, _ = _fingerprint(point, accumulator)
        assert checksum == point_checksum(point.id, point.vector, point.payload)


async def test_a_discarded_export_leaves_no_file(tmp_path: Path) -> None:
    store = JsonlStore(tmp_path / "e.jsonl")
    await store.ensure_collection("emails", DIM, "Cosine")
    await store.upsert("emails", points(3))
    await store.discard()
    assert list(tmp_path.iterdir()) == []
