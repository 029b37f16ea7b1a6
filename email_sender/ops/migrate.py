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
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from email_sender.errors import Conflict, DimensionMismatch, EmailSenderError, ValidationError
from email_sender.ops.verify import resolve_collections
from email_sender.vectors.store import Point, VectorStore

logger = logging.getLogger(__name__)

STATE_FORMAT = "email-sender-migrate-state/1"
DEFAULT_BATCH_SIZE = 1000
MAX_BATCH_SIZE = 100_000

Progress = Callable[[int], None]


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
    if name in await target.list_collections():
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
    async for batch in source.scroll(name, batch_size=batch_size, with_vectors=True):
        end = position + len(batch)
        if skip and position < skip <= end:
            if batch[skip - position - 1].id != recorded["last_id"]:
                return "the source no longer scrolls in the recorded order"
            outcome.skipped = skip
        todo: list[Point] = batch[max(0, skip - position):]
        position = end
        if todo:
            await target.upsert(name, todo, wait=True)
            outcome.copied += len(todo)
            recorded["copied"], recorded["last_id"] = position, batch[-1].id
            state.save()
        if progress is not None:
            progress(len(batch))
    if skip > position:
        return "the source holds fewer points than the state records"
    return None


async def _present(store: VectorStore, name: str, pid: str | None) -> bool:
    if not pid:
        return False
    try:
        return bool(await store.retrieve(name, [pid]))
    except EmailSenderError:
        return False
