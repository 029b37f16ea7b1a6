"""Every received message goes through here, whichever door it came in by.

``receive`` parses the source off the event loop, works out what it is (a bounce, a complaint,
an auto-reply, a person's reply), links it to the email it answers, stores it once and acts on
it: a hard bounce marks the email ``bounced`` and suppresses the address, repeated soft bounces
suppress too, a complaint suppresses, a person's reply marks the email ``replied``. Classifying
the reply and indexing it come after, in the inbound manager (a model may be slow or away; the
message is stored and acknowledged first).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from email_sender import metrics
from email_sender.db.engine import Database
from email_sender.errors import ValidationError
from email_sender.events import EventBus
from email_sender.inbound.autoreply import AutoReply, detect
from email_sender.inbound.dsn import Bounce, Complaint, parse_report
from email_sender.inbound.linking import Link, Linker
from email_sender.inbound.parse import ParsedMessage, parse_message
from email_sender.inbound.quotes import split_reply
from email_sender.inbound.store import InboundStore
from email_sender.mail.outbox import Status
from email_sender.mail.sent import SentEmails
from email_sender.mail.suppression import SuppressionList
from email_sender.settings import InboundSettings

logger = logging.getLogger(__name__)

CONCURRENT_READS = 2
# Column widths (db/schema.py): longer values from the wild are cut, the raw source keeps them.
MAX_ID_CHARS = 998
# The local part List-Unsubscribe's mailto writes to, at inbound.verp_domain.
UNSUBSCRIBE_LOCAL = "unsubscribe"
MAX_ADDRESS_CHARS = 320
# Email statuses a bounce or a reply may move on from (never a queued or cancelled one).
AFTER_SENDING = (Status.SENT.value, Status.REPLIED.value, Status.BOUNCED.value)


@dataclass(frozen=True)
class Envelope:
    """How a message reached us: the door, and the SMTP envelope when there was one."""

    via: str  # smtp | imap | webhook
    mail_from: str | None = None
    rcpt_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class Received:
    id: str
    created: bool  # False: the same message was stored before
    kind: str
    email_id: str | None


@dataclass(frozen=True)
class Understood:
    """What parsing found, before any database is asked."""

    parsed: ParsedMessage
    report: Bounce | Complaint | None
    auto: AutoReply | None
    own_words: str
    quoted: str
    raw_base64: str  # the source as kept (encoded here, off the event loop: it may be 25 MB)

    @property
    def kind(self) -> str:
        if isinstance(self.report, Bounce):
            return "bounce"
        if isinstance(self.report, Complaint):
            return "complaint"
        if self.auto is not None:
            return self.auto.kind
        return "reply"


def understand(raw: bytes, *, max_bytes: int, null_sender: bool = False) -> Understood:
    """Parse and read one message (CPU work: run it in a thread)."""
    parsed = parse_message(raw, max_bytes=max_bytes)
    report = parse_report(parsed.message)
    auto = None if report is not None else detect(parsed, null_sender=null_sender)
    split = split_reply(parsed.text)
    encoded = base64.b64encode(raw).decode("ascii")
    return Understood(parsed, report, auto, split.own_words, split.quoted, encoded)


Stored = Callable[[dict[str, Any]], Awaitable[None]]


class Receiver:
    def __init__(
        self,
        settings: InboundSettings,
        *,
        db: Database,
        store: InboundStore,
        suppressions: SuppressionList,
        bus: EventBus,
    ) -> None:
        self.settings = settings
        self.store = store
        self.suppressions = suppressions
        self.bus = bus
        secret = settings.verp_secret.get_secret_value().encode() if settings.verp_secret else None
        self.sent = SentEmails(db)
        self.linker = Linker(self.sent, verp_domain=settings.verp_domain, verp_secret=secret)
        # Called with each newly stored row (the manager classifies and indexes it).
        self.listeners: list[Stored] = []
        # Called with the subject and sender of a mail to unsubscribe@<verp_domain> (the mailto
        # of List-Unsubscribe); set where unsubscribe links are configured.
        self.unsubscribe: Callable[[str, str | None], Awaitable[bool]] | None = None
        self.counters: dict[str, int] = {"received": 0, "duplicates": 0, "refused": 0}
        # Messages read at once: a flood of big ones must leave the shared thread pool (IMAP,
        # classifier fitting) room to work.
        self._readers = asyncio.Semaphore(CONCURRENT_READS)

    async def receive(self, raw: bytes, envelope: Envelope) -> Received:
        """Store one message and act on it; ValidationError when it is refused for good."""
        try:
            async with self._readers:
                found = await asyncio.to_thread(
                    understand, raw, max_bytes=self.settings.max_message_bytes,
                    null_sender=envelope.mail_from == "",
                )
        except Exception as exc:
            self.counters["refused"] += 1
            metrics.inbound_messages.labels(envelope.via, "refused").inc()
            if isinstance(exc, ValidationError):
                raise
            # A message that breaks the reader breaks it every time: refused for good, so a
            # mailbox or a sending server does not offer it again and again.
            logger.exception("inbound_unreadable", extra={"via": envelope.via})
            raise ValidationError(
                "message", f"cannot be read ({type(exc).__name__}); kept out"
            ) from exc
        link = await self.linker.link(found, envelope)
        kind = "other" if link.own_copy else found.kind
        if kind == "reply" and link.email_id is None:
            kind = "other"  # a person writing to us, not answering anything we sent
        row, created = await self.store.insert(self._row(envelope, found, link, kind))
        if not created:
            self.counters["duplicates"] += 1
            metrics.inbound_messages.labels(envelope.via, "duplicate").inc()
            # Acting again is harmless (each step is conditional) and finishes what a failure
            # after the insert left undone: the sender retried because we did not answer.
            await self._act(row, found)
            await self._unsubscribe_if_asked(row, envelope, found)
            return Received(row["id"], False, row["kind"], row["email_id"])
        self.counters["received"] += 1
        metrics.inbound_messages.labels(envelope.via, kind).inc()
        logger.info(
            "inbound_received",
            extra={"inbound_id": row["id"], "kind": kind, "email_id": link.email_id,
                   "via": envelope.via, "thread_by": link.thread_by},
        )
        await self._act(row, found)
        await self._unsubscribe_if_asked(row, envelope, found)
        await self.bus.publish(
            "inbound.received",
            inbound_id=row["id"], kind=kind, via=envelope.via, email_id=link.email_id,
            **{"from": row["from_addr"]}, subject=row["subject"],
        )
        for listener in self.listeners:
            await listener(row)
        return Received(row["id"], True, kind, link.email_id)

    async def _unsubscribe_if_asked(
        self, row: dict[str, Any], envelope: Envelope, found: Understood
    ) -> None:
        domain = self.settings.verp_domain
        if self.unsubscribe is None or not domain:
            return
        wanted = f"{UNSUBSCRIBE_LOCAL}@{domain}".lower()
        addressed = [*envelope.rcpt_to, *found.parsed.to_addrs]
        if any(address.strip().lower() == wanted for address in addressed):
            await self.unsubscribe(row["subject"], row["from_addr"])

    def _row(
        self, envelope: Envelope, found: Understood, link: Link, kind: str
    ) -> dict[str, Any]:
        parsed = found.parsed
        now = time.time()
        automatic = kind not in ("reply", "other")
        return {
            "dedupe_key": parsed.dedupe_key,
            "message_id": _capped(parsed.message_id, MAX_ID_CHARS),
            "via": envelope.via,
            "mail_from": _capped(envelope.mail_from, MAX_ID_CHARS),
            "rcpt_to": list(envelope.rcpt_to),
            "from_addr": _capped(parsed.from_addr, MAX_ADDRESS_CHARS),
            "from_name": parsed.from_name,
            "to_addrs": parsed.to_addrs,
            "subject": parsed.subject,
            "headers": [list(pair) for pair in parsed.headers],
            "in_reply_to": parsed.in_reply_to,
            "references": parsed.references,
            "text_body": parsed.text,
            "own_words": found.own_words,
            "quoted": found.quoted,
            "defects": parsed.defects,
            "size": parsed.size,
            "raw": found.raw_base64,
            "kind": kind,
            # Machines answering for people are known from the headers: no model needed.
            "intent": kind if automatic else None,
            "confidence": 1.0 if automatic else None,
            "layer": "headers" if automatic else None,
            "needs_review": 0,
            "scores": None,
            "label": None,
            "details": _details(found, link),
            "email_id": link.email_id,
            "thread_by": link.thread_by,
            "vector_state": "pending",
            "received_at": now,
            "written_at": min(parsed.date, now) if parsed.date is not None else None,
            "raw_expires_at": now + self.settings.retention,
        }

    async def _act(self, row: dict[str, Any], found: Understood) -> None:
        if row["email_id"] is None:
            # A report about nothing we sent (or forged backscatter) changes nothing: kept only.
            return
        if isinstance(found.report, Bounce):
            await self._bounced(row, found.report)
        elif isinstance(found.report, Complaint):
            # Anyone who got the email can forge a report about it: only its own recipients
            # can be suppressed by one.
            addressed = await self.sent.recipients(row["email_id"])
            for address in [item for item in found.report.original_rcpt_to if item in addressed]:
                await self.suppressions.add(
                    address, reason="complaint", detail=found.report.feedback_type,
                    email_id=row["email_id"],
                )
                logger.warning("complaint_suppressed", extra={"address": address,
                                                              "email_id": row["email_id"]})
        elif row["kind"] == "reply":
            if await self._set_status(row["email_id"], Status.REPLIED, (Status.SENT.value,)):
                await self.bus.publish(
                    "email.replied", email_id=row["email_id"], inbound_id=row["id"],
                    **{"from": row["from_addr"]},
                )

    async def _bounced(self, row: dict[str, Any], bounce: Bounce) -> None:
        since = time.time() - self.settings.soft_bounce_window
        # Only an address the email was sent to can bounce it.
        addressed = await self.sent.recipients(row["email_id"])
        reported = [item for item in bounce.recipients if item.address in addressed]
        for recipient in reported:
            if recipient.action not in ("failed", "delayed"):
                continue
            if recipient.permanent:
                reason, code = "hard_bounce", _smtp_code(recipient.diagnostic)
            else:
                soft = await self.store.soft_bounces(recipient.address, since)
                if soft < self.settings.soft_bounce_limit:
                    continue
                reason, code = "soft_bounces", None
            await self.suppressions.add(
                recipient.address, reason=reason, smtp_code=code,
                detail=recipient.diagnostic or recipient.status, email_id=row["email_id"],
            )
            logger.warning("bounce_suppressed", extra={
                "address": recipient.address, "status": recipient.status, "reason": reason,
                "email_id": row["email_id"]})
        permanent = [recipient for recipient in reported if recipient.permanent]
        if permanent:
            if await self._set_status(row["email_id"], Status.BOUNCED, AFTER_SENDING):
                first = permanent[0]
                await self.bus.publish(
                    "email.bounced", email_id=row["email_id"], inbound_id=row["id"],
                    address=first.address, status=first.status, diagnostic=first.diagnostic,
                )

    async def _set_status(self, email_id: str, status: Status, allowed: tuple[str, ...]) -> bool:
        return await self.sent.mark(email_id, status.value, allowed=allowed)


def _details(found: Understood, link: Link) -> dict[str, Any]:
    details: dict[str, Any] = {"own_copy": True} if link.own_copy else {}
    if link.email_id is None and found.kind in ("bounce", "complaint"):
        details["unmatched"] = "no email of ours matches this report"
    report = found.report
    if isinstance(report, Bounce):
        details["reporting_mta"] = report.reporting_mta
        details["original_message_id"] = report.original_message_id
        details["recipients"] = [
            {"address": item.address, "action": item.action, "status": item.status,
             "diagnostic": item.diagnostic, "permanent": item.permanent}
            for item in report.recipients
        ]
    elif isinstance(report, Complaint):
        details["feedback_type"] = report.feedback_type
        details["original_rcpt_to"] = report.original_rcpt_to
        details["original_message_id"] = report.original_message_id
    elif found.auto is not None:
        details["auto_reply"] = found.auto.reason
        if found.auto.return_date is not None:
            details["return_date"] = found.auto.return_date.isoformat()
    return details


def _capped(value: str | None, limit: int) -> str | None:
    return value[:limit] if value is not None else None


def _smtp_code(diagnostic: str | None) -> int | None:
    """The reply code in a Diagnostic-Code such as ``smtp; 550 5.1.1 user unknown``."""
    for word in (diagnostic or "").replace(";", " ").split():
        if len(word) == 3 and word.isdigit() and word[0] in "45":
            return int(word)
    return None
