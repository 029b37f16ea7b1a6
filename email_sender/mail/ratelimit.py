"""Per-relay rate limits that hold across every process sharing the database.

Each relay has one token bucket row (``rate_buckets``): capacity one second of tokens, refilled
at ``rate_per_second``. A process takes tokens in small chunks and spends them locally, so the
database sees one write per chunk, not per email; the sum over processes still never exceeds
the bucket.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Mapping

from sqlalchemy import select, update

from email_sender.db.engine import Database
from email_sender.db.schema import rate_buckets
from email_sender.errors import DuplicateKey


class SharedTokenBucket:
    """A RateLimiter (see ``mail.transport``) backed by the SQL database."""

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
