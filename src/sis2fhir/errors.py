"""What can go wrong, as the project names it: the exit codes of the command line and the exception types that
lead to them. Layer 0: imports nothing from sis2fhir, so every layer can raise these.

Each exception says in its message what was found and what to do; `exit_code` is the code a command ends with
when the exception reaches it (the command line maps it; a server maps it to its own answer).
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """Exit codes (documented in the README)."""

    OK = 0  # completed: every row used, everything delivered
    UNUSABLE = 1  # the export or the configuration cannot be used; nothing was sent
    USAGE = 2  # command-line usage error
    ROWS_REJECTED = 3  # completed, but some input rows were rejected or resources quarantined (see the row report)
    NOT_ALL_DELIVERED = 4  # completed, but some deliveries wait for a retry, a patient match, or are dead
    STORE_BUSY = 5  # another sis2fhir command is writing to the same state store (sis2fhir.store.lock)
    INTERNAL = 70  # EX_SOFTWARE: a fault in sis2fhir itself (one line, no input data; SIS2FHIR_DEBUG=1: traceback),
    # or a worker process killed mid-run (WorkerLost)


class Sis2fhirError(Exception):
    """A fault the operator can fix; the message says what was found and what to do."""

    exit_code: Exit = Exit.UNUSABLE


class UsageError(Sis2fhirError):
    """A request the command cannot take as given (an option's value, a key that names nothing)."""

    exit_code = Exit.USAGE


class Unusable(Sis2fhirError):
    """Something the command needs cannot be used (a folder, a file, a recipient); nothing was sent."""


class ExportError(Sis2fhirError):
    """The export as a whole cannot be used; the message says what was found and what to do."""


class ConfigError(Sis2fhirError):
    """The configuration cannot be used; the message says which setting and what to do."""


class StoreMissing(Sis2fhirError):
    """The operator commands were pointed at a store that a sync never wrote; the message says which one."""


class StoreBusy(Sis2fhirError):
    """Another sis2fhir command holds the store's writer lock and did not let go in time."""

    exit_code = Exit.STORE_BUSY


class StoreLockError(Sis2fhirError):
    """The writer lock cannot be taken at all (a database this module cannot lock, a lock file we cannot open)."""


class DestinationUnusable(Sis2fhirError):
    """The destination can take nothing now (a full disk under a folder), and nothing of the batch reached it: the
    items stay queued, certainly not delivered, and the command stops with the message."""


class WorkerLost(Sis2fhirError):
    """A worker process ended before its part of the run was done (killed: on Linux most often by the kernel's
    out-of-memory killer); the run stops there, as a run that was killed does, and the next run goes on from the
    outbox (items in doubt are recovered)."""

    exit_code = Exit.INTERNAL

    def __init__(self, exit_code: int) -> None:
        self.worker_exit = exit_code
        how = f"was killed by signal {-exit_code}" if exit_code < 0 else f"exited with status {exit_code}"
        memory = " (SIGKILL: most often the system out of memory)" if exit_code == -9 else ""
        super().__init__(
            f"a worker process {how}{memory} before its part of the run was done; the run stopped. Nothing is lost: "
            "what was written is in the store and the next run goes on from it. Run again, with fewer --workers or "
            "more memory if the system ran out of it."
        )
