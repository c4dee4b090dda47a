"""Validation of FHIR R4 resources against the project's profiles and the R4 core definitions."""

from sis2fhir.validate.engine import Issue, Validator, validate_resource
from sis2fhir.validate.files import (
    FilesReport,
    ResourceReport,
    print_report,
    run_validate_command,
    validate_files,
)
from sis2fhir.validate.outcome import operation_outcome

__all__ = [
    "FilesReport",
    "Issue",
    "ResourceReport",
    "Validator",
    "operation_outcome",
    "print_report",
    "run_validate_command",
    "validate_files",
    "validate_resource",
]
