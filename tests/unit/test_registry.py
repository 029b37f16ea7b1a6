import asyncio
import time
from typing import Any

import pytest

from email_sender.errors import ConfigError
from email_sender.managers import Health, Registry, State


class Recorder:
    def __init__(self, name: str, log: list[str], *, depends_on: tuple[str, ...] = (),
                 fail: bool = False) -> None:
        self.name = name
        self.depends_on = depends_on
        self.log = log
        self.fail = fail

    async def start(self) -> None:
        if self.fail:
            raise RuntimeError(f"{self.name} cannot start")
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")

    async def health(self) -> Health:
        return Health(State.RUNNING)

    def info(self) -> dict[str, Any]:
        return {}


async def test_starts_in_dependency_order_and_stops_in_reverse() -> None:
    log: list[str] = []
    registry = Registry([
        Recorder("api", log, depends_on=("email_sender", "database")),
        Recorder("email_sender", log, depends_on=("database", "event_bus")),
        Recorder("event_bus", log),
        Recorder("database", log),
    ])
    await registry.start()
    await registry.stop()
    assert log == [
        "start database",
        "start event_bus",
        "start email_sender",
        "start api",
        "stop api",
        "stop email_sender",
        "stop event_bus",
        "stop database",
    ]


async def test_a_failing_manager_is_isolated_and_marks_its_dependents() -> None:
    log: list[str] = []
    registry = Registry([
        Recorder("database", log),
        Recorder("qdrant_manager", log, fail=True),
        Recorder("vector_processor", log, depends_on=("qdrant_manager",)),
        Recorder("email_sender", log, depends_on=("database",)),
    ])
    await registry.start()
    states = {status.name: status.state for status in registry.statuses()}
    assert states == {
        "database": State.RUNNING,
        "qdrant_manager": State.FAILED,
        "vector_processor": State.FAILED,
        "email_sender": State.RUNNING,
    }
    assert "cannot start" in (registry.status("qdrant_manager").last_error or "")
    assert "dependency not running: qdrant_manager" in (
        registry.status("vector_processor").last_error or ""
    )
    await registry.stop()
    assert "stop qdrant_manager" not in log


async def test_restart_failed_starts_them_again() -> None:
    log: list[str] = []
    flaky = Recorder("qdrant_manager", log, fail=True)
    registry = Registry([flaky, Recorder("vector_processor", log, depends_on=("qdrant_manager",))])
    await registry.start()
    flaky.fail = False
    assert await registry.restart_failed() == ["qdrant_manager", "vector_processor"]
    assert all(status.state == State.RUNNING for status in registry.statuses())
    await registry.stop()


def test_cycles_and_unknown_dependencies_are_config_errors() -> None:
    log: list[str] = []
    with pytest.raises(ConfigError, match="cycle"):
        Registry([Recorder("a", log, depends_on=("b",)),
                  Recorder("b", log, depends_on=("a",))]).order()
    with pytest.raises(ConfigError, match="unknown manager 'ghost'"):
        Registry([Recorder("a", log, depends_on=("ghost",))]).order()
    with pytest.raises(ConfigError, match="registered twice"):
        Registry([Recorder("a", log), Recorder("a", log)])


class Stubborn(Recorder):
    """Start, stop or health that swallow every cancellation and end only when released."""

    def __init__(self, name: str, log: list[str], *, hang: str) -> None:
        super().__init__(name, log)
        self.hang = hang
        self.released = asyncio.Event()

    async def _hang(self) -> None:
        while not self.released.is_set():
            try:
                await self.released.wait()
            except asyncio.CancelledError:
                continue

    async def start(self) -> None:
        if self.hang == "start":
            await self._hang()
        await super().start()

    async def stop(self) -> None:
        if self.hang == "stop":
            await self._hang()
        await super().stop()

    async def health(self) -> Health:
        if self.hang == "health":
            await self._hang()
        return Health(State.RUNNING)


async def test_a_stop_that_ignores_cancellation_is_given_up_on_in_time() -> None:
    log: list[str] = []
    stubborn = Stubborn("stubborn", log, hang="stop")
    registry = Registry([Recorder("database", log), stubborn], stop_timeout=0.3)
    await registry.start()
    started = time.monotonic()
    await registry.stop()
    elapsed = time.monotonic() - started
    stopped = list(log)
    stubborn.released.set()
    await asyncio.sleep(0.01)
    assert elapsed < 2.0
    assert registry.status("stubborn").state == State.FAILED
    assert "stop:stubborn gave no answer in 0.3 s" in (registry.status("stubborn").last_error or "")
    assert stopped[-1] == "stop database"  # the next one still stopped


async def test_a_start_that_hangs_fails_within_start_timeout() -> None:
    log: list[str] = []
    stubborn = Stubborn("stubborn", log, hang="start")
    registry = Registry([stubborn], start_timeout=0.3)
    started = time.monotonic()
    await registry.start()
    assert time.monotonic() - started < 2.0
    stubborn.released.set()
    await asyncio.sleep(0.01)
    assert registry.status("stubborn").state == State.FAILED
    assert "gave no answer" in (registry.status("stubborn").last_error or "")


async def test_a_hanging_health_probe_answers_in_budget_then_fails_the_manager() -> None:
    log: list[str] = []
    stubborn = Stubborn("stubborn", log, hang="none")
    registry = Registry([stubborn], probe_timeout=0.5)
    await registry.start()
    stubborn.hang = "health"
    started = time.monotonic()
    await registry.refresh(budget=0.1)
    assert time.monotonic() - started < 0.4
    assert registry.status("stubborn").state == State.RUNNING  # last known, not waited for
    await asyncio.sleep(0.5)
    await registry.refresh(budget=0.1)
    assert registry.status("stubborn").state == State.FAILED
    assert "health probe gave no answer in 0.5 s" in (registry.status("stubborn").last_error or "")
    stubborn.released.set()
    await registry.stop()


async def test_failed_starts_back_off_exponentially_up_to_a_cap() -> None:
    log: list[str] = []
    flaky = Recorder("event_bus", log, fail=True)
    dependent = Recorder("email_sender", log, depends_on=("event_bus",))
    registry = Registry([flaky, dependent], retry_initial=0.25, retry_max=1.0)
    await registry.start()
    delays = []
    for _ in range(4):
        status = registry.status("event_bus")
        assert status.next_retry_at is not None
        delays.append(round(status.next_retry_at - status.since, 2))
        assert await registry.restart_due() == []  # not due yet
        await asyncio.sleep((registry.next_retry_in() or 0.0) + 0.01)
        assert await registry.restart_due() == ["event_bus"]  # the blocked one waits for it
    assert delays == [0.25, 0.5, 1.0, 1.0]
    assert registry.status("event_bus").start_failures == 5
    assert registry.status("email_sender").last_error == "dependency not running: event_bus"

    flaky.fail = False
    await asyncio.sleep((registry.next_retry_in() or 0) + 0.01)
    assert await registry.restart_due() == ["event_bus", "email_sender"]
    assert {status.name: status.state for status in registry.statuses()} == {
        "event_bus": State.RUNNING, "email_sender": State.RUNNING}
    assert registry.status("event_bus").start_failures == 0
    assert registry.next_retry_in() is None
    await registry.stop()


async def test_a_manager_failing_while_running_is_stopped_and_started_again() -> None:
    log: list[str] = []

    class Crashing(Recorder):
        healthy = True

        async def health(self) -> Health:
            return Health(State.RUNNING if self.healthy else State.FAILED, "", "reader died")

    crashing = Crashing("event_bus", log)
    registry = Registry([crashing])
    registry.retry_initial = 0.05
    await registry.start()
    assert registry.next_retry_in() is None
    crashing.healthy = False
    await registry.refresh()
    assert registry.status("event_bus").state == State.FAILED
    # The heartbeat restarts what next_retry_in() says is due: a backoff, as after a failed start.
    wait = registry.next_retry_in()
    assert wait is not None and 0 < wait <= 0.05
    assert await registry.restart_due() == []
    crashing.healthy = True
    await asyncio.sleep(wait + 0.01)
    assert registry.next_retry_in() == 0.0
    assert await registry.restart_due() == ["event_bus"]
    assert log == ["start event_bus", "stop event_bus", "start event_bus"]
    assert registry.status("event_bus").state == State.RUNNING
    await registry.stop()
