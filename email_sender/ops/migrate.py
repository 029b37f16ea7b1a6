"""Copy vector collections from one store to another, resumably.

Every target collection is created (or checked) first with the source's dimension, distance and
payload indexes, so a dimension mismatch is refused before a single point moves. Points then go
over in batches: scroll from the source, upsert into the target with ``wait=True``, and only then
record the progress (points copied in scroll order, and the last id) in a state file. A store
scrolls in a stable order, so ``resume`` scrolls again, skips what the state file says is done,
and goes on from there; upserts are idempotent, so a batch copied twice is harmless. The state
file is deleted when every collection is done.

Resuming is checked, not trusted: the state must name the same source and target, the last id
it records must be at the recorded position of the scroll and present in the target; otherwise
that collection is copied again from its start.

Between two Qdrant Edge stores nothing is converted: a collection the target lacks is copied as
the shard's files (points, payload indexes and HNSW graph; see
:meth:`~email_sender.vectors.edge.EdgeVectorStore.copy_collection_to`), one it has is copied page
by page as the engine holds the points. Either way ``verify`` then compares per-point checksums.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from email_sender.errors import Conflict, DimensionMismatch, EmailSenderError, ValidationError
from email_sender.ops.verify import resolve_collections
from email_sender.vectors.edge import EdgeVectorStore
from email_sender.vectors.store import VectorStore

logger = logging.getLogger(__name__)

STATE_FORMAT = "email-sender-migrate-state/1"
DEFAULT_BATCH_SIZE = 1000
MAX_BATCH_SIZE = 100_000

Progress = Callable[[int], None]
Write = Callable[[str, Sequence[Any], bool], Awaitable[None]]

# How a collection's points travel (CollectionMigration.method).
POINTS = "points"  # scroll Point objects, upsert them: any stores
EDGE_PAGES = "edge pages"  # edge → edge into an existing collection: engine points as they are
SHARD_FILES = "shard files"  # edge → edge into a new collection: the shard's files


class CollectionDimensionMismatch(DimensionMismatch):
    """The target collection holds vectors of another size than the source's."""

    def __init__(self, collection: str, source: int, target: int) -> None:
        super().__init__(source, target)
        self.collection = collection
        self.message = (
            f"collection {collection!r}: the source holds {source}-d vectors, the target "
            f"collection is {target}-d; drop the target collection or migrate elsewhere"
        )
        self.args = (self.message,)

    def __str__(self) -> str:
        return self.message


@dataclass
class CollectionMigration:
    collection: str
    source_points: int
    copied: int = 0
    skipped: int = 0
    seconds: float = 0.0
    created: bool = False
    restarted: str | None = None
    method: str = POINTS

    def as_dict(self) -> dict[str, Any]:
        rate = self.copied / self.seconds if self.seconds > 0 else 0.0
        return {
            "collection": self.collection,
            "source_points": self.source_points,
            "copied": self.copied,
            "skipped_as_done": self.skipped,
            "seconds": round(self.seconds, 3),
            "points_per_second": round(rate, 1),
            "created": self.created,
            "restarted": self.restarted,
            "method": self.method,
        }


@dataclass
class MigrationReport:
    source: str
    target: str
    state_path: str
    resumed: bool
    collections: list[CollectionMigration] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def copied(self) -> int:
        return sum(collection.copied for collection in self.collections)

    @property
    def points_per_second(self) -> float:
        return self.copied / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "state_path": self.state_path,
            "resumed": self.resumed,
            "copied": self.copied,
            "seconds": round(self.seconds, 3),
            "points_per_second": round(self.points_per_second, 1),
            "collections": [collection.as_dict() for collection in self.collections],
        }


def check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not (
        1 <= batch_size <= MAX_BATCH_SIZE
    ):
        raise ValidationError("batch_size", f"must be between 1 and {MAX_BATCH_SIZE}")
    return batch_size


class MigrationState:
    """The progress file: which collections are done and how far the others got."""

    def __init__(self, path: Path, source: str, target: str) -> None:
        self.path = path
        self.source = source
        self.target = target
        self.collections: dict[str, dict[str, Any]] = {}

    @classmethod
    def load(cls, path: Path, source: str, target: str) -> MigrationState | None:
        """The recorded state, None when there is none; refuses one for another migration."""
        if not path.exists():
            return None
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
            if recorded.get("format") != STATE_FORMAT:
                raise ValueError(f"not a {STATE_FORMAT} file")
            collections = dict(recorded["collections"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValidationError("state", f"cannot read {path}: {exc}") from exc
        if (recorded.get("source"), recorded.get("target")) != (source, target):
            raise ValidationError(
                "state",
                f"{path} records a migration from {recorded.get('source')} to "
                f"{recorded.get('target')}, not from {source} to {target}: "
                "pass another --state or run without --resume",
            )
        state = cls(path, source, target)
        state.collections = collections
        return state

    def progress_of(self, name: str) -> dict[str, Any]:
        return self.collections.setdefault(name, {"copied": 0, "last_id": None, "done": False})

    def save(self) -> None:
        """Write the whole state under a temporary name and rename it into place."""
        body = {
            "format": STATE_FORMAT,
            "source": self.source,
            "target": self.target,
            "updated_at": time.time(),
            "collections": self.collections,
        }
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(body, indent=1), encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as exc:
            raise ValidationError("state", f"cannot write {self.path}: {exc}") from exc

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


async def migrate(
    source: VectorStore,
    target: VectorStore,
    collections: Sequence[str] | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    resume: bool = False,
    state_path: Path,
    source_name: str = "source",
    target_name: str = "target",
    progress: Progress | None = None,
) -> MigrationReport:
    """Copy ``collections`` (all of the source's by default) into the target.

    ``source_name`` and ``target_name`` identify the stores in the state file (URIs without
    their query strings), so a resume against other stores is refused.
    """
    check_batch_size(batch_size)
    names = await resolve_collections(source, collections)
    state = MigrationState.load(state_path, source_name, target_name) if resume else None
    resumed = state is not None
    if state is None:
        state = MigrationState(state_path, source_name, target_name)
    report = MigrationReport(source_name, target_name, str(state_path), resumed)
    started = time.perf_counter()
    for name in names:
        report.collections.append(await _prepare_target(source, target, name))
    state.save()
    for outcome in report.collections:
        began = time.perf_counter()
        await _copy_collection(source, target, outcome, state, batch_size, progress)
        outcome.seconds = time.perf_counter() - began
    report.seconds = time.perf_counter() - started
    state.remove()
    logger.info("vectors_migrated", extra=report.as_dict())
    return report


async def _prepare_target(
    source: VectorStore, target: VectorStore, name: str
) -> CollectionMigration:
    info = await source.collection_info(name)
    outcome = CollectionMigration(name, await source.count(name))
    edge_to_edge = isinstance(source, EdgeVectorStore) and isinstance(target, EdgeVectorStore)
    if name in await target.list_collections():
        outcome.method = EDGE_PAGES if edge_to_edge else POINTS
        existing = await target.collection_info(name)
        if existing.dimension != info.dimension:
            raise CollectionDimensionMismatch(name, info.dimension, existing.dimension)
        if existing.sparse != info.sparse:
            raise Conflict(
                f"collection {name!r}: the source {_has(info.sparse)} a sparse vector and the "
                f"target {_has(existing.sparse)}; drop the target collection or migrate elsewhere",
                collection=name,
            )
    else:
        outcome.created = True
        if edge_to_edge:
            outcome.method = SHARD_FILES  # the copy creates the collection
            return outcome
    await target.ensure_collection(
        name, info.dimension, info.distance, info.payload_indexes, info.sparse
    )
    return outcome


def _has(sparse: bool) -> str:
    return "has" if sparse else "has no"


async def _copy_collection(
    source: VectorStore,
    target: VectorStore,
    outcome: CollectionMigration,
    state: MigrationState,
    batch_size: int,
    progress: Progress | None,
) -> None:
    name = outcome.collection
    recorded = state.progress_of(name)
    if recorded["done"]:
        outcome.skipped = int(recorded["copied"])
        if progress is not None:
            progress(outcome.skipped)
        return
    if outcome.method == SHARD_FILES:
        await _copy_shard(source, target, outcome, recorded, progress)
        state.save()
        return
    skip = int(recorded["copied"])
    if skip and not await _present(target, name, recorded["last_id"]):
        outcome.restarted = "the last recorded point is not in the target"
        skip = 0
    while True:
        restart = await _copy_from(source, target, outcome, state, batch_size, skip, progress)
        if restart is None:
            break
        logger.warning("migration_restarted", extra={"collection": name, "reason": restart})
        outcome.restarted, outcome.copied, skip = restart, 0, 0
    recorded["done"] = True
    state.save()


async def _copy_from(
    source: VectorStore,
    target: VectorStore,
    outcome: CollectionMigration,
    state: MigrationState,
    batch_size: int,
    skip: int,
    progress: Progress | None,
) -> str | None:
    """Copy every point after the first ``skip``; answer why to restart, or None when done."""
    name = outcome.collection
    recorded = state.progress_of(name)
    position = 0
    write: Write = target.upsert
    if outcome.method == EDGE_PAGES:
        assert isinstance(target, EdgeVectorStore)
        write = target.upsert_native
    async for ids, batch in _pages(source, name, batch_size, outcome.method):
        end = position + len(ids)
        if skip and position < skip <= end:
            if ids[skip - position - 1] != recorded["last_id"]:
                return "the source no longer scrolls in the recorded order"
            outcome.skipped = skip
        todo = batch[max(0, skip - position):]
        position = end
        if todo:
            await write(name, todo, True)
            outcome.copied += len(todo)
            recorded["copied"], recorded["last_id"] = position, ids[-1]
            state.save()
        if progress is not None:
            progress(len(ids))
    if skip > position:
        return "the source holds fewer points than the state records"
    return None


async def _pages(
    source: VectorStore, name: str, batch_size: int, method: str
) -> AsyncIterator[tuple[list[str], Sequence[Any]]]:
    """The source's points in scroll order, a page at a time: their ids, and what the target's
    writer takes (``Point`` objects, or the engine's own points between Edge stores)."""
    if method == EDGE_PAGES:
        assert isinstance(source, EdgeVectorStore)
        async for page in source.scroll_native(name, batch_size):
            yield page.ids, page.points
        return
    async for batch in source.scroll(name, batch_size=batch_size, with_vectors=True):
        yield [point.id for point in batch], batch


async def _copy_shard(
    source: VectorStore,
    target: VectorStore,
    outcome: CollectionMigration,
    recorded: dict[str, Any],
    progress: Progress | None,
) -> None:
    """Edge → edge into a new collection: copy the shard's files, then check the count."""
    assert isinstance(source, EdgeVectorStore) and isinstance(target, EdgeVectorStore)
    copied = await source.copy_collection_to(target, outcome.collection)
    if copied != outcome.source_points:
        raise Conflict(
            f"collection {outcome.collection!r}: the copy holds {copied} points, the source "
            f"held {outcome.source_points} when the migration began: was it written to "
            "meanwhile? run verify --fix",
            collection=outcome.collection,
        )
    outcome.copied = copied
    recorded["copied"], recorded["last_id"] = copied, None
    if progress is not None:
        progress(copied)


async def _present(store: VectorStore, name: str, pid: str | None) -> bool:
    if not pid:
        return False
    try:
        return bool(await store.retrieve(name, [pid]))
    except EmailSenderError:
        return False
