"""One-click unsubscribe (RFC 8058): signed links, the headers that carry them, and the act.

A token is the address and an HMAC-SHA256 of it under ``outreach.unsubscribe_secret``, both
base64url: it cannot be made without the secret, nor moved to another address. Unsubscribing
suppresses the address (no mail goes to it again), moves its contact to ``unsubscribed`` with
the history saying so, ends its open enrolments, is audited and published as
``contact.unsubscribed``. It is idempotent: a second POST of the same link (mail clients retry)
changes nothing more.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import time
from typing import Any

from sqlalchemy import update

from email_sender.db import audit
from email_sender.db.engine import Database
from email_sender.db.schema import enrolments
from email_sender.errors import NotFound, ValidationError
from email_sender.events import EventBus
from email_sender.mail.suppression import SuppressionList
from email_sender.outreach.contacts import Change, ContactStore
from email_sender.outreach.fields import ContactFields
from email_sender.outreach.sequences import OPEN

logger = logging.getLogger(__name__)

# Bytes of the HMAC kept in a token: 128 bits, short enough for a header line.
MAC_BYTES = 16
UNSUBSCRIBED = "unsubscribed"
# Where a mail client's "unsubscribe" button writes to when the link is a mailto.
MAILTO_LOCAL = "unsubscribe"
MAX_HEADER_CHARS = 900
_SUBJECT_TOKEN = re.compile(r"\bunsubscribe\s+([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)", re.IGNORECASE)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(address: str, secret: bytes) -> bytes:
    return hmac.new(secret, b"unsubscribe:" + address.encode(), hashlib.sha256).digest()[:MAC_BYTES]


def make_token(address: str, secret: bytes) -> str:
    address = address.strip().lower()
    return f"{_b64(address.encode())}.{_b64(_mac(address, secret))}"


def address_from_token(token: str, secret: bytes) -> str:
    """The address a token was made for; NotFound for anything this service did not sign."""
    invalid = NotFound("this unsubscribe link is not valid")
    encoded, _, signature = token.partition(".")
    try:
        address = _unb64(encoded).decode()
        given = _unb64(signature)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid from None
    if not hmac.compare_digest(given, _mac(address, secret)):
        raise invalid
    return address


def list_unsubscribe_headers(
    address: str, *, base_url: str, secret: bytes, mailto_domain: str | None = None
) -> dict[str, str]:
    """The headers an outreach email carries for its recipient (RFC 2369, RFC 8058): the
    one-click link and, when mail comes back to ``mailto_domain``, an address to write to."""
    token = make_token(address, secret)
    links = [f"<{base_url.rstrip('/')}/{token}>"]
    if mailto_domain:
        mailto = f"<mailto:{MAILTO_LOCAL}@{mailto_domain}?subject=unsubscribe%20{token}>"
        if len(links[0]) + len(mailto) + 2 <= MAX_HEADER_CHARS:  # else the link alone
            links.append(mailto)
    return {
        "List-Unsubscribe": ", ".join(links),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def token_in(subject: str) -> str | None:
    """The token of an unsubscribe request's subject ("unsubscribe <token>"), or None."""
    match = _SUBJECT_TOKEN.search(subject)
    return match.group(1) if match else None


class Unsubscriber:
    def __init__(
        self,
        db: Database,
        suppressions: SuppressionList,
        contacts: ContactStore,
        bus: EventBus,
        secret: bytes,
    ) -> None:
        self.db = db
        self.suppressions = suppressions
        self.contacts = contacts
        self.bus = bus
        self.secret = secret

    async def is_unsubscribed(self, address: str) -> bool:
        return bool(await self.suppressions.among([address]))

    async def unsubscribe(
        self, address: str, *, client_ip: str | None, how: str = "one-click unsubscribe link"
    ) -> bool:
        """Suppress the address and move its contact; False when it was done before."""
        created = await self.suppressions.add(address, reason="unsubscribe", detail=how)
        contact = await self.contacts.find(address)
        moved = False
        if contact is not None:
            moved = await self._move_contact(contact, how)
            await self._end_enrolments(contact["id"])
        if created or moved:
            await audit.record(
                self.db, actor="unsubscribe-link", action="unsubscribed", target=address,
                details={"how": how}, client_ip=client_ip,
            )
            await self.bus.publish("contact.unsubscribed", address=address)
            logger.info("contact_unsubscribed", extra={"address": address})
        return created or moved

    async def by_address(self, address: str, how: str) -> bool:
        """Unsubscribe ``address`` asked some other way (a reply saying so)."""
        return await self.unsubscribe(address, client_ip=None, how=how)

    async def by_mail(self, subject: str, sender: str | None) -> bool:
        """Act on a mail to the unsubscribe address; False when its subject holds no token this
        service signed. The token decides the address, not the sender, who may write from
        another address or be forged."""
        token = token_in(subject)
        if token is None:
            return False
        try:
            address = address_from_token(token, self.secret)
        except NotFound:
            logger.warning("unsubscribe_mail_refused", extra={"sender": sender})
            return False
        await self.unsubscribe(address, client_ip=None, how="unsubscribe mail")
        return True

    async def _end_enrolments(self, contact_id: str) -> None:
        async with self.db.transaction() as connection:
            await connection.execute(
                update(enrolments)
                .where(enrolments.c.contact_id == contact_id,
                       enrolments.c.status.in_(OPEN))
                .values(status=UNSUBSCRIBED, reason="unsubscribed", updated_at=time.time())
            )

    async def _move_contact(self, contact: dict[str, Any], how: str) -> bool:
        if contact["status"] == UNSUBSCRIBED:
            return False
        try:
            await self.contacts.update(
                contact["id"], ContactFields(), Change("unsubscribe", None, how),
                status=UNSUBSCRIBED,
            )
        except ValidationError as exc:
            # A lifecycle without the status: the suppression alone stops the mail.
            logger.warning("unsubscribe_status_refused", extra={"address": contact["email"],
                                                                "error": exc.reason})
            return False
        return True
