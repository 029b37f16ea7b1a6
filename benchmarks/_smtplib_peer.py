"""The raw ceiling: the standard library's smtplib straight to the sink, no database, from
pre-started, warmed processes. Prints one line of JSON.

Each process (forked from this small script, which imports only the standard library) connects
to the sink and sends one warm-up message, then waits. Once every process is ready, the parent
notes the time and releases them together (one Event); each builds and sends its share of the
emails on its connection and reports when its last one was accepted (``time.monotonic``, one
system-wide clock on Linux). The figure is the release to the last process's last message;
interpreter start-up, imports, the connection and the warm-up are outside it.

Usage: python benchmarks/_smtplib_peer.py --port P --n N --processes K --sender S --text T
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import queue
import smtplib
import time
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

READY_TIMEOUT = 30.0
SEND_TIMEOUT = 300.0


def build(n: int, sender: str, text: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = f"user{n % 1000}@example.org"
    message["Subject"] = f"Load test message {n}"
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = f"<raw{n}@example.com>"
    message.set_content(text)
    return message


def sender_process(port: int, numbers: range, sender: str, text: str,
                   release: Any, reports: Any) -> None:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.send_message(build(-1, sender, text))
            reports.put(("ready", 1))
            if not release.wait(READY_TIMEOUT + SEND_TIMEOUT):
                reports.put(("error", "never released"))
                return
            sent = 0
            for n in numbers:
                if not client.send_message(build(n, sender, text)):  # {} when none was refused
                    sent += 1
            reports.put(("done", sent, time.monotonic()))
    except Exception as exc:
        reports.put(("error", f"{type(exc).__name__}: {exc}"))


def run(port: int, n: int, processes: int, sender: str, text: str) -> dict[str, Any]:
    context = multiprocessing.get_context("fork")
    release = context.Event()
    reports = context.Queue()
    shares = [range(k, n, processes) for k in range(processes)]
    workers = [context.Process(target=sender_process,
                               args=(port, share, sender, text, release, reports), daemon=True)
               for share in shares]
    try:
        for worker in workers:
            worker.start()
        warm_up = 0
        deadline = time.monotonic() + READY_TIMEOUT
        while warm_up < processes:
            kind, *rest = reports.get(timeout=max(deadline - time.monotonic(), 0.01))
            if kind != "ready":
                raise RuntimeError(f"a sender failed before the release: {rest}")
            warm_up += rest[0]
        released = time.monotonic()
        release.set()
        sent, finished = 0, released
        deadline = released + SEND_TIMEOUT
        for _ in workers:
            kind, *rest = reports.get(timeout=max(deadline - time.monotonic(), 0.01))
            if kind != "done":
                raise RuntimeError(f"a sender failed: {rest}")
            sent += rest[0]
            finished = max(finished, rest[1])
        return {"n": n, "processes": processes, "sent": sent, "warm_up": warm_up,
                "seconds": finished - released}
    except queue.Empty as exc:
        raise RuntimeError("a sender did not report in time") from exc
    finally:
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.kill()
                worker.join(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--sender", required=True)
    parser.add_argument("--text", required=True)
    args = parser.parse_args()
    if args.n < 1 or args.processes < 1:
        parser.error("--n and --processes must be at least 1")
    print(json.dumps(run(args.port, args.n, args.processes, args.sender, args.text)))


if __name__ == "__main__":
    main()
