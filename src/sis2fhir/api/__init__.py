"""The API `sis2fhir serve` answers: FHIR R4 read and search, Bulk $export, and the SMART Backend Services
authorization server that guards them (smart.py). Layer 9, beside the command line: imports service/ and below."""
