"""Threading: which email of ours a received message answers or reports on.

In order of trust: for a bounce or a complaint, the signed VERP return path it came back to,
then the returned message's id; for anything else, the message ids it quotes (In-Reply-To,
References), the signed VERP return path or a plus-address token it was sent to, and last the
sender's address with the same normalised subject as an email we sent them. A copy of our own
mail (its Message-ID is one of ours) is never a reply.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from email_sender.inbound.dsn import Bounce, Complaint
from email_sender.inbound.parse import normalise_subject
from email_sender.inbound.verp import email_id_from_verp, plus_tag
from email_sender.mail.message import address_of
from email_sender.mail.sent import SentEmails

if TYPE_CHECKING:
    from email_sender.inbound.receiver import Envelope, Understood

# How many recent emails to one address are compared by subject, and how far back.
SUBJECT_CANDIDATES = 50
SUBJECT_WINDOW_SECONDS = 180 * 86400.0
# Headers in which relays keep the address a message was delivered to.
DELIVERY_HEADERS = ("delivered-to", "x-original-to", "envelope-to")


@dataclass(frozen=True)
class Link:
    email_id: str | None = None
    thread_by: str | None = None  # in_reply_to | references | returned | verp | plus | subject
    own_copy: bool = False


class Linker:
    def __init__(
        self, sent: SentEmails, *, verp_domain: str | None, verp_secret: bytes | None
    ) -> None:
        self.sent = sent
        self.verp_domain = verp_domain
        self.verp_secret = verp_secret

    async def link(self, found: Understood, envelope: Envelope) -> Link:
        parsed = found.parsed
        if parsed.message_id and await self.sent.by_message_id([parsed.message_id]):
            return Link(own_copy=True)
        report = found.report
        recipients = _recipients(found, envelope)
        if isinstance(report, Bounce | Complaint):
            # The signed return path first: a Message-ID can be copied by anyone who saw it.
            return (
                self._by_verp(recipients)
                or await self._by_message_ids([report.original_message_id], "returned")
                or Link()
            )
        link = (
            await self._by_message_ids(parsed.in_reply_to, "in_reply_to")
            # The newest reference is the message answered; older ones are the thread's start.
            or await self._by_message_ids(list(reversed(parsed.references)), "references")
            or self._by_verp(recipients)
            or await self._by_plus(recipients)
        )
        if link:
            return link
        if parsed.from_addr:
            return await self._by_subject(parsed.from_addr, parsed.subject) or Link()
        return Link()

    async def _by_message_ids(
        self, message_ids: Sequence[str | None], how: str
    ) -> Link | None:
        wanted = [message_id for message_id in message_ids if message_id]
        found = await self.sent.by_message_id(wanted)
        for message_id in wanted:
            if message_id in found:
                return Link(found[message_id]["id"], how)
        return None

    def _by_verp(self, addresses: Iterable[str]) -> Link | None:
        if not (self.verp_domain and self.verp_secret):
            return None
        for address in addresses:
            email_id = email_id_from_verp(
                address, domain=self.verp_domain, secret=self.verp_secret
            )
            if email_id:
                return Link(email_id, "verp")
        return None

    async def _by_plus(self, addresses: Iterable[str]) -> Link | None:
        """``booking+<email id>@…``: a reply address tagged with the email it answers."""
        for address in addresses:
            tag = plus_tag(address)
            if not tag:
                continue
            try:
                email_id = str(uuid.UUID(tag))
            except ValueError:
                continue
            if await self.sent.exists(email_id):
                return Link(email_id, "plus")
        return None

    async def _by_subject(self, sender: str, subject: str) -> Link | None:
        wanted = normalise_subject(subject)
        if not wanted:
            return None
        candidates = await self.sent.recent_to(
            sender, since=time.time() - SUBJECT_WINDOW_SECONDS, limit=SUBJECT_CANDIDATES
        )
        for row in candidates:
            if normalise_subject(row.subject) == wanted:
                return Link(row.id, "subject")
        return None


def _recipients(found: Understood, envelope: Envelope) -> list[str]:
    """Every address the message was delivered or written to, envelope first."""
    addresses = [*envelope.rcpt_to]
    for name, value in found.parsed.headers:
        if name.lower() in DELIVERY_HEADERS:
            addresses.append(address_of(value))
    addresses.extend(found.parsed.to_addrs)
    if isinstance(found.report, Complaint) and found.report.original_mail_from:
        addresses.append(found.report.original_mail_from)
    return [address.strip().lower() for address in addresses if address]
