"""The capture sink: an SMTP server that keeps what it receives instead of delivering it.

In the embedded deployment the service sends to this sink (127.0.0.1:1025 by default) so that
mail can be looked at through the API rather than reaching anyone. It runs an aiosmtpd
controller in its own thread, accepts SMTPUTF8, refuses messages over ``max_message_bytes``
(552), and keeps the newest ``max_messages`` messages (at most ``max_stored_bytes`` in all):
a summary per message (``message_id``, ``from``, ``to``, ``subject``, ``received_at``) and, apart
from it, the raw bytes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from email_sender.errors import PortInUse
from email_sender.managers import Health, State
from email_sender.ports import bind
from email_sender.settings import CaptureSinkSettings

logger = logging.getLogger(__name__)


class FreePortController(Controller):
    """An aiosmtpd controller that serves on a socket bound beforehand (port 0 allowed)."""

    def __init__(self, *args: Any, sock: socket.socket, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sock = sock

    async def _bind(self) -> asyncio.AbstractServer:
        server = await self.loop.create_server(
            self._factory_invoker, sock=self._sock, ssl=self.ssl_context
        )
        # The readiness probe connects to self.port, so it must be the bound one.
        self.port = server.sockets[0].getsockname()[1]
        return server

    def _create_server(self) -> Any:
        return self._bind()


@dataclass(frozen=True)
class _Captured:
    summary: dict[str, Any]
    raw: bytes


class _SinkHandler:
    """aiosmtpd handler: keeps each message; runs in the controller's thread.

    Bounded twice, so a test run or a misbehaving sender cannot eat the node's memory: a
    message over ``max_message_bytes`` is refused with 552 (aiosmtpd stops buffering it at the
    same limit), and the oldest messages are dropped once those kept pass ``max_messages`` or
    ``max_stored_bytes``.
    """

    def __init__(self, max_messages: int, max_message_bytes: int, max_stored_bytes: int) -> None:
        self._lock = threading.Lock()
        self._messages: deque[_Captured] = deque()
        self.max_messages = max_messages
        self.max_message_bytes = max_message_bytes
        self.max_stored_bytes = max_stored_bytes
        self.stored_bytes = 0
        self.received_total = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if len(raw) > self.max_message_bytes:
            logger.warning(
                "sink_message_too_big", extra={"size": len(raw), "limit": self.max_message_bytes}
            )
            return f"552 5.3.4 Message over {self.max_message_bytes} bytes"
        headers = BytesHeaderParser(policy=default_policy).parsebytes(raw)
        summary = {
            "message_id": str(headers.get("Message-ID") or f"<{uuid.uuid4().hex}@sink>").strip(),
            "from": envelope.mail_from,
            "mail_from": envelope.mail_from,  # the envelope sender (a VERP address, say)
            "to": list(envelope.rcpt_tos),
            "subject": str(headers.get("Subject") or ""),
            "received_at": datetime.now(UTC).isoformat(),
        }
        with self._lock:
            self._messages.append(_Captured(summary, raw))
            self.stored_bytes += len(raw)
            self.received_total += 1
            while len(self._messages) > 1 and (
                len(self._messages) > self.max_messages
                or self.stored_bytes > self.max_stored_bytes
            ):
                self.stored_bytes -= len(self._messages.popleft().raw)
        logger.debug("sink_received", extra={"message_id": summary["message_id"]})
        return "250 2.0.0 OK: captured"

    def snapshot(self) -> list[_Captured]:
        with self._lock:
            return list(self._messages)

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)

    def clear(self) -> int:
        with self._lock:
            dropped = len(self._messages)
            self._messages.clear()
            self.stored_bytes = 0
            return dropped


class CaptureSink:
    """Manager ``smtp_sink``: the capture SMTP server of the embedded deployment."""

    name = "smtp_sink"
    depends_on: tuple[str, ...] = ()

    def __init__(self, settings: CaptureSinkSettings) -> None:
        self.settings = settings
        self._handler = _SinkHandler(
            settings.max_messages, settings.max_message_bytes, settings.max_stored_bytes
        )
        self._controller: FreePortController | None = None
        self._socket: socket.socket | None = None
        self._last_error: str | None = None

    @property
    def host(self) -> str:
        return self.settings.host

    @property
    def port(self) -> int:
        """The bound port (the configured one, or the free one picked for port 0)."""
        if self._controller is not None:
            return int(self._controller.port)
        if self._socket is not None and self._socket.fileno() != -1:
            return int(self._socket.getsockname()[1])
        return self.settings.port

    @property
    def count(self) -> int:
        return len(self._handler)

    def reserve(self) -> None:
        """Bind the port now, so that a taken one fails the node's start at once (``PortInUse``
        names the holder, as for the API port) instead of leaving a failed manager behind."""
        if self._socket is None or self._socket.fileno() == -1:
            self._socket = bind(self.settings.host, self.settings.port, what="capture sink port")

    async def start(self) -> None:
        try:
            self.reserve()
        except PortInUse as exc:
            self._last_error = str(exc)
            raise
        assert self._socket is not None
        sock, self._socket = self._socket, None
        controller = FreePortController(
            self._handler,
            hostname=self.settings.host,
            port=sock.getsockname()[1],
            enable_SMTPUTF8=True,
            data_size_limit=self.settings.max_message_bytes,
            sock=sock,
        )
        try:
            await asyncio.to_thread(controller.start)
        except BaseException:
            sock.close()
            raise
        self._controller = controller
        logger.info("sink_started", extra={"host": self.host, "port": self.port})

    async def stop(self) -> None:
        reserved, self._socket = self._socket, None
        if reserved is not None:
            reserved.close()
        controller, self._controller = self._controller, None
        if controller is not None:
            await asyncio.to_thread(controller.stop)
            logger.info("sink_stopped", extra={"host": self.host})

    async def health(self) -> Health:
        controller = self._controller
        if controller is None:
            return Health(State.STOPPED, "not started", self._last_error)
        server = controller.server
        if server is None or not server.is_serving():
            return Health(State.FAILED, "not serving", self._last_error)
        return Health(State.RUNNING, f"listening on {self.host}:{self.port}")

    def info(self) -> dict[str, Any]:
        return {
            "backend": "aiosmtpd",
            "host": self.host,
            "port": self.port,
            "count": self.count,
            "received_total": self._handler.received_total,
            "max_messages": self.settings.max_messages,
            "stored_bytes": self._handler.stored_bytes,
            "max_stored_bytes": self.settings.max_stored_bytes,
            "max_message_bytes": self.settings.max_message_bytes,
        }

    def messages(self, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """Summaries, newest first."""
        newest_first = list(reversed(self._handler.snapshot()))
        return [dict(item.summary) for item in newest_first[offset : offset + limit]]

    def raw(self, message_id: str) -> bytes | None:
        """The bytes received for ``message_id`` (the newest, if it arrived more than once)."""
        for item in reversed(self._handler.snapshot()):
            if item.summary["message_id"] == message_id:
                return item.raw
        return None

    def clear(self) -> int:
        """Forget every captured message; return how many there were."""
        return self._handler.clear()
