"""What a reader gets on a day nothing matched their topics: `skip` (no mail) or `trending`.

Revision ID: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(
            sa.Column("on_empty", sa.String(16), nullable=False, server_default="skip")
        )


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("on_empty")
