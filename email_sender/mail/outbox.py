"""The durable outbox: emails and their attempts in SQL, the source of truth.

Accepting commits the row before anyone is told its id. Workers claim due emails with a lease
(``lease_owner``, ``lease_until``): on PostgreSQL with ``FOR UPDATE SKIP LOCKED``, on SQLite with
one atomic ``UPDATE … RETURNING`` (SQLite has a single writer). An expired lease — a crashed
worker — makes the email claimable again. Every outcome is recorded only while the lease is
still ours, so two workers never both record one email.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Text, and_, bindparam, func, insert, or_, select, update

from email_sender.db.cursors import newest_first, page_of
from email_sender.db.engine import Database
from email_sender.db.schema import attempts, emails
from email_sender.errors import Conflict, DuplicateKey, NotFound
from email_sender.mail.message import PreparedEmail


class Status(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUPPRESSED = "suppressed"
    HELD = "held"
    # After sending: a bounce came back, or a person answered.
    BOUNCED = "bounced"
    REPLIED = "replied"


DUE = (Status.QUEUED.value, Status.DEFERRED.value)


@dataclass(frozen=True)
class Accepted:
    id: str
    message_id: str
    status: str
    created: bool  # False: an earlier request with the same idempotency key answered


def content_checksum(email: PreparedEmail) -> str:
    """SHA-256 of what is sent (addresses, subject, bodies, attachments), for integrity checks."""
    row = email.to_row()
    for volatile in ("request_fingerprint", "idempotency_key", "dedupe", "send_at"):
        row.pop(volatile)
    return hashlib.sha256(json.dumps(row, sort_keys=True).encode()).hexdigest()


def _columns(email: PreparedEmail) -> dict[str, Any]:
    row = email.to_row()
    return {
        "message_id": email.message_id,
        "idempotency_key": email.idempotency_key,
        "request_fingerprint": email.request_fingerprint,
        "from_addr": email.from_addr,
        "to_addrs": row["to"],
        "cc_addrs": row["cc"],
        "bcc_addrs": row["bcc"],
        "reply_to": email.reply_to,
        "subject": email.subject,
        "text_body": email.text,
        "html_body": email.html,
        "headers": row["headers"],
        "attachments": row["attachments"],
        "tags": row["tags"],
        "metadata": row["metadata"],
        "checksum": content_checksum(email),
    }


def _new_row(
    email: PreparedEmail, status: Status, now: float, held_reason: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        **_columns(email),
        "id": str(uuid.uuid4()),
        "status": status.value,
        "attempts": 0,
        "next_attempt_at": email.send_at.timestamp() if email.send_at else now,
        "held_reason": held_reason,
        "vector_state": "pending",
        "vector_attempts": 0,
        "vector_next_at": 0.0,
        "created_at": now,
        "updated_at": now,
    }


def prepared_from_row(row: Any) -> PreparedEmail:
    """Rebuild the email to send from its stored row."""
    return PreparedEmail.from_row(
        {
            "message_id": row.message_id,
            "from_addr": row.from_addr,
            "to": row.to_addrs,
            "cc": row.cc_addrs,
            "bcc": row.bcc_addrs,
            "reply_to": row.reply_to,
            "subject": row.subject,
            "text": row.text_body,
            "html": row.html_body,
            "headers": row.headers,
            "attachments": row.attachments,
            "tags": row.tags,
            "metadata": row.metadata,
            "send_at": None,
            "request_fingerprint": row.request_fingerprint,
            "idempotency_key": row.idempotency_key,
            "dedupe": None,
        }
    )


_SUMMARY = [
    emails.c.id,
    emails.c.message_id,
    emails.c.status,
    emails.c.from_addr,
    emails.c.to_addrs,
    emails.c.cc_addrs,
    emails.c.subject,
    emails.c.tags,
    emails.c.attempts,
    emails.c.next_attempt_at,
    emails.c.created_at,
    emails.c.updated_at,
    emails.c.sent_at,
    emails.c.last_error,
    emails.c.vector_state,
]


class Outbox:
    def __init__(self, db: Database, *, idempotency_retention: float) -> None:
        self.db = db
        self.idempotency_retention = idempotency_retention
        self._group_commit = _GroupCommit(db)

    # Accept

    async def accept(
        self,
        email: PreparedEmail,
        *,
        status: Status = Status.QUEUED,
        held_reason: dict[str, Any] | None = None,
    ) -> Accepted:
        """Commit the email; with an idempotency key already used, answer the first email."""
        now = time.time()
        values = _new_row(email, status, now, held_reason)
        if email.idempotency_key is None:
            await self._group_commit.insert(values)
            return Accepted(values["id"], email.message_id, status.value, created=True)
        for _ in range(3):
            try:
                async with self.db.transaction() as connection:
                    await connection.execute(insert(emails).values(**values))
                return Accepted(values["id"], email.message_id, status.value, created=True)
            except DuplicateKey:
                earlier = await self._by_idempotency_key(email.idempotency_key)
                if earlier is None:
                    continue  # released meanwhile: try again
                if earlier.created_at < now - self.idempotency_retention:
                    await self._release_key(earlier.id)
                    continue
                if earlier.request_fingerprint != email.request_fingerprint:
                    raise Conflict(
                        "this Idempotency-Key was already used with a different request",
                        idempotency_key=email.idempotency_key,
                        email_id=earlier.id,
                    ) from None
                return Accepted(earlier.id, earlier.message_id, earlier.status, created=False)
        raise Conflict("Idempotency-Key is contended; retry the request")

    async def accept_many(self, batch: list[PreparedEmail]) -> list[Accepted]:
        """Commit emails without idempotency keys in one transaction, in order."""
        if not batch:
            return []
        now = time.time()
        rows = [_new_row(email, Status.QUEUED, now) for email in batch]
        async with self.db.transaction() as connection:
            await connection.execute(insert(emails), rows)
        return [Accepted(row["id"], row["message_id"], row["status"], True) for row in rows]

    async def accept_keyed(self, batch: list[PreparedEmail]) -> list[Accepted]:
        """Commit emails the service makes itself, each with an idempotency key, in one
        transaction, in order. When a key is taken already (rare: a retry, another node), each
        is accepted on its own instead; a taken key answers the email kept for it."""
        if not batch:
            return []
        now = time.time()
        rows = [_new_row(email, Status.QUEUED, now) for email in batch]
        try:
            async with self.db.transaction() as connection:
                await connection.execute(insert(emails), rows)
        except DuplicateKey:
            return [await self._accept_or_earlier(email) for email in batch]
        return [Accepted(row["id"], row["message_id"], row["status"], True) for row in rows]

    async def _accept_or_earlier(self, email: PreparedEmail) -> Accepted:
        """The key names what the email is for: one made earlier from other data is that
        email, not a conflict."""
        try:
            return await self.accept(email)
        except Conflict as exc:
            if "email_id" not in exc.details:
                raise
            earlier = await self._by_idempotency_key(str(email.idempotency_key))
            if earlier is None:
                raise
            return Accepted(earlier.id, earlier.message_id, earlier.status, created=False)

    async def _by_idempotency_key(self, key: str) -> Any:
        async with self.db.connect() as connection:
            query = select(
                emails.c.id,
                emails.c.message_id,
                emails.c.status,
                emails.c.request_fingerprint,
                emails.c.created_at,
            ).where(emails.c.idempotency_key == key)
            return (await connection.execute(query)).first()

    async def _release_key(self, email_id: str) -> None:
        async with self.db.transaction() as connection:
            await connection.execute(
                update(emails).where(emails.c.id == email_id).values(idempotency_key=None)
            )

    async def expire_idempotency_keys(self) -> int:
        """Free keys older than the retention window so they can be used again."""
        async with self.db.transaction() as connection:
            result = await connection.execute(
                update(emails)
                .where(
                    emails.c.idempotency_key.is_not(None),
                    emails.c.created_at < time.time() - self.idempotency_retention,
                )
                .values(idempotency_key=None)
            )
            return result.rowcount

    # Read

    async def get(self, email_id: str) -> dict[str, Any]:
        """One email with every attempt; attachments listed without their content."""
        async with self.db.connect() as connection:
            row = (await connection.execute(select(emails).where(emails.c.id == email_id))).first()
            if row is None:
                raise NotFound(f"no email with id {email_id}", id=email_id)
            tried = await connection.execute(
                select(attempts).where(attempts.c.email_id == email_id).order_by(attempts.c.n)
            )
            found = dict(row._mapping)
            found["attempts_log"] = [dict(attempt._mapping) for attempt in tried]
        return found

    async def page(
        self,
        *,
        status: str | None = None,
        to: str | None = None,
        sender: str | None = None,
        tag: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first, ``limit`` at a time; ``cursor`` continues where the last page ended."""
        query = select(*_SUMMARY)
        if status:
            query = query.where(emails.c.status == status)
        # autoescape: a % or _ in a filter is that character, not a wildcard.
        if sender:
            query = query.where(emails.c.from_addr.contains(sender, autoescape=True))
        if to:
            query = query.where(
                func.lower(emails.c.to_addrs.cast(Text())).contains(to.lower(), autoescape=True)
            )
        if tag:
            query = query.where(
                emails.c.tags.cast(Text()).contains(json.dumps(tag), autoescape=True)
            )
        if since is not None:
            query = query.where(emails.c.created_at >= since)
        if until is not None:
            query = query.where(emails.c.created_at < until)
        query = newest_first(query, emails.c.created_at, emails.c.id, cursor=cursor, limit=limit)
        async with self.db.connect() as connection:
            rows = [dict(row._mapping) for row in await connection.execute(query)]
        return page_of(rows, limit)

    async def counts_by_status(self) -> dict[str, int]:
        async with self.db.connect() as connection:
            rows = await connection.execute(
                select(emails.c.status, func.count()).group_by(emails.c.status)
            )
            return {status: count for status, count in rows}

    async def attempt_outcomes(self, since: float) -> dict[str, int]:
        """Delivery attempts started since ``since`` (epoch), counted by outcome."""
        async with self.db.connect() as connection:
            rows = await connection.execute(
                select(attempts.c.outcome, func.count())
                .where(attempts.c.started_at >= since)
                .group_by(attempts.c.outcome)
            )
            return {outcome: count for outcome, count in rows}

    async def oldest_due_age(self) -> float:
        async with self.db.connect() as connection:
            oldest = (
                await connection.execute(
                    select(func.min(emails.c.next_attempt_at)).where(
                        emails.c.status.in_([*DUE, Status.SENDING.value]),
                        emails.c.next_attempt_at <= time.time(),
                    )
                )
            ).scalar()
        return max(0.0, time.time() - oldest) if oldest else 0.0

    # Operator actions

    async def cancel(self, email_id: str) -> dict[str, Any]:
        """Cancel a queued, deferred or held email; anything else is a conflict."""
        return await self._transition(
            email_id, allowed=(*DUE, Status.HELD.value), to=Status.CANCELLED, action="cancel"
        )

    async def retry(self, email_id: str) -> dict[str, Any]:
        """Queue a failed (or held) email again, due now."""
        return await self._transition(
            email_id,
            allowed=(Status.FAILED.value, Status.HELD.value),
            to=Status.QUEUED,
            action="retry",
            extra={"next_attempt_at": time.time(), "last_error": None},
        )

    async def _transition(
        self,
        email_id: str,
        *,
        allowed: tuple[str, ...],
        to: Status,
        action: str,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        async with self.db.transaction() as connection:
            result = await connection.execute(
                update(emails)
                .where(emails.c.id == email_id, emails.c.status.in_(allowed))
                .values(
                    status=to.value,
                    updated_at=time.time(),
                    lease_owner=None,
                    lease_until=None,
                    **(extra or {}),
                )
            )
            if result.rowcount == 0:
                current = (
                    await connection.execute(select(emails.c.status).where(emails.c.id == email_id))
                ).scalar()
                if current is None:
                    raise NotFound(f"no email with id {email_id}", id=email_id)
                raise Conflict(
                    f"cannot {action} an email that is {current}; only "
                    f"{', '.join(allowed)} emails can be",
                    id=email_id,
                    status=current,
                )
        return {"id": email_id, "status": to.value}

    # Delivery

    async def claim(self, worker: str, *, batch_size: int, lease_seconds: float) -> list[Any]:
        """Lease up to ``batch_size`` due emails (or ones whose lease expired) to ``worker``."""
        now = time.time()
        due = or_(
            and_(emails.c.status.in_(DUE), emails.c.next_attempt_at <= now),
            and_(emails.c.status == Status.SENDING.value, emails.c.lease_until < now),
        )
        candidates = select(emails.c.id).where(due).order_by(emails.c.next_attempt_at)
        candidates = candidates.limit(batch_size)
        if self.db.dialect == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        async with self.db.transaction() as connection:
            rows = await connection.execute(
                update(emails)
                .where(emails.c.id.in_(candidates.scalar_subquery()))
                .values(
                    status=Status.SENDING.value,
                    lease_owner=worker,
                    lease_until=now + lease_seconds,
                    attempts=emails.c.attempts + 1,
                    updated_at=now,
                )
                .returning(*emails.c)
            )
            return list(rows)

    async def renew(self, email_ids: list[str], worker: str, *, lease_until: float) -> set[str]:
        """Extend ``worker``'s lease on these emails; answer the ids it still holds."""
        if not email_ids:
            return set()
        async with self.db.transaction() as connection:
            rows = await connection.execute(
                update(emails)
                .where(*_leased_to(worker, email_ids))
                .values(lease_until=lease_until)
                .returning(emails.c.id)
            )
            return set(rows.scalars())

    async def record(
        self, outcomes: list[dict[str, Any]], worker: str | None = None
    ) -> list[str]:
        """Store outcomes of leased emails in one transaction; answer the ids recorded.

        Each outcome names the ``worker`` holding its lease (``worker`` when it does not), so
        the outcomes of every worker of a node share one transaction. An outcome whose lease
        was lost (expired and taken by another worker) is not recorded, except a sent one: a
        message that went out is recorded while the email is still being sent, so that the
        worker holding it now learns it is done instead of sending it again. Each outcome has
        ``email_id``, ``n``, ``status``, ``attempt`` (the attempts row) and optionally
        ``worker``, ``next_attempt_at``, ``last_error``, ``sent_at``.
        """
        if not outcomes:
            return []
        now = time.time()
        held = (
            select(emails.c.id, emails.c.lease_owner)
            .where(emails.c.id.in_([outcome["email_id"] for outcome in outcomes]),
                   emails.c.status == Status.SENDING.value)
        )
        if self.db.dialect == "postgresql":
            held = held.with_for_update()
        async with self.db.transaction() as connection:
            owners = {row.id: row.lease_owner for row in await connection.execute(held)}
            mine = [
                {**outcome, "worker": outcome.get("worker", worker)}
                for outcome in outcomes
                if outcome["email_id"] in owners
                and (outcome["status"] == Status.SENT.value
                     or owners[outcome["email_id"]] == outcome.get("worker", worker))
            ]
            if not mine:
                return []
            # One statement each, executed for many rows: no per-email statement building.
            await connection.execute(_FINISH, [
                {
                    "b_id": outcome["email_id"],
                    "b_worker": outcome["worker"],
                    "b_status": outcome["status"],
                    "b_updated_at": now,
                    "b_last_error": outcome.get("last_error"),
                    "b_next_attempt_at": outcome.get("next_attempt_at"),
                    "b_sent_at": outcome.get("sent_at"),
                }
                for outcome in mine
            ])
            await connection.execute(insert(attempts), [
                {"email_id": outcome["email_id"], "n": outcome["n"], "worker": outcome["worker"],
                 **outcome["attempt"]}
                for outcome in mine
            ])
        return [outcome["email_id"] for outcome in mine]

    async def release(self, email_ids: list[str], worker: str) -> set[str]:
        """Give leased emails back unsent, without counting an attempt; answer those given back.

        An email whose lease ``worker`` no longer holds is left alone.
        """
        if not email_ids:
            return set()
        async with self.db.transaction() as connection:
            rows = await connection.execute(
                update(emails)
                .where(*_leased_to(worker, email_ids))
                .values(
                    status=Status.QUEUED.value,
                    lease_owner=None,
                    lease_until=None,
                    attempts=emails.c.attempts - 1,
                    updated_at=time.time(),
                )
                .returning(emails.c.id)
            )
            return set(rows.scalars())


def _leased_to(worker: str, email_ids: list[str]) -> tuple[Any, ...]:
    """Conditions for the emails among ``email_ids`` that ``worker`` still holds a lease on."""
    return (
        emails.c.id.in_(email_ids),
        emails.c.lease_owner == worker,
        emails.c.status == Status.SENDING.value,
    )


_FINISH = (
    update(emails)
    .where(emails.c.id == bindparam("b_id"),
           or_(emails.c.lease_owner == bindparam("b_worker"),
               bindparam("b_status") == Status.SENT.value),
           emails.c.status == Status.SENDING.value)
    .values(
        status=bindparam("b_status"),
        lease_owner=None,
        lease_until=None,
        updated_at=bindparam("b_updated_at"),
        last_error=bindparam("b_last_error"),
        next_attempt_at=func.coalesce(bindparam("b_next_attempt_at"), emails.c.next_attempt_at),
        sent_at=func.coalesce(bindparam("b_sent_at"), emails.c.sent_at),
    )
)


class _GroupCommit:
    """Inserts that arrive while a commit runs share the next commit.

    Each caller still returns only once its own row is committed: one transaction carries many
    concurrent accepts instead of one each, which is what bounds accept throughput.
    """

    def __init__(self, db: Database, *, max_rows: int = 500) -> None:
        self.db = db
        self.max_rows = max_rows
        self._pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def insert(self, row: dict[str, Any]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        await done

    async def _write(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_rows]
            del self._pending[: self.max_rows]
            try:
                async with self.db.transaction() as connection:
                    await connection.execute(insert(emails), [row for row, _ in batch])
            except Exception as exc:  # every caller of this commit learns why it failed
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)
