"""An SMTP sink in its own process that counts what it receives and tells duplicates apart, for
the benchmarks that time a drain up to the last message and must check counts at the receiving
end (delivery, scale-out, memory).

Every message answered 250 is counted, its ``Message-ID`` kept (a duplicate delivery shows as
``received > unique``) and the arrival time of the first and the last noted. ``GET /`` on the
HTTP port answers those figures as JSON.

Run: python benchmarks/_message_sink.py SMTP_PORT HTTP_PORT
Use: ``with message_sink() as sink: ...; sink.stats()``
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from _common import free_port, stop

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)
START_TIMEOUT = 20.0


class CountingHandler:
    """aiosmtpd handler: discard each message, counting it and keeping its Message-ID."""

    def __init__(self) -> None:
        self.received = 0
        self.message_ids: set[bytes] = set()
        self.without_id = 0
        self.first_at: float | None = None
        self.last_at: float | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.time()
        content: bytes = envelope.original_content or envelope.content
        found = _MESSAGE_ID.search(content.split(b"\r\n\r\n", 1)[0])
        if found is None:
            self.without_id += 1
        else:
            self.message_ids.add(found.group(1))
        self.received += 1
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        return "250 OK"

    def stats(self) -> dict[str, Any]:
        return {"received": self.received, "unique": len(self.message_ids),
                "without_id": self.without_id, "first_at": self.first_at,
                "last_at": self.last_at}


async def _serve(smtp_port: int, http_port: int) -> None:
    from aiosmtpd.smtp import SMTP

    handler = CountingHandler()
    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(lambda: SMTP(handler, hostname="sink.local"),
                                    "127.0.0.1", smtp_port)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            body = json.dumps(handler.stats()).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Connection: close\r\nContent-Length: " + str(len(body)).encode()
                         + b"\r\n\r\n" + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    http = await asyncio.start_server(answer, "127.0.0.1", http_port)
    async with smtp, http:
        await asyncio.Event().wait()  # until terminated


def _main() -> None:
    smtp_port, http_port = int(sys.argv[1]), int(sys.argv[2])
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(smtp_port, http_port))
    else:
        uvloop.run(_serve(smtp_port, http_port))


# --- the benchmark's side ------------------------------------------------------------------------


@dataclass
class MessageSink:
    smtp_port: int
    http_port: int
    process: subprocess.Popen[bytes]

    def stats(self) -> dict[str, Any]:
        """received, unique (Message-IDs), without_id, first_at and last_at (epoch seconds)."""
        answer = httpx.get(f"http://127.0.0.1:{self.http_port}/", timeout=5)
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def delivered(self) -> int:
        """Messages received since the sink started."""
        return int(self.stats()["received"])


@contextmanager
def message_sink() -> Iterator[MessageSink]:
    """Start the sink in its own process; yield it once it answers; stop it on the way out."""
    smtp_port, http_port = free_port(), free_port()
    # A file, not a pipe: a pipe nobody reads would stall the sink once full.
    errors = tempfile.TemporaryFile()
    process = subprocess.Popen([sys.executable, __file__, str(smtp_port), str(http_port)],
                               stdout=subprocess.DEVNULL, stderr=errors)
    sink = MessageSink(smtp_port, http_port, process)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                errors.seek(0)
                error = errors.read().decode(errors="replace")
                raise RuntimeError(f"the message sink exited at start: {error[-2000:]}")
            try:
                sink.stats()
                with socket.create_connection(("127.0.0.1", smtp_port), timeout=1):
                    break
            except (httpx.HTTPError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the message sink did not answer within {START_TIMEOUT:.0f} s"
                    ) from None
                time.sleep(0.1)
        yield sink
    finally:
        stop(process, timeout=10)
        errors.close()


if __name__ == "__main__":
    _main()
