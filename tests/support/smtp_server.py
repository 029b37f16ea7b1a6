"""A real, controllable SMTP server for integration tests.

It listens on a free port in its own thread (aiosmtpd) and answers every DATA according to
``mode`` ("250", "421", "451", "550" or "drop" to close the socket mid-transaction), after
``data_delay`` seconds (a slow relay), unless a script was given for that Message-ID (e.g.
``[451, 250]``: first attempt deferred, then accepted). It counts TCP connections, DATA
attempts and accepted messages per Message-ID, so a test can assert that each email was
delivered exactly once. AUTH (PLAIN/LOGIN) and STARTTLS are optional.

    server = SmtpTestServer()
    server.start()
    server.mode = "451"
    server.script("<id@example.com>", [451, 250])
    server.refuse_recipients.add("gone@example.com")
    ...
    assert server.accepted_count("<id@example.com>") == 1
    server.stop()
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import weakref
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from email_sender.mail.sink import FreePortController
from email_sender.ports import bind

MODES = ("250", "421", "451", "550", "drop")
Answer = int | str

_REPLIES = {
    250: "250 2.0.0 OK: queued",
    421: "421 4.3.2 Service shutting down",
    451: "451 4.3.0 Temporary failure, try again later",
    550: "550 5.1.1 Mailbox unavailable",
}


@dataclass(frozen=True)
class ReceivedMessage:
    message_id: str
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    smtputf8: bool


class _Handler:
    """aiosmtpd hooks; every counter is guarded by the server's lock."""

    def __init__(self, server: SmtpTestServer) -> None:
        self.server = server

    async def handle_RCPT(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.server._refuses(address):
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message_id = str(BytesHeaderParser(policy=default_policy).parsebytes(raw)
                         .get("Message-ID", "")).strip()
        if self.server.data_delay:
            # A slow relay: the reply to DATA comes late.
            await asyncio.sleep(self.server.data_delay)
        answer = self.server._next_answer(message_id)
        if answer == "drop":
            assert smtp.transport is not None
            # abort() discards the socket at once: the client sees the connection vanish
            # before any reply to its DATA.
            smtp.transport.abort()
            return "451 4.3.0 dropped"
        code = int(answer)
        if code == 250:
            self.server._accept(ReceivedMessage(
                message_id, envelope.mail_from or "", list(envelope.rcpt_tos), raw,
                tls=session.ssl is not None, smtputf8=envelope.smtp_utf8,
            ))
        return _REPLIES.get(code, f"{code} scripted answer")


class _Authenticator:
    def __init__(self, username: str, password: str, server: SmtpTestServer) -> None:
        self._expected = (username.encode(), password.encode())
        self._server = server

    def __call__(
        self, smtp: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == self._expected
        with self._server.lock:
            self._server.auth_attempts.append((mechanism, ok))
        return AuthResult(success=ok, handled=False)


class _ServerController(FreePortController):
    """Counts every client connection, apart from the controller's own readiness probe."""

    def __init__(self, owner: SmtpTestServer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.owner = owner
        self.probed = False

    def factory(self) -> SMTP:
        smtp = _ScriptedSMTP(self.owner, self.handler, **self.SMTP_kwargs)
        if self.probed:
            with self.owner.lock:
                self.owner.connections += 1
                self.owner._live.add(smtp)
        return smtp


class _ScriptedSMTP(SMTP):
    def __init__(self, owner: SmtpTestServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.owner.greeting_code != 220 and self.owner.controller_probed:
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(f"{self.owner.greeting_code} 4.3.2 Not now\r\n".encode())
            transport.close()
            return
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self.session is None:  # refused at the greeting: no session was ever made
            return
        super().connection_lost(error)


class SmtpTestServer:
    """A threaded SMTP server whose answers a test controls. See the module docstring."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        auth: tuple[str, str] | None = None,
        tls_context: ssl.SSLContext | None = None,
        smtputf8: bool = True,
    ) -> None:
        self.host = host
        self.lock = threading.Lock()
        self._mode = "250"
        self.greeting_code = 220
        self.data_delay = 0.0
        self.refuse_recipients: set[str] = set()
        self._scripts: dict[str, deque[Answer]] = {}
        self.connections = 0
        self.data_attempts = 0
        self.attempts_by_id: defaultdict[str, int] = defaultdict(int)
        self.received: list[ReceivedMessage] = []
        self.auth_attempts: list[tuple[str, bool]] = []
        self._live: weakref.WeakSet[SMTP] = weakref.WeakSet()
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
        if auth is not None:
            kwargs["authenticator"] = _Authenticator(*auth, server=self)
            kwargs["auth_require_tls"] = tls_context is not None
        if tls_context is not None:
            kwargs["tls_context"] = tls_context
        self._controller = _ServerController(
            self, handler=_Handler(self), hostname=host, sock=bind(host, 0), **kwargs
        )

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> SmtpTestServer:
        self._controller.start()
        self._controller.probed = True
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def controller_probed(self) -> bool:
        return self._controller.probed

    @property
    def port(self) -> int:
        return int(self._controller.port)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    @property
    def relay_name(self) -> str:
        """The name the transport gives this relay in results and errors."""
        return f"{self.host}:{self.port}"

    # --- control -------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        with self.lock:
            return self._mode

    @mode.setter
    def mode(self, value: str | int) -> None:
        value = str(value)
        if value not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        with self.lock:
            self._mode = value

    def script(self, message_id: str, answers: Iterable[Answer]) -> None:
        """Answer DATA for ``message_id`` with these, in order; then fall back to ``mode``."""
        answers = list(answers)
        for answer in answers:
            if str(answer) not in MODES:
                raise ValueError(f"answer must be one of {MODES}")
        with self.lock:
            self._scripts[message_id] = deque(answers)

    def reset(self) -> None:
        """Forget counters, scripts and received messages; back to mode 250."""
        with self.lock:
            self._mode = "250"
            self.greeting_code = 220
            self.data_delay = 0.0
            self._scripts.clear()
            self.refuse_recipients.clear()
            self.connections = 0
            self.data_attempts = 0
            self.attempts_by_id.clear()
            self.received.clear()
            self.auth_attempts.clear()

    def disconnect_all(self) -> None:
        """Close every open client connection from the server side, as an idle timeout does."""
        with self.lock:
            live = list(self._live)
        done = threading.Event()

        def close_all() -> None:
            for smtp in live:
                if smtp.transport is not None:
                    smtp.transport.close()
            done.set()

        self._controller.loop.call_soon_threadsafe(close_all)
        done.wait(5.0)

    # --- observations --------------------------------------------------------------------

    def accepted_count(self, message_id: str) -> int:
        with self.lock:
            return sum(1 for item in self.received if item.message_id == message_id)

    def accepted_ids(self) -> dict[str, int]:
        """Accepted messages per Message-ID; a value over 1 is a duplicate delivery."""
        counts: dict[str, int] = defaultdict(int)
        with self.lock:
            for item in self.received:
                counts[item.message_id] += 1
        return dict(counts)

    def messages(self) -> list[ReceivedMessage]:
        with self.lock:
            return list(self.received)

    # --- used by the handler (server thread) ---------------------------------------------

    def _next_answer(self, message_id: str) -> Answer:
        with self.lock:
            self.data_attempts += 1
            self.attempts_by_id[message_id] += 1
            script = self._scripts.get(message_id)
            if script:
                return script.popleft()
            return self._mode

    def _refuses(self, address: str) -> bool:
        with self.lock:
            return address.lower() in {item.lower() for item in self.refuse_recipients}

    def _accept(self, message: ReceivedMessage) -> None:
        with self.lock:
            self.received.append(message)
