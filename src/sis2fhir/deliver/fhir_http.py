"""Sending one transaction Bundle over HTTP and what each answer means: delivered, refused for good (400/422,
halved until the refused item stands alone), several resources under one identifier (412 multiple matches: refused
for good at once), version conflict (re-read, once more), rate limited, or retried."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from sis2fhir.deliver.base import DeliveryResult, Outcome
from sis2fhir.deliver.fhir_bundle import Prepared, delivered, failing_entry, json_body, outcome_text
from sis2fhir.deliver.smart_auth import SmartAuthError

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
MATCHED_SEVERAL = re.compile(r"\bmatched ([2-9]|\d{2,}) resources\b|\bmultiple (matches|resources)\b", re.I)
Emit = Callable[[list[DeliveryResult]], None]  # hands the results of one transaction on, as soon as they are known


@dataclass(slots=True)
class Session:
    """The connection pool and the concurrency bound, made in (and bound to) the command's event loop."""

    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient
    semaphore: asyncio.Semaphore


@dataclass(slots=True)
class TransactionSender:
    """Posts transaction Bundles to one FHIR base and turns each answer into results."""

    name: str  # the destination's, for logs
    base_url: str
    timeout: float
    session: Session

    async def send(self, batch: list[Prepared], emit: Emit, reread: bool = False) -> None:
        entries = [entry for prepared in batch for entry in prepared.entries]
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}

        def every(outcome: Outcome, detail: str, oo: dict[str, Any] | None = None, after: float | None = None) -> None:
            emit([DeliveryResult(p.item.key, outcome, detail, retry_after=after, operation_outcome=oo) for p in batch])

        started = time.monotonic()
        try:
            async with self.session.semaphore:
                response = await self.session.client.post(
                    self.base_url,
                    content=orjson.dumps(bundle),
                    headers={"Content-Type": FHIR_JSON, "Prefer": "return=minimal"},
                )
        except SmartAuthError as e:
            return every(Outcome.RETRY, str(e))
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
            return every(Outcome.RETRY, f"the transaction could not be sent ({type(e).__name__})")
        except httpx.TimeoutException:
            # the Bundle went out and no answer came: the server may have committed it
            return every(Outcome.IN_DOUBT, f"the transaction timed out after {self.timeout:g} s")
        except httpx.TransportError as e:
            return every(
                Outcome.IN_DOUBT, f"the connection failed before the transaction's answer ({type(e).__name__})"
            )
        status = response.status_code
        body = json_body(response)
        oo = body if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome" else None
        said = f"{status}{': ' + outcome_text(oo) if oo else ''}"
        log.info(
            "%s: transaction of %d resources for %d items: %d in %.3f s",
            self.name,
            len(entries),
            len(batch),
            status,
            time.monotonic() - started,
        )
        if 200 <= status < 300:
            return emit(delivered(batch, body, status))
        if status in (400, 422):
            return await self._refused(batch, oo, said, emit)
        if status == 412:
            # R4 conditional update: several matches -> 412. Resending cannot help until someone removes the
            # duplicates at the server, so the items whose identifiers match more than one resource are dead
            # letters now (with the server's message), not retried for max_age_hours; the others go again.
            counts = await self._match_counts(entries)
            if any(isinstance(c, int) and c > 1 for c in counts) or multiple_matches(oo):
                return await self._ambiguous(batch, counts, oo, said, emit, reread)
        if status in (409, 412):
            if not reread:
                note = await self._reread(entries)
                log.info("%s: %d on a transaction; re-read (%s), sending once more", self.name, status, note)
                return await self.send(batch, emit, reread=True)
            return every(Outcome.RETRY, f"version conflict, again after a re-read: {said}", oo)
        if status == 429:
            return every(Outcome.RETRY, f"rate limited: {said}", oo, retry_after(response))
        if status == 404:
            return every(Outcome.RETRY, f"the transaction endpoint {self.base_url} was not found: {said}", oo)
        if status in (401, 403):
            return every(Outcome.RETRY, f"not authorized: {said}; check the client registration and scopes", oo)
        if status >= 500:
            return every(Outcome.RETRY, f"server error: {said}", oo, retry_after(response))
        return every(Outcome.RETRY, f"unexpected answer: {said}", oo)

    async def _refused(self, batch: list[Prepared], oo: dict[str, Any] | None, said: str, emit: Emit) -> None:
        culprit = failing_entry(oo)
        if culprit is not None:
            offset = 0
            for i, prepared in enumerate(batch):
                if offset <= culprit < offset + len(prepared.entries):
                    emit([DeliveryResult(prepared.item.key, Outcome.DEAD, f"refused: {said}", operation_outcome=oo)])
                    rest = batch[:i] + batch[i + 1 :]
                    if rest:
                        await self.send(rest, emit)
                    return
                offset += len(prepared.entries)
        if len(batch) == 1:
            emit([DeliveryResult(batch[0].item.key, Outcome.DEAD, f"refused: {said}", operation_outcome=oo)])
            return
        # The OperationOutcome does not say which entry: halve the bundle until the refused items stand alone.
        middle = len(batch) // 2
        await asyncio.gather(self.send(batch[:middle], emit), self.send(batch[middle:], emit))

    async def _ambiguous(
        self,
        batch: list[Prepared],
        counts: list[int | None],
        oo: dict[str, Any] | None,
        said: str,
        emit: Emit,
        reread: bool,
    ) -> None:
        """Dead letters for the items with an identifier several resources carry at the server; the rest again.
        Where the counts do not tell (the search failed), the server's OperationOutcome or halving finds them."""
        dead: list[Prepared] = []
        rest: list[Prepared] = []
        offset = 0
        for prepared in batch:
            mine = counts[offset : offset + len(prepared.entries)]
            offset += len(prepared.entries)
            several = max((c for c in mine if isinstance(c, int)), default=0)
            (dead if several > 1 else rest).append(prepared)
            if several > 1:
                emit([DeliveryResult(prepared.item.key, Outcome.DEAD,
                                     f"{several} resources at the server carry one of this item's identifiers (412 "
                                     f"multiple matches): {said}; remove the duplicates there, then "
                                     "`sis2fhir outbox replay`", operation_outcome=oo)])  # fmt: skip
        if not dead:
            return await self._refused(batch, oo, f"412 multiple matches: {said}", emit)
        if rest:
            await self.send(rest, emit, reread=reread)

    async def _match_counts(self, entries: list[dict[str, Any]]) -> list[int | None]:
        """How many resources the server holds under each entry's conditional URL (None where it cannot tell)."""
        counts: list[int | None] = []
        for entry in entries:
            try:
                # appended to the conditional URL's own query: httpx 0.28 replaces a URL's query with `params=`
                response = await self.session.client.get(f"{self.base_url}/{entry['request']['url']}&_summary=count")
                total = (json_body(response) or {}).get("total") if response.status_code == 200 else None
            except (httpx.HTTPError, SmartAuthError):
                total = None
            counts.append(total if isinstance(total, int) else None)
        return counts

    async def _reread(self, entries: list[dict[str, Any]]) -> str:
        """Read what the server now holds under each conditional URL; a summary for the log (no PHI)."""
        counts = await self._match_counts(entries)
        several = sum(1 for c in counts if isinstance(c, int) and c > 1)
        return f"{several} of {len(entries)} identifiers match more than one resource"


def multiple_matches(oo: dict[str, Any] | None) -> bool:
    """Whether an OperationOutcome says a conditional URL matched several resources: the R4 issue code
    `multiple-matches` (sekmet-fhir), or HAPI's "... matched N resources" text."""
    for issue in (oo or {}).get("issue") or []:
        if issue.get("code") == "multiple-matches":
            return True
        if MATCHED_SEVERAL.search(str(issue.get("diagnostics", ""))):
            return True
    return False


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asks us to wait (Retry-After: seconds or an HTTP date), if it says."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
