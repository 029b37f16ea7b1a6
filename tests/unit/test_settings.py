from pathlib import Path

import pytest

from email_sender.errors import ConfigError
from email_sender.log import JsonFormatter, TextFormatter
from email_sender.settings import load_settings, mask_secrets


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_embedded_deployment() -> None:
    settings = load_settings()
    assert settings.server.port == 8080
    assert settings.metrics.port == 8081
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.database_url.endswith("data/email-sender.db")
    assert settings.event_bus.backend == "memory"
    assert settings.uses_capture_sink
    assert settings.collections.emails == "emails"
    assert settings.collections.tasks == "task_vectors"


def test_a_good_file_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "server: {port: 9000}\nvector_cache: {max_size: 10000, ttl: 1h}\n"
        "delivery: {backoff: {base: 5s, max: 10m}}\n",
    )
    settings = load_settings(path)
    assert settings.server.port == 9000
    assert settings.vector_cache.ttl == 3600.0
    assert settings.delivery.backoff.base == 5.0
    assert settings.delivery.backoff.max == 600.0


def test_every_problem_is_named_with_its_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "event_bus: {workers: 0, colour: blue}\nserver: {port: 70000}\n"
        "embedder: {provider: magic}\nvector_cache: {ttl: soon}\nunknown_section: {}\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    problems = caught.value.problems
    assert "event_bus.workers: must be >= 1" in problems
    assert "event_bus.colour: unknown key" in problems
    assert "server.port: must be <= 65535" in problems
    assert "unknown_section: unknown key" in problems
    assert any(p.startswith("embedder.provider: must be one of") for p in problems)
    assert any(p.startswith("vector_cache.ttl: must be a duration") for p in problems)


def test_a_bad_command_line_value_is_named_with_its_whole_key() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(overrides={"server.workers": 0})
    assert caught.value.problems == ["server.workers: must be >= 1"]
    with pytest.raises(ConfigError) as caught:
        load_settings(overrides={"server.port": 70000})
    assert caught.value.problems == ["server.port: must be <= 65535"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("server: [1, 2]", "server: Input should be a valid dictionary"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ("server: {port: 1\n", "not valid YAML"),
        ("smtp: {relays: [{url: 'http://x'}]}", "smtp.relays.0.url: must look like smtp://"),
        ("security: {blocked_ips: ['10.0.0.300']}", "is not an IP address"),
        ("security: {api_keys: [{name: a}]}", "give either key or key_sha256"),
        ("database: {url: 'mysql://x/y'}", "database.url: must be a sqlite:/// or postgresql://"),
        ("inbound: {verp_domain: bounce.example}", "verp_secret is required with verp_domain"),
        ("search: {languages: [fr, xx]}", "search.languages.1: must be one of 'da', 'de'"),
        ("search: {languages: []}", "search.languages: List should have at least 1 item"),
        (
            "inbound: {max_message_bytes: 2048, smtp: {max_message_bytes: 4096}}",
            "smtp.max_message_bytes (4096) is over max_message_bytes (2048)",
        ),
    ],
)
def test_bad_values_are_config_errors(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    assert expected in str(caught.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "absent.yaml")


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "event_bus: {workers: 3}\nserver: {port: 9000}\n")
    monkeypatch.setenv("EMAIL_SENDER__EVENT_BUS__WORKERS", "7")
    monkeypatch.setenv("EMAIL_SENDER__DATABASE__URL", "postgresql://u:pw@db:5432/mail")
    settings = load_settings(path)
    assert settings.event_bus.workers == 7
    assert settings.server.port == 9000
    assert settings.database_url == "postgresql+asyncpg://u:pw@db:5432/mail"


def test_bad_environment_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMAIL_SENDER__EVENT_BUS__WORKERS", "-2")
    with pytest.raises(ConfigError, match=r"event_bus\.workers: must be >= 1"):
        load_settings()


def test_secrets_are_masked_and_keys_kept_only_as_hashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        "security: {api_keys: [{name: ops, key: hunter2, scopes: [admin]}]}\n"
        "smtp: {relays: [{url: 'smtp://relay:587', username: u, password: pa55word}]}\n"
        "qdrant: {url: 'http://q:6333', api_key: qkey}\n"
        "database: {url: 'postgresql://me:dbpass@db/mail'}\n",
    )
    settings = load_settings(path)
    shown = str(settings.masked()) + repr(settings) + str(settings)
    for secret in ("hunter2", "pa55word", "qkey", "dbpass"):
        assert secret not in shown
    key = settings.security.api_keys[0]
    assert key.key is None
    assert key.key_sha256 == "f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7"
    assert settings.smtp.relays[0].password is not None
    assert settings.smtp.relays[0].password.get_secret_value() == "pa55word"


def test_data_dir_places_the_files(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "d")
    assert settings.database_url.endswith(f"{tmp_path}/d/email-sender.db")
    assert settings.qdrant_path == tmp_path / "d" / "qdrant"
    assert settings.log_dir == tmp_path / "d" / "logs"


def test_example_config_is_valid_and_complete() -> None:
    example = Path(__file__).parents[2] / "config" / "example.yaml"
    settings = load_settings(example)
    # Every section of the settings tree is documented in the example.
    text = example.read_text()
    for section in settings.model_dump(by_alias=True):
        if section != "data_dir":
            assert f"\n{section}:" in text, section


CANARY = "canary-s3cr3t-XYZ"


def test_urls_keep_their_real_value_for_connections_but_never_show_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMAIL_SENDER__EVENT_BUS__REDIS_URL", f"redis://:{CANARY}@cache:6379/0")
    path = write(
        tmp_path,
        f"database: {{url: 'postgresql://me:{CANARY}@db/mail'}}\n"
        f"qdrant: {{url: 'http://q:{CANARY}@q:6333'}}\n"
        f"embedder: {{url: 'https://e:{CANARY}@emb/v1'}}\n",
    )
    settings = load_settings(path)
    assert settings.database_url == f"postgresql+asyncpg://me:{CANARY}@db/mail"
    assert not settings.database.is_sqlite
    redis_url = settings.event_bus.redis_url
    assert redis_url.get_secret_value() == f"redis://:{CANARY}@cache:6379/0"
    shown = (
        str(settings.masked()) + repr(settings) + str(settings) + str(redis_url) + f"{redis_url}"
        + settings.database.model_dump_json() + settings.event_bus.model_dump_json()
    )
    assert CANARY not in shown
    masked = settings.masked()
    # Only the password goes: the operator still sees where each URL points.
    assert masked["database"]["url"] == "postgresql+asyncpg://me:**********@db/mail"
    assert masked["event_bus"]["redis_url"] == "redis://:**********@cache:6379/0"
    assert masked["qdrant"]["url"] == "http://q:**********@q:6333"
    assert masked["embedder"]["url"] == "https://e:**********@emb/v1"


def test_a_url_setting_can_be_assigned_and_stays_masked(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, overrides={"database.url": "sqlite:///x.db"})
    assert settings.database_url == "sqlite+aiosqlite:///x.db"
    assert settings.database.is_sqlite
    settings.database.url = f"postgres://u:{CANARY}@h/db"  # type: ignore[assignment]
    assert settings.database_url == f"postgresql+asyncpg://u:{CANARY}@h/db"
    assert CANARY not in repr(settings.database) + str(settings.masked())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"redis://:{CANARY}@h:1/0", "redis://:**********@h:1/0"),
        # An unencoded '@' in the password: masked up to the last one, as urllib reads it.
        (f"redis://u:{CANARY}@x@h/0", "redis://u:**********@h/0"),
        (
            f"at postgresql+asyncpg://u:{CANARY}@h/db: refused",
            "at postgresql+asyncpg://u:**********@h/db: refused",
        ),
        (
            f"postgresql://h/db?user=u&password={CANARY}&ssl=1",
            "postgresql://h/db?user=u&password=**********&ssl=1",
        ),
        (
            f'{{"url": "redis://:{CANARY}@h", "to": "a@b.c"}}',
            '{"url": "redis://:**********@h", "to": "a@b.c"}',
        ),
        ("smtp://relay:587 and mail to a@b.c", "smtp://relay:587 and mail to a@b.c"),
    ],
)
def test_mask_secrets_in_text(text: str, expected: str) -> None:
    assert mask_secrets(text) == expected


def test_log_lines_never_carry_a_url_password() -> None:
    import logging
    import sys

    record = logging.LogRecord(
        "email_sender.events", logging.WARNING, __file__, 1,
        "cannot reach redis://:%s@h:6379/0", (CANARY,), None,
    )
    record.url = f"postgresql://u:{CANARY}@db/mail"
    try:
        raise OSError(f"connect to redis://:{CANARY}@h failed")
    except OSError:
        record.exc_info = sys.exc_info()
    for formatter in (JsonFormatter(), TextFormatter()):
        line = formatter.format(record)
        assert CANARY not in line
        assert "**********" in line
