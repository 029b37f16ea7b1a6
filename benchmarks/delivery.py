"""Delivery benchmark: our outbox against django-post-office and the raw smtplib ceiling.

All figures come from one run on this machine, each side sending the same emails (sender,
recipients, subject, text: ``loadtest.sample_email``) to one local aiosmtpd sink process that
counts what it accepts (``_message_sink.py``). Both sides keep their emails in SQLite (WAL,
``synchronous=NORMAL``: our outbox's own pragmas, set on post-office's database too), use
``CONNECTIONS`` SMTP connections, delivery batches of ``BATCH_SIZE`` and a ``POLL`` s idle poll.
Before each timed run, ``WARM_UP`` emails go through the same path on the same side, untimed.

What is timed (each delivery run ends when the sink has accepted the run's last message, a
moment the same for both sides whatever their own records lag: the sink's count is polled from
outside the side measured; each side's records are then checked, untimed):
- drain: N emails already queued. Ours: from ``service.start()`` of a delivery node (in this
  process, on the serve command's event loop; the node's start is counted); post-office
  (``_post_office_peer.py drain``): from the call of ``send_queued_mail_until_done()``.
- raw ceiling (``_smtplib_peer.py``): smtplib from pre-started processes, each connected to the
  sink and warmed with one message, released together; from the release to the last message
  accepted. No database. Run with 1, 2, 4 and 8 processes: the best is the ceiling.
- batch accept: ours: ``POST /api/v1/emails/batch`` of ``ACCEPT_BATCH`` emails from
  ``ACCEPT_CLIENTS`` clients against ``serve --role api`` in another process, from the first
  request sent to the last answer; post-office: ``send_many()`` of ``ACCEPT_BATCH`` emails, one
  call after another in its process, from the first call to the last return.
- end to end: ours: the same batch requests against ``serve --role all``, from the first request
  sent; post-office: ``send_many()`` batches while a worker process (warm, already looping)
  calls ``send_queued()`` again and again, as a cron job or worker runs it, from the first batch.

Only successful items count: emails accepted (202 and ``accepted`` in the answer, no rejected
item) and delivered. Every count is checked against the side's own record (our outbox rows with
status ``sent`` or ``queued``; post-office's Email status) and, for deliveries, against the
sink's count; any mismatch stops the benchmark with exit code 1 and no result written.

Usage: python benchmarks/delivery.py [--n 3000] [--quick] [--rounds 1] [--json]
(``--rounds R``: R rounds of every pair, each side's best round counts: for a shared machine.)
Writes ``benchmarks/results/delivery.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _common import free_port, ratio_line, row, write_result
from _message_sink import MessageSink, message_sink

from email_sender.cli import _loop_factory
from email_sender.log import setup_logging
from email_sender.mail.message import EmailIn
from email_sender.ops.loadtest import sample_email
from email_sender.service import Service, build_service
from email_sender.settings import RelaySettings, Settings, load_settings

HERE = Path(__file__).parent
CONNECTIONS = 4
BATCH_SIZE = 100
ACCEPT_BATCH = 500
ACCEPT_CLIENTS = 2
WARM_UP = 100
POLL = 0.05
SINK_POLL = 0.01
RAW_PROCESSES = (1, 2, 4, 8)
QUICK_N = 500
RUN_TIMEOUT = 600.0
SENDER = sample_email(0)["from"]
TEXT = sample_email(0)["text"]


class CountMismatch(RuntimeError):
    """A side's counts do not match: no figure is honest then."""


class SenderStopped(RuntimeError):
    """The side measured ended (or failed) before the sink had all its messages."""


def check(what: str, expected: int, **counts: int) -> None:
    wrong = {name: count for name, count in counts.items() if count != expected}
    if wrong:
        raise CountMismatch(f"{what}: expected {expected}, got {counts}")


def wait_for_sink(sink: MessageSink, target: int, alive: Any = None,
                  timeout: float = RUN_TIMEOUT) -> float:
    """When (``time.monotonic``) the sink's count reached ``target``: the end of a timed run.
    The same clock for every side, whatever its own records lag behind; polled from outside
    the side measured (another process, or a thread of ours)."""
    deadline = time.monotonic() + timeout
    while sink.delivered() < target:
        if alive is not None and not alive() and sink.delivered() < target:
            raise SenderStopped(f"the sender stopped before the sink had {target} messages")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the sink did not reach {target} messages in {timeout:.0f} s")
        time.sleep(SINK_POLL)
    return time.monotonic()


async def wait_until(what: str, done: Any, poll: float = 0.02,
                     timeout: float = RUN_TIMEOUT) -> None:
    """Untimed waits: a warm-up to finish, records to catch up with the sink."""
    deadline = time.monotonic() + timeout
    while not await done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done within {timeout:.0f} s")
        await asyncio.sleep(poll)


# --- drain (ours in this process) ----------------------------------------------------------------


def drain_settings(port: int, work: Path) -> Settings:
    settings = load_settings(data_dir=work / "drain")
    settings.smtp.relays = [RelaySettings(url=f"smtp://127.0.0.1:{port}", tls="none",
                                          max_connections=CONNECTIONS)]
    settings.delivery.workers = CONNECTIONS
    settings.delivery.batch_size = BATCH_SIZE
    settings.delivery.poll_interval = POLL
    return settings


async def queue_in_outbox(service: Service, first: int, count: int) -> None:
    for start in range(first, first + count, ACCEPT_BATCH):
        prepared = [service.intake.prepare(EmailIn.model_validate(sample_email(n)))
                    for n in range(start, min(first + count, start + ACCEPT_BATCH))]
        await service.outbox.accept_many(prepared)


async def sent_count(service: Service) -> int:
    return (await service.outbox.counts_by_status()).get("sent", 0)


async def our_drain(n: int, sink: MessageSink, work: Path) -> dict[str, Any]:
    settings = drain_settings(sink.smtp_port, work)
    setup_logging(level=os.environ.get("BENCH_LOG", "INFO"), log_dir=settings.log_dir, stderr=False)
    # Warm-up: a node delivers WARM_UP emails, then stops; the timed node starts on the same
    # outbox with N emails queued while no node ran.
    warm = build_service(settings, role="delivery")
    await warm.start()
    try:
        await queue_in_outbox(warm, -WARM_UP, WARM_UP)
        await wait_until("our drain warm-up", lambda: _at_least(warm, WARM_UP))
    finally:
        await warm.stop()
    service = build_service(settings, role="delivery")
    await service.db.start()
    await queue_in_outbox(service, 0, n)
    await service.db.stop()
    sink_before = sink.delivered()
    started = time.monotonic()
    await service.start()
    start_seconds = time.monotonic() - started
    try:
        finished = await asyncio.to_thread(wait_for_sink, sink, sink_before + n)
        await wait_until("our drain: outbox records", lambda: _at_least(service, WARM_UP + n))
        counts = await service.outbox.counts_by_status()
    finally:
        await service.stop()
    return {"seconds": finished - started, "start_seconds": start_seconds,
            "sent": counts.get("sent", 0) - WARM_UP, "sink": sink.delivered() - sink_before,
            "statuses": counts}


async def _at_least(service: Service, count: int) -> bool:
    return await sent_count(service) >= count


# --- peers (each in its own process) -------------------------------------------------------------


def run_peer(script: str, *args: str, sink: MessageSink | None = None,
             target: int = 0) -> dict[str, Any]:
    """Run a peer script to its end and answer its JSON line; with ``sink``, also note when
    (``sink_reached_at``) the sink's count reached ``target`` while it ran."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen([sys.executable, str(HERE / script), *args], stdout=out,
                                   stderr=err, text=True)
        reached = None
        try:
            if sink is not None:
                try:
                    reached = wait_for_sink(sink, target, alive=lambda: process.poll() is None)
                except SenderStopped:
                    pass  # its exit code and output say why; its counts are checked below
            process.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"{script} {args[0]}: not done within {RUN_TIMEOUT:.0f} s") from exc
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise RuntimeError(f"{script} {args[0]} failed:\n{err.read()[-3000:]}")
        result: dict[str, Any] = json.loads(out.read().strip().splitlines()[-1])
    result["sink_reached_at"] = reached
    return result


def raw_ceiling(n: int, sink: MessageSink) -> dict[str, Any]:
    """The smtplib sweep; each run's counts checked against the sink."""
    runs = {}
    for processes in RAW_PROCESSES:
        before = sink.delivered()
        result = run_peer("_smtplib_peer.py", "--port", str(sink.smtp_port), "--n", str(n),
                          "--processes", str(processes), "--sender", SENDER, "--text", TEXT)
        check(f"smtplib, {processes} processes: sent", n, sent=result["sent"])
        check(f"smtplib, {processes} processes: sink (with one warm-up message a process)",
              n + result["warm_up"], sink=sink.delivered() - before)
        runs[processes] = n / result["seconds"]
    best = max(runs, key=lambda processes: runs[processes])
    return {"per_s_by_processes": runs, "best_processes": best, "per_s": runs[best]}


def post_office(mode: str, n: int, sink: MessageSink, work: Path) -> dict[str, Any]:
    before = sink.delivered()
    result = run_peer("_post_office_peer.py", mode, "--n", str(n), "--port", str(sink.smtp_port),
                      "--work", str(work / f"po-{mode}"), "--connections", str(CONNECTIONS),
                      "--batch-size", str(BATCH_SIZE), "--batch", str(ACCEPT_BATCH),
                      "--warm-up", str(WARM_UP), "--poll", str(POLL), "--sender", SENDER,
                      "--text", TEXT, sink=None if mode == "accept" else sink,
                      target=before + WARM_UP + n)
    delivered = sink.delivered() - before
    if mode == "accept":
        check("post-office send_many(): queued (Email status)", n, queued=result["queued"])
        check("post-office send_many(): nothing delivered", 0, sink=delivered)
        return result
    check(f"post-office {mode}: sent (Email status), sink less the warm-up", n,
          sent=result["sent"], sink=delivered - WARM_UP, worker=result.get("worker_sent", n))
    check(f"post-office {mode}: failed or requeued", 0, failed=result["failed"])
    # Timed to the sink's last message, as ours; the time to its own records kept beside.
    result["records_seconds"] = result["seconds"]
    result["seconds"] = result["sink_reached_at"] - result["started_at"]
    return result


# --- accept and end to end (ours: a served process) ----------------------------------------------


class Served:
    """``email-sender serve`` in another process, on its own SQLite outbox."""

    def __init__(self, work: Path, role: str, smtp_port: int, data: str | None = None) -> None:
        self.port = free_port()
        self.data = work / (data or f"served-{role}")
        self.url = f"http://127.0.0.1:{self.port}"
        metrics_port = free_port()
        # A node without the API serves its metrics only, once every other manager has started.
        self.health = (f"{self.url}/health" if role in ("api", "all")
                       else f"http://127.0.0.1:{metrics_port}/metrics")
        env = {**os.environ,
               "EMAIL_SENDER__SMTP__RELAYS": json.dumps([{"url": f"smtp://127.0.0.1:{smtp_port}",
                                                          "tls": "none",
                                                          "max_connections": CONNECTIONS}]),
               "EMAIL_SENDER__EMBEDDER__PROVIDER": "hashing",
               "EMAIL_SENDER__DELIVERY__WORKERS": str(CONNECTIONS),
               "EMAIL_SENDER__DELIVERY__BATCH_SIZE": str(BATCH_SIZE),
               "EMAIL_SENDER__DELIVERY__POLL_INTERVAL": str(POLL)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "email_sender", "serve", "--role", role, "--data-dir",
             str(self.data), "--port", str(self.port), "--metrics-port", str(metrics_port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(self.health, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"email-sender serve did not start on {self.url}")

    def statuses(self) -> dict[str, int]:
        with sqlite3.connect(self.data / "email-sender.db", timeout=30) as connection:
            rows = connection.execute("SELECT status, count(*) FROM emails GROUP BY status")
            return {status: int(count) for status, count in rows}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@contextmanager
def served(work: Path, role: str, smtp_port: int, data: str | None = None) -> Iterator[Served]:
    node = Served(work, role, smtp_port, data)
    try:
        node.wait_ready()
        yield node
    finally:
        node.stop()


@contextmanager
def served_split(work: Path, smtp_port: int) -> Iterator[list[Served]]:
    """``serve --role api`` and ``serve --role delivery`` on one SQLite outbox: two processes,
    as post-office's queueing process and its worker. The API node starts (and migrates) first."""
    with served(work, "api", smtp_port, "served-split") as api, \
            served(work, "delivery", smtp_port, "served-split") as delivery:
        yield [api, delivery]


async def post_batches(url: str, first: int, count: int) -> dict[str, Any]:
    """``count`` emails in batches of ``ACCEPT_BATCH`` from ``ACCEPT_CLIENTS`` clients; counts
    the accepted items of 202 answers."""
    starts = iter(range(first, first + count, ACCEPT_BATCH))
    accepted, rejected, failures = 0, 0, []

    async def client() -> None:
        nonlocal accepted, rejected
        async with httpx.AsyncClient(base_url=url, timeout=60.0) as http:
            for start in starts:
                batch = [sample_email(n) for n in range(start, min(first + count,
                                                                   start + ACCEPT_BATCH))]
                answer = await http.post("/api/v1/emails/batch", json={"emails": batch})
                if answer.status_code != 202:
                    failures.append(f"{answer.status_code}: {answer.text[:200]}")
                    continue
                body = answer.json()
                accepted += body["accepted"]
                rejected += body["rejected"]

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(ACCEPT_CLIENTS)))
    return {"seconds": time.perf_counter() - started, "accepted": accepted,
            "rejected": rejected, "failed_requests": failures}


async def our_batch_accept(node: Served, n: int) -> dict[str, Any]:
    warm = await post_batches(node.url, -WARM_UP, WARM_UP)
    check("our batch accept warm-up: accepted", WARM_UP, accepted=warm["accepted"])
    result = await post_batches(node.url, 0, n)
    check("our batch accept: accepted (202 answers), outbox rows queued", n,
          accepted=result["accepted"], queued=node.statuses().get("queued", 0) - WARM_UP)
    check("our batch accept: rejected items, failed requests", 0, rejected=result["rejected"],
          failed=len(result["failed_requests"]))
    return result


async def our_end_to_end(nodes: list[Served], n: int, sink: MessageSink) -> dict[str, Any]:
    """Batches posted to the first node's API; the nodes (one outbox) deliver them."""
    node = nodes[0]

    async def sent_at_least(count: int) -> bool:
        return node.statuses().get("sent", 0) >= count

    warm = await post_batches(node.url, -WARM_UP, WARM_UP)
    check("our end to end warm-up: accepted", WARM_UP, accepted=warm["accepted"])
    await wait_until("our end to end warm-up", lambda: sent_at_least(WARM_UP), poll=0.1)
    stop_waiting = threading.Event()

    async def accept_all() -> dict[str, Any]:
        try:
            result = await post_batches(node.url, 0, n)
            check("our end to end: accepted", n, accepted=result["accepted"])
            return result
        except BaseException:
            stop_waiting.set()  # the sink will not get them all: no use waiting for it
            raise

    before = sink.delivered()
    started = time.monotonic()
    accepted, finished = await asyncio.gather(
        accept_all(),
        asyncio.to_thread(wait_for_sink, sink, before + n,
                          alive=lambda: not stop_waiting.is_set()
                          and all(one.process.poll() is None for one in nodes)),
    )
    await wait_until("our end to end: outbox records", lambda: sent_at_least(WARM_UP + n),
                     poll=0.1)
    statuses = node.statuses()
    check("our end to end: accepted, outbox rows sent, sink", n, accepted=accepted["accepted"],
          sent=statuses.get("sent", 0) - WARM_UP, sink=sink.delivered() - before)
    return {"seconds": finished - started, "accept_seconds": accepted["seconds"],
            "statuses": statuses}


# --- main ----------------------------------------------------------------------------------------


RATES = ("raw_drain_per_s", "post_office_drain_per_s", "our_drain_per_s",
         "post_office_send_many_per_s", "our_batch_accept_per_s",
         "post_office_end_to_end_per_s", "our_end_to_end_per_s",
         "our_all_in_one_end_to_end_per_s")


def measure(n: int, rounds: int) -> dict[str, Any]:
    """``rounds`` rounds of every pair, each side next to its peer; each rate is the side's
    best round (on a shared machine, the round least disturbed by others)."""
    figures: dict[str, Any] = {
        "n": n, "rounds": rounds, "connections": CONNECTIONS, "delivery_batch": BATCH_SIZE,
        "accept_batch": ACCEPT_BATCH, "accept_clients": ACCEPT_CLIENTS, "warm_up": WARM_UP,
        "poll_seconds": POLL, "database": "SQLite (WAL, synchronous=NORMAL) on both sides",
    }
    with tempfile.TemporaryDirectory() as tmp, message_sink() as sink:
        by_round = [measure_round(n, sink, Path(tmp) / f"round-{k}") for k in range(rounds)]
    for name in RATES:
        figures[name] = max(measured[name] for measured in by_round)
    raw = max(by_round, key=lambda measured: measured["raw_drain_per_s"])
    figures["raw_best_processes"] = raw["raw_best_processes"]
    figures["raw_per_s_by_processes"] = raw["raw_per_s_by_processes"]
    figures["by_round"] = by_round
    return figures


def measure_round(n: int, sink: MessageSink, work: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    raw = raw_ceiling(n, sink)
    figures["raw_per_s_by_processes"] = raw["per_s_by_processes"]
    figures["raw_best_processes"] = raw["best_processes"]
    figures["raw_drain_per_s"] = raw["per_s"]

    peer = post_office("drain", n, sink, work)
    figures["post_office_drain_per_s"] = n / peer["seconds"]
    figures["post_office_drain_records_seconds"] = peer["records_seconds"]
    # The same event loop as `email-sender serve`.
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        ours = runner.run(our_drain(n, sink, work))
    check("our drain: outbox rows sent, sink", n, sent=ours["sent"], sink=ours["sink"])
    figures["our_drain_per_s"] = n / ours["seconds"]
    figures["our_drain_node_start_seconds"] = ours["start_seconds"]

    peer = post_office("accept", n, sink, work)
    figures["post_office_send_many_per_s"] = n / peer["seconds"]
    with served(work, "api", sink.smtp_port) as node:
        batch = asyncio.run(our_batch_accept(node, n))
    figures["our_batch_accept_per_s"] = n / batch["seconds"]

    peer = post_office("end-to-end", n, sink, work)
    figures["post_office_end_to_end_per_s"] = n / peer["seconds"]
    figures["post_office_end_to_end_queue_seconds"] = peer["queue_seconds"]
    figures["post_office_end_to_end_records_seconds"] = peer["records_seconds"]
    with served_split(work, sink.smtp_port) as nodes:
        split = asyncio.run(our_end_to_end(nodes, n, sink))
    figures["our_end_to_end_per_s"] = n / split["seconds"]
    figures["our_end_to_end_accept_seconds"] = split["accept_seconds"]
    with served(work, "all", sink.smtp_port) as node:
        full = asyncio.run(our_end_to_end([node], n, sink))
    figures["our_all_in_one_end_to_end_per_s"] = n / full["seconds"]
    figures["our_all_in_one_end_to_end_accept_seconds"] = full["accept_seconds"]
    return figures


def rows_of(figures: dict[str, Any]) -> list[dict[str, Any]]:
    n = figures["n"]
    best = figures["raw_best_processes"]
    sweep = ", ".join(f"{processes}: {rate:.0f}/s"
                      for processes, rate in figures["raw_per_s_by_processes"].items())
    rounds = f", best of {figures['rounds']} rounds each" if figures["rounds"] > 1 else ""
    same = (f"N = {n}{rounds}; {CONNECTIONS} SMTP connections, delivery batches of {BATCH_SIZE}, "
            f"SQLite (WAL, synchronous=NORMAL) on both sides; {WARM_UP} emails of warm-up each")

    def judged(figure: str, ours: float, peer: str, peer_value: float, target: float,
               note: str) -> dict[str, Any]:
        return row(figure, round(ours, 1), "emails/s", peer=peer, peer_value=round(peer_value, 1),
                   target=f">= {target:g}x", met=ours >= target * peer_value, note=note)

    to_sink = "timed to the sink's last message, both sides' records checked after"
    return [
        judged("drain", figures["our_drain_per_s"], "django-post-office send_queued",
               figures["post_office_drain_per_s"], 1.0,
               f"{same}; ours: a delivery node started on N queued emails, from its start; "
               "post-office: send_queued_mail_until_done() on N queued emails, from its call; "
               f"{to_sink}"),
        judged("drain vs raw ceiling", figures["our_drain_per_s"],
               f"stdlib smtplib, {best} warm process{'es' if best > 1 else ''}, no database",
               figures["raw_drain_per_s"], 0.8,
               f"N = {n}{rounds}; ours uses {CONNECTIONS} connections in one process; the "
               "ceiling is the best of 1, 2, 4 and 8 processes (one connection each), the "
               "highest bar this machine gives: pre-started, connected, warmed with one "
               f"message, released together ({sweep}), from the release to the last message "
               "accepted"),
        judged("batch accept", figures["our_batch_accept_per_s"],
               "django-post-office send_many()", figures["post_office_send_many_per_s"], 1.5,
               f"{same}; ours: POST /api/v1/emails/batch of {ACCEPT_BATCH} through the API "
               f"(serve --role api, {ACCEPT_CLIENTS} clients), first request to last answer, "
               f"accepted items only; post-office: send_many() of {ACCEPT_BATCH} one call after "
               "another, in process; both checked against the rows queued"),
        judged("end to end", figures["our_end_to_end_per_s"],
               "django-post-office send_many() + concurrent send_queued() loop",
               figures["post_office_end_to_end_per_s"], 2.0,
               f"{same}; two processes each side: ours, batches of {ACCEPT_BATCH} through the "
               "API of serve --role api while serve --role delivery sends from the same outbox, "
               "from the first request; post-office: send_many() batches while a worker process "
               f"loops over send_queued() (idle poll {POLL} s), from the first batch; {to_sink}"),
        row("end to end, one serve --role all process",
            round(figures["our_all_in_one_end_to_end_per_s"], 1), "emails/s",
            peer="django-post-office, two processes",
            peer_value=round(figures["post_office_end_to_end_per_s"], 1),
            note="the embedded default: accepting, sending and indexing every email (hashing "
                 "embedder) in one process, against the peer's two; no target"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="emails per timed run")
    parser.add_argument("--quick", action="store_true", help=f"a small run: --n {QUICK_N}")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of every pair; each side's best round counts")
    parser.add_argument("--json", action="store_true", help="print the figures and rows as JSON")
    args = parser.parse_args()
    n = QUICK_N if args.quick else args.n
    if n < 1:
        parser.error("--n must be at least 1")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    try:
        figures = measure(n, args.rounds)
    except CountMismatch as exc:
        print(f"delivery benchmark: counts do not match, no figure written: {exc}",
              file=sys.stderr)
        sys.exit(1)
    rows = rows_of(figures)
    write_result("delivery", figures, rows)
    if args.json:
        print(json.dumps({"figures": figures, "rows": rows}, indent=2))
        return
    print(f"delivery benchmark: N={n}, {CONNECTIONS} SMTP connections, one counting aiosmtpd sink,"
          " SQLite on both sides")
    for item in rows:
        print(ratio_line(item["figure"], item["ours"], item["peer"], item["peer_value"], "/s",
                         target=float(item["target"].removeprefix(">= ").removesuffix("x"))
                         if item["target"] else None))


if __name__ == "__main__":
    main()
