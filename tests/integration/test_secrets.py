"""Secrets never leave: one canary in every secret-bearing key, then every way out is read.

The canary sits in the password of every URL (database, Redis, Qdrant, embedder), the SMTP relay
password, the API key and the embedder and Qdrant API keys. Then ``config show``, a backup, failed
connections to PostgreSQL, Redis and an SMTP relay (their errors, cause chains and the CLI's
output) and the JSON log files are all searched for it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

from email_sender.db.engine import Database
from email_sender.errors import DeliveryError, EventBusError, StoreError, VectorError
from email_sender.events import RedisEventBus
from email_sender.log import LOG_FILE, setup_logging
from email_sender.mail.transport import SmtpTransport
from email_sender.ops import backup as backups
from email_sender.service import build_service
from email_sender.settings import MASK, RelaySettings, load_settings
from email_sender.vectors.embedders import OpenAIEmbedder
from email_sender.vectors.server import ServerVectorStore
from tests.conftest import free_port
from tests.support.smtp_server import SmtpTestServer

CANARY = "canary-s3cr3t-XYZ"
CLI = [sys.executable, "-m", "email_sender"]

pytestmark = pytest.mark.postgres


def _with_password(url: str, password: str, *, port: int | None = None) -> str:
    """``url`` with ``password`` in its userinfo (user ``postgres`` when it has none)."""
    parts = urlsplit(url)
    user = parts.username or "postgres"
    host = f"{parts.hostname}:{port or parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


def _config(data_dir: Path, database_url: str, relay_port: int) -> dict[str, Any]:
    """Every secret-bearing key holds the canary."""
    return {
        "data_dir": str(data_dir),
        "database": {"url": database_url},
        "smtp": {"relays": [{"url": f"smtp://127.0.0.1:{relay_port}", "username": "mailer",
                             "password": CANARY, "tls": "none", "timeout": 5}],
                 "capture_sink": {"enabled": False}},
        "event_bus": {"backend": "memory",
                      "redis_url": f"redis://default:{CANARY}@127.0.0.1:{free_port()}/0"},
        "qdrant": {"url": f"http://reader:{CANARY}@127.0.0.1:{free_port()}",
                   "api_key": CANARY},
        "embedder": {"provider": "hashing", "dimension": 8,
                     "url": f"http://embed:{CANARY}@127.0.0.1:{free_port()}/v1",
                     "api_key": CANARY},
        "security": {"api_keys": [{"name": "ops", "key": CANARY, "scopes": ["admin"]}]},
        "inbound": {"verp_domain": "bounce.example.org", "verp_secret": CANARY},
        "outreach": {"unsubscribe_url": "https://mail.example.org/u/",
                     "unsubscribe_secret": CANARY},
        "server": {"port": 0},
        "metrics": {"port": 0},
    }


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def _chain(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


@pytest.fixture
def json_logs(tmp_path: Path) -> Iterator[Path]:
    """The service's own logging setup (JSON files under logs/), undone afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    log_dir = tmp_path / "data" / "logs"
    setup_logging(level="DEBUG", log_dir=log_dir, stderr=False)
    try:
        yield log_dir
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


@pytest.fixture
def canary_config(tmp_path: Path, pg_url: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A config file with the canary in every secret, and the SMTP relay it names (which wants
    another password). PostgreSQL trusts local connections: the canary rides along unused."""
    with SmtpTestServer(auth=("mailer", "the-right-password")) as relay:
        config = _config(tmp_path / "data", _with_password(pg_url, CANARY), relay.port)
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        yield path, config


def _assert_nothing_leaked(outputs: list[str], data_dir: Path, log_dir: Path) -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
    leaks = [text for text in outputs if CANARY in text]
    assert leaks == []
    files = [path for path in data_dir.rglob("*") if path.is_file()]
    assert (log_dir / LOG_FILE) in files
    assert [str(path) for path in files if CANARY.encode() in path.read_bytes()] == []


async def test_config_show_backups_and_logs_mask_every_secret(
    canary_config: tuple[Path, dict[str, Any]], json_logs: Path, pg_url: str
) -> None:
    config_path, config = canary_config
    settings = load_settings(config_path)
    assert settings.database_url == config["database"]["url"]
    outputs: list[str] = []

    shown = _cli("config", "show", "--config", str(config_path))
    assert shown.returncode == 0, shown.stderr
    outputs += [shown.stdout, shown.stderr]
    show = yaml.safe_load(shown.stdout)
    # Only the secret goes: where each URL points stays readable.
    assert show["event_bus"]["redis_url"].startswith(f"redis://default:{MASK}@127.0.0.1:")
    assert show["database"]["url"] == _with_password(pg_url, MASK)
    assert show["qdrant"]["url"].startswith(f"http://reader:{MASK}@")
    assert show["smtp"]["relays"][0]["password"] == MASK

    service = build_service(settings, role="api")
    await service.start()
    try:
        folder = await backups.create_backup(settings, service.db, None)
    finally:
        await service.stop()
    saved = yaml.safe_load((folder / "config.yaml").read_text())
    assert saved["event_bus"]["redis_url"].startswith("redis://default:")
    made = _cli("backup", "create", "--config", str(config_path), "--no-vectors")
    assert made.returncode == 0, made.stderr
    outputs += [made.stdout, made.stderr]
    assert len(list(settings.backup_dir.glob("*/config.yaml"))) == 2

    # Whatever a module logs, settings or a live URL, the formatter masks it.
    logging.getLogger("email_sender.service").warning(
        "settings_seen", extra={"settings": repr(settings), "url": settings.database_url}
    )
    log_lines = (json_logs / LOG_FILE).read_text()
    assert '"event": "settings_seen"' in log_lines
    _assert_nothing_leaked(outputs, settings.data_dir, json_logs)


async def test_failed_connections_never_show_a_secret(
    canary_config: tuple[Path, dict[str, Any]], json_logs: Path, pg_url: str
) -> None:
    config_path, config = canary_config
    settings = load_settings(config_path)
    logger = logging.getLogger("email_sender.service")
    outputs: list[str] = []

    # An SMTP relay that refuses the canary password.
    transport = SmtpTransport([RelaySettings(**config["smtp"]["relays"][0])])
    try:
        with pytest.raises(DeliveryError) as refused:
            await transport.check()
    finally:
        await transport.close()
    logger.error("relay_refused", exc_info=refused.value, extra={"error": str(refused.value)})
    outputs += [_chain(refused.value), str(transport.stats())]

    # PostgreSQL on a dead port, and a database that does not exist.
    for url, says in (
        (_with_password(pg_url, CANARY, port=free_port()), f":{MASK}@127.0.0.1"),
        (_with_password(pg_url.rsplit("/", 1)[0] + "/no_such_db_here", CANARY), "does not exist"),
    ):
        database = Database(url, migrate=False)
        try:
            with pytest.raises(StoreError) as unreachable:
                await database.start()
            health = await database.health()
        finally:
            await database.stop()
        assert says in str(unreachable.value)
        logger.error("database_unreachable", exc_info=unreachable.value)
        outputs += [_chain(unreachable.value), str(health), str(database.info())]
    # The CLI prints the error and its cause chain.
    broken = {**config, "database": {"url": _with_password(pg_url, CANARY, port=free_port())}}
    config_path.write_text(yaml.safe_dump(broken))
    failed = _cli("db", "upgrade", "--config", str(config_path))
    assert failed.returncode == 1 and "cannot reach the database" in failed.stderr
    outputs += [failed.stdout, failed.stderr]

    # A Qdrant server and an embeddings endpoint on dead ports: their errors reach API answers.
    store = ServerVectorStore(config["qdrant"]["url"], timeout=2)
    try:
        with pytest.raises(VectorError) as no_qdrant:
            await store.list_collections()
    finally:
        await store.close()
    assert f"reader:{MASK}@127.0.0.1" in str(no_qdrant.value)
    embedder = OpenAIEmbedder("text-embedding-3-small", url=config["embedder"]["url"],
                              timeout=2, max_attempts=1)
    try:
        with pytest.raises(VectorError) as no_embedder:
            await embedder.embed(["hello"])
    finally:
        await embedder.close()
    assert f":{MASK}@127.0.0.1" in str(no_embedder.value)
    for failure in (no_qdrant.value, no_embedder.value):
        logger.error("vectors_unreachable", exc_info=failure)
        outputs += [_chain(failure), str(failure.details)]

    # Redis on a dead port: the bus alone, then a whole node whose event bus cannot start.
    bus = RedisEventBus(settings.event_bus.model_copy(update={"backend": "redis"}))
    with pytest.raises(EventBusError) as no_redis:
        await bus.start()
    assert f"redis://default:{MASK}@127.0.0.1:" in str(no_redis.value)
    outputs += [_chain(no_redis.value), str(bus.stats()), str(await bus.health())]
    settings.event_bus.backend = "redis"
    node = build_service(settings, role="api")
    await node.start()
    try:
        assert node.registry.status("event_bus").state.value != "running"
        outputs.append(str(node.registry.report()))
    finally:
        await node.stop()

    log_lines = (json_logs / LOG_FILE).read_text()
    for event in ("relay_refused", "database_unreachable", "manager_start_failed"):
        assert f'"event": "{event}"' in log_lines
    assert f"redis://default:{MASK}@127.0.0.1" in log_lines
    _assert_nothing_leaked(outputs, settings.data_dir, json_logs)
