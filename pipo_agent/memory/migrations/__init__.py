"""Alembic environment and revisions of the memory schema (read by Alembic as files; see ``migrate.py``)."""
