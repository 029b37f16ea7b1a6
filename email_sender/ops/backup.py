"""Backups: the SQL data, every vector collection and the effective config, with a manifest.

A backup is a folder ``<backup_dir>/<UTC timestamp>/``::

    sql/email-sender.db          SQLite: a copy made with SQLite's online backup API
    sql/<table>.jsonl.gz         PostgreSQL: one consistent REPEATABLE READ snapshot, a row a line
    vectors/<name>.jsonl.gz      the portable vector export (``ops.uris``), per-point checksums
    config.yaml                  the effective config, secrets removed
    manifest.json                version, revision, row and point counts, collection digests,
                                 and the SHA-256 and size of every file above

``verify`` recomputes every file's SHA-256, every count and every collection digest, so a flipped
byte anywhere fails it; ``restore`` refuses a backup that does not verify.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Column, Table, delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from email_sender import __version__
from email_sender.db.engine import Database, upgrade
from email_sender.db.schema import metadata
from email_sender.errors import IntegrityError, NotFound, ValidationError
from email_sender.ops.jsonl import JsonlStore
from email_sender.ops.migrate import migrate
from email_sender.settings import Settings
from email_sender.vectors.checksums import DigestAccumulator, point_checksum
from email_sender.vectors.store import VectorStore

MANIFEST = "manifest.json"
FORMAT = "email-sender-backup/1"
SQLITE_FILE = "sql/email-sender.db"
ROW_BATCH = 1000

Progress = Callable[[int], None]


@dataclass
class Check:
    """One line of a verify, restore or rollback report."""

    name: str
    ok: bool
    detail: str = ""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


# Create


async def create_backup(
    settings: Settings,
    db: Database,
    store: VectorStore | None,
    *,
    dest: Path | None = None,
    label: str | None = None,
    progress: Progress | None = None,
) -> Path:
    """Write a complete backup and answer its folder. ``store=None`` leaves vectors out."""
    root = dest or settings.backup_dir
    folder = root / (_timestamp() + (f"-{label}" if label else ""))
    work = folder.with_name(folder.name + ".partial")
    (work / "sql").mkdir(parents=True)
    try:
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "version": __version__,
            "created_at": datetime.now(UTC).isoformat(),
            "dialect": db.dialect,
            "revision": await _revision(db),
            "tables": await _dump_sql(db, work, progress),
            "collections": {},
        }
        if store is not None:
            manifest["collections"] = await _dump_vectors(store, work, progress)
        (work / "config.yaml").write_text(
            yaml.safe_dump(_without_secrets(settings.masked()), sort_keys=False)
        )
        # Hashing every file of a large backup takes seconds: not on the event loop.
        manifest["files"] = await asyncio.to_thread(lambda: {
            str(path.relative_to(work)): {"sha256": _sha256(path), "size": path.stat().st_size}
            for path in sorted(work.rglob("*"))
            if path.is_file()
        })
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        # Only a complete backup gets its final name.
        work.rename(folder)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return folder


async def _revision(db: Database) -> str | None:
    async with db.connect() as connection:
        row = (await connection.execute(text("SELECT version_num FROM alembic_version"))).first()
    return row[0] if row else None


async def _dump_sql(db: Database, work: Path, progress: Progress | None) -> dict[str, int]:
    if db.dialect == "sqlite":
        source = db.url.split(":///", 1)[1]
        return await asyncio.to_thread(_sqlite_copy, Path(source), work / SQLITE_FILE)
    counts: dict[str, int] = {}
    async with db.connect() as connection:
        connection = await connection.execution_options(isolation_level="REPEATABLE READ")
        async with connection.begin():
            await connection.execute(text("SET TRANSACTION READ ONLY"))
            for table in metadata.sorted_tables:
                path = work / "sql" / f"{table.name}.jsonl.gz"
                count = 0
                with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as out:
                    result = await connection.stream(select(table))
                    async for row in result:
                        out.write(json.dumps(dict(row._mapping), default=str) + "\n")
                        count += 1
                        if progress:
                            progress(1)
                counts[table.name] = count
    return counts


def _sqlite_copy(source: Path, target: Path) -> dict[str, int]:
    """SQLite's online backup API: a consistent copy while the service keeps writing."""
    with sqlite3.connect(source) as live, sqlite3.connect(target) as copy:
        live.backup(copy)
        # One self-contained file: no -wal or -shm beside it.
        copy.execute("PRAGMA journal_mode=DELETE")
    return _sqlite_counts(target)


def _sqlite_counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        return {
            table.name: connection.execute(f'SELECT count(*) FROM "{table.name}"').fetchone()[0]
            for table in metadata.sorted_tables
        }


async def _dump_vectors(
    store: VectorStore, work: Path, progress: Progress | None
) -> dict[str, Any]:
    (work / "vectors").mkdir()
    collections: dict[str, Any] = {}
    for name in await store.list_collections():
        path = work / "vectors" / f"{name}.jsonl.gz"
        export = JsonlStore(path)
        try:
            await migrate(store, export, [name], state_path=work / f".{name}.state",
                          source_name="store", target_name=str(path))
        finally:
            await export.close()
        (work / f".{name}.state").unlink(missing_ok=True)
        collections[name] = await _export_digest(path, name)
        if progress:
            progress(collections[name]["points"])
    return collections


async def _digest(store: VectorStore, name: str) -> dict[str, Any]:
    """Points, digest and shape of one collection (the store stays open)."""
    accumulator = DigestAccumulator()
    async for batch in store.scroll(name, batch_size=1000, with_vectors=True):
        for point in batch:
            assert point.vector is not None  # scrolled with vectors
            accumulator.add(point_checksum(point.id, point.vector, point.payload, point.sparse))
    info = await store.collection_info(name)
    return {"points": accumulator.count, "digest": accumulator.hexdigest(),
            "dimension": info.dimension, "distance": info.distance,
            "payload_indexes": info.payload_indexes, "sparse": info.sparse}


async def _export_digest(path: Path, name: str) -> dict[str, Any]:
    export = JsonlStore(path)
    try:
        return await _digest(export, name)
    finally:
        await export.close()


def _without_secrets(data: Any) -> Any:
    """Drop every masked value, so a restored config never carries a fake secret."""
    if isinstance(data, dict):
        return {key: _without_secrets(value) for key, value in data.items()
                if value != "**********"}
    if isinstance(data, list):
        return [_without_secrets(value) for value in data]
    return data


# List and verify


def list_backups(root: Path) -> list[dict[str, Any]]:
    rows = []
    for folder in sorted(root.glob("*/")) if root.exists() else []:
        manifest_path = folder / MANIFEST
        if not manifest_path.exists():
            continue
        try:
            manifest = json.loads(manifest_path.read_text())
        except ValueError:
            rows.append({"name": folder.name, "path": str(folder), "error": "unreadable manifest"})
            continue
        row: dict[str, Any] = {
            "name": folder.name,
            "path": str(folder),
            "created_at": manifest.get("created_at"),
            "dialect": manifest.get("dialect"),
            "emails": manifest.get("tables", {}).get("emails"),
            "collections": {name: value["points"]
                            for name, value in manifest.get("collections", {}).items()},
            "size": sum(entry["size"] for entry in manifest.get("files", {}).values()),
        }
        rows.append(row)
    return rows


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.exists():
        raise NotFound(f"{folder} is not a backup: no {MANIFEST}")
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except ValueError as exc:
        raise IntegrityError(f"{path}: not valid JSON ({exc})") from exc
    if manifest.get("format") != FORMAT:
        raise ValidationError("backup", f"unknown format {manifest.get('format')!r}")
    return manifest


async def verify_backup(folder: Path) -> list[Check]:
    """Every file's SHA-256, every row count and every collection digest."""
    manifest = read_manifest(folder)
    checks: list[Check] = []
    for relative, expected in sorted(manifest["files"].items()):
        path = folder / relative
        if not path.exists():
            checks.append(Check(f"file {relative}", False, "missing"))
            continue
        actual = await asyncio.to_thread(_sha256, path)
        checks.append(Check(f"file {relative}", actual == expected["sha256"],
                            "sha256 ok" if actual == expected["sha256"] else "sha256 differs"))
    if not all(check.ok for check in checks):
        return checks  # counting rows of a damaged file says nothing more
    checks.extend(await asyncio.to_thread(_verify_rows, folder, manifest))
    for name, expected in manifest["collections"].items():
        try:
            found = await _export_digest(folder / "vectors" / f"{name}.jsonl.gz", name)
        except IntegrityError as exc:
            checks.append(Check(f"vectors {name}", False, str(exc)))
            continue
        ok = (found["points"], found["digest"]) == (expected["points"], expected["digest"])
        checks.append(Check(f"vectors {name}", ok, f"{found['points']} points, digest "
                            + ("matches" if ok else "differs")))
    return checks


def _verify_rows(folder: Path, manifest: dict[str, Any]) -> list[Check]:
    if manifest["dialect"] == "sqlite":
        found = _sqlite_counts(folder / SQLITE_FILE)
    else:
        found = {}
        for table in manifest["tables"]:
            with gzip.open(folder / "sql" / f"{table}.jsonl.gz", "rt", encoding="utf-8") as rows:
                found[table] = sum(1 for _ in rows)
    return [
        Check(f"rows {table}", found.get(table) == count, f"{found.get(table)} of {count}")
        for table, count in sorted(manifest["tables"].items())
    ]


# Restore


async def restore_backup(
    settings: Settings,
    db: Database,
    store: VectorStore | None,
    folder: Path,
    *,
    only: str | None = None,
    dry_run: bool = False,
) -> list[Check]:
    """Put a verified backup back: SQL, vectors or both; validate counts and digests after."""
    checks = await verify_backup(folder)
    if not all(check.ok for check in checks):
        return [*checks, Check("restore", False, "refused: the backup does not verify")]
    manifest = read_manifest(folder)
    if manifest["dialect"] != db.dialect:
        return [*checks, Check("restore", False,
                               f"refused: a {manifest['dialect']} backup into {db.dialect}")]
    if dry_run:
        return [*checks, Check("restore", True, "dry run: nothing changed")]
    if only in (None, "sql"):
        await _restore_sql(db, folder, manifest)
        counts = await _counts(db)
        checks.extend(
            Check(f"restored rows {table}", counts[table] == count, f"{counts[table]} of {count}")
            for table, count in sorted(manifest["tables"].items())
        )
    if only in (None, "vectors"):
        if store is None:
            checks.append(Check("restore vectors", False, "no vector store to restore into"))
        else:
            checks.extend(await _restore_vectors(store, folder, manifest))
    return checks


async def _restore_sql(db: Database, folder: Path, manifest: dict[str, Any]) -> None:
    if db.dialect == "sqlite":
        target = Path(db.url.split(":///", 1)[1])
        await db.stop()  # our own pooled connection must not hold the file during the copy
        await asyncio.to_thread(_sqlite_restore, folder / SQLITE_FILE, target)
        async with db.transaction() as connection:
            await reset_sequences(connection)
        return
    # An empty database gets the tables first: restoring into a fresh one is a normal case.
    await upgrade(db.engine)
    async with db.transaction() as connection:
        for table in reversed(metadata.sorted_tables):
            await connection.execute(delete(table))
        for table in metadata.sorted_tables:
            path = folder / "sql" / f"{table.name}.jsonl.gz"
            with gzip.open(path, "rt", encoding="utf-8") as rows:
                batch = []
                for line in rows:
                    batch.append(json.loads(line))
                    if len(batch) >= ROW_BATCH:
                        await connection.execute(insert(table), batch)
                        batch = []
                if batch:
                    await connection.execute(insert(table), batch)
        # Rows went in with their ids, which does not move the sequences: the next insert
        # would take id 1 again and collide.
        await reset_sequences(connection)


def generated_id_columns(table: Table) -> list[Column[Any]]:
    """The columns the database numbers itself (serial, identity or rowid alias)."""
    return [column for column in table.columns
            if column is table.autoincrement_column or column.identity is not None]


async def reset_sequences(connection: AsyncConnection) -> dict[str, int]:
    """Move every id sequence past the largest id in its table; answer the next id per table."""
    dialect = connection.dialect.name
    tracked: set[str] = set()
    if dialect == "sqlite":
        # Only AUTOINCREMENT tables keep a counter (in sqlite_sequence); the others reuse
        # max(rowid) + 1, which a restore cannot get wrong.
        has_counter = (await connection.execute(text(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'"
        ))).first() is not None
        if has_counter:
            tracked = {row[0] for row in await connection.execute(
                text("SELECT name FROM sqlite_sequence"))}
    next_ids: dict[str, int] = {}
    for table in metadata.sorted_tables:
        for column in generated_id_columns(table):
            largest = (await connection.execute(select(func.max(column)))).scalar() or 0
            next_ids[f"{table.name}.{column.name}"] = int(largest) + 1
            if dialect == "postgresql":
                # is_called=false: the next nextval() answers exactly max + 1 (1 when empty).
                await connection.execute(
                    text("SELECT setval(pg_get_serial_sequence(:table, :column), :next, false)"),
                    {"table": f'"{table.name}"', "column": column.name, "next": int(largest) + 1},
                )
            elif dialect == "sqlite" and table.name in tracked:
                await connection.execute(
                    text("UPDATE sqlite_sequence SET seq = max(seq, :largest) WHERE name = :table"),
                    {"table": table.name, "largest": int(largest)},
                )
    return next_ids


def _sqlite_restore(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as backup, \
            sqlite3.connect(target, timeout=30) as live:
        backup.backup(live)


async def _counts(db: Database) -> dict[str, int]:
    async with db.connect() as connection:
        return {
            table.name: (await connection.execute(select(func.count()).select_from(table))).scalar()
            or 0
            for table in metadata.sorted_tables
        }


async def _restore_vectors(
    store: VectorStore, folder: Path, manifest: dict[str, Any]
) -> list[Check]:
    checks = []
    for name, expected in manifest["collections"].items():
        source = JsonlStore(folder / "vectors" / f"{name}.jsonl.gz")
        await store.delete_collection(name)
        state = folder.parent / f".restore-{folder.name}-{name}-{os.getpid()}.state"
        try:
            await migrate(source, store, [name], state_path=state, source_name=str(folder),
                          target_name="store")
        finally:
            await source.close()
            state.unlink(missing_ok=True)
        found = await _digest(store, name)
        ok = (found["points"], found["digest"]) == (expected["points"], expected["digest"])
        checks.append(Check(f"restored vectors {name}", ok,
                            f"{found['points']} of {expected['points']} points, digest "
                            + ("matches" if ok else "differs")))
    return checks


def report(checks: list[Check]) -> dict[str, Any]:
    return {"ok": all(check.ok for check in checks), "checks": [asdict(c) for c in checks],
            "at": time.time()}
