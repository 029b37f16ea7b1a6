"""Outbox: emails, attempts, suppressions, rate_buckets.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "emails",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("message_id", sa.String(255), nullable=False, unique=True),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("request_fingerprint", sa.String(64)),
        sa.Column("from_addr", sa.String(320), nullable=False),
        sa.Column("to_addrs", sa.JSON, nullable=False),
        sa.Column("cc_addrs", sa.JSON, nullable=False),
        sa.Column("bcc_addrs", sa.JSON, nullable=False),
        sa.Column("reply_to", sa.String(320)),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("text_body", sa.Text),
        sa.Column("html_body", sa.Text),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("attachments", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until", sa.Float),
        sa.Column("last_error", sa.Text),
        sa.Column("held_reason", sa.JSON),
        sa.Column("vector_state", sa.String(16), nullable=False),
        sa.Column("vector_attempts", sa.Integer, nullable=False),
        sa.Column("vector_next_at", sa.Float, nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("sent_at", sa.Float),
        sa.UniqueConstraint("idempotency_key", name="uq_emails_idempotency_key"),
    )
    op.create_index("ix_emails_due", "emails", ["status", "next_attempt_at"])
    op.create_index("ix_emails_created", "emails", ["created_at"])
    op.create_index("ix_emails_vector", "emails", ["vector_state", "vector_next_at"])
    op.create_table(
        "attempts",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column(
            "email_id",
            sa.String(36),
            sa.ForeignKey("emails.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("relay", sa.String(255)),
        sa.Column("smtp_code", sa.Integer),
        sa.Column("response", sa.Text),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("worker", sa.String(64)),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
    )
    op.create_index("ix_attempts_email", "attempts", ["email_id", "n"])
    op.create_table(
        "suppressions",
        sa.Column("address", sa.String(320), primary_key=True),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("smtp_code", sa.Integer),
        sa.Column("detail", sa.Text),
        sa.Column("email_id", sa.String(36)),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "rate_buckets",
        sa.Column("relay", sa.String(255), primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rate_buckets")
    op.drop_table("suppressions")
    op.drop_table("attempts")
    op.drop_table("emails")
