"""``email-sender monitor`` as an operator runs it against a served node, and ``config validate``
on a bad alerts section."""

from __future__ import annotations

import fcntl
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.conftest import free_port
from tests.e2e.test_serve import CLI, run, serve_env, wait_until_up


class Node:
    def __init__(self, data_dir: Path) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.process = subprocess.Popen(
            [*CLI, "serve", "--data-dir", str(data_dir), "--port", str(self.port),
             "--metrics-port", str(self.metrics_port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=serve_env(),
        )

    def monitor(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run("monitor", "--url", self.url, "--metrics-url", self.metrics_url, *args)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def held_store_lock(tmp_path: Path) -> Iterator[IO[str]]:
    """The node's embedded vector store, held by this (other) process as a second opener would
    hold it: the node's qdrant_manager cannot start while it is held."""
    folder = tmp_path / "data" / "qdrant"
    folder.mkdir(parents=True)
    with open(folder / ".lock", "a+", encoding="ascii") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield handle


def test_monitor_exits_by_the_worst_check_and_3_when_the_node_is_away(
    tmp_path: Path, held_store_lock: IO[str]
) -> None:
    node = Node(tmp_path / "data")
    try:
        wait_until_up(node.url, node.process)
        for _ in range(5):
            httpx.get(f"{node.url}/api/v1/emails", timeout=5)

        # Critical: the vector store is held elsewhere.
        critical = node.monitor("--window", "1")
        assert critical.returncode == 2, critical.stdout + critical.stderr
        lines = critical.stdout.splitlines()
        assert "❌ vector_store: qdrant_manager is failed" in lines[
            [line.split(":")[0] for line in lines].index("❌ vector_store")]
        assert any(line.startswith("❌ managers: ") and "qdrant_manager failed" in line
                   for line in lines)
        assert any(line.startswith("✅ memory: resident memory ") for line in lines)
        assert any(line.startswith("✅ health_response: GET /health answered in ")
                   for line in lines)
        assert lines[-1].startswith(f"CRITICAL: {len(lines) - 1} checks of {node.url}, ")

        # Freed and restarted (as the runbook does): every check ok, exit 0, the same as JSON.
        fcntl.flock(held_store_lock.fileno(), fcntl.LOCK_UN)
        restart = httpx.post(f"{node.url}/api/v1/managers/discovery/restart", timeout=30)
        assert restart.json()["still_failed"] == [], restart.text
        healthy = node.monitor("--window", "1")
        assert healthy.returncode == 0, healthy.stdout
        assert all(line.startswith("✅") for line in healthy.stdout.splitlines()[:-1])
        assert healthy.stdout.splitlines()[-1].startswith("OK: ")
        as_json = node.monitor("--window", "1", "--json")
        assert as_json.returncode == 0, as_json.stdout
        report = json.loads(as_json.stdout)
        assert report["status"] == "ok"
        names = {check["name"] for check in report["checks"]}
        assert {"api_latency_p95", "api_error_rate", "memory", "queue_age",
                "vector_insert_errors", "search_latency_p95", "vector_store", "managers",
                "health_response"} <= names
        latency = next(c for c in report["checks"] if c["name"] == "api_latency_p95")
        assert latency["threshold"] == "warning > 100 ms, critical > 500 ms"
        assert latency["summary"] == "API: no requests in the window"  # those above aged out

        # The node's ports from its config file; a tiny memory limit is critical.
        config = tmp_path / "monitor.yaml"
        config.write_text(f"server: {{port: {node.port}}}\nmetrics: {{port: {node.metrics_port}}}\n"
                          "alerts: {memory_limit: 1048576}\n")
        tight = run("monitor", "--config", str(config), "--window", "0")
        assert tight.returncode == 2, tight.stdout
        assert any(line.startswith("❌ memory: ") for line in tight.stdout.splitlines())
    finally:
        node.stop()

    away = node.monitor("--window", "0")
    assert away.returncode == 3
    assert away.stdout.startswith(f"❌ node: cannot reach {node.url}/health")
    away_json = node.monitor("--json")
    assert away_json.returncode == 3
    assert json.loads(away_json.stdout)["status"] == "unknown"


def test_config_validate_names_every_wrong_alert_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "alerts:\n  enabled: true\n  to: [oncall, ops@example.org]\n  cooldwn: 5m\n"
        "  interval: never\n  escalation: {level_2: {after: 3h}, level_3: {after: 1h}}\n"
    )
    result = run("config", "validate", "--config", str(config))
    assert result.returncode == 1
    problems = result.stdout.splitlines()
    assert any(p.startswith("❌ alerts.to.0: 'oncall' is not an email address") for p in problems)
    assert "❌ alerts.cooldwn: unknown key" in problems
    assert any(p.startswith("❌ alerts.interval: must be a duration") for p in problems)
    assert ("❌ alerts.escalation: level_3.after must be later than level_2.after"
            in problems), problems
