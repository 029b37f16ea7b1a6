"""Managers: the long-lived components of a node, and the registry that runs them.

A manager has a ``name``, the names it ``depends_on``, ``start()``, ``stop()``, ``health()`` and
``info()``. The registry starts managers in dependency order and stops them in reverse. A manager
whose start fails is marked failed with its error; the others go on (those that depend on it are
marked failed too, since they cannot run without it).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from email_sender.errors import ConfigError

logger = logging.getLogger(__name__)


class State(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    DEGRADED = "degraded"
    FAILED = "failed"
    STOPPING = "stopping"


@dataclass
class Health:
    """What a manager says of itself."""

    state: State
    detail: str = ""
    last_error: str | None = None


@runtime_checkable
class Manager(Protocol):
    name: str
    depends_on: tuple[str, ...]

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def health(self) -> Health: ...

    def info(self) -> dict[str, Any]: ...


@dataclass
class ManagerStatus:
    name: str
    state: State = State.STOPPED
    since: float = field(default_factory=time.time)
    last_error: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state.value,
            "since": self.since,
            "last_error": self.last_error,
            "detail": self.detail,
        }


class Registry:
    """Starts managers in dependency order, stops them in reverse, isolates failures."""

    def __init__(self, managers: Iterable[Manager] = (), *, start_timeout: float = 30.0) -> None:
        self._managers: dict[str, Manager] = {}
        self._status: dict[str, ManagerStatus] = {}
        self._started: list[str] = []
        self.start_timeout = start_timeout
        for manager in managers:
            self.add(manager)

    def add(self, manager: Manager) -> None:
        if manager.name in self._managers:
            raise ConfigError(f"manager {manager.name!r} registered twice")
        self._managers[manager.name] = manager
        self._status[manager.name] = ManagerStatus(manager.name)

    def get(self, name: str) -> Manager:
        return self._managers[name]

    def __contains__(self, name: object) -> bool:
        return name in self._managers

    @property
    def names(self) -> list[str]:
        return list(self._managers)

    def order(self) -> list[str]:
        """Names in start order: every manager after what it depends on."""
        ordered: list[str] = []
        visiting: set[str] = set()

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in ordered:
                return
            if name in visiting:
                raise ConfigError(f"managers depend on each other in a cycle: {' -> '.join(path)}")
            if name not in self._managers:
                raise ConfigError(f"manager {path[-2]!r} depends on unknown manager {name!r}")
            visiting.add(name)
            for dependency in self._managers[name].depends_on:
                visit(dependency, (*path, dependency))
            visiting.discard(name)
            ordered.append(name)

        for name in self._managers:
            visit(name, (name,))
        return ordered

    def _set(self, name: str, state: State, error: str | None = None) -> None:
        status = self._status[name]
        if status.state != state:
            status.state = state
            status.since = time.time()
        if error is not None:
            status.last_error = error

    async def start(self) -> None:
        for name in self.order():
            await self._start_one(name)

    async def _start_one(self, name: str) -> None:
        manager = self._managers[name]
        broken = [
            dependency
            for dependency in manager.depends_on
            if self._status[dependency].state not in (State.RUNNING, State.DEGRADED)
        ]
        if broken:
            self._set(name, State.FAILED, f"dependency not running: {', '.join(broken)}")
            logger.error("manager_blocked", extra={"manager": name, "dependencies": broken})
            return
        self._set(name, State.STARTING)
        try:
            await asyncio.wait_for(manager.start(), self.start_timeout)
        except Exception as exc:  # a manager's failure must not take the node down
            self._set(name, State.FAILED, _describe(exc))
            logger.exception("manager_start_failed", extra={"manager": name})
            return
        self._set(name, State.RUNNING)
        if name not in self._started:
            self._started.append(name)
        logger.info("manager_started", extra={"manager": name})

    async def stop(self) -> None:
        for name in reversed(self._started):
            self._set(name, State.STOPPING)
            try:
                await asyncio.wait_for(self._managers[name].stop(), self.start_timeout)
            except Exception as exc:
                self._set(name, State.FAILED, _describe(exc))
                logger.exception("manager_stop_failed", extra={"manager": name})
                continue
            self._set(name, State.STOPPED)
            logger.info("manager_stopped", extra={"manager": name})
        self._started.clear()

    async def restart_failed(self) -> list[str]:
        """Start again every manager that is failed, in dependency order; return their names."""
        restarted = []
        for name in self.order():
            if self._status[name].state == State.FAILED:
                if name in self._started:
                    try:
                        await self._managers[name].stop()
                    except Exception:
                        logger.exception("manager_stop_failed", extra={"manager": name})
                    self._started.remove(name)
                await self._start_one(name)
                restarted.append(name)
        return restarted

    async def refresh(self) -> None:
        """Ask every started manager for its health and record the answer."""
        for name in list(self._started):
            try:
                health = await asyncio.wait_for(self._managers[name].health(), 5.0)
            except Exception as exc:
                self._set(name, State.FAILED, _describe(exc))
                continue
            self._set(name, health.state, health.last_error)
            self._status[name].detail = health.detail

    def status(self, name: str) -> ManagerStatus:
        return self._status[name]

    def statuses(self) -> list[ManagerStatus]:
        return [self._status[name] for name in self._managers]

    def report(self) -> list[dict[str, Any]]:
        """Every manager's status with its info counters."""
        rows = []
        for status in self.statuses():
            row = status.as_dict()
            try:
                row["info"] = self._managers[status.name].info()
            except Exception as exc:
                row["info"] = {"error": _describe(exc)}
            rows.append(row)
        return rows


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"
