"""``email-sender vectors migrate|verify|compare|export|import``: moving vectors with proof.

Stores are named by URI (see :mod:`email_sender.ops.uris`): ``edge:///dir``, ``local:///dir``,
``qdrant://host:6333?api_key=…``, ``jsonl:///file.jsonl[.gz]``. Each command prints one line per
check with ✅/❌ (or a JSON report with ``--json``), draws progress bars on a terminal only, and
exits 0 on success (verify: both sides identical), 1 otherwise. Bad input is one line on stderr
and exit 1, through the top-level handler of :func:`email_sender.cli.run`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from email_sender.errors import ValidationError
from email_sender.progress import progress_bar

T = TypeVar("T")

FromOption = Annotated[str, typer.Option("--from", help="Source store URI.")]
ToOption = Annotated[str, typer.Option("--to", help="Target store URI.")]
CollectionOption = Annotated[
    list[str] | None,
    typer.Option("--collection", help="Collection to handle (repeat; default: all the source's)."),
]
BatchOption = Annotated[int, typer.Option("--batch-size", help="Points per batch (1-100000).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON report instead of lines.")]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file.", envvar="EMAIL_SENDER_CONFIG"),
]
DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Folder for the database, vectors and logs.")
]

def vectors_ops_commands(app: typer.Typer) -> None:
    """Add migrate, verify, compare, export and import to the ``vectors`` app."""
    app.command("migrate")(migrate_command)
    app.command("verify")(verify_command)
    app.command("compare")(compare_command)
    app.command("export")(export_command)
    app.command("import")(import_command)


def migrate_command(
    source: FromOption,
    target: ToOption,
    collection: CollectionOption = None,
    batch_size: BatchOption = 1000,
    resume: Annotated[
        bool, typer.Option("--resume", help="Go on from where an interrupted run stopped.")
    ] = False,
    state: Annotated[
        Path | None, typer.Option("--state", help="Progress file (default: beside the target).")
    ] = None,
    backup_first: Annotated[
        bool,
        typer.Option("--backup-first",
                     help="Back up SQL data and the target's collections before writing."),
    ] = False,
    validate: Annotated[
        bool, typer.Option("--validate", help="Verify source and target afterwards.")
    ] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Copy collections between stores in batches; resumable; --validate proves the result.

    --config / --data-dir name the SQL database and backup folder that --backup-first uses.
    """
    from email_sender.ops.migrate import check_batch_size
    from email_sender.ops.uris import default_state_path

    check_batch_size(batch_size)
    _check_distinct(source, target)
    settings = None
    if backup_first:
        from email_sender.settings import load_settings

        settings = load_settings(config, data_dir=data_dir)
    state_path = state or default_state_path(target)
    migration, verification = _run(
        _migrate(source, target, collection, batch_size, resume, state_path, validate,
                 quiet=json_output, backup_settings=settings)
    )
    if json_output:
        body = {"migration": migration.as_dict()}
        if verification is not None:
            body["verify"] = verification.as_dict()
        typer.echo(json.dumps(body, indent=2))
    else:
        _print_migration(migration)
        if verification is not None:
            _print_verify(verification)
    raise typer.Exit(0 if verification is None or verification.identical else 1)


async def _migrate(
    source_uri: str, target_uri: str, collections: list[str] | None, batch_size: int,
    resume: bool, state_path: Path, validate: bool, *, quiet: bool,
    backup_settings: Any = None,
) -> tuple[Any, Any]:
    from email_sender.ops.migrate import migrate
    from email_sender.ops.uris import masked_uri

    async def work(source: Any, target: Any) -> tuple[Any, Any]:
        if backup_settings is not None:
            folder = await _backup_target(backup_settings, target, quiet)
            typer.echo(f"✅ backup of the target written to {folder}", err=True)
        total = await _points_in(source, collections)
        with progress_bar("migrating", total=total, quiet=quiet) as advance:
            migration = await migrate(
                source, target, collections, batch_size=batch_size, resume=resume,
                state_path=state_path, source_name=masked_uri(source_uri),
                target_name=masked_uri(target_uri), progress=advance,
            )
        verification = None
        if validate:
            verification = await _verify_with_bar(source, target, collections, False,
                                                  batch_size, quiet)
        return migration, verification

    return await _with_stores(source_uri, target_uri, work)


def verify_command(
    source: FromOption,
    target: ToOption,
    collection: CollectionOption = None,
    fix: Annotated[
        bool, typer.Option("--fix", help="Re-copy missing and differing points, then re-verify.")
    ] = False,
    batch_size: BatchOption = 1000,
    json_output: JsonOption = False,
) -> None:
    """Prove two stores hold the same points: counts, per-point SHA-256, digests, indexes."""
    from email_sender.ops.migrate import check_batch_size

    check_batch_size(batch_size)
    _check_distinct(source, target)

    async def work(source_store: Any, target_store: Any) -> Any:
        return await _verify_with_bar(source_store, target_store, collection, fix, batch_size,
                                      json_output)

    # Verifying against a store that is not there would create an empty one; --fix may.
    report = _run(_with_stores(source, target, work, target_must_exist=not fix))
    if json_output:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print_verify(report)
    raise typer.Exit(0 if report.identical else 1)


async def _verify_with_bar(
    source: Any, target: Any, collections: list[str] | None, fix: bool, batch_size: int,
    quiet: bool,
) -> Any:
    from email_sender.ops.verify import verify

    total = await _points_in(source, collections) + await _points_in(target, collections)
    with progress_bar("verifying", total=total, quiet=quiet) as advance:
        return await verify(source, target, collections, fix=fix, batch_size=batch_size,
                            progress=advance)


def compare_command(
    a: Annotated[str, typer.Option("--a", help="First embedder spec, e.g. local or hashing:384.")],
    b: Annotated[str, typer.Option("--b", help="Second embedder spec, e.g. openai:URL:MODEL:DIM.")],
    sample: Annotated[int, typer.Option("--sample", help="How many recent emails to embed.")] = 200,
    top_k: Annotated[int, typer.Option("--top-k", help="Neighbours compared per text.")] = 10,
    min_cosine: Annotated[
        float, typer.Option("--min-cosine", help="Pass when the mean cosine is at least this.")
    ] = 0.99,
    min_overlap: Annotated[
        float, typer.Option("--min-overlap", help="Pass when the mean top-k overlap is this.")
    ] = 0.9,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Embed the same stored emails with two embedders: cosine agreement and top-k overlap.

    Specs: hashing[:DIM], local[:MODEL_DIR], openai:URL:MODEL[:DIM], config.
    """
    from email_sender.ops.compare import check_sample
    from email_sender.settings import load_settings

    check_sample(sample)
    if top_k < 1:
        raise ValidationError("top_k", "must be at least 1")
    settings = load_settings(config, data_dir=data_dir)
    report = _run(_compare(settings, a, b, sample, top_k, quiet=json_output))
    checks = []
    if report.cosine_mean is not None:
        checks.append((report.cosine_mean >= min_cosine, "cosine agreement",
                       f"min {report.cosine_min:.4f}, mean {report.cosine_mean:.4f}, "
                       f"p5 {report.cosine_p5:.4f} (pass: mean >= {min_cosine})"))
    if report.overlap_mean is not None:
        checks.append((report.overlap_mean >= min_overlap, f"top-{report.top_k} overlap",
                       f"min {report.overlap_min:.3f}, mean {report.overlap_mean:.3f} "
                       f"(pass: mean >= {min_overlap})"))
    passed = bool(checks) and all(ok for ok, _, _ in checks)
    if json_output:
        typer.echo(json.dumps({**report.as_dict(), "passed": passed}, indent=2))
    else:
        typer.echo(
            f"{report.texts} texts: A {report.embedder_a['model']} "
            f"({report.embedder_a['dimension']}-d), B {report.embedder_b['model']} "
            f"({report.embedder_b['dimension']}-d)"
        )
        if report.cosine_mean is None:
            typer.echo("- cosine agreement: not comparable (the dimensions differ)")
        for ok, name, detail in checks:
            typer.echo(f"{_mark(ok)} {name}: {detail}")
    raise typer.Exit(0 if passed else 1)


async def _compare(settings: Any, spec_a: str, spec_b: str, sample: int, top_k: int, *,
                   quiet: bool) -> Any:
    from email_sender.ops.compare import compare, load_texts, parse_embedder_spec

    embedder_a = parse_embedder_spec(spec_a, settings)
    embedder_b = parse_embedder_spec(spec_b, settings)
    try:
        texts = await load_texts(settings, sample)
        with progress_bar("embedding", total=2 * len(texts), quiet=quiet) as advance:
            return await compare(texts, embedder_a, embedder_b, top_k=top_k, progress=advance)
    finally:
        await embedder_a.close()
        await embedder_b.close()


def export_command(
    source: FromOption,
    target: Annotated[str, typer.Option("--to", help="jsonl:///file.jsonl or .jsonl.gz")],
    collection: CollectionOption = None,
    batch_size: BatchOption = 1000,
    json_output: JsonOption = False,
) -> None:
    """Write collections to a portable JSONL file (one point per line, with its checksum)."""
    _require_scheme(target, "--to")
    _transfer(source, target, collection, batch_size, json_output)


def import_command(
    source: Annotated[str, typer.Option("--from", help="jsonl:///file.jsonl or .jsonl.gz")],
    target: ToOption,
    collection: CollectionOption = None,
    batch_size: BatchOption = 1000,
    json_output: JsonOption = False,
) -> None:
    """Load collections from a JSONL export into a store; every point's checksum is checked."""
    _require_scheme(source, "--from")
    _transfer(source, target, collection, batch_size, json_output)


def _transfer(source: str, target: str, collections: list[str] | None, batch_size: int,
              json_output: bool) -> None:
    """Export and import: a migration without resume, always verified afterwards."""
    from email_sender.ops.migrate import check_batch_size
    from email_sender.ops.uris import default_state_path

    check_batch_size(batch_size)
    _check_distinct(source, target)
    migration, verification = _run(
        _migrate(source, target, collections, batch_size, False, default_state_path(target),
                 True, quiet=json_output)
    )
    if json_output:
        body = {"transfer": migration.as_dict(), "verify": verification.as_dict()}
        typer.echo(json.dumps(body, indent=2))
    else:
        _print_migration(migration)
        _print_verify(verification)
    raise typer.Exit(0 if verification.identical else 1)


async def _with_stores(
    source_uri: str,
    target_uri: str,
    work: Callable[[Any, Any], Awaitable[T]],
    *,
    target_must_exist: bool = False,
) -> T:
    """Open both stores (the source must exist), run ``work``, close both whatever happens."""
    from email_sender.ops.uris import open_store

    source = open_store(source_uri, must_exist=True)
    try:
        target = open_store(target_uri, must_exist=target_must_exist)
    except BaseException:
        await source.close()
        raise
    try:
        result = await work(source, target)
    except BaseException:
        try:
            # A jsonl target is written at close: after a failure, drop it rather than write it.
            await (target.discard() if hasattr(target, "discard") else target.close())
        finally:
            await source.close()
        raise
    try:
        await target.close()
    finally:
        await source.close()
    return result


async def _points_in(store: Any, collections: list[str] | None) -> int:
    names = collections or await store.list_collections()
    present = set(await store.list_collections())
    return sum([await store.count(name) for name in names if name in present])


def _run(coroutine: Awaitable[T]) -> T:
    async def main() -> T:
        return await coroutine

    return asyncio.run(main())


def _check_distinct(source: str, target: str) -> None:
    from email_sender.ops.uris import same_store

    if same_store(source, target):
        raise ValidationError("uri", "--from and --to name the same store")


def _require_scheme(uri: str, flag: str) -> None:
    if not uri.lower().startswith("jsonl:"):
        raise ValidationError(flag, f"must be a jsonl:///file.jsonl[.gz] URI, not {uri!r}")


async def _backup_target(settings: Any, target: Any, quiet: bool) -> Path:
    """A full backup (SQL data, the target's collections, config) before the target changes."""
    from email_sender.db.engine import Database
    from email_sender.ops.backup import create_backup

    database = Database(settings.database_url)
    await database.start()
    try:
        with progress_bar("backup", total=None, quiet=quiet) as advance:
            return await create_backup(settings, database, target, label="pre-migrate",
                                       progress=advance)
    finally:
        await database.stop()


def _mark(ok: bool) -> str:
    return "✅" if ok else "❌"


def _print_migration(report: Any) -> None:
    for outcome in report.collections:
        detail = (
            f"{outcome.copied} points copied in {outcome.seconds:.2f} s "
            f"({outcome.copied / outcome.seconds if outcome.seconds else 0:.0f}/s)"
        )
        if outcome.skipped:
            detail += f", {outcome.skipped} already done"
        if outcome.created:
            detail += ", collection created"
        if outcome.restarted:
            detail += f", restarted: {outcome.restarted}"
        typer.echo(f"✅ {outcome.collection}: {detail}")
    typer.echo(
        f"✅ migrated {report.copied} points from {report.source} to {report.target} in "
        f"{report.seconds:.2f} s"
    )


def _print_verify(report: Any) -> None:
    _print_verify_pass(report)
    if report.fixes is not None:
        for fix in report.fixes:
            parts = [f"re-copied {fix.recopied} points"]
            if fix.created_collection:
                parts.append("created the collection")
            if fix.indexes_created:
                parts.append(f"created indexes {', '.join(fix.indexes_created)}")
            parts.extend(fix.problems)
            typer.echo(f"{_mark(not fix.problems)} fix {fix.collection}: {'; '.join(parts)}")
        typer.echo("after the fix:")
        _print_verify_pass(report.after_fix)
    typer.echo(
        f"{_mark(report.identical)} "
        + ("source and target are identical" if report.identical else "the stores differ")
    )


def _print_verify_pass(report: Any) -> None:
    for result in report.collections:
        for check in result.checks:
            typer.echo(f"{_mark(check.ok)} {result.collection} {check.name}: {check.detail}")
        for label, ids in (
            ("missing", result.missing), ("extra", result.extra),
            ("vector differs", result.vector_differs),
            ("payload differs", result.payload_differs),
        ):
            if ids:
                shown = ", ".join(ids[:10]) + (f" … (+{len(ids) - 10})" if len(ids) > 10 else "")
                typer.echo(f"   {label}: {shown}")
