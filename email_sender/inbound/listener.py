"""The inbound SMTP listener: the door by which mail sent to our own domains comes in.

Bounces to the VERP return path and replies to the addresses the service sends from arrive here
over SMTP. The listener accepts recipients only in the domains (or at the full addresses) it is
configured for, so it can never be used as a relay, and hands each message, with its envelope, to
one ``deliver`` call that stores it. It answers 250 only once ``deliver`` has returned: nothing
acknowledged can be lost. A refusal for good (``ValidationError``) is a 554, any other failure a
451 that makes the sender try again later.

Unlike the capture sink, the server runs on the service's own event loop rather than in a thread
of its own: ``deliver`` writes to the database through connections that belong to that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, Session
from aiosmtpd.smtp import Envelope as SmtpEnvelope

from email_sender.errors import EmailSenderError, PortInUse, ValidationError
from email_sender.inbound.receiver import Envelope
from email_sender.managers import Health, State
from email_sender.ports import bind
from email_sender.settings import InboundSmtpSettings

logger = logging.getLogger(__name__)

# RFC 5321 4.5.3.1.8 asks a server to take at least 100 recipients per message.
MAX_RECIPIENTS = 100
# Client connections served at once; each may hold a message up to max_message_bytes. More are
# answered 421 and closed (the sender tries again later).
MAX_SESSIONS = 50
# What an idle client is given between two commands (aiosmtpd's own default).
COMMAND_TIMEOUT_SECONDS = 300.0
# How long stop() lets messages being stored finish before it answers 421 to everyone.
DRAIN_SECONDS = 10.0
# How long stop() waits for the cut-off sessions to wind down.
CLOSE_SECONDS = 2.0
# Keeps a refusal reason to one short line (it goes back to the sending server verbatim).
MAX_REASON_CHARS = 200

RELAYING_DENIED = "550 5.7.1 relaying denied"
TOO_MANY_RECIPIENTS = "452 4.5.3 too many recipients"
SHUTTING_DOWN = "421 4.3.2 service shutting down, try again later"
TOO_MANY_SESSIONS = "421 4.7.0 too many connections, try again later"
TRY_AGAIN_LATER = "451 4.3.0 temporary failure, try again later"
STORED = "250 2.0.0 OK: stored"

COUNTERS = (
    "accepted", "refused_relay", "refused_size", "refused_other", "temp_failed", "refused_busy"
)


Deliver = Callable[[bytes, Envelope], Awaitable[object]]


@dataclass(frozen=True)
class AcceptedRecipients:
    """The domains and full addresses mail is accepted for, compared case-insensitively."""

    domains: frozenset[str]
    addresses: frozenset[str]

    @classmethod
    def from_settings(cls, entries: list[str]) -> AcceptedRecipients:
        domains: set[str] = set()
        addresses: set[str] = set()
        for entry in entries:
            cleaned = entry.strip().lower()
            local, at, domain = cleaned.rpartition("@")
            if at and local:
                addresses.add(cleaned)
            elif domain:
                # "example.org" and "@example.org" both name a whole domain.
                domains.add(domain.rstrip("."))
        return cls(frozenset(domains), frozenset(addresses))

    def __bool__(self) -> bool:
        return bool(self.domains or self.addresses)

    def accepts(self, address: str) -> bool:
        cleaned = address.strip().lower()
        local, at, domain = cleaned.rpartition("@")
        if not (at and local and domain):
            return False
        return cleaned in self.addresses or domain.rstrip(".") in self.domains


def one_line(reason: str) -> str:
    """``reason`` as a single, bounded reply line that cannot break the SMTP exchange."""
    flat = " ".join(reason.split())
    return flat[:MAX_REASON_CHARS] or "message refused"


class _Handler:
    """aiosmtpd hooks, run on the service's loop; keeps the counters and the open sessions."""

    def __init__(
        self,
        deliver: Deliver,
        accepted: AcceptedRecipients,
        max_recipients: int,
        counters: dict[str, int],
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self.deliver = deliver
        self.accepted = accepted
        self.max_recipients = max_recipients
        self.max_sessions = max_sessions
        self.counters = counters
        self.sessions: set[_SmtpSession] = set()
        self.closing = False
        self.storing = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: SmtpEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self.closing:
            return SHUTTING_DOWN
        if len(envelope.rcpt_tos) >= self.max_recipients:
            self.counters["refused_other"] += 1
            return TOO_MANY_RECIPIENTS
        if not self.accepted.accepts(address):
            self.counters["refused_relay"] += 1
            logger.info(
                "inbound_smtp_relay_refused", extra={"rcpt": address, "peer": _peer(session)}
            )
            return RELAYING_DENIED
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        if self.closing:
            return SHUTTING_DOWN
        raw = envelope.original_content or b""
        # aiosmtpd keeps the null reverse path of a bounce as the literal "<>".
        mail_from = envelope.mail_from or ""
        received = Envelope(
            via="smtp",
            mail_from="" if mail_from == "<>" else mail_from,
            rcpt_to=tuple(envelope.rcpt_tos),
        )
        self.storing += 1
        self.idle.clear()
        try:
            return await self._store(raw, received, session)
        finally:
            self.storing -= 1
            if self.storing == 0:
                self.idle.set()

    async def _store(self, raw: bytes, envelope: Envelope, session: Session) -> str:
        fields = {"size": len(raw), "rcpt_count": len(envelope.rcpt_to), "peer": _peer(session)}
        try:
            await self.deliver(raw, envelope)
        except ValidationError as exc:
            self.counters["refused_other"] += 1
            logger.info("inbound_smtp_refused", extra={**fields, "reason": exc.reason})
            return f"554 5.6.0 {one_line(exc.reason)}"
        except EmailSenderError as exc:
            self.counters["temp_failed"] += 1
            logger.warning("inbound_smtp_deferred", extra={**fields, "error": str(exc)})
            return TRY_AGAIN_LATER
        except Exception:
            # A bug must not take the door down: the sender keeps the message and retries.
            self.counters["temp_failed"] += 1
            logger.exception("inbound_smtp_deliver_crashed", extra=fields)
            return TRY_AGAIN_LATER
        self.counters["accepted"] += 1
        logger.debug("inbound_smtp_accepted", extra=fields)
        return STORED


class _SmtpSession(SMTP):
    """One client connection; registers itself so that stop() can answer 421 and close it."""

    event_handler: _Handler

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        handler = self.event_handler
        super().connection_made(transport)
        if len(handler.sessions) >= handler.max_sessions:
            handler.counters["refused_busy"] += 1
            self.hang_up(TOO_MANY_SESSIONS)
            return
        handler.sessions.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.event_handler.sessions.discard(self)
        super().connection_lost(error)

    async def push(self, status: Any) -> None:
        # aiosmtpd refuses an oversize message itself (SIZE= at MAIL, or DATA past the limit,
        # both 552) without calling a hook: its reply is the one place to count it.
        text = status.decode("ascii", "replace") if isinstance(status, bytes) else str(status)
        if text.startswith("552"):
            self.event_handler.counters["refused_size"] += 1
        await super().push(status)

    def hang_up(self, reply: str = SHUTTING_DOWN) -> asyncio.Task[None] | None:
        """Answer ``reply`` (a 421) and close; the task serving this session, to wait for it."""
        task = self._handler_coroutine
        transport = self.transport
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
            transport.write(reply.encode("ascii") + b"\r\n")
            transport.close()
        return task


def _peer(session: Session) -> str:
    peer = session.peer
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


class InboundListener:
    """The SMTP server for mail sent to the domains we own (part of the ``inbound`` manager)."""

    name = "inbound_smtp"
    depends_on: tuple[str, ...] = ()

    def __init__(
        self,
        settings: InboundSmtpSettings,
        deliver: Deliver,
        *,
        timeout: float = COMMAND_TIMEOUT_SECONDS,
        drain_seconds: float = DRAIN_SECONDS,
        max_recipients: int = MAX_RECIPIENTS,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self.settings = settings
        self.timeout = timeout
        self.drain_seconds = drain_seconds
        self._accepted = AcceptedRecipients.from_settings(settings.domains)
        self._deliver = deliver
        self._max_recipients = max_recipients
        self._max_sessions = max_sessions
        self._handler: _Handler | None = None
        self._server: asyncio.Server | None = None
        self._socket: socket.socket | None = None
        self._last_error: str | None = None
        # Kept across restarts of the listener, like any counter of a long-lived part.
        self._counters = dict.fromkeys(COUNTERS, 0)

    @property
    def host(self) -> str:
        return self.settings.host

    @property
    def port(self) -> int:
        """The bound port (the configured one, or the free one picked for port 0)."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        if self._socket is not None and self._socket.fileno() != -1:
            return int(self._socket.getsockname()[1])
        return self.settings.port

    def reserve(self) -> None:
        """Bind the port now, so that a taken one fails the node's start at once (``PortInUse``
        names the holder) instead of leaving a failed manager behind."""
        if self._socket is None or self._socket.fileno() == -1:
            self._socket = bind(self.settings.host, self.settings.port, what="inbound SMTP port")

    async def start(self) -> None:
        if self._server is not None:
            return
        try:
            self.reserve()
        except PortInUse as exc:
            self._last_error = str(exc)
            raise
        assert self._socket is not None
        sock, self._socket = self._socket, None
        # Built per start: a restarted listener must not inherit the last one's stop state.
        handler = _Handler(
            self._deliver, self._accepted, self._max_recipients, self._counters,
            self._max_sessions,
        )
        loop = asyncio.get_running_loop()
        greeting_name = self._greeting_name()
        try:
            self._server = await loop.create_server(
                lambda: _SmtpSession(
                    handler,
                    hostname=greeting_name,
                    data_size_limit=self.settings.max_message_bytes,
                    enable_SMTPUTF8=True,
                    decode_data=False,
                    timeout=self.timeout,
                    loop=loop,
                ),
                sock=sock,
            )
        except BaseException:
            sock.close()
            raise
        self._handler = handler
        self._last_error = None
        if not self._accepted:
            logger.warning(
                "inbound_smtp_no_domains",
                extra={"host": self.host, "port": self.port, "effect": "every recipient refused"},
            )
        logger.info(
            "inbound_smtp_started",
            extra={"host": self.host, "port": self.port, "domains": list(self.settings.domains)},
        )

    async def stop(self) -> None:
        """Stop taking connections, let messages being stored finish (up to ``drain_seconds``),
        then answer 421 to every session left and close it."""
        reserved, self._socket = self._socket, None
        if reserved is not None:
            reserved.close()
        server, self._server = self._server, None
        handler = self._handler
        if server is None or handler is None:
            return
        handler.closing = True
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(handler.idle.wait(), self.drain_seconds)
        cut_off = handler.storing
        # A session whose message was just stored has its 250 written already: the hook
        # returns and aiosmtpd writes the reply in the same step, before this one resumes.
        tasks = [task for session in list(handler.sessions) if (task := session.hang_up())]
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_SECONDS)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), CLOSE_SECONDS)
        logger.info(
            "inbound_smtp_stopped",
            extra={"host": self.host, "sessions_closed": len(tasks), "stores_cut_off": cut_off},
        )

    async def health(self) -> Health:
        server = self._server
        if server is None:
            return Health(State.STOPPED, "not started", self._last_error)
        if not server.is_serving():
            return Health(State.FAILED, "not serving", self._last_error)
        detail = f"listening on {self.host}:{self.port}"
        if not self._accepted:
            detail += "; no domains configured, every recipient is refused"
        return Health(State.RUNNING, detail)

    def info(self) -> dict[str, Any]:
        handler = self._handler
        return {
            "backend": "aiosmtpd",
            "host": self.host,
            "port": self.port,
            "domains": list(self.settings.domains),
            "max_message_bytes": self.settings.max_message_bytes,
            "sessions": len(handler.sessions) if handler is not None and self._server else 0,
            **self._counters,
        }

    def _greeting_name(self) -> str:
        """The name in the 220 greeting: our first domain, else the listening address (never a
        reverse DNS lookup per connection, which aiosmtpd would do without a name)."""
        if self._accepted.domains:
            return sorted(self._accepted.domains)[0]
        return self.host
