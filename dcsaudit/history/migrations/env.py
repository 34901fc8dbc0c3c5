"""Alembic environment: always given an open connection by ``store.migrate`` (no alembic.ini, no URL here)."""

from __future__ import annotations

from alembic import context

from dcsaudit.history.store import METADATA

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=METADATA, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
