"""This node's figures, read in-process for its own alerts.

Rates and p95 come from this process's metrics registry, over ``alerts.window`` (the rules'
``[5m]``): each sampling is kept with its time, and the figures are the growth since the oldest
sampling still inside the window. Manager states come from the node's registry, the mode from
its mode store, and the age of the oldest due email from the outbox itself (on nodes that
deliver, as the gauge is).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable

from prometheus_client.registry import CollectorRegistry

from email_sender import metrics
from email_sender.alerts.checks import Snapshot
from email_sender.alerts.figures import Samples, samples_from_registry, snapshot_from_samples
from email_sender.errors import EmailSenderError
from email_sender.mail.outbox import Outbox
from email_sender.managers import Registry, State, run_bounded
from email_sender.modes import ModeStore

logger = logging.getLogger(__name__)

# The manager that delivers: where it runs, the queue's age is this node's business.
DELIVERY_MANAGER = "email_sender"
QUEUE_QUERY_SECONDS = 5.0


class NodeFigures:
    """Samples this node's metrics over a sliding window and answers its :class:`Snapshot`."""

    def __init__(
        self,
        *,
        managers: Registry,
        outbox: Outbox,
        modes: ModeStore,
        window: float,
        memory_limit: float,
        clock: Callable[[], float] = time.monotonic,
        registry: CollectorRegistry = metrics.REGISTRY,
    ) -> None:
        self.managers = managers
        self.outbox = outbox
        self.modes = modes
        self.window = window
        self.memory_limit = memory_limit
        self.clock = clock
        self.registry = registry
        self._samplings: deque[tuple[float, Samples]] = deque()

    def sample(self) -> Samples:
        """Take a sampling now and keep it; drop those older than the window."""
        now = self.clock()
        current = samples_from_registry(self.registry)
        self._samplings.append((now, current))
        # Keep one sampling at or before the window's start: the baseline of the growth.
        while len(self._samplings) > 1 and self._samplings[1][0] <= now - self.window:
            self._samplings.popleft()
        return current

    def baseline(self) -> Samples | None:
        """The oldest sampling kept, unless it is the only one (then no window yet)."""
        return self._samplings[0][1] if len(self._samplings) > 1 else None

    async def snapshot(self) -> Snapshot:
        current = self.sample()
        earlier = self.baseline()
        figures = snapshot_from_samples(current, earlier, memory_limit=self.memory_limit)
        if earlier is None:
            # No window yet: growth since the process started is not this window's.
            figures = Snapshot(memory_bytes=figures.memory_bytes, memory_limit=self.memory_limit)
        return dataclasses.replace(
            figures,
            managers={status.name: status.state.value for status in self.managers.statuses()},
            mode=self.modes.cached.value,
            queue_oldest_age=await self._queue_age(),
        )

    async def _queue_age(self) -> float | None:
        if DELIVERY_MANAGER not in self.managers:
            return None
        if self.managers.status("database").state != State.RUNNING:
            return None
        try:
            return await run_bounded(
                self.outbox.oldest_due_age(), QUEUE_QUERY_SECONDS, name="alerts_queue_age"
            )
        except (EmailSenderError, TimeoutError) as exc:
            logger.warning("alert_figure_unavailable", extra={"figure": "queue_age",
                                                              "error": str(exc)})
            return None
