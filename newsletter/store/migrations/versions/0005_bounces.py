"""Bounces and complaints: each message read from the bounce mailbox, and each subscriber's
bounce score and the reason for a suspension.

Revision ID: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN on both back-ends: copying the table (Alembic's batch mode)
    # is refused by SQLite while digests refer to its rows.
    op.add_column("subscribers", sa.Column("status_reason", sa.String(64), nullable=True))
    op.add_column(
        "subscribers",
        sa.Column("bounce_score", sa.Float, nullable=False, server_default=sa.text("0")),
    )
    op.add_column("subscribers", sa.Column("bounce_score_at", sa.DateTime, nullable=True))
    op.create_table(
        "bounces",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(255), nullable=False, unique=True),
        sa.Column("received_at", sa.DateTime, nullable=False, index=True),
        sa.Column("read_at", sa.DateTime, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status_code", sa.String(16), nullable=True),
        sa.Column(
            "subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), nullable=True, index=True
        ),
        sa.Column("digest_id", sa.Integer, sa.ForeignKey("digests.id"), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("bounces")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("bounce_score_at")
        batch.drop_column("bounce_score")
        batch.drop_column("status_reason")
