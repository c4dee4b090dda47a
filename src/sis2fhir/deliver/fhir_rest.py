"""FHIR REST destination: link each student's Patient, send transaction Bundles of conditional updates.

The Bundles are built and read in fhir_bundle.py, posted and their answers judged in fhir_http.py; the server is
checked up front in fhir_capability.py."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import httpx

from sis2fhir.deliver.base import (
    DeliveryItem,
    DeliveryResult,
    Destination,
    Outcome,
    RecipientError,
    RecipientMisconfigured,
    RecipientUnreachable,
)
from sis2fhir.deliver.fhir_bundle import (
    PATIENT_REFERENCE_FIELDS,
    Prepared,
    Refused,
    conditional_update,
    json_body,
    pack,
    rounds,
    same_content,
)
from sis2fhir.deliver.fhir_capability import read_capabilities
from sis2fhir.deliver.fhir_http import FHIR_JSON, Session, TransactionSender
from sis2fhir.deliver.smart_auth import SmartAuthError
from sis2fhir.link import LinkError, LinkStatus, PatientLinker
from sis2fhir.records import Student

__all__ = ["FhirRestDestination", "RecipientError", "RecipientMisconfigured", "RecipientUnreachable"]

log = logging.getLogger(__name__)


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
        transport: httpx.AsyncBaseTransport | None = None,  # tests: an httpx.MockTransport
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
        self._session: Session | None = None
        self.capabilities: dict[str, Any] | None = None

    # -- connection handling --

    def _current(self) -> Session:
        """The session of the running event loop, made at first use and dropped by `close`. A command runs the
        destination in one loop (its own); only a caller that switches loops (tests) gets a new session."""
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
            self._session = Session(loop, client, asyncio.Semaphore(self.concurrency))
        self.linker.bind(self._session.client)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            if session.loop is asyncio.get_running_loop():
                await session.client.aclose()

    # -- the up-front check --

    async def check(self) -> None:
        """Read /metadata once: RecipientMisconfigured unless FHIR 4.0.x with transaction (see fhir_capability)."""
        if self.capabilities is None:
            body = await read_capabilities(self._current().client, self.base_url, self.timeout)
            self.capabilities = body
            self.linker.use_capabilities(body)

    def remember_students(self, students: Iterable[Student]) -> None:
        self.linker.remember(students)

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
        ready: list[Prepared] = []
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

        sender = TransactionSender(self.name, self.base_url, self.timeout, session)

        async def send(batch: list[Prepared]) -> None:
            try:
                await sender.send(batch, emit)
            except Exception as e:  # a fault of ours: what was posted may have been stored
                log.exception("%s: unexpected error while sending a transaction", self.name)
                detail = f"unexpected error: {type(e).__name__}"
                emit(
                    [DeliveryResult(p.item.key, Outcome.IN_DOUBT, detail) for p in batch if p.item.key not in answered]
                )

        async def send_rounds() -> None:
            for items_of_round in rounds(ready):  # no resource twice at once (fhir_bundle.rounds)
                await asyncio.gather(*(send(b) for b in pack(items_of_round, self.bundle_size)))

        tasks = [asyncio.create_task(send_rounds())]
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
        aside), and was never received when none of them is there at all (a transaction applies whole or not at
        all). A server that cannot be asked now, or other content under those identifiers (an earlier delivery,
        possibly overwritten by this one since), leaves the item in doubt."""
        if not items:
            return {}
        session = self._current()
        try:
            await self.check()
        except RecipientError:
            return {}
        held = await asyncio.gather(*(self._held(item, session) for item in items))
        return {item.key: refs for item, refs in zip(items, held, strict=True) if refs is not None}

    async def _held(self, item: DeliveryItem, session: Session) -> list[str] | None:
        """References when held as sent; [] when none of the resources is there; None when it cannot be told."""
        refs = []
        absent = 0
        for resource in item.resources:
            try:
                url = conditional_update(copy.deepcopy(resource))["request"]["url"]
                async with session.semaphore:
                    response = await session.client.get(f"{self.base_url}/{url}")
            except (Refused, httpx.HTTPError, SmartAuthError):
                return None
            body = json_body(response)
            if response.status_code != 200 or not isinstance(body, dict):
                return None
            found = [e.get("resource") or {} for e in body.get("entry") or [] if isinstance(e, dict)]
            found = [r for r in found if r.get("resourceType") == resource.get("resourceType")]
            if not found:
                absent += 1
                continue
            if len(found) != 1 or not same_content(resource, found[0]):
                return None
            version = (found[0].get("meta") or {}).get("versionId")
            refs.append(f"{found[0]['resourceType']}/{found[0]['id']}" + (f"/_history/{version}" if version else ""))
        if absent == len(item.resources):
            return []  # not one of them: the transaction never applied
        return refs if not absent else None

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

    async def _prepare(self, item: DeliveryItem, session: Session) -> Prepared | DeliveryResult:
        if not item.resources:
            return DeliveryResult(item.key, Outcome.DEAD, "the item carries no FHIR resources")
        try:
            entries = []
            for resource in item.resources:
                sent = copy.deepcopy(resource)
                for name in PATIENT_REFERENCE_FIELDS:
                    await self._link_reference(sent, name, session)
                entries.append(conditional_update(sent))
        except Refused as e:
            return DeliveryResult(item.key, e.outcome, e.detail)
        except LinkError as e:
            return DeliveryResult(item.key, Outcome.RETRY, f"patient linking: {e}")
        except SmartAuthError as e:
            return DeliveryResult(item.key, Outcome.RETRY, str(e))
        return Prepared(item, entries)

    async def _link_reference(self, resource: dict[str, Any], name: str, session: Session) -> None:
        reference = resource.get(name)
        if not isinstance(reference, dict) or reference.get("type", "Patient") != "Patient":
            return
        if "reference" in reference:
            return
        ident = reference.get("identifier") or {}
        system, value = ident.get("system"), ident.get("value")
        if not system or not value:
            raise Refused(Outcome.DEAD, f"{resource.get('resourceType')}.{name} has no reference and no identifier")
        async with session.semaphore:
            link = await self.linker.link(str(value), str(system))
        if link.status is not LinkStatus.LINKED:
            raise Refused(Outcome.PENDING, f"no certain Patient at the recipient: {link.reason}")
        resource[name] = {**reference, "reference": link.reference}
