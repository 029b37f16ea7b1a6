"""A delivery worker's lease on the emails it claimed.

The lease is renewed in the background while the batch's emails wait for a connection or a rate
token, and :meth:`Lease.holds` is asked right before each SMTP transaction. Renewal refreshes the
known end of the lease only when the database took it, so a lease that cannot be renewed stops
new transactions a safety margin before it runs out: no other worker can have claimed an email
while this one still holds it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from email_sender.errors import EmailSenderError
from email_sender.mail.outbox import Outbox

logger = logging.getLogger(__name__)

# Start no SMTP transaction when less than this share of the lease is left.
LEASE_SAFETY = 0.25
# The lease is renewed this many times per lease period while its emails wait.
RENEWALS_PER_LEASE = 3


class Lease:
    """One worker's lease on a claimed batch: renewed while its emails wait, checked per send."""

    def __init__(self, outbox: Outbox, worker: str, batch: list[Any], seconds: float) -> None:
        self.outbox = outbox
        self.worker = worker
        self.seconds = seconds
        self.until = min(row.lease_until for row in batch)
        self._waiting = {row.id for row in batch}
        self._lost: set[str] = set()

    def holds(self, email_id: str) -> bool:
        """Still ours, with enough of the lease left to start a transaction."""
        return email_id not in self._lost and time.time() < self.until - self.seconds * LEASE_SAFETY

    def lost(self, email_id: str) -> bool:
        return email_id in self._lost

    def finish(self, email_id: str) -> None:
        """This email's attempt is over: stop renewing its lease."""
        self._waiting.discard(email_id)

    async def renew(self) -> None:
        waiting = list(self._waiting - self._lost)
        if not waiting:
            return
        until = time.time() + self.seconds
        held = await self.outbox.renew(waiting, self.worker, lease_until=until)
        self._lost.update(email_id for email_id in waiting if email_id not in held)
        self.until = until

    @asynccontextmanager
    async def renewed(self) -> AsyncIterator[None]:
        """Renew the lease in the background while the block runs."""
        done = asyncio.Event()
        renewer = asyncio.create_task(self._renew_until(done), name=f"lease-{self.worker}")
        try:
            yield
        finally:
            done.set()
            await renewer

    async def _renew_until(self, done: asyncio.Event) -> None:
        interval = self.seconds / RENEWALS_PER_LEASE
        while not done.is_set():
            with suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await done.wait()
            if done.is_set():
                return
            try:
                await self.renew()
            except EmailSenderError as exc:
                # Not renewed: holds() turns false as the old lease runs out, so no new
                # transaction starts on a lease that may have been lost.
                logger.warning(
                    "delivery_lease_renew_failed", extra={"worker": self.worker, "error": str(exc)}
                )
