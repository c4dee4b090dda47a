"""Validation issues as an R4 OperationOutcome resource."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sis2fhir.validate.engine import Issue

# The HL7 validator records the broken rule the same way: an issue-level extension would need a profile of its
# own, so the rule id goes into `details.coding` under a code system of ours.
RULE_SYSTEM = "http://sis2fhir.org/fhir/CodeSystem/validation-rule"


def operation_outcome(issues: Iterable[Issue], diagnostics_prefix: str = "") -> dict[str, Any]:
    """An OperationOutcome with one issue per Issue; an empty list gives the R4 "all OK" information issue."""
    entries: list[dict[str, Any]] = []
    for issue in issues:
        entry: dict[str, Any] = {
            "severity": issue.severity,
            "code": issue.code,
            "details": {"coding": [{"system": RULE_SYSTEM, "code": issue.rule}], "text": issue.message},
            "diagnostics": f"{diagnostics_prefix}{issue.message}",
        }
        if issue.expression:
            entry["expression"] = [issue.expression]
        entries.append(entry)
    if not entries:
        entries.append({"severity": "information", "code": "informational", "diagnostics": "All OK"})
    return {"resourceType": "OperationOutcome", "issue": entries}
