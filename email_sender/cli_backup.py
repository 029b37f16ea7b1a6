"""``email-sender backup …`` and ``email-sender rollback``: one thin function per command."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from email_sender.db.engine import Database
from email_sender.errors import EmailSenderError, VectorStoreLocked
from email_sender.modes import Mode, ModeStore
from email_sender.ops import backup as backups
from email_sender.progress import progress_bar
from email_sender.settings import Settings, load_settings
from email_sender.vectors.factory import build_vector_store
from email_sender.vectors.store import VectorStore

backup_app = typer.Typer(help="Backups of the SQL data, vectors and config.",
                         no_args_is_help=True)

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.",
                                                   envvar="EMAIL_SENDER_CONFIG")]
DataDirOption = Annotated[Path | None, typer.Option("--data-dir", help="The data folder.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON report.")]
ACTOR = "cli"


@asynccontextmanager
async def _opened(settings: Settings, *, vectors: bool) -> AsyncIterator[
        tuple[Database, VectorStore | None]]:
    db = Database(settings.database_url)
    await db.start()
    store = None
    try:
        if vectors:
            try:
                store = build_vector_store(settings)
            except VectorStoreLocked as exc:
                raise VectorStoreLocked(
                    f"{exc.message}. A running node holds the embedded vector store: stop it, "
                    "back up through the API (POST /api/v1/backups), or pass --no-vectors"
                ) from exc
        yield db, store
    finally:
        if store is not None:
            await store.close()
        await db.stop()


def _print(checks: list[backups.Check], json_output: bool, **extra: Any) -> bool:
    ok = all(check.ok for check in checks)
    if json_output:
        typer.echo(json.dumps({**backups.report(checks), **extra}, indent=2))
    else:
        for check in checks:
            typer.echo(f"{'✅' if check.ok else '❌'} {check.name}: {check.detail}")
    return ok


@backup_app.command("create")
def create(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    dir: Annotated[Path | None, typer.Option("--dir", help="Where (default backup.dir).")] = None,
    no_vectors: Annotated[bool, typer.Option("--no-vectors", help="SQL and config only.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Write a timestamped backup: SQL data, every collection, config, manifest."""
    settings = load_settings(config, data_dir=data_dir)

    async def run() -> Path:
        async with _opened(settings, vectors=not no_vectors) as (db, store):
            with progress_bar("backup", total=None, quiet=json_output) as advance:
                return await backups.create_backup(settings, db, store, dest=dir,
                                                   progress=advance)

    folder = asyncio.run(run())
    manifest = backups.read_manifest(folder)
    if json_output:
        typer.echo(json.dumps({"path": str(folder), "manifest": manifest}, indent=2))
    else:
        typer.echo(f"✅ backup written to {folder}")
        typer.echo(f"   rows: {manifest['tables']}")
        typer.echo(f"   points: { {k: v['points'] for k, v in manifest['collections'].items()} }")


@backup_app.command("list")
def list_(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    dir: Annotated[Path | None, typer.Option("--dir", help="Where (default backup.dir).")] = None,
    json_output: JsonOption = False,
) -> None:
    """List backups, newest last."""
    settings = load_settings(config, data_dir=data_dir)
    rows = backups.list_backups(dir or settings.backup_dir)
    if json_output:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        typer.echo(f"{row['name']}  {row.get('emails')} emails  {row.get('collections')}  "
                   f"{row.get('size', 0) / 1e6:.1f} MB  {row['path']}")
    if not rows:
        typer.echo("no backups")


@backup_app.command("verify")
def verify(path: Path, json_output: JsonOption = False) -> None:
    """Check every file's SHA-256, every count and every collection digest; exit 1 on any."""
    checks = asyncio.run(backups.verify_backup(path))
    raise typer.Exit(0 if _print(checks, json_output) else 1)


@backup_app.command("restore")
def restore(
    path: Path,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    only: Annotated[str | None, typer.Option(help="sql or vectors (default both).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Verify only.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Restore a backup that verifies; the service is read-only while it runs."""
    if only not in (None, "sql", "vectors"):
        raise typer.BadParameter("must be sql or vectors", param_hint="--only")
    settings = load_settings(config, data_dir=data_dir)
    checks = asyncio.run(_restore(settings, path, only=only, dry_run=dry_run))
    raise typer.Exit(0 if _print(checks, json_output) else 1)


async def _restore(settings: Settings, path: Path, *, only: str | None,
                   dry_run: bool) -> list[backups.Check]:
    verified = await backups.verify_backup(path)
    if not all(check.ok for check in verified):
        # Refused before anything changes, the mode included.
        return [*verified, backups.Check("restore", False, "refused: the backup does not verify")]
    async with _opened(settings, vectors=only != "sql") as (db, store):
        modes = ModeStore(db)
        previous = await modes.reload()
        if not dry_run:
            await modes.set(Mode.READ_ONLY, actor=ACTOR, reason=f"restoring {path.name}")
        checks = await backups.restore_backup(settings, db, store, path, only=only,
                                              dry_run=dry_run)
        if dry_run:
            return checks
        if all(check.ok for check in checks):
            await modes.set(previous, actor=ACTOR, reason=f"restored {path.name}")
            checks.append(backups.Check("mode", True, f"back to {previous.value}"))
        else:
            await modes.set(Mode.READ_ONLY, actor=ACTOR, reason=f"restore of {path.name} failed")
            checks.append(backups.Check("mode", False, "left read-only: the restore failed"))
        return checks


def rollback(
    to: Annotated[Path | None, typer.Option("--to", help="Backup folder to go back to.")] = None,
    services_only: Annotated[bool, typer.Option(
        "--services-only", help="Stop delivery on every node, keep the data.")] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Roll back: the whole state to a backup (--to), or only stop the services' work."""
    if (to is None) == (not services_only):
        raise typer.BadParameter("give exactly one of --to PATH and --services-only")
    settings = load_settings(config, data_dir=data_dir)
    checks = asyncio.run(_rollback(settings, to) if to else _stop_services(settings))
    raise typer.Exit(0 if _print(checks, json_output) else 1)


async def _stop_services(settings: Settings) -> list[backups.Check]:
    db = Database(settings.database_url)
    await db.start()
    try:
        await ModeStore(db).set(Mode.MAINTENANCE, actor=ACTOR, reason="rollback --services-only")
    finally:
        await db.stop()
    return [
        backups.Check("maintenance mode", True, "set for every node (within a second)"),
        backups.Check("delivery", True, "paused on every node; nothing is lost, queued mail waits"),
        backups.Check("API", True, "answers 503 except health and maintenance routes"),
        backups.Check("data", True, "kept as it is; POST /api/v1/maintenance/disable resumes"),
    ]


async def _rollback(settings: Settings, folder: Path) -> list[backups.Check]:
    checks = await backups.verify_backup(folder)
    if not all(check.ok for check in checks):
        return [*checks, backups.Check("rollback", False, "refused: the backup does not verify")]
    steps = [backups.Check("backup verified", True, str(folder))]
    async with _opened(settings, vectors=True) as (db, store):
        modes = ModeStore(db)
        await modes.set(Mode.READ_ONLY, actor=ACTOR, reason=f"rollback to {folder.name}")
        steps.append(backups.Check("read-only mode", True, "writes and delivery paused"))
        try:
            emergency = await backups.create_backup(settings, db, store, label="pre-rollback")
        except EmailSenderError as exc:
            return [*steps, backups.Check("emergency backup", False, str(exc))]
        steps.append(backups.Check("emergency backup", True, str(emergency)))
        restored = await backups.restore_backup(settings, db, store, folder)
        steps.extend(check for check in restored if not check.name.startswith("file "))
        if not all(check.ok for check in restored):
            await modes.set(Mode.READ_ONLY, actor=ACTOR, reason="rollback failed")
            return [*steps, backups.Check("rollback", False,
                                          f"left read-only; the state before is in {emergency}")]
        await modes.set(Mode.NORMAL, actor=ACTOR, reason=f"rolled back to {folder.name}")
        steps.append(backups.Check("normal mode", True, "writes and delivery resumed"))
    return steps
