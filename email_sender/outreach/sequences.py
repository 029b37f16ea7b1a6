"""Sequences in SQL: their steps, who is enrolled, and the changes an operator may make.

A sequence is ``active``, ``paused`` (nothing of it is sent; enrolments keep their place) or
``cancelled`` (its open enrolments end; it cannot be resumed). A step that has been sent to
anyone cannot be edited: what was sent and what the sequence says would no longer agree.

An enrolment is ``active`` or ``paused`` (an out-of-office: until the return date) while it has
steps to send, and ends ``completed``, ``replied``, ``bounced``, ``unsubscribed``, ``stopped``
(its contact left the statuses outreach writes to), ``cancelled`` or ``failed`` (a step could not
be rendered for its contact).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from email_sender.db.engine import Database
from email_sender.db.schema import contacts, enrolments, outreach_sends, sequence_steps, sequences
from email_sender.errors import Conflict, NotFound, ValidationError
from email_sender.mail.suppression import SuppressionList
from email_sender.mail.templates import TemplateRenderer
from email_sender.outreach.lifecycle import Lifecycle
from email_sender.outreach.steps import SequenceIn, SequencePatch, StepIn, check_sender, check_steps

OPEN = ("active", "paused")
# The same condition written without IN (...): an expanding list cannot be part of an
# executemany, which moves many enrolments in one statement.
STILL_OPEN = or_(*(enrolments.c.status == status for status in OPEN))
STATUSES = (*OPEN, "replied", "completed", "bounced", "unsubscribed", "stopped", "cancelled",
            "failed")
MAX_ENROL = 100_000
NO_LINKS = (
    "sequences need one-click unsubscribe links: set outreach.unsubscribe_url and "
    "outreach.unsubscribe_secret"
)


def writable(lifecycle: Lifecycle, contacted: str | None) -> frozenset[str]:
    """The contact statuses outreach writes to: the initial one, and the one it moves a contact
    to once written to. Any other (a reply, a hand-set status, an unsubscribe) stops it."""
    return frozenset(status for status in (lifecycle.initial, contacted) if status)


class SequenceStore:
    def __init__(
        self, db: Database, lifecycle: Lifecycle, suppressions: SuppressionList,
        *, contacted: str | None, unsubscribe_links: bool,
    ) -> None:
        self.db = db
        # Every email of a sequence carries a one-click unsubscribe link: none, no sequence.
        self.unsubscribe_links = unsubscribe_links
        self.lifecycle = lifecycle
        self.suppressions = suppressions
        self.writes_to = writable(lifecycle, contacted)
        self.renderer = TemplateRenderer()

    async def create(self, new: SequenceIn) -> dict[str, Any]:
        if not self.unsubscribe_links:
            raise Conflict(NO_LINKS)
        sender = check_sender(new.sender)
        check_steps(new.steps, self._statuses(), self.renderer)
        now = time.time()
        sequence_id = str(uuid.uuid4())
        async with self.db.transaction() as connection:
            await connection.execute(
                insert(sequences).values(
                    id=sequence_id, name=new.name, sender=sender, status="active",
                    created_at=now, updated_at=now,
                )
            )
            await connection.execute(
                insert(sequence_steps),
                [_step_row(sequence_id, position, step, now)
                 for position, step in enumerate(new.steps)],
            )
        return await self.get(sequence_id)

    async def get(self, sequence_id: str) -> dict[str, Any]:
        async with self.db.connect() as connection:
            row = await _sequence(connection, sequence_id)
            steps = await connection.execute(
                select(sequence_steps)
                .where(sequence_steps.c.sequence_id == sequence_id)
                .order_by(sequence_steps.c.position)
            )
            counts = await connection.execute(
                select(enrolments.c.status, func.count())
                .where(enrolments.c.sequence_id == sequence_id)
                .group_by(enrolments.c.status)
            )
            return {
                **row,
                "steps": [dict(step._mapping) for step in steps],
                "enrolments": {status: count for status, count in counts},
            }

    async def all(self, *, limit: int = 200) -> list[dict[str, Any]]:
        async with self.db.connect() as connection:
            rows = await connection.execute(
                select(sequences).order_by(sequences.c.created_at.desc()).limit(limit)
            )
            return [dict(row._mapping) for row in rows]

    async def update(self, sequence_id: str, patch: SequencePatch) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if patch.name is not None:
            values["name"] = patch.name
        if patch.sender is not None:
            values["sender"] = check_sender(patch.sender)
        async with self.db.transaction() as connection:
            await _sequence(connection, sequence_id)
            if values:
                await connection.execute(
                    update(sequences).where(sequences.c.id == sequence_id)
                    .values(**values, updated_at=time.time())
                )
        return await self.get(sequence_id)

    async def edit_step(self, sequence_id: str, position: int, step: StepIn) -> dict[str, Any]:
        """Replace a step nobody has been sent yet (409 once one has)."""
        check_steps([step], self._statuses(), self.renderer, first=position)
        async with self.db.transaction() as connection:
            await _sequence(connection, sequence_id)
            found = (
                await connection.execute(
                    select(sequence_steps.c.position).where(
                        sequence_steps.c.sequence_id == sequence_id,
                        sequence_steps.c.position == position,
                    ).with_for_update()
                )
            ).first()
            if found is None:
                raise NotFound(f"sequence {sequence_id} has no step {position}", position=position)
            sent = (
                await connection.execute(
                    select(func.count()).select_from(outreach_sends).where(
                        outreach_sends.c.sequence_id == sequence_id,
                        outreach_sends.c.step == position,
                    )
                )
            ).scalar_one()
            if sent:
                raise Conflict(
                    f"step {position} has been sent {sent} time(s); it can no longer be edited",
                    position=position, sent=sent,
                )
            row = _step_row(sequence_id, position, step, time.time())
            await connection.execute(
                update(sequence_steps)
                .where(sequence_steps.c.sequence_id == sequence_id,
                       sequence_steps.c.position == position)
                .values(**{key: value for key, value in row.items()
                           if key not in ("sequence_id", "position")})
            )
        return await self.get(sequence_id)

    async def set_status(self, sequence_id: str, status: str) -> dict[str, Any]:
        """Pause, resume (``active``) or cancel; a cancelled sequence stays cancelled."""
        now = time.time()
        async with self.db.transaction() as connection:
            row = await _sequence(connection, sequence_id, lock=True)
            if row["status"] == "cancelled" and status != "cancelled":
                raise Conflict("the sequence is cancelled; it cannot be resumed or paused")
            await connection.execute(
                update(sequences).where(sequences.c.id == sequence_id)
                .values(status=status, updated_at=now)
            )
            if status == "cancelled":
                await connection.execute(
                    update(enrolments)
                    .where(enrolments.c.sequence_id == sequence_id,
                           enrolments.c.status.in_(OPEN))
                    .values(status="cancelled", reason="sequence cancelled", updated_at=now)
                )
        return await self.get(sequence_id)

    async def enrol(
        self, sequence_id: str, contact_ids: list[str], *, now: float
    ) -> dict[str, list[str]]:
        """Enrol contacts; answer, by outcome, which were ``enrolled``, ``already`` enrolled,
        ``unknown``, or ``unreachable`` (their status or a suppression forbids writing)."""
        if len(contact_ids) > MAX_ENROL:
            raise ValidationError("contact_ids", f"at most {MAX_ENROL} contacts at once")
        wanted = list(dict.fromkeys(contact_ids))
        report: dict[str, list[str]] = {
            "enrolled": [], "already": [], "unknown": [], "unreachable": [],
        }
        found: dict[str, dict[str, Any]] = {}
        async with self.db.connect() as connection:
            for chunk in _chunks(wanted, 500):
                rows = await connection.execute(
                    select(contacts.c.id, contacts.c.email, contacts.c.status)
                    .where(contacts.c.id.in_(chunk))
                )
                found.update({row.id: dict(row._mapping) for row in rows})
        # Read before the transaction: SQLite's one connection is the transaction's meanwhile.
        suppressed: set[str] = set()
        for emails in _chunks([contact["email"] for contact in found.values()], 500):
            suppressed |= await self.suppressions.among(emails)
        async with self.db.transaction() as connection:
            sequence = await _sequence(connection, sequence_id, lock=True)
            if sequence["status"] == "cancelled":
                raise Conflict("the sequence is cancelled; nobody can be enrolled")
            first_delay = (
                await connection.execute(
                    select(sequence_steps.c.delay).where(
                        sequence_steps.c.sequence_id == sequence_id,
                        sequence_steps.c.position == 0,
                    )
                )
            ).scalar_one()
            taken: set[str] = set()
            for chunk in _chunks(list(found), 500):
                taken.update(
                    row.contact_id for row in await connection.execute(
                        select(enrolments.c.contact_id).where(
                            enrolments.c.sequence_id == sequence_id,
                            enrolments.c.contact_id.in_(chunk),
                        )
                    )
                )
            rows_to_add = []
            for contact_id in wanted:
                contact = found.get(contact_id)
                if contact is None:
                    report["unknown"].append(contact_id)
                elif contact_id in taken:
                    report["already"].append(contact_id)
                elif contact["status"] not in self.writes_to or contact["email"] in suppressed:
                    report["unreachable"].append(contact_id)
                else:
                    report["enrolled"].append(contact_id)
                    rows_to_add.append({
                        "id": str(uuid.uuid4()), "sequence_id": sequence_id,
                        "contact_id": contact_id, "status": "active", "next_step": 0,
                        "next_at": now + first_delay, "reason": None,
                        "thread_message_id": None, "thread_subject": None,
                        "created_at": now, "updated_at": now,
                    })
            for chunk in _chunks(rows_to_add, 500):
                await connection.execute(insert(enrolments), chunk)
        return report

    async def enrolments(
        self, sequence_id: str, *, status: str | None = None, limit: int = 500
    ) -> list[dict[str, Any]]:
        query = select(enrolments, contacts.c.email).join(
            contacts, contacts.c.id == enrolments.c.contact_id, isouter=True
        ).where(enrolments.c.sequence_id == sequence_id)
        if status:
            query = query.where(enrolments.c.status == status)
        async with self.db.connect() as connection:
            await _sequence(connection, sequence_id)
            rows = await connection.execute(
                query.order_by(enrolments.c.created_at, enrolments.c.id).limit(limit)
            )
            return [dict(row._mapping) for row in rows]

    async def open_enrolments(self, sequence_id: str, *, limit: int) -> list[dict[str, Any]]:
        """Enrolments with steps still to send, with their contact's address and zone."""
        query = (
            select(enrolments, contacts.c.email, contacts.c.timezone)
            .join(contacts, contacts.c.id == enrolments.c.contact_id)
            .where(enrolments.c.sequence_id == sequence_id, enrolments.c.status.in_(OPEN))
            .order_by(enrolments.c.next_at, enrolments.c.id)
            .limit(limit)
        )
        async with self.db.connect() as connection:
            return [dict(row._mapping) for row in await connection.execute(query)]

    def _statuses(self) -> set[str]:
        return set(self.lifecycle.statuses)


async def _sequence(
    connection: AsyncConnection, sequence_id: str, *, lock: bool = False
) -> dict[str, Any]:
    query = select(sequences).where(sequences.c.id == sequence_id)
    if lock:
        query = query.with_for_update()
    row = (await connection.execute(query)).first()
    if row is None:
        raise NotFound(f"no sequence with id {sequence_id}", id=sequence_id)
    return dict(row._mapping)


def _step_row(sequence_id: str, position: int, step: StepIn, now: float) -> dict[str, Any]:
    return {
        "sequence_id": sequence_id, "position": position, "delay": step.delay,
        "subject": step.subject, "text": step.text, "html": step.html,
        "same_thread": int(step.same_thread),
        "conditions": step.conditions.model_dump(exclude_none=True), "updated_at": now,
    }


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
