"""Delivery outcomes written to the outbox as soon as possible, those of several sends in one
transaction: an outcome that arrives while others are being sent waits briefly for theirs.

An outcome is kept only while its worker still holds the email's lease (or when it was sent);
once written, it is counted, logged and announced on the event bus.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from email_sender import metrics
from email_sender.errors import EmailSenderError
from email_sender.mail.lease import Lease
from email_sender.mail.outbox import Outbox, Status

if TYPE_CHECKING:
    from email_sender.mail.worker import DeliveryManager

# The outcomes are the delivery workers' lines: logged under their component.
logger = logging.getLogger("email_sender.mail.worker")

# Recording an outcome is tried this many times before it is given up (and logged).
RECORD_TRIES = 5
# While other sends are in progress, an outcome waits up to this long (or until this many are
# pending) for theirs to share its transaction: a few large commits cost far less than one per
# handful of emails. Recording a send already waits for the write in progress; this adds at most
# that much again to the window in which a crash leaves a sent email to be sent again.
RECORD_LINGER = 0.02
RECORD_BATCH = 200


class Recorder:
    """Writes outcomes as soon as possible; those that arrive during a write, from any worker,
    share the next."""

    def __init__(self, outbox: Outbox, manager: DeliveryManager) -> None:
        self.outbox = outbox
        self.manager = manager
        self._pending: list[tuple[Any, Lease, dict[str, Any]]] = []
        self._lock = asyncio.Lock()
        # Set when an outcome is added or a send ends.
        self.changed = asyncio.Event()

    async def add(self, row: Any, lease: Lease, outcome: dict[str, Any]) -> None:
        self._pending.append(
            (row, lease, {**outcome, "email_id": row.id, "n": row.attempts, "worker": lease.worker})
        )
        self.changed.set()
        await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            if not self._pending:
                return
            await self._gather()
            batch, self._pending = self._pending, []
            recorded = await self._record([outcome for _, _, outcome in batch])
        for row, lease, outcome in batch:
            lease.finish(row.id)
            if recorded is None:
                continue
            if row.id not in recorded:
                self.manager._lease_lost(row.id)
                continue
            await self._announce(row, outcome)

    async def _gather(self) -> None:
        """Wait briefly for the outcomes of sends in progress; at once when there are none."""
        deadline = asyncio.get_running_loop().time() + RECORD_LINGER
        while (
            self.manager.sending
            and len(self._pending) < RECORD_BATCH
            and not self.manager._stopping.is_set()
        ):
            self.changed.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self.changed.wait()
            except TimeoutError:
                return

    async def _record(self, outcomes: list[dict[str, Any]]) -> set[str] | None:
        """Record, retrying while the database fails; None when it never answered."""
        delay = 0.1
        for attempt in range(1, RECORD_TRIES + 1):
            try:
                return set(await self.outbox.record(outcomes))
            except EmailSenderError as exc:
                if attempt == RECORD_TRIES:
                    # The lease runs out and the emails are tried again: a sent one may go
                    # twice, which is why this is an error and not a warning.
                    logger.error(
                        "delivery_outcome_unrecorded",
                        extra={"email_ids": [o["email_id"] for o in outcomes],
                               "statuses": [o["status"] for o in outcomes], "error": str(exc)},
                    )
                    metrics.delivery_outcomes_unrecorded.inc(len(outcomes))
                    return None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        return None

    async def _announce(self, row: Any, outcome: dict[str, Any]) -> None:
        status = outcome["status"]
        attempt = outcome["attempt"]
        self.manager.counters[status] = self.manager.counters.get(status, 0) + 1
        relay = attempt["relay"] or "-"
        reply_class = f"{attempt['smtp_code'] // 100}xx" if attempt["smtp_code"] else "none"
        metrics.delivery_attempts.labels(relay, status, reply_class).inc()
        if attempt["relay"]:
            metrics.delivery_duration.labels(relay).observe(attempt["duration_ms"] / 1000)
        if status == Status.SENT.value:
            metrics.delivery_latency.observe(outcome["sent_at"] - row.created_at)
        elif status == Status.SUPPRESSED.value:
            metrics.emails_suppressed.inc()
        log = logger.error if status == Status.FAILED.value else logger.info
        log(
            f"email_{status}",
            extra={
                "email_id": row.id,
                "relay": attempt["relay"],
                "code": attempt["smtp_code"],
                "attempt": row.attempts,
                "error": outcome.get("last_error"),
                "duration_ms": round(attempt["duration_ms"], 2),
            },
        )
        await self.manager.bus.publish(
            f"email.{status}",
            id=row.id,
            message_id=row.message_id,
            attempt=row.attempts,
            relay=attempt["relay"],
            code=attempt["smtp_code"],
        )
