"""One contract, every VectorStore: Qdrant Edge, qdrant-client local mode, and a real server.

The server run needs ``QDRANT_URL`` (and ``QDRANT_API_KEY`` if it wants one).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from email_sender.errors import (
    DimensionMismatch,
    NotFound,
    ValidationError,
    VectorStoreLocked,
    VectorStoreUnavailable,
)
from email_sender.vectors.checksums import point_checksum
from email_sender.vectors.edge import EdgeVectorStore
from email_sender.vectors.server import ServerVectorStore
from email_sender.vectors.store import Point, VectorStore

DIM = 8
INDEXES = {"tags": "keyword", "to": "keyword", "created_at": "float", "direction": "keyword"}
BACKENDS = ["edge", "local", pytest.param("server", marks=pytest.mark.skipif(
    not os.environ.get("QDRANT_URL"), reason="QDRANT_URL is not set: no Qdrant server to test"
))]


def _open(kind: str, tmp_path: Path) -> VectorStore:
    if kind == "edge":
        return EdgeVectorStore(tmp_path / "qdrant")
    if kind == "local":
        return ServerVectorStore(location=":memory:")
    return ServerVectorStore(os.environ["QDRANT_URL"], api_key=os.environ.get("QDRANT_API_KEY"))


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorStore]:
    opened = _open(request.param, tmp_path)
    yield opened
    await opened.close()


@pytest.fixture
async def collection(store: VectorStore) -> AsyncIterator[str]:
    name = f"test_{uuid.uuid4().hex[:12]}"
    await store.ensure_collection(name, DIM, "Cosine", INDEXES)
    yield name
    await store.delete_collection(name)


def unit(*components: float) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[: len(components)] = components
    return vector / np.linalg.norm(vector)


def new_id() -> str:
    return str(uuid.uuid4())


def email_point(vector: np.ndarray, **payload: object) -> Point:
    return Point(new_id(), vector, {"direction": "outbound", **payload})


def expected_indexes(store: VectorStore) -> dict[str, str]:
    # qdrant-client's local mode has no payload indexes at all.
    return {} if store.backend == "qdrant-local" else INDEXES


async def test_create_lists_and_describes_the_collection(store: VectorStore) -> None:
    name = f"test_{uuid.uuid4().hex[:12]}"
    assert name not in await store.list_collections()

    await store.ensure_collection(name, DIM, "Cosine", {"tags": "keyword"})
    await store.ensure_collection(name, DIM, "Cosine", INDEXES)  # adds the missing indexes
    info = await store.collection_info(name)

    assert name in await store.list_collections()
    assert (info.name, info.points_count, info.dimension, info.distance) == (name, 0, DIM, "Cosine")
    assert info.payload_indexes == expected_indexes(store)
    assert info.backend == store.backend
    await store.delete_collection(name)
    assert name not in await store.list_collections()
    await store.delete_collection(name)  # deleting what is gone is not an error


async def test_ensure_refuses_another_dimension_for_an_existing_collection(
    store: VectorStore, collection: str
) -> None:
    with pytest.raises(DimensionMismatch, match=f"got {DIM * 2}, expected {DIM}"):
        await store.ensure_collection(collection, DIM * 2, "Cosine", INDEXES)


async def test_upsert_retrieve_count_round_trip(store: VectorStore, collection: str) -> None:
    payload = {
        "subject": "Réunion mardi ✓", "tags": ["a", "b"], "created_at": 1_700_000_000,
        "score": 0.25, "flag": True, "nothing": None, "meta": {"k": [1, 2]},
    }
    first = Point(new_id(), unit(1, 2, 3), payload)
    second = email_point(unit(0, 0, 1))

    await store.upsert(collection, [first, second])
    [got] = await store.retrieve(collection, [first.id], with_vectors=True)
    [bare] = await store.retrieve(collection, [second.id])

    assert await store.count(collection) == 2
    assert (await store.collection_info(collection)).points_count == 2
    assert got.id == first.id and got.payload == payload
    assert got.vector is not None
    np.testing.assert_allclose(got.vector, first.vector, atol=1e-6)
    assert point_checksum(got.id, got.vector, got.payload) == point_checksum(
        first.id, got.vector, payload
    )
    assert bare.vector is None
    assert await store.retrieve(collection, [new_id()]) == []


async def test_upsert_replaces_a_point_with_the_same_id(
    store: VectorStore, collection: str
) -> None:
    point = email_point(unit(1), status="queued")
    await store.upsert(collection, [point])
    await store.upsert(collection, [Point(point.id, unit(0, 1), {"status": "sent"})])

    [got] = await store.retrieve(collection, [point.id], with_vectors=True)

    assert await store.count(collection) == 1
    assert got.payload == {"status": "sent"}
    np.testing.assert_allclose(got.vector, unit(0, 1), atol=1e-6)  # type: ignore[arg-type]


async def test_search_ranks_nearest_first_with_payload(store: VectorStore, collection: str) -> None:
    near, middle, far = (email_point(unit(1, s), rank=s) for s in (0.1, 1.0, 10.0))
    await store.upsert(collection, [far, near, middle])

    hits = await store.search(collection, unit(1), limit=2)

    assert [hit.id for hit in hits] == [near.id, middle.id]
    assert hits[0].score > hits[1].score
    assert hits[0].score == pytest.approx(float(unit(1) @ unit(1, 0.1)), abs=1e-5)
    assert hits[0].payload == near.payload


async def test_filters_match_any_and_range(store: VectorStore, collection: str) -> None:
    points = {
        "old_invoice": email_point(unit(1), tags=["invoice"], to="a@x.test", created_at=100),
        "new_invoice": email_point(unit(1, 1), tags=["invoice", "eu"], to="b@x.test",
                                   created_at=300),
        "newsletter": email_point(unit(0, 1), tags=["news"], to="c@x.test", created_at=200),
    }
    await store.upsert(collection, list(points.values()))

    async def found(filter: dict) -> set[str]:
        hits = await store.search(collection, unit(1), limit=10, filter=filter)
        return {name for name, p in points.items() if p.id in {hit.id for hit in hits}}

    assert await found({"tags": "invoice"}) == {"old_invoice", "new_invoice"}
    assert await found({"to": ["a@x.test", "c@x.test"]}) == {"old_invoice", "newsletter"}
    assert await found({"created_at": {"gte": 200, "lte": 300}}) == {"new_invoice", "newsletter"}
    assert await found({"created_at": {"gt": 200}}) == {"new_invoice"}
    assert await found({"tags": "invoice", "created_at": {"lt": 200}}) == {"old_invoice"}
    assert await found({"direction": "inbound"}) == set()
    assert await found({}) == set(points)


@pytest.mark.parametrize(
    "bad", [{"tags": 1.5}, {"to": []}, {"to": ["a", 1]}, {"created_at": {"from": 1}},
            {"created_at": {"gte": "yesterday"}}],
)
async def test_malformed_filters_are_refused(
    store: VectorStore, collection: str, bad: dict
) -> None:
    with pytest.raises(ValidationError, match="filter"):
        await store.search(collection, unit(1), filter=bad)


async def test_delete_removes_points_from_count_retrieve_and_search(
    store: VectorStore, collection: str
) -> None:
    keep, drop = email_point(unit(1)), email_point(unit(1, 0.01))
    await store.upsert(collection, [keep, drop])

    await store.delete(collection, [drop.id])

    assert await store.count(collection) == 1
    assert (await store.collection_info(collection)).points_count == 1
    assert await store.retrieve(collection, [drop.id]) == []
    assert [hit.id for hit in await store.search(collection, unit(1), limit=5)] == [keep.id]


async def test_scroll_yields_every_point_once(store: VectorStore, collection: str) -> None:
    points = [email_point(unit(1, n), n=n) for n in range(25)]
    await store.upsert(collection, points)

    batches = [batch async for batch in store.scroll(collection, batch_size=7)]
    seen = [point for batch in batches for point in batch]

    assert all(1 <= len(batch) <= 7 for batch in batches)
    assert sorted(point.id for point in seen) == sorted(point.id for point in points)
    by_id = {point.id: point for point in points}
    for point in seen:
        assert point.payload == by_id[point.id].payload
        np.testing.assert_allclose(point.vector, by_id[point.id].vector, atol=1e-6)  # type: ignore[arg-type]


async def test_scroll_page_walks_every_point_once_by_its_next_offset(
    store: VectorStore, collection: str
) -> None:
    points = [email_point(unit(1, n), n=n) for n in range(12)]
    await store.upsert(collection, points)

    pages: list[list[Point]] = []
    offset: str | None = None
    while True:
        page, offset = await store.scroll_page(collection, limit=5, offset=offset)
        pages.append(page)
        if offset is None:
            break
        assert offset not in {point.id for point in page}

    assert [len(page) for page in pages] == [5, 5, 2]
    seen = [point for page in pages for point in page]
    assert sorted(point.id for point in seen) == sorted(point.id for point in points)
    assert all(point.vector is None for point in seen)
    by_id = {point.id: point for point in points}
    assert all(point.payload == by_id[point.id].payload for point in seen)
    # The same order as scroll, and a page starts at its offset.
    assert [p.id async for batch in store.scroll(collection, 5) for p in batch] == [
        point.id for point in seen
    ]
    second, _ = await store.scroll_page(collection, limit=3, offset=pages[1][0].id)
    assert [point.id for point in second] == [point.id for point in pages[1][:3]]


async def test_scroll_page_with_vectors_and_its_refusals(
    store: VectorStore, collection: str
) -> None:
    point = email_point(unit(1, 2), tags=["x"])
    await store.upsert(collection, [point])

    [got], following = await store.scroll_page(collection, limit=10, with_vectors=True)
    assert following is None
    np.testing.assert_allclose(got.vector, point.vector, atol=1e-6)  # type: ignore[arg-type]
    # An offset no point has starts at the next id in the store's order.
    after, following = await store.scroll_page(collection, limit=1, offset=str(uuid.uuid4()))
    assert {p.id for p in after} <= {point.id} and following is None
    with pytest.raises(ValidationError, match="offset"):
        await store.scroll_page(collection, offset="not-an-id")
    with pytest.raises(ValidationError, match="limit"):
        await store.scroll_page(collection, limit=0)
    with pytest.raises(NotFound):
        await store.scroll_page(f"missing_{uuid.uuid4().hex[:8]}")


async def test_dimension_mismatch_is_refused_and_nothing_is_stored(
    store: VectorStore, collection: str
) -> None:
    good = email_point(unit(1))
    bad = Point(new_id(), np.ones(DIM + 1, dtype=np.float32), {})

    refused = f"invalid vector size: got {DIM + 1}, expected {DIM}"
    with pytest.raises(DimensionMismatch, match=refused):
        await store.upsert(collection, [good, bad])
    with pytest.raises(DimensionMismatch, match=f"got 3, expected {DIM}"):
        await store.search(collection, [1.0, 0.0, 0.0])

    assert await store.count(collection) == 0


@pytest.mark.parametrize("bad", ["email-1", "-1", str(2**64), "1.5", ""])
async def test_ids_must_be_unsigned_integers_or_uuids(
    store: VectorStore, collection: str, bad: str
) -> None:
    with pytest.raises(ValidationError, match="not an unsigned 64-bit integer or a UUID"):
        await store.upsert(collection, [Point(bad, unit(1), {})])
    assert await store.count(collection) == 0


async def test_integer_ids_round_trip_beside_uuids(store: VectorStore, collection: str) -> None:
    """Qdrant allows unsigned integer ids; collections made by other tools use them."""
    uuid_point = email_point(unit(0, 1))
    points = [Point("0", unit(1), {"n": 0}), Point(str(2**64 - 1), unit(1, 1), {"n": 1}),
              uuid_point]
    await store.upsert(collection, points)
    got = await store.retrieve(collection, ["0", str(2**64 - 1), uuid_point.id],
                               with_vectors=True)
    assert sorted(point.id for point in got) == sorted(["0", str(2**64 - 1), uuid_point.id])
    for point in got:
        original = next(p for p in points if p.id == point.id)
        assert point.payload == original.payload
        assert np.allclose(point.vector, original.vector, atol=1e-6)  # type: ignore[arg-type]
    hits = await store.search(collection, unit(1), limit=1)
    assert hits[0].id == "0"
    scrolled = [point.id async for batch in store.scroll(collection, 2) for point in batch]
    assert sorted(scrolled) == sorted(p.id for p in points)
    await store.delete(collection, ["0"])
    assert await store.count(collection) == 2


async def test_unknown_collection_is_not_found(store: VectorStore) -> None:
    missing = f"missing_{uuid.uuid4().hex[:8]}"
    with pytest.raises(NotFound, match=missing):
        await store.collection_info(missing)
    with pytest.raises(NotFound):
        await store.upsert(missing, [email_point(unit(1))])
    with pytest.raises(NotFound):
        await store.search(missing, unit(1))


async def test_unsafe_collection_names_are_refused(store: VectorStore) -> None:
    with pytest.raises(ValidationError, match="collection"):
        await store.ensure_collection("../escape", DIM)


async def test_optimize_keeps_the_data(store: VectorStore, collection: str) -> None:
    points = [email_point(unit(1, n)) for n in range(5)]
    await store.upsert(collection, points)

    await store.optimize(collection)

    assert await store.count(collection) == 5
    assert len(await store.search(collection, unit(1), limit=10)) == 5


# Qdrant Edge only: the store owns a directory on disk.


async def test_edge_reopen_after_close_keeps_points_and_indexes(tmp_path: Path) -> None:
    store = EdgeVectorStore(tmp_path / "qdrant")
    await store.ensure_collection("emails", DIM, "Cosine", INDEXES)
    point = email_point(unit(1, 2), tags=["kept"])
    await store.upsert("emails", [point])
    await store.close()

    reopened = EdgeVectorStore(tmp_path / "qdrant")
    info = await reopened.collection_info("emails")
    [got] = await reopened.retrieve("emails", [point.id], with_vectors=True)
    hits = await reopened.search("emails", unit(1, 2), limit=1, filter={"tags": "kept"})
    await reopened.close()

    assert (info.points_count, info.dimension, info.payload_indexes) == (1, DIM, INDEXES)
    assert got.payload == point.payload
    np.testing.assert_allclose(got.vector, point.vector, atol=1e-6)  # type: ignore[arg-type]
    assert [hit.id for hit in hits] == [point.id]


async def test_edge_write_without_wait_survives_a_killed_process(tmp_path: Path) -> None:
    directory = tmp_path / "qdrant"
    point_id = new_id()
    child = textwrap.dedent(
        f"""
        import asyncio, os, sys
        from pathlib import Path
        from email_sender.vectors.edge import EdgeVectorStore
        from email_sender.vectors.store import Point

        async def main():
            store = EdgeVectorStore(Path({str(directory)!r}))
            await store.ensure_collection("emails", {DIM})
            await store.upsert("emails", [Point({point_id!r}, [1.0] * {DIM}, {{}})], wait=False)
            os._exit(0)  # no flush, no close

        asyncio.run(main())
        """
    )
    subprocess.run([sys.executable, "-c", child], check=True, timeout=60)

    store = EdgeVectorStore(directory)
    try:
        assert [p.id for p in await store.retrieve("emails", [point_id])] == [point_id]
    finally:
        await store.close()


def test_edge_second_process_gets_a_clear_lock_error(tmp_path: Path) -> None:
    directory = tmp_path / "qdrant"
    child = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from email_sender.errors import VectorStoreLocked
        from email_sender.vectors.edge import EdgeVectorStore
        try:
            EdgeVectorStore(Path(sys.argv[1]))
        except VectorStoreLocked as exc:
            print(exc.code, exc, sep="|")
            sys.exit(3)
        print("opened")
        """
    )
    holder = EdgeVectorStore(directory)
    locked = subprocess.run(
        [sys.executable, "-c", child, str(directory)], capture_output=True, text=True, timeout=60
    )
    _close_now(holder)
    freed = subprocess.run(
        [sys.executable, "-c", child, str(directory)], capture_output=True, text=True, timeout=60
    )

    assert locked.returncode == 3, locked.stderr
    code, message = locked.stdout.strip().split("|", 1)
    assert code == "vector_store_locked"
    assert str(directory) in message and f"pid {os.getpid()}" in message
    assert freed.returncode == 0 and freed.stdout.strip() == "opened", freed.stderr


async def test_edge_second_store_in_the_same_process_is_refused(tmp_path: Path) -> None:
    first = EdgeVectorStore(tmp_path / "qdrant")
    with pytest.raises(VectorStoreLocked, match="in use by another process"):
        EdgeVectorStore(tmp_path / "qdrant")
    await first.close()

    with pytest.raises(VectorStoreUnavailable, match="closed"):
        await first.collection_info("emails")
    second = EdgeVectorStore(tmp_path / "qdrant")
    await second.close()


def _close_now(store: EdgeVectorStore) -> None:
    asyncio.run(store.close())
