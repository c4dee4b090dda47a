"""Test helpers that start real servers (FHIR, OAuth) on loopback for the integration tests."""
