"""History of audit runs (issue 13): a SQLAlchemy store (SQLite by default, PostgreSQL for a fleet),
stable fingerprints that give the same fact the same key in every run, and the diff of two runs."""
