"""Papers from the Daily Papers API: arXiv id, authors and upvotes; a record of each fetch.

Revision ID: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("papers") as batch:
        batch.add_column(sa.Column("arxiv_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("authors", sa.JSON, nullable=True))
        batch.add_column(sa.Column("upvotes", sa.Integer, nullable=True))
    # An index, not a table constraint: SQLite adds columns in place, but a constraint would
    # copy the table, which its foreign keys (appearances, digests) do not allow.
    op.create_index("ix_papers_arxiv_id", "papers", ["arxiv_id"], unique=True)
    op.create_table(
        "fetches",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("fetch_date", sa.Date, nullable=False, index=True),
        sa.Column("fetched_at", sa.DateTime, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("papers", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("fetches")
    op.drop_index("ix_papers_arxiv_id", "papers")
    with op.batch_alter_table("papers") as batch:
        batch.drop_column("upvotes")
        batch.drop_column("authors")
        batch.drop_column("arxiv_id")
