"""The state store (SQLAlchemy): what was delivered, the outbox, the disclosure log."""
