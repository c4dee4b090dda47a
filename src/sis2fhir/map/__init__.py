"""Mapping: attendance summaries and consents into FHIR R4 resources (and HL7 v2 messages)."""
