"""Give a collection made before search by words its sparse vector, keeping every dense vector.

A Qdrant collection cannot gain a vector once made, so the upgrade goes through a staging
collection, ``<name>.upgrading``, in four steps, each checked before the next:

1. **copy**: every point of ``<name>`` goes to the staging collection with its dense vector and
   payload as they are, plus the sparse vector and ``lang`` of its text, read from SQL (an email,
   or a received message). A point SQL does not know keeps no sparse vector. Its checksum is
   computed again over both vectors.
2. **verify the copy**: the staging collection holds as many points; each one matches its own
   checksum, and its dense vector is the original's, byte for byte.
3. **swap**: ``<name>`` is dropped, made again with the sparse vector, and filled from the
   staging collection, point for point.
4. **verify the swap**: the collection digests of ``<name>`` and the staging collection agree;
   only then is the staging collection dropped.

Nothing is lost at any moment: until step 3 the original is untouched, and from step 3 on the
verified staging collection holds everything. A run that stops during step 3 or 4 is finished
by running it again (the original is gone or incomplete, the staging collection is whole). The
vector nodes should be stopped meanwhile: an embedded store is locked by the running service
anyway.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select

from email_sender.db.engine import Database
from email_sender.db.schema import emails, inbound_messages
from email_sender.errors import IntegrityError, NotFound
from email_sender.inbound.analysis import inbound_words
from email_sender.vectors.checksums import DigestAccumulator, point_checksum
from email_sender.vectors.payloads import email_words
from email_sender.vectors.sparse import TextAnalyser
from email_sender.vectors.store import CollectionInfo, Point, VectorStore

logger = logging.getLogger(__name__)

STAGING_SUFFIX = ".upgrading"
BATCH_SIZE = 256

Progress = Callable[[int], None]


@dataclass(frozen=True)
class UpgradeResult:
    collection: str
    points: int
    # None when a run resumed after the copy, which it does not count again.
    with_words: int | None
    seconds: float
    already: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "points": self.points,
            "with_words": self.with_words,
            "seconds": round(self.seconds, 3),
            "already": self.already,
        }


async def upgrade(
    db: Database,
    store: VectorStore,
    analyser: TextAnalyser,
    name: str,
    *,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
) -> UpgradeResult:
    """Upgrade ``name`` in place (see the module docstring); nothing to do if it has one."""
    started = time.perf_counter()
    staging = name + STAGING_SUFFIX
    present = set(await store.list_collections())
    if name not in present and staging not in present:
        raise NotFound(f"collection {name!r} does not exist", collection=name)
    if name in present and await store.has_sparse(name) and staging not in present:
        count = await store.count(name)
        return UpgradeResult(name, count, 0, time.perf_counter() - started, already=True)
    if name in present and not await store.has_sparse(name):
        # A staging collection beside an untouched original is a copy that did not finish.
        if staging in present:
            await store.delete_collection(staging)
        info = await store.collection_info(name)
        with_words = await _copy_with_words(
            db, store, analyser, info, staging, batch_size, progress
        )
        await _verify_copy(store, name, staging, batch_size)
    else:
        with_words = None
    info = await store.collection_info(staging)
    await store.delete_collection(name)
    await store.ensure_collection(
        name, info.dimension, info.distance, info.payload_indexes, sparse=True
    )
    async for batch in store.scroll(staging, batch_size=batch_size, with_vectors=True):
        await store.upsert(name, batch, wait=True)
    await _verify_swap(store, name, staging, batch_size)
    points = await store.count(name)
    await store.delete_collection(staging)
    await store.optimize(name)
    result = UpgradeResult(name, points, with_words, time.perf_counter() - started)
    logger.info("collection_upgraded", extra=result.as_dict())
    return result


async def _copy_with_words(
    db: Database,
    store: VectorStore,
    analyser: TextAnalyser,
    info: CollectionInfo,
    staging: str,
    batch_size: int,
    progress: Progress | None,
) -> int:
    indexes = {**info.payload_indexes, "lang": "keyword"}
    await store.ensure_collection(staging, info.dimension, info.distance, indexes, sparse=True)
    with_words = 0
    async for batch in store.scroll(info.name, batch_size=batch_size, with_vectors=True):
        texts = await _texts(db, [point.id for point in batch])
        known = [point for point in batch if point.id in texts]
        analysed = await analyser.analyse_off_loop([texts[p.id] for p in known], sparse=True)
        words = dict(zip([p.id for p in known], analysed, strict=True))
        upgraded = []
        for point in batch:
            found = words.get(point.id)
            if found is None:
                upgraded.append(point)
                continue
            payload = {key: value for key, value in point.payload.items() if key != "checksum"}
            payload["lang"] = found.language
            assert point.vector is not None
            checksum = point_checksum(point.id, point.vector, payload, found.sparse)
            upgraded.append(
                Point(point.id, point.vector, {**payload, "checksum": checksum}, found.sparse)
            )
        await store.upsert(staging, upgraded, wait=True)
        with_words += len(known)
        if progress is not None:
            progress(len(batch))
    return with_words


async def _texts(db: Database, ids: Sequence[str]) -> dict[str, str]:
    """The words of each id SQL knows: an email's, or a received message's."""
    found: dict[str, str] = {}
    async with db.connect() as connection:
        rows = await connection.execute(
            select(emails.c.id, emails.c.subject, emails.c.text_body, emails.c.html_body).where(
                emails.c.id.in_(ids)
            )
        )
        found.update((row.id, email_words(row)) for row in rows)
        rest = [pid for pid in ids if pid not in found]
        if rest:
            received = await connection.execute(
                select(
                    inbound_messages.c.id, inbound_messages.c.subject, inbound_messages.c.own_words
                ).where(inbound_messages.c.id.in_(rest))
            )
            found.update(
                (row.id, inbound_words({"subject": row.subject, "own_words": row.own_words}))
                for row in received
            )
    return found


async def _verify_copy(store: VectorStore, name: str, staging: str, batch_size: int) -> None:
    """Same points, each whole under its checksum, each dense vector unchanged."""
    dense: dict[str, bytes] = {}
    async for batch in store.scroll(name, batch_size=batch_size, with_vectors=True):
        dense.update((point.id, _dense_digest(point)) for point in batch)
    seen = 0
    async for batch in store.scroll(staging, batch_size=batch_size, with_vectors=True):
        for point in batch:
            seen += 1
            if dense.get(point.id) != _dense_digest(point):
                raise IntegrityError(f"upgrade of {name!r}: point {point.id} changed its vector")
            payload = dict(point.payload)
            stated = payload.pop("checksum", None)
            assert point.vector is not None
            if stated is not None and stated != point_checksum(
                point.id, point.vector, payload, point.sparse
            ):
                raise IntegrityError(f"upgrade of {name!r}: point {point.id} fails its checksum")
    if seen != len(dense):
        raise IntegrityError(f"upgrade of {name!r}: {seen} points copied of {len(dense)}")


async def _verify_swap(store: VectorStore, name: str, staging: str, batch_size: int) -> None:
    mine, theirs = await _digest(store, name, batch_size), await _digest(store, staging, batch_size)
    if mine != theirs:
        raise IntegrityError(
            f"upgrade of {name!r}: the collection differs from {staging!r} after the swap; "
            "run the upgrade again"
        )


async def _digest(store: VectorStore, name: str, batch_size: int) -> str:
    accumulator = DigestAccumulator()
    async for batch in store.scroll(name, batch_size=batch_size, with_vectors=True):
        for point in batch:
            assert point.vector is not None
            accumulator.add_point(point.id, point.vector, point.payload, point.sparse)
    return accumulator.hexdigest()


def _dense_digest(point: Point) -> bytes:
    return hashlib.blake2b(np.asarray(point.vector, dtype="<f4").tobytes(), digest_size=16).digest()
