"""Several senders on one database: digests claimed in batches, and a record of each date's
composition so that selection happens once.

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("digests") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(255), nullable=True))
        batch.add_column(sa.Column("claimed_until", sa.DateTime, nullable=True))
    op.create_table(
        "compositions",
        sa.Column("run_date", sa.Date, primary_key=True),
        sa.Column("fingerprint", sa.String(255), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("composed_at", sa.DateTime, nullable=False),
        sa.Column("counts", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("compositions")
    with op.batch_alter_table("digests") as batch:
        batch.drop_column("claimed_until")
        batch.drop_column("claimed_by")
