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
    Index("ix_attempts_started", "started_at"),
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

# Mail received: bounces, complaints, auto-replies and replies, each stored once.
inbound_messages = Table(
    "inbound_messages",
    metadata,
    Column("id", String(36), primary_key=True),
    # sha256 of Message-ID + body: the same message met twice (SMTP and IMAP, say) is one row.
    Column("dedupe_key", String(64), nullable=False),
    Column("message_id", String(998)),
    Column("via", String(16), nullable=False),  # smtp | imap | webhook
    Column("mail_from", String(998)),  # the envelope sender, when we saw the envelope
    Column("rcpt_to", JSON, nullable=False),
    Column("from_addr", String(320)),
    Column("from_name", Text),
    Column("to_addrs", JSON, nullable=False),
    Column("subject", Text, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("in_reply_to", JSON, nullable=False),
    Column("references", JSON, nullable=False),
    Column("text_body", Text, nullable=False),
    Column("own_words", Text, nullable=False),
    Column("quoted", Text, nullable=False),
    Column("defects", JSON, nullable=False),
    Column("size", Integer, nullable=False),
    # Base64 of the source as received; emptied once inbound.retention has passed.
    Column("raw", Text),
    Column("kind", String(16), nullable=False),  # reply | auto_reply | out_of_office | bounce | ...
    Column("intent", String(32)),
    Column("confidence", Float),
    Column("layer", String(16)),  # headers | rules | embedding | label
    Column("needs_review", Integer, nullable=False, default=0),
    Column("scores", JSON),
    Column("label", String(32)),  # the operator's correction, when given
    Column("details", JSON, nullable=False),  # bounce / complaint / auto-reply findings
    Column("email_id", String(36)),  # the email this answers or reports on
    Column("thread_by", String(16)),  # how it was linked: in_reply_to | verp | plus | subject
    Column("vector_state", String(16), nullable=False),  # pending | indexed | failed
    Column("received_at", Float, nullable=False),
    # When its Date header says it was written, never after received_at: what time windows
    # (soft bounces) count by, so a mailbox read for the first time is not all "recent".
    Column("written_at", Float),
    Column("raw_expires_at", Float, nullable=False),
    UniqueConstraint("dedupe_key", name="uq_inbound_dedupe_key"),
    Index("ix_inbound_received", "received_at"),
    Index("ix_inbound_email", "email_id"),
    Index("ix_inbound_from", "from_addr"),
    Index("ix_inbound_vector", "vector_state"),
)

# Operators' corrections of a classification: training examples kept with the data (and backups).
classifier_labels = Table(
    "classifier_labels",
    metadata,
    Column("inbound_id", String(36), primary_key=True),
    Column("text", Text, nullable=False),
    Column("intent", String(32), nullable=False),
    Column("previous_intent", String(32)),
    Column("actor", String(255)),
    Column("created_at", Float, nullable=False),
)

# Where the IMAP poller stands in each folder: nothing read twice, nothing skipped.
imap_state = Table(
    "imap_state",
    metadata,
    Column("mailbox", String(512), primary_key=True),  # user@host/folder
    Column("uidvalidity", BigInteger, nullable=False),
    Column("last_uid", BigInteger, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Which node reads a mailbox: one at a time, so two never hand over the same messages.
imap_leases = Table(
    "imap_leases",
    metadata,
    Column("mailbox", String(512), primary_key=True),  # user@host
    Column("owner", String(255), nullable=False),
    Column("lease_until", Float, nullable=False),
)

# Outgoing event webhooks and their durable delivery queue.
webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("url", Text, nullable=False),
    Column("events", JSON, nullable=False),
    Column("secret", Text, nullable=False),
    Column("description", Text),
    Column("active", Integer, nullable=False, default=1),
    Column("created_at", Float, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "webhook_id", String(36), ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False
    ),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_until", Float),
    Column("response_code", Integer),
    Column("last_error", Text),
    Column("duration_ms", Float),
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float),
    UniqueConstraint("webhook_id", "event_id", name="uq_webhook_deliveries_event"),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_webhook", "webhook_id", "created_at"),
)

# Outreach: the people and places mail is written to, and every move of their status.
contacts = Table(
    "contacts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),  # normalised, lower-cased
    Column("name", String(200)),
    Column("organisation", String(200)),
    Column("city", String(100)),
    Column("region", String(100)),
    Column("country", String(64)),
    Column("timezone", String(64)),  # IANA, checked with zoneinfo
    Column("language", String(16)),
    Column("tags", JSON, nullable=False),
    Column("attributes", JSON, nullable=False),
    Column("consent_basis", String(64)),
    Column("consent_source", String(200)),
    Column("status", String(32), nullable=False),
    Column("notes", Text),
    Column("last_contacted_at", Float),  # the last outreach email sent to it
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_contacts_status", "status"),
    Index("ix_contacts_created", "created_at", "id"),
)

contact_history = Table(
    "contact_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("contact_id", String(36), nullable=False),
    Column("from_status", String(32)),  # None: the contact was created
    Column("to_status", String(32), nullable=False),
    Column("source", String(32), nullable=False),  # user | import | reply | bounce | unsubscribe
    Column("actor", String(255)),
    Column("reason", Text),
    Column("at", Float, nullable=False),
    Index("ix_contact_history_contact", "contact_id", "id"),
)

# Saved filters over contacts (status, tags, attributes, last contact date).
segments = Table(
    "segments",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("filter", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Sequences: steps sent one after another to each enrolled contact, in one thread.
sequences = Table(
    "sequences",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("sender", String(320), nullable=False),  # the From identity, ``Name <addr>``
    Column("status", String(16), nullable=False),  # active | paused | cancelled
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

sequence_steps = Table(
    "sequence_steps",
    metadata,
    Column("sequence_id", String(36), primary_key=True),
    Column("position", Integer, primary_key=True),  # 0 is the first message
    Column("delay", Float, nullable=False),  # seconds after the previous step (or enrolment)
    Column("subject", Text),
    Column("text", Text),
    Column("html", Text),
    Column("same_thread", Integer, nullable=False),
    Column("conditions", JSON, nullable=False),
    Column("updated_at", Float, nullable=False),
)

enrolments = Table(
    "enrolments",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("sequence_id", String(36), nullable=False),
    Column("contact_id", String(36), nullable=False),
    # active | paused (out of office) | replied | completed | bounced | unsubscribed | cancelled
    Column("status", String(16), nullable=False),
    Column("next_step", Integer, nullable=False),
    Column("next_at", Float, nullable=False),  # the earliest the next step may go
    Column("reason", Text),
    Column("thread_message_id", String(998)),  # the first message: what follow-ups answer
    Column("thread_subject", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("sequence_id", "contact_id", name="uq_enrolments_contact"),
    Index("ix_enrolments_due", "status", "next_at"),
    Index("ix_enrolments_contact", "contact_id"),
)

# The send log of outreach: what the caps and gaps count, and what stops a step going twice.
outreach_sends = Table(
    "outreach_sends",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("enrolment_id", String(36), nullable=False),
    Column("sequence_id", String(36), nullable=False),
    Column("step", Integer, nullable=False),
    Column("contact_id", String(36), nullable=False),
    Column("sender", String(320), nullable=False),  # bare address
    Column("domain", String(255), nullable=False),  # the recipient's
    Column("email_id", String(36), nullable=False),
    Column("sent_at", Float, nullable=False),  # by the scheduler's clock
    UniqueConstraint("enrolment_id", "step", name="uq_outreach_sends_step"),
    Index("ix_outreach_sends_sender", "sender", "sent_at"),
    Index("ix_outreach_sends_domain", "domain", "sent_at"),
    Index("ix_outreach_sends_email", "email_id"),
    Index("ix_outreach_sends_sequence", "sequence_id", "step"),
)

# Per sender identity: when it may send next (the random gap) and when it first sent (warm-up).
outreach_senders = Table(
    "outreach_senders",
    metadata,
    Column("sender", String(320), primary_key=True),
    Column("next_send_at", Float, nullable=False),
    Column("first_send_at", Float, nullable=False),
)

# Inbound messages the scheduler has acted on (stop, pause, end), each once.
outreach_reactions = Table(
    "outreach_reactions",
    metadata,
    Column("inbound_id", String(36), primary_key=True),
    Column("enrolment_id", String(36), nullable=False),
    Column("action", String(16), nullable=False),  # reply | pause | bounce | complaint | none
    # The reply's intent once the contact's status has been moved by it (None: not yet).
    Column("intent", String(32)),
    Column("at", Float, nullable=False),  # by the scheduler's clock
)
