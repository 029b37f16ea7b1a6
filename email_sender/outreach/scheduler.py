"""The outreach scheduler: each tick, act on the answers, then send the steps the rules allow.

A tick reads its time from an injectable clock (tests run weeks of a sequence in seconds), loads
the enrolments that are due, ends or skips those that must not be written to any more, asks the
:class:`~email_sender.outreach.planner.Planner` which may go now, and sends those through the
intake like any other email.

Nothing is sent twice: the email's idempotency key is its enrolment and step, so the outbox keeps
one email for it however often a send is tried, and the send log has one row per enrolment and
step. Only one node schedules at a time (see :mod:`email_sender.outreach.manager`), which is
what makes the caps hold across nodes; the two guarantees above hold even without it.
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import bindparam, select, update

from email_sender.db.engine import Database
from email_sender.db.schema import (
    contacts,
    enrolments,
    sequence_steps,
    sequences,
)
from email_sender.errors import Conflict, ValidationError
from email_sender.mail.intake import Intake
from email_sender.mail.message import EmailIn, address_of
from email_sender.mail.suppression import SuppressionList
from email_sender.outreach.compose import compose
from email_sender.outreach.contacts import ContactStore
from email_sender.outreach.planner import Counters, Due, Planned, Planner
from email_sender.outreach.reactions import Reactions
from email_sender.outreach.rules import Rules
from email_sender.outreach.sendlog import SendLog, Sent
from email_sender.outreach.sequences import NO_LINKS, OPEN, STILL_OPEN, writable
from email_sender.outreach.unsubscribe import Unsubscriber
from email_sender.settings import OutreachSettings

logger = logging.getLogger(__name__)

BATCH = 1000
# Emails made and committed together: a batch renders by one shared deadline.
SEND_CHUNK = 100

@dataclass
class TickReport:
    at: float
    sent: int = 0
    reacted: int = 0
    ended: int = 0
    skipped: int = 0
    deferred: int = 0
    failed: int = 0


class Scheduler:
    def __init__(
        self,
        db: Database,
        intake: Intake,
        contacts: ContactStore,
        suppressions: SuppressionList,
        settings: OutreachSettings,
        *,
        unsubscribe: Callable[[str], dict[str, str]] | None = None,
        unsubscriber: Unsubscriber | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        batch: int = BATCH,
    ) -> None:
        self.db = db
        self.intake = intake
        self.contacts = contacts
        self.suppressions = suppressions
        self.settings = settings
        self.unsubscribe = unsubscribe
        self.clock = clock
        self.rng = rng or random.Random()
        self.batch = batch
        self.rules = Rules.from_settings(settings)
        self.writes_to = writable(contacts.lifecycle, settings.contacted_status)
        self.reactions = Reactions(
            db, contacts, settings, self.rules, wall_clock=time.time,
            unsubscribe=unsubscriber.by_address if unsubscriber is not None else None,
        )
        self.log = SendLog(db, contacts.lifecycle, settings, self.rules)

    def gap(self) -> float:
        return self.rng.uniform(self.rules.gap_min, self.rules.gap_max)

    def mean_gap(self) -> float:
        return (self.rules.gap_min + self.rules.gap_max) / 2

    async def tick(self) -> TickReport:
        now = self.clock()
        report = TickReport(at=now)
        report.reacted = await self.reactions.run(now)
        rows = await self.due(now)
        if not rows:
            return report
        if self.unsubscribe is None:
            raise Conflict(NO_LINKS)  # sequences made before the links were taken away
        steps = await self.steps({row["sequence_id"] for row in rows})
        suppressed = await self.suppressions.among(row["email"] for row in rows)
        ready: dict[str, dict[str, Any]] = {}
        for row in rows:
            verdict = self._verdict(row, steps[row["sequence_id"]], suppressed)
            if verdict is None:
                ready[row["id"]] = row
            elif verdict == "skip":
                await self._skip(row, steps[row["sequence_id"]], now)
                report.skipped += 1
            else:
                status, reason = verdict.split(":", 1)
                await self._end(row["id"], status, reason, now)
                report.ended += 1
        items = [self.due_item(row) for row in ready.values()]
        counters = await self.counters(now, items)
        plan = Planner(self.rules, self.gap).plan(items, counters, start=now, until=now)
        await self._defer(plan.deferred, now)
        report.deferred = len(plan.deferred)
        for start in range(0, len(plan.sends), SEND_CHUNK):
            chunk = plan.sends[start:start + SEND_CHUNK]
            sent, failed = await self._send(chunk, ready, steps, plan.sender_free)
            report.sent += sent
            report.failed += failed
        if report.sent or report.ended or report.failed:
            logger.info("outreach_tick", extra=vars(report))
        return report

    # --- reading -----------------------------------------------------------------------------

    async def due(self, now: float, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Open enrolments of active sequences whose next step may go at ``now``."""
        query = (
            select(
                enrolments, sequences.c.sender, sequences.c.name.label("sequence_name"),
                contacts.c.email, contacts.c.name, contacts.c.organisation, contacts.c.city,
                contacts.c.region, contacts.c.country, contacts.c.timezone, contacts.c.language,
                contacts.c.tags, contacts.c.attributes, contacts.c.status.label("contact_status"),
            )
            .join(sequences, sequences.c.id == enrolments.c.sequence_id)
            .join(contacts, contacts.c.id == enrolments.c.contact_id)
            .where(
                enrolments.c.status.in_(OPEN),
                enrolments.c.next_at <= now,
                sequences.c.status == "active",
            )
            .order_by(enrolments.c.next_at, enrolments.c.id)
            .limit(limit or self.batch)
        )
        async with self.db.connect() as connection:
            return [dict(row._mapping) for row in await connection.execute(query)]

    async def steps(self, sequence_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = defaultdict(list)
        if not sequence_ids:
            return found
        async with self.db.connect() as connection:
            rows = await connection.execute(
                select(sequence_steps)
                .where(sequence_steps.c.sequence_id.in_(sequence_ids))
                .order_by(sequence_steps.c.sequence_id, sequence_steps.c.position)
            )
            for row in rows:
                found[row.sequence_id].append(dict(row._mapping))
        return found

    def due_item(self, row: dict[str, Any], then: tuple[float, ...] = ()) -> Due:
        return Due(
            enrolment_id=row["id"],
            sender=address_of(row["sender"]).lower(),
            domain=row["email"].rpartition("@")[2].lower(),
            tz=self.rules.contact_zone(row["timezone"]),
            at=row["next_at"],
            step=row["next_step"],
            then=then,
        )

    async def counters(self, now: float, items: list[Due]) -> Counters:
        """What the send log says about the senders and domains of ``items`` at ``now``."""
        return await self.log.counters(now, items)

    # --- deciding ----------------------------------------------------------------------------

    def _verdict(
        self, row: dict[str, Any], steps: list[dict[str, Any]], suppressed: set[str]
    ) -> str | None:
        """None to plan the row's step; ``skip`` when its conditions do not hold; else
        ``status:reason`` to end the enrolment."""
        status = row["contact_status"]
        if status not in self.writes_to:
            ended = status if status in ("unsubscribed", "bounced") else "stopped"
            return f"{ended}:the contact is {status}"
        if row["email"] in suppressed:
            return "stopped:the address is suppressed"
        if row["next_step"] >= len(steps):
            return "completed:every step was sent"
        wanted = steps[row["next_step"]]["conditions"].get("statuses")
        if wanted and status not in wanted:
            return "skip"
        return None

    # --- writing -----------------------------------------------------------------------------

    async def _send(
        self,
        chunk: list[Planned],
        ready: dict[str, dict[str, Any]],
        steps: dict[str, list[dict[str, Any]]],
        sender_free: dict[str, float],
    ) -> tuple[int, int]:
        """Make and commit the emails of ``chunk`` together, then record them together;
        answer how many were sent and how many enrolments failed."""
        made: list[tuple[Planned, dict[str, Any], EmailIn]] = []
        failures: list[tuple[dict[str, Any], str]] = []
        for planned in chunk:
            row = ready[planned.enrolment_id]
            step = steps[row["sequence_id"]][planned.step]
            contact = {**row, "id": row["contact_id"], "status": row["contact_status"]}
            sequence = {"id": row["sequence_id"], "sender": row["sender"]}
            try:
                made.append((planned, row, compose(
                    sequence=sequence, step=step, enrolment=row, contact=contact,
                    unsubscribe=self.unsubscribe,
                )))
            except PydanticValidationError as exc:
                failures.append((row, f"step {planned.step}: {exc.errors()[0]['msg']}"))
        results = await self.intake.accept_keyed([email for _, _, email in made])
        sends: list[Sent] = []
        for (planned, row, _), result in zip(made, results, strict=True):
            if isinstance(result, ValidationError):
                failures.append((row, f"step {planned.step}: {result.message}"))
            else:
                prepared, accepted = result
                sends.append(Sent(planned, row, accepted.id, accepted.message_id,
                                  prepared.subject))
        for row, reason in failures:
            await self._end(row["id"], "failed", reason, self.clock())
        recorded = await self.log.record(sends, steps, sender_free)
        return recorded, len(failures)

    async def _skip(self, row: dict[str, Any], steps: list[dict[str, Any]], now: float) -> None:
        following = row["next_step"] + 1
        values: dict[str, Any] = {"next_step": following, "updated_at": now}
        if following < len(steps):
            values["next_at"] = now + steps[following]["delay"]
        else:
            values |= {"status": "completed", "reason": "the last steps' conditions did not hold"}
        async with self.db.transaction() as connection:
            await connection.execute(
                update(enrolments)
                .where(enrolments.c.id == row["id"],
                       enrolments.c.next_step == row["next_step"])
                .values(**values)
            )

    async def _end(self, enrolment_id: str, status: str, reason: str, now: float) -> None:
        async with self.db.transaction() as connection:
            await connection.execute(
                update(enrolments)
                .where(enrolments.c.id == enrolment_id, enrolments.c.status.in_(OPEN))
                .values(status=status, reason=reason, updated_at=now)
            )

    async def _defer(self, deferred: dict[str, float], now: float) -> None:
        if not deferred:
            return
        statement = (
            update(enrolments)
            .where(enrolments.c.id == bindparam("b_id"), STILL_OPEN)
            .values(next_at=bindparam("b_at"), updated_at=now)
        )
        async with self.db.transaction() as connection:
            await connection.execute(
                statement, [{"b_id": key, "b_at": at} for key, at in deferred.items()]
            )
