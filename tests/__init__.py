"""sis2fhir test suite."""
