"""Shared parts of the benchmarks: a local SMTP sink process, free ports, printing ratios,
writing results."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop(process: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    """Terminate ``process`` and wait for it; killed if it outlives ``timeout``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextmanager
def smtp_sink() -> Iterator[int]:
    """An aiosmtpd sink (discards every message) in its own process; yields its port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
         "-c", "aiosmtpd.handlers.Sink"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        yield port
    finally:
        stop(process, timeout=10)


def ratio_line(label: str, ours: float, peer_label: str, peer: float, unit: str,
               target: float | None = None) -> str:
    ratio = ours / peer if peer else float("inf")
    verdict = ""
    if target is not None:
        verdict = f"  target >= {target:.1f}x: {'met' if ratio >= target else 'NOT met'}"
    return (f"{label:<34} {ours:>9.1f} {unit}   {peer_label:<30} {peer:>9.1f} {unit}"
            f"   ratio {ratio:5.2f}x{verdict}")


RESULTS = Path(__file__).parent / "results"


def row(figure: str, ours: float, unit: str, *, peer: str | None = None,
        peer_value: float | None = None, target: str | None = None, met: bool | None = None,
        note: str | None = None) -> dict[str, Any]:
    """One line of a benchmark's table in ``docs/performance.md``: our figure, the peer measured
    in the same run on the same work (and the ratio of the two), the target as words and whether
    this run met it (``None``: no target)."""
    ratio = ours / peer_value if peer_value else None
    return {"figure": figure, "ours": ours, "unit": unit, "peer": peer, "peer_value": peer_value,
            "ratio": ratio, "target": target, "met": met, "note": note}


def write_result(name: str, figures: dict[str, Any], rows: list[dict[str, Any]] | None = None,
                 details: str | None = None) -> Path:
    """``benchmarks/results/<name>.json``: the figures with what they were measured on, and the
    rows (see ``row``) that ``benchmarks/report.py`` writes into ``docs/performance.md``, followed
    by ``details`` (markdown: a benchmark's own tables) when given."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=Path(__file__).parent).stdout.strip()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({
        "benchmark": name,
        "commit": commit or None,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": rows or [],
        "details": details,
        "figures": figures,
    }, indent=2) + "\n")
    return path
