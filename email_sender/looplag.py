"""How late the event loop runs: a task sleeps a short interval and measures how late it wakes.

Everything a node serves shares one event loop, so CPU work or a blocking call in a coroutine
delays every request, heartbeat and delivery at once. The lateness of a timer is that delay as
it was felt; it is exported as ``email_sender_event_loop_lag_seconds``. The monitor is a hook of
the service (``service.add_hook(LoopLagMonitor())``): it starts after the managers and stops
before them.
"""

from __future__ import annotations

import asyncio
import logging

from email_sender import metrics

logger = logging.getLogger(__name__)

# Short enough to see a stall of a few tens of milliseconds, long enough to cost nothing.
INTERVAL_SECONDS = 0.05
# A stall this long is worth a log line with its size, beside the histogram.
WARN_SECONDS = 0.25


class LoopLagMonitor:
    """Measures event-loop lag from a background task; ``worst`` is the largest seen so far."""

    def __init__(self, interval: float = INTERVAL_SECONDS) -> None:
        self.interval = interval
        self.worst = 0.0
        self.samples = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        if self._task is not None:
            return
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._measure(), name="loop_lag")

    async def stop(self) -> None:
        # Stopped by an event, not by cancellation, so that a stop can never be lost.
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        await task

    async def _measure(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            due = loop.time() + self.interval
            try:
                async with asyncio.timeout_at(due):
                    await self._stopping.wait()
            except TimeoutError:
                pass
            if self._stopping.is_set():
                return
            self.record(max(0.0, loop.time() - due))

    def record(self, lag: float) -> None:
        self.samples += 1
        self.worst = max(self.worst, lag)
        metrics.event_loop_lag.observe(lag)
        if lag >= WARN_SECONDS:
            logger.warning("event_loop_stalled", extra={"lag_ms": round(lag * 1000, 1)})
