"""``email-sender contacts …``: import contacts from a file, as ``POST /api/v1/contacts/import``
does (the same checks, the same report for every row)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from email_sender.errors import ValidationError
from email_sender.settings import Settings, load_settings

contacts_app = typer.Typer(help="Outreach contacts.", no_args_is_help=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file.", envvar="EMAIL_SENDER_CONFIG"),
]
DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Folder for the database, vectors and logs.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]

FileFormat = Literal["csv", "jsonl"]  # the importer's Format
FORMATS: dict[str, FileFormat] = {"csv": "csv", "jsonl": "jsonl"}
FORMATS_BY_SUFFIX: dict[str, FileFormat] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
# The importer reads the whole file; past this it is better split (MAX_ROWS bounds it too).
MAX_FILE_BYTES = 256 * 1024 * 1024
ACTOR = "cli"


@contacts_app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(help="CSV (with a header line) or JSON lines.")],
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="csv or jsonl; by default from the file's extension."),
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Import contacts: each row created, already there (exists), or refused with its reasons.

    Good rows are kept whatever the bad ones around them. A progress bar is drawn on a
    terminal; none in CI, in a pipe or with --json. Exit 1 when the file cannot be read.
    """
    chosen = _format(file, fmt)
    body = _read(file)
    settings = load_settings(config, data_dir=data_dir)
    report = asyncio.run(_import(settings, file, body, chosen, quiet=json_output))
    if json_output:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(
        f"{file.name}: {report['created']} created, {report['exists']} exists, "
        f"{report['error']} error"
    )
    for row in report["rows"]:
        for error in row["errors"]:
            typer.echo(f"  row {row['row']}: {error['field']}: {error['reason']}")


def _format(file: Path, fmt: str | None) -> FileFormat:
    if fmt is not None:
        named = FORMATS.get(fmt)
        if named is None:
            raise typer.BadParameter(f"{fmt!r}: csv or jsonl", param_hint="--format")
        return named
    found = FORMATS_BY_SUFFIX.get(file.suffix.lower())
    if found is None:
        raise typer.BadParameter(
            f"cannot tell the format of {file.name!r} from its extension: give csv or jsonl",
            param_hint="--format",
        )
    return found


def _read(file: Path) -> bytes:
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            raise ValidationError(str(file), f"over {MAX_FILE_BYTES} bytes: split the file")
        return file.read_bytes()
    except OSError as exc:
        raise ValidationError(str(file), f"cannot be read: {exc.strerror or exc}") from exc


async def _import(
    settings: Settings, file: Path, body: bytes, fmt: FileFormat, *, quiet: bool
) -> dict[str, Any]:
    from email_sender.db import audit
    from email_sender.db.engine import Database
    from email_sender.outreach.contacts import Change, ContactStore
    from email_sender.outreach.importer import import_contacts
    from email_sender.outreach.lifecycle import Lifecycle
    from email_sender.progress import progress_bar

    class CountingStore(ContactStore):
        """The contact store, moving the bar on by each batch the importer looks up."""

        def __init__(self, db: Database, advance: Callable[[int], None]) -> None:
            super().__init__(db, Lifecycle(settings.outreach.lifecycle))
            self.advance = advance

        async def existing(self, emails: list[str]) -> set[str]:
            found = await super().existing(emails)
            self.advance(len(emails))
            return found

    db = Database(settings.database_url, pool_size=2)
    try:
        await db.start()
        with progress_bar(f"importing {file.name}", total=None, quiet=quiet) as advance:
            try:
                report = await import_contacts(
                    CountingStore(db, advance), body, fmt, Change("import", ACTOR)
                )
            except ValidationError as exc:
                # The importer names the request body; here the body is the file.
                raise ValidationError(str(file), exc.reason) from exc
        counts = report.counts()
        await audit.record(db, actor=ACTOR, action="contacts_imported",
                           details={**counts, "file": file.name})
        return {**counts, "rows": [vars(result) for result in report.rows]}
    finally:
        await db.stop()
