"""The figures of the console's overview, read afresh on each refresh."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from email_sender.mail.outbox import Status
from email_sender.service import Service

# Sends per minute and the error rate are read over this window.
ACTIVITY_WINDOW = 300.0
# Received mail is counted over this one.
INBOUND_WINDOW = 86400.0


@dataclass(frozen=True)
class Overview:
    health: dict[str, Any]
    mode: dict[str, Any]
    queue: list[tuple[str, int]]
    oldest_queued_age: float
    sends_per_minute: float
    error_rate: float | None
    attempts: int
    inbound: dict[str, int] | None

    @property
    def replies(self) -> int:
        return (self.inbound or {}).get("reply", 0)


async def read(service: Service) -> Overview:
    now = time.time()
    counts = await service.outbox.counts_by_status()
    outcomes = await service.outbox.attempt_outcomes(now - ACTIVITY_WINDOW)
    tried = sum(outcomes.values())
    failed = tried - outcomes.get("sent", 0) - outcomes.get("suppressed", 0)
    inbound = None
    if service.inbound is not None:
        inbound = await service.inbound.store.counts_by_kind(now - INBOUND_WINDOW)
    known = [(status.value, counts.get(status.value, 0)) for status in Status]
    names = {status.value for status in Status}
    others = sorted((status, n) for status, n in counts.items() if status not in names)
    return Overview(
        health=await service.health(),
        mode=await service.modes.describe(),
        queue=known + others,
        oldest_queued_age=await service.outbox.oldest_due_age(),
        sends_per_minute=outcomes.get("sent", 0) / (ACTIVITY_WINDOW / 60),
        error_rate=failed / tried if tried else None,
        attempts=tried,
        inbound=inbound,
    )
