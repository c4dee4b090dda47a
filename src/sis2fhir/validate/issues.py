"""What validation finds: one Issue per problem, at a FHIRPath with indexes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Issue:
    severity: Severity
    code: str  # OperationOutcome issue type: structure, required, value, invariant, code-invalid...
    expression: str  # FHIRPath with indexes, e.g. Observation.component[2].valueQuantity.code
    message: str  # never echoes names or birth dates
    rule: str  # "obs-6", "cardinality", "unknown-element", "binding", "pattern", "slice"...
