"""The migrations build exactly the tables ``db/schema.py`` declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from email_sender.db.engine import Database, upgrade
from email_sender.db.schema import metadata


async def test_the_migrated_database_matches_the_declared_schema(database_url: str) -> None:
    database = Database(database_url)
    try:
        await upgrade(database.engine)

        def differences(connection: Any) -> list[Any]:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": False}
            )
            return list(compare_metadata(context, metadata))

        async with database.engine.connect() as connection:
            found = await connection.run_sync(differences)
    finally:
        await database.stop()
    assert found == []
