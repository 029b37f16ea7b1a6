"""Sending a built message through SMTP relays.

:class:`Transport` is the interface the delivery worker uses; :class:`SmtpTransport` is the real
one (aiosmtplib). It keeps a small pool of open connections per relay (at most
``max_connections``), upgrades them with STARTTLS or connects over TLS as configured, logs in when
the relay has credentials, and fails over to the next relay when one cannot be reached. A
message is all-or-nothing: if the relay refuses any recipient, the envelope is reset and the
message fails with that recipient's code, so a retry never sends twice to the accepted ones.

aiosmtplib's exceptions are translated here, once, by :func:`smtp_errors`: 4xx, timeouts and lost
connections become :class:`TransientDeliveryError`, 5xx becomes :class:`PermanentDeliveryError`.
Each carries ``smtp_code``, ``relay`` and, in ``details``, the server's ``response``, whether
the failure was the ``network``'s, and ``uncertain`` when the connection failed after the message
data was sent, before the relay answered (the relay may have taken it).

A message is an :class:`EmailMessage`, flattened here for what the relay supports, or the bytes
of a 7-bit message already in wire form (see :mod:`email_sender.mail.wire`), sent as they are.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import aiosmtplib
from aiosmtplib.email import flatten_message

from email_sender.errors import (
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    SendWithdrawn,
    TransientDeliveryError,
)
from email_sender.mail.ratelimit import LocalTokenBucket, RateLimiter
from email_sender.settings import RelaySettings

logger = logging.getLogger(__name__)

QUIT_TIMEOUT = 2.0
# Weight of the newest transaction in a relay's running average of transaction time.
DURATION_WEIGHT = 0.2


@dataclass(frozen=True)
class SendResult:
    relay: str
    code: int
    response: str
    duration_ms: float


# An EmailMessage, or a 7-bit message already in wire form (CRLF line ends).
Message = EmailMessage | bytes


@runtime_checkable
class Transport(Protocol):
    async def send(
        self,
        message: Message,
        sender: str,
        recipients: list[str],
        *,
        ready: Callable[[], bool] | None = None,
    ) -> SendResult: ...

    async def close(self) -> None: ...


# --- error translation -----------------------------------------------------------------------


def _for_code(code: int, text: str, relay: str) -> DeliveryError:
    kind = PermanentDeliveryError if 500 <= code < 600 else TransientDeliveryError
    return kind(f"{code} {text}".strip(), smtp_code=code, relay=relay, response=text, network=False)


@contextmanager
def smtp_errors(relay: str) -> Iterator[None]:
    """Translate aiosmtplib and socket errors raised inside the block into ours."""
    try:
        yield
    except aiosmtplib.SMTPResponseException as exc:
        raise _for_code(exc.code, exc.message, relay) from exc
    except aiosmtplib.SMTPRecipientsRefused as exc:
        first = exc.recipients[0]
        raise _for_code(first.code, first.message, relay) from exc
    except aiosmtplib.SMTPNotSupported as exc:
        # The relay lacks a needed extension (SMTPUTF8): it will never carry this message.
        raise PermanentDeliveryError(exc.message, relay=relay, network=False) from exc
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        raise TransientDeliveryError(message, relay=relay, network=True) from exc


# --- connection pool -------------------------------------------------------------------------


@dataclass(eq=False)
class _Connection:
    client: aiosmtplib.SMTP
    idle_since: float = 0.0
    reused: bool = False
    # The message data went out and no reply came back yet: a failure now leaves it unknown
    # whether the relay took the message.
    awaiting_reply: bool = False


class _StaleConnection(Exception):
    """A reused connection was found closed before the envelope was sent."""


class _RelayPool:
    """Open connections to one relay; at most ``max_connections`` exist at any time."""

    def __init__(
        self,
        settings: RelaySettings,
        *,
        helo_name: str | None,
        tls_context: ssl.SSLContext | None,
        noop_after: float,
    ) -> None:
        url = urlsplit(settings.url)
        secure = url.scheme == "smtps" or settings.tls == "tls"
        self.settings = settings
        self.host = url.hostname or "localhost"
        self.port = url.port or (465 if secure else 25)
        self.name = f"{self.host}:{self.port}"
        self._use_tls = secure
        self._start_tls = {"auto": None, "starttls": True}.get(settings.tls, False)
        self._helo_name = helo_name
        self._tls_context = tls_context
        self._noop_after = noop_after
        self._slots = asyncio.Semaphore(settings.max_connections)
        self._idle: list[_Connection] = []
        self._closed = False
        self.open = 0
        self.opened_total = 0
        # Running average of one SMTP transaction, once one has been timed.
        self.transaction_seconds: float | None = None

    def stats(self) -> dict[str, Any]:
        return {
            "relay": self.name,
            "open": self.open,
            "idle": len(self._idle),
            "opened_total": self.opened_total,
            "max_connections": self.settings.max_connections,
            "transaction_ms": round(self.transaction_seconds * 1000, 3)
            if self.transaction_seconds is not None else None,
        }

    @property
    def busy(self) -> bool:
        """Every connection slot is taken by a send in progress."""
        return self._slots.locked()

    def capacity(self, seconds: float) -> float:
        """How many messages this relay can take in ``seconds``, by rate and by connections."""
        rate = self.settings.rate_per_second
        by_rate = rate * seconds + 1 if rate > 0 else math.inf
        by_connections = (
            self.settings.max_connections * seconds / self.transaction_seconds
            if self.transaction_seconds else math.inf
        )
        return min(by_rate, by_connections)

    def timed(self, seconds: float) -> None:
        if self.transaction_seconds is None:
            self.transaction_seconds = seconds
        else:
            self.transaction_seconds += DURATION_WEIGHT * (seconds - self.transaction_seconds)

    async def checkout(self, *, fresh: bool = False) -> _Connection:
        """A connection for one exchange; holds a slot until :meth:`checkin`."""
        await self._slots.acquire()
        try:
            while self._idle and not fresh:
                connection = self._idle.pop()
                if await self._usable(connection):
                    connection.reused = True
                    return connection
                self._discard(connection)
            return await self._connect()
        except BaseException:
            self._slots.release()
            raise

    def checkin(self, connection: _Connection, *, reusable: bool) -> None:
        if reusable and not self._closed and connection.client.is_connected:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            self._discard(connection)
        self._slots.release()

    async def _usable(self, connection: _Connection) -> bool:
        if not connection.client.is_connected:
            return False
        if time.monotonic() - connection.idle_since < self._noop_after:
            return True
        # Idle long enough for the server to have timed it out without us noticing yet.
        try:
            await connection.client.noop()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            logger.debug("smtp_connection_stale", extra={"relay": self.name})
            return False
        return True

    async def _connect(self) -> _Connection:
        password = self.settings.password
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self.settings.username,
            password=password.get_secret_value() if password is not None else None,
            local_hostname=self._helo_name,
            timeout=self.settings.timeout,
            use_tls=self._use_tls,
            start_tls=False if self._use_tls else self._start_tls,
            tls_context=self._tls_context,
        )
        started = time.perf_counter()
        with smtp_errors(self.name):
            await client.connect()
            if client.is_ehlo_or_helo_needed:
                await _greet(client)
        self.open += 1
        self.opened_total += 1
        logger.debug(
            "smtp_connect",
            extra={"relay": self.name, "duration_ms": _ms_since(started), "tls": _tls(client)},
        )
        return _Connection(client)

    def _discard(self, connection: _Connection) -> None:
        connection.client.close()
        self.open -= 1

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            try:
                await asyncio.wait_for(connection.client.quit(), QUIT_TIMEOUT)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                pass  # closing anyway; a failed QUIT changes nothing
            self._discard(connection)


async def _greet(client: aiosmtplib.SMTP) -> None:
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        await client.helo()


def _tls(client: aiosmtplib.SMTP) -> bool:
    return client.get_transport_info("sslcontext") is not None


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)


# --- the transport ---------------------------------------------------------------------------


class SmtpTransport:
    """Sends through the configured relays in order, with pooled connections and failover."""

    def __init__(
        self,
        relays: Sequence[RelaySettings],
        *,
        helo_name: str | None = None,
        rate_limiter: RateLimiter | None = None,
        tls_context: ssl.SSLContext | None = None,
        noop_after: float = 5.0,
    ) -> None:
        if not relays:
            raise ConfigError("smtp.relays: give at least one relay")
        self._pools = [
            _RelayPool(relay, helo_name=helo_name, tls_context=tls_context, noop_after=noop_after)
            for relay in relays
        ]
        self.rate_limiter: RateLimiter = rate_limiter or LocalTokenBucket(
            {pool.name: pool.settings.rate_per_second for pool in self._pools}
        )

    @property
    def relays(self) -> list[str]:
        return [pool.name for pool in self._pools]

    def stats(self) -> list[dict[str, Any]]:
        """Per relay: open and idle connections, connections opened so far, the limit."""
        return [pool.stats() for pool in self._pools]

    def capacity(self, seconds: float) -> float:
        """How many messages the relays can take in ``seconds`` (the best relay's figure)."""
        return max(pool.capacity(seconds) for pool in self._pools)

    async def send(
        self,
        message: Message,
        sender: str,
        recipients: list[str],
        *,
        ready: Callable[[], bool] | None = None,
    ) -> SendResult:
        """Send ``message`` to ``recipients``; raise Transient/PermanentDeliveryError if not.

        ``ready`` is asked once a connection and a rate token are ours, right before the SMTP
        transaction: if it answers False, nothing is sent and :class:`SendWithdrawn` is raised.
        """
        if not recipients:
            raise PermanentDeliveryError("no recipients", network=False)
        unreachable: list[DeliveryError] = []
        for pool in self._pools:
            try:
                connection = await pool.checkout()
            except DeliveryError as exc:
                logger.warning(
                    "smtp_relay_unavailable",
                    extra={"relay": pool.name, "code": exc.smtp_code, "error": exc.message},
                )
                unreachable.append(exc)
                continue
            try:
                return await self._exchange(pool, connection, message, sender, recipients, ready)
            except _StaleConnection:
                connection = await self._fresh(pool)
                return await self._exchange(
                    pool, connection, message, sender, recipients, ready, take_token=False
                )
        raise _all_unreachable(unreachable)

    async def _fresh(self, pool: _RelayPool) -> _Connection:
        try:
            return await pool.checkout(fresh=True)
        except DeliveryError as exc:
            raise _all_unreachable([exc]) from exc

    async def _exchange(
        self,
        pool: _RelayPool,
        connection: _Connection,
        message: Message,
        sender: str,
        recipients: list[str],
        ready: Callable[[], bool] | None,
        *,
        take_token: bool = True,
    ) -> SendResult:
        reusable = False
        started = time.perf_counter()
        try:
            if take_token:
                await self.rate_limiter.acquire(pool.name)
            if ready is not None and not ready():
                reusable = connection.client.is_connected
                raise SendWithdrawn(relay=pool.name)
            started = time.perf_counter()
            with smtp_errors(pool.name):
                response = await _transaction(connection, message, sender, recipients)
            reusable = True
            pool.timed(time.perf_counter() - started)
        except DeliveryError as exc:
            reusable = connection.client.is_connected
            pool.timed(time.perf_counter() - started)
            if connection.awaiting_reply and exc.details.get("network"):
                # Retrying may deliver a second copy; the worker counts these.
                exc.details["uncertain"] = True
            logger.warning(
                "smtp_send_failed",
                extra={"relay": pool.name, "code": exc.smtp_code, "duration_ms": _ms_since(started),
                       "error": exc.message, "recipients": len(recipients)},
            )
            raise
        finally:
            pool.checkin(connection, reusable=reusable)
        result = SendResult(pool.name, response.code, response.message, _ms_since(started))
        logger.debug(
            "smtp_send",
            extra={"relay": result.relay, "code": result.code, "duration_ms": result.duration_ms,
                   "recipients": len(recipients), "reused": connection.reused},
        )
        return result

    async def check(self) -> str:
        """Reach a relay and NOOP it; return its name, or raise TransientDeliveryError.

        A relay whose every connection is busy sending is reachable: it is not waited for.
        """
        unreachable: list[DeliveryError] = []
        for pool in self._pools:
            if pool.busy:
                return pool.name
            try:
                connection = await pool.checkout()
            except DeliveryError as exc:
                unreachable.append(exc)
                continue
            reusable = False
            try:
                with smtp_errors(pool.name):
                    await connection.client.noop()
                reusable = True
                return pool.name
            except DeliveryError as exc:
                unreachable.append(exc)
            finally:
                pool.checkin(connection, reusable=reusable)
        raise _all_unreachable(unreachable)

    async def close(self) -> None:
        """Say QUIT on every idle connection and close them; connections in use close on return."""
        for pool in self._pools:
            await pool.close()


async def _transaction(
    connection: _Connection, message: Message, sender: str, recipients: list[str]
) -> aiosmtplib.SMTPResponse:
    client = connection.client
    connection.awaiting_reply = False
    utf8 = _needs_smtputf8(message, sender, recipients)
    if utf8 and not client.supports_extension("smtputf8"):
        raise aiosmtplib.SMTPNotSupported("the relay does not support SMTPUTF8 addresses")
    eight_bit = client.supports_extension("8bitmime")
    if isinstance(message, bytes):
        data = message  # 7-bit already: the same bytes for any relay
    else:
        data = flatten_message(message, utf8=utf8, cte_type="8bit" if eight_bit else "7bit")
    options = ["SMTPUTF8"] if utf8 else []
    if eight_bit:
        options.append("BODY=8BITMIME")
    if client.supports_extension("size"):
        options.insert(0, f"SIZE={len(data)}")
    encoding = "utf-8" if utf8 else "ascii"
    try:
        await client.mail(sender, options=options, encoding=encoding)
    except aiosmtplib.SMTPServerDisconnected as exc:
        if connection.reused:
            # Nothing was sent yet, so trying once more on a new connection cannot duplicate.
            raise _StaleConnection from exc
        raise
    try:
        for recipient in recipients:
            await client.rcpt(recipient, encoding=encoding)
        connection.awaiting_reply = True
        return await client.data(data)
    except aiosmtplib.SMTPResponseException as exc:
        if exc.code == 421:
            # 421 means the server is closing the channel; it must not carry another message.
            client.close()
        else:
            await _reset(client)
        raise


def _needs_smtputf8(message: Message, sender: str, recipients: list[str]) -> bool:
    """True when an address (envelope, or in an address header) has a non-ASCII mailbox."""
    if not all(address.isascii() for address in (sender, *recipients)):
        return True
    if isinstance(message, bytes):
        return False  # a message in wire form is ASCII throughout
    # Display names can be encoded words; a non-ASCII addr-spec in a header cannot.
    for name in ("From", "To", "Cc", "Reply-To", "Sender"):
        header = message.get(name)
        for address in getattr(header, "addresses", ()):
            if not address.addr_spec.isascii():
                return True
    return False


async def _reset(client: aiosmtplib.SMTP) -> None:
    """RSET so the connection can carry the next message; close it if that fails."""
    if not client.is_connected:
        return
    try:
        await client.rset()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        client.close()


def _all_unreachable(errors: list[DeliveryError]) -> TransientDeliveryError:
    last = errors[-1] if errors else None
    reasons = "; ".join(f"{error.relay}: {error.message}" for error in errors)
    code = last.smtp_code if last is not None else None
    # A relay's own refusal to talk to us (bad credentials, 554 at connect) says nothing about
    # the message, so the message is only deferred; keep a 4xx code, drop a 5xx one.
    return TransientDeliveryError(
        f"no relay reachable: {reasons}",
        smtp_code=code if code is not None and code < 500 else None,
        relay=last.relay if last is not None else None,
        network=True,
    )
