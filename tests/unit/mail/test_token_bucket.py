"""LocalTokenBucket with an injected clock: tokens granted and waits, never wall-clock time."""

from __future__ import annotations

import asyncio

import pytest

from email_sender.mail.ratelimit import LocalTokenBucket, RateLimiter


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def bucket(rate: float | dict[str, float], burst: int, time: FakeTime) -> LocalTokenBucket:
    return LocalTokenBucket(rate, burst, clock=time.clock, sleep=time.sleep)


async def test_burst_then_one_token_per_interval() -> None:
    time = FakeTime()
    limiter = bucket(5.0, 3, time)
    for _ in range(7):
        await limiter.acquire("relay-a")
    assert limiter.granted["relay-a"] == 7
    assert limiter.waited["relay-a"] == 4
    assert time.slept == pytest.approx([0.2] * 4)


async def test_tokens_refill_while_idle_up_to_the_burst() -> None:
    time = FakeTime()
    limiter = bucket(1.0, 2, time)
    await limiter.acquire("r")
    await limiter.acquire("r")
    time.now += 100.0  # a long pause refills only up to the burst
    for _ in range(3):
        await limiter.acquire("r")
    assert limiter.waited["r"] == 1


async def test_relays_have_separate_buckets_and_rates() -> None:
    time = FakeTime()
    limiter = bucket({"slow": 1.0, "fast": 100.0}, 1, time)
    await asyncio.gather(*(limiter.acquire(name) for name in ["slow", "slow", "fast", "fast"]))
    await limiter.acquire("unlisted")
    assert limiter.granted == {"slow": 2, "fast": 2, "unlisted": 1}
    assert limiter.waited["slow"] == 1
    assert limiter.waited["fast"] == 1
    assert limiter.waited["unlisted"] == 0
    assert sorted(time.slept) == pytest.approx([0.01, 1.0])


async def test_zero_rate_is_unlimited() -> None:
    time = FakeTime()
    limiter = bucket(0.0, 1, time)
    for _ in range(50):
        await limiter.acquire("r")
    assert limiter.granted["r"] == 50
    assert time.slept == []


async def test_concurrent_waiters_each_get_one_token() -> None:
    time = FakeTime()
    limiter = bucket(10.0, 1, time)
    await asyncio.gather(*(limiter.acquire("r") for _ in range(5)))
    assert limiter.granted["r"] == 5
    assert sum(time.slept) == pytest.approx(0.4)


def test_is_a_rate_limiter_and_checks_burst() -> None:
    assert isinstance(LocalTokenBucket(1.0), RateLimiter)
    with pytest.raises(ValueError):
        LocalTokenBucket(1.0, burst=0)
