"""Delivery: destinations (NDJSON folder, FHIR REST, HL7 v2 over MLLP), the outbox and the disclosure log."""
