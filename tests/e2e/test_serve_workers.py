"""``serve --role api --workers N``: several API processes on one port and one SQLite outbox."""

import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import psutil

from tests.conftest import free_port
from tests.e2e.test_serve import CLI, run, serve_env

EMAIL = {"from": "bench@example.com", "to": ["venue@example.org"], "subject": "Une date ?",
         "text": "Bonjour"}


def test_two_workers_share_the_port_and_the_outbox_and_stop_together(tmp_path: Path) -> None:
    port = free_port()
    # Workers search through a Qdrant server; none runs here: each worker is degraded on its
    # vectors but accepts mail and answers /health.
    env = serve_env(qdrant__url=f"http://127.0.0.1:{free_port()}")
    data = tmp_path / "data"
    process = subprocess.Popen(
        [*CLI, "serve", "--role", "api", "--workers", "2", "--data-dir", str(data),
         "--port", str(port), "--metrics-port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        nodes: set[str] = set()
        accepted = 0
        deadline = time.monotonic() + 90
        while (len(nodes) < 2 or accepted < 20) and time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                # A new connection each time: the kernel picks a worker per connection.
                with httpx.Client(timeout=5) as client:
                    health = client.get(f"{url}/health")
                    if health.status_code == 200:
                        nodes.add(health.json()["node_id"])
                        answer = client.post(f"{url}/api/v1/emails", json=EMAIL)
                        assert answer.status_code == 202, answer.text
                        accepted += 1
            except httpx.TransportError:
                time.sleep(0.2)  # the workers are still starting
        assert len(nodes) == 2, nodes
        with sqlite3.connect(data / "email-sender.db") as database:
            assert database.execute("select count(*) from emails").fetchone()[0] == accepted
        workers = psutil.Process(process.pid).children()
        assert len(workers) == 2
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert not any(worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE
                       for worker in workers)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_workers_are_refused_beyond_an_api_node_on_a_qdrant_server(tmp_path: Path) -> None:
    args = ["serve", "--data-dir", str(tmp_path / "data"), "--port", "0", "--workers"]
    embedded = run(*args, "2", "--role", "api", env=serve_env())
    assert embedded.returncode == 1
    assert "server.workers: 2 API workers need a Qdrant server (qdrant.url)" in embedded.stderr
    whole = run(*args, "2", "--role", "all", env=serve_env())
    assert whole.returncode == 1
    assert "server.workers: 2 processes serve only --role api" in whole.stderr
    none = run(*args, "0", env=serve_env())
    assert none.returncode == 1
    assert "server.workers: must be >= 1" in none.stderr
