"""Alembic revisions of the memory schema, oldest first."""
