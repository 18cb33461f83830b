"""Meaning-based ranking: each paper's sentence vectors, and why each paper was picked.

Revision ID: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "paper_vectors",
        sa.Column(
            "paper_id",
            sa.Integer,
            sa.ForeignKey("papers.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("text_sha256", sa.String(64), nullable=False),
        sa.Column("vectors", sa.LargeBinary, nullable=False),
    )
    with op.batch_alter_table("digest_papers") as batch:
        batch.add_column(sa.Column("why", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("digest_papers") as batch:
        batch.drop_column("why")
    op.drop_table("paper_vectors")
