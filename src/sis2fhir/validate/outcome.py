"""Validation issues as an R4 OperationOutcome resource."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sis2fhir.terminology import VALIDATION_RULE_CS
from sis2fhir.validate.engine import Issue


def operation_outcome(issues: Iterable[Issue], diagnostics_prefix: str = "") -> dict[str, Any]:
    """An OperationOutcome with one issue per Issue; an empty list gives the R4 "all OK" information issue."""
    entries: list[dict[str, Any]] = []
    for issue in issues:
        entry: dict[str, Any] = {
            "severity": issue.severity,
            "code": issue.code,
            # the rule id (obs-6, cardinality...) as a coding, so a machine can count failures by rule
            "details": {"coding": [{"system": VALIDATION_RULE_CS, "code": issue.rule}], "text": issue.message},
            "diagnostics": f"{diagnostics_prefix}{issue.message}",
        }
        if issue.expression:
            entry["expression"] = [issue.expression]
        entries.append(entry)
    if not entries:
        entries.append({"severity": "information", "code": "informational", "diagnostics": "All OK"})
    return {"resourceType": "OperationOutcome", "issue": entries}
