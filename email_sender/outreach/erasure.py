"""Right to erasure: a contact removed with what the service kept about them, and never mailed
again.

``erase_contact`` removes the contact, its history and its enrolments; blanks every outgoing
email to the address (subject, bodies, attachments; one not yet sent is cancelled, so no blank
copy goes out to its other recipients) and every message received from it (subject, sender
name, headers, bodies, the raw source), together with the bounces and complaints about those
emails; drops the replies used as classifier examples; deletes all their points from the
emails collection; and suppresses the address with the reason ``erased``.

What stays: the address on the suppression list (so it is not written to again), the address
among the recipients of the blanked emails, and the send log the outreach caps count.

Order: the points are deleted first, so a vector store that cannot answer stops the erasure
before anything changed (the caller may try again). SQL then changes in one transaction, the
audit record with it, and the points are deleted once more, for any row the indexer embedded
meanwhile. Erased rows are marked ``vector_state = 'erased'``, which no indexer picks up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from sqlalchemy import Text, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from email_sender.db import audit
from email_sender.db.engine import Database
from email_sender.db.schema import (
    classifier_labels,
    contact_history,
    contacts,
    emails,
    enrolments,
    inbound_messages,
    suppressions,
)
from email_sender.errors import NotFound, VectorError, VectorStoreUnavailable
from email_sender.mail.message import address_of
from email_sender.mail.outbox import DUE, Status
from email_sender.vectors.store import VectorStore

logger = logging.getLogger(__name__)

ERASED = "erased"  # the suppression reason and the rows' vector_state
SCAN_BATCH = 500  # email rows read per query while looking for the address
ID_CHUNK = 500  # ids per UPDATE / DELETE / vector call
# Received about an email we sent, and quoting it: erased with the email.
REPORT_KINDS = ("bounce", "complaint")


class StoreSource(Protocol):
    """Where the vector store comes from (the ``qdrant_manager``)."""

    async def ready_store(self) -> VectorStore: ...


@dataclass
class ErasureReport:
    contact_id: str
    emails: int  # outgoing emails blanked
    cancelled: int  # of those, not sent yet: cancelled
    inbound: int  # received messages blanked
    vectors: int  # points deleted from the emails collection
    history: int  # status moves deleted
    enrolments: int
    labels: int  # classifier examples dropped
    suppressed: str  # "added", or "kept" when the address was suppressed already

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def erase_contact(
    db: Database,
    vectors: StoreSource | None,
    collection: str,
    contact_id: str,
    *,
    actor: str,
    client_ip: str | None = None,
) -> ErasureReport:
    """Erase the contact (NotFound, with nothing changed, for an unknown one)."""
    address = await _address(db, contact_id)
    if vectors is None:
        raise VectorStoreUnavailable("this node has no vector store: erase from an API node")
    store = await vectors.ready_store()
    async with db.connect() as connection:
        email_ids = await _emails_to(connection, address)
        inbound_ids = await _inbound_about(connection, address, email_ids)
    deleted = await _delete_points(store, collection, [*email_ids, *inbound_ids])

    async with db.transaction() as connection:
        removed = await connection.execute(delete(contacts).where(contacts.c.id == contact_id))
        if not removed.rowcount:
            raise NotFound(f"no contact with id {contact_id}", id=contact_id)
        # Again, inside the transaction: mail accepted since the first look is erased too.
        email_ids = await _emails_to(connection, address)
        inbound_ids = await _inbound_about(connection, address, email_ids)
        cancelled = await _blank_emails(connection, email_ids)
        labels = await _blank_inbound(connection, inbound_ids)
        history = await connection.execute(
            delete(contact_history).where(contact_history.c.contact_id == contact_id)
        )
        enrolled = await connection.execute(
            delete(enrolments).where(enrolments.c.contact_id == contact_id)
        )
        suppressed = await _suppress(connection, db.dialect, address)
        report = ErasureReport(
            contact_id=contact_id, emails=len(email_ids), cancelled=cancelled,
            inbound=len(inbound_ids), vectors=deleted, history=history.rowcount,
            enrolments=enrolled.rowcount, labels=labels, suppressed=suppressed,
        )
        # The report holds counts, never the address: the audit log must not keep it.
        await audit.record_in(
            connection, actor=actor, action="contact_erased", target=contact_id,
            details={key: value for key, value in report.as_dict().items()
                     if key != "contact_id"},
            client_ip=client_ip,
        )
    try:
        report.vectors += await _delete_points(store, collection, [*email_ids, *inbound_ids])
    except VectorError as exc:
        # The rows are blank and marked erased; only a point embedded in the last moments may
        # remain. Logged for the operator (ids only).
        logger.error("erasure_points_left", extra={"contact_id": contact_id, "error": str(exc)})
    logger.info("contact_erased", extra=report.as_dict())
    return report


async def _address(db: Database, contact_id: str) -> str:
    async with db.connect() as connection:
        address = (
            await connection.execute(select(contacts.c.email).where(contacts.c.id == contact_id))
        ).scalar()
    if address is None:
        raise NotFound(f"no contact with id {contact_id}", id=contact_id)
    return str(address)


async def _emails_to(connection: AsyncConnection, address: str) -> list[str]:
    """Ids of the emails with ``address`` among their recipients, by keyset batches."""
    recipients = (emails.c.to_addrs, emails.c.cc_addrs, emails.c.bcc_addrs)
    query = select(emails.c.id, emails.c.created_at, *recipients)
    if address.isascii():
        # A superset: the JSON text of a list naming the address holds it (any case).
        query = query.where(or_(*(
            func.lower(column.cast(Text())).contains(address, autoescape=True)
            for column in recipients
        )))  # fmt: skip
    found: list[str] = []
    after: tuple[float, str] | None = None
    while True:
        page = query
        if after is not None:
            page = page.where(or_(
                emails.c.created_at > after[0],
                and_(emails.c.created_at == after[0], emails.c.id > after[1]),
            ))  # fmt: skip
        rows = list(
            await connection.execute(
                page.order_by(emails.c.created_at, emails.c.id).limit(SCAN_BATCH)
            )
        )
        found += [
            row.id for row in rows
            if any(address_of(value).lower() == address
                   for value in (*row.to_addrs, *row.cc_addrs, *row.bcc_addrs))
        ]  # fmt: skip
        if len(rows) < SCAN_BATCH:
            return found
        after = (rows[-1].created_at, rows[-1].id)


async def _inbound_about(
    connection: AsyncConnection, address: str, email_ids: Sequence[str]
) -> list[str]:
    """Messages from the address, and bounces or complaints about the emails to it."""
    rows = await connection.execute(
        select(inbound_messages.c.id).where(inbound_messages.c.from_addr == address)
    )
    found = dict.fromkeys(row.id for row in rows)
    for chunk in _chunks(email_ids):
        rows = await connection.execute(
            select(inbound_messages.c.id).where(
                inbound_messages.c.email_id.in_(chunk),
                inbound_messages.c.kind.in_(REPORT_KINDS),
            )
        )
        found.update(dict.fromkeys(row.id for row in rows))
    return list(found)


async def _blank_emails(connection: AsyncConnection, email_ids: Sequence[str]) -> int:
    """Blank the emails; cancel those not sent yet. Answer how many were cancelled."""
    now = time.time()
    cancelled = 0
    for chunk in _chunks(email_ids):
        result = await connection.execute(
            update(emails)
            .where(emails.c.id.in_(chunk), emails.c.status.in_((*DUE, Status.HELD.value)))
            .values(status=Status.CANCELLED.value, lease_owner=None, lease_until=None,
                    last_error="the recipient's data was erased", updated_at=now)
        )  # fmt: skip
        cancelled += result.rowcount
        await connection.execute(
            update(emails)
            .where(emails.c.id.in_(chunk))
            .values(subject="", text_body=None, html_body=None, attachments=[],
                    vector_state=ERASED, updated_at=now)
        )  # fmt: skip
    return cancelled


async def _blank_inbound(connection: AsyncConnection, inbound_ids: Sequence[str]) -> int:
    """Blank the messages and drop their classifier examples; answer how many were dropped."""
    labels = 0
    for chunk in _chunks(inbound_ids):
        await connection.execute(
            update(inbound_messages)
            .where(inbound_messages.c.id.in_(chunk))
            .values(subject="", from_name=None, headers=[], text_body="", own_words="",
                    quoted="", raw=None, vector_state=ERASED)
        )  # fmt: skip
        dropped = await connection.execute(
            delete(classifier_labels).where(classifier_labels.c.inbound_id.in_(chunk))
        )
        labels += dropped.rowcount
    return labels


async def _suppress(connection: AsyncConnection, dialect_name: str, address: str) -> str:
    """Suppress the address as erased; one suppressed already keeps its row, now ``erased``."""
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    kept = (
        await connection.execute(
            select(suppressions.c.address).where(suppressions.c.address == address)
        )
    ).first()
    statement = dialect.insert(suppressions).values(
        address=address, reason=ERASED, detail="the contact's data was erased",
        created_at=time.time(),
    )
    await connection.execute(
        statement.on_conflict_do_update(
            index_elements=["address"],
            set_={"reason": ERASED, "detail": "the contact's data was erased"},
        )
    )
    return "kept" if kept else "added"


async def _delete_points(store: VectorStore, collection: str, ids: Sequence[str]) -> int:
    """Delete the points with these ids; answer how many there were."""
    present = 0
    for chunk in _chunks(ids):
        present += len(await store.retrieve(collection, chunk))
        await store.delete(collection, chunk)
    return present


def _chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), ID_CHUNK):
        yield list(ids[start:start + ID_CHUNK])
