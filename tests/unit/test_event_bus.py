import asyncio

from email_sender.events import Event, MemoryEventBus
from email_sender.settings import EventBusSettings


def bus(**values: object) -> MemoryEventBus:
    return MemoryEventBus(EventBusSettings(**values))


async def test_subscribers_by_type_and_star() -> None:
    events = bus(workers=1)
    seen_type: list[str] = []
    seen_all: list[str] = []

    async def on_sent(event: Event) -> None:
        seen_type.append(event.data["id"])

    async def on_any(event: Event) -> None:
        seen_all.append(event.type)

    events.subscribe("email.sent", on_sent)
    events.subscribe("*", on_any)
    await events.start()
    await events.publish("email.sent", id="a")
    await events.publish("email.failed", id="b")
    await events.stop()
    assert seen_type == ["a"]
    assert sorted(seen_all) == ["email.failed", "email.sent"]
    stats = events.stats()
    assert stats["published"] == 2
    assert stats["delivered"] == 3
    assert stats["dropped"] == 0


async def test_full_buffer_drops_after_a_bounded_wait_and_counts_it() -> None:
    events = bus(buffer_size=2, workers=1, publish_timeout=0.05)
    release = asyncio.Event()

    async def slow(event: Event) -> None:
        await release.wait()

    events.subscribe("*", slow)
    await events.start()
    results = [await events.publish("tick", n=n) for n in range(6)]
    # One event is held by the worker, two fill the buffer, the rest are dropped.
    assert results.count(True) == 3
    assert results.count(False) == 3
    assert events.stats()["dropped"] == 3
    release.set()
    await events.stop()


async def test_purge_drops_pending_and_says_how_many() -> None:
    events = bus(buffer_size=100, workers=1)
    release = asyncio.Event()
    handled: list[int] = []

    async def slow(event: Event) -> None:
        await release.wait()
        handled.append(event.data["n"])

    events.subscribe("*", slow)
    await events.start()
    for n in range(10):
        await events.publish("tick", n=n)
    await asyncio.sleep(0.01)  # the worker takes the first one
    assert events.backlog() == 9
    assert await events.purge() == 9
    assert events.backlog() == 0
    release.set()
    await events.stop()
    assert handled == [0]
    assert events.stats()["purged"] == 9


async def test_workers_run_handlers_concurrently() -> None:
    events = bus(workers=4)
    running = 0
    peak = 0

    async def handler(event: Event) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1

    events.subscribe("*", handler)
    await events.start()
    for n in range(8):
        await events.publish("tick", n=n)
    await events.stop()
    assert peak == 4


async def test_a_failing_handler_is_counted_and_does_not_stop_others() -> None:
    events = bus(workers=1)
    seen: list[int] = []

    async def broken(event: Event) -> None:
        raise RuntimeError("boom")

    async def fine(event: Event) -> None:
        seen.append(event.data["n"])

    events.subscribe("tick", broken)
    events.subscribe("tick", fine)
    await events.start()
    await events.publish("tick", n=1)
    await events.stop()
    assert seen == [1]
    assert events.stats()["handler_errors"] == 1


async def test_start_stop_are_repeatable_and_bounded_with_a_stuck_handler() -> None:
    events = bus(workers=2)
    events.DRAIN_TIMEOUT = 0.2
    events.STOP_TIMEOUT = 2.0
    before = set(asyncio.all_tasks())
    stuck = asyncio.Event()
    seen: list[int] = []

    async def handler(event: Event) -> None:
        seen.append(event.data["n"])
        if event.data["n"] == 0:
            await stuck.wait()  # never set: stop must not wait for it for ever

    events.subscribe("*", handler)
    await events.start()
    await events.start()  # a second start replaces the workers, it does not add to them
    assert len(events._workers) == 2
    await events.publish("tick", n=0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await events.stop()
    assert loop.time() - started < 3.0
    await events.stop()
    assert {task for task in asyncio.all_tasks() if not task.done()} - before == set()
    await events.start()
    await events.publish("tick", n=1)
    await events.stop()
    assert seen == [0, 1]
    assert {task for task in asyncio.all_tasks() if not task.done()} - before == set()


async def test_a_stopped_bus_drops_and_counts_what_is_published() -> None:
    events = bus()
    assert await events.publish("email.accepted", id="before-start") is False
    await events.start()
    assert await events.publish("email.accepted", id="while-running") is True
    await events.stop()
    assert await events.publish("email.accepted", id="after-stop") is False
    assert events.stats()["dropped"] == 2
    assert (await events.health()).state == "stopped"
