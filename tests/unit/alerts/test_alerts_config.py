"""The alerts section of the config file: its defaults, and bad values refused by their path."""

from __future__ import annotations

from pathlib import Path

import pytest

from email_sender.errors import ConfigError
from email_sender.settings import load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_alerts_are_off_by_default_with_the_rules_limits() -> None:
    alerts = load_settings().alerts
    assert alerts.enabled is False
    assert alerts.to == []
    assert alerts.window == 300.0  # the rules' [5m]
    assert alerts.memory_limit == 2 * 1024**3  # email_sender:memory_limit_bytes
    assert (alerts.escalation.level_2.after, alerts.escalation.level_3.after) == (1800.0, 7200.0)


def test_a_good_alerts_section_is_read(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, """
alerts:
  enabled: true
  to: [oncall@example.org, "Ops <ops@example.org>"]
  sender: "email-sender <alerts@example.org>"
  cooldown: 15m
  interval: 10s
  pending: 0
  escalation:
    level_2: {after: 20m, to: [devops@example.org]}
    level_3: {after: 1h}
"""))
    alerts = settings.alerts
    assert alerts.to == ["oncall@example.org", "Ops <ops@example.org>"]
    assert (alerts.cooldown, alerts.interval, alerts.pending) == (900.0, 10.0, 0.0)
    assert alerts.escalation.level_2.to == ["devops@example.org"]
    assert alerts.escalation.level_3.after == 3600.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alerts: {enabled: true, sender: a@example.org}",
         "alerts: to: give at least one address when alerts are enabled"),
        ("alerts: {enabled: true, to: [a@example.org]}",
         "alerts: sender: required when alerts are enabled"),
        ("alerts: {to: [oncall]}", "alerts.to.0: 'oncall' is not an email address"),
        ("alerts: {cooldown: soon}", "alerts.cooldown: must be a duration"),
        ("alerts: {cooldown: 0}", "alerts.cooldown: must be > 0"),
        ("alerts: {interval: -5}", "alerts.interval: must be > 0"),
        ("alerts: {resolve_after: -1}", "alerts.resolve_after: must be >= 0"),
        ("alerts: {memory_limit: 10}", "alerts.memory_limit: must be >= 1048576"),
        ("alerts: {escalation: {level_4: {after: 1h}}}", "alerts.escalation.level_4: unknown key"),
        ("alerts: {escalation: {level_2: {to: [x@example.org]}}}",
         "alerts.escalation.level_2.after: required"),
        ("alerts: {escalation: {level_2: {after: 3h}}}",
         "alerts.escalation: level_3.after must be later than level_2.after"),
        ("alerts: {escalation: {level_3: {after: 1h, to: [nobody]}}}",
         "alerts.escalation.level_3.to.0: 'nobody' is not an email address"),
        ("alerts: {enable: true}", "alerts.enable: unknown key"),
    ],
)
def test_bad_alert_values_are_named_by_path(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    assert any(problem.startswith(expected) for problem in caught.value.problems), (
        caught.value.problems
    )
