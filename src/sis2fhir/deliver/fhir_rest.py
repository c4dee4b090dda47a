"""FHIR REST destination: link each student's Patient, send transaction Bundles of conditional updates."""

from __future__ import annotations

import asyncio
import copy
import email.utils
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from sis2fhir.deliver.base import DeliveryItem, DeliveryResult, Destination, Outcome
from sis2fhir.deliver.smart_auth import SmartAuthError
from sis2fhir.link import LinkError, LinkStatus, PatientLinker

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
PATIENT_REFERENCE_FIELDS = ("subject", "patient")  # Observation.subject, Consent.patient
# Where servers name the failing entry of a refused transaction: HAPI puts "Bundle.entry[3]" in
# issue.location/expression; others say "Entry 3" in diagnostics. sekmet-fhir 0.1.1 names neither.
ENTRY_IN_PATH = re.compile(r"Bundle\.entry\[(\d+)\]")
ENTRY_IN_TEXT = re.compile(r"\b[Ee]ntry\s*(?:#|\[)?\s*(\d+)\b")


Emit = Callable[[list[DeliveryResult]], None]  # hands the results of one transaction on, as soon as they are known


class RecipientError(RuntimeError):
    """The recipient's FHIR server cannot take deliveries now; the message says why."""


class RecipientMisconfigured(RecipientError):
    """The server answers, but not as a FHIR R4 (4.0.1) server with transactions: fix config or server."""


class RecipientUnreachable(RecipientError):
    """The server's /metadata could not be read (network, timeout, 5xx)."""


@dataclass(slots=True)
class _Prepared:
    """An item ready to send: its bundle entries, subject references rewritten to the linked Patient."""

    item: DeliveryItem
    entries: list[dict[str, Any]]


class _Refused(Exception):
    def __init__(self, outcome: Outcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


@dataclass(slots=True)
class _Session:
    """What belongs to one event loop: the connection pool and the concurrency bound."""

    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient
    semaphore: asyncio.Semaphore


class FhirRestDestination(Destination):
    """Sends items to a FHIR R4 server as transaction Bundles of conditional updates on business identifiers.

    Re-sending an item never duplicates anything: each resource is `PUT {type}?identifier=system|value`. The
    results of each Bundle are yielded when its transaction-response arrives (several Bundles are in flight).
    """

    def __init__(
        self,
        base_url: str,
        auth: httpx.Auth,
        *,
        linker: PatientLinker,
        bundle_size: int = 50,
        concurrency: int = 4,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if bundle_size < 1 or concurrency < 1:
            raise ValueError("bundle_size and concurrency must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.name = f"fhir:{self.base_url}"
        self.auth = auth
        self.linker = linker
        self.bundle_size = bundle_size
        self.concurrency = concurrency
        self.timeout = timeout
        self._transport = transport
        self._session: _Session | None = None
        self.capabilities: dict[str, Any] | None = None

    # -- connection handling --

    def _current(self) -> _Session:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.loop is not loop:
            client = httpx.AsyncClient(
                base_url=self.base_url + "/",
                auth=self.auth,
                timeout=self.timeout,
                headers={"Accept": FHIR_JSON},
                limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
                transport=self._transport,
            )
            self._session = _Session(loop, client, asyncio.Semaphore(self.concurrency))
        self.linker.bind(self._session.client)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            if session.loop is asyncio.get_running_loop():
                await session.client.aclose()

    # -- the up-front check --

    async def check(self) -> dict[str, Any]:
        """Read /metadata; raise RecipientMisconfigured unless FHIR 4.0.x with transaction, else return it."""
        if self.capabilities is not None:
            return self.capabilities
        client = self._current().client
        url = f"{self.base_url}/metadata"
        try:
            response = await client.get(url)
        except SmartAuthError as e:
            raise RecipientMisconfigured(f"{url}: {e}") from None
        except httpx.TimeoutException:
            raise RecipientUnreachable(f"{url} did not answer within {self.timeout:g} s") from None
        except httpx.TransportError as e:
            raise RecipientUnreachable(f"{url} could not be reached ({type(e).__name__})") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise RecipientUnreachable(f"{url} answered {response.status_code}")
        body = _json(response)
        if response.status_code != 200 or not isinstance(body, dict):
            raise RecipientMisconfigured(
                f"{url} answered {response.status_code}, not a CapabilityStatement: is this a FHIR base URL?"
            )
        if body.get("resourceType") != "CapabilityStatement":
            raise RecipientMisconfigured(f"{url} answered a {body.get('resourceType')}, not a CapabilityStatement")
        version = str(body.get("fhirVersion", ""))
        if not version.startswith("4.0."):
            raise RecipientMisconfigured(f"the server speaks FHIR {version or '(unstated)'}, sis2fhir sends R4 4.0.1")
        interactions = {
            i.get("code")
            for rest in body.get("rest") or []
            if rest.get("mode", "server") == "server"
            for i in rest.get("interaction") or []
        }
        if "transaction" not in interactions:
            raise RecipientMisconfigured("the server's CapabilityStatement does not list the transaction interaction")
        self.capabilities = body
        self.linker.use_capabilities(body)
        return body

    # -- delivery --

    async def deliver(self, items: Sequence[DeliveryItem]) -> AsyncIterator[list[DeliveryResult]]:
        if not items:
            return
        session = self._current()
        try:
            await self.check()
        except RecipientError as e:
            log.warning("%s: not delivering %d items: %s", self.name, len(items), e)
            yield [DeliveryResult(item.key, Outcome.RETRY, str(e)) for item in items]
            return
        await self._prefetch_links(items)
        early: list[DeliveryResult] = []
        ready: list[_Prepared] = []
        for prepared in await asyncio.gather(*(self._prepare(item, session) for item in items)):
            if isinstance(prepared, DeliveryResult):
                early.append(prepared)
            else:
                ready.append(prepared)
        if early:
            yield early
        queue: asyncio.Queue[list[DeliveryResult]] = asyncio.Queue()
        answered: set[str] = set()

        def emit(results: list[DeliveryResult]) -> None:
            answered.update(r.key for r in results)
            queue.put_nowait(results)

        async def send(batch: list[_Prepared]) -> None:
            try:
                await self._send(batch, session, emit)
            except Exception as e:  # a fault of ours: what was posted may have been stored
                log.exception("%s: unexpected error while sending a transaction", self.name)
                detail = f"unexpected error: {type(e).__name__}"
                emit(
                    [DeliveryResult(p.item.key, Outcome.IN_DOUBT, detail) for p in batch if p.item.key not in answered]
                )

        tasks = [asyncio.create_task(send(b)) for b in self._pack(ready)]
        try:
            waiting = len(ready)
            while waiting > 0:
                results = await queue.get()
                waiting -= len(results)
                yield results
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def find_held(self, items: Sequence[DeliveryItem]) -> dict[str, list[str]]:
        """Search the server for each resource by its business identifier: an item is held when every one of its
        resources is there, once, with the content we sent (the server's id, meta and the linked Patient reference
        aside). A server that cannot be asked now, or content that differs, leaves the item in doubt."""
        if not items:
            return {}
        session = self._current()
        try:
            await self.check()
        except RecipientError:
            return {}
        held = await asyncio.gather(*(self._held(item, session) for item in items))
        return {item.key: refs for item, refs in zip(items, held, strict=True) if refs}

    async def _held(self, item: DeliveryItem, session: _Session) -> list[str]:
        refs = []
        for resource in item.resources:
            try:
                url = _conditional_update(copy.deepcopy(resource))["request"]["url"]
                async with session.semaphore:
                    response = await session.client.get(f"{self.base_url}/{url}")
            except (_Refused, httpx.HTTPError, SmartAuthError):
                return []
            body = _json(response)
            if response.status_code != 200 or not isinstance(body, dict):
                return []
            found = [e.get("resource") or {} for e in body.get("entry") or [] if isinstance(e, dict)]
            found = [r for r in found if r.get("resourceType") == resource.get("resourceType")]
            if len(found) != 1 or not _same_content(resource, found[0]):
                return []
            version = (found[0].get("meta") or {}).get("versionId")
            refs.append(f"{found[0]['resourceType']}/{found[0]['id']}" + (f"/_history/{version}" if version else ""))
        return refs

    async def _prefetch_links(self, items: Sequence[DeliveryItem]) -> None:
        by_system: dict[str, set[str]] = {}
        for item in items:
            for resource in item.resources:
                for name in PATIENT_REFERENCE_FIELDS:
                    reference = resource.get(name)
                    if isinstance(reference, dict) and "reference" not in reference:
                        ident = reference.get("identifier") or {}
                        if ident.get("system") and ident.get("value"):
                            by_system.setdefault(str(ident["system"]), set()).add(str(ident["value"]))
        for system, values in by_system.items():
            try:
                await self.linker.prefetch(values, system, concurrency=self.concurrency)
            except (LinkError, SmartAuthError) as e:
                log.info("%s: batched Patient search failed (%s); linking one by one", self.name, e)

    async def _prepare(self, item: DeliveryItem, session: _Session) -> _Prepared | DeliveryResult:
        if not item.resources:
            return DeliveryResult(item.key, Outcome.DEAD, "the item carries no FHIR resources")
        try:
            entries = []
            for resource in item.resources:
                sent = copy.deepcopy(resource)
                for name in PATIENT_REFERENCE_FIELDS:
                    await self._link_reference(sent, name, session)
                entries.append(_conditional_update(sent))
        except _Refused as e:
            return DeliveryResult(item.key, e.outcome, e.detail)
        except LinkError as e:
            return DeliveryResult(item.key, Outcome.RETRY, f"patient linking: {e}")
        except SmartAuthError as e:
            return DeliveryResult(item.key, Outcome.RETRY, str(e))
        return _Prepared(item, entries)

    async def _link_reference(self, resource: dict[str, Any], name: str, session: _Session) -> None:
        reference = resource.get(name)
        if not isinstance(reference, dict) or reference.get("type", "Patient") != "Patient":
            return
        if "reference" in reference:
            return
        ident = reference.get("identifier") or {}
        system, value = ident.get("system"), ident.get("value")
        if not system or not value:
            raise _Refused(Outcome.DEAD, f"{resource.get('resourceType')}.{name} has no reference and no identifier")
        async with session.semaphore:
            link = await self.linker.link(str(value), str(system))
        if link.status is not LinkStatus.LINKED:
            raise _Refused(Outcome.PENDING, f"no certain Patient at the recipient: {link.reason}")
        resource[name] = {**reference, "reference": link.reference}

    def _pack(self, ready: list[_Prepared]) -> list[list[_Prepared]]:
        """Whole items into bundles of at most bundle_size resources (a bigger item goes alone)."""
        bundles: list[list[_Prepared]] = []
        current: list[_Prepared] = []
        size = 0
        for prepared in ready:
            n = len(prepared.entries)
            if current and size + n > self.bundle_size:
                bundles.append(current)
                current, size = [], 0
            current.append(prepared)
            size += n
        if current:
            bundles.append(current)
        return bundles

    async def _send(self, batch: list[_Prepared], session: _Session, emit: Emit, reread: bool = False) -> None:
        entries = [entry for prepared in batch for entry in prepared.entries]
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}

        def every(outcome: Outcome, detail: str, oo: dict[str, Any] | None = None, after: float | None = None) -> None:
            emit([DeliveryResult(p.item.key, outcome, detail, retry_after=after, operation_outcome=oo) for p in batch])

        started = time.monotonic()
        try:
            async with session.semaphore:
                response = await session.client.post(
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
        body = _json(response)
        oo = body if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome" else None
        said = f"{status}{': ' + _outcome_text(oo) if oo else ''}"
        log.info(
            "%s: transaction of %d resources for %d items: %d in %.3f s",
            self.name,
            len(entries),
            len(batch),
            status,
            time.monotonic() - started,
        )
        if 200 <= status < 300:
            return emit(self._delivered(batch, body, status))
        if status in (400, 422):
            return await self._refused(batch, oo, said, session, emit)
        if status in (409, 412):
            if not reread:
                note = await self._reread(entries, session)
                log.info("%s: %d on a transaction; re-read (%s), sending once more", self.name, status, note)
                return await self._send(batch, session, emit, reread=True)
            return every(Outcome.RETRY, f"version conflict, again after a re-read: {said}", oo)
        if status == 429:
            return every(Outcome.RETRY, f"rate limited: {said}", oo, _retry_after(response))
        if status == 404:
            return every(Outcome.RETRY, f"the transaction endpoint {self.base_url} was not found: {said}", oo)
        if status in (401, 403):
            return every(Outcome.RETRY, f"not authorized: {said}; check the client registration and scopes", oo)
        if status >= 500:
            return every(Outcome.RETRY, f"server error: {said}", oo, _retry_after(response))
        return every(Outcome.RETRY, f"unexpected answer: {said}", oo)

    def _delivered(self, batch: list[_Prepared], body: Any, status: int) -> list[DeliveryResult]:
        sent = sum(len(p.entries) for p in batch)
        answers = body.get("entry") if isinstance(body, dict) and body.get("resourceType") == "Bundle" else None
        if not isinstance(answers, list) or len(answers) != sent:
            detail = (
                f"the server answered {status} but no readable transaction-response with {sent} entries; "
                "resending is safe (conditional updates)"
            )
            return [DeliveryResult(p.item.key, Outcome.IN_DOUBT, detail) for p in batch]
        results = []
        offset = 0
        for prepared in batch:
            mine = answers[offset : offset + len(prepared.entries)]
            offset += len(prepared.entries)
            disclosed = []
            for entry, answer in zip(prepared.entries, mine, strict=True):
                version = _versioned_reference(entry["resource"]["resourceType"], answer)
                if version:
                    disclosed.append(version)
            if len(disclosed) == len(prepared.entries):
                results.append(DeliveryResult(prepared.item.key, Outcome.DELIVERED, f"{status}", disclosed))
            else:
                detail = f"the server answered {status} but not every entry says where it stored the resource"
                results.append(DeliveryResult(prepared.item.key, Outcome.IN_DOUBT, detail, disclosed))
        return results

    async def _refused(
        self, batch: list[_Prepared], oo: dict[str, Any] | None, said: str, session: _Session, emit: Emit
    ) -> None:
        culprit = _failing_entry(oo)
        if culprit is not None:
            offset = 0
            for i, prepared in enumerate(batch):
                if offset <= culprit < offset + len(prepared.entries):
                    emit([DeliveryResult(prepared.item.key, Outcome.DEAD, f"refused: {said}", operation_outcome=oo)])
                    rest = batch[:i] + batch[i + 1 :]
                    if rest:
                        await self._send(rest, session, emit)
                    return
                offset += len(prepared.entries)
        if len(batch) == 1:
            emit([DeliveryResult(batch[0].item.key, Outcome.DEAD, f"refused: {said}", operation_outcome=oo)])
            return
        # The OperationOutcome does not say which entry: halve the bundle until the refused items stand alone.
        middle = len(batch) // 2
        await asyncio.gather(self._send(batch[:middle], session, emit), self._send(batch[middle:], session, emit))

    async def _reread(self, entries: list[dict[str, Any]], session: _Session) -> str:
        """Read what the server now holds under each conditional URL; a summary for the log (no PHI)."""
        counts = []
        for entry in entries:
            try:
                response = await session.client.get(
                    f"{self.base_url}/{entry['request']['url']}", params={"_summary": "count"}
                )
                total = (_json(response) or {}).get("total") if response.status_code == 200 else None
            except (httpx.HTTPError, SmartAuthError):
                total = None
            counts.append(total)
        several = sum(1 for c in counts if isinstance(c, int) and c > 1)
        return f"{several} of {len(entries)} identifiers match more than one resource"


def _conditional_update(resource: dict[str, Any]) -> dict[str, Any]:
    rtype = resource.get("resourceType")
    identifiers = [i for i in resource.get("identifier") or [] if i.get("system") and i.get("value")]
    if not rtype or not identifiers:
        raise _Refused(Outcome.DEAD, f"a {rtype or 'resource'} without identifier system and value cannot be sent")
    ident = identifiers[0]
    # The server picks the id: a conditional update whose body id differs from the match is a 400.
    resource.pop("id", None)
    if isinstance(resource.get("meta"), dict):
        resource["meta"].pop("versionId", None)
    url = f"{rtype}?identifier={quote(ident['system'], safe=':/')}|{quote(ident['value'], safe='')}"
    return {"resource": resource, "request": {"method": "PUT", "url": url}}


def _same_content(sent: Mapping[str, Any], stored: Mapping[str, Any]) -> bool:
    """Whether the server holds what we sent: every element we sent, as we sent it. The server assigns id and meta;
    the Patient reference is the one linking gave, so only its identifier is compared."""
    for name, value in sent.items():
        if name in ("id", "meta", "text"):
            continue
        if name in PATIENT_REFERENCE_FIELDS and isinstance(value, dict) and "identifier" in value:
            held = stored.get(name)
            if not isinstance(held, dict) or held.get("identifier", value["identifier"]) != value["identifier"]:
                return False
            continue
        if stored.get(name) != value:
            return False
    return True


def _versioned_reference(resource_type: str, answer: Mapping[str, Any]) -> str:
    response = answer.get("response") or {}
    if not str(response.get("status", "")).startswith("2"):
        return ""
    location = str(response.get("location", ""))
    parts = location.split("/")
    if resource_type in parts:
        i = parts.index(resource_type)
        tail = parts[i : i + 4]
        if len(tail) == 4 and tail[2] == "_history":
            return "/".join(tail)
        if len(tail) >= 2:
            version = _etag_version(str(response.get("etag", "")))
            return f"{resource_type}/{tail[1]}/_history/{version}" if version else f"{resource_type}/{tail[1]}"
    resource = answer.get("resource") or {}
    if resource.get("id"):
        version = str((resource.get("meta") or {}).get("versionId") or _etag_version(str(response.get("etag", ""))))
        return f"{resource_type}/{resource['id']}" + (f"/_history/{version}" if version else "")
    return ""


def _etag_version(etag: str) -> str:
    return etag.removeprefix("W/").strip('"')


def _failing_entry(oo: Mapping[str, Any] | None) -> int | None:
    if not oo:
        return None
    for issue in oo.get("issue") or []:
        if issue.get("severity") not in ("error", "fatal"):
            continue
        for path in [*(issue.get("expression") or []), *(issue.get("location") or [])]:
            found = ENTRY_IN_PATH.search(str(path))
            if found:
                return int(found.group(1))
        found = ENTRY_IN_TEXT.search(str(issue.get("diagnostics", "")))
        if found:
            return int(found.group(1))
    return None


def _outcome_text(oo: Mapping[str, Any]) -> str:
    texts = []
    for issue in oo.get("issue") or []:
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or issue.get("code", "")
        texts.append(f"{issue.get('severity', 'error')}: {text}")
    return "; ".join(texts)[:500]


def _retry_after(response: httpx.Response) -> float | None:
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


def _json(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
