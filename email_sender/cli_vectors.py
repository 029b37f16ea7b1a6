"""``email-sender vectors …``: list collections, rebuild one from SQL, upgrade one in place."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from email_sender.settings import Settings, load_settings

vectors_app = typer.Typer(
    help="The vector store: collections and reindexing.", no_args_is_help=True
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file.", envvar="EMAIL_SENDER_CONFIG"),
]
DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Folder for the database, vectors and logs.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of lines.")]


@vectors_app.command("collections")
def collections(
    config: ConfigOption = None, data_dir: DataDirOption = None, json_output: JsonOption = False
) -> None:
    """List collections with their points, dimension, distance and backend."""
    settings = load_settings(config, data_dir=data_dir)
    items = asyncio.run(_collections(settings))
    if json_output:
        typer.echo(json.dumps(items, indent=2))
        return
    if not items:
        typer.echo("no collections")
    for item in items:
        words = ", with words (sparse bm25)" if item["sparse"] else ""
        typer.echo(
            f"{item['name']}: {item['points_count']} points, {item['dimension']}-d "
            f"{item['distance']}{words}, {item['backend']}"
        )


async def _collections(settings: Settings) -> list[dict[str, Any]]:
    from email_sender.vectors.factory import build_vector_store

    store = build_vector_store(settings)
    try:
        items = []
        for name in await store.list_collections():
            items.append((await store.collection_info(name)).as_dict())
        return items
    finally:
        await store.close()


@vectors_app.command("reindex")
def reindex(
    collection: Annotated[
        str | None, typer.Option(help="Collection to rebuild (collections.emails by default).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Rows per batch.")] = 256,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Rebuild a collection from SQL: drop it, create it again, embed every row.

    A progress bar is drawn on a terminal; none in CI, in a pipe or with --json.
    """
    settings = load_settings(config, data_dir=data_dir)
    name = collection or settings.collections.emails
    result = asyncio.run(_reindex(settings, name, batch_size, quiet=json_output))
    if json_output:
        typer.echo(json.dumps(result))
    else:
        typer.echo(
            f"✅ reindexed {result['points']} points into {name!r} in {result['seconds']} s "
            f"({result['per_second']}/s)"
        )


async def _reindex(settings: Settings, name: str, batch_size: int, quiet: bool) -> dict[str, Any]:
    from email_sender.db.engine import Database
    from email_sender.progress import progress_bar
    from email_sender.vectors.embedders import LocalEmbedder, build_embedder
    from email_sender.vectors.factory import build_vector_store
    from email_sender.vectors.reindex import count_rows
    from email_sender.vectors.reindex import reindex as rebuild
    from email_sender.vectors.sparse import TextAnalyser

    db = Database(settings.database_url, pool_size=2)
    embedder = build_embedder(settings.embedder, settings.connection_pool)
    store = None
    try:
        await db.start()
        total = await count_rows(db, settings.collections, name)
        store = build_vector_store(settings)
        if isinstance(embedder, LocalEmbedder):
            await embedder.load()
        with progress_bar(f"reindexing {name}", total=total, quiet=quiet) as advance:
            result = await rebuild(
                db,
                store,
                embedder,
                settings.collections,
                name,
                analyser=TextAnalyser(settings.search.languages),
                batch_size=batch_size,
                progress=advance,
            )
        return result.as_dict()
    finally:
        if store is not None:
            await store.close()
        await embedder.close()
        await db.stop()


@vectors_app.command("upgrade")
def upgrade(
    collection: Annotated[
        str | None, typer.Option(help="Collection to upgrade (collections.emails by default).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Points per batch.")] = 256,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Add the sparse vector (search by words) to a collection made before it, keeping every
    dense vector; each step is verified. Stop the service first.

    A progress bar is drawn on a terminal; none in CI, in a pipe or with --json.
    """
    settings = load_settings(config, data_dir=data_dir)
    name = collection or settings.collections.emails
    result = asyncio.run(_upgrade(settings, name, batch_size, quiet=json_output))
    if json_output:
        typer.echo(json.dumps(result))
    elif result["already"]:
        typer.echo(f"✅ {name!r} already has its sparse vector ({result['points']} points)")
    else:
        typer.echo(
            f"✅ upgraded {name!r}: {result['points']} points, {result['with_words']} with their "
            f"words, in {result['seconds']} s"
        )


async def _upgrade(settings: Settings, name: str, batch_size: int, quiet: bool) -> dict[str, Any]:
    from email_sender.db.engine import Database
    from email_sender.errors import NotFound
    from email_sender.ops.upgrade import upgrade as upgrade_collection
    from email_sender.progress import progress_bar
    from email_sender.vectors.factory import build_vector_store
    from email_sender.vectors.sparse import TextAnalyser

    db = Database(settings.database_url, pool_size=2)
    store = None
    try:
        await db.start()
        store = build_vector_store(settings)
        try:
            total = (await store.collection_info(name)).points_count
        except NotFound:
            total = 0  # resuming a swap: the staging collection holds the points
        with progress_bar(f"upgrading {name}", total=total, quiet=quiet) as advance:
            result = await upgrade_collection(
                db,
                store,
                TextAnalyser(settings.search.languages),
                name,
                batch_size=batch_size,
                progress=advance,
            )
        return result.as_dict()
    finally:
        if store is not None:
            await store.close()
        await db.stop()
