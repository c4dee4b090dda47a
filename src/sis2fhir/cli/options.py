"""What the commands share: the consoles, the options, a failed command's message, and the settings an invocation
asks for (a config file, a store, a policy preset, where the state id is)."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from sis2fhir.cli.failures import StoreContext
from sis2fhir.config import Settings, load_settings, parse_state_id_source, shown_store_url
from sis2fhir.deliver.factory import folder_problem
from sis2fhir.errors import ConfigError, Exit, Sis2fhirError, StoreMissing

err = Console(stderr=True, soft_wrap=True)  # messages stay whole lines in logs
out = Console(width=None if sys.stdout.isatty() else 160)  # logs and pipes get wide tables, not 80 columns


def fail(message: str, code: Exit = Exit.UNUSABLE) -> typer.Exit:
    """Print the message; the caller raises what this returns (`raise fail(...)`)."""
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(int(code))


@contextmanager
def failing() -> Iterator[None]:
    """The project's exceptions raised in the block end the command with their message and exit code."""
    try:
        yield
    except StoreMissing:  # the net's message says how to point the command at the store (cli.failures)
        raise
    except Sis2fhirError as e:
        raise fail(str(e), e.exit_code) from None


def lock_waiting(settings: Settings) -> Callable[[str], None]:
    """What a command prints while it waits for the store's writer lock."""
    wait = settings.store_lock_wait_seconds

    def said(holder: str) -> None:
        err.print(
            f"waiting up to {wait:g} s for another sis2fhir command ({holder}) to finish writing to the state store"
        )

    return said


def store_url(store: str | None) -> str | None:
    """--store: a SQLAlchemy URL, or a plain path: a SQLite file, or a folder holding state.sqlite (--out DIR)."""
    if store is None or "://" in store:
        return store
    path = Path(store).expanduser()
    if path.is_dir():
        path = path / "state.sqlite"
    return f"sqlite:///{path.resolve()}"


def settings_for(config: Path | None, store: str | None, policy: str | None, state_id_source: str | None) -> Settings:
    """The settings of the config file and environment, with the command line's overrides."""
    if policy is not None:
        from sis2fhir.policy import PRESETS

        if policy not in PRESETS:
            raise fail(f"--policy must be one of {', '.join(sorted(PRESETS))}, not {policy!r}", Exit.USAGE)
    if state_id_source:
        try:
            parse_state_id_source(state_id_source)
        except ValueError as e:  # an option's value it cannot take: usage
            raise fail(f"--state-id: {e}", Exit.USAGE) from None
    try:
        settings = load_settings(config, store_url=store_url(store))
        if policy:
            settings.policy.preset = policy
            settings.policy.resolve()
        if state_id_source:
            settings.district.state_id_source = state_id_source
    except (ConfigError, ValueError) as e:
        raise fail(str(e)) from None
    StoreContext.shown = shown_store_url(settings.store_url)
    return settings


def as_of_date(as_of: str) -> date:
    try:
        return date.fromisoformat(as_of.strip()) if as_of else date.today()
    except ValueError:
        raise fail(f"--as-of must be a date like 2026-03-31, not {as_of!r}", Exit.USAGE) from None


def accept_reason(accept_change: str | None) -> str:
    if accept_change is None:
        return ""
    if not accept_change.strip():
        raise fail('--accept-change needs a reason, e.g. --accept-change "school 12 closed in March"', Exit.USAGE)
    return accept_change.strip()


def check_report_path(path: Path) -> None:
    """The row report must be writable before the run starts: a run whose report cannot be saved is not done."""
    if path.is_dir():
        raise fail(f"--report {path} is a folder; give a file name such as {path / 'rows-report.csv'}", Exit.USAGE)
    if path.exists():
        if not os.access(path, os.W_OK):
            raise fail(f"--report {path} is not writable for this user")
        return
    problem = folder_problem(path.absolute().parent)
    if problem:
        raise fail(f"--report {path} cannot be written: {problem}")
    if path.parent.exists():  # a file of our own beside it, made and removed (a read-only mount passes os.access
        try:  # as root); not the report itself, which a second command starting at the same moment may be writing
            handle, probe = tempfile.mkstemp(prefix=".sis2fhir-probe-", dir=path.absolute().parent)
            os.close(handle)
            os.unlink(probe)
        except OSError as e:
            raise fail(f"--report {path} cannot be written: {e.strerror}") from None


ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML configuration file.")]
PolicyOpt = Annotated[str | None, typer.Option("--policy", help="Chronic-absence policy preset: essa | crdc.")]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="The state store the sync used: a URL, a SQLite file, or the --out folder of a one-off sync "
        "(default: the configuration's store_url, SIS2FHIR_STORE_URL, else sqlite:///sis2fhir-state.sqlite). "
        "A store that does not exist is refused, never created.",
    ),
]
AcceptOpt = Annotated[
    str | None,
    typer.Option(
        "--accept-change",
        metavar="REASON",
        help="Let an implausible change in the attendance through (a drop against the last accepted run, "
        "corrections beyond the allowed share, a school without rows), saying why; recorded with the run. "
        "Never overrides unusable attendance.",
    ),
]
