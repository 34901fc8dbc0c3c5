"""Alembic migrations of the history store (run by ``dcsaudit.history.store.migrate``, never by hand)."""
