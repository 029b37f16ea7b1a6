"""The SQL engine as a manager, the one place where SQLAlchemy errors become ours.

SQLite runs in WAL mode with a busy timeout; PostgreSQL runs through asyncpg. Migrations are
applied at start (and by ``email-sender db upgrade``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from email_sender.errors import Conflict, DatabaseUnavailable, DuplicateKey, StoreError
from email_sender.managers import Health, State
from email_sender.settings import mask_secrets

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Seconds. A statement running longer is taken for a hung server: it fails as
# DatabaseUnavailable (503) rather than holding a request forever. The service's statements are
# short (backups stream in batches, restores insert in batches), far below this.
POSTGRES_CONNECT_TIMEOUT = 5.0
POSTGRES_COMMAND_TIMEOUT = 10.0


@contextmanager
def translate_errors(url: str) -> Iterator[None]:
    """Turn SQLAlchemy and driver errors into StoreError / DatabaseUnavailable."""
    try:
        yield
    except sa_exc.InterfaceError as exc:
        raise DatabaseUnavailable(_unreachable(url, exc.orig)) from exc
    except sa_exc.OperationalError as exc:
        if "locked" in str(exc.orig):
            raise StoreError(_masked(f"the database is busy: {exc.orig}")) from exc
        raise DatabaseUnavailable(_unreachable(url, exc.orig)) from exc
    except (OSError, ConnectionError) as exc:
        raise DatabaseUnavailable(_unreachable(url, exc)) from exc
    except sa_exc.IntegrityError as exc:
        if _is_unique_violation(exc.orig):
            raise DuplicateKey(_masked(f"a unique key is already taken: {exc.orig}")) from exc
        # A foreign key, NOT NULL or CHECK refusal is not a taken key, and retrying will not help.
        raise Conflict(
            _masked(f"the database refused the change (constraint): {exc.orig}"),
            constraint="integrity",
        ) from exc
    except sa_exc.SQLAlchemyError as exc:
        raise StoreError(_masked(f"database error: {exc}")) from exc


_UNIQUE_SQLSTATE = "23505"  # PostgreSQL unique_violation
_SQLITE_UNIQUE = ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")


def _is_unique_violation(error: object) -> bool:
    """Whether a driver's integrity error is a taken unique key (not a FK/NOT NULL/CHECK)."""
    sqlstate = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    if sqlstate:
        return bool(sqlstate == _UNIQUE_SQLSTATE)
    sqlite_name = getattr(error, "sqlite_errorname", None)
    if sqlite_name:
        return sqlite_name in _SQLITE_UNIQUE
    return "UNIQUE constraint failed" in str(error)


def _unreachable(url: str, error: object) -> str:
    return _masked(f"cannot reach the database at {_safe(url)}: {error}")


def _masked(message: str) -> str:
    """Driver messages may quote the DSN (asyncpg does for a bad one): mask its password."""
    return mask_secrets(message)


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        return mask_secrets(url)


def create_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # SQLite has one writer: connections that race for the lock sleep in its busy handler
        # (1, 2, 5, 10 ms...). One shared connection makes them queue in the pool instead.
        engine = create_async_engine(
            url, echo=echo, connect_args={"timeout": 30}, pool_size=1, max_overflow=0,
            pool_timeout=60,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    # A server that stops answering (network hang) fails each statement after
    # POSTGRES_COMMAND_TIMEOUT instead of holding requests (and the accept group commit) forever.
    return create_async_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
        connect_args={
            "timeout": POSTGRES_CONNECT_TIMEOUT, "command_timeout": POSTGRES_COMMAND_TIMEOUT
        },
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling skips BEGIN before a SELECT, so a read-then-write
    # would not be atomic. Take it over: no implicit BEGIN from the driver, ours instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    """BEGIN for reads; BEGIN IMMEDIATE (the write lock at once) for write transactions, so
    two processes never both read a row and then both write it."""
    mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> str | None:
    """Apply migrations up to ``revision``; answer the revision now current."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    def run(connection: Any) -> str | None:
        command.upgrade(_alembic_config(connection), revision)
        return MigrationContext.configure(connection).get_current_revision()

    with translate_errors(str(engine.url)):
        async with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                # One node migrates at a time; the others wait, then find nothing to do.
                await connection.execute(text("SELECT pg_advisory_xact_lock(7146200101)"))
            return await connection.run_sync(run)


class Database:
    """The ``database`` manager: owns the engine, migrates at start, answers health."""

    name = "database"
    depends_on: tuple[str, ...] = ()

    def __init__(
        self, url: str, *, pool_size: int = 10, echo: bool = False, migrate: bool = True
    ) -> None:
        self.url = url
        self.pool_size = pool_size
        self.echo = echo
        self.migrate = migrate
        self._engine: AsyncEngine | None = None
        self.revision: str | None = None
        self.last_error: str | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            self._engine = create_engine(self.url, pool_size=self.pool_size, echo=self.echo)
        return self._engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def start(self) -> None:
        if self.migrate:
            self.revision = await upgrade(self.engine)
        await self.ping()

    async def stop(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def ping(self) -> float:
        """Run ``SELECT 1``; answer the round trip in milliseconds."""
        started = time.perf_counter()
        async with self.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return (time.perf_counter() - started) * 1000

    async def health(self) -> Health:
        try:
            elapsed = await asyncio.wait_for(self.ping(), 5.0)
        except (StoreError, TimeoutError) as exc:
            self.last_error = str(exc) or "timed out"
            return Health(State.FAILED, "unreachable", self.last_error)
        return Health(State.RUNNING, f"{self.dialect} ping {elapsed:.1f} ms", self.last_error)

    def info(self) -> dict[str, Any]:
        return {
            "backend": self.dialect,
            "url": _safe(self.url),
            "revision": self.revision,
            "pool_size": self.pool_size,
        }

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection without a transaction block (autobegin); errors translated."""
        with translate_errors(self.url):
            async with self.engine.connect() as connection:
                yield connection

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside one transaction, committed on success; errors translated."""
        with translate_errors(self.url):
            async with self.engine.connect() as connection:
                if self.engine.dialect.name == "sqlite":
                    connection = await connection.execution_options(sqlite_begin="IMMEDIATE")
                async with connection.begin():
                    yield connection
