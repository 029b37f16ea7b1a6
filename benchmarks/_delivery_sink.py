"""An aiosmtpd sink that counts what it accepted: the delivery benchmark checks every side's
delivered count against it.

It is the sink of ``_common.smtp_sink`` (aiosmtpd's SMTP with its defaults, the default event
loop, each message discarded) plus one counter, raised when a DATA command is answered 250:
a client that saw its message accepted has been counted. A second port answers each connection
with the count so far, one line, and closes.

Usage: python benchmarks/_delivery_sink.py --port SMTP_PORT --control-port CONTROL_PORT
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
START_TIMEOUT = 15.0
CONTROL_TIMEOUT = 10.0


class CountingHandler:
    """aiosmtpd handler: accept and discard each message, counting it."""

    def __init__(self) -> None:
        self.messages = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages += 1
        return "250 OK"


class CountingSink:
    """The parent's handle on a running sink: its SMTP port and its count."""

    def __init__(self, port: int, control_port: int) -> None:
        self.port = port
        self.control_port = control_port

    def delivered(self) -> int:
        """Messages the sink has accepted since it started."""
        with socket.create_connection(("127.0.0.1", self.control_port),
                                      timeout=CONTROL_TIMEOUT) as connection:
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = connection.recv(64)
                if not chunk:
                    break
                answer += chunk
        return int(answer.decode().strip())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def counting_sink() -> Iterator[CountingSink]:
    """A counting sink in its own process; stopped (killed if need be) on the way out."""
    sink = CountingSink(_free_port(), _free_port())
    process = subprocess.Popen(
        [sys.executable, str(HERE / "_delivery_sink.py"), "--port", str(sink.port),
         "--control-port", str(sink.control_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not (_listening(sink.port) and _listening(sink.control_port)):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the counting sink did not start on port {sink.port}")
            time.sleep(0.1)
        yield sink
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def _serve(port: int, control_port: int) -> None:
    from aiosmtpd.smtp import SMTP

    handler = CountingHandler()

    async def answer_count(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"{handler.messages}\n".encode())
        await writer.drain()
        writer.close()

    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(partial(SMTP, handler), host="127.0.0.1", port=port)
    control = await asyncio.start_server(answer_count, host="127.0.0.1", port=control_port)
    async with smtp, control:
        await asyncio.Event().wait()  # until terminated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(_serve(args.port, args.control_port))


if __name__ == "__main__":
    main()
