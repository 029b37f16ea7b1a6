"""``email-sender serve`` as a subprocess for benchmarks: started through the real CLI, ready
once it announces itself, stopped (then killed if it must be) on the way out."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
from _common import stop

CLI = Path(sys.executable).parent / "email-sender"
# "email-sender 1.2.3 (delivery), metrics on :8081, data in ..." once every manager has started.
_ANNOUNCED = re.compile(r"^email-sender \S+ \((\w+)\)", re.MULTILINE)


@dataclass
class Node:
    process: subprocess.Popen[bytes]
    log: Path

    def announcement(self) -> str:
        text = self.log.read_text(errors="replace")
        found = _ANNOUNCED.search(text)
        return text[found.start():text.find("\n", found.start())] if found else ""

    def tree(self) -> list[psutil.Process]:
        """The node's process and its children (an embedder may run helper processes)."""
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def rss_bytes(self) -> int:
        total = 0
        for process in self.tree():
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def memory_detail(self) -> dict[str, int]:
        """The main process's memory in bytes: rss, and of it ``shared`` (file-backed pages:
        libraries, memory-mapped model and vector files), vms, data."""
        info = psutil.Process(self.process.pid).memory_info()
        return {key: int(value) for key, value in info._asdict().items()}

    def cpu_seconds(self) -> float:
        total = 0.0
        for process in self.tree():
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total


@contextmanager
def serve(config: Path, *, role: str, data_dir: Path, port: int | None = None,
          metrics_port: int | None = None, env: dict[str, str] | None = None,
          start_timeout: float = 120.0) -> Iterator[Node]:
    """Run ``email-sender serve --role ROLE --config CONFIG`` until the block ends.

    Ready means the CLI printed its announcement (every manager of the role started); a node
    that exits or stays silent past ``start_timeout`` raises with the end of its log.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "serve.stderr"
    command = [str(CLI), "serve", "--role", role, "--config", str(config),
               "--data-dir", str(data_dir)]
    if port is not None:
        command += ["--port", str(port)]
    if metrics_port is not None:
        command += ["--metrics-port", str(metrics_port)]
    with log.open("wb") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    node = Node(process, log)
    try:
        deadline = time.monotonic() + start_timeout
        while not node.announcement():
            if process.poll() is not None:
                raise RuntimeError(f"email-sender serve --role {role} exited with "
                                   f"{process.returncode}: {_tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"email-sender serve --role {role} did not start within "
                                   f"{start_timeout:.0f} s: {_tail(log)}")
            time.sleep(0.1)
        yield node
    finally:
        stop(process)


def _tail(log: Path, chars: int = 2000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no output)"
