"""Relay rate limits hold across processes that share the database (here: two engines)."""

import asyncio
import time

from email_sender.db.engine import Database
from email_sender.mail.ratelimit import SharedTokenBucket


async def test_the_limit_holds_across_two_processes(database_url: str) -> None:
    rate = 40.0
    first, second = Database(database_url), Database(database_url, migrate=False)
    await first.start()
    await second.start()
    buckets = [SharedTokenBucket(first, {"relay:25": rate}),
               SharedTokenBucket(second, {"relay:25": rate})]
    started = time.monotonic()
    deadline = started + 1.5

    async def hammer(bucket: SharedTokenBucket) -> None:
        while time.monotonic() < deadline:
            await bucket.acquire("relay:25")

    try:
        await asyncio.gather(*(hammer(bucket) for bucket in buckets for _ in range(4)))
    finally:
        await second.stop()
        await first.stop()
    elapsed = time.monotonic() - started
    granted = sum(bucket.granted["relay:25"] for bucket in buckets)
    taken = sum(bucket.taken_from_db["relay:25"] for bucket in buckets)
    # Never more than the full bucket (one second of tokens) plus what refilled meanwhile.
    assert granted <= taken <= rate + rate * elapsed + 1, (granted, taken, elapsed)
    # Both processes got a share, and the limiter did let traffic through.
    assert all(bucket.granted["relay:25"] > 0 for bucket in buckets)
    assert granted >= rate  # at least the first full bucket


async def test_unlimited_relays_never_touch_the_database(database_url: str) -> None:
    database = Database(database_url)
    await database.start()
    bucket = SharedTokenBucket(database, {"relay:25": 0.0})
    try:
        for _ in range(100):
            await bucket.acquire("relay:25")
        await bucket.acquire("other:25")
    finally:
        await database.stop()
    assert bucket.granted["relay:25"] == 100
    assert sum(bucket.taken_from_db.values()) == 0
