"""The ``email_sender`` manager: delivery workers that drain the outbox through SMTP.

Each worker claims a batch under a lease, sends its emails concurrently through the transport's
pooled connections, and records each outcome as soon as it is known (outcomes that finish
together share one transaction). A batch is sized to what the relays can take within half a
lease; the lease is renewed while its emails wait for a connection or a rate token, and checked
once more right before each SMTP transaction starts, so a slow or rate-limited relay never lets
another worker take an email that is about to be sent. An email whose lease was lost is given
up, counted and logged, never sent by the worker that lost it. Every email ends its attempt in a
recorded state, whatever fails. Delivery pauses in read-only and maintenance modes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from email_sender import metrics
from email_sender.errors import (
    DeliveryError,
    EmailSenderError,
    SendWithdrawn,
    TransientDeliveryError,
)
from email_sender.events import EventBus
from email_sender.mail.lease import Lease
from email_sender.mail.message import address_of, build_mime
from email_sender.mail.outbox import Outbox, Status, prepared_from_row
from email_sender.mail.recorder import Recorder
from email_sender.mail.retry import Outcome, RetryPolicy
from email_sender.mail.suppression import SuppressionList, normalise
from email_sender.mail.transport import Message, SendResult, Transport
from email_sender.mail.wire import simple_wire_form
from email_sender.managers import Health, State
from email_sender.modes import ModeStore
from email_sender.settings import DeliverySettings

logger = logging.getLogger(__name__)

# A batch holds what the relays can take in this share of the lease.
CLAIM_SHARE = 0.5
HOUSEKEEPING_SECONDS = 5.0
RELAY_CHECK_TIMEOUT = 5.0


class DeliveryManager:
    name = "email_sender"

    def __init__(
        self,
        settings: DeliverySettings,
        *,
        outbox: Outbox,
        suppressions: SuppressionList,
        bus: EventBus,
        modes: ModeStore,
        transport_factory: Callable[[], Transport],
        depends_on: tuple[str, ...] = ("database", "event_bus"),
        node_id: str = "",
        return_path: Callable[[str], str] | None = None,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.suppressions = suppressions
        self.bus = bus
        self.modes = modes
        self.depends_on = depends_on
        self.policy = RetryPolicy(settings.backoff, settings.max_attempts)
        self._transport_factory = transport_factory
        # The envelope sender for an email id (a signed VERP address), else the email's sender.
        self._return_path = return_path
        self.transport: Transport | None = None
        self.worker_prefix = node_id or uuid.uuid4().hex[:8]
        self._tasks: list[asyncio.Task[None]] = []
        # Sends still waiting for a connection or a rate token: stopping may call them off.
        self._waiting_sends: set[asyncio.Task[SendResult]] = set()
        # Sends in progress (waiting for a connection, a token, or the relay).
        self.sending = 0
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self.counters: dict[str, int] = {
            "claimed": 0,
            "sent": 0,
            "deferred": 0,
            "failed": 0,
            "suppressed": 0,
            "lease_lost": 0,
            "released": 0,
            "uncertain": 0,
        }
        self.last_error: str | None = None
        self._relay_checked: tuple[float, str | None] = (0.0, None)
        # One for every worker: outcomes that finish together share a transaction.
        self._recorder = Recorder(outbox, self)

    # Manager

    async def start(self) -> None:
        self.transport = self._transport_factory()
        self._stopping.clear()
        self._tasks = [
            asyncio.create_task(self._work(f"{self.worker_prefix}-w{n}"), name=f"delivery-{n}")
            for n in range(self.settings.workers)
        ]
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="delivery-housekeeping"))

    async def stop(self) -> None:
        """Finish the sends in progress, give back what was not started, close connections."""
        self._stopping.set()
        self._wake.set()
        for waiting in list(self._waiting_sends):
            waiting.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.transport is not None:
            await self.transport.close()
            self.transport = None

    async def health(self) -> Health:
        dead = [task for task in self._tasks if task.done()]
        if not self._tasks:
            return Health(State.STOPPED)
        if dead:
            return Health(State.FAILED, f"{len(dead)} delivery tasks stopped", self.last_error)
        relay_error = await self._check_relay()
        paused = "" if self.modes.cached.delivers else f", paused ({self.modes.cached.value})"
        if relay_error:
            return Health(State.DEGRADED, f"no relay reachable{paused}", relay_error)
        return Health(State.RUNNING, f"{self.settings.workers} workers{paused}", self.last_error)

    async def _check_relay(self) -> str | None:
        """Reach a relay at most every few seconds; answer the error, or None."""
        checked_at, error = self._relay_checked
        if time.monotonic() - checked_at < HOUSEKEEPING_SECONDS:
            return error
        check = getattr(self.transport, "check", None)
        error = None
        if check is not None:
            try:
                async with asyncio.timeout(RELAY_CHECK_TIMEOUT):
                    await check()
            except (DeliveryError, TimeoutError) as exc:
                error = str(exc) or "timed out"
        self._relay_checked = (time.monotonic(), error)
        return error

    def info(self) -> dict[str, Any]:
        stats = getattr(self.transport, "stats", None)
        return {
            "workers": self.settings.workers,
            "batch_size": self.settings.batch_size,
            "paused": not self.modes.cached.delivers,
            "relays": stats() if stats else [],
            **self.counters,
        }

    def wake(self) -> None:
        """Look for due emails now instead of at the next poll (called after an accept)."""
        self._wake.set()

    # Workers

    async def _work(self, worker: str) -> None:
        while not self._stopping.is_set():
            try:
                claimed = await self._cycle(worker)
            except EmailSenderError as exc:
                self.last_error = str(exc)
                logger.warning("delivery_cycle_failed", extra={"worker": worker, "error": str(exc)})
                claimed = 0
            except Exception as exc:  # a worker must outlive any one batch; its leases expire
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.exception("delivery_cycle_crashed", extra={"worker": worker})
                claimed = 0
            if claimed == 0:
                await self._idle()

    async def _idle(self) -> None:
        with suppress(TimeoutError):
            async with asyncio.timeout(self.settings.poll_interval):
                await self._wake.wait()
        self._wake.clear()

    def claim_size(self) -> int:
        """How many emails one worker claims: what the relays can take in part of a lease."""
        capacity = getattr(self.transport, "capacity", None)
        if capacity is None:
            return self.settings.batch_size
        per_worker = capacity(self.settings.lease_seconds * CLAIM_SHARE) / self.settings.workers
        if math.isinf(per_worker):
            return self.settings.batch_size
        return max(1, min(self.settings.batch_size, math.floor(per_worker)))

    async def _cycle(self, worker: str) -> int:
        mode = await self.modes.current()
        if not mode.delivers:
            return 0
        batch = await self.outbox.claim(
            worker, batch_size=self.claim_size(), lease_seconds=self.settings.lease_seconds
        )
        if not batch:
            return 0
        self.counters["claimed"] += len(batch)
        lease = Lease(self.outbox, worker, batch, self.settings.lease_seconds)
        recorder = self._recorder
        async with lease.renewed():
            suppressed = await self.suppressions.among(
                address_of(address)
                for row in batch
                for address in (*row.to_addrs, *row.cc_addrs, *row.bcc_addrs)
            )
            outcomes = await asyncio.gather(
                *(self._deliver(row, lease, suppressed, recorder) for row in batch),
                return_exceptions=True,
            )
            await recorder.flush()
        # Every send of the batch has ended before the next claim, whatever failed; an email
        # whose attempt raised is taken up again once its lease runs out.
        for row, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                self.last_error = f"{type(outcome).__name__}: {outcome}"
                logger.error("delivery_attempt_crashed", extra={"email_id": row.id,
                             "error": self.last_error}, exc_info=outcome)
        return len(batch)

    def _may_send(self, lease: Lease, email_id: str) -> bool:
        return not self._stopping.is_set() and lease.holds(email_id)

    async def _deliver(
        self, row: Any, lease: Lease, suppressed: set[str], recorder: Recorder
    ) -> None:
        if not self._may_send(lease, row.id):
            await self._give_back(row, lease)
            return
        started = time.time()
        try:
            email = prepared_from_row(row)
            message = simple_wire_form(email) or build_mime(email)
        except Exception as exc:  # stored before today's rules, or a bug: it can never be sent
            logger.error(
                "delivery_unbuildable",
                extra={"email_id": row.id, "error": f"{type(exc).__name__}: {exc}"},
                exc_info=True,
            )
            reason = f"the message cannot be built: {type(exc).__name__}: {exc}"
            await recorder.add(row, lease, {
                "status": Status.FAILED.value,
                "last_error": reason,
                "attempt": _attempt(None, None, reason, Status.FAILED.value, started),
            })
            return
        recipients = [r for r in email.recipients if normalise(r) not in suppressed]
        if not recipients:
            reason = "every recipient is on the suppression list"
            await recorder.add(row, lease, {
                "status": Status.SUPPRESSED.value,
                "last_error": reason,
                "attempt": _attempt(None, None, reason, Status.SUPPRESSED.value, started),
            })
            return
        try:
            sender = self._return_path(row.id) if self._return_path else email.sender
            result = await self._send(message, sender, recipients, lease, row.id)
        except SendWithdrawn:
            await self._give_back(row, lease)
            return
        except DeliveryError as exc:
            if exc.details.get("uncertain"):
                self.counters["uncertain"] += 1
                metrics.delivery_uncertain.inc()
                logger.warning("delivery_outcome_uncertain", extra={"email_id": row.id,
                               "relay": exc.relay, "error": exc.message})
            await recorder.add(row, lease, self._failure(row, exc, started))
            if (
                self.policy.suppress(exc.smtp_code, exc.details.get("response"))
                and len(recipients) == 1
            ):
                await self._suppress(row, recipients[0], exc)
            return
        except Exception as exc:  # unexpected: defer with backoff rather than leave it sending
            logger.error(
                "delivery_send_crashed",
                extra={"email_id": row.id, "error": f"{type(exc).__name__}: {exc}"},
                exc_info=True,
            )
            unexpected = TransientDeliveryError(f"unexpected error: {type(exc).__name__}: {exc}")
            await recorder.add(row, lease, self._failure(row, unexpected, started))
            return
        await recorder.add(
            row,
            lease,
            {
                "status": Status.SENT.value,
                "sent_at": time.time(),
                "attempt": _attempt(
                    result.relay,
                    result.code,
                    result.response,
                    Status.SENT.value,
                    started,
                    result.duration_ms,
                ),
            },
        )

    async def _suppress(self, row: Any, address: str, exc: DeliveryError) -> None:
        try:
            await self.suppressions.add(
                address,
                reason="hard_bounce",
                smtp_code=exc.smtp_code,
                detail=exc.message,
                email_id=row.id,
            )
        except EmailSenderError as error:
            logger.error("suppression_not_recorded", extra={"email_id": row.id,
                         "error": str(error)})

    async def _send(
        self,
        message: Message,
        sender: str,
        recipients: list[str],
        lease: Lease,
        email_id: str,
    ) -> SendResult:
        """Send, unless the lease or a stop calls it off before the SMTP transaction begins."""
        assert self.transport is not None

        def ready() -> bool:
            self._waiting_sends.discard(sending)
            return self._may_send(lease, email_id)

        sending = asyncio.create_task(
            self.transport.send(message, sender, recipients, ready=ready)
        )
        self._waiting_sends.add(sending)
        self.sending += 1
        try:
            return await sending
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if sending.cancelled() and not (current is not None and current.cancelling()):
                # Called off by stop() while still waiting: nothing was sent.
                raise SendWithdrawn() from None
            raise
        finally:
            self._waiting_sends.discard(sending)
            self.sending -= 1
            self._recorder.changed.set()

    async def _give_back(self, row: Any, lease: Lease) -> None:
        """An email not sent: released if still ours, else counted as a lost lease."""
        lease.finish(row.id)
        try:
            released = not lease.lost(row.id) and await self.outbox.release([row.id], lease.worker)
        except EmailSenderError as exc:
            # Still leased and unsent: it is claimed again once the lease runs out.
            logger.warning("delivery_release_failed", extra={"email_id": row.id,
                           "error": str(exc)})
            return
        if released:
            self.counters["released"] += 1
        else:
            self._lease_lost(row.id)

    def _lease_lost(self, email_id: str) -> None:
        self.counters["lease_lost"] += 1
        metrics.delivery_leases_lost.inc()
        logger.warning("delivery_lease_lost", extra={"email_id": email_id})

    def _failure(self, row: Any, exc: DeliveryError, started: float) -> dict[str, Any]:
        network = isinstance(exc, TransientDeliveryError) and bool(exc.details.get("network"))
        outcome = self.policy.classify(exc.smtp_code, timeout_or_connection_error=network)
        if isinstance(exc, TransientDeliveryError):
            outcome = Outcome.DEFERRED
        outcome = self.policy.after_attempt(outcome, row.attempts)
        values: dict[str, Any] = {
            "status": outcome.value,
            "last_error": exc.message,
            "attempt": _attempt(exc.relay, exc.smtp_code, exc.message, outcome.value, started),
        }
        if outcome is Outcome.DEFERRED:
            values["next_attempt_at"] = time.time() + self.policy.delay(row.attempts)
        return values

    # Housekeeping: gauges and idempotency key expiry.

    async def _housekeeping(self) -> None:
        last_expiry = 0.0
        while not self._stopping.is_set():
            try:
                counts = await self.outbox.counts_by_status()
                for status in Status:
                    metrics.queue_depth.labels(status.value).set(counts.get(status.value, 0))
                metrics.queue_oldest_age.set(await self.outbox.oldest_due_age())
                if time.monotonic() - last_expiry > 3600:
                    await self.outbox.expire_idempotency_keys()
                    last_expiry = time.monotonic()
            except EmailSenderError as exc:
                logger.warning("delivery_housekeeping_failed", extra={"error": str(exc)})
            with suppress(TimeoutError):
                async with asyncio.timeout(HOUSEKEEPING_SECONDS):
                    await self._stopping.wait()


def _attempt(
    relay: str | None,
    code: int | None,
    response: str | None,
    outcome: str,
    started: float,
    duration_ms: float | None = None,
) -> dict[str, Any]:
    return {
        "relay": relay,
        "smtp_code": code,
        "response": (response or "")[:2000],
        "outcome": outcome,
        "started_at": started,
        "duration_ms": duration_ms if duration_ms is not None else (time.time() - started) * 1000,
    }
