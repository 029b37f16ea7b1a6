"""deploy/check.py refuses operator files that name a metric the service does not export or an
alert without tests, and promtool's unit tests catch a changed alert rule."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "deploy" / "check.py"
RULES = Path("prometheus") / "alerts.yml"
DASHBOARD = Path("grafana") / "email-sender-dashboard.json"


def check(deploy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK), "--deploy-dir", str(deploy), "--no-tools", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.fixture
def deploy(tmp_path: Path) -> Path:
    copy = tmp_path / "deploy"
    shutil.copytree(ROOT / "deploy", copy)
    return copy


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) >= 1, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_the_operator_files_pass() -> None:
    result = check(ROOT / "deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "each tested firing and quiet" in result.stdout


@pytest.mark.parametrize("relative", [RULES, DASHBOARD], ids=["rule", "panel"])
def test_a_made_up_metric_fails_naming_the_file_and_line(deploy: Path, relative: Path) -> None:
    replace_once(deploy / relative, "email_sender_vector_backlog", "email_sender_vector_lag")
    result = check(deploy)
    assert result.returncode == 1
    assert f"{relative}:" in result.stdout
    assert "email_sender_vector_lag is not a series the service exports" in result.stdout


def test_a_histogram_named_without_its_suffix_in_a_rule_fails(deploy: Path) -> None:
    replace_once(
        deploy / RULES,
        "email_sender_http_request_duration_seconds_bucket",
        "email_sender_http_request_duration_seconds",
    )
    result = check(deploy)
    assert result.returncode == 1
    assert "email_sender_http_request_duration_seconds is not a series" in result.stdout


def test_an_unrecorded_rule_name_fails(deploy: Path) -> None:
    replace_once(deploy / RULES, "- record: email_sender:memory_limit_bytes",
                 "- record: email_sender:memory_bytes")
    result = check(deploy)
    assert result.returncode == 1
    assert "email_sender:memory_limit_bytes is not recorded" in result.stdout


def test_an_alert_without_tests_fails(deploy: Path) -> None:
    rules = deploy / RULES
    rules.write_text(
        rules.read_text(encoding="utf-8")
        + "\n  - name: extra\n    rules:\n"
        + "      - alert: EmailSenderUntested\n        expr: email_sender_nodes_live == 0\n",
        encoding="utf-8",
    )
    result = check(deploy)
    assert result.returncode == 1
    assert "no case where EmailSenderUntested fires" in result.stdout
    assert "no case where EmailSenderUntested stays quiet" in result.stdout


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool is not installed (Debian package prometheus)"
        if IN_CI:
            pytest.fail(f"{message}; CI must run this test")
        pytest.skip(message)
    return found


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("> 0.01\n", "> 0.04\n"),  # error rate: warning threshold moved
        ('email_sender_manager_state{state="degraded"} == 1', "email_sender_manager_state == 2"),
        ("email_sender_vector_backlog > 1000", "email_sender_vector_backlog > 5000"),
        ("email_sender_uptime_seconds < 300", "email_sender_uptime_seconds < 10"),
    ],
    ids=["error-rate", "degraded", "vector-backlog", "restarted"],
)
def test_the_rule_tests_catch_a_changed_rule(deploy: Path, old: str, new: str) -> None:
    tool = promtool()
    tests = deploy / "prometheus" / "alerts_test.yml"
    intact = subprocess.run([tool, "test", "rules", str(tests)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    replace_once(deploy / RULES, old, new)
    broken = subprocess.run([tool, "test", "rules", str(tests)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert broken.returncode != 0, broken.stdout
    assert "FAILED" in broken.stdout + broken.stderr
