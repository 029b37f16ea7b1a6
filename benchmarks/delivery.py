"""Delivery benchmark: our outbox against the raw SMTP ceiling and django-post-office.

All figures come from one run on this machine, against one local aiosmtpd sink process:
- drain: N emails already in the outbox, delivered by our workers; peers: the standard
  library's smtplib straight to the sink (no database, same number of connections) and
  post-office's ``send_queued()``;
- accept: ``POST /api/v1/emails`` with 50 concurrent clients from this process against
  ``email-sender serve`` in another (SQLite), and ``POST /api/v1/emails/batch``; peer:
  post-office's ``mail.send()`` queueing rate;
- end to end: accept N emails through the API, then deliver them; peer: post-office queue + drain.

Usage: python benchmarks/delivery.py [--n 5000] [--duration 10] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import smtplib
import sqlite3
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import free_port, ratio_line, smtp_sink

from email_sender.cli import _loop_factory
from email_sender.log import setup_logging
from email_sender.mail.message import EmailIn
from email_sender.ops.loadtest import run_load, sample_email
from email_sender.service import build_service
from email_sender.settings import RelaySettings, load_settings

CONNECTIONS = 4


# --- drain -------------------------------------------------------------------------------------


async def our_drain(n: int, port: int, work: Path) -> float:
    settings = load_settings(data_dir=work / "drain")
    settings.smtp.relays = [RelaySettings(url=f"smtp://127.0.0.1:{port}", tls="none",
                                          max_connections=CONNECTIONS)]
    settings.delivery.workers = CONNECTIONS
    settings.delivery.batch_size = 100
    settings.delivery.poll_interval = 0.05
    setup_logging(level=os.environ.get("BENCH_LOG", "INFO"), log_dir=settings.log_dir, stderr=False)
    service = build_service(settings, role="delivery")
    await service.db.start()
    for start in range(0, n, 500):
        prepared = [service.intake.prepare(EmailIn.model_validate(sample_email(i)))
                    for i in range(start, min(n, start + 500))]
        await service.outbox.accept_many(prepared)
    await service.db.stop()
    started = time.perf_counter()
    await service.start()
    while (await service.outbox.counts_by_status()).get("sent", 0) < n:
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    await service.stop()
    return elapsed


def _raw_sender(args: tuple[int, int, int]) -> None:
    port, first, count = args
    with smtplib.SMTP("127.0.0.1", port) as client:
        for n in range(first, first + count):
            message = EmailMessage()
            message["From"] = "Load Test <load@example.com>"
            message["To"] = f"user{n % 1000}@example.org"
            message["Subject"] = f"Load test message {n}"
            message["Message-ID"] = f"<raw{n}@example.com>"
            message.set_content("This message was sent by the delivery benchmark.")
            client.send_message(message)


def raw_ceiling(n: int, port: int) -> float:
    share = n // CONNECTIONS
    jobs = [(port, k * share, share) for k in range(CONNECTIONS)]
    with multiprocessing.get_context("spawn").Pool(CONNECTIONS) as pool:
        started = time.perf_counter()
        pool.map(_raw_sender, jobs)
        return time.perf_counter() - started


def post_office(n: int, port: int, work: Path) -> dict[str, Any]:
    script = Path(__file__).parent / "_post_office_peer.py"
    out = subprocess.run([sys.executable, str(script), str(n), str(port), str(work / "po")],
                         capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# --- accept and end to end (a served process) ---------------------------------------------------


class Served:
    def __init__(self, work: Path, role: str, smtp_port: int) -> None:
        self.port = free_port()
        self.data = work / f"served-{role}"
        env = {**os.environ,
               "EMAIL_SENDER__SMTP__RELAYS": json.dumps([{"url": f"smtp://127.0.0.1:{smtp_port}",
                                                          "tls": "none",
                                                          "max_connections": CONNECTIONS}]),
               "EMAIL_SENDER__EMBEDDER__PROVIDER": "hashing",
               "EMAIL_SENDER__DELIVERY__WORKERS": str(CONNECTIONS),
               "EMAIL_SENDER__DELIVERY__BATCH_SIZE": "100"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "email_sender", "serve", "--role", role, "--data-dir",
             str(self.data), "--port", str(self.port), "--metrics-port", str(free_port())],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("the service did not start")

    def sent(self) -> int:
        with sqlite3.connect(self.data / "email-sender.db") as connection:
            row = connection.execute("SELECT count(*) FROM emails WHERE status='sent'").fetchone()
            return int(row[0])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def batch_body(size: int) -> Any:
    return lambda n: {"emails": [sample_email(n * size + i) for i in range(size)]}


async def end_to_end(served: Served, n: int) -> float:
    started = time.perf_counter()
    await run_load(served.url, concurrency=2, duration=600, max_requests=n // 500,
                   path="/api/v1/emails/batch", body=batch_body(500))
    while served.sent() < n:
        await asyncio.sleep(0.05)
    return time.perf_counter() - started


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n = args.n - args.n % 500 or 500
    figures: dict[str, Any] = {"n": n, "connections": CONNECTIONS}
    with tempfile.TemporaryDirectory() as tmp, smtp_sink() as port:
        work = Path(tmp)
        figures["raw_drain_per_s"] = n / raw_ceiling(n, port)
        peer = post_office(n, port, work)
        figures["post_office_drain_per_s"] = n / peer["drain_seconds"]
        figures["post_office_queue_per_s"] = n / peer["queue_seconds"]
        peer_total = peer["queue_seconds"] + peer["drain_seconds"]
        figures["post_office_end_to_end_per_s"] = n / peer_total
        # The same event loop as `email-sender serve`.
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            figures["our_drain_per_s"] = n / runner.run(our_drain(n, port, work))

        api = Served(work, "api", port)
        try:
            single = asyncio.run(run_load(api.url, concurrency=50, duration=args.duration))
            figures["accept"] = single.as_dict()
            batch = asyncio.run(run_load(api.url, concurrency=4, duration=args.duration,
                                         path="/api/v1/emails/batch", body=batch_body(500)))
            figures["batch_emails_per_s"] = batch.rps * 500
            figures["batch_errors"] = batch.errors
        finally:
            api.stop()
        full = Served(work, "all", port)
        try:
            figures["our_end_to_end_per_s"] = n / asyncio.run(end_to_end(full, n))
        finally:
            full.stop()
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    accept = figures["accept"]
    print(f"delivery benchmark: N={n}, {CONNECTIONS} SMTP connections, one aiosmtpd sink")
    print(ratio_line("drain (ours)", figures["our_drain_per_s"], "post-office send_queued",
                     figures["post_office_drain_per_s"], "/s", target=1.0))
    print(ratio_line("drain (ours)", figures["our_drain_per_s"], "raw smtplib ceiling",
                     figures["raw_drain_per_s"], "/s", target=0.8))
    print(f"{'accept POST /emails, 50 clients':<34} {accept['rps']:>9.1f} /s   p50 "
          f"{accept['p50_ms']} ms, p95 {accept['p95_ms']} ms, errors {accept['errors']}; "
          f"seed bar >= 1000/s, p95 < 100 ms: {'met' if accept['meets_seed_bar'] else 'NOT met'}")
    print(ratio_line("accept POST /emails/batch", figures["batch_emails_per_s"],
                     "post-office mail.send()", figures["post_office_queue_per_s"], "/s",
                     target=10.0))
    print(ratio_line("end to end (ours)", figures["our_end_to_end_per_s"],
                     "post-office queue + drain", figures["post_office_end_to_end_per_s"], "/s",
                     target=2.0))


if __name__ == "__main__":
    main()
