"""Notification of chronic-absence crossings (Subscriptions backport rest-hook, CDS Hooks)."""
