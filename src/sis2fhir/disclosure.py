"""What each recipient may receive about one student: gated on consent, mapped, validated, keyed for the outbox.

One `DisclosureBuilder` turns a student's attendance summaries and consents into outbox envelopes, one per
recipient destination (FHIR resources, or an HL7 v2 ORU^R01 per school). `build_disclosures` runs it over every
student, in forked workers on several cores for a large district, and adds up what they counted.
"""

from __future__ import annotations

import gc
import itertools
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from sis2fhir.config import RecipientSettings, Settings
from sis2fhir.consent_book import ConsentBook
from sis2fhir.deliver.base import DeliveryItem, Head, head_of
from sis2fhir.deliver.outbox import Envelope, Subject, idempotency_key
from sis2fhir.deliver.routing import Route
from sis2fhir.disclosure_counts import DisclosureCounts
from sis2fhir.gate import ConsentDecision, decide
from sis2fhir.hl7_disclosure import v2_envelopes
from sis2fhir.map.consent import ferpa_consent
from sis2fhir.map.observation import Measured, attendance_observation
from sis2fhir.map.organization import ORGANIZATIONS_KEPT, SetOrganizations
from sis2fhir.map.patient import student_patient
from sis2fhir.measure import AttendanceSummary
from sis2fhir.parallel import can_fork, fork_map, workers_wanted
from sis2fhir.records import ConsentRecord, Roster, Student
from sis2fhir.report import RowReport
from sis2fhir.student_chunks import StudentChunk, StudentsToMap
from sis2fhir.terminology import CONSENT_PROFILE, OBSERVATION_PROFILE
from sis2fhir.validate import operation_outcome
from sis2fhir.validate.templates import default_template_validator, validate_encoded

_Serialised = tuple[dict[str, Any], bytes, Head | None]  # a resource, its JSON, its Head (None: not read yet)
KeyLookup = Callable[[Sequence[str]], set[str]]  # which of these idempotency keys the outbox already has
Observations = list[tuple[str, dict[str, Any]]]  # a student's valid Observations: (school, resource)
Consents = Mapping[str, Sequence[ConsentRecord]]  # student -> their consents (read_consents)


@dataclass(frozen=True, slots=True)
class _Made:
    """An envelope as made, before the outbox is asked whether it already has its key."""

    envelope: Envelope
    notice: bool = False  # a revoked Consent for a recipient that holds the student's data


def revocation_subjects(consents: ConsentBook) -> set[Subject]:
    """The student x recipient subjects a revocation notice may go out about: those with a revoked consent row
    (gate.decide says REVOKED for no other), whatever the as-of date."""
    return {Subject(recipient, student) for student, recipient in consents.revoked()}


@dataclass(slots=True)
class DisclosureBuilder:
    """Gate, map and validate one student's attendance for every recipient; say what goes where."""

    roster: Roster
    settings: Settings
    as_of: date
    routes: dict[str, list[Route]]  # recipient -> its destinations
    known: KeyLookup  # looked up per chunk of students (outbox.KnownKeys)
    # (destination, subject) that received something before, of the subjects a revocation notice may be about
    # (revocation_subjects; every other one is never looked up)
    holders: set[tuple[str, Subject]]
    quarantine_dir: Path | None
    counts: DisclosureCounts
    measured: Measured  # the run's policy and each school's last instructional day
    valid_organizations: dict[str, bool] = field(default_factory=dict)  # id -> valid (each validated once)
    organizations: SetOrganizations | None = None  # made once per run (each school's, each recipient's)
    recipients: dict[str, RecipientSettings] = field(default_factory=dict)  # each recipient's, looked up once
    organization_lines: dict[str, tuple[dict[str, Any], bytes, Head]] = field(default_factory=dict)  # id -> org's
    # id(resource) -> (resource, its JSON, its Head or None) for the student being mapped: holding the resource keeps
    # its id its own
    serialised: dict[int, _Serialised] = field(default_factory=dict)

    def envelopes_for(self, chunk: StudentChunk, consents: Consents) -> list[Envelope]:
        """The envelopes for these students that the outbox does not have yet (one look-up for all of them)."""
        students = self.roster.students
        made = [m for sid, theirs in chunk.each() for m in self.envelopes(students[sid], theirs, consents.get(sid, ()))]
        known = self.known([m.envelope.item.key for m in made])
        out: list[Envelope] = []
        for m in made:
            item = m.envelope.item
            if item.key in known:
                if not m.notice:  # an unchanged notice was sent before: not counted as unchanged data
                    self.counts.unchanged += 1
                continue
            if m.notice:
                self.counts.revocation_notices += 1
            else:
                self.counts.count_sent(item, m.envelope.destination, new=True)
            out.append(m.envelope)
        self.counts.settle()
        return out

    def envelopes(
        self, student: Student, summaries: list[AttendanceSummary], consents: Sequence[ConsentRecord]
    ) -> list[_Made]:
        """Everything that may go to each recipient about this student, known to the outbox or not."""
        counts = self.counts
        out: list[_Made] = []
        # valid Observations (school, resource) for every recipient, once per kind of reference (literal or not)
        observations: dict[bool, Observations] = {}
        contexts: dict[str, list[dict[str, Any]] | None] = {}  # recipient -> Patient and Organizations, or None
        self.serialised = {}  # this student's resources' bytes, each serialised once
        consented = False
        for recipient, rts in self.routes.items():
            gate = decide(consents, recipient, self.as_of)
            counts.decisions[gate.decision.value] += 1
            if gate.decision is not ConsentDecision.PERMITTED or gate.consent is None:
                out += self._withdraw(
                    student, recipient, rts, gate.consent if gate.decision is ConsentDecision.REVOKED else None
                )
                continue
            consented = True
            consent_made: dict[bool, dict[str, Any] | None] = {}
            for rt in rts:
                literal = rt.self_contained
                if literal not in consent_made:
                    consent_made[literal] = self._consent(gate.consent, student, recipient, literal, not consent_made)
                consent = consent_made[literal]
                if consent is None:
                    continue  # without a valid Consent resource nothing goes to this recipient
                if literal not in observations:
                    observations[literal] = self._observations(student, summaries, literal, not observations)
                if not observations[literal]:
                    continue
                if rt.takes == "hl7v2":
                    out += map(_Made, v2_envelopes(rt, recipient, student, summaries, self.roster, gate.consent,
                                                   counts.report, self.settings,
                                                   self._recipient(recipient).system))  # fmt: skip
                    continue
                resources = [obs for _, obs in observations[literal]]
                if literal:  # the Patient and Organizations they refer to go along (privacy: only with consent)
                    if recipient not in contexts:
                        contexts[recipient] = self._context(student, observations[literal], recipient, gate.consent)
                    context = contexts[recipient]
                    if context is None:
                        continue
                    resources = [*context, *resources]
                resources.append(consent)
                subject = Subject(recipient, student.sourced_id)
                lines, encoded, heads = self._encoded(resources)
                key = idempotency_key(rt.destination, recipient, subject, encoded)
                item = _item(rt, key, recipient, student, gate.consent.consent_id, resources, lines, heads)
                counts.count_sent(item, rt.destination, new=False)
                out.append(_Made(Envelope(rt.destination, subject, item)))
        counts.consented += consented
        return out

    def _encoded(self, resources: list[dict[str, Any]]) -> tuple[tuple[bytes, ...], bytes, tuple[Head, ...]]:
        """`encoded_resources` and each resource's Head, each resource serialised and read once: the student's (the
        same Observations go to every recipient), the Organizations every student's set shares once per run."""
        lines: list[bytes] = []
        heads: list[Head] = []
        for resource in resources:
            kept = self.serialised.get(id(resource))
            if kept is not None and kept[2] is not None:
                line, head = kept[1], kept[2]
            elif resource["resourceType"] == "Organization":
                _, line, head = self._organization_line(resource)
            else:
                line = orjson.dumps(resource) if kept is None else kept[1]  # kept: the validator's bytes
                head = head_of(resource)
                self.serialised[id(resource)] = (resource, line, head)
            lines.append(line)
            heads.append(head)
        return tuple(lines), b"[" + b",".join(lines) + b"]", tuple(heads)

    def _organization_line(self, org: dict[str, Any]) -> tuple[dict[str, Any], bytes, Head]:
        kept = self.organization_lines.get(org["id"])
        if kept is None or kept[0] is not org:  # the same object as SetOrganizations made (its bytes are its own)
            if len(self.organization_lines) >= ORGANIZATIONS_KEPT:
                self.organization_lines.clear()
            kept = self.organization_lines[org["id"]] = (org, orjson.dumps(org), head_of(org))
        return kept

    def _observations(
        self, student: Student, summaries: list[AttendanceSummary], literal: bool, count: bool
    ) -> Observations:
        """(school, Observation) for each summary whose Observation is valid; counted once per student (`count`)."""
        made: Observations = []
        for s in summaries:
            school = self.roster.schools[s.school_sourced_id]
            obs = attendance_observation(s, student, school, self.settings.district, self.measured, literal)
            if self._passes(obs, OBSERVATION_PROFILE, student, s.school_sourced_id):
                made.append((s.school_sourced_id, obs))
                if count:
                    self.counts.resources_built["Observation"] += 1
        return made

    def _consent(
        self, consent: ConsentRecord, student: Student, recipient: str, literal: bool, count: bool
    ) -> dict[str, Any] | None:
        """The valid Consent resource, or None; counted once per student x recipient (`count`)."""
        made = ferpa_consent(
            consent, student, self.roster.district, self.settings.district, self._recipient(recipient).system, literal
        )
        if not self._passes(made, CONSENT_PROFILE, student, consent.consent_id):
            return None
        if count:
            self.counts.resources_built["Consent"] += 1
        return made

    def _recipient(self, recipient: str) -> RecipientSettings:
        """The recipient's settings (a one-off run's recipients are not configured: the defaults)."""
        if recipient not in self.recipients:
            found = next((r for r in self.settings.recipients if r.identifier == recipient), None)
            self.recipients[recipient] = found if found is not None else RecipientSettings(identifier=recipient)
        return self.recipients[recipient]

    def _context(self, student: Student, observations: Observations, recipient: str, consent: ConsentRecord
                 ) -> list[dict[str, Any]] | None:  # fmt: skip
        """What a self-contained set adds for this student: the Patient, the district, the schools of the
        Observations and the recipient (in that order), all valid; None when one is not (nothing goes then)."""
        district, settings = self.settings.district, self._recipient(recipient)
        patient = student_patient(student, district, settings.patient_detail or district.patient_detail)
        if not self._passes(patient, None, student, "Patient"):
            return None
        self.counts.resources_built["Patient"] += 1
        schools = (self.roster.schools[school] for school, _ in observations)
        named = settings.name or consent.recipient_name
        if self.organizations is None:
            self.organizations = SetOrganizations(self.roster.district, district)
        orgs = self.organizations(schools, (settings.system, recipient, named))
        for org in orgs:
            if org["id"] not in self.valid_organizations:  # the same for every student
                self.valid_organizations[org["id"]] = self._passes(org, None, student, "Organization")
            if not self.valid_organizations[org["id"]]:
                return None
            self.counts.organizations.add(("built", "", "", org["id"]))
        return [patient, *orgs]

    def _withdraw(
        self, student: Student, recipient: str, rts: list[Route], revoked: ConsentRecord | None
    ) -> list[_Made]:
        """Nothing more goes out. A FHIR recipient that already holds this student's data gets the revoked
        Consent (status inactive), so that its copy does not go on saying that sharing is allowed."""
        subject = Subject(recipient, student.sourced_id)
        out: list[_Made] = []
        for rt in rts:
            if revoked is None or rt.takes != "fhir" or (rt.destination, subject) not in self.holders:
                self.counts.withdraw.add(rt.destination, subject)
                continue
            # a folder holds the Patient and Organizations from what it received before: no Patient goes again
            consent = ferpa_consent(revoked, student, self.roster.district, self.settings.district,
                                    self._recipient(recipient).system, rt.self_contained)  # fmt: skip
            if not self._passes(consent, CONSENT_PROFILE, student, revoked.consent_id):
                self.counts.withdraw.add(rt.destination, subject)
                continue
            lines, encoded = encoded_resources([consent])
            key = idempotency_key(rt.destination, recipient, subject, encoded)
            # same subject: enqueueing it supersedes anything about this student still waiting for this recipient
            item = _item(rt, key, recipient, student, revoked.consent_id, [consent], lines, (head_of(consent),))
            out.append(_Made(Envelope(rt.destination, subject, item), notice=True))
        return out

    def fresh(self) -> DisclosureBuilder:
        """A builder like this one with nothing counted yet (for a worker process)."""
        return DisclosureBuilder(
            self.roster,
            self.settings,
            self.as_of,
            self.routes,
            self.known,
            self.holders,
            self.quarantine_dir,
            DisclosureCounts(RowReport()),
            self.measured,
        )

    def _passes(self, resource: dict[str, Any], profile: str | None, student: Student, source: str) -> bool:
        """Validate against our profile (None: R4 core); an invalid one goes to quarantine with its OperationOutcome."""
        # the full validator's verdict (once per template the full way), and mostly the resource's bytes with it
        issues, line = validate_encoded(resource, profile)
        if not any(i.severity == "error" for i in issues):
            if line is not None:  # the resource is not changed after this: these are the bytes `_encoded` writes
                self.serialised[id(resource)] = (resource, line, None)
            return True
        self.counts.quarantined += 1
        where = f"users.csv line {student.line} (student {student.sourced_id}), {source}"
        outcome = operation_outcome(issues, diagnostics_prefix=f"{where}: ")
        self.counts.report.add(
            "users.csv",
            student.line,
            "",
            "invalid-resource",
            f"the {resource['resourceType']} built for this student failed validation and was quarantined: "
            f"{issues[0].message}",
        )
        if self.quarantine_dir is not None:
            self.quarantine_dir.mkdir(parents=True, exist_ok=True)
            with (self.quarantine_dir / f"{resource['resourceType']}.ndjson").open("ab") as f:
                f.write(
                    orjson.dumps({"resource": resource, "outcome": outcome}) + b"\n"
                )  # one write: workers append too
        return False


PARALLEL_MAPPING_FROM = 4000  # fewer students than this: mapping in one process is quicker than forking
MAP_AHEAD = 4  # chunks per worker mapped ahead of this process (each result waits pickled until it is taken)
MAP_MEANWHILE = 64  # chunks handed to the workers before this process does its own work (theirs wait on disk)
COLLECT_EVERY = 20  # chunks of students between two collections of reference cycles while mapping


def build_disclosures(
    builder: DisclosureBuilder,
    to_map: StudentsToMap,
    workers: int,
    meanwhile: Callable[[], None] | None = None,
) -> Iterator[tuple[int, list[Envelope]]]:
    """(students mapped, their envelopes), chunk by chunk, in student order. On several cores, forked workers gate,
    map and validate while this process writes to the store; each worker's counts are added to `builder.counts`.
    `meanwhile`: this process's own work before the first chunk is yielded, which the mapping needs nothing of; on
    several cores it runs while the workers map their first MAP_MEANWHILE chunks (forked before it: they see
    nothing it does); this process lets go of `to_map` around it (StudentsToMap.let_go_after)."""
    workers = workers_wanted(workers)
    students = builder.roster.students
    parallel = workers >= 2 and sum(len(c.students) for c in to_map.chunks) >= PARALLEL_MAPPING_FROM and can_fork()
    if parallel:
        default_template_validator()  # compiled once here; the workers inherit it
    # The resources made are trees (no reference cycles: the cyclic collector found nothing in them), yet each
    # waits for its flush long enough to be walked by many automatic collections, full ones included (measured at
    # 20k students, workers: 1: about 5 of the stage's 12 CPU seconds). So automatic collection is off while the
    # envelopes are made; a young collection every COLLECT_EVERY chunks takes the few cycles the store and the
    # event loop leave (measured: about 120 objects per flush of 1000 envelopes).
    automatic = gc.isenabled()
    gc.disable()
    try:
        if not parallel:
            if meanwhile is not None:
                meanwhile()
            for n, chunk in enumerate(to_map.chunks, 1):
                yield len(chunk.students), builder.envelopes_for(chunk, to_map.consents)
                if n % COLLECT_EVERY == 0:
                    gc.collect(0)
            return
        with tempfile.TemporaryDirectory(prefix="sis2fhir-mapped-") as spill, closing(  # the pool ends first
            fork_map(_map_chunk, (builder, to_map), range(to_map.chunk_count), workers, MAP_AHEAD * workers,
                     meanwhile=to_map.let_go_after(meanwhile), ahead_meanwhile=MAP_MEANWHILE, spill_to=Path(spill))
        ) as mapping:  # fmt: skip
            for n, part in enumerate(mapping, 1):
                builder.counts.absorb(part.counts, lambda sid: students[sid].sourced_id)  # the roster's own ids
                yield part.students, part.envelopes
                if n % COLLECT_EVERY == 0:
                    gc.collect(0)
    finally:
        if automatic:
            gc.enable()


_chunks_mapped = itertools.count(1)  # in a worker: the chunks it mapped


@dataclass(slots=True)
class _MappedChunk:
    students: int
    envelopes: list[Envelope]
    counts: DisclosureCounts


def _map_chunk(job: tuple[DisclosureBuilder, StudentsToMap], n: int) -> _MappedChunk:
    """Chunk `n` of students, mapped in a worker (the builder, chunks and consents reach it by fork)."""
    parent, to_map = job
    builder, chunk = parent.fresh(), to_map.chunks[n]
    mapped = _MappedChunk(len(chunk.students), builder.envelopes_for(chunk, to_map.consents), builder.counts)
    if next(_chunks_mapped) % COLLECT_EVERY == 0:  # automatic collection is off in the workers too (forked)
        gc.collect(0)
    return mapped


def _item(rt: Route, key: str, recipient: str, student: Student, consent_id: str, resources: list[dict[str, Any]],
          lines: tuple[bytes, ...], heads: tuple[Head, ...]) -> DeliveryItem:  # fmt: skip
    """The item with its lines and heads; with its resources only for a destination that reads them (a folder
    writes the lines: the resources would only be pickled in a worker and decoded again here)."""
    kept = resources if rt.reads_resources else []
    return DeliveryItem(key, recipient, student.sourced_id, student.state_id, consent_id, kept, "", lines, heads)


def fingerprint(resources: list[dict[str, Any]]) -> bytes:
    """The resources as JSON: the mapper builds them in a fixed order, so the same content gives the same bytes."""
    return orjson.dumps(resources)


def encoded_resources(resources: list[dict[str, Any]]) -> tuple[tuple[bytes, ...], bytes]:
    """Each resource as JSON (a folder's NDJSON lines), and their `fingerprint`: orjson writes an array as its
    items' bytes, comma-separated between brackets, so the lines joined are the same bytes, serialised once."""
    lines = tuple(map(orjson.dumps, resources))
    return lines, b"[" + b",".join(lines) + b"]"
