"""Attempts by start time: the console's sends per minute and error rate read a recent window.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_attempts_started", "attempts", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_attempts_started", table_name="attempts")
