"""Managers: the long-lived components of a node, and the registry that runs them.

A manager has a ``name``, the names it ``depends_on``, ``start()``, ``stop()``, ``health()`` and
``info()``. The registry starts managers in dependency order and stops them in reverse. A manager
whose start fails is marked failed with its error; the others go on (those that depend on it are
marked failed too, "blocked", since they cannot run without it). Failed managers are started
again by ``restart_due`` with an exponential, capped backoff, so a node heals when what it
depends on comes back.

Every call into a manager is bounded (``run_bounded``): a start, stop or health probe that does
not answer in time is given up on, so no manager can hold a node's start, health or stop.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from email_sender.errors import ConfigError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The least a manager gets to stop once the overall stop deadline has passed: enough for a
# database pool to close on a loaded machine (50 ms was not), still bounded.
MIN_STOP_SECONDS = 0.5


class State(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    DEGRADED = "degraded"
    FAILED = "failed"
    STOPPING = "stopping"


# States in which a manager serves what depends on it.
USABLE = (State.RUNNING, State.DEGRADED)


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
    # Failed starts in a row, and when (epoch seconds) the next one is tried.
    start_failures: int = 0
    next_retry_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state.value,
            "since": self.since,
            "last_error": self.last_error,
            "detail": self.detail,
            "start_failures": self.start_failures,
            "next_retry_at": self.next_retry_at,
        }


async def run_bounded(awaitable: Awaitable[T], seconds: float, *, name: str = "bounded") -> T:
    """Await ``awaitable`` for at most ``seconds``; raise ``TimeoutError`` after that.

    It runs in a task of its own, and the caller waits on that task with ``asyncio.wait``, which
    returns at the deadline whatever the task does. ``asyncio.wait_for`` instead waits for the
    cancelled task to finish, and on Python 3.11 it can lose a cancellation that races with
    completion: one swallowed ``CancelledError`` and the caller hangs. Here a task that ignores
    its cancellation is left behind (and logged), never waited for.
    """
    task = asyncio.ensure_future(awaitable)
    task.set_name(name)
    try:
        done, _ = await asyncio.wait({task}, timeout=max(seconds, 0.0))
    except asyncio.CancelledError:
        task.cancel()
        task.add_done_callback(_reap)
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_reap)
        raise TimeoutError(f"{name} gave no answer in {seconds:g} s")
    return task.result()


def _reap(task: asyncio.Future[Any]) -> None:
    """Collect the outcome of a task given up on, so that it is logged rather than lost."""
    if not task.cancelled() and task.exception() is not None:
        logger.warning("abandoned_task_failed", extra={"error": _describe(task.exception())})


@dataclass
class _Probe:
    task: asyncio.Task[Health]
    started: float


class Registry:
    """Starts managers in dependency order, stops them in reverse, isolates failures, heals."""

    def __init__(
        self,
        managers: Iterable[Manager] = (),
        *,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        probe_timeout: float = 5.0,
        retry_initial: float = 1.0,
        retry_max: float = 60.0,
    ) -> None:
        self._managers: dict[str, Manager] = {}
        self._status: dict[str, ManagerStatus] = {}
        self._started: list[str] = []
        self._probes: dict[str, _Probe] = {}
        # Monotonic time at which each failed manager may be started again.
        self._retry_due: dict[str, float] = {}
        self._closing = False
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.probe_timeout = probe_timeout
        self.retry_initial = retry_initial
        self.retry_max = retry_max
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
        """Names in start order: every manager after what it depends on, else as added."""
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

    # Start, retry, stop

    async def start(self) -> None:
        self._closing = False
        for name in self.order():
            await self._start_one(name)

    def _blockers(self, name: str) -> list[str]:
        return [
            dependency
            for dependency in self._managers[name].depends_on
            if self._status[dependency].state not in USABLE
        ]

    async def _start_one(self, name: str) -> bool:
        manager = self._managers[name]
        status = self._status[name]
        blockers = self._blockers(name)
        if blockers:
            # No backoff of its own: it is tried again as soon as what it needs runs.
            self._set(name, State.FAILED, f"dependency not running: {', '.join(blockers)}")
            self._retry_due[name] = 0.0
            status.next_retry_at = None
            logger.error("manager_blocked", extra={"manager": name, "dependencies": blockers})
            return False
        self._set(name, State.STARTING)
        try:
            await run_bounded(manager.start(), self.start_timeout, name=f"start:{name}")
        except Exception as exc:  # a manager's failure must not take the node down
            delay = self._schedule_retry(name)
            self._set(name, State.FAILED, _describe(exc))
            logger.error(
                "manager_start_failed",
                extra={
                    "manager": name,
                    "error": _describe(exc),
                    "attempt": status.start_failures,
                    "retry_in_s": delay,
                },
            )
            return False
        if self._closing:
            # The node began to stop while this manager was starting: it must not outlive it.
            await self._stop_one(name, self.stop_timeout)
            return False
        status.start_failures = 0
        status.next_retry_at = None
        self._retry_due.pop(name, None)
        self._set(name, State.RUNNING)
        status.last_error = None
        if name not in self._started:
            self._started.append(name)
        logger.info("manager_started", extra={"manager": name})
        return True

    def _schedule_retry(self, name: str) -> float:
        """Count one more failure of ``name`` and set when it is tried again; answer the delay."""
        status = self._status[name]
        status.start_failures += 1
        delay = min(self.retry_max, self.retry_initial * 2 ** (status.start_failures - 1))
        self._retry_due[name] = time.monotonic() + delay
        status.next_retry_at = time.time() + delay
        return delay

    def _failed_while_running(self, name: str, error: str | None) -> None:
        """A started manager that its health says failed is restarted after a backoff too."""
        if self._status[name].state != State.FAILED or name not in self._retry_due:
            delay = self._schedule_retry(name)
            logger.error(
                "manager_failed", extra={"manager": name, "error": error, "retry_in_s": delay}
            )
        self._set(name, State.FAILED, error)

    def next_retry_in(self) -> float | None:
        """Seconds until a failed manager is due to be started again; None when none is."""
        now = time.monotonic()
        waits = [
            max(0.0, due - now)
            for name, due in self._retry_due.items()
            if self._status[name].state == State.FAILED and not self._blockers(name)
        ]
        return min(waits) if waits else None

    async def restart_due(self) -> list[str]:
        """Start again, in dependency order, every failed manager whose backoff has passed."""
        return await self._restart(only_due=True)

    async def restart_failed(self) -> list[str]:
        """Start again every failed manager now, backoff or not; return the names tried."""
        return await self._restart(only_due=False)

    async def _restart(self, *, only_due: bool) -> list[str]:
        tried = []
        for name in self.order():
            if self._closing:
                break
            if self._status[name].state != State.FAILED:
                continue
            if only_due and (
                self._blockers(name) or self._retry_due.get(name, 0.0) > time.monotonic()
            ):
                continue
            if name in self._started:
                # Failed while running (its health said so): stop what is left of it first.
                await self._stop_one(name, self.stop_timeout)
                self._started.remove(name)
            tried.append(name)
            await self._start_one(name)
        return tried

    async def stop(self, timeout: float | None = None) -> None:
        """Stop started managers in reverse order: each within ``stop_timeout``, all within
        ``timeout`` (when given; a manager still gets a moment once that has passed)."""
        self._closing = True
        for probe in self._probes.values():
            probe.task.cancel()
            probe.task.add_done_callback(_reap)
        self._probes.clear()
        deadline = None if timeout is None else time.monotonic() + timeout
        for name in reversed(self._started):
            bound = self.stop_timeout
            if deadline is not None:
                bound = min(bound, max(deadline - time.monotonic(), MIN_STOP_SECONDS))
            await self._stop_one(name, bound)
        self._started.clear()
        self._retry_due.clear()

    async def _stop_one(self, name: str, seconds: float) -> None:
        self._set(name, State.STOPPING)
        try:
            await run_bounded(self._managers[name].stop(), seconds, name=f"stop:{name}")
        except Exception as exc:
            self._set(name, State.FAILED, _describe(exc))
            logger.error("manager_stop_failed", extra={"manager": name, "error": _describe(exc)})
            return
        self._set(name, State.STOPPED)
        logger.info("manager_stopped", extra={"manager": name})

    # Health

    async def refresh(self, budget: float | None = None) -> None:
        """Probe every started manager at once and record the answers that come in ``budget``.

        A probe still running after ``budget`` goes on and the next refresh takes its answer, so
        a slow manager keeps its last known state instead of holding the caller; a probe still
        running after ``probe_timeout`` is given up on and its manager marked failed.
        """
        for name in self._started:
            if name not in self._probes:
                task = asyncio.create_task(self._managers[name].health(), name=f"health:{name}")
                self._probes[name] = _Probe(task, time.monotonic())
        if not self._probes:
            return
        probes = dict(self._probes)
        await asyncio.wait(
            [probe.task for probe in probes.values()],
            timeout=self.probe_timeout if budget is None else budget,
        )
        for name, probe in probes.items():
            if self._probes.get(name) is not probe:
                continue  # stopped or restarted meanwhile: this answer is about the old one
            if probe.task.done():
                del self._probes[name]
                self._record(name, probe.task)
            elif time.monotonic() - probe.started >= self.probe_timeout:
                del self._probes[name]
                probe.task.cancel()
                probe.task.add_done_callback(_reap)
                self._failed_while_running(
                    name, f"health probe gave no answer in {self.probe_timeout:g} s"
                )

    def _record(self, name: str, task: asyncio.Task[Health]) -> None:
        if name not in self._started:
            return
        if task.cancelled():
            self._failed_while_running(name, "health probe cancelled")
            return
        error = task.exception()
        if error is not None:
            self._failed_while_running(name, _describe(error))
            return
        health = task.result()
        if health.state == State.FAILED:
            self._failed_while_running(name, health.last_error or health.detail)
        else:
            self._set(name, health.state, health.last_error)
        self._status[name].detail = health.detail

    async def probe(self, name: str, seconds: float) -> Health:
        """Ask one manager for its health now, within ``seconds``."""
        return await run_bounded(self._managers[name].health(), seconds, name=f"probe:{name}")

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


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, TimeoutError):
        return str(exc) or "timed out"
    return f"{type(exc).__name__}: {exc}"
