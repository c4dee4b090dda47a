"""Alembic's environment: the connection comes from sis2fhir.store.migrate, already in its transaction."""

from __future__ import annotations

from alembic import context

from sis2fhir.store.schema import metadata

context.configure(connection=context.config.attributes["connection"], target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
