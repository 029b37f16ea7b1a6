"""Inbound mail, classifier labels, IMAP positions, outgoing webhooks.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("dedupe_key", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(998)),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("mail_from", sa.String(998)),
        sa.Column("rcpt_to", sa.JSON, nullable=False),
        sa.Column("from_addr", sa.String(320)),
        sa.Column("from_name", sa.Text),
        sa.Column("to_addrs", sa.JSON, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("in_reply_to", sa.JSON, nullable=False),
        sa.Column("references", sa.JSON, nullable=False),
        sa.Column("text_body", sa.Text, nullable=False),
        sa.Column("own_words", sa.Text, nullable=False),
        sa.Column("quoted", sa.Text, nullable=False),
        sa.Column("defects", sa.JSON, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("raw", sa.Text),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("intent", sa.String(32)),
        sa.Column("confidence", sa.Float),
        sa.Column("layer", sa.String(16)),
        sa.Column("needs_review", sa.Integer, nullable=False),
        sa.Column("scores", sa.JSON),
        sa.Column("label", sa.String(32)),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("email_id", sa.String(36)),
        sa.Column("thread_by", sa.String(16)),
        sa.Column("vector_state", sa.String(16), nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("written_at", sa.Float),
        sa.Column("raw_expires_at", sa.Float, nullable=False),
        sa.UniqueConstraint("dedupe_key", name="uq_inbound_dedupe_key"),
    )
    op.create_index("ix_inbound_received", "inbound_messages", ["received_at"])
    op.create_index("ix_inbound_email", "inbound_messages", ["email_id"])
    op.create_index("ix_inbound_from", "inbound_messages", ["from_addr"])
    op.create_index("ix_inbound_vector", "inbound_messages", ["vector_state"])
    op.create_table(
        "classifier_labels",
        sa.Column("inbound_id", sa.String(36), primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("intent", sa.String(32), nullable=False),
        sa.Column("previous_intent", sa.String(32)),
        sa.Column("actor", sa.String(255)),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "imap_state",
        sa.Column("mailbox", sa.String(512), primary_key=True),
        sa.Column("uidvalidity", sa.BigInteger, nullable=False),
        sa.Column("last_uid", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "imap_leases",
        sa.Column("mailbox", sa.String(512), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("lease_until", sa.Float, nullable=False),
    )
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("events", sa.JSON, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("active", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "webhook_id",
            sa.String(36),
            sa.ForeignKey("webhooks.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("lease_until", sa.Float),
        sa.Column("response_code", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("duration_ms", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("delivered_at", sa.Float),
        sa.UniqueConstraint("webhook_id", "event_id", name="uq_webhook_deliveries_event"),
    )
    op.create_index(
        "ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"]
    )
    op.create_index(
        "ix_webhook_deliveries_webhook", "webhook_deliveries", ["webhook_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
    op.drop_table("imap_leases")
    op.drop_table("imap_state")
    op.drop_table("classifier_labels")
    op.drop_table("inbound_messages")
