"""The state store's tables (SQLAlchemy Core): runs, the outbox, the FERPA disclosure log, the runs' verdicts,
the measured summaries, the API's accepted client assertions, the population runs and the runs' fingerprints. A
change here needs a migration in store/migrations/versions (the tests compare the two)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("as_of", String(10), nullable=False),
    Column("export", Text, nullable=False),
    Column("changes", Integer, nullable=False, default=0),
    Column("summary", Text),  # JSON: counts only, never PHI
)

# Every delivery is written here before any network call. `key` is the idempotency key: the same content for the
# same recipient and destination always has the same key, so a re-run finds it and sends nothing new.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(64), nullable=False),
    Column("recipient", String(200), nullable=False),
    Column("destination", String(500), nullable=False),
    Column("student_sourced_id", String(200), nullable=False),
    Column("state_student_id", String(200), nullable=False, default=""),
    Column("consent_id", String(200), nullable=False),
    Column("subject_key", String(400), nullable=False),  # what the content is about: supersedes older items
    Column("payload", LargeBinary, nullable=False),  # JSON: resources and/or the HL7 v2 message
    Column("status", String(16), nullable=False),  # queued | sending | delivered | pending | dead | superseded
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text, nullable=False, default=""),
    Column("run_id", Integer),
    UniqueConstraint("key", name="uq_outbox_key"),
    Index("ix_outbox_due", "status", "next_attempt_at"),
    Index("ix_outbox_subject", "destination", "subject_key"),
)

# FERPA 34 CFR 99.32: a record of each disclosure: who received what, when, and the consent relied on. A row is
# written before the items go out (certainty "sending"); the recipient's answer makes it "confirmed" (with the
# versions or control ids it stored) or drops it (certainly not received); an unknown outcome (a crash, a timeout
# after sending) leaves it "in-doubt": possibly disclosed, and treated as held by that recipient.
disclosures = Table(
    "disclosures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("student_sourced_id", String(200), nullable=False),
    Column("state_student_id", String(200), nullable=False, default=""),
    Column("recipient", String(200), nullable=False),
    Column("destination", String(500), nullable=False),
    Column("consent_id", String(200), nullable=False),
    Column("disclosed", Text, nullable=False),  # JSON list: resource ids/versions, message control ids, files
    Column("disclosed_at", DateTime(timezone=True), nullable=False),
    Column("outbox_key", String(64), nullable=False),
    Column("latency_seconds", Float),
    Column("certainty", String(16), nullable=False, server_default="confirmed"),  # confirmed | sending | in-doubt
    # how it left: push (a destination: folder, FHIR REST, MLLP, the served table) | api-read | bulk-export (the
    # API's reads of the served table, one row per student per request, service/served.py)
    Column("channel", String(16), nullable=False, server_default="push"),
    Index("ix_disclosures_student", "student_sourced_id"),
    Index("ix_disclosures_state_id", "state_student_id"),
    Index("ix_disclosures_outbox_key", "outbox_key"),
)

# What the API serves (deliver/served.py writes it, service/served.py reads it): per recipient, the latest version
# of each resource a `sync --out` folder holds for it (content: the same JSON bytes as the folder's line), with the
# columns searches filter on. `student` (sourcedId) is NULL for Organizations; `patient_id` is the Patient's id
# (its own for a Patient, the subject or patient reference for the others); `effective_end` the Observation's
# effectivePeriod.end (ISO date); `status` the Consent's status; `consent_id` the consent the item relied on.
served_resources = Table(
    "served_resources",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("recipient", String(200), nullable=False),
    Column("resource_type", String(40), nullable=False),
    Column("resource_id", String(64), nullable=False),
    Column("student", String(200)),
    Column("state_student_id", String(200), nullable=False, default=""),
    Column("consent_id", String(200), nullable=False, default=""),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", DateTime(timezone=True), nullable=False),
    Column("digest", String(64), nullable=False),  # sha256 of content: a new version only when it changes
    Column("content", LargeBinary, nullable=False),
    Column("patient_id", String(64)),
    Column("effective_end", String(10)),
    Column("status", String(32)),
    # on a Consent: the gate permitted disclosure as of the run that wrote it (not a revocation notice); a student's
    # Patient and Observations are served only while such a Consent of theirs is there
    Column("permits", Boolean, nullable=False, default=False),
    UniqueConstraint("recipient", "resource_type", "resource_id", name="uq_served_resource"),
    Index("ix_served_order", "recipient", "resource_type", "last_updated", "resource_id"),
    Index("ix_served_student", "recipient", "student"),
    Index("ix_served_patient", "recipient", "resource_type", "patient_id"),
)

# The token search terms of each served resource: identifier (its identifiers), code (Observation.code codings),
# subject-identifier (the identifier in Observation.subject / Consent.patient), system|value pairs.
served_tokens = Table(
    "served_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("recipient", String(200), nullable=False),
    Column("resource_type", String(40), nullable=False),
    Column("resource_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("system", String(500), nullable=False, default=""),
    Column("value", String(500), nullable=False),
    Index("ix_served_tokens_term", "recipient", "resource_type", "kind", "value"),
    Index("ix_served_tokens_resource", "recipient", "resource_type", "resource_id"),
)

# The sanity gates' verdict on each run (plausibility.py): what the attendance measured (counts only), the findings,
# an operator's --accept-change reason, and, for the latest accepted run of a district, a compact digest of days
# absent per student x school (zlib JSON, sourcedIds and hundredths of a day, never names) that the next run
# compares with. Runs stopped by a gate are recorded as "stopped" and are never a baseline.
run_verdicts = Table(
    "run_verdicts",
    metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=False),
    Column("district", String(500), nullable=False),  # settings.district.namespace
    Column("school_year", Integer, nullable=False),
    Column("as_of", String(10), nullable=False),
    Column("verdict", String(16), nullable=False),  # clean | accepted | stopped
    Column("accepted_reason", Text, nullable=False, default=""),
    Column("findings", Text, nullable=False),  # JSON: [{code, message, stops, overridden}]
    Column("measures", Text, nullable=False),  # JSON: counts per school and district-wide
    Column("absent_digest", LargeBinary),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Index("ix_run_verdicts_baseline", "district", "school_year", "verdict"),
)

# The measured summaries (AttendanceSummary) of each student x school, a row whenever the numbers changed since the
# last row for that student x school (a re-run of the same day, or a day that changed nothing, adds none): the
# history that notifications and charts read. sourcedIds and numbers only, never names. Days absent in hundredths.
attendance_summaries = Table(
    "attendance_summaries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, nullable=False),
    Column("district", String(500), nullable=False),  # settings.district.namespace
    Column("student_sourced_id", String(200), nullable=False),
    Column("school_sourced_id", String(200), nullable=False),
    Column("school_year", Integer, nullable=False),
    Column("as_of", String(10), nullable=False),  # the summary's as-of date (ISO)
    Column("days_in_membership", Integer, nullable=False),
    Column("days_absent_h", Integer, nullable=False),
    Column("excused_h", Integer, nullable=False),
    Column("unexcused_h", Integer, nullable=False),
    Column("illness_h", Integer, nullable=False),
    Column("oss_h", Integer, nullable=False),
    Column("rate", Float),  # share of the days in membership missed, 0..1; none without a day in membership
    Column("tier", String(32), nullable=False),
    Column("chronic", Boolean),  # none: too few days in membership to say
    Column("policy", String(100), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    # JSON list, one per calendar month up to the as-of date: [month "YYYY-MM", days in membership, hundredths
    # absent, excused, unexcused, illness, out-of-school suspension]; none on rows written before migration 0007
    Column("months", Text),
    # the early-warning projection of the year-end absence rate (transitions.py), 0..1; none where it cannot be made
    Column("projected_rate", Float),
    Index("ix_attendance_summaries_student", "district", "student_sourced_id", "school_sourced_id", "as_of"),
    Index("ix_attendance_summaries_run", "run_id"),
)

# The numbers of the last attendance_summaries row of every student x school of a district, what the next run
# compares with, in pieces (pieces.py: zlib JSON `{school: {student: numbers}}`; sourcedIds and numbers only).
summary_digest_pieces = Table(
    "summary_digest_pieces",
    metadata,
    Column("district", String(500), primary_key=True),
    Column("piece", Integer, primary_key=True, autoincrement=False),
    Column("run_id", Integer, nullable=False),  # the run that last changed the piece
    Column("digest", LargeBinary, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

# What a sync found changed for a student x school (the notification triggers, transitions.py): one row per
# trigger and episode, never two (the unique key), so re-runs, replays and restarts record nothing new. sourcedIds
# and numbers only (detail: JSON of the figures the event is about), never names. Subscriptions fan out from here.
attendance_events = Table(
    "attendance_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # the order events happened in
    Column("district", String(500), nullable=False),
    Column("school_year", Integer, nullable=False),
    Column("student_sourced_id", String(200), nullable=False),
    Column("school_sourced_id", String(200), nullable=False),
    Column("trigger", String(40), nullable=False),  # transitions.Trigger
    Column("episode", String(100), nullable=False),  # which crossing, streak or warning of the year this is
    Column("as_of", String(10), nullable=False),  # the sync's as-of date that found it (ISO)
    Column("occurred_on", String(10), nullable=False),  # the school day it is about (ISO)
    Column("detail", Text, nullable=False, default="{}"),
    Column("run_id", Integer, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint(
        "district",
        "school_year",
        "student_sourced_id",
        "school_sourced_id",
        "trigger",
        "episode",
        name="uq_attendance_events_episode",
    ),
)

# Per district, the school year and as-of date the transitions were last judged at (a sync of that date or an older
# one judges nothing: no event from a replay or an older export), and the state they were judged from, in pieces
# (pieces.py: zlib JSON `{school: {student: state}}` per district x piece).
transition_states = Table(
    "transition_states",
    metadata,
    Column("district", String(500), primary_key=True),
    Column("school_year", Integer, nullable=False),
    Column("as_of", String(10), nullable=False),
    Column("run_id", Integer, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)
transition_state_pieces = Table(
    "transition_state_pieces",
    metadata,
    Column("district", String(500), primary_key=True),
    Column("piece", Integer, primary_key=True, autoincrement=False),
    Column("state", LargeBinary, nullable=False),
)

# Bulk Data $export jobs (api/bulk.py): who asked (client and its recipient), what (types, since, the kick-off URL),
# how far, and the files made (JSON list of {type, file, count}: names under export_dir/<id>/, no personal data).
# A finished job and its files go once expires_at has passed (removed lazily, on access and at server start).
export_jobs = Table(
    "export_jobs",
    metadata,
    Column("id", String(64), primary_key=True),  # uuid4 hex: unguessable, and looked up only with its client id
    Column("client_id", String(200), nullable=False),
    Column("recipient", String(200), nullable=False),
    Column("request", Text, nullable=False),  # the kick-off URL as the client sent it (the manifest's `request`)
    Column("types", Text, nullable=False),  # JSON list of resource types, in export order
    Column("since", DateTime(timezone=True)),
    Column("status", String(16), nullable=False),  # running | complete | failed
    Column("progress", String(200), nullable=False, default=""),
    Column("transaction_time", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True)),
    Column("output", Text, nullable=False, default="[]"),  # JSON: [{type, file, count}]
    Column("error", Text, nullable=False, default=""),  # a failed job's reason (no personal data)
    Index("ix_export_jobs_client", "client_id", "status"),
)

# The consent check of every served read and export (service/served.py `_visible`) looks up, per row, a Consent of
# the same student for the recipient that permits. Without this index SQLite searches by (recipient, resource_type)
# and scans all of the recipient's Consents for each row: quadratic, minutes for one export at 100k students
# (scripts/bench_bulk_export.py); with it, 0.1 s for 25k Patients. Revision 0005 adds it.
Index(
    "ix_served_consent",
    served_resources.c.recipient,
    served_resources.c.resource_type,
    served_resources.c.student,
    served_resources.c.permits,
)

# The Subscriptions (R5 Backport, api/subscriptions.py) of the API's clients: each belongs to the recipient of the
# client that made it. `resource` is the Subscription as the client sent it (its signing secret taken out: that is
# in `secret` only, never answered or logged); the other columns are what the notifier acts on. `cursor` is the
# last attendance_events.id fanned out to it; `events` the number of the last event it was given
# (events-since-subscription-start). `last_sent_at`: the last notification of any kind it accepted (heartbeats).
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", String(64), primary_key=True),  # uuid4 hex
    Column("client_id", String(200), nullable=False),
    Column("recipient", String(200), nullable=False),
    Column("status", String(16), nullable=False),  # requested | active | error | off
    Column("topic", String(500), nullable=False),  # the SubscriptionTopic canonical URL (criteria)
    Column("trigger", String(40), nullable=False),  # the attendance_events.trigger the topic stands for
    Column("filters", Text, nullable=False, default="{}"),  # JSON: {"patient": [Patient ids], "school": [sourcedIds]}
    Column("endpoint", String(2000), nullable=False),
    Column("content", String(16), nullable=False),  # empty | id-only | full-resource
    Column("headers", Text, nullable=False, default="[]"),  # JSON list of "Name: value", sent verbatim
    Column("heartbeat_seconds", Integer),
    Column("timeout_seconds", Integer),
    Column("max_count", Integer),
    Column("secret", Text),  # the HMAC-SHA256 key the subscriber chose (channel extension), or none
    Column("resource", Text, nullable=False),  # JSON: the Subscription as sent (without the secret)
    Column("events", Integer, nullable=False, default=0),
    Column("cursor", Integer, nullable=False, default=0),
    Column("error", Text, nullable=False, default=""),  # why it is in `error` (no personal data)
    Column("version_id", Integer, nullable=False, default=1),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("last_sent_at", DateTime(timezone=True)),
    Index("ix_subscriptions_recipient", "recipient", "status"),
)

# The event notifications of each subscription: one row per attendance event it was given, numbered in order
# (event_number: 1, 2, ... per subscription, never reused: a retry re-sends the same number). queued | delivered |
# withheld (the consent gate said no at send time: the number is a gap the subscriber can see) | dead (retried
# past notify.max_age_hours).
subscription_notifications = Table(
    "subscription_notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subscription_id", String(64), nullable=False),
    Column("event_number", Integer, nullable=False),
    Column("attendance_event_id", Integer, nullable=False),
    Column("kind", String(24), nullable=False, default="event-notification"),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True)),
    Column("last_error", Text, nullable=False, default=""),
    UniqueConstraint("subscription_id", "attendance_event_id", name="uq_subscription_notifications_event"),
    UniqueConstraint("subscription_id", "event_number", name="uq_subscription_notifications_number"),
    Index("ix_subscription_notifications_due", "subscription_id", "status", "event_number"),
)

# The jti of every client assertion the API's token endpoint accepted, kept until the assertion's own exp (after it
# the assertion is refused as expired anyway): a jti seen before is a replay (SMART Backend Services).
client_assertions = Table(
    "client_assertions",
    metadata,
    Column("client_id", String(200), primary_key=True),
    Column("jti", String(255), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_client_assertions_expiry", "expires_at"),
)


# The runs of `sis2fhir population` and `sis2fhir evaluate` (store/population_runs.py): the command, the as-of date
# and program start, the written agreement a cohort file was used under, the cohort's label and the SHA-256 of the
# file (which file, never its contents), and the counts written (JSON). No student identifier. Revision 0009.
population_runs = Table(
    "population_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("command", String(20), nullable=False),  # population | evaluate
    Column("district", String(500), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("as_of", String(10), nullable=False),
    Column("program_start", String(10)),
    Column("export", Text, nullable=False),
    Column("out", Text, nullable=False),
    Column("agreement", Text, nullable=False, server_default=""),
    Column("cohort", Text, nullable=False, server_default=""),
    Column("cohort_sha256", String(64), nullable=False, server_default=""),
    Column("summary", Text),  # JSON: counts only
)


# What each completed sync's output depends on (store/run_fingerprints.py): a digest of the export's bytes, the
# effective settings, policy, as-of date, recipients and destinations, the sis2fhir code and the store's revision;
# the run's verdict, where its row report was written and its SHA-256, and the outbox's state when it ended. A run
# whose fingerprint equals the district's last completed run's is not read again (`identical_to`: the run whose
# outputs it stands on). Digests, paths and counts only, never PHI. Revision 0010.
run_fingerprints = Table(
    "run_fingerprints",
    metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=False),
    Column("district", String(500), nullable=False),  # settings.district.namespace
    Column("fingerprint", String(128), nullable=False),
    Column("identical_to", Integer),  # a skipped run: the full run whose outputs and report it stands on
    Column("verdict", String(16), nullable=False),  # the full run's: clean | accepted
    Column("report_path", Text, nullable=False),
    Column("report_sha256", String(64), nullable=False),
    Column("outbox_mark", Text, nullable=False),  # JSON: the outbox's items per status and its last id, at the end
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Index("ix_run_fingerprints_district", "district", "run_id"),
)


def as_utc(ts: datetime) -> datetime:
    """A timestamp read back from the store, in UTC: SQLite hands back naive datetimes even for timezone=True
    columns (they were written in UTC), PostgreSQL aware ones in the session's zone."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
