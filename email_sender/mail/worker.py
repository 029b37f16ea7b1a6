"""The ``email_sender`` manager: delivery workers that drain the outbox through SMTP.

Each worker claims a batch under a lease, sends its emails concurrently through the transport's
pooled connections, and records each outcome as soon as it is known (outcomes that finish
together share one transaction). Emails of a batch whose lease is close to running out are given
back unsent rather than risk a second worker sending them too. Delivery pauses in read-only and
maintenance modes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from email_sender import metrics
from email_sender.errors import DeliveryError, EmailSenderError, TransientDeliveryError
from email_sender.events import EventBus
from email_sender.mail.message import address_of, build_mime
from email_sender.mail.outbox import Outbox, Status, prepared_from_row
from email_sender.mail.retry import Outcome, RetryPolicy
from email_sender.mail.suppression import SuppressionList, normalise
from email_sender.mail.transport import Transport
from email_sender.managers import Health, State
from email_sender.modes import ModeStore
from email_sender.settings import DeliverySettings

logger = logging.getLogger(__name__)

# Stop starting sends when less than this share of the lease is left.
LEASE_SAFETY = 0.25
HOUSEKEEPING_SECONDS = 5.0


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
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.suppressions = suppressions
        self.bus = bus
        self.modes = modes
        self.depends_on = depends_on
        self.policy = RetryPolicy(settings.backoff, settings.max_attempts)
        self._transport_factory = transport_factory
        self.transport: Transport | None = None
        self.worker_prefix = node_id or uuid.uuid4().hex[:8]
        self._tasks: list[asyncio.Task[None]] = []
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
        }
        self.last_error: str | None = None
        self._relay_checked: tuple[float, str | None] = (0.0, None)

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
                await asyncio.wait_for(check(), 5.0)
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
            if claimed == 0:
                await self._idle()

    async def _idle(self) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
        except TimeoutError:
            pass
        self._wake.clear()

    async def _cycle(self, worker: str) -> int:
        mode = await self.modes.current()
        if not mode.delivers:
            return 0
        lease = self.settings.lease_seconds
        batch = await self.outbox.claim(
            worker, batch_size=self.settings.batch_size, lease_seconds=lease
        )
        if not batch:
            return 0
        self.counters["claimed"] += len(batch)
        send_until = time.monotonic() + lease * (1 - LEASE_SAFETY)
        suppressed = await self.suppressions.among(
            address_of(address)
            for row in batch
            for address in (*row.to_addrs, *row.cc_addrs, *row.bcc_addrs)
        )
        recorder = _Recorder(self.outbox, worker, self)
        await asyncio.gather(
            *(self._deliver(row, worker, suppressed, send_until, recorder) for row in batch)
        )
        await recorder.flush()
        return len(batch)

    async def _deliver(
        self, row: Any, worker: str, suppressed: set[str], send_until: float, recorder: _Recorder
    ) -> None:
        if self._stopping.is_set() or time.monotonic() > send_until:
            await self.outbox.release([row.id], worker)
            self.counters["released"] += 1
            return
        email = prepared_from_row(row)
        recipients = [r for r in email.recipients if normalise(r) not in suppressed]
        started = time.time()
        if not recipients:
            await recorder.add(
                row,
                {
                    "status": Status.SUPPRESSED.value,
                    "last_error": "every recipient is on the suppression list",
                    "attempt": _attempt(
                        None, None, "all recipients suppressed", Status.SUPPRESSED.value, started
                    ),
                },
            )
            return
        assert self.transport is not None
        try:
            result = await self.transport.send(build_mime(email), email.sender, recipients)
        except DeliveryError as exc:
            await recorder.add(row, self._failure(row, exc, started))
            if (
                self.policy.suppress(exc.smtp_code, exc.details.get("response"))
                and len(recipients) == 1
            ):
                await self.suppressions.add(
                    recipients[0],
                    reason="hard_bounce",
                    smtp_code=exc.smtp_code,
                    detail=exc.message,
                    email_id=row.id,
                )
            return
        await recorder.add(
            row,
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
            try:
                await asyncio.wait_for(self._stopping.wait(), HOUSEKEEPING_SECONDS)
            except TimeoutError:
                pass


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


class _Recorder:
    """Writes outcomes as soon as possible; those that arrive during a write share the next."""

    def __init__(self, outbox: Outbox, worker: str, manager: DeliveryManager) -> None:
        self.outbox = outbox
        self.worker = worker
        self.manager = manager
        self._pending: list[tuple[Any, dict[str, Any]]] = []
        self._lock = asyncio.Lock()

    async def add(self, row: Any, outcome: dict[str, Any]) -> None:
        self._pending.append((row, {**outcome, "email_id": row.id, "n": row.attempts}))
        await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            if not self._pending:
                return
            batch, self._pending = self._pending, []
            recorded: set[str] = set(
                await self.outbox.record([outcome for _, outcome in batch], self.worker)
            )
        for row, outcome in batch:
            if row.id not in recorded:
                self.manager.counters["lease_lost"] += 1
                logger.warning("delivery_lease_lost", extra={"email_id": row.id})
                continue
            await self._announce(row, outcome)

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
            metrics.delivery_latency.observe(outcome["sent_at"] - row.next_attempt_at)
        elif status == Status.SUPPRESSED.value:
            metrics.emails_suppressed.inc()
        logger.info(
            f"email_{status}",
            extra={
                "email_id": row.id,
                "relay": attempt["relay"],
                "code": attempt["smtp_code"],
                "attempt": row.attempts,
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
