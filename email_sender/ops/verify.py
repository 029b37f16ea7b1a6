"""Prove that two vector stores hold the same collections, point for point, and repair the target.

For each collection: both sides exist; dimension, distance and payload indexes agree; exact
counts agree; every point's SHA-256 (:func:`~email_sender.vectors.checksums.point_checksum`: id,
float32 bytes of the stored vector, sorted-key JSON payload) agrees; and the order-independent
collection digests agree. Ids are listed as missing (in the source only), extra (in the target
only) or differing, with whether the vector, the payload or both differ.

Checksums are over what each store holds, so a difference is a real difference: a store that
re-normalises Cosine vectors differently (qdrant-client local mode does, in numpy, on every
upsert) shows its last-bit changes here.

``fix=True`` creates a missing target collection or payload index with the source's settings,
re-copies missing and differing points in batches (``wait=True``), then verifies again. Extra
points are reported and left alone: the target may hold newer data, and deleting is the
operator's call.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from email_sender.errors import EmailSenderError, NotFound
from email_sender.vectors.checksums import DigestAccumulator, canonical_json, sparse_bytes
from email_sender.vectors.store import CollectionInfo, Point, VectorStore, check_collection_name

logger = logging.getLogger(__name__)

Progress = Callable[[int], None]
# Backends that cannot hold payload indexes: comparing indexes with them says nothing.
NO_INDEX_BACKENDS = frozenset({"qdrant-local"})
# Backends whose Cosine normalisation is not idempotent: a copied vector may come back changed.
RENORMALISING_BACKENDS = frozenset({"qdrant-local"})
# Above this share of the source, one scroll finds the points to re-copy faster than look-ups.
SCROLL_FIX_SHARE = 0.1
LISTED_IDS = 1000


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass
class CollectionVerify:
    """What verify found for one collection."""

    collection: str
    checks: list[Check] = field(default_factory=list)
    source_points: int = 0
    target_points: int = 0
    source_digest: str = ""
    target_digest: str = ""
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    vector_differs: list[str] = field(default_factory=list)
    payload_differs: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def differing(self) -> list[str]:
        return sorted(set(self.vector_differs) | set(self.payload_differs))

    def as_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "identical": self.identical,
            "source_points": self.source_points,
            "target_points": self.target_points,
            "source_digest": self.source_digest,
            "target_digest": self.target_digest,
            "missing_count": len(self.missing),
            "extra_count": len(self.extra),
            "differing_count": len(self.differing),
            "missing": self.missing[:LISTED_IDS],
            "extra": self.extra[:LISTED_IDS],
            "vector_differs": self.vector_differs[:LISTED_IDS],
            "payload_differs": self.payload_differs[:LISTED_IDS],
            "checks": [check.as_dict() for check in self.checks],
        }


@dataclass
class FixResult:
    collection: str
    recopied: int = 0
    indexes_created: list[str] = field(default_factory=list)
    created_collection: bool = False
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "recopied": self.recopied,
            "indexes_created": self.indexes_created,
            "created_collection": self.created_collection,
            "problems": self.problems,
        }


@dataclass
class VerifyReport:
    collections: list[CollectionVerify]
    seconds: float
    fixes: list[FixResult] | None = None
    after_fix: VerifyReport | None = None

    @property
    def final(self) -> VerifyReport:
        """The last verification: after the fix when one ran."""
        return self.after_fix if self.after_fix is not None else self

    @property
    def identical(self) -> bool:
        return all(collection.identical for collection in self.final.collections)

    @property
    def points(self) -> int:
        return sum(c.source_points + c.target_points for c in self.collections)

    def as_dict(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "identical": self.identical,
            "seconds": round(self.seconds, 3),
            "collections": [collection.as_dict() for collection in self.collections],
        }
        if self.fixes is not None:
            report["fixes"] = [fix.as_dict() for fix in self.fixes]
        if self.after_fix is not None:
            report["after_fix"] = self.after_fix.as_dict()
        return report


@dataclass(slots=True)
class _Side:
    """One side of a collection as scanned: per id (checksum, vector digest, payload digest)."""

    points: dict[str, tuple[str, bytes, bytes]]
    digest: str


async def verify(
    source: VectorStore,
    target: VectorStore,
    collections: Sequence[str] | None = None,
    *,
    fix: bool = False,
    batch_size: int = 1000,
    progress: Progress | None = None,
) -> VerifyReport:
    """Compare ``collections`` (all of the source's by default); with ``fix``, repair and redo."""
    names = await resolve_collections(source, collections)
    started = time.perf_counter()
    results = [await _verify_one(source, target, name, batch_size, progress) for name in names]
    report = VerifyReport(results, time.perf_counter() - started)
    logger.info(
        "vectors_verified",
        extra={"collections": len(names), "identical": report.identical,
               "duration_ms": round(report.seconds * 1000)},
    )
    if fix and not report.identical:
        report.fixes = [
            await _fix_one(source, target, result, batch_size, progress)
            for result in results
            if not result.identical
        ]
        report.after_fix = await verify(
            source, target, names, fix=False, batch_size=batch_size, progress=progress
        )
    return report


async def resolve_collections(source: VectorStore, wanted: Sequence[str] | None) -> list[str]:
    """The collections asked for, each checked to exist in the source; all of them by default."""
    present = await source.list_collections()
    if not wanted:
        return present
    for name in wanted:
        check_collection_name(name)
        if name not in present:
            raise NotFound(
                f"collection {name!r} does not exist in the source (it has: "
                f"{', '.join(present) or 'none'})",
                collection=name,
            )
    return list(dict.fromkeys(wanted))


async def _verify_one(
    source: VectorStore,
    target: VectorStore,
    name: str,
    batch_size: int,
    progress: Progress | None,
) -> CollectionVerify:
    result = CollectionVerify(name)
    source_info = await source.collection_info(name)
    target_info = await _info_or_none(target, name)
    result.checks.append(
        Check("exists", target_info is not None,
              "on both sides" if target_info is not None else "missing on the target")
    )
    if target_info is not None:
        result.checks.extend(_settings_checks(source, target, source_info, target_info))
        source_side, target_side = await asyncio.gather(
            _scan(source, name, batch_size, progress), _scan(target, name, batch_size, progress)
        )
        source_count, target_count = await asyncio.gather(source.count(name), target.count(name))
    else:
        source_side = await _scan(source, name, batch_size, progress)
        target_side = _Side({}, DigestAccumulator().hexdigest())
        source_count, target_count = await source.count(name), 0
    result.source_points, result.target_points = source_count, target_count
    result.source_digest, result.target_digest = source_side.digest, target_side.digest
    _compare_points(result, source_side, target_side)
    result.checks.append(
        Check("count", source_count == target_count and source_count == len(source_side.points)
              and target_count == len(target_side.points),
              f"{source_count} = {target_count}" if source_count == target_count
              else f"source {source_count}, target {target_count}")
    )
    result.checks.append(_points_check(result, target.backend, source_info.distance))
    same = source_side.digest == target_side.digest
    result.checks.append(
        Check("digest", same,
              f"{source_side.digest[:16]}… {_eq(same, True)} {target_side.digest[:16]}…")
    )
    return result


async def _info_or_none(store: VectorStore, name: str) -> CollectionInfo | None:
    if name not in await store.list_collections():
        return None
    return await store.collection_info(name)


def _settings_checks(
    source: VectorStore, target: VectorStore, source_info: CollectionInfo,
    target_info: CollectionInfo,
) -> list[Check]:
    checks = [
        Check("dimension", source_info.dimension == target_info.dimension,
              f"{source_info.dimension} {_eq(source_info.dimension, target_info.dimension)} "
              f"{target_info.dimension}"),
        Check("distance", source_info.distance == target_info.distance,
              f"{source_info.distance} {_eq(source_info.distance, target_info.distance)} "
              f"{target_info.distance}"),
        Check("sparse vector", source_info.sparse == target_info.sparse,
              f"{source_info.sparse} {_eq(source_info.sparse, target_info.sparse)} "
              f"{target_info.sparse}"),
    ]
    without_indexes = {source.backend, target.backend} & NO_INDEX_BACKENDS
    if without_indexes:
        checks.append(Check("payload indexes", True,
                            f"not compared: {', '.join(sorted(without_indexes))} keeps none"))
        return checks
    wanted, present = source_info.payload_indexes, target_info.payload_indexes
    missing = sorted(key for key in wanted if key not in present)
    other_type = sorted(key for key in wanted if key in present and present[key] != wanted[key])
    extra = sorted(key for key in present if key not in wanted)
    problems = []
    if missing:
        problems.append(f"missing on the target: {', '.join(missing)}")
    if other_type:
        problems.append("of another type: " + ", ".join(
            f"{key} ({wanted[key]} → {present[key]})" for key in other_type))
    if extra:
        problems.append(f"only on the target: {', '.join(extra)}")
    checks.append(Check("payload indexes", not problems,
                        "; ".join(problems) or f"{len(wanted)} equal"))
    return checks


def _eq(first: object, second: object) -> str:
    return "=" if first == second else "≠"


async def _scan(store: VectorStore, name: str, batch_size: int, progress: Progress | None) -> _Side:
    accumulator = DigestAccumulator()
    points: dict[str, tuple[str, bytes, bytes]] = {}
    async for batch in store.scroll(name, batch_size=batch_size, with_vectors=True):
        for point in batch:
            points[point.id] = _fingerprint(point, accumulator)
        if progress is not None:
            progress(len(batch))
    return _Side(points, accumulator.hexdigest())


def _fingerprint(point: Point, accumulator: DigestAccumulator) -> tuple[str, bytes, bytes]:
    """The point checksum (as point_checksum computes it) and digests of its two halves: the
    vectors (dense and sparse) and the payload."""
    dense_bytes = np.asarray(point.vector, dtype="<f4").tobytes()
    sparse = b"" if point.sparse is None else sparse_bytes(point.sparse)
    payload_bytes = canonical_json(point.payload).encode("utf-8")
    checksum = hashlib.sha256(
        point.id.encode("utf-8") + dense_bytes + payload_bytes + sparse
    ).hexdigest()
    vector_bytes = dense_bytes + sparse
    accumulator.add(checksum)
    return (
        checksum,
        hashlib.blake2b(vector_bytes, digest_size=16).digest(),
        hashlib.blake2b(payload_bytes, digest_size=16).digest(),
    )


def _compare_points(result: CollectionVerify, source: _Side, target: _Side) -> None:
    result.missing = sorted(source.points.keys() - target.points.keys())
    result.extra = sorted(target.points.keys() - source.points.keys())
    for pid in sorted(source.points.keys() & target.points.keys()):
        mine, theirs = source.points[pid], target.points[pid]
        if mine[0] == theirs[0]:
            continue
        if mine[1] != theirs[1]:
            result.vector_differs.append(pid)
        if mine[2] != theirs[2]:
            result.payload_differs.append(pid)


def _points_check(result: CollectionVerify, target_backend: str, distance: str) -> Check:
    problems = []
    if result.missing:
        problems.append(f"{len(result.missing)} missing")
    if result.extra:
        problems.append(f"{len(result.extra)} extra")
    if result.vector_differs:
        problems.append(f"{len(result.vector_differs)} with another vector")
        if target_backend in RENORMALISING_BACKENDS and distance == "Cosine":
            problems.append(f"({target_backend} re-normalises Cosine vectors on write, which "
                            "can change their last bits)")
    if result.payload_differs:
        problems.append(f"{len(result.payload_differs)} with another payload")
    if problems:
        detail = ", ".join(problems)
    elif result.source_points:
        detail = f"all {result.source_points} checksums equal"
    else:
        detail = "no points on either side"
    return Check("points", not problems, detail)


async def _fix_one(
    source: VectorStore,
    target: VectorStore,
    found: CollectionVerify,
    batch_size: int,
    progress: Progress | None,
) -> FixResult:
    name = found.collection
    fixed = FixResult(name)
    source_info = await source.collection_info(name)
    before = await _info_or_none(target, name)
    try:
        await target.ensure_collection(
            name,
            source_info.dimension,
            source_info.distance,
            source_info.payload_indexes,
            source_info.sparse,
        )
    except EmailSenderError as exc:
        fixed.problems.append(f"cannot align the target collection: {exc}")
        return fixed
    after = await target.collection_info(name)
    fixed.created_collection = before is None
    present_before = before.payload_indexes if before is not None else {}
    fixed.indexes_created = sorted(set(after.payload_indexes) - set(present_before))
    unfixable = sorted(
        key for key in source_info.payload_indexes if key not in after.payload_indexes
    )
    if unfixable and target.backend not in NO_INDEX_BACKENDS:
        fixed.problems.append(f"{target.backend} did not create indexes: {', '.join(unfixable)}")
    wanted = found.missing + found.differing
    if wanted:
        fixed.recopied = await copy_points(
            source, target, name, wanted, source_info.points_count, batch_size, progress
        )
    logger.info("vectors_fixed", extra=fixed.as_dict())
    return fixed


async def copy_points(
    source: VectorStore,
    target: VectorStore,
    name: str,
    ids: Sequence[str],
    source_points: int,
    batch_size: int,
    progress: Progress | None = None,
) -> int:
    """Copy the points ``ids`` from source to target in batches; answer how many were copied."""
    copied = 0
    if len(ids) > SCROLL_FIX_SHARE * max(source_points, 1):
        wanted = set(ids)
        async for batch in source.scroll(name, batch_size=batch_size, with_vectors=True):
            chosen = [point for point in batch if point.id in wanted]
            if chosen:
                await target.upsert(name, chosen, wait=True)
                copied += len(chosen)
                if progress is not None:
                    progress(len(chosen))
        return copied
    for start in range(0, len(ids), batch_size):
        points = await source.retrieve(name, ids[start : start + batch_size], with_vectors=True)
        if points:
            await target.upsert(name, points, wait=True)
            copied += len(points)
        if progress is not None:
            progress(len(points))
    return copied
