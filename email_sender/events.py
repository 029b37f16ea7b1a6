"""The event bus: components publish what happened, others subscribe by type or to ``*``.

Two backends share one interface. ``MemoryEventBus`` keeps a bounded buffer drained by a pool of
workers; ``RedisEventBus`` appends to a Redis stream that every process reads (fan-out across
processes). ``publish`` never blocks longer than ``publish_timeout``: past that the event is
counted as dropped, never silently lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from email_sender import metrics
from email_sender.errors import EventBusError
from email_sender.managers import Health, State
from email_sender.settings import EventBusSettings, mask_secrets

logger = logging.getLogger(__name__)

ANY = "*"
# Every event type this service publishes: what a webhook may subscribe to.
EVENT_TYPES = (
    "email.accepted",
    "email.sent",
    "email.deferred",
    "email.failed",
    "email.suppressed",
    "email.bounced",
    "email.replied",
    "inbound.received",
    "reply.classified",
    "contact.unsubscribed",
)


@dataclass(frozen=True)
class Event:
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    time: float = field(default_factory=time.time)
    source: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str | bytes) -> Event:
        return cls(**json.loads(text))


Handler = Callable[[Event], Awaitable[None]]


class EventBus:
    """Subscriptions and counters shared by both backends; subclasses move the events."""

    name = "event_bus"
    depends_on: tuple[str, ...] = ()
    backend = "base"

    def __init__(self, settings: EventBusSettings) -> None:
        self.settings = settings
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self.published: Counter[str] = Counter()
        self.delivered = 0
        self.dropped = 0
        self.purged = 0
        self.handler_errors = 0
        self.last_error: str | None = None

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def health(self) -> Health:
        raise NotImplementedError

    def subscribe(self, event_type: str, handler: Handler) -> None:
        """Call ``handler`` for every event of ``event_type``, or of any type with ``*``."""
        self._handlers[event_type].append(handler)

    def unsubscribe(self, event_type: str, handler: Handler) -> None:
        if handler in self._handlers.get(event_type, []):
            self._handlers[event_type].remove(handler)

    async def publish(self, event_type: str, **data: Any) -> bool:
        """Publish an event; answer False when it had to be dropped."""
        return await self.publish_event(Event(event_type, data))

    async def publish_event(self, event: Event) -> bool:
        raise NotImplementedError

    async def purge(self) -> int:
        """Drop every pending event; answer how many."""
        raise NotImplementedError

    def backlog(self) -> int:
        raise NotImplementedError

    async def _dispatch(self, event: Event) -> None:
        for handler in (*self._handlers.get(event.type, ()), *self._handlers.get(ANY, ())):
            try:
                await handler(event)
            except Exception as exc:
                self.handler_errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                metrics.events_handler_errors.labels(event.type).inc()
                logger.exception("event_handler_failed", extra={"event_type": event.type})
                continue
            self.delivered += 1
            metrics.events_delivered.labels(event.type).inc()

    def _count_published(self, event: Event) -> None:
        self.published[event.type] += 1
        metrics.events_published.labels(event.type).inc()

    def _drop_unstarted(self, event: Event) -> bool:
        """A bus that is not running drops the event: a caller's committed work stands."""
        self._count_dropped("not_started")
        logger.warning("event_dropped", extra={"event_type": event.type, "error": "not started"})
        return False

    def _count_dropped(self, reason: str, count: int = 1) -> None:
        if reason == "purged":
            self.purged += count
        else:
            self.dropped += count
        metrics.events_dropped.labels(reason).inc(count)

    def stats(self) -> dict[str, Any]:
        backlog = self.backlog()
        metrics.events_backlog.set(backlog)
        return {
            "backend": self.backend,
            "backlog": backlog,
            "buffer_size": self.settings.buffer_size,
            "workers": self.settings.workers,
            "published": sum(self.published.values()),
            "published_by_type": dict(self.published),
            "delivered": self.delivered,
            "dropped": self.dropped,
            "purged": self.purged,
            "handler_errors": self.handler_errors,
            "subscriptions": {key: len(value) for key, value in self._handlers.items() if value},
        }

    def info(self) -> dict[str, Any]:
        return self.stats()


class MemoryEventBus(EventBus):
    """In-process bus: a bounded queue and ``workers`` tasks calling the handlers."""

    backend = "memory"
    DRAIN_TIMEOUT = 5.0
    STOP_TIMEOUT = 5.0

    def __init__(self, settings: EventBusSettings) -> None:
        super().__init__(settings)
        self._queue: asyncio.Queue[Event] | None = None
        self._workers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if self._workers:
            await self.stop()
        self._queue = asyncio.Queue(self.settings.buffer_size)
        self._workers = [
            asyncio.create_task(self._work(), name=f"event-worker-{n}")
            for n in range(self.settings.workers)
        ]

    async def stop(self) -> None:
        """Deliver what is queued (bounded wait), then stop the workers; safe to repeat."""
        if self._queue is not None and self._workers:
            try:
                async with asyncio.timeout(self.DRAIN_TIMEOUT):
                    await self._queue.join()
            except TimeoutError:
                logger.warning("event_bus_stop_with_backlog", extra={"backlog": self.backlog()})
        # What is still queued is dropped and counted; a late publish is dropped the same way.
        if self._queue is not None and self._queue.qsize():
            self._count_dropped("stopped", self._queue.qsize())
        self._queue = None
        workers, self._workers = self._workers, []
        for task in workers:
            task.cancel()
        if workers:
            _done, still_running = await asyncio.wait(workers, timeout=self.STOP_TIMEOUT)
            if still_running:
                logger.warning("event_bus_stop_timeout", extra={"tasks": len(still_running)})

    async def health(self) -> Health:
        if self._queue is None:
            return Health(State.STOPPED)
        alive = sum(not task.done() for task in self._workers)
        if alive < self.settings.workers:
            return Health(State.DEGRADED, f"{alive}/{self.settings.workers} workers alive")
        return Health(State.RUNNING, f"backlog {self.backlog()}", self.last_error)

    async def publish_event(self, event: Event) -> bool:
        if self._queue is None:
            return self._drop_unstarted(event)
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            try:
                async with asyncio.timeout(self.settings.publish_timeout):
                    await self._queue.put(event)
            except TimeoutError:
                self._count_dropped("buffer_full")
                logger.warning("event_dropped", extra={"event_type": event.type})
                return False
        self._count_published(event)
        return True

    async def purge(self) -> int:
        if self._queue is None:
            return 0
        count = 0
        while True:
            try:
                self._queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            self._queue.task_done()
            count += 1
        self._count_dropped("purged", count)
        logger.info("events_purged", extra={"count": count})
        return count

    def backlog(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            event = await self._queue.get()
            try:
                await self._dispatch(event)
            finally:
                self._queue.task_done()


class RedisEventBus(EventBus):
    """Redis Streams: every process appends to one stream and reads all of it (fan-out).

    The stream is capped near ``buffer_size`` entries. The backlog is what this process has not
    read yet; purge moves every reader past the current end, and answers how many were skipped.

    Start, stop and health are bounded and repeatable: a start with Redis down fails within
    ``CONNECT_TIMEOUT`` and leaves nothing running, so a later start can succeed. Once running,
    the reader outlives Redis outages (retried with backoff, reported by ``health``) and skips
    entries it cannot decode (logged with their id and counted) instead of dying.
    """

    backend = "redis"
    CONNECT_TIMEOUT = 3.0
    STOP_TIMEOUT = 5.0
    # Longer than the reader's blocking XREAD (1 s), so a silent Redis is noticed, not waited on.
    SOCKET_TIMEOUT = 5.0
    RETRY_FIRST = 0.1
    RETRY_MAX = 5.0

    def __init__(self, settings: EventBusSettings) -> None:
        super().__init__(settings)
        self.where = mask_secrets(settings.redis_url.get_secret_value())
        self._redis: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._last_id = "$"
        self._pending: asyncio.Queue[Event] = asyncio.Queue(settings.buffer_size)
        self._workers: list[asyncio.Task[None]] = []
        self.malformed = 0
        self.read_failures = 0
        self._outage: str | None = None
        self._outage_since: float | None = None

    async def start(self) -> None:
        import redis.asyncio as redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        if self._redis is not None:
            await self.stop()
        client: Any = redis.from_url(
            self.settings.redis_url.get_secret_value(),
            socket_timeout=self.SOCKET_TIMEOUT,
            socket_connect_timeout=self.CONNECT_TIMEOUT,
            # After an outage the pooled connections are dead: one retry on a fresh connection
            # instead of a dropped event per stale connection.
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[RedisConnectionError],
        )
        try:
            async with asyncio.timeout(self.CONNECT_TIMEOUT):
                with self._redis_errors("cannot reach Redis"):
                    await client.ping()
                    last = await client.xrevrange(self.settings.stream, count=1)
        except TimeoutError as exc:
            await self._close_client(client)
            raise EventBusError(
                f"cannot reach Redis at {self.where}: no answer within {self.CONNECT_TIMEOUT:g} s"
            ) from exc
        except EventBusError:
            await self._close_client(client)
            raise
        self._redis = client
        self._last_id = last[0][0].decode() if last else "0-0"
        self._outage = self._outage_since = None
        self._pending = asyncio.Queue(self.settings.buffer_size)
        self._reader = asyncio.create_task(self._read(), name="event-reader")
        self._workers = [
            asyncio.create_task(self._work(), name=f"event-worker-{n}")
            for n in range(self.settings.workers)
        ]

    async def stop(self) -> None:
        """Stop the reader and workers and close the client; bounded, and safe to repeat."""
        tasks = [task for task in (self._reader, *self._workers) if task is not None]
        self._reader, self._workers = None, []
        for task in tasks:
            task.cancel()
        if tasks:
            _done, still_running = await asyncio.wait(tasks, timeout=self.STOP_TIMEOUT)
            if still_running:
                logger.warning(
                    "event_bus_stop_timeout",
                    extra={"tasks": sorted(task.get_name() for task in still_running)},
                )
        client, self._redis = self._redis, None
        if client is not None:
            await self._close_client(client)

    async def _close_client(self, client: Any) -> None:
        from redis.exceptions import RedisError

        try:
            async with asyncio.timeout(self.STOP_TIMEOUT):
                await client.aclose()
        except (TimeoutError, RedisError, OSError) as exc:
            logger.warning("event_bus_close_failed", extra={"error": mask_secrets(str(exc))})

    async def health(self) -> Health:
        """From the reader's own state, so it answers at once even while Redis hangs."""
        if self._redis is None:
            return Health(State.STOPPED)
        if self._reader is None or self._reader.done():
            return Health(State.FAILED, "stream reader stopped", self.last_error)
        if self._outage is not None:
            down_for = time.monotonic() - (self._outage_since or time.monotonic())
            return Health(
                State.DEGRADED,
                f"Redis at {self.where} unreachable for {down_for:.0f} s, retrying",
                self._outage,
            )
        return Health(State.RUNNING, f"backlog {self.backlog()}", self.last_error)

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "malformed": self.malformed,
            "read_failures": self.read_failures,
            "redis": "unreachable" if self._outage is not None else "ok",
        }

    async def publish_event(self, event: Event) -> bool:
        if self._redis is None:
            return self._drop_unstarted(event)
        try:
            async with asyncio.timeout(self.settings.publish_timeout):
                with self._redis_errors("cannot publish to Redis"):
                    await self._redis.xadd(
                        self.settings.stream,
                        {"event": event.to_json()},
                        maxlen=self.settings.buffer_size,
                        approximate=True,
                    )
        except (TimeoutError, EventBusError) as exc:
            self.last_error = str(exc) or f"no answer within {self.settings.publish_timeout:g} s"
            self._count_dropped("redis_unavailable")
            logger.warning(
                "event_dropped", extra={"event_type": event.type, "error": self.last_error}
            )
            return False
        self._count_published(event)
        return True

    @contextmanager
    def _redis_errors(self, doing: str) -> Iterator[None]:
        """The one place where redis-py errors become ours, the URL's password masked."""
        from redis.exceptions import RedisError

        try:
            yield
        except (RedisError, OSError) as exc:
            reason = mask_secrets(f"{type(exc).__name__}: {exc}")
            raise EventBusError(f"{doing} at {self.where}: {reason}") from exc

    async def _read(self) -> None:
        """Read the stream for ever: outages are retried with backoff, bad entries skipped."""
        retry_in = self.RETRY_FIRST
        while True:
            try:
                with self._redis_errors("cannot read the stream"):
                    answer = await self._redis.xread(
                        {self.settings.stream: self._last_id}, count=500, block=1000
                    )
            except EventBusError as exc:
                self._read_failed(str(exc))
                await asyncio.sleep(retry_in * random.uniform(0.8, 1.2))
                retry_in = min(retry_in * 2, self.RETRY_MAX)
                continue
            if self._outage is not None:
                logger.info("event_bus_redis_recovered", extra={"redis": self.where})
                self._outage = self._outage_since = None
            retry_in = self.RETRY_FIRST
            for _stream, entries in answer or ():
                for entry_id, fields in entries:
                    self._last_id = entry_id.decode()
                    event = self._decode(self._last_id, fields)
                    if event is not None:
                        await self._pending.put(event)

    def _read_failed(self, reason: str) -> None:
        self.read_failures += 1
        self.last_error = reason
        if self._outage is None:
            self._outage_since = time.monotonic()
            logger.warning("event_bus_redis_unreachable", extra={"error": reason})
        self._outage = reason

    def _decode(self, entry_id: str, fields: dict[bytes, bytes]) -> Event | None:
        """The entry's event, or None (logged and counted) when it is not one of ours."""
        try:
            return Event.from_json(fields[b"event"])
        except (KeyError, ValueError, TypeError) as exc:
            # Another writer, an older version or a hand-made XADD: skip it, keep reading.
            self.malformed += 1
            self._count_dropped("malformed")
            logger.warning(
                "event_malformed",
                extra={"entry_id": entry_id, "stream": self.settings.stream,
                       "error": f"{type(exc).__name__}: {exc}"},
            )
            return None

    async def _work(self) -> None:
        while True:
            event = await self._pending.get()
            try:
                await self._dispatch(event)
            finally:
                self._pending.task_done()

    async def purge(self) -> int:
        count = 0
        while not self._pending.empty():
            self._pending.get_nowait()
            self._pending.task_done()
            count += 1
        if self._redis is not None:
            with self._redis_errors("cannot purge the stream"):
                unread = await self._redis.xrange(self.settings.stream, min=f"({self._last_id}")
                count += len(unread)
                await self._redis.xtrim(self.settings.stream, maxlen=0)
            if unread:
                self._last_id = unread[-1][0].decode()
        self._count_dropped("purged", count)
        logger.info("events_purged", extra={"count": count})
        return count

    def backlog(self) -> int:
        return self._pending.qsize()


def build_event_bus(settings: EventBusSettings) -> EventBus:
    if settings.backend == "redis":
        return RedisEventBus(settings)
    return MemoryEventBus(settings)
