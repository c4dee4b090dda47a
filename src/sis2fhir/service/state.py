"""The state store as the operations use it: opened only when a sync wrote it, and one writer at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Engine

from sis2fhir.config import Settings
from sis2fhir.errors import StoreBusy, StoreLockError, Unusable
from sis2fhir.store import open_store
from sis2fhir.store.lock import WriterLock

LockWait = Callable[[str], None]  # told who holds the store (a command's name and pid) while this one waits


def open_existing(settings: Settings) -> Engine:
    """The store a sync wrote; StoreMissing (nothing created) when there is none."""
    return open_store(settings.store_url, existing=True)


@contextmanager
def writer_lock(settings: Settings, command: str, on_wait: LockWait | None = None) -> Iterator[None]:
    """One writer per state store, held while the block runs. StoreBusy when another command keeps it longer
    than store_lock_wait_seconds; StoreLockError when it cannot be taken at all."""
    try:
        lock = WriterLock(settings.store_url, command, settings.store_lock_wait_seconds)
        lock.acquire(on_wait=on_wait)
    except (StoreBusy, StoreLockError):
        raise
    except Exception:  # an unparsable URL
        raise Unusable("cannot read store_url: give a SQLAlchemy URL such as sqlite:///state.sqlite") from None
    try:
        yield
    finally:
        lock.release()
