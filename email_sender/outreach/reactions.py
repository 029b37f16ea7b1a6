"""What the answers to a sequence do to its enrolments and contacts.

Each received message linked to an outreach email is acted on once (``outreach_reactions``):

- a human reply stops the enrolment (``replied``), whatever its intent; automatic kinds never
  count as one;
- an out-of-office pauses it until the return date it gives (the morning of that day in the
  contact's zone) or for ``outreach.out_of_office_pause``;
- a hard bounce ends it (``bounced``) and moves the contact to ``bounced``; a soft one does
  nothing here (the inbound side counts them and suppresses after enough);
- a complaint ends it (``unsubscribed``).

A reply's intent then moves the contact through the lifecycle (``outreach.reply_statuses``),
once the classifier has given one, and never backwards past a status a user set by hand; a
reply asking to unsubscribe does what the one-click link does.
Stopping does not wait for the classifier: a reply is a reply before it is understood.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import and_, insert, select, update

from email_sender.db.engine import Database
from email_sender.db.schema import (
    contacts,
    emails,
    enrolments,
    inbound_messages,
    outreach_reactions,
    outreach_sends,
)
from email_sender.errors import DuplicateKey, NotFound, ValidationError
from email_sender.outreach.contacts import Change, ContactStore
from email_sender.outreach.fields import ContactFields
from email_sender.outreach.rules import Rules
from email_sender.outreach.sequences import OPEN
from email_sender.settings import OutreachSettings

logger = logging.getLogger(__name__)

# Messages received longer ago than this are not looked at again (they were, when they came).
LOOK_BACK = 90 * 86400.0
BATCH = 500
UNSUBSCRIBE_INTENT = "unsubscribe"


class Reactions:
    def __init__(
        self,
        db: Database,
        contacts: ContactStore,
        settings: OutreachSettings,
        rules: Rules,
        *,
        wall_clock: Callable[[], float],
        unsubscribe: Callable[[str, str], Awaitable[bool]] | None = None,
    ) -> None:
        self.db = db
        self.contacts = contacts
        self.settings = settings
        self.rules = rules
        # Called with the contact's address and how, for a reply asking to be left alone.
        self.unsubscribe = unsubscribe
        # Messages are stamped with the wall clock when received, whatever the scheduler's is.
        self.wall_clock = wall_clock

    async def run(self, now: float) -> int:
        """Act on every new message about an outreach email; then apply known intents."""
        acted = 0
        for message in await self._new_messages():
            if await self._act(message, now):
                acted += 1
        for message in await self._replies_understood():
            await self._move_by_intent(message)
        return acted

    async def _new_messages(self) -> list[dict[str, Any]]:
        query = (
            select(
                inbound_messages.c.id, inbound_messages.c.kind, inbound_messages.c.intent,
                inbound_messages.c.details, inbound_messages.c.from_addr,
                outreach_sends.c.enrolment_id, outreach_sends.c.step,
                enrolments.c.status.label("enrolment_status"), enrolments.c.contact_id,
                enrolments.c.next_at,
                contacts.c.timezone, contacts.c.email.label("contact_email"),
                emails.c.status.label("email_status"),
            )
            .join(outreach_sends, outreach_sends.c.email_id == inbound_messages.c.email_id)
            .join(enrolments, enrolments.c.id == outreach_sends.c.enrolment_id)
            .join(contacts, contacts.c.id == enrolments.c.contact_id)
            .join(emails, emails.c.id == outreach_sends.c.email_id)
            .join(
                outreach_reactions,
                outreach_reactions.c.inbound_id == inbound_messages.c.id,
                isouter=True,
            )
            .where(
                outreach_reactions.c.inbound_id.is_(None),
                inbound_messages.c.received_at >= self.wall_clock() - LOOK_BACK,
            )
            .order_by(inbound_messages.c.received_at, inbound_messages.c.id)
            .limit(BATCH)
        )
        async with self.db.connect() as connection:
            return [dict(row._mapping) for row in await connection.execute(query)]

    async def _act(self, message: dict[str, Any], now: float) -> bool:
        kind = message["kind"]
        action, status, until = "none", None, None
        if kind == "reply":
            action, status = "reply", "replied"  # its intent acts once known, below
        elif kind == "out_of_office":
            # Never sooner than the next step was due: a pause only ever delays.
            until = max(self._return(message, now), message["next_at"])
            action, status = "pause", "paused"
        elif kind == "bounce" and message["email_status"] == "bounced":
            action, status = "bounce", "bounced"
        elif kind == "complaint":
            action, status = "complaint", "unsubscribed"
        try:
            async with self.db.transaction() as connection:
                await connection.execute(
                    insert(outreach_reactions).values(
                        inbound_id=message["id"], enrolment_id=message["enrolment_id"],
                        action=action, intent=None, at=now,
                    )
                )
                if status is not None and message["enrolment_status"] in OPEN:
                    values: dict[str, Any] = {
                        "status": status, "reason": _reason(action, message), "updated_at": now,
                    }
                    if until is not None:
                        values["next_at"] = until
                    await connection.execute(
                        update(enrolments)
                        .where(enrolments.c.id == message["enrolment_id"],
                               enrolments.c.status.in_(OPEN))
                        .values(**values)
                    )
        except DuplicateKey:
            return False  # another scheduler acted on it meanwhile
        if action == "bounce":
            await self._move(message["contact_id"], "bounced", Change("bounce", None,
                                                                       "hard bounce"))
        elif action in ("complaint", "unsubscribe"):
            await self._move(message["contact_id"], "unsubscribed",
                             Change(action, message["from_addr"], f"{action} to a sequence"))
        logger.info(
            "outreach_reaction",
            extra={"inbound_id": message["id"], "enrolment_id": message["enrolment_id"],
                   "action": action},
        )
        return action != "none"

    def _return(self, message: dict[str, Any], now: float) -> float:
        """The morning of the return date in the contact's zone, or the default pause."""
        returns = (message["details"] or {}).get("return_date")
        if returns:
            day = datetime.date.fromisoformat(returns)
            tz = self.rules.contact_zone(message["timezone"])
            morning = datetime.datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
            if morning > now:
                return self.rules.windows.next_open(morning, tz)
        return now + self.settings.out_of_office_pause

    async def _replies_understood(self) -> list[dict[str, Any]]:
        query = (
            select(
                outreach_reactions.c.inbound_id, inbound_messages.c.intent,
                inbound_messages.c.label, inbound_messages.c.from_addr, enrolments.c.contact_id,
                contacts.c.email.label("contact_email"),
            )
            .join(inbound_messages, inbound_messages.c.id == outreach_reactions.c.inbound_id)
            .join(enrolments, enrolments.c.id == outreach_reactions.c.enrolment_id)
            .join(contacts, contacts.c.id == enrolments.c.contact_id)
            .where(
                and_(outreach_reactions.c.action == "reply",
                     outreach_reactions.c.intent.is_(None),
                     inbound_messages.c.intent.is_not(None))
            )
            .limit(BATCH)
        )
        async with self.db.connect() as connection:
            return [dict(row._mapping) for row in await connection.execute(query)]

    async def _move_by_intent(self, message: dict[str, Any]) -> None:
        intent = message["label"] or message["intent"]
        target = self.settings.reply_statuses.get(intent)
        values = {"intent": intent}
        if intent == UNSUBSCRIBE_INTENT:
            # Asked in words: the same as the link (suppressed, unsubscribed, every sequence
            # ended), for the address we wrote to, whoever answered from it.
            values["action"] = "unsubscribe"
            if self.unsubscribe is not None:
                await self.unsubscribe(message["contact_email"], "asked in a reply")
            else:
                await self._move(message["contact_id"], "unsubscribed",
                                 Change("unsubscribe", message["from_addr"], "asked in a reply"))
        elif target is not None:
            await self._move(
                message["contact_id"], target,
                Change("reply", message["from_addr"], f"reply classified {intent}"),
                respect_user=True,
            )
        async with self.db.transaction() as connection:
            await connection.execute(
                update(outreach_reactions)
                .where(outreach_reactions.c.inbound_id == message["inbound_id"])
                .values(**values)
            )

    async def _move(
        self, contact_id: str, target: str, change: Change, *, respect_user: bool = False
    ) -> None:
        """Move the contact if the lifecycle allows it (and, for replies, if it goes no
        further back than a status a user set by hand)."""
        lifecycle = self.contacts.lifecycle
        try:
            contact = await self.contacts.get(contact_id)
        except NotFound:  # erased meanwhile
            return
        current = contact["status"]
        if current == target or target not in lifecycle.allowed(current):
            return
        if respect_user:
            by_hand = await self.contacts.last_set_by(contact_id, "user")
            order = lifecycle.statuses
            if by_hand in order and order.index(target) < order.index(by_hand):
                logger.info("reply_status_kept", extra={"contact_id": contact_id,
                                                        "kept": current, "target": target})
                return
        try:
            await self.contacts.update(contact_id, ContactFields(), change, status=target)
        except ValidationError as exc:  # moved meanwhile to where the target is not allowed
            logger.info("reply_status_refused", extra={"contact_id": contact_id,
                                                       "error": exc.reason})


def _reason(action: str, message: dict[str, Any]) -> str:
    if action == "reply":
        return f"replied to step {message['step']}"
    if action == "pause":
        return "out of office"
    return f"{action} after step {message['step']}"
