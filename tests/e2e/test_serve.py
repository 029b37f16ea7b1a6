"""The CLI as an operator drives it: serve in a subprocess, health, config, signals."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import REDIS_URL, free_port
from tests.support.faultproxy import FaultProxy

CLI = [sys.executable, "-m", "email_sender"]


def run(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, **kwargs)


def wait_until_up(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError("the service did not come up in 60 s")


def serve_env(**settings: object) -> dict[str, str]:
    """The environment of a served node: a hashing embedder, a capture sink on a free port
    (never the default 1025, which a developer's Mailpit may hold), and ``settings``."""
    env = {
        **os.environ,
        "EMAIL_SENDER__EMBEDDER__PROVIDER": "hashing",
        "EMAIL_SENDER__SMTP__CAPTURE_SINK__PORT": str(free_port()),
    }
    env.update({f"EMAIL_SENDER__{key.upper()}": str(value) for key, value in settings.items()})
    return env


def test_serve_answers_health_and_stops_on_sigterm(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    env = serve_env()
    process = subprocess.Popen(
        [*CLI, "serve", "--data-dir", str(tmp_path / "data"), "--port", str(port),
         "--metrics-port", str(metrics_port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process)
        healthy = run("health", "--url", url, "--detailed")
        assert healthy.returncode == 0, healthy.stdout
        assert "✅ service: ok" in healthy.stdout
        assert "✅ ready/database" in healthy.stdout
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert "email_sender_manager_state" in metrics

        # A long duration: the run ends at 40 requests, however loaded the machine is.
        load = run("loadtest", "--url", url, "--concurrency", "4", "--duration", "50",
                   "--max-requests", "40", "--json")
        assert load.returncode == 0, load.stdout + load.stderr
        figures = json.loads(load.stdout)
        assert figures["requests"] == 40
        assert figures["statuses"] == {"202": 40}
        sent = httpx.get(f"{url}/api/v1/emails", params={"limit": 100}).json()["items"]
        assert len(sent) == 40

        taken = run("serve", "--data-dir", str(tmp_path / "other"), "--port", str(port),
                    "--metrics-port", str(free_port()), env=serve_env())
        assert taken.returncode == 2
        assert f"port {port} on 127.0.0.1 is already in use" in taken.stderr
        assert "Traceback" not in taken.stderr

        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert time.monotonic() - stopping < 15.0  # server.shutdown_grace's default
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    logs = tmp_path / "data" / "logs"
    assert (logs / "email-sender.log").exists()
    assert '"event": "node_stopped"' in (logs / "email-sender.log").read_text()
    down = run("health", "--url", url)
    assert down.returncode == 1
    assert "❌ service: cannot reach" in down.stdout


def test_serve_refuses_a_taken_capture_sink_port_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        sink_port = holder.getsockname()[1]
        env = {**serve_env(), "EMAIL_SENDER__SMTP__CAPTURE_SINK__PORT": str(sink_port)}
        result = run("serve", "--data-dir", str(tmp_path), "--port", str(free_port()),
                     "--metrics-port", str(free_port()), env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: capture sink port {sink_port} on 127.0.0.1 is already "
                                f"in use by "), result.stderr
    assert f"(pid {os.getpid()})" in lines[-1]
    assert "Traceback" not in result.stderr
    assert "serving http" not in result.stderr


def test_a_degraded_node_answers_and_stops_within_shutdown_grace(tmp_path: Path) -> None:
    """Redis is unreachable: the node answers /health (degraded, within a second) while it
    retries, and SIGTERM ends it within server.shutdown_grace."""
    grace = 3.0
    port = free_port()
    env = serve_env(
        event_bus__backend="redis",
        event_bus__redis_url=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        server__shutdown_grace=grace,
    )
    process = subprocess.Popen(
        [*CLI, "serve", "--data-dir", str(tmp_path / "data"), "--port", str(port),
         "--metrics-port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process)
        for _ in range(3):
            started = time.monotonic()
            answer = httpx.get(f"{url}/health", timeout=5)
            assert time.monotonic() - started < 1.0
            body = answer.json()
            assert answer.status_code == 200
            assert body["status"] == "degraded"
            assert "Redis" in body["failing"]["event_bus"]
            assert body["managers"]["email_sender"]["state"] == "failed"
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        elapsed = time.monotonic() - stopping
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code == 0, process.stderr.read() if process.stderr else ""
    assert elapsed < grace, f"stopped in {elapsed:.1f} s"


def test_sigterm_while_a_dependency_hangs_the_start_exits_within_shutdown_grace(
    tmp_path: Path,
) -> None:
    """Redis accepts connections and never answers: the node is still starting (its bus start
    waits on Redis) when SIGTERM comes, and it exits within server.shutdown_grace all the same."""
    grace = 3.0
    redis_port = int(REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    with FaultProxy("127.0.0.1", redis_port) as proxy:
        proxy.hang()
        env = serve_env(
            event_bus__backend="redis",
            event_bus__redis_url=proxy.route(REDIS_URL),
            server__shutdown_grace=grace,
        )
        process = subprocess.Popen(
            [*CLI, "serve", "--data-dir", str(tmp_path / "data"), "--port", str(free_port()),
             "--metrics-port", str(free_port())],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        log = tmp_path / "data" / "logs" / "email-sender.log"
        try:
            deadline = time.monotonic() + 60
            # The database started and the bus is waiting on Redis: the node is mid-start.
            while (
                '"manager": "database"' not in (log.read_text() if log.exists() else "")
                or proxy.stats().accepted == 0
            ):
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "the node did not begin to start in 60 s"
                time.sleep(0.05)
            stopping = time.monotonic()
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
            elapsed = time.monotonic() - stopping
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert elapsed < grace, f"stopped in {elapsed:.1f} s"
    assert code == 0, process.stderr.read() if process.stderr else ""
    assert "serving http" not in (process.stderr.read() if process.stderr else "")


def test_config_validate_names_each_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("event_bus:\n  workers: 0\nservr: {}\n")
    result = run("config", "validate", "--config", str(bad))
    assert result.returncode == 1
    assert "event_bus.workers: must be >= 1" in result.stdout
    assert "servr: unknown key" in result.stdout
    good = Path(__file__).parents[2] / "config" / "example.yaml"
    result = run("config", "validate", "--config", str(good))
    assert result.returncode == 0
    assert "OK" in result.stdout


def test_refuses_a_public_address_without_api_keys(tmp_path: Path) -> None:
    result = run("serve", "--data-dir", str(tmp_path), "--host", "0.0.0.0", "--port", "0",
                 "--metrics-port", "0", env=serve_env())
    assert result.returncode == 1
    assert "no security.api_keys are configured" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_upgrade_and_config_show(tmp_path: Path) -> None:
    result = run("db", "upgrade", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "database at revision" in result.stdout
    shown = run("config", "show", "--data-dir", str(tmp_path),
                env={**os.environ, "EMAIL_SENDER__QDRANT__API_KEY": "top-secret"})
    assert "top-secret" not in shown.stdout
    assert "api_key: '**********'" in shown.stdout
