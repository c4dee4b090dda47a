"""What building the disclosures counts: decisions, resources built and sent, quarantined, unchanged; in one
process, or added up over the mapping workers (disclosure.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sis2fhir.deliver.base import DeliveryItem
from sis2fhir.deliver.outbox import Withdrawals
from sis2fhir.report import RowReport


@dataclass(slots=True)
class DisclosureCounts:
    """What building the disclosures counted (in one process, or added up over workers)."""

    report: RowReport
    decisions: Counter[str] = field(default_factory=Counter)  # per student x recipient
    resources_built: Counter[str] = field(default_factory=Counter)
    # per resource type, in the items for FHIR-taking destinations (one per destination): new + unchanged, and new
    to_recipients: Counter[str] = field(default_factory=Counter)
    to_recipients_new: Counter[str] = field(default_factory=Counter)
    quarantined: int = 0
    unchanged: int = 0
    revocation_notices: int = 0
    consented: int = 0  # students permitted for some recipient (each student is mapped once, in one process)
    withdraw: Withdrawals = field(default_factory=Withdrawals)  # (destination, subject): must not go out
    # Organizations, in every student's item to a self-contained destination, are counted once each: as built by
    # id, in the items by destination, recipient and id (a line of that folder's Organization.ndjson)
    organizations: set[tuple[str, str, str, str]] = field(default_factory=set)  # (built|sent|new, dest, to, id)

    def count_sent(self, item: DeliveryItem, destination: str, new: bool) -> None:
        """Count an item's resources: in the items for recipients (`new`: of which new or changed)."""
        counter = self.to_recipients_new if new else self.to_recipients
        for head in item.resource_heads():
            if head.type == "Organization":
                self.organizations.add(("new" if new else "sent", destination, item.recipient, head.id))
            else:
                counter[head.type] += 1

    def settle(self) -> None:
        """The Organization counts from the set (adding up the workers' counts would count one in each)."""
        n = Counter(kind for kind, *_ in self.organizations)
        for kind, counter in (("built", self.resources_built), ("sent", self.to_recipients),
                              ("new", self.to_recipients_new)):  # fmt: skip
            if n[kind]:
                counter["Organization"] = n[kind]

    def absorb(self, other: DisclosureCounts, own: Callable[[str], str]) -> None:
        """Add a worker's counts; `own` gives this process's string for a student id (a worker's come back as
        copies: one per student, not one per pair withdrawn)."""
        self.decisions.update(other.decisions)
        self.resources_built.update(other.resources_built)
        self.to_recipients.update(other.to_recipients)
        self.to_recipients_new.update(other.to_recipients_new)
        self.quarantined += other.quarantined
        self.unchanged += other.unchanged
        self.revocation_notices += other.revocation_notices
        self.consented += other.consented
        self.withdraw.absorb(other.withdraw, own)
        self.organizations |= other.organizations
        self.settle()
        if other.report is not self.report:
            self.report.extend(other.report)
