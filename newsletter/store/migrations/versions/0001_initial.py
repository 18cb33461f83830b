"""The schema as it was before migrations existed (created by `create_all` until issue 8).

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dumps",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("dump_date", sa.Date, nullable=False, index=True),
        sa.Column("paper_count", sa.Integer, nullable=False),
        sa.Column("ingested_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "papers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.Text, nullable=False, unique=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("abstract", sa.Text, nullable=False),
        sa.Column("code_url", sa.Text, nullable=True),
        sa.Column("first_seen", sa.Date, nullable=False, index=True),
    )
    op.create_table(
        "appearances",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "paper_id",
            sa.Integer,
            sa.ForeignKey("papers.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column(
            "dump_id", sa.Integer, sa.ForeignKey("dumps.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("seen_on", sa.Date, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.UniqueConstraint("dump_id", "position"),
    )
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("topics", sa.JSON, nullable=False),
        sa.Column("exclude", sa.JSON, nullable=False),
        sa.Column("max_papers", sa.Integer, nullable=False),
        sa.Column("frequency", sa.String(16), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("listed", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_changed_at", sa.DateTime, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "digests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), nullable=False, index=True
        ),
        sa.Column("digest_date", sa.Date, nullable=False, index=True),
        sa.Column("window_start", sa.Date, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("message_id", sa.String(255), nullable=False, unique=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("smtp_reply", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("sent_at", sa.DateTime, nullable=True),
        sa.UniqueConstraint("subscriber_id", "digest_date"),
    )
    op.create_table(
        "digest_papers",
        sa.Column(
            "digest_id",
            sa.Integer,
            sa.ForeignKey("digests.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("paper_id", sa.Integer, sa.ForeignKey("papers.id"), primary_key=True, index=True),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("matched", sa.JSON, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_date", sa.Date, nullable=False, index=True),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("counts", sa.JSON, nullable=False),
    )
    op.create_table(
        "run_leases",
        sa.Column("run_date", sa.Date, primary_key=True),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "run_leases",
        "runs",
        "digest_papers",
        "digests",
        "subscribers",
        "appearances",
        "papers",
        "dumps",
    ):
        op.drop_table(table)
