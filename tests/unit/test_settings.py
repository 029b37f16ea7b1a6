from pathlib import Path

import pytest

from email_sender.errors import ConfigError
from email_sender.settings import load_settings


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
