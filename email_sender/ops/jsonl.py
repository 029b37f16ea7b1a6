"""The portable JSONL vector export, read and written as a VectorStore.

Export format
-------------
UTF-8 text, one JSON object per line. Each collection starts with a header line, followed by
exactly ``points_count`` point lines::

    {"type":"collection","format":"email-sender-vectors/1","collection":"emails",
     "dimension":384,"distance":"Cosine","payload_indexes":{"tags":"keyword"},"points_count":2}
    {"id":"6f1c…","vector":[0.01,…],"payload":{…},"checksum":"<sha256>"}

A collection with the sparse vector says ``"sparse":true`` in its header, and its points that
have one carry it as ``"sparse":{"indices":[…],"values":[…]}``; a file without them is read as
before. ``checksum`` is :func:`~email_sender.vectors.checksums.point_checksum` of the line's id,
vector (as float32), payload and sparse vector; every point read is checked against it, and a
section with fewer or more points than its header says is refused, so a truncated or edited file
never imports.

A :class:`JsonlStore` reads the file as a stream. The first write copies what is there into
per-collection work files beside it (an id → offset index in memory), and :meth:`close` writes
the whole file again under a temporary name and renames it into place: an interrupted export
leaves no half-written file, and upserting an id twice keeps one line for it.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import numpy as np

from email_sender.errors import (
    Conflict,
    DimensionMismatch,
    IntegrityError,
    NotFound,
    ValidationError,
    VectorStoreUnavailable,
)
from email_sender.vectors.checksums import canonical_json, point_checksum
from email_sender.vectors.store import (
    CollectionInfo,
    Point,
    PreparedPoint,
    ScoredPoint,
    SparseVector,
    as_sparse,
    check_collection_name,
    check_dimension,
    check_distance,
    check_limit,
    check_payload_indexes,
    page_offset,
    point_id,
    prepare_points,
)

logger = logging.getLogger(__name__)

BACKEND = "jsonl"
FORMAT = "email-sender-vectors/1"
# gzip's default level 9 costs several times the CPU of 6 for a few percent of size.
GZIP_LEVEL = 6
_HEADER_PREFIX = '{"type":'


@dataclass(slots=True)
class _Section:
    """One collection of the export: its header and, once written to, its work file index."""

    dimension: int
    distance: str
    payload_indexes: dict[str, str]
    points_count: int
    offsets: dict[str, tuple[int, int]] = field(default_factory=dict)
    sparse: bool = False


class JsonlStore:
    """A JSONL export file read and written through the VectorStore methods that make sense.

    It cannot search: import the file into a real store for that.
    """

    backend = BACKEND

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.compressed = self.path.name.endswith(".gz")
        self._sections: dict[str, _Section] | None = None
        self._work_dir: Path | None = None
        self._materialised = False
        self._work_files: dict[str, IO[bytes]] = {}
        self._dirty = False
        self._closed = False

    def __repr__(self) -> str:
        return f"JsonlStore({str(self.path)!r})"

    # -- reading the catalog -------------------------------------------------------------

    def _catalog(self) -> dict[str, _Section]:
        if self._closed:
            raise VectorStoreUnavailable(f"the jsonl store {self.path} is closed")
        if self._sections is None:
            self._sections = self._scan_headers() if self.path.exists() else {}
        return self._sections

    def _scan_headers(self) -> dict[str, _Section]:
        """Read every header and count every section's lines, without parsing points."""
        sections: dict[str, _Section] = {}
        current: str | None = None
        seen = 0
        for number, line in self._lines():
            if line.startswith(_HEADER_PREFIX) or not line.startswith('{"id"'):
                if current is not None:
                    _check_section_count(current, sections[current].points_count, seen)
                current, header = self._header(number, line)
                if current in sections:
                    raise IntegrityError(f"{self.path}:{number}: collection {current!r} twice")
                sections[current] = header
                seen = 0
            elif current is None:
                raise IntegrityError(f"{self.path}:{number}: a point before any collection header")
            else:
                seen += 1
        if current is not None:
            _check_section_count(current, sections[current].points_count, seen)
        return sections

    def _header(self, number: int, line: str) -> tuple[str, _Section]:
        record = _parse_line(self.path, number, line)
        if record.get("type") != "collection" or record.get("format") != FORMAT:
            raise IntegrityError(
                f"{self.path}:{number}: not a {FORMAT} collection header or point line"
            )
        try:
            name = check_collection_name(record["collection"])
            section = _Section(
                dimension=check_dimension(record["dimension"]),
                distance=check_distance(record["distance"]),
                payload_indexes=check_payload_indexes(record.get("payload_indexes")),
                points_count=int(record["points_count"]),
                sparse=record.get("sparse", False) is True,
            )
        except (KeyError, TypeError, ValueError, ValidationError) as exc:
            raise IntegrityError(f"{self.path}:{number}: bad collection header: {exc}") from exc
        return name, section

    def _lines(self) -> Iterator[tuple[int, str]]:
        """(line number, line) of the file, blank lines skipped; read errors become ours."""
        try:
            with self._open_text() as handle:
                for number, line in enumerate(handle, start=1):
                    if line.strip():
                        yield number, line
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise IntegrityError(f"cannot read {self.path}: {exc}") from exc

    def _open_text(self) -> IO[str]:
        if self.compressed:
            return gzip.open(self.path, "rt", encoding="utf-8")
        return open(self.path, encoding="utf-8")

    def _section(self, name: str) -> _Section:
        section = self._catalog().get(check_collection_name(name))
        if section is None:
            raise NotFound(f"collection {name!r} does not exist in {self.path}", collection=name)
        return section

    # -- VectorStore -----------------------------------------------------------------------

    async def ensure_collection(
        self,
        name: str,
        dimension: int,
        distance: str = "Cosine",
        payload_indexes: Mapping[str, str] | None = None,
        sparse: bool = False,
    ) -> None:
        check_collection_name(name)
        check_dimension(dimension)
        check_distance(distance)
        indexes = check_payload_indexes(payload_indexes)
        await self._materialise()
        sections = self._catalog()
        section = sections.get(name)
        if section is None:
            sections[name] = _Section(dimension, distance, indexes, 0, sparse=sparse)
            self._dirty = True
            return
        if section.dimension != dimension:
            raise DimensionMismatch(dimension, section.dimension)
        if section.distance != distance:
            raise Conflict(
                f"collection {name!r} uses {section.distance} distance, not {distance}",
                collection=name,
            )
        missing = {key: kind for key, kind in indexes.items() if key not in section.payload_indexes}
        if missing:
            section.payload_indexes.update(missing)
            self._dirty = True

    async def collection_info(self, name: str) -> CollectionInfo:
        section = await asyncio.to_thread(self._section, name)
        return CollectionInfo(
            name=name,
            points_count=section.points_count,
            dimension=section.dimension,
            distance=section.distance,
            payload_indexes=dict(section.payload_indexes),
            backend=BACKEND,
            sparse=section.sparse,
        )

    async def has_sparse(self, name: str) -> bool:
        return (await asyncio.to_thread(self._section, name)).sparse

    async def list_collections(self) -> list[str]:
        return sorted(await asyncio.to_thread(self._catalog))

    async def upsert(self, name: str, points: Sequence[Point], wait: bool = True) -> None:
        await self._materialise()
        section = self._section(name)
        prepared = prepare_points(points, section.dimension, section.sparse)
        await asyncio.to_thread(self._append, name, section, prepared)

    async def search(
        self,
        name: str,
        vector: np.ndarray | Sequence[float],
        limit: int = 10,
        filter: Mapping[str, Any] | None = None,
    ) -> list[ScoredPoint]:
        raise Conflict(
            f"{self.path} is a jsonl export and cannot be searched: import it into a store first"
        )

    async def search_sparse(
        self,
        name: str,
        vector: SparseVector,
        limit: int = 10,
        filter: Mapping[str, Any] | None = None,
        with_terms: bool = False,
    ) -> list[ScoredPoint]:
        return await self.search(name, [], limit, filter)

    async def retrieve(
        self, name: str, ids: Sequence[str], with_vectors: bool = False
    ) -> list[Point]:
        wanted = {point_id(value) for value in ids}
        self._section(name)
        if not wanted:
            return []
        found: list[Point] = []
        async for batch in self.scroll(name, batch_size=1024, with_vectors=with_vectors):
            found.extend(point for point in batch if point.id in wanted)
        return found

    async def delete(self, name: str, ids: Sequence[str], wait: bool = True) -> None:
        await self._materialise()
        section = self._section(name)
        for value in ids:
            if section.offsets.pop(point_id(value), None) is not None:
                self._dirty = True
        section.points_count = len(section.offsets)

    async def count(self, name: str) -> int:
        return (await asyncio.to_thread(self._section, name)).points_count

    async def scroll(
        self, name: str, batch_size: int = 256, with_vectors: bool = True
    ) -> AsyncIterator[list[Point]]:
        check_limit(batch_size)
        self._section(name)
        reader = self._read_points(name)
        while True:
            batch = await asyncio.to_thread(_take, reader, batch_size)
            if not batch:
                return
            if not with_vectors:
                for point in batch:
                    point.vector = None
            yield batch

    async def scroll_page(
        self, name: str, limit: int = 10, offset: str | None = None, with_vectors: bool = False
    ) -> tuple[list[Point], str | None]:
        """A page in file order; ``offset`` is the id of the page's first point."""
        check_limit(limit)
        start = page_offset(offset)
        page: list[Point] = []
        async for batch in self.scroll(name, batch_size=1024, with_vectors=with_vectors):
            for point in batch:
                if start is not None and not page and point.id != start:
                    continue
                if len(page) == limit:
                    return page, point.id
                page.append(point)
        return page, None

    async def delete_collection(self, name: str) -> None:
        check_collection_name(name)
        await self._materialise()
        if self._catalog().pop(name, None) is not None:
            self._dirty = True

    async def optimize(self, name: str) -> None:
        """Nothing to optimise in a flat file."""
        self._section(name)

    async def discard(self) -> None:
        """Close without writing: a failed export must not leave a partial file."""
        self._dirty = False
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        try:
            if self._dirty:
                await asyncio.to_thread(self._write_file)
        finally:
            for handle in self._work_files.values():
                handle.close()
            self._work_files.clear()
            if self._work_dir is not None:
                shutil.rmtree(self._work_dir, ignore_errors=True)
            self._closed = True

    # -- points ----------------------------------------------------------------------------

    def _read_points(self, name: str) -> Iterator[Point]:
        if self._materialised:
            yield from self._read_work_file(name)
            return
        inside = False
        for number, line in self._lines():
            if line.startswith(_HEADER_PREFIX) or not line.startswith('{"id"'):
                if inside:
                    return
                inside = _parse_line(self.path, number, line).get("collection") == name
            elif inside:
                yield self._point(number, line)

    def _read_work_file(self, name: str) -> Iterator[Point]:
        section = self._section(name)
        handle = self._work_files.get(name)
        if handle is None:
            return
        handle.flush()
        with open(handle.name, "rb") as reader:
            for offset, length in list(section.offsets.values()):
                reader.seek(offset)
                yield self._point(0, reader.read(length).decode("utf-8"))

    def _point(self, number: int, line: str) -> Point:
        record = _parse_line(self.path, number, line)
        where = f"{self.path}:{number}" if number else str(self.path)
        try:
            pid = point_id(record["id"])
            vector = np.asarray(record["vector"], dtype=np.float32)
            payload = record["payload"]
            stated = record["checksum"]
            sparse = as_sparse(record["sparse"]) if "sparse" in record else None
        except (KeyError, TypeError, ValueError, ValidationError) as exc:
            raise IntegrityError(f"{where}: bad point line: {exc}") from exc
        if not isinstance(payload, dict) or vector.ndim != 1:
            raise IntegrityError(f"{where}: point {pid} has a malformed vector or payload")
        if point_checksum(pid, vector, payload, sparse) != stated:
            raise IntegrityError(f"{where}: point {pid} does not match its checksum")
        return Point(pid, vector, payload, sparse)

    async def _materialise(self) -> None:
        """Copy the file into per-collection work files, so it can be changed and rewritten."""
        if self._materialised:
            return
        sections = await asyncio.to_thread(self._catalog)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._work_dir = Path(
                tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            )
        except OSError as exc:
            raise VectorStoreUnavailable(f"cannot write beside {self.path}: {exc}") from exc
        for name, section in sections.items():
            section.offsets.clear()
            reader = self._read_points(name)
            while batch := await asyncio.to_thread(_take, reader, 1024):
                prepared = [
                    PreparedPoint(p.id, np.asarray(p.vector), p.payload, p.sparse) for p in batch
                ]
                await asyncio.to_thread(self._append, name, section, prepared, False)
        self._materialised = True

    def _append(
        self,
        name: str,
        section: _Section,
        prepared: list[PreparedPoint],
        dirty: bool = True,
    ) -> None:
        assert self._work_dir is not None
        handle = self._work_files.get(name)
        if handle is None:
            handle = open(self._work_dir / f"{_safe(name)}.jsonl", "ab")
            self._work_files[name] = handle
        for point in prepared:
            line = point_line(point.id, point.vector, point.payload, point.sparse).encode("utf-8")
            offset = handle.tell()
            handle.write(line)
            section.offsets[point.id] = (offset, len(line))
        section.points_count = len(section.offsets)
        self._dirty = self._dirty or (dirty and bool(prepared))

    def _write_file(self) -> None:
        sections = self._catalog()
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with _open_binary_for_write(temporary, self.compressed) as out:
                for name, section in sections.items():
                    header = {
                        "type": "collection",
                        "format": FORMAT,
                        "collection": name,
                        "dimension": section.dimension,
                        "distance": section.distance,
                        "payload_indexes": section.payload_indexes,
                        "points_count": len(section.offsets),
                        **({"sparse": True} if section.sparse else {}),
                    }
                    out.write((json.dumps(header, separators=(",", ":")) + "\n").encode("utf-8"))
                    self._copy_section(name, section, out)
            os.replace(temporary, self.path)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise VectorStoreUnavailable(f"cannot write {self.path}: {exc}") from exc
        self._dirty = False
        logger.info(
            "jsonl_written",
            extra={"path": str(self.path), "collections": len(sections),
                   "points": sum(len(s.offsets) for s in sections.values())},
        )

    def _copy_section(self, name: str, section: _Section, out: IO[bytes]) -> None:
        handle = self._work_files.get(name)
        if handle is None:
            return
        handle.flush()
        with open(handle.name, "rb") as reader:
            for offset, length in section.offsets.values():
                reader.seek(offset)
                out.write(reader.read(length))


def point_line(
    pid: str,
    vector: np.ndarray,
    payload: Mapping[str, Any],
    sparse: SparseVector | None = None,
) -> str:
    """One point as its export line (with the trailing newline)."""
    vector32 = np.asarray(vector, dtype=np.float32)
    record: dict[str, Any] = {
        "id": pid,
        # float32 → Python float is exact, and json writes floats so that they read back
        # bit for bit, so the checksum holds after a round trip.
        "vector": vector32.tolist(),
        "payload": payload,
    }
    if sparse is not None:
        record["sparse"] = {"indices": list(sparse.indices), "values": list(sparse.values)}
    record["checksum"] = point_checksum(pid, vector32, payload, sparse)
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"


def payload_digest(payload: Mapping[str, Any]) -> bytes:
    """A short digest of the canonical payload JSON: tells payload differences apart."""
    return hashlib.blake2b(canonical_json(payload).encode("utf-8"), digest_size=16).digest()


def _open_binary_for_write(path: Path, compressed: bool) -> BinaryIO:
    if compressed:
        return cast(BinaryIO, gzip.open(path, "wb", compresslevel=GZIP_LEVEL))
    return open(path, "wb")


def _parse_line(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise IntegrityError(f"{path}:{number}: not JSON ({exc.msg})") from exc
    if not isinstance(record, dict):
        raise IntegrityError(f"{path}:{number}: not a JSON object")
    return record


def _check_section_count(name: str, stated: int, seen: int) -> None:
    if stated != seen:
        raise IntegrityError(
            f"collection {name!r} of the export has {seen} points, its header says {stated}: "
            "the file is truncated or was edited"
        )


def _take(reader: Iterator[Point], count: int) -> list[Point]:
    batch: list[Point] = []
    for point in reader:
        batch.append(point)
        if len(batch) >= count:
            break
    return batch


def _safe(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
