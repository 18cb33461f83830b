"""Readers' feedback from a digest's links: "more" or "less" like a paper, one row per reader
and paper.

Revision ID: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column(
            "subscriber_id",
            sa.Integer,
            sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("paper_id", sa.Integer, sa.ForeignKey("papers.id"), primary_key=True, index=True),
        sa.Column("verdict", sa.String(8), nullable=False),
        sa.Column("digest_date", sa.Date, nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("feedback")
