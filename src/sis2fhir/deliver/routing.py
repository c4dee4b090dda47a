"""Which destinations each recipient's items go to: a route per configured destination, and for one-off runs
(`--out`, `--destination`) every recipient named in a consent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sis2fhir.consent_book import ConsentBook
from sis2fhir.report import RowReport


@dataclass(frozen=True, slots=True)
class Route:
    """A recipient's destination as the pipeline sees it: a name in the outbox and what it takes."""

    destination: str  # Destination.name
    takes: str  # "fhir" (resources) or "hl7v2" (an ORU^R01 per school)
    v2: dict[str, Any] = field(default_factory=dict)
    self_contained: bool = False  # Destination.self_contained: Patient and Organizations go along, literally
    reads_resources: bool = True  # Destination.reads_resources: False, the items carry their lines and heads only


def recipient_routes(
    routes: Mapping[str, Sequence[Route]],
    from_consents: Sequence[Route],
    consents: ConsentBook,
    report: RowReport,
) -> dict[str, list[Route]]:
    """Recipient -> routes: those from the configuration, and `from_consents` for every recipient named in a
    consent (one-off runs). A consent naming a recipient the configuration does not know is reported (nothing
    goes to it) when the routes come from the configuration only."""
    merged: dict[str, list[Route]] = {r: list(v) for r, v in routes.items()}
    if from_consents:
        for recipient in sorted(set(consents.recipients()) | set(merged)):
            rts = merged.setdefault(recipient, [])
            rts += [rt for rt in from_consents if rt not in rts]
    elif routes and not set(consents.recipients()) <= set(routes):  # each consent read only if one is not known
        for cs in consents.values():
            for c in cs:
                if c.recipient_organization not in routes:
                    report.add(
                        c.file,
                        c.line,
                        "recipientOrganization",
                        "recipient-not-configured",
                        "this recipient is not in the configuration's recipients; nothing is sent to it",
                        severity="warning",
                    )
    return merged
