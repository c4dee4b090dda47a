"""Readers: a district export (OneRoster CSV, attendance CSV or Ed-Fi XML, calendar, consents) as records."""
