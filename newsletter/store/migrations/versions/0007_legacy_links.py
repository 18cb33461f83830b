"""Links without the reader's address: the day this store started making opaque tokens, from
which the old address-bearing unsubscribe links keep working for one window more.

Revision ID: 0007
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "token_cutover",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("opaque_since", sa.Date, nullable=False),
    )
    op.bulk_insert(table, [{"id": 1, "opaque_since": datetime.now(UTC).date()}])


def downgrade() -> None:
    op.drop_table("token_cutover")
