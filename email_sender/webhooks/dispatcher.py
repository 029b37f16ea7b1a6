"""The ``webhooks`` manager: queues every event for its subscribers and posts it, signed.

The bus handler only inserts: one delivery row per matching active subscription (the
subscriptions are cached for a few seconds, and dropped from the cache when the API changes
them), so a slow receiver never slows the bus. A delivery loop claims due rows under a lease and
posts up to ``CONCURRENCY`` at a time; it wakes early when something is queued or a retry falls
due. A 2xx answer is delivered; 410 Gone is failed for good (the receiver says the endpoint is
gone); any other answer, a timeout or a connection error is retried with capped exponential
backoff and jitter until ``max_attempts``, then failed. Every attempt is logged
(``webhook_attempt``) and recorded on its row.

Stopping is bounded: posts in flight get a short grace, the rest are called off and their
leases given back, so they are posted again later, by this node or another. Nothing here
publishes an event: a delivery that raised one would be delivered in turn, for ever.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from contextlib import suppress
from typing import Any

import httpx

from email_sender import metrics
from email_sender.db.engine import Database
from email_sender.errors import EmailSenderError
from email_sender.events import ANY, Event, EventBus
from email_sender.managers import Health, State
from email_sender.settings import WebhookSettings
from email_sender.webhooks.addresses import resolves_local
from email_sender.webhooks.signing import sign
from email_sender.webhooks.store import (
    DELIVERED,
    FAILED,
    PENDING,
    Claimed,
    Outcome,
    Subscription,
    WebhookStore,
)

logger = logging.getLogger(__name__)

# Posts in flight at once, per node.
CONCURRENCY = 8
# Seconds the subscription cache is trusted; other nodes' changes show up within this.
CACHE_SECONDS = 5.0
# Seconds between looks for due deliveries when nothing wakes the loop.
POLL_SECONDS = 1.0
# Seconds a claim holds a delivery beyond the request timeout (recording the outcome).
LEASE_MARGIN = 30.0
# Bytes of a receiver's answer kept for the log excerpt; the rest is not read.
RESPONSE_CAP = 64 * 1024
EXCERPT_CHARS = 300
# Seconds posts in flight may take to finish once stop() is called.
STOP_GRACE = 2.0
# Seconds the final bookkeeping of a stop (giving leases back) may take.
RELEASE_TIMEOUT = 3.0
# Seconds between two purges of the delivery log past webhooks.retention.
PURGE_EVERY_SECONDS = 3600.0
# Event types never sent out, so that nothing about webhooks can loop.
OWN_PREFIX = "webhook."
USER_AGENT = "email-sender-webhooks"


def retry_delay(settings: WebhookSettings, attempts: int, rng: random.Random) -> float:
    """Seconds before the next try after ``attempts`` failed ones: base * 2^(n-1), capped,
    ±20 % jitter so that receivers coming back are not hit by every retry at once."""
    delay = min(settings.backoff_max, settings.backoff_base * 2 ** max(attempts - 1, 0))
    return min(settings.backoff_max, delay * rng.uniform(0.8, 1.2))


class WebhookDispatcher:
    name = "webhooks"
    depends_on: tuple[str, ...] = ("database", "event_bus")

    def __init__(self, settings: WebhookSettings, db: Database, bus: EventBus) -> None:
        self.settings = settings
        self.db = db
        self.bus = bus
        self.store = WebhookStore(db)
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.Task[None] | None = None
        self._in_flight: dict[asyncio.Task[None], Claimed] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._subscriptions: list[Subscription] = []
        self._cache_until = 0.0
        # Earliest retry this node scheduled: the loop wakes for it instead of the next poll.
        self._next_due: float | None = None
        self._pending_checked = 0.0
        self._purged_at = -PURGE_EVERY_SECONDS  # first purge in the first cycle
        self._rng = random.Random()
        self.counters: dict[str, int] = {
            "enqueued": 0,
            "delivered": 0,
            "failed": 0,
            "retried": 0,
            "lease_lost": 0,
            "pending": 0,
        }
        self.last_error: str | None = None

    # Manager

    async def start(self) -> None:
        if self._loop is not None:
            await self.stop()
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(
            timeout=self.settings.timeout,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )
        self.subscriptions_changed()
        self.bus.subscribe(ANY, self.on_event)
        self._loop = asyncio.create_task(self._deliver_loop(), name="webhook-dispatcher")

    async def stop(self) -> None:
        """Let posts in flight finish briefly, call off the rest, give their leases back."""
        self.bus.unsubscribe(ANY, self.on_event)
        self._stopping.set()
        self._wake.set()
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.cancel()
            await asyncio.wait({loop}, timeout=STOP_GRACE)
        unfinished: list[Claimed] = []
        if self._in_flight:
            _done, running = await asyncio.wait(set(self._in_flight), timeout=STOP_GRACE)
            for task in running:
                task.cancel()
                unfinished.append(self._in_flight[task])
            if running:
                await asyncio.wait(running, timeout=STOP_GRACE)
        self._in_flight.clear()
        if unfinished:
            await self._give_back(unfinished)
        client, self._client = self._client, None
        if client is not None:
            with suppress(Exception):
                async with asyncio.timeout(STOP_GRACE):
                    await client.aclose()

    async def health(self) -> Health:
        if self._loop is None:
            return Health(State.STOPPED)
        if self._loop.done():
            return Health(State.FAILED, "the delivery loop stopped", self.last_error)
        counts = self.counters
        detail = (
            f"{len(self._in_flight)} in flight, {counts['delivered']} delivered, "
            f"{counts['failed']} failed, {counts['retried']} retried"
        )
        return Health(State.RUNNING, detail, self.last_error)

    def info(self) -> dict[str, Any]:
        return {
            "subscriptions": len(self._subscriptions),
            "in_flight": len(self._in_flight),
            "concurrency": CONCURRENCY,
            "timeout": self.settings.timeout,
            "max_attempts": self.settings.max_attempts,
            **self.counters,
        }

    def subscriptions_changed(self) -> None:
        """Read the subscriptions again before the next event (the API changed them)."""
        self._cache_until = 0.0

    # Queueing

    async def on_event(self, event: Event) -> None:
        """Queue ``event`` for every active subscription that wants it."""
        if event.type.startswith(OWN_PREFIX):
            return
        subscriptions = await self._current_subscriptions()
        wanted = [sub.id for sub in subscriptions if sub.wants(event.type)]
        if not wanted:
            return
        created = await self.store.enqueue(event, wanted)
        if created:
            self.counters["enqueued"] += created
            self._wake.set()

    async def _current_subscriptions(self) -> list[Subscription]:
        if time.monotonic() >= self._cache_until:
            self._subscriptions = await self.store.active_subscriptions()
            self._cache_until = time.monotonic() + CACHE_SECONDS
        return self._subscriptions

    # Delivering

    async def _deliver_loop(self) -> None:
        while not self._stopping.is_set():
            claimed = 0
            try:
                claimed = await self._claim_and_post()
                await self._refresh_pending()
                await self._purge_old_deliveries()
            except EmailSenderError as exc:
                self.last_error = str(exc)
                logger.warning("webhook_cycle_failed", extra={"error": str(exc)})
            except Exception as exc:  # the loop outlives any one cycle; leases expire
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.exception("webhook_cycle_crashed")
            if claimed == 0:
                await self._idle()

    async def _claim_and_post(self) -> int:
        free = CONCURRENCY - len(self._in_flight)
        if free <= 0:
            return 0
        lease_seconds = self.settings.timeout + LEASE_MARGIN
        batch = await self.store.claim(limit=free, lease_seconds=lease_seconds)
        for delivery in batch:
            task = asyncio.create_task(self._attempt(delivery), name=f"webhook-{delivery.id}")
            self._in_flight[task] = delivery
            task.add_done_callback(self._finished)
        return len(batch)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            self.last_error = f"{type(error).__name__}: {error}"
            logger.error("webhook_attempt_crashed", extra={"error": self.last_error})
        self._wake.set()

    async def _idle(self) -> None:
        wait = POLL_SECONDS
        if self._next_due is not None:
            wait = min(wait, max(self._next_due - time.time(), 0.0))
        if wait > 0:
            with suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
        self._wake.clear()
        if self._next_due is not None and self._next_due <= time.time():
            self._next_due = None

    async def _refresh_pending(self) -> None:
        if time.monotonic() - self._pending_checked >= CACHE_SECONDS:
            self._pending_checked = time.monotonic()
            self.counters["pending"] = await self.store.count_pending()

    async def _purge_old_deliveries(self) -> None:
        if time.monotonic() - self._purged_at < PURGE_EVERY_SECONDS:
            return
        self._purged_at = time.monotonic()
        purged = await self.store.purge_finished(time.time() - self.settings.retention)
        if purged:
            logger.info("webhook_deliveries_purged", extra={"count": purged})

    async def _attempt(self, delivery: Claimed) -> None:
        """Post one delivery and record how it went."""
        attempt = delivery.attempts + 1
        code, error, duration_ms = await self._post(delivery)
        outcome = self._judge(attempt, code, error, duration_ms)
        recorded = await self.store.record(delivery, outcome)
        logger.info(
            "webhook_attempt",
            extra={
                "delivery_id": delivery.id,
                "webhook_id": delivery.webhook_id,
                "event_type": delivery.event_type,
                "attempt": attempt,
                "status": outcome.status,
                "response_code": code,
                "error": error,
                "duration_ms": round(duration_ms, 1),
            },
        )
        metrics.webhook_attempts.labels(
            "lease_lost" if not recorded else "retried" if outcome.status == PENDING
            else outcome.status
        ).inc()
        if not recorded:
            # Deleted meanwhile, or the lease ran out and another node took it over.
            self.counters["lease_lost"] += 1
            return
        if outcome.status == PENDING:
            self.counters["retried"] += 1
            if outcome.next_attempt_at is not None:
                self._next_due = min(self._next_due or outcome.next_attempt_at,
                                     outcome.next_attempt_at)
        else:
            self.counters[outcome.status] += 1

    def _judge(
        self, attempt: int, code: int | None, error: str | None, duration_ms: float
    ) -> Outcome:
        if code is not None and 200 <= code < 300:
            return Outcome(DELIVERED, code, None, duration_ms)
        if code == 410 or attempt >= self.settings.max_attempts:
            return Outcome(FAILED, code, error, duration_ms)
        retry_at = time.time() + retry_delay(self.settings, attempt, self._rng)
        return Outcome(PENDING, code, error, duration_ms, next_attempt_at=retry_at)

    async def _post(self, delivery: Claimed) -> tuple[int | None, str | None, float]:
        """POST the signed payload; answer (status code, error, milliseconds).

        The one place where httpx errors are met: they become the attempt's error text.
        """
        assert self._client is not None
        body = json.dumps(delivery.payload, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Email-Sender-Event": delivery.event_type,
            "X-Email-Sender-Delivery": delivery.id,
            "X-Email-Sender-Timestamp": timestamp,
            "X-Email-Sender-Signature": sign(delivery.secret, timestamp, body),
        }
        started = time.perf_counter()
        if not self.settings.allow_private_networks:
            refused = await _refused_destination(delivery.url)
            if refused:
                return None, refused, _elapsed_ms(started)
        try:
            # httpx's timeout bounds each read; this bounds the whole exchange, so a receiver
            # trickling bytes cannot outlive the lease (and be posted to again).
            async with asyncio.timeout(self.settings.timeout), self._client.stream(
                "POST", delivery.url, content=body, headers=headers
            ) as response:
                excerpt = await _read_capped(response)
        except TimeoutError:
            error = f"no complete answer within {self.settings.timeout:g} s"
            return None, error, _elapsed_ms(started)
        except httpx.TimeoutException as exc:
            error = f"timed out after {self.settings.timeout:g} s ({type(exc).__name__})"
            return None, error, _elapsed_ms(started)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:EXCERPT_CHARS], _elapsed_ms(started)
        duration_ms = _elapsed_ms(started)
        if 200 <= response.status_code < 300:
            return response.status_code, None, duration_ms
        text = excerpt.decode("utf-8", "replace").strip()[:EXCERPT_CHARS]
        error = f"HTTP {response.status_code}" + (f": {text}" if text else "")
        return response.status_code, error, duration_ms

    async def _give_back(self, deliveries: list[Claimed]) -> None:
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT):
                released = await self.store.release(deliveries)
        except (EmailSenderError, TimeoutError) as exc:
            # Their leases run out by themselves; they are only posted later.
            logger.warning("webhook_release_failed", extra={"error": str(exc) or "timed out"})
            return
        logger.info("webhook_deliveries_released", extra={"count": released})


async def _refused_destination(url: str) -> str | None:
    """Why a URL may not be posted to now (its host resolves inside), else None."""
    parts = httpx.URL(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        if await resolves_local(parts.host, port):
            return f"refused: {parts.host} resolves to a local or private address"
    except (OSError, TimeoutError) as exc:
        return f"cannot resolve {parts.host}: {exc or 'timed out'}"
    return None


async def _read_capped(response: httpx.Response) -> bytes:
    """At most RESPONSE_CAP bytes of the answer: a huge or endless body is cut, not read."""
    kept = bytearray()
    async for chunk in response.aiter_bytes():
        kept += chunk[: RESPONSE_CAP - len(kept)]
        if len(kept) >= RESPONSE_CAP:
            break
    return bytes(kept)


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
