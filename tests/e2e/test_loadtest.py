"""email-sender loadtest --scenario search: concurrent semantic searches against a served node."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.served import ServedNode


def test_the_search_scenario_reports_against_the_vector_search_bar(tmp_path: Path) -> None:
    node = ServedNode(tmp_path)
    node.start()
    try:
        node.send(3)
        result = subprocess.run(
            [sys.executable, "-m", "email_sender", "loadtest", "--url", node.url,
             "--scenario", "search", "--concurrency", "20", "--duration", "60",
             "--max-requests", "200", "--api-key", node.admin_key, "--json"],
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        figures = json.loads(result.stdout)
        assert figures["scenario"] == "search"
        assert figures["requests"] == 200
        assert figures["statuses"] == {"200": 200}
        assert (figures["errors"], figures["min_rps"], figures["max_p95_ms"]) == (0, 0.0, 50.0)
        assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"]
        assert figures["meets_seed_bar"] == (figures["p95_ms"] < 50.0)

        refused = subprocess.run(
            [sys.executable, "-m", "email_sender", "loadtest", "--url", node.url,
             "--scenario", "search", "--max-requests", "5", "--json"],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert refused.returncode == 1
        assert json.loads(refused.stdout)["statuses"] == {"401": 5}

        unknown = subprocess.run(
            [sys.executable, "-m", "email_sender", "loadtest", "--scenario", "browse"],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert unknown.returncode == 2
        assert "'browse' is not one of send, search" in unknown.stderr
    finally:
        node.stop()
