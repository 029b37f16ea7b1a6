"""Memory benchmark: the resident size of an all-in-one node after draining and indexing N
emails, then its growth over a soak under a steady mixed load.

One ``email-sender serve`` (role all, the embedded default of ``config/local.yaml``: SQLite,
Qdrant Edge, the local model) runs as a subprocess with its relay pointed at a counting SMTP sink
in another process. N emails (varied booking mail, English and French) go in through
``POST /api/v1/emails/batch``; once the outbox has them all ``sent`` and ``indexed`` (read in its
SQLite file) the node's RSS (its process tree, psutil) is the first figure. Then the soak: a
client sends, searches, reads emails and asks ``/health`` at a steady rate for a warm-up and
then ``--soak`` seconds, sampling RSS every few seconds; growth is the last sample against the
first one after the warm-up. Any failed request, a rejected email, or a count that differs at the
sink (messages, distinct Message-IDs) or in the outbox fails the benchmark.

Context figure: Python with the local model loaded and one batch embedded, alone.

Usage: python benchmarks/memory.py [--n 100000] [--soak 600] [--rate 20] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _common import free_port, row, write_result
from _message_sink import MessageSink, message_sink
from _serve_process import Node, serve

from email_sender.progress import progress_bar

ROOT = Path(__file__).resolve().parent.parent
LOCAL_CONFIG = ROOT / "config" / "local.yaml"
MIB = 1024 * 1024
BATCH = 500           # mail.batch_max
FEEDERS = 2           # concurrent batch requests while feeding
GROWTH_TARGET = 5.0   # per cent over the soak
# The soak's mix, repeated in order: per 10 requests 2 sends, 2 searches, 4 reads, 2 health.
MIX = ("send", "search", "read", "list", "health", "read", "send", "search", "read", "health")

VENUES = ("Le Trianon", "La Cigale", "Le Bikini", "L'Aéronef", "Le Transbordeur", "Paradiso",
          "Melkweg", "Vega", "Rockhal", "Botanique", "Ancienne Belgique", "Le Grand Mix")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "September",
          "October", "November")
MOIS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "septembre",
        "octobre", "novembre")
TEMPLATES = (
    ("Availability at {venue} in {month}",
     "Hello, {venue} is free on the {day} and the {day2} of {month}. Which date suits the tour?"),
    ("Fee offer for {venue}",
     "We can offer {amount} euros, meals and rooms included for {people} people, on {month} "
     "{day}."),
    ("Re: booking request",
     "Thanks, but our {month} programme at {venue} is full: we cannot host the band this time."),
    ("Technical rider for {venue}",
     "Attached is our rider: a {channels}-channel desk, {people} monitors and the stage plot. "
     "Load-in at {hour} pm."),
    ("Disponibilités {venue} en {mois}",
     "Bonjour, la salle {venue} est libre le {day} et le {day2} {mois}. Quelle date convient ?"),
    ("Proposition de cachet pour {venue}",
     "Nous proposons un cachet de {amount} euros, repas et hébergement compris pour {people} "
     "personnes, le {day} {mois}."),
)
QUERIES = ("is {venue} available in {month}", "fee offer for {people} people",
           "they refused our booking at {venue}", "technical rider with {channels} channels",
           "la salle {venue} est-elle libre en {mois}", "cachet proposé pour {people} personnes")


def _values(rng: random.Random) -> dict[str, Any]:
    day = rng.randint(1, 27)
    return {"venue": rng.choice(VENUES), "month": rng.choice(MONTHS), "mois": rng.choice(MOIS),
            "day": day, "day2": day + 1, "amount": rng.randrange(800, 9000, 50),
            "people": rng.randint(2, 12), "channels": rng.choice((16, 24, 32, 48)),
            "hour": rng.randint(1, 6)}


def booking_email(rng: random.Random, n: int) -> dict[str, Any]:
    subject, text = rng.choice(TEMPLATES)
    values = _values(rng)
    return {"from": "booking@agency.example", "to": [f"venue{n % 500}@venues.example"],
            "subject": subject.format(**values), "text": text.format(**values),
            "tags": [rng.choice(("booking", "fees", "tech", "admin"))]}


def search_query(rng: random.Random) -> dict[str, Any]:
    return {"query": rng.choice(QUERIES).format(**_values(rng)), "limit": 10}


def write_config(work: Path, smtp_port: int) -> Path:
    """``config/local.yaml`` with its data under ``work`` and its relay the counting sink."""
    config = yaml.safe_load(LOCAL_CONFIG.read_text()) or {}
    config["data_dir"] = str(work / "data")
    config["smtp"] = {"relays": [{"url": f"smtp://127.0.0.1:{smtp_port}", "tls": "none",
                                  "rate_per_second": 0}]}
    path = work / "memory.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


class Outbox:
    """Counts read from the node's SQLite file (WAL: reading does not stop the node)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def counts(self) -> dict[str, int]:
        with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30) as connection:
            rows = connection.execute(
                "SELECT status || '/' || vector_state, count(*) FROM emails GROUP BY 1").fetchall()
        return {key: count for key, count in rows}


def _check_answer(answer: httpx.Response, what: str) -> Any:
    if answer.status_code >= 400:
        raise RuntimeError(f"{what} answered {answer.status_code}: {answer.text[:500]}")
    return answer.json()


def feed(client: httpx.Client, n: int, rng: random.Random, quiet: bool) -> list[str]:
    """POST N emails in batches; answer their ids. A rejected email fails the benchmark."""
    bodies = [[booking_email(rng, start + i) for i in range(min(BATCH, n - start))]
              for start in range(0, n, BATCH)]

    def post(emails: list[dict[str, Any]]) -> list[str]:
        body = _check_answer(client.post("/api/v1/emails/batch", json={"emails": emails},
                                         timeout=120), "POST /api/v1/emails/batch")
        if body["rejected"]:
            reasons = [item["error"] for item in body["items"] if "error" in item][:3]
            raise RuntimeError(f"the node rejected {body['rejected']} emails: {reasons}")
        return [item["id"] for item in body["items"]]

    ids: list[str] = []
    with progress_bar(f"queue {n}", total=n, quiet=quiet) as advance, \
            ThreadPoolExecutor(FEEDERS) as pool:
        for batch_ids in pool.map(post, bodies):
            ids.extend(batch_ids)
            advance(len(batch_ids))
    return ids


def wait_settled(outbox: Outbox, node: Node, expected: int, timeout: float,
                 quiet: bool) -> dict[str, Any]:
    """Until every email is sent and indexed; the RSS peak seen on the way."""
    deadline = time.monotonic() + timeout
    peak = 0
    done = 0
    with progress_bar(f"send and index {expected}", total=expected, quiet=quiet) as advance:
        while True:
            peak = max(peak, node.rss_bytes())
            counts = outbox.counts()
            settled = counts.get("sent/indexed", 0)
            advance(settled - done)
            done = settled
            if settled >= expected:
                return {"counts": counts, "peak_rss": peak}
            if node.process.poll() is not None:
                raise RuntimeError(f"the node exited with {node.process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"after {timeout:.0f} s the outbox is {counts}; expected "
                                   f"{expected} sent and indexed")
            time.sleep(2)


def check_sink(sink: MessageSink, expected: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (stats := sink.stats())["received"] < expected and time.monotonic() < deadline:
        time.sleep(0.5)
    if stats["received"] != expected or stats["unique"] != expected or stats["without_id"]:
        raise RuntimeError(f"the sink received {stats['received']} messages with "
                           f"{stats['unique']} distinct Message-IDs ({stats['without_id']} "
                           f"without one); the outbox sent {expected}")
    return stats


class MixedLoad:
    """Requests at a steady rate from a thread pool, in the order of ``MIX``; counts outcomes."""

    def __init__(self, base_url: str, rate: float, ids: list[str], seed: int) -> None:
        self.base_url = base_url
        self.interval = 1.0 / rate
        self.ids = ids
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.done: dict[str, int] = dict.fromkeys(set(MIX), 0)
        self.errors: list[str] = []
        self.late = 0
        self.sent_ids: list[str] = []
        # Idle connections are dropped well before the server's keep-alive (uvicorn: 5 s), so a
        # request never races the server closing its connection (a reset, not the node's fault).
        self.client = httpx.Client(base_url=base_url, timeout=30,
                                   limits=httpx.Limits(max_connections=16, keepalive_expiry=2.0))
        self.counter = itertools.count()

    def request(self, kind: str, n: int) -> None:
        with self.lock:  # random.Random is not for sharing between threads
            email = booking_email(self.rng, n)
            query = search_query(self.rng)
            known = self.rng.choice(self.ids)
        try:
            if kind == "send":
                answer = self.client.post("/api/v1/emails", json=email)
            elif kind == "search":
                answer = self.client.post("/api/v1/search", json=query)
            elif kind == "read":
                answer = self.client.get(f"/api/v1/emails/{known}")
            elif kind == "list":
                answer = self.client.get("/api/v1/emails", params={"limit": 20})
            else:
                answer = self.client.get("/health")
            answer.raise_for_status()
            body = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            with self.lock:
                self.errors.append(f"{kind}: {exc}")
            return
        with self.lock:
            self.done[kind] += 1
            if kind == "send":
                self.sent_ids.append(body["id"])

    def run(self, seconds: float, on_tick: Any = None, tick_every: float = 5.0) -> None:
        """Issue requests for ``seconds``; call ``on_tick()`` every ``tick_every`` seconds."""
        futures: list[Future[None]] = []
        with ThreadPoolExecutor(16) as pool:
            started = time.monotonic()
            next_tick = started
            for k in itertools.count():
                due = started + k * self.interval
                if due - started >= seconds:
                    break
                now = time.monotonic()
                if now >= next_tick and on_tick is not None:
                    on_tick()
                    next_tick += tick_every
                if due > now:
                    time.sleep(due - now)
                elif now - due > 1.0:
                    self.late += 1  # the client fell behind by more than a second
                n = next(self.counter)
                futures.append(pool.submit(self.request, MIX[n % len(MIX)], 10_000_000 + n))
                futures = [future for future in futures if not future.done()]
            for future in futures:
                future.result(timeout=60)
        if on_tick is not None:
            on_tick()

    def close(self) -> None:
        self.client.close()


def bare_model_rss() -> int:
    """RSS of a Python process that loaded the local model and embedded one batch."""
    script = (
        "import asyncio, psutil\n"
        "from email_sender.settings import EmbedderSettings\n"
        "from email_sender.vectors.embedders import build_embedder\n"
        "embedder = build_embedder(EmbedderSettings(provider='local'))\n"
        "asyncio.run(embedder.embed(['a booking request for a concert hall'] * 64))\n"
        "print(psutil.Process().memory_info().rss)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if out.returncode != 0:
        raise RuntimeError(f"the bare model process failed: {out.stderr[-2000:]}")
    return int(out.stdout.strip().splitlines()[-1])


def soak(node: Node, url: str, ids: list[str], *, warmup: float, seconds: float, rate: float,
         sample_every: float, quiet: bool) -> dict[str, Any]:
    load = MixedLoad(url, rate, ids, seed=7)
    samples: list[tuple[float, int]] = []
    try:
        with progress_bar(f"warm-up {warmup:.0f} s", total=None, quiet=quiet):
            load.run(warmup)
        started = time.monotonic()

        def sample() -> None:
            samples.append((time.monotonic() - started, node.rss_bytes()))

        with progress_bar(f"soak {seconds:.0f} s", total=None, quiet=quiet):
            load.run(seconds, on_tick=sample, tick_every=sample_every)
    finally:
        load.close()
    if load.errors:
        raise RuntimeError(f"{len(load.errors)} requests failed in the soak, first: "
                           f"{load.errors[:3]}")
    first, last = samples[0][1], samples[-1][1]
    return {
        "warmup_s": warmup, "seconds": seconds, "rate_per_s": rate,
        "requests": dict(load.done), "requests_total": sum(load.done.values()),
        "late_requests": load.late, "sent_ids": load.sent_ids,
        "rss_start": first, "rss_end": last, "rss_peak": max(rss for _, rss in samples),
        "growth_pct": (last - first) / first * 100,
        "slope_mib_per_min": _slope(samples) * 60 / MIB,
        "samples": [(round(at, 1), rss) for at, rss in samples],
    }


def _slope(samples: list[tuple[float, int]]) -> float:
    """Least-squares RSS growth in bytes per second."""
    if len(samples) < 2:
        return 0.0
    mean_t = sum(t for t, _ in samples) / len(samples)
    mean_r = sum(r for _, r in samples) / len(samples)
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    return sum((t - mean_t) * (r - mean_r) for t, r in samples) / spread if spread else 0.0


def run(n: int, soak_seconds: float, warmup: float, rate: float, quiet: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {"n": n}
    figures["bare_model_rss"] = bare_model_rss()
    with tempfile.TemporaryDirectory() as tmp, message_sink() as sink:
        work = Path(tmp)
        config = write_config(work, sink.smtp_port)
        port = free_port()
        with serve(config, role="all", data_dir=work / "data", port=port,
                   metrics_port=free_port()) as node, \
                httpx.Client(base_url=f"http://127.0.0.1:{port}",
                             limits=httpx.Limits(keepalive_expiry=2.0)) as client:
            if "degraded" in node.announcement():
                raise RuntimeError(f"the node started degraded: {node.announcement()}")
            figures["rss_started"] = node.rss_bytes()
            figures["memory_started"] = node.memory_detail()
            outbox = Outbox(work / "data" / "email-sender.db")
            started = time.monotonic()
            ids = feed(client, n, random.Random(1), quiet)
            figures["queue_seconds"] = time.monotonic() - started
            settled = wait_settled(outbox, node, n, timeout=600 + n / 20, quiet=quiet)
            figures["settle_seconds"] = time.monotonic() - started
            figures["rss_drained"] = node.rss_bytes()
            figures["memory_drained"] = node.memory_detail()
            figures["rss_peak_draining"] = max(settled["peak_rss"], figures["rss_drained"])
            check_sink(sink, n)
            points = _check_answer(client.get("/api/v1/collections/emails"),
                                   "GET /api/v1/collections/emails")["points_count"]
            if points != n:
                raise RuntimeError(f"the emails collection has {points} points; expected {n}")
            result = soak(node, f"http://127.0.0.1:{port}", ids, warmup=warmup,
                          seconds=soak_seconds, rate=rate, sample_every=5 if soak_seconds >= 120
                          else 2, quiet=quiet)
            total = n + len(result.pop("sent_ids"))
            # The soak's sends are delivered and indexed too before the counts are checked.
            wait_settled(outbox, node, total, timeout=300, quiet=True)
            check_sink(sink, total)
            figures["soak"] = result
            figures["emails_total"] = total
    return figures


def details(figures: dict[str, Any]) -> str:
    """Markdown: the RSS at each stage, the soak's requests and the context figures."""
    soaked = figures["soak"]
    mib = {key: figures[key] / MIB for key in ("rss_started", "rss_drained", "rss_peak_draining",
                                               "bare_model_rss")}
    return "\n".join([
        f"One `email-sender serve` (role all, `config/local.yaml`), its relay a counting sink; "
        f"{figures['n']:,} emails through `POST /api/v1/emails/batch`, sent and indexed in "
        f"{figures['settle_seconds']:.0f} s. RSS is the node's process tree (psutil).",
        "",
        "| stage | RSS (MiB) |",
        "|---|---|",
        f"| Python with the local model alone, one batch embedded | {mib['bare_model_rss']:.0f} |",
        f"| node started, idle | {mib['rss_started']:.0f} |",
        f"| peak while draining and indexing | {mib['rss_peak_draining']:.0f} |",
        f"| after draining and indexing (file-backed: "
        f"{figures['memory_drained']['shared'] / MIB:.0f}) | {mib['rss_drained']:.0f} |",
        f"| soak start, after a {soaked['warmup_s']:.0f} s warm-up | "
        f"{soaked['rss_start'] / MIB:.0f} |",
        f"| soak end, {soaked['seconds']:.0f} s later | {soaked['rss_end'] / MIB:.0f} |",
        f"| soak peak | {soaked['rss_peak'] / MIB:.0f} |",
        "",
        f"The soak: {soaked['rate_per_s']:g} requests/s of sends, searches, reads and `/health` "
        f"({', '.join(f'{count} {kind}' for kind, count in soaked['requests'].items())}; none "
        f"failed), the sends delivered and indexed too; RSS slope over the soak "
        f"{soaked['slope_mib_per_min']:+.2f} MiB/min.",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=None, help="emails to drain [100000; quick 2000]")
    parser.add_argument("--soak", type=float, default=None, help="soak seconds [600; quick 60]")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds of load before the soak's first sample [60; quick 15]")
    parser.add_argument("--rate", type=float, default=20.0, help="soak requests per second")
    parser.add_argument("--quick", action="store_true", help="a small run")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    # A terminated run stops its node processes and drops what it made, as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    n = args.n if args.n is not None else (2000 if args.quick else 100_000)
    soak_seconds = args.soak if args.soak is not None else (60.0 if args.quick else 600.0)
    warmup = args.warmup if args.warmup is not None else (15.0 if args.quick else 60.0)
    if n < 1:
        parser.error(f"--n: must be at least 1, not {n}")
    if soak_seconds < 10:
        parser.error(f"--soak: at least 10 seconds, not {soak_seconds:g}")
    if warmup < 0:
        parser.error(f"--warmup: must not be negative, not {warmup:g}")
    if not 0 < args.rate <= 500:
        parser.error(f"--rate: between 0 and 500 requests per second, not {args.rate:g}")
    figures = run(n, soak_seconds, warmup, args.rate, quiet=args.json)
    soaked = figures["soak"]
    growth = soaked["growth_pct"]
    rows = [
        row(f"RSS after draining and indexing {n:,} emails", figures["rss_drained"] / MIB, "MiB",
            note="all-in-one node: SQLite, Qdrant Edge, local model"),
        row("RSS growth over the soak", growth, "%", target=f"< {GROWTH_TARGET:g} %",
            met=growth < GROWTH_TARGET,
            note=f"{soaked['seconds']:.0f} s at {soaked['rate_per_s']:g} req/s, mixed"),
    ]
    path = write_result("memory", figures, rows, details=details(figures))
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"memory benchmark: N={n}, soak {soaked['seconds']:.0f} s after a "
          f"{soaked['warmup_s']:.0f} s warm-up at {soaked['rate_per_s']:g} req/s")
    print(f"  RSS at start {figures['rss_started'] / MIB:.0f} MiB; after draining and indexing "
          f"{n} emails {figures['rss_drained'] / MIB:.0f} MiB (peak "
          f"{figures['rss_peak_draining'] / MIB:.0f} MiB; queued in "
          f"{figures['queue_seconds']:.1f} s, sent and indexed in "
          f"{figures['settle_seconds']:.1f} s); of it file-backed (libraries, mapped files) "
          f"{figures['memory_drained']['shared'] / MIB:.0f} MiB; Python + local model alone "
          f"{figures['bare_model_rss'] / MIB:.0f} MiB")
    verdict = "met" if growth < GROWTH_TARGET else "NOT met"
    print(f"  soak: {soaked['requests_total']} requests {soaked['requests']}, none failed; RSS "
          f"{soaked['rss_start'] / MIB:.0f} -> {soaked['rss_end'] / MIB:.0f} MiB (peak "
          f"{soaked['rss_peak'] / MIB:.0f}), growth {growth:+.1f} % (target < "
          f"{GROWTH_TARGET:g} %: {verdict}), slope {soaked['slope_mib_per_min']:+.2f} MiB/min"
          f"  -> {path}")


if __name__ == "__main__":
    main()
