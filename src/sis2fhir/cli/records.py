"""`sis2fhir disclosures` and `sis2fhir pending`: the FERPA disclosure record of a student, and the students
waiting for a certain patient match."""

from __future__ import annotations

import sys
from typing import Annotated

import orjson
import typer
from rich.table import Table

from sis2fhir.cli.options import ConfigOpt, StoreOpt, out, settings_for
from sis2fhir.deliver.disclosure_log import CONFIRMED, IN_DOUBT, IN_FLIGHT
from sis2fhir.deliver.served import SERVED
from sis2fhir.service import outbox as outbox_service
from sis2fhir.service import records as service

# "sending": handed over, no answer yet (or the process stopped); "in-doubt": no answer ever came
CERTAINTY = {CONFIRMED: "confirmed", IN_FLIGHT: "in doubt (in flight)", IN_DOUBT: "in doubt (possibly)"}
# disclosures.channel: sent by a destination, or read through the API (one row per student per request)
HOW = {"push": "sent", "api-read": "API read", "bulk-export": "Bulk export"}


def pending_command(limit: int = 200, config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Students waiting for a certain patient match at a recipient: never sent, tried again on every run."""
    rows = outbox_service.pending(settings_for(config, store, None, None), limit)
    t = Table("student", "recipient", "destination", "attempts", "why")
    for r in rows:
        t.add_row(r.student_sourced_id, r.recipient, r.destination, str(r.attempts), r.last_error or "")
    out.print(t)
    out.print(f"{len(rows)} pending")


def disclosures_command(
    student: Annotated[str, typer.Option("--student", help="The student's sourcedId or state id.")],
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines instead of a table.")] = False,
) -> None:
    """What was disclosed about a student, to whom, when, under which consent (FERPA 34 CFR 99.32): sent by a
    destination, made available to the API (`served`), or read through it (API read, Bulk export). Rows whose
    delivery was never confirmed (a crash, a timeout after sending) are shown as in doubt: possibly disclosed."""
    rows = service.disclosures(settings_for(config, store, None, None), student)
    if as_json:
        for r in rows:
            sys.stdout.write(orjson.dumps(r.as_record(), default=str).decode() + "\n")
        return
    t = Table("when (UTC)", "how", "recipient", "destination", "consent", "disclosed", "what")
    for r in rows:
        t.add_row(
            str(r.disclosed_at)[:19],
            "served to the API" if r.destination == SERVED and r.channel == "push" else HOW.get(r.channel, r.channel),
            r.recipient,
            r.destination,
            r.consent_id,
            CERTAINTY.get(r.certainty, r.certainty),
            "\n".join(r.disclosed),
        )
    out.print(t)
    if not rows:
        out.print(f"no disclosure recorded for {student}")
    elif any(not r.confirmed for r in rows):
        out.print(
            "in doubt: sent, but the recipient's answer was never recorded (a crash or a timeout); treated as "
            "disclosed: the recipient counts as holding it, and a revocation sends it the inactive Consent"
        )
