"""Every SQL table, in one place (SQLAlchemy Core). Times are epoch seconds (float).

Migrations in ``migrations/versions`` create these tables; a test checks both agree.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

nodes = Table(
    "nodes",
    metadata,
    Column("node_id", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("role", String(32), nullable=False),
    Column("version", String(32), nullable=False),
    Column("managers", JSON, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("status", String(16), nullable=False),  # live | lost | stopped
)

settings = Table(
    "settings",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(255)),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("at", Float, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(255)),
    Column("details", JSON),
    Column("request_id", String(64)),
    Column("client_ip", String(64)),
    Index("ix_audit_log_at", "at"),
)

emails = Table(
    "emails",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("message_id", String(255), nullable=False, unique=True),
    Column("idempotency_key", String(255)),
    Column("request_fingerprint", String(64)),
    Column("from_addr", String(320), nullable=False),
    Column("to_addrs", JSON, nullable=False),
    Column("cc_addrs", JSON, nullable=False),
    Column("bcc_addrs", JSON, nullable=False),
    Column("reply_to", String(320)),
    Column("subject", Text, nullable=False),
    Column("text_body", Text),
    Column("html_body", Text),
    Column("headers", JSON, nullable=False),
    Column("attachments", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until", Float),
    Column("last_error", Text),
    Column("held_reason", JSON),
    Column("vector_state", String(16), nullable=False),  # pending | indexed | failed
    Column("vector_attempts", Integer, nullable=False, default=0),
    Column("vector_next_at", Float, nullable=False, default=0.0),
    Column("checksum", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("sent_at", Float),
    UniqueConstraint("idempotency_key", name="uq_emails_idempotency_key"),
    Index("ix_emails_due", "status", "next_attempt_at"),
    Index("ix_emails_created", "created_at"),
    Index("ix_emails_vector", "vector_state", "vector_next_at"),
)

attempts = Table(
    "attempts",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("email_id", String(36), ForeignKey("emails.id", ondelete="CASCADE"), nullable=False),
    Column("n", Integer, nullable=False),
    Column("relay", String(255)),
    Column("smtp_code", Integer),
    Column("response", Text),
    Column("outcome", String(16), nullable=False),  # sent | deferred | failed | suppressed
    Column("worker", String(64)),
    Column("started_at", Float, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Index("ix_attempts_email", "email_id", "n"),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("address", String(320), primary_key=True),
    Column("reason", String(64), nullable=False),  # hard_bounce | manual | complaint
    Column("smtp_code", Integer),
    Column("detail", Text),
    Column("email_id", String(36)),
    Column("created_at", Float, nullable=False),
)

rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("relay", String(255), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Free-text tasks and notes, optionally tied to an email, searchable in the task collection.
tasks = Table(
    "tasks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("email_id", String(36)),
    Column("text", Text, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("vector_state", String(16), nullable=False),  # pending | indexed
    Index("ix_tasks_vector", "vector_state"),
    Index("ix_tasks_email", "email_id"),
)
