"""One revision per change of the state store's tables, oldest first (0001 is the release before issue 6)."""
