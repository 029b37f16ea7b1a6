"""The Redis Streams bus against the real Redis: fan-out, malformed entries, outages (through a
fault proxy), restarts, and errors that never show the password."""

import asyncio
import logging
import time
import traceback
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

from email_sender.errors import EventBusError
from email_sender.events import Event, RedisEventBus
from email_sender.managers import State
from email_sender.settings import EventBusSettings
from tests.conftest import REDIS_URL, service_absent, wait_for
from tests.support.faultproxy import FaultProxy

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
    bus = RedisEventBus(EventBusSettings(backend="redis", redis_url="redis://127.0.0.1:1/0"))
    with pytest.raises(EventBusError, match=r"cannot reach Redis at redis://127.0.0.1:1/0"):
        await bus.start()


CANARY = "canary-s3cr3t-XYZ"


def _redis_address() -> tuple[str, int]:
    parts = urlsplit(REDIS_URL)
    return parts.hostname or "127.0.0.1", parts.port or 6379


async def _cleanup(stream: str) -> None:
    import redis.asyncio as redis

    client = redis.from_url(REDIS_URL)
    await client.delete(stream)
    await client.aclose()


def _text(entry_id: bytes | str) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


def _other_tasks(before: set[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if task not in before and not task.done()}


async def test_a_malformed_entry_is_skipped_logged_and_counted(
    stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    import redis.asyncio as redis

    bus = await _bus(stream)
    got: list[str] = []

    async def on_any(event: Event) -> None:
        got.append(event.data["id"])

    bus.subscribe("*", on_any)
    client = redis.from_url(REDIS_URL)
    await bus.start()
    try:
        with caplog.at_level(logging.WARNING, logger="email_sender.events"):
            assert await bus.publish("email.sent", id="before")
            malformed: list[dict[Any, Any]] = [
                {"other": "field"},  # no event at all
                {"event": "{not json"},
                {"event": '["a", "list"]'},
                {"event": '{"type": "x", "unknown_key": 1}'},
                {"event": b"\xff\xfe"},  # not UTF-8
            ]
            bad_ids = [_text(await client.xadd(stream, fields)) for fields in malformed]
            assert await bus.publish("email.sent", id="after"), bus.last_error
            await wait_for(lambda: len(got) == 2, timeout=30)
        assert got == ["before", "after"]
        assert bus.malformed == 5
        assert bus.stats()["malformed"] == 5
        assert (await bus.health()).state == State.RUNNING
        logged = [r for r in caplog.records if getattr(r, "event", r.msg) == "event_malformed"]
        assert [record.entry_id for record in logged] == bad_ids  # type: ignore[attr-defined]
        assert all(record.levelno == logging.WARNING for record in logged)
    finally:
        await bus.stop()
        await client.aclose()
        await _cleanup(stream)


@pytest.mark.parametrize("fault", ["refuse", "hang"])
async def test_start_with_redis_down_fails_fast_and_a_later_start_works(
    stream: str, fault: str
) -> None:
    host, port = _redis_address()
    with FaultProxy(host, port) as proxy:
        getattr(proxy, fault)()
        bus = RedisEventBus(
            EventBusSettings(backend="redis", redis_url=proxy.route(REDIS_URL), stream=stream)
        )
        before = set(asyncio.all_tasks())
        for _ in range(2):  # failing again is as clean as failing once
            started = time.monotonic()
            with pytest.raises(EventBusError, match="cannot reach Redis"):
                await bus.start()
            assert time.monotonic() - started < RedisEventBus.CONNECT_TIMEOUT + 3.0
            assert _other_tasks(before) == set()
            assert (await bus.health()).state == State.STOPPED
        proxy.pass_through()
        got: list[str] = []

        async def on_any(event: Event) -> None:
            got.append(event.data["id"])

        bus.subscribe("*", on_any)
        await bus.start()
        try:
            assert (await bus.health()).state == State.RUNNING
            assert await bus.publish("email.sent", id="1")
            await wait_for(lambda: got == ["1"], timeout=30)
        finally:
            await bus.stop()
            await bus.stop()  # stopping twice is harmless
        assert _other_tasks(before) == set()
        await _cleanup(stream)


async def test_redis_going_away_mid_run_degrades_then_heals(stream: str) -> None:
    host, port = _redis_address()
    with FaultProxy(host, port) as proxy:
        bus = RedisEventBus(
            EventBusSettings(
                backend="redis", redis_url=proxy.route(REDIS_URL), stream=stream,
                publish_timeout=1.0,
            )
        )
        got: list[str] = []

        async def on_any(event: Event) -> None:
            got.append(event.data["id"])

        bus.subscribe("*", on_any)
        await bus.start()
        try:
            assert await bus.publish("email.sent", id="before")
            await wait_for(lambda: got == ["before"], timeout=30)

            proxy.refuse(drop_existing=True)

            async def degraded() -> bool:
                return (await bus.health()).state == State.DEGRADED

            await wait_for(degraded, timeout=30)
            health = await bus.health()
            assert "unreachable" in health.detail
            assert health.last_error and "cannot read the stream" in health.last_error
            assert not await bus.publish("email.sent", id="lost")
            assert bus.stats()["dropped"] == 1
            assert bus.read_failures >= 1
            reader = bus._reader
            assert reader is not None and not reader.done()

            proxy.pass_through()

            async def running() -> bool:
                return (await bus.health()).state == State.RUNNING

            await wait_for(running, timeout=30)
            assert await bus.publish("email.sent", id="after"), bus.last_error
            await wait_for(lambda: got == ["before", "after"], timeout=30)
        finally:
            await bus.stop()
            await _cleanup(stream)


async def test_event_bus_errors_never_show_the_redis_password() -> None:
    bus = RedisEventBus(
        EventBusSettings(backend="redis", redis_url=f"redis://user:{CANARY}@127.0.0.1:1/0")
    )
    with pytest.raises(EventBusError) as caught:
        await bus.start()
    chain = "".join(traceback.format_exception(caught.value))
    assert "redis://user:**********@127.0.0.1:1/0" in str(caught.value)
    assert CANARY not in chain
    assert CANARY not in repr(bus.settings) + str(bus.stats()) + str(await bus.health())
