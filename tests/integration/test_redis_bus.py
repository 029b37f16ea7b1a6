"""The Redis Streams bus against the real Redis: fan-out across two buses, stats, purge."""

import asyncio
import uuid

import pytest

from email_sender.events import Event, RedisEventBus
from email_sender.settings import EventBusSettings
from tests.conftest import REDIS_URL, service_absent

pytestmark = pytest.mark.redis


async def _bus(stream: str) -> RedisEventBus:
    bus = RedisEventBus(EventBusSettings(backend="redis", redis_url=REDIS_URL, stream=stream))
    return bus


@pytest.fixture
async def stream() -> str:
    import redis.asyncio as redis

    client = redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (OSError, redis.ConnectionError) as exc:
        service_absent(f"Redis at {REDIS_URL}", exc)
    finally:
        await client.aclose()
    return f"test:{uuid.uuid4().hex}"


async def test_events_fan_out_to_every_process(stream: str) -> None:
    one, two = await _bus(stream), await _bus(stream)
    got_one: list[str] = []
    got_two: list[str] = []

    async def on_one(event: Event) -> None:
        got_one.append(event.data["id"])

    async def on_two(event: Event) -> None:
        got_two.append(event.data["id"])

    one.subscribe("email.sent", on_one)
    two.subscribe("*", on_two)
    await one.start()
    await two.start()
    try:
        for n in range(5):
            assert await one.publish("email.sent", id=str(n))
        for _ in range(100):
            if len(got_one) == 5 and len(got_two) == 5:
                break
            await asyncio.sleep(0.05)
        assert sorted(got_one) == sorted(got_two) == ["0", "1", "2", "3", "4"]
        assert one.stats()["published"] == 5
        assert (await one.health()).state.value == "running"
    finally:
        await one.stop()
        await two.stop()
        import redis.asyncio as redis

        client = redis.from_url(REDIS_URL)
        await client.delete(stream)
        await client.aclose()


async def test_unreachable_redis_is_a_clear_error() -> None:
    from email_sender.errors import EventBusError

    bus = RedisEventBus(EventBusSettings(backend="redis", redis_url="redis://127.0.0.1:1/0"))
    with pytest.raises(EventBusError, match=r"cannot reach Redis at redis://127.0.0.1:1/0"):
        await bus.start()
