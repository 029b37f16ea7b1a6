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
