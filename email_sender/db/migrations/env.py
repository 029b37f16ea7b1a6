"""Alembic environment: migrations run on a connection handed in by ``db.engine.upgrade``."""

from alembic import context

from email_sender.db.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
