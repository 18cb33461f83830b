"""Alembic's entry point for `newsletter db upgrade` (and the automatic upgrade on start): runs on
the connection `newsletter.store.db.upgrade` hands over, against the models' metadata."""

from __future__ import annotations

from alembic import context

from newsletter.store.db import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
