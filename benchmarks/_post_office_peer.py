"""The peer: django-post-office, its README's way, to the same SMTP sink. Prints one line of
JSON.

The database is SQLite with the pragmas our outbox sets on its own SQLite file (WAL,
``synchronous=NORMAL``, a 30 s busy timeout) and BEGIN IMMEDIATE for write transactions, so
both sides run on the same kind of database, tuned alike. post-office sends with
``THREADS_PER_PROCESS`` = our SMTP connections, ``BATCH_SIZE`` = our delivery batch, and keeps no
delivery log (``LOG_LEVEL`` 0, its fastest). Each mode first runs ``--warm-up`` emails through the
same path, untimed, then times ``--n`` emails (the same emails as ours: sender, recipients,
subject and text):

- ``drain``: N emails queued with ``send_many()`` beforehand; timed:
  ``send_queued_mail_until_done()`` (what its ``send_queued_mail`` command runs) until the queue
  is empty and every status written.
- ``accept``: timed: ``send_many()`` in batches of ``--batch`` until N are queued.
- ``end-to-end``: a worker process (forked, warm: it delivered the warm-up) calls
  ``send_queued()`` in a loop, as a worker or cron does, sleeping ``--poll`` seconds when the
  queue is empty, while this process queues with ``send_many()`` in batches of ``--batch``;
  timed: from the first batch queued to the worker's last email recorded sent.

Reported: ``seconds`` to the end of post-office's own records (the last status written), and for
drain and end to end ``started_at`` (``time.monotonic``, one system-wide clock on Linux) for the
caller, which times both sides to the moment the sink has the last message; counts (``sent``, or
``queued`` for accept) from post-office's own Email table, past the warm-up, which the caller
checks against the sink's count.

Usage: python benchmarks/_post_office_peer.py MODE --n N --port P --work DIR --connections C
       --batch-size B --batch S --warm-up W [--poll SECONDS] --sender FROM --text TEXT
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import queue
import time
from pathlib import Path
from typing import Any

MODES = ("drain", "accept", "end-to-end")
READY_TIMEOUT = 60.0
RUN_TIMEOUT = 600.0


def configure(args: argparse.Namespace) -> None:
    import django
    from django.conf import settings

    args.work.mkdir(parents=True, exist_ok=True)
    settings.configure(
        DEBUG=False,
        DATABASES={"default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(args.work / "post_office.db"),
            "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
                        "timeout": 30, "transaction_mode": "IMMEDIATE"},
        }},
        INSTALLED_APPS=["django.contrib.contenttypes", "post_office"],
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=args.port,
        USE_TZ=True,
        POST_OFFICE={"THREADS_PER_PROCESS": args.connections, "BATCH_SIZE": args.batch_size,
                     "LOG_LEVEL": 0},
        LOGGING_CONFIG=None,
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
    )
    django.setup()
    logging.disable(logging.CRITICAL)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def emails(first: int, count: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    return [{"recipients": [f"user{n % 1000}@example.org"], "sender": args.sender,
             "subject": f"Load test message {n}", "message": args.text}
            for n in range(first, first + count)]


def queue_all(first: int, count: int, args: argparse.Namespace) -> None:
    from post_office import mail

    for start in range(first, first + count, args.batch):
        mail.send_many(emails(start, min(args.batch, first + count - start), args))


def status_count(name: str) -> int:
    from post_office.models import STATUS, Email

    return int(Email.objects.filter(status=getattr(STATUS, name)).count())


def drain(args: argparse.Namespace) -> dict[str, Any]:
    from post_office import mail

    lockfile = str(args.work / "send_queued")
    queue_all(-args.warm_up, args.warm_up, args)
    mail.send_queued_mail_until_done(lockfile=lockfile, processes=1)
    queue_all(0, args.n, args)
    started = time.monotonic()
    mail.send_queued_mail_until_done(lockfile=lockfile, processes=1)
    seconds = time.monotonic() - started
    return {"started_at": started, "seconds": seconds, "sent": status_count("sent") - args.warm_up,
            "failed": status_count("failed") + status_count("requeued")}


def accept(args: argparse.Namespace) -> dict[str, Any]:
    queue_all(-args.warm_up, args.warm_up, args)
    started = time.perf_counter()
    queue_all(0, args.n, args)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "queued": status_count("queued") - args.warm_up}


def send_queued_loop(args: argparse.Namespace, warm: Any, reports: Any) -> None:
    """The worker: ``send_queued()`` again and again, as a cron job or a worker loop runs it."""
    from django.db import connections
    from post_office import mail

    connections.close_all()  # the parent's SQLite connection is not to be shared
    try:
        delivered, failed = 0, 0
        deadline = time.monotonic() + READY_TIMEOUT + RUN_TIMEOUT
        while time.monotonic() < deadline:
            sent, failed_now, requeued = mail.send_queued(processes=1)
            delivered += sent
            failed += failed_now + requeued
            if delivered >= args.warm_up and not warm.is_set():
                warm.set()
            if delivered >= args.warm_up + args.n:
                reports.put(("done", delivered - args.warm_up, failed, time.monotonic()))
                return
            if not sent:
                time.sleep(args.poll)
        reports.put(("error", f"{delivered} delivered when the worker's time ran out"))
    except Exception as exc:
        reports.put(("error", f"{type(exc).__name__}: {exc}"))


def end_to_end(args: argparse.Namespace) -> dict[str, Any]:
    from django.db import connections

    context = multiprocessing.get_context("fork")
    warm, reports = context.Event(), context.Queue()
    connections.close_all()
    worker = context.Process(target=send_queued_loop, args=(args, warm, reports), daemon=True)
    worker.start()
    try:
        queue_all(-args.warm_up, args.warm_up, args)
        if not warm.wait(READY_TIMEOUT):
            raise RuntimeError("the send_queued worker did not deliver the warm-up in time")
        started = time.monotonic()
        queue_all(0, args.n, args)
        queued = time.monotonic()
        try:
            kind, *rest = reports.get(timeout=RUN_TIMEOUT)
        except queue.Empty as exc:
            raise RuntimeError("the send_queued worker did not finish in time") from exc
        if kind != "done":
            raise RuntimeError(f"the send_queued worker failed: {rest}")
        worker_sent, failed, finished = rest
        return {"started_at": started, "seconds": finished - started,
                "queue_seconds": queued - started, "worker_sent": worker_sent, "failed": failed,
                "sent": status_count("sent") - args.warm_up}
    finally:
        worker.join(timeout=10)
        if worker.is_alive():
            worker.kill()
            worker.join(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True,
                        help="post-office BATCH_SIZE: emails per send_queued() call")
    parser.add_argument("--batch", type=int, required=True, help="emails per send_many() call")
    parser.add_argument("--warm-up", type=int, required=True)
    parser.add_argument("--poll", type=float, default=0.05)
    parser.add_argument("--sender", required=True)
    parser.add_argument("--text", required=True)
    args = parser.parse_args()
    for name in ("n", "connections", "batch_size", "batch", "warm_up"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    configure(args)
    run = {"drain": drain, "accept": accept, "end-to-end": end_to_end}[args.mode]
    print(json.dumps({"mode": args.mode, "n": args.n, "warm_up": args.warm_up, **run(args)}))


if __name__ == "__main__":
    main()
