"""What a failed command tells the operator: one clear message and a documented exit code, never a traceback.

Every known fault has its own message where it is found (the export, the configuration, a recipient). This module
is the net under them: errors of the state store become a message naming the store (password masked) without the
SQL or its parameters (they can hold student identifiers), and anything unexpected becomes one line naming the
exception type and where it was raised, exit 70, with the traceback only when SIS2FHIR_DEBUG=1.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from sis2fhir.errors import ConfigError, Exit, ExportError, StoreMissing

UNUSABLE = Exit.UNUSABLE  # the export, the configuration, the store or a recipient cannot be used
INTERNAL_ERROR = Exit.INTERNAL  # EX_SOFTWARE: a fault in sis2fhir itself
DEBUG_VARIABLE = "SIS2FHIR_DEBUG"

err = Console(stderr=True, highlight=False, soft_wrap=True)  # a message stays one line in logs
_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # sis2fhir/


class StoreContext:
    """The store the running command uses, shown in store errors (password masked)."""

    shown: str = ""


def print_error(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}")


def store_error_message(exc: BaseException) -> str:
    """What went wrong with the state store, without SQL, parameters or passwords: SQLAlchemy's own message
    (str(exc)) carries the statement and its parameters, so only the database's first line is used, and only for
    operational errors (connection, locking, files), whose text holds no row data."""
    from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

    store = StoreContext.shown or "the state store"
    if isinstance(exc, DBAPIError):
        orig = exc.orig
        first = str(orig).strip().splitlines()[0][:200] if str(orig).strip() else ""
        advice = _advice(first)
        if isinstance(exc, OperationalError) or (first and advice):
            return f"the state store {store} cannot be used: {first}{advice}"
        code = getattr(orig, "sqlstate", None) or getattr(orig, "sqlite_errorname", None) or ""
        return (
            f"the state store {store} refused an operation ({type(orig).__name__}{' ' + code if code else ''}). "
            "Check that it is a sis2fhir store of this version; the details are withheld (they may hold student data)."
        )
    if isinstance(exc, SQLAlchemyError):
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        return f"the state store {store} cannot be used: {first}"
    return f"the state store {store} cannot be used ({type(exc).__name__})"


def _advice(first: str) -> str:
    low = first.lower()
    for needle, advice in (
        ("database is locked", ": another process is writing it; wait for it to finish and run again"),
        ("readonly database", ": the file or its folder is read-only for this user; fix the permissions"),
        ("file is not a database", ": that file is not a SQLite database; point --store at the sis2fhir state"),
        ("malformed", ": the file is damaged; restore it from a backup"),
        ("unable to open database file", ": its folder does not exist or is not writable"),
        ("disk i/o error", ": check the disk"),
        (
            "database or disk is full",
            ": the disk is full; nothing more was recorded as delivered. Free some space and run the command again",
        ),
        ("connection", ": check the host, port, user and that the server runs"),
        ("password authentication failed", ": check the user and password (SIS2FHIR_STORE_URL)"),
    ):
        if needle in low:
            return advice
    return ""


def where_raised(exc: BaseException) -> str:
    """`module:line` of the innermost frame in sis2fhir's own code (else the innermost frame)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if Path(f.filename).resolve().is_relative_to(_PACKAGE_DIR)]
    if not (ours or frames):
        return "unknown:0"
    frame = (ours or frames)[-1]
    path = Path(frame.filename).resolve()
    if path.is_relative_to(_PACKAGE_DIR):
        module = ".".join(("sis2fhir", *path.relative_to(_PACKAGE_DIR).with_suffix("").parts))
    else:
        module = path.stem
    return f"{module.removesuffix('.__init__')}:{frame.lineno}"


def handle(exc: Exception) -> NoReturn:
    """The message and exit code for an exception no command turned into one."""
    from sqlalchemy.exc import SQLAlchemyError

    debug = os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, ExportError | ConfigError):
        print_error(str(exc))
        sys.exit(int(UNUSABLE))
    if isinstance(exc, StoreMissing):
        print_error(
            f"no sis2fhir state store at {StoreContext.shown}: {exc}. These commands read the store a sync wrote; "
            "point them at it with --store URL (a sync with --out DIR keeps it in DIR/state.sqlite), --config, or "
            "SIS2FHIR_STORE_URL. Nothing was created."
        )
        sys.exit(int(UNUSABLE))
    if isinstance(exc, SQLAlchemyError):
        print_error(store_error_message(exc))
        sys.exit(int(UNUSABLE))
    if isinstance(exc, ImportError) and "psycopg" in str(exc):
        print_error("the PostgreSQL driver is not installed: pip install 'sis2fhir[postgres]' (psycopg 3)")
        sys.exit(int(UNUSABLE))
    if isinstance(exc, OSError) and exc.strerror:
        target = f" {exc.filename}" if exc.filename else ""
        print_error(f"cannot use{target}: {exc.strerror}. Nothing more was done.")
        sys.exit(int(UNUSABLE))
    print_error(
        f"internal error: {type(exc).__name__} in {where_raised(exc)} (no input data in this message); "
        f"please report it" + ("" if debug else f" (set {DEBUG_VARIABLE}=1 to see the traceback)")
    )
    sys.exit(int(INTERNAL_ERROR))


class GuardedGroup(TyperGroup):
    """The command line's top group: whatever a command raises ends as a message and an exit code."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().main(*args, **kwargs)
        except Exception as exc:  # SystemExit and KeyboardInterrupt are not Exceptions: they pass
            handle(exc)
