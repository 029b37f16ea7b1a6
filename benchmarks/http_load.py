"""HTTP load from a C client: wrk against ours and against a bare FastAPI app, same machine.

Usage: python benchmarks/http_load.py [--duration 15] [--connections 50] [--json]

Each side is one uvicorn process on 127.0.0.1; wrk (Debian's package) runs 2 threads and
``--connections`` connections, first a warm-up of 3 s, then ``--duration`` seconds measured.
- ``GET /health``: ours answers liveness with the per-manager summary; the peer a constant.
- ``POST /api/v1/emails``: ours on ``serve --role api`` with SQLite commits each email to the
  outbox before answering 202; the peer validates the same JSON and counts it in memory.
Only 2xx answers count, and they are checked against each side's own count of what it took (the
outbox rows for ours): at least as many, and at most one more per connection (the requests in
flight when wrk stops, which the side completes but wrk no longer reads). Writes
``benchmarks/results/http.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from _common import free_port, ratio_line, write_result

HERE = Path(__file__).parent
ROOT = HERE.parent
REPORT = HERE / "wrk" / "report.lua"
EMAIL = json.dumps({"from": "bench@example.com", "to": ["venue@example.org"],
                    "subject": "Une date en mars ?", "text": "Bonjour, auriez-vous une date ?"})
WARM_UP = 3
# After a run, the requests wrk left in flight finish within this.
SETTLE = 1.0
# The seed's bars (load test: 50 concurrent, >= 1,000 req/s, < 100 ms) and this issue's.
ACCEPT_RPS, ACCEPT_P95_MS, HEALTH_RPS = 1000.0, 100.0, 3000.0


def wait_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up in 60 s")


@contextmanager
def running(command: list[str], port: int, env: dict[str, str]) -> Iterator[str]:
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wrk(url: str, seconds: int, connections: int, post: bool) -> dict[str, Any]:
    env = {name: value for name, value in os.environ.items() if name != "WRK_POST"}
    if post:
        env["WRK_POST"] = EMAIL
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(REPORT),
         url], capture_output=True, text=True, env=env, timeout=seconds + 60, check=True,
    )
    time.sleep(SETTLE)
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    figures["ok"] = figures["requests"] - figures["non_2xx"]
    figures["ok_per_s"] = figures["ok"] / (figures["duration_us"] / 1e6)
    figures["p50_ms"], figures["p95_ms"], figures["p99_ms"] = (
        figures.pop(key) / 1000 for key in ("p50_us", "p95_us", "p99_us"))
    return figures


def measure(url: str, path: str, args: argparse.Namespace, post: bool) -> dict[str, Any]:
    wrk(f"{url}{path}", WARM_UP, args.connections, post)
    return wrk(f"{url}{path}", args.duration, args.connections, post)


def outbox_count(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        count: int = connection.execute("select count(*) from emails").fetchone()[0]
        return count


def ours(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    port = free_port()
    data = folder / "data"
    env = {**os.environ, "EMAIL_SENDER__EMBEDDER__PROVIDER": "hashing",
           "EMAIL_SENDER__SMTP__CAPTURE_SINK__PORT": str(free_port()),
           "EMAIL_SENDER__LOGGING__LEVEL": "WARNING"}
    command = [sys.executable, "-m", "email_sender", "serve", "--role", "api", "--data-dir",
               str(data), "--port", str(port), "--metrics-port", str(free_port())]
    with running(command, port, env) as url:
        health = measure(url, "/health", args, post=False)
        before = outbox_count(data / "email-sender.db")
        wrk(f"{url}/api/v1/emails", WARM_UP, args.connections, post=True)
        warmed = outbox_count(data / "email-sender.db")
        accept = wrk(f"{url}/api/v1/emails", args.duration, args.connections, post=True)
        accept["counted"] = outbox_count(data / "email-sender.db") - warmed
    assert warmed > before, "the warm-up accepted nothing"
    return {"health": health, "accept": accept}


def peer(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "_bare_app:app", "--app-dir", str(HERE),
               "--port", str(port), "--log-level", "warning", "--no-access-log"]
    with running(command, port, dict(os.environ)) as url:
        health = measure(url, "/health", args, post=False)
        wrk(f"{url}/api/v1/emails", WARM_UP, args.connections, post=True)
        warmed = httpx.get(f"{url}/count").json()["taken"]
        accept = wrk(f"{url}/api/v1/emails", args.duration, args.connections, post=True)
        accept["counted"] = httpx.get(f"{url}/count").json()["taken"] - warmed
    return {"health": health, "accept": accept}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk")
        return 2
    with tempfile.TemporaryDirectory() as folder:
        figures = {"connections": args.connections, "duration_s": args.duration,
                   "ours": ours(args, Path(folder)), "bare_fastapi": peer(args)}
    for side in ("ours", "bare_fastapi"):
        accept = figures[side]["accept"]
        # Every 2xx wrk saw is an email the side took; beyond those, only what was in flight.
        in_flight = accept["counted"] - accept["ok"]
        assert 0 <= in_flight <= args.connections, (side, accept["counted"], accept["ok"])
    write_result("http", figures)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    our, bare = figures["ours"], figures["bare_fastapi"]
    print(ratio_line("GET /health", our["health"]["ok_per_s"], "bare FastAPI route",
                     bare["health"]["ok_per_s"], "req/s"))
    print(ratio_line("POST /api/v1/emails (--role api)", our["accept"]["ok_per_s"],
                     "bare FastAPI, in memory", bare["accept"]["ok_per_s"], "req/s"))
    for name, side in (("ours", our), ("bare", bare)):
        for route in ("health", "accept"):
            row = side[route]
            print(f"  {name:<5} {route:<7} ok {row['ok']:>7} of {row['requests']:>7}  "
                  f"p50 {row['p50_ms']:6.1f} ms  p95 {row['p95_ms']:6.1f} ms  "
                  f"p99 {row['p99_ms']:6.1f} ms  timeouts {row['timeouts']}")
    accept_met = (our["accept"]["ok_per_s"] >= ACCEPT_RPS
                  and our["accept"]["p95_ms"] < ACCEPT_P95_MS)
    print(f"accept bar (>= {ACCEPT_RPS:.0f} req/s, p95 < {ACCEPT_P95_MS:.0f} ms): "
          f"{'met' if accept_met else 'NOT met'}")
    print(f"health bar (>= {HEALTH_RPS:.0f} req/s): "
          f"{'met' if our['health']['ok_per_s'] >= HEALTH_RPS else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
