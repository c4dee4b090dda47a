"""`sis2fhir outbox list | dead | retry | replay`: what waits in the durable outbox, and giving it another go."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import Annotated

import orjson
import typer
from rich.table import Table

from sis2fhir.cli.options import ConfigOpt, StoreOpt, fail, failing, lock_waiting, out, settings_for
from sis2fhir.config import Settings
from sis2fhir.deliver.ndjson import FolderWriteError
from sis2fhir.deliver.outbox import DEAD, Outbox
from sis2fhir.errors import Exit
from sis2fhir.service import outbox as service

outbox_app = typer.Typer(help="Inspect and operate the durable outbox.", no_args_is_help=True)


@outbox_app.command("list")
def outbox_list(
    status: Annotated[str | None, typer.Option(help="queued | pending | delivered | dead | superseded")] = None,
    limit: int = 50,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines (one item per line) instead of tables.")] = False,
) -> None:
    """Counts by destination and status, then the latest items."""
    settings = settings_for(config, store, None, None)
    if as_json:
        for item in service.items(settings, status, limit):
            sys.stdout.write(orjson.dumps(asdict(item), default=str).decode() + "\n")
        return
    listing = service.listing(settings, status, limit)
    t = Table("destination", "status", "items")
    for (dest, st), n in sorted(listing.counts.items()):
        t.add_row(dest, st, str(n))
    out.print(t)
    items = Table("key", "recipient", "student", "status", "attempts", "next attempt", "last error")
    for r in listing.items:
        items.add_row(
            r.key[:12],
            r.recipient,
            r.student_sourced_id,
            r.status,
            str(r.attempts),
            str(r.next_attempt_at)[:19],
            (r.last_error or "")[:80],
        )
    out.print(items)


@outbox_app.command("dead")
def outbox_dead(limit: int = 50, config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """The dead letters with their last error."""
    settings = settings_for(config, store, None, None)
    t = Table("key", "recipient", "student", "attempts", "last error")
    for r in service.items(settings, DEAD, limit):
        t.add_row(r.key[:12], r.recipient, r.student_sourced_id, str(r.attempts), r.last_error or "")
    out.print(t)


def _drain(ob: Outbox, settings: Settings) -> None:
    """Deliver what is due, say what it came to, and exit 4 while anything still waits or is dead."""
    try:
        report = service.drain(ob, settings)
    except FolderWriteError as e:  # merging a folder's delivered segments did not fit: they stay, merged next time
        raise fail(str(e)) from None
    out.print(", ".join(f"{k}: {v}" for k, v in sorted(report.delivered.items())) or "nothing was due")
    if report.left:
        out.print(
            "still in the outbox: "
            + ", ".join(f"{n} {status}" for status, n in sorted(report.left.items()))
            + " (sis2fhir outbox list)"
        )
        raise typer.Exit(int(Exit.NOT_ALL_DELIVERED))


@outbox_app.command("retry")
def outbox_retry(config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Try every queued and pending item now. Exit 0 when nothing waits any more, 4 while items still wait
    (queued, pending) or are dead."""
    settings = settings_for(config, store, None, None)
    with failing(), service.writing(settings, "outbox retry", lock_waiting(settings)) as ob:
        n = service.make_due(ob)
        out.print(f"{n} items due now")
        _drain(ob, settings)


@outbox_app.command("replay")
def outbox_replay(
    key: Annotated[
        list[str] | None,
        typer.Argument(help="Keys (or prefixes shown by `outbox list`); all dead letters when none given."),
    ] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Give dead letters another go (after the recipient fixed what it refused). A key or prefix that names no
    dead letter, or several items, is refused (exit 2); exit 4 while items still wait or are dead."""
    settings = settings_for(config, store, None, None)
    with failing(), service.writing(settings, "outbox replay", lock_waiting(settings)) as ob:
        keys = service.dead_keys(ob, key) if key else None
        n = service.make_dead_due(ob, keys)
        out.print(f"{n} dead letters queued again")
        _drain(ob, settings)
