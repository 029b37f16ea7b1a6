"""Segments, sequences and their steps, enrolments, and the outreach send log.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("last_contacted_at", sa.Float))
    op.create_table(
        "segments",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("filter", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "sequences",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "sequence_steps",
        sa.Column("sequence_id", sa.String(36), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("delay", sa.Float, nullable=False),
        sa.Column("subject", sa.Text),
        sa.Column("text", sa.Text),
        sa.Column("html", sa.Text),
        sa.Column("same_thread", sa.Integer, nullable=False),
        sa.Column("conditions", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "enrolments",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("sequence_id", sa.String(36), nullable=False),
        sa.Column("contact_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("next_step", sa.Integer, nullable=False),
        sa.Column("next_at", sa.Float, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("thread_message_id", sa.String(998)),
        sa.Column("thread_subject", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("sequence_id", "contact_id", name="uq_enrolments_contact"),
    )
    op.create_index("ix_enrolments_due", "enrolments", ["status", "next_at"])
    op.create_index("ix_enrolments_contact", "enrolments", ["contact_id"])
    op.create_table(
        "outreach_sends",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("enrolment_id", sa.String(36), nullable=False),
        sa.Column("sequence_id", sa.String(36), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("contact_id", sa.String(36), nullable=False),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("email_id", sa.String(36), nullable=False),
        sa.Column("sent_at", sa.Float, nullable=False),
        sa.UniqueConstraint("enrolment_id", "step", name="uq_outreach_sends_step"),
    )
    op.create_index("ix_outreach_sends_sender", "outreach_sends", ["sender", "sent_at"])
    op.create_index("ix_outreach_sends_domain", "outreach_sends", ["domain", "sent_at"])
    op.create_index("ix_outreach_sends_email", "outreach_sends", ["email_id"])
    op.create_index("ix_outreach_sends_sequence", "outreach_sends", ["sequence_id", "step"])
    op.create_table(
        "outreach_senders",
        sa.Column("sender", sa.String(320), primary_key=True),
        sa.Column("next_send_at", sa.Float, nullable=False),
        sa.Column("first_send_at", sa.Float, nullable=False),
    )
    op.create_table(
        "outreach_reactions",
        sa.Column("inbound_id", sa.String(36), primary_key=True),
        sa.Column("enrolment_id", sa.String(36), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("intent", sa.String(32)),
        sa.Column("at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "outreach_reactions", "outreach_senders", "outreach_sends", "enrolments",
        "sequence_steps", "sequences", "segments",
    ):
        op.drop_table(table)
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("last_contacted_at")
