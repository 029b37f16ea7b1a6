"""Tasks: free-text notes tied to emails, indexed into the task vector collection.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("email_id", sa.String(36)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("vector_state", sa.String(16), nullable=False),
    )
    op.create_index("ix_tasks_vector", "tasks", ["vector_state"])
    op.create_index("ix_tasks_email", "tasks", ["email_id"])


def downgrade() -> None:
    op.drop_table("tasks")
