"""The IMAP poller: an existing mailbox read over IMAP, every new message handed to the receiver.

Each folder is opened read-only (EXAMINE): the poller never changes a flag or deletes anything,
so the mailbox stays the owner's. Where it stands in a folder (UIDVALIDITY and the last UID
handed over) is saved in the database after every message (``imap_state``), so a restart reads
each message once; the one message in flight at a crash may be read twice, and the receiver
stores it once. After a round the poller IDLEs on the first folder when the server offers it
(a new message starts a round at once), or sleeps ``inbound.imap.interval``.

One node at a time reads a mailbox: the poller holds a lease on it in SQL (renewed every round
and while a long round goes on); the pollers of other nodes stand by, check every interval, and
take over once it is released (at stop) or has run out (a crash).

The session itself lives in :mod:`email_sender.inbound.imap_client`: it blocks, so every call
runs in a worker thread, bounded by the socket timeout (``inbound.imap.timeout``), and its
errors reach this module already as ours (MailboxUnavailable, FolderUnavailable).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from email_sender.db.engine import Database
from email_sender.db.leases import Leases
from email_sender.errors import (
    ConfigError,
    EmailSenderError,
    FolderUnavailable,
    MailboxUnavailable,
    ValidationError,
)
from email_sender.inbound.imap_client import ImapConnection, parse_imap_url
from email_sender.inbound.imap_state import ImapPositions, Position, mailbox_key
from email_sender.inbound.receiver import Envelope
from email_sender.settings import InboundImapSettings

logger = logging.getLogger(__name__)

Deliver = Callable[[bytes, Envelope], Awaitable[object]]

DEFAULT_MAX_MESSAGE_BYTES = 25 * 1024 * 1024
# UIDs whose sizes are asked in one FETCH, and the bytes of bodies downloaded in one FETCH (at
# least one message): memory stays bounded however large the backlog.
UID_BATCH = 50
BODY_BATCH_BYTES = 32 * 1024 * 1024
# RFC 2177: a client re-issues IDLE at least every 29 minutes or the server may drop it.
IDLE_MAX_SECONDS = 29 * 60.0
STOP_SECONDS = 5.0
LOGOUT_SECONDS = 1.0
BACKOFF_FIRST_SECONDS = 1.0
# Seconds a mailbox lease lasts beyond two intervals (a round plus an IDLE or a sleep).
LEASE_MARGIN_SECONDS = 30.0


def _byte_bounded(uids: Sequence[int], sizes: dict[int, int], budget: int) -> Iterator[list[int]]:
    """Consecutive groups of ``uids`` whose sizes add up to at most ``budget`` (or one UID)."""
    group: list[int] = []
    total = 0
    for uid in uids:
        size = sizes.get(uid, 0)
        if group and total + size > budget:
            yield group
            group, total = [], 0
        group.append(uid)
        total += size
    if group:
        yield group


class ImapPoller:
    """Reads ``settings.folders`` of one mailbox; hands each new message to ``deliver``.

    ``deliver`` raising ValidationError refuses the message for good (it is skipped and counted);
    any other EmailSenderError ends the round with the position kept, to be retried.
    """

    def __init__(
        self,
        settings: InboundImapSettings,
        db: Database,
        deliver: Deliver,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        owner: str | None = None,
    ) -> None:
        if not settings.url:
            raise ConfigError("inbound.imap.url is required to poll a mailbox")
        self.settings = settings
        self.address = parse_imap_url(settings.url.get_secret_value())
        username = settings.username or self.address.username
        password = (
            settings.password.get_secret_value() if settings.password else self.address.password
        )
        if not username or password is None:
            raise ConfigError("inbound.imap.username and inbound.imap.password are required")
        self.username = username
        self._password = password
        self.folders = list(settings.folders) or ["INBOX"]
        self.positions = ImapPositions(db)
        self.leases = Leases(db)
        self.lease_key = f"{username}@{self.address.host}"
        self.owner = owner or uuid.uuid4().hex
        self.holds_mailbox = False
        self._lease_renewed_at = 0.0
        self.deliver = deliver
        self.max_message_bytes = max_message_bytes
        self.counters = {"fetched": 0, "delivered": 0, "refused": 0, "errors": 0}
        self.last_poll: float | None = None
        self.idle_supported: bool | None = None  # known once connected
        self._last_error: str | None = None
        self._connection: ImapConnection | None = None
        self._lock = asyncio.Lock()  # one user of the connection at a time
        self._task: asyncio.Task[None] | None = None
        self._stop_requested = threading.Event()  # seen by an IDLE in its worker thread
        self._poll_requested = threading.Event()
        self._stopped = asyncio.Event()
        self._idle_position: int | None = None  # last UID of the first folder, when it was read

    @property
    def last_error(self) -> str | None:
        return self._last_error

    async def start(self) -> None:
        """Start polling in the background; connecting happens there, so this never waits."""
        if self._task is not None:
            return
        self._stop_requested.clear()
        self._stopped.clear()
        self._task = asyncio.create_task(self._run(), name="imap-poller")

    async def stop(self) -> None:
        """End the loop (an IDLE notices within half a second) and log out, in STOP_SECONDS."""
        self._stop_requested.set()
        self._stopped.set()
        task, self._task = self._task, None
        if task is not None:
            _, pending = await asyncio.wait({task}, timeout=STOP_SECONDS - 2 * LOGOUT_SECONDS)
            if pending:
                task.cancel()
                await asyncio.wait({task}, timeout=LOGOUT_SECONDS)
        # The IMAP session is not thread-safe: a LOGOUT only when no worker thread may still be
        # using it, else the socket is just closed.
        await self._disconnect(polite=task is None or task.done())
        if self.holds_mailbox:
            self.holds_mailbox = False
            # Another node takes over at its next look instead of waiting for the lease to end.
            with contextlib.suppress(TimeoutError, EmailSenderError):
                await asyncio.wait_for(
                    self.leases.release(self.lease_key, self.owner), LOGOUT_SECONDS
                )

    @property
    def lease_seconds(self) -> float:
        return 2 * min(self.settings.interval, IDLE_MAX_SECONDS) + LEASE_MARGIN_SECONDS

    async def poll_once(self) -> int:
        """One round over every folder now, lease or not; answers how many were delivered."""
        self._poll_requested.set()  # an IDLE holding the connection gives it up
        async with self._lock:
            self._poll_requested.clear()
            return await self._round()

    def info(self) -> dict[str, Any]:
        return {
            "url": self.address.safe_url,
            "username": self.username,
            "folders": list(self.folders),
            "connected": self._connection is not None,
            "holds_mailbox": self.holds_mailbox,
            "idle_supported": self.idle_supported,
            "last_poll": self.last_poll,
            "last_error": self._last_error,
            **self.counters,
        }

    async def _run(self) -> None:
        backoff = BACKOFF_FIRST_SECONDS
        while not self._stop_requested.is_set():
            if not await self._hold_mailbox():
                await self._sleep(self.settings.interval)
                continue
            try:
                async with self._lock:
                    await self._round()
                    idled = await self._idle()
                backoff = BACKOFF_FIRST_SECONDS
                if not idled:
                    await self._sleep(self.settings.interval)
            except EmailSenderError:
                # Logged and counted by the round; the connection was dropped if it broke.
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.settings.interval)
            except Exception as exc:
                # Not ours (a bug in a part called): keep the mailbox read rather than end here.
                self._failed(str(exc) or type(exc).__name__, event="imap_loop_failed")
                logger.exception("imap_loop_failed")
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.settings.interval)

    async def _round(self) -> int:
        delivered = 0
        folder_failed = False
        try:
            connection = await self._connected()
            # The first folder last: it is the one left open for IDLE.
            for folder in [*self.folders[1:], self.folders[0]]:
                try:
                    delivered += await self._poll_folder(connection, folder)
                except FolderUnavailable as exc:
                    folder_failed = True
                    self._failed(exc.message, event="imap_folder_failed", folder=folder)
        except MailboxUnavailable as exc:
            self._failed(exc.message, event="imap_connection_failed")
            await self._disconnect(polite=False)
            raise
        except EmailSenderError as exc:
            self._failed(exc.message, event="imap_round_failed")
            raise
        except asyncio.CancelledError:
            # A command may be half-way through in its thread: the session cannot be trusted.
            await self._disconnect(polite=False)
            raise
        self.last_poll = time.time()
        if not folder_failed:
            self._last_error = None
        return delivered

    async def _connected(self) -> ImapConnection:
        if self._connection is None:
            self._idle_position = None
            self._connection = await asyncio.to_thread(
                ImapConnection.open,
                self.address,
                self.username,
                self._password,
                self.settings.timeout,
            )
            self.idle_supported = self._connection.idle_supported
            logger.info(
                "imap_connected",
                extra={"url": self.address.safe_url, "idle": self.idle_supported},
            )
        return self._connection

    async def _poll_folder(self, connection: ImapConnection, folder: str) -> int:
        if folder == self.folders[0]:
            self._idle_position = None
        key = mailbox_key(self.username, self.address.host, folder)
        uidvalidity = await asyncio.to_thread(connection.examine, folder)
        position = await self.positions.get(key)
        if position is None or position.uidvalidity != uidvalidity:
            if position is not None:
                # The folder was deleted and made again: its UIDs start over.
                logger.warning(
                    "imap_uidvalidity_changed",
                    extra={"mailbox": key, "was": position.uidvalidity, "now": uidvalidity},
                )
            position = Position(uidvalidity, 0)
            await self.positions.save(key, position)
        uids = await asyncio.to_thread(connection.new_uids, position.last_uid)
        delivered = 0
        for start in range(0, len(uids), UID_BATCH):
            batch = uids[start : start + UID_BATCH]
            sizes = await asyncio.to_thread(connection.sizes, batch)
            wanted = {uid: size for uid, size in sizes.items() if size <= self.max_message_bytes}
            for group in _byte_bounded(batch, wanted, BODY_BATCH_BYTES):
                to_fetch = [uid for uid in group if uid in wanted]
                bodies = await asyncio.to_thread(connection.bodies, to_fetch) if to_fetch else {}
                self.counters["fetched"] += len(bodies)
                for uid in group:
                    delivered += await self._hand_over(key, uid, sizes.get(uid), bodies.get(uid))
                    position = Position(uidvalidity, uid)
                    await self.positions.save(key, position)
                await self._keep_mailbox()
        if folder == self.folders[0]:
            self._idle_position = position.last_uid
        return delivered

    async def _hold_mailbox(self) -> bool:
        """Take or renew the lease on the mailbox; False while another node reads it."""
        try:
            held = await self.leases.hold(self.lease_key, self.owner, self.lease_seconds)
        except EmailSenderError as exc:
            self._failed(exc.message, event="imap_lease_failed")
            held = False
        if held != self.holds_mailbox:
            logger.info(
                "imap_mailbox_held" if held else "imap_mailbox_standby",
                extra={"url": self.address.safe_url, "owner": self.owner},
            )
        self.holds_mailbox = held
        if held:
            self._lease_renewed_at = time.monotonic()
        else:
            await self._disconnect(polite=True)  # a node standing by keeps no session open
        return held

    async def _keep_mailbox(self) -> None:
        """Renew the lease during a long round; end the round if another node has it now."""
        if not self.holds_mailbox:
            return  # a round asked for by poll_once, outside the lease
        if time.monotonic() - self._lease_renewed_at < self.lease_seconds / 3:
            return
        if not await self._hold_mailbox():
            raise MailboxUnavailable(f"another node now reads {self.lease_key}")

    async def _hand_over(self, key: str, uid: int, size: int | None, raw: bytes | None) -> int:
        """Deliver one message: 1 when delivered, 0 when refused for good or gone."""
        if size is not None and size > self.max_message_bytes:
            self.counters["refused"] += 1
            logger.warning(
                "imap_message_too_large",
                extra={"mailbox": key, "uid": uid, "size": size, "limit": self.max_message_bytes},
            )
            return 0
        if raw is None:
            connection = self._connection
            if connection is not None and uid in await asyncio.to_thread(
                connection.new_uids, uid - 1
            ):
                # Listed but not sent: keep the position and ask again next round.
                raise MailboxUnavailable(f"the server did not send UID {uid} of {key}")
            # Expunged between the search and the fetch: nothing to read, and UIDs never return.
            logger.info("imap_message_gone", extra={"mailbox": key, "uid": uid})
            return 0
        try:
            await self.deliver(raw, Envelope(via="imap"))
        except ValidationError as exc:
            self.counters["refused"] += 1
            logger.warning(
                "imap_message_refused", extra={"mailbox": key, "uid": uid, "reason": exc.message}
            )
            return 0
        self.counters["delivered"] += 1
        logger.debug("imap_message_delivered", extra={"mailbox": key, "uid": uid})
        return 1

    async def _idle(self) -> bool:
        """Wait for news in IDLE when the server offers it and the first folder is open;
        False when the caller should sleep instead."""
        connection = self._connection
        if connection is None or not connection.idle_supported or self._idle_position is None:
            return False
        if self._stop_requested.is_set() or self._poll_requested.is_set():
            return True
        seconds = min(self.settings.interval, IDLE_MAX_SECONDS)
        try:
            await asyncio.to_thread(
                connection.wait_for_news, self._idle_position, seconds, self._interrupted
            )
        except MailboxUnavailable as exc:
            self._failed(exc.message, event="imap_connection_failed")
            await self._disconnect(polite=False)
            raise
        except FolderUnavailable as exc:
            self._failed(exc.message, event="imap_folder_failed", folder=self.folders[0])
            raise
        return True

    def _interrupted(self) -> bool:
        return self._stop_requested.is_set() or self._poll_requested.is_set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)

    async def _disconnect(self, *, polite: bool) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if polite:
            with contextlib.suppress(TimeoutError, EmailSenderError):
                await asyncio.wait_for(asyncio.to_thread(connection.logout), LOGOUT_SECONDS)
        connection.shutdown()

    def _failed(self, message: str, *, event: str, **fields: Any) -> None:
        self._last_error = message
        self.counters["errors"] += 1
        logger.warning(event, extra={"url": self.address.safe_url, "error": message, **fields})
