"""The state store's Alembic migrations, run in code by sis2fhir.store.migrate (no alembic.ini)."""
