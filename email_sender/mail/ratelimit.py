"""Per-relay rate limits: the :class:`RateLimiter` interface and its two token buckets.

:class:`LocalTokenBucket` holds within one process. :class:`SharedTokenBucket` holds across every
process sharing the database: each relay has one token bucket row (``rate_buckets``), capacity
one second of tokens, refilled at ``rate_per_second``. A process takes tokens in small chunks and
spends them locally, so the database sees one write per chunk, not per email; the sum over
processes still never exceeds the bucket.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import select, update

from email_sender.db.engine import Database
from email_sender.db.schema import rate_buckets
from email_sender.errors import DuplicateKey

_TOKEN_EPSILON = 1e-9


@runtime_checkable
class RateLimiter(Protocol):
    async def acquire(self, relay: str) -> None: ...


@dataclass
class _Bucket:
    tokens: float
    updated: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class LocalTokenBucket:
    """An in-process token bucket per relay.

    ``rate_per_second`` is one rate for every relay, or a rate per relay name; a rate of 0 (or a
    relay missing from the mapping) is unlimited. ``burst`` tokens are available at once.
    """

    def __init__(
        self,
        rate_per_second: float | Mapping[str, float],
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if burst < 1:
            raise ValueError("burst must be >= 1")
        self._rates = rate_per_second
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[str, _Bucket] = {}
        self.granted: Counter[str] = Counter()
        self.waited: Counter[str] = Counter()

    def rate_for(self, relay: str) -> float:
        if isinstance(self._rates, Mapping):
            return float(self._rates.get(relay, 0.0))
        return float(self._rates)

    async def acquire(self, relay: str) -> None:
        """Wait until ``relay`` has a token, then take it."""
        rate = self.rate_for(relay)
        if rate > 0:
            await self._take(relay, rate)
        self.granted[relay] += 1

    async def _take(self, relay: str, rate: float) -> None:
        bucket = self._buckets.get(relay)
        if bucket is None:
            bucket = self._buckets[relay] = _Bucket(tokens=float(self.burst), updated=self._clock())
        # Waiters queue on the lock, so tokens go out in arrival order.
        async with bucket.lock:
            while True:
                now = self._clock()
                bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * rate)
                bucket.updated = now
                # The tolerance absorbs float rounding of elapsed * rate, which would otherwise
                # leave 0.999... tokens and a wait too short for the clock to move.
                if bucket.tokens >= 1.0 - _TOKEN_EPSILON:
                    bucket.tokens -= 1.0
                    return
                self.waited[relay] += 1
                await self._sleep((1.0 - bucket.tokens) / rate)


class SharedTokenBucket:
    """A :class:`RateLimiter` backed by the SQL database."""

    def __init__(
        self, db: Database, rates: Mapping[str, float], *, chunk_seconds: float = 0.1
    ) -> None:
        self.db = db
        self.rates = dict(rates)
        self.chunk_seconds = chunk_seconds
        self._local: Counter[str] = Counter()
        self._locks: dict[str, asyncio.Lock] = {}
        self._known: set[str] = set()
        self.granted: Counter[str] = Counter()
        self.taken_from_db: Counter[str] = Counter()

    async def acquire(self, relay: str) -> None:
        rate = self.rates.get(relay, 0.0)
        if rate > 0:
            lock = self._locks.setdefault(relay, asyncio.Lock())
            async with lock:
                while self._local[relay] < 1:
                    granted, wait = await self._take(relay, rate)
                    self._local[relay] += granted
                    if granted == 0:
                        await asyncio.sleep(wait)
                self._local[relay] -= 1
        self.granted[relay] += 1

    async def _take(self, relay: str, rate: float) -> tuple[int, float]:
        """Take up to one chunk of whole tokens; answer (taken, seconds to wait when none)."""
        capacity = max(1.0, rate)
        wanted = max(1, math.floor(rate * self.chunk_seconds))
        query = select(rate_buckets).where(rate_buckets.c.relay == relay)
        if self.db.dialect == "postgresql":
            query = query.with_for_update()
        if relay not in self._known:
            await self._create(relay, capacity)
        async with self.db.transaction() as connection:
            row = (await connection.execute(query)).one()
            # Read the clock once the row is ours: a time taken before waiting for the lock
            # could be older than the last writer's and would refill one interval twice.
            now = max(time.time(), row.updated_at)
            tokens = min(capacity, row.tokens + (now - row.updated_at) * rate)
            granted = min(wanted, math.floor(tokens))
            await connection.execute(
                update(rate_buckets).where(rate_buckets.c.relay == relay)
                .values(tokens=tokens - granted, updated_at=now)
            )
        self.taken_from_db[relay] += granted
        return granted, (1.0 - (tokens - granted)) / rate if granted == 0 else 0.0

    async def _create(self, relay: str, capacity: float) -> None:
        """Make the relay's bucket row, full, unless another process made it first."""
        try:
            async with self.db.transaction() as connection:
                await connection.execute(
                    rate_buckets.insert().values(
                        relay=relay, tokens=capacity, updated_at=time.time()
                    )
                )
        except DuplicateKey:
            pass
        self._known.add(relay)
