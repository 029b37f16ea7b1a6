"""The ``outreach_scheduler`` manager: one node at a time runs the scheduler's ticks.

Every node with the manager tries to hold the ``outreach-scheduler`` lease; the holder ticks
every ``outreach.tick`` seconds (and at once when woken), the others stand by and take over
once the lease is released or has run out. Caps and gaps are decided by the holder alone, so
they hold across nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import asdict
from typing import Any

from email_sender.db.leases import Leases
from email_sender.errors import EmailSenderError
from email_sender.managers import Health, State
from email_sender.outreach.scheduler import Scheduler, TickReport

logger = logging.getLogger(__name__)

LEASE_NAME = "outreach-scheduler"
STOP_SECONDS = 5.0


class OutreachScheduler:
    name = "outreach_scheduler"

    def __init__(
        self,
        scheduler: Scheduler,
        leases: Leases,
        *,
        owner: str,
        tick: float,
        depends_on: tuple[str, ...] = ("database", "event_bus"),
    ) -> None:
        self.scheduler = scheduler
        self.leases = leases
        self.owner = owner
        self.tick = tick
        self.depends_on = depends_on
        self.leader = False
        self.last: TickReport | None = None
        self.sent = 0
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outreach-scheduler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, STOP_SECONDS)
        if self.leader:
            with contextlib.suppress(EmailSenderError, TimeoutError):
                await asyncio.wait_for(self.leases.release(LEASE_NAME, self.owner), STOP_SECONDS)
            self.leader = False

    async def health(self) -> Health:
        if self._task is None:
            return Health(State.STOPPED)
        if self._task.done():
            return Health(State.FAILED, "the scheduler loop ended", self.last_error)
        if self.last_error:
            return Health(State.DEGRADED, self.last_error, self.last_error)
        return Health(State.RUNNING, "scheduling" if self.leader else "standing by")

    def info(self) -> dict[str, Any]:
        return {
            "leader": self.leader,
            "tick_seconds": self.tick,
            "sent": self.sent,
            "last_tick": asdict(self.last) if self.last else None,
        }

    async def _run(self) -> None:
        while True:
            try:
                # Held for three ticks: a node that stops ticking is replaced soon after.
                self.leader = await self.leases.hold(LEASE_NAME, self.owner, self.tick * 3)
                if self.leader:
                    self.last = await self.scheduler.tick()
                    self.sent += self.last.sent
                self.last_error = None
            except EmailSenderError as exc:
                self.last_error = exc.message
                logger.warning("outreach_tick_failed", extra={"error": exc.message})
            except Exception as exc:  # a bug must not end scheduling for good
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.exception("outreach_tick_crashed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick)
