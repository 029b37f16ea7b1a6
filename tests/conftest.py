"""Shared fixtures: settings on a temp data dir, SQLite and PostgreSQL databases, a running service.

PostgreSQL tests use the server named by ``EMAIL_SENDER_TEST_PG_URL`` (default the local one).
A session migrates a template database once; each test gets a fresh clone of it. Where the
server is absent the tests skip with the reason, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from email_sender.api.app import create_app
from email_sender.db.engine import Database, upgrade
from email_sender.service import Service, build_service
from email_sender.settings import Settings, load_settings

pytest_plugins = ["tests.support.fixtures"]

PG_URL = os.environ.get("EMAIL_SENDER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("EMAIL_SENDER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_absent(what: str, error: BaseException) -> None:
    """Skip with the reason; in CI an absent service is a failure, never a skip."""
    message = f"{what} is not reachable ({error})"
    if IN_CI:
        pytest.fail(f"{message}; CI must run these tests")
    pytest.skip(message)


def _server_url(database: str) -> str:
    base, _, _ = PG_URL.rpartition("/")
    return f"{base}/{database}"


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(PG_URL, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated template database for this test run; dropped at the end."""
    name = f"es_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        service_absent(f"PostgreSQL at {PG_URL}", exc)

    async def migrate() -> None:
        database = Database(_server_url(name).replace("postgresql://", "postgresql+asyncpg://"))
        try:
            await upgrade(database.engine)
        finally:
            await database.stop()

    asyncio.run(migrate())
    yield name
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test."""
    name = f"es_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    yield _server_url(name).replace("postgresql://", "postgresql+asyncpg://")
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs twice: on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'email-sender.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


def make_settings(tmp_path: Path, database_url: str | None = None, **sections: Any) -> Settings:
    settings = load_settings(data_dir=tmp_path / "data")
    values: dict[str, Any] = {
        "server.port": 0,
        "metrics.port": 0,
        "smtp.capture_sink.port": 0,
        "node.heartbeat_interval": 0.2,
        "logging.level": "DEBUG",
    }
    if database_url:
        values["database.url"] = database_url
    for dotted, value in {**values, **sections}.items():
        target: Any = settings
        *parents, leaf = dotted.split(".")
        for part in parents:
            target = getattr(target, part)
        setattr(target, leaf, value)
    return settings


async def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> None:
    """Wait until ``await predicate()`` (or ``predicate()``) is true, or fail after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url)


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[Service]:
    node = build_service(settings)
    async with node:
        yield node


@asynccontextmanager
async def asgi_client(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the service's real app in process."""
    transport = httpx.ASGITransport(app=create_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def client(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(service) as http:
        yield http
