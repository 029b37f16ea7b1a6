"""The outreach send log: read for the caps and gaps, written once per step sent.

Recording a chunk of sends is one transaction: the send log rows (one per enrolment and step,
unique), the enrolments moved past their step, each sender's next free time, and the contacts
written to (their last contact time, and the move from the initial status to
``outreach.contacted_status`` with its history row).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from email_sender.db.engine import Database
from email_sender.db.schema import (
    contact_history,
    contacts,
    enrolments,
    outreach_senders,
    outreach_sends,
)
from email_sender.errors import DuplicateKey
from email_sender.outreach.lifecycle import Lifecycle
from email_sender.outreach.planner import Counters, Due, Planned
from email_sender.outreach.rules import Rules
from email_sender.outreach.sequences import STILL_OPEN
from email_sender.settings import OutreachSettings

# One enrolment moved past the step just sent (executemany: a parameter set per send).
_ADVANCE = (
    update(enrolments)
    .where(enrolments.c.id == bindparam("b_id"), STILL_OPEN)
    .values(
        next_step=bindparam("b_step"), next_at=bindparam("b_at"), status=bindparam("b_status"),
        reason=bindparam("b_reason"), thread_message_id=bindparam("b_thread"),
        thread_subject=bindparam("b_subject"), updated_at=bindparam("b_now"),
    )
)


@dataclass(frozen=True)
class Sent:
    planned: Planned
    row: dict[str, Any]
    email_id: str
    message_id: str
    subject: str


class SendLog:
    def __init__(
        self, db: Database, lifecycle: Lifecycle, settings: OutreachSettings, rules: Rules
    ) -> None:
        self.db = db
        self.lifecycle = lifecycle
        self.settings = settings
        self.rules = rules

    async def counters(self, now: float, items: list[Due]) -> Counters:
        """What was sent today and this hour by the senders and to the domains of ``items``."""
        counters = Counters()
        if not items:
            return counters
        calendar = self.rules.calendar
        day, day_end = calendar.day(now)
        hour, hour_end = calendar.hour(now)
        day_start = calendar.day_start(now)
        senders = sorted({item.sender for item in items})
        domains = sorted({item.domain for item in items})
        async with self.db.connect() as connection:
            for chunk in _chunks(senders):
                rows = await connection.execute(
                    select(outreach_sends.c.sender, func.count())
                    .where(outreach_sends.c.sender.in_(chunk),
                           outreach_sends.c.sent_at >= day_start,
                           outreach_sends.c.sent_at < day_end)
                    .group_by(outreach_sends.c.sender)
                )
                for sender, count in rows:
                    counters.sender_day[sender, day] = count
                for row in await connection.execute(
                    select(outreach_senders).where(outreach_senders.c.sender.in_(chunk))
                ):
                    counters.sender_free[row.sender] = row.next_send_at
                    counters.sender_first_day[row.sender] = calendar.day(row.first_send_at)[0]
            for chunk in _chunks(domains):
                for key, start, end, into in (
                    (day, day_start, day_end, counters.domain_day),
                    (hour, hour_end - 3600.0, hour_end, counters.domain_hour),
                ):
                    rows = await connection.execute(
                        select(outreach_sends.c.domain, func.count())
                        .where(outreach_sends.c.domain.in_(chunk),
                               outreach_sends.c.sent_at >= start,
                               outreach_sends.c.sent_at < end)
                        .group_by(outreach_sends.c.domain)
                    )
                    for domain, count in rows:
                        into[domain, key] = count
        return counters

    async def record(
        self,
        sends: list[Sent],
        steps: dict[str, list[dict[str, Any]]],
        sender_free: dict[str, float],
    ) -> int:
        """Write the send log, move the enrolments, the senders' gaps and the contacts, in one
        transaction; when another scheduler recorded one of these steps meanwhile, each is
        recorded on its own and the ones already there are left as they are."""
        if not sends:
            return 0
        try:
            async with self.db.transaction() as connection:
                await self._write(connection, sends, steps, sender_free)
            return len(sends)
        except DuplicateKey:
            recorded = 0
            for send in sends:
                try:
                    async with self.db.transaction() as connection:
                        await self._write(connection, [send], steps, sender_free)
                    recorded += 1
                except DuplicateKey:
                    continue  # recorded by another scheduler: its email is this one
            return recorded

    async def _write(
        self,
        connection: AsyncConnection,
        sends: list[Sent],
        steps: dict[str, list[dict[str, Any]]],
        sender_free: dict[str, float],
    ) -> None:
        await connection.execute(insert(outreach_sends), [
            {"enrolment_id": send.row["id"], "sequence_id": send.row["sequence_id"],
             "step": send.planned.step, "contact_id": send.row["contact_id"],
             "sender": send.planned.sender, "domain": send.planned.domain,
             "email_id": send.email_id, "sent_at": send.planned.at}
            for send in sends
        ])
        await connection.execute(_ADVANCE, [
            self._advance(send, steps[send.row["sequence_id"]]) for send in sends
        ])
        for sender in {send.planned.sender for send in sends}:
            first = min(send.planned.at for send in sends if send.planned.sender == sender)
            await connection.execute(self._sender_upsert(sender, sender_free[sender], first))
        await connection.execute(
            update(contacts).where(contacts.c.id == bindparam("b_id"))
            .values(last_contacted_at=bindparam("b_at")),
            [{"b_id": send.row["contact_id"], "b_at": send.planned.at} for send in sends],
        )
        await self._mark_contacted(connection, sends)

    def _advance(self, send: Sent, steps: list[dict[str, Any]]) -> dict[str, Any]:
        """The enrolment's next step and when it may go, or its end."""
        now = send.planned.at
        following = send.planned.step + 1
        first = send.row["thread_message_id"] is None
        values: dict[str, Any] = {
            "b_id": send.row["id"], "b_step": following, "b_now": now,
            "b_thread": send.message_id if first else send.row["thread_message_id"],
            "b_subject": send.subject if first else send.row["thread_subject"],
        }
        if following < len(steps):
            gap = max(steps[following]["delay"], self.rules.contact_gap)
            return values | {"b_status": "active", "b_at": now + gap, "b_reason": None}
        return values | {"b_status": "completed", "b_at": now, "b_reason": "every step was sent"}

    def _sender_upsert(self, sender: str, free: float, now: float) -> Any:
        dialect = postgresql if self.db.dialect == "postgresql" else sqlite
        statement = dialect.insert(outreach_senders).values(
            sender=sender, next_send_at=free, first_send_at=now
        )
        return statement.on_conflict_do_update(
            index_elements=["sender"], set_={"next_send_at": free}
        )

    async def _mark_contacted(self, connection: AsyncConnection, sends: list[Sent]) -> None:
        """Contacts still in the initial status move to ``contacted_status``, in history too."""
        lifecycle = self.lifecycle
        target = self.settings.contacted_status
        if target is None or target not in lifecycle.allowed(lifecycle.initial):
            return
        first = {send.row["contact_id"]: send for send in reversed(sends)
                 if send.row["contact_status"] == lifecycle.initial}
        if not first:
            return
        moved = await connection.execute(
            update(contacts)
            .where(contacts.c.id.in_(list(first)), contacts.c.status == lifecycle.initial)
            .values(status=target, updated_at=time.time())
            .returning(contacts.c.id)
        )
        history = [
            {"contact_id": contact_id, "from_status": lifecycle.initial, "to_status": target,
             "source": "sequence", "actor": first[contact_id].row["sequence_name"],
             "reason": f"step {first[contact_id].planned.step} sent",
             "at": first[contact_id].planned.at}
            for (contact_id,) in moved.all()
        ]
        if history:
            await connection.execute(insert(contact_history), history)


def _chunks(items: list[str], size: int = 500) -> list[list[str]]:
    return [items[start:start + size] for start in range(0, len(items), size)]
