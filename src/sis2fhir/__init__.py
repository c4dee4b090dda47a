"""sis2fhir: school attendance (OneRoster / Ed-Fi) to FHIR R4 and HL7 v2, gated by FERPA consent."""

__version__ = "0.1.0"
