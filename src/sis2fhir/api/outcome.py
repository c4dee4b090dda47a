"""FHIR OperationOutcome answers: every error of the API is one, with an issue code a client can act on, and never
a traceback, SQL, a token or a student's data in its text."""

from __future__ import annotations

from typing import Any, Final

import orjson
from starlette.responses import Response

FHIR_JSON: Final = "application/fhir+json"

# HTTP status -> OperationOutcome issue code (http://hl7.org/fhir/issue-type)
ISSUE_CODES: Final = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    413: "too-costly",
    415: "not-supported",
    422: "invalid",
    429: "throttled",
    500: "exception",
    503: "transient",
}


class FhirResponse(Response):
    """A FHIR JSON answer (the body already serialised, or a dict)."""

    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        return content if isinstance(content, bytes) else orjson.dumps(content)


def operation_outcome(message: str, code: str = "invalid", severity: str = "error") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": message}],
    }


def outcome_response(
    status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
) -> FhirResponse:
    """An OperationOutcome with the issue code for the status (or `code`)."""
    issue = code or ISSUE_CODES.get(status, "exception" if status >= 500 else "processing")
    return FhirResponse(operation_outcome(message, issue), status_code=status, headers=headers)
