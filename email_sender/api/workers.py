"""``serve --role api --workers N``: N API processes answering on one port.

Each worker is a whole ``serve --role api`` node (its own event loop, database pool, heartbeat
row and node id) that binds ``server.port`` with ``SO_REUSEPORT``, so the kernel spreads the
connections over the workers. This process only holds the port, starts the workers, and stops
them all when told to or when one of them exits.

The outbox is SQL, so several API processes accept safely: on PostgreSQL each commits through
its own pool; on SQLite (WAL, a busy timeout) their group commits take turns on the one write
lock, a worker that finds it taken waiting in SQLite's busy handler (``busy_timeout``), so the
gain there is the request handling done in parallel, not the commits. Every worker searches, so
the vectors must be on a Qdrant server (``qdrant.url``): the embedded Edge store admits one
process.

Each worker serves its own metrics, on ``metrics.port`` + its index (any free port when it is
0), since Prometheus counters are kept per process.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from email_sender.errors import ConfigError
from email_sender.ports import bind
from email_sender.settings import Settings

# How often the supervisor looks at its workers.
POLL_SECONDS = 0.2
# Past server.shutdown_grace, what a worker gets before it is killed.
KILL_AFTER_SECONDS = 5.0


def check_workers(count: int, settings: Settings) -> None:
    """Several workers: an API node only, and its vectors on a Qdrant server."""
    if count == 1:
        return
    role = settings.node.role
    if role != "api":
        raise ConfigError(
            f"server.workers: {count} processes serve only --role api (this node's role is "
            f"{role}); run more delivery or vectors nodes instead"
        )
    if settings.qdrant.url is None:
        raise ConfigError(
            f"server.workers: {count} API workers need a Qdrant server (qdrant.url): the "
            "embedded Qdrant Edge store opens in one process only, and the workers would search it"
        )


def worker_command(
    settings: Settings, config: Path | None, index: int, port: int
) -> list[str]:
    """The ``serve`` command of worker ``index``: this node's settings, its port, reuse on."""
    command = [
        sys.executable, "-m", "email_sender", "serve", "--reuse-port",
        "--role", "api", "--data-dir", str(settings.data_dir),
        "--host", settings.server.host, "--port", str(port),
        "--log-level", settings.logging.level,
    ]
    if config is not None:
        command += ["--config", str(config)]
    if settings.metrics.enabled:
        metrics_port = settings.metrics.port + index if settings.metrics.port else 0
        command += ["--metrics-port", str(metrics_port)]
    return command


def serve_workers(settings: Settings, count: int, config: Path | None) -> int:
    """Run ``count`` workers until a signal or the first one to exit; answer the exit code."""
    # Held (bound, never listening) for as long as the workers run: port 0 becomes one free
    # port that they all share, and no other program takes it between two worker starts.
    holder = bind(
        settings.server.host, settings.server.port, what="API port", reuse_port=True,
        listen=False,
    )
    port: int = holder.getsockname()[1]
    stopping = False

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {
        signum: signal.signal(signum, request_stop) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    workers: list[subprocess.Popen[bytes]] = []
    code = 0
    try:
        for index in range(count):
            workers.append(subprocess.Popen(worker_command(settings, config, index, port)))
        print(
            f"email-sender: {count} API workers on http://{settings.server.host}:{port} "
            f"(pids {', '.join(str(worker.pid) for worker in workers)})",
            file=sys.stderr, flush=True,
        )
        while not stopping:
            exited = [worker for worker in workers if worker.poll() is not None]
            if exited:
                code = exited[0].returncode or 1
                print(
                    f"error: API worker (pid {exited[0].pid}) exited with "
                    f"{exited[0].returncode}; stopping the others",
                    file=sys.stderr, flush=True,
                )
                break
            time.sleep(POLL_SECONDS)
    finally:
        _stop_all(workers, settings.server.shutdown_grace + KILL_AFTER_SECONDS)
        holder.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return code


def _stop_all(workers: list[subprocess.Popen[bytes]], seconds: float) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + seconds
    for worker in workers:
        try:
            worker.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()

