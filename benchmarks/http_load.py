"""HTTP load from a C client: wrk against ours and against a bare FastAPI app, same machine.

Usage: python benchmarks/http_load.py [--duration 15] [--connections 50] [--workers 2] [--quick]
       [--json]

Each side is one uvicorn process on 127.0.0.1; wrk (Debian's package) runs 2 threads and
``--connections`` connections, first a warm-up of 3 s, then ``--duration`` seconds measured
(``--quick``: 2 s and 5 s, a check that it runs rather than figures to publish).
- ``GET /health``: ours answers liveness with the per-manager summary; the peer a constant.
- ``POST /api/v1/emails``: ours on ``serve --role api`` with SQLite commits each email to the
  outbox before answering 202; the peer validates the same JSON and counts it in memory.
Only 2xx answers count, and they are checked against each side's own count of what it took (the
outbox rows for ours): at least as many, and at most one more per connection (the requests in
flight when wrk stops, which the side completes but wrk no longer reads). A ``/health`` answered
other than 2xx means the node was not healthy: no figure then. Any mismatch stops the benchmark
with exit code 1 and no result written.

``--workers N`` (2 by default; 1 skips it) measures ours again as ``serve --role api --workers
N``: N processes on the same port and the same SQLite outbox, reported as the gain over one.

The bars are absolute (this issue's ``/health`` >= 3,000 req/s; the seed's accept >= 1,000 req/s
with p95 < 100 ms); the bare app's figures, measured in the same run, say how far the framework
alone goes on this machine at that moment. Writes ``benchmarks/results/http.json``.
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
from _common import free_port, ratio_line, row, stop, write_result

HERE = Path(__file__).parent
ROOT = HERE.parent
REPORT = HERE / "wrk" / "report.lua"
EMAIL = json.dumps({"from": "bench@example.com", "to": ["venue@example.org"],
                    "subject": "Une date en mars ?", "text": "Bonjour, auriez-vous une date ?"})
WARM_UP, QUICK_WARM_UP, QUICK_DURATION = 3, 2, 5
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
        stop(process)


class CountMismatch(SystemExit):
    """A side's own count disagrees with wrk's: the run proves nothing."""

    def __init__(self, message: str) -> None:
        super().__init__(f"count mismatch: {message}")


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
    wrk(f"{url}{path}", args.warm_up, args.connections, post)
    return wrk(f"{url}{path}", args.duration, args.connections, post)


def outbox_count(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        count: int = connection.execute("select count(*) from emails").fetchone()[0]
        return count


def ours(args: argparse.Namespace, folder: Path, workers: int = 1) -> dict[str, Any]:
    port = free_port()
    data = folder / f"data-{workers}"
    env = {**os.environ, "EMAIL_SENDER__EMBEDDER__PROVIDER": "hashing",
           "EMAIL_SENDER__SMTP__CAPTURE_SINK__PORT": str(free_port()),
           "EMAIL_SENDER__LOGGING__LEVEL": "WARNING"}
    command = [sys.executable, "-m", "email_sender", "serve", "--role", "api", "--data-dir",
               str(data), "--port", str(port), "--metrics-port", "0"]
    if workers > 1:
        # Workers need a Qdrant server; none runs here, and accepting does not search: a port
        # nobody listens on leaves each worker degraded (vectors) but serving.
        env["EMAIL_SENDER__QDRANT__URL"] = f"http://127.0.0.1:{free_port()}"
        command += ["--workers", str(workers)]
    with running(command, port, env) as url:
        health = measure(url, "/health", args, post=False)
        before = outbox_count(data / "email-sender.db")
        wrk(f"{url}/api/v1/emails", args.warm_up, args.connections, post=True)
        warmed = outbox_count(data / "email-sender.db")
        accept = wrk(f"{url}/api/v1/emails", args.duration, args.connections, post=True)
        accept["counted"] = outbox_count(data / "email-sender.db") - warmed
    if warmed <= before:
        raise CountMismatch("the warm-up put no email in the outbox")
    return {"health": health, "accept": accept}


def peer(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "_bare_app:app", "--app-dir", str(HERE),
               "--port", str(port), "--log-level", "warning", "--no-access-log"]
    with running(command, port, dict(os.environ)) as url:
        health = measure(url, "/health", args, post=False)
        wrk(f"{url}/api/v1/emails", args.warm_up, args.connections, post=True)
        warmed = httpx.get(f"{url}/count").json()["taken"]
        accept = wrk(f"{url}/api/v1/emails", args.duration, args.connections, post=True)
        accept["counted"] = httpx.get(f"{url}/count").json()["taken"] - warmed
    return {"health": health, "accept": accept}


def check_counts(figures: dict[str, Any], connections: int) -> None:
    for side in ("ours", "bare_fastapi", "ours_workers"):
        if side not in figures:
            continue
        health = figures[side]["health"]
        if health["non_2xx"] or health["ok"] == 0:
            raise CountMismatch(f"{side} answered /health {health['non_2xx']} times with an "
                                f"error of {health['requests']}")
        accept = figures[side]["accept"]
        # Every 2xx wrk saw is an email the side took; beyond those, only what was in flight.
        in_flight = accept["counted"] - accept["ok"]
        if not 0 <= in_flight <= connections or accept["ok"] == 0:
            raise CountMismatch(f"{side} took {accept['counted']} emails, wrk saw "
                                f"{accept['ok']} accepted")


def table_rows(figures: dict[str, Any]) -> list[dict[str, Any]]:
    our, bare = figures["ours"], figures["bare_fastapi"]
    health, accept = our["health"]["ok_per_s"], our["accept"]["ok_per_s"]
    p95 = our["accept"]["p95_ms"]
    window = f"wrk 2 threads, {figures['connections']} connections, {figures['duration_s']} s"
    return [
        row("GET /health", round(health), "req/s", peer="bare FastAPI route, constant answer",
            peer_value=round(bare["health"]["ok_per_s"]), target=f">= {HEALTH_RPS:,.0f} req/s",
            met=health >= HEALTH_RPS,
            note=f"{window}; the bar is the absolute figure, the ratio is context"),
        row("POST /api/v1/emails, serve --role api, SQLite", round(accept), "req/s",
            peer="bare FastAPI, validated and counted in memory",
            peer_value=round(bare["accept"]["ok_per_s"]), target=f">= {ACCEPT_RPS:,.0f} req/s",
            met=accept >= ACCEPT_RPS,
            note=f"{window}; each 202 after its outbox commit (group commit)"),
        row("POST /api/v1/emails p95", round(p95, 1), "ms", peer="bare FastAPI p95",
            peer_value=round(bare["accept"]["p95_ms"], 1), target=f"< {ACCEPT_P95_MS:.0f} ms",
            met=p95 < ACCEPT_P95_MS, note=f"{window}; ratio: ours over the bare app's"),
        *workers_rows(figures, window),
    ]


def workers_rows(figures: dict[str, Any], window: str) -> list[dict[str, Any]]:
    """``serve --role api --workers N`` against one process: the gain, no bar of its own."""
    if "ours_workers" not in figures:
        return []
    our, many, count = figures["ours"], figures["ours_workers"], figures["workers"]
    note = (f"{window}; {count} processes on one port (SO_REUSEPORT), one SQLite outbox; "
            "vectors on an absent Qdrant server (not on these paths)")
    return [
        row(f"GET /health, --workers {count}", round(many["health"]["ok_per_s"]), "req/s",
            peer="one process", peer_value=round(our["health"]["ok_per_s"]), note=note),
        row(f"POST /api/v1/emails, --workers {count}", round(many["accept"]["ok_per_s"]),
            "req/s", peer="one process", peer_value=round(our["accept"]["ok_per_s"]),
            note=note),
        row(f"POST /api/v1/emails p95, --workers {count}", round(many["accept"]["p95_ms"], 1),
            "ms", peer="one process", peer_value=round(our["accept"]["p95_ms"], 1), note=note),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds measured per run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_WARM_UP} s warm-ups and {QUICK_DURATION} s runs")
    parser.add_argument("--workers", type=int, default=2,
                        help="also measure serve --workers N (1: one process only)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.duration < 1 or args.connections < 1 or args.workers < 1:
        parser.error("--duration, --connections and --workers: give 1 or more")
    args.warm_up = QUICK_WARM_UP if args.quick else WARM_UP
    if args.quick:
        args.duration = QUICK_DURATION
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk")
        return 2
    with tempfile.TemporaryDirectory() as folder:
        figures = {"connections": args.connections, "duration_s": args.duration,
                   "warm_up_s": args.warm_up, "quick": args.quick,
                   "ours": ours(args, Path(folder)), "bare_fastapi": peer(args)}
        if args.workers > 1:
            figures["workers"] = args.workers
            figures["ours_workers"] = ours(args, Path(folder), workers=args.workers)
    check_counts(figures, args.connections)
    rows = table_rows(figures)
    write_result("http", figures, rows)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    our, bare = figures["ours"], figures["bare_fastapi"]
    print(ratio_line("GET /health", our["health"]["ok_per_s"], "bare FastAPI route",
                     bare["health"]["ok_per_s"], "req/s"))
    print(ratio_line("POST /api/v1/emails (--role api)", our["accept"]["ok_per_s"],
                     "bare FastAPI, in memory", bare["accept"]["ok_per_s"], "req/s"))
    sides = [("ours", our), ("bare", bare)]
    if "ours_workers" in figures:
        sides.append((f"x{figures['workers']}", figures["ours_workers"]))
    for name, side in sides:
        for route in ("health", "accept"):
            figure = side[route]
            print(f"  {name:<5} {route:<7} ok {figure['ok']:>7} of {figure['requests']:>7}  "
                  f"p50 {figure['p50_ms']:6.1f} ms  p95 {figure['p95_ms']:6.1f} ms  "
                  f"p99 {figure['p99_ms']:6.1f} ms  timeouts {figure['timeouts']}")
    for line in rows:
        verdict = (f"target {line['target']}: {'met' if line['met'] else 'NOT met'}"
                   if line["target"] else f"{line['ratio']:.2f}x {line['peer']}")
        print(f"{line['figure']:<48} {line['ours']:>8} {line['unit']:<6} {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
