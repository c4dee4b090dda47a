"""Find the recipient's Patient for a student: identifier search, then a certain-only $match; never guess."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import httpx

from sis2fhir.deliver.fhir_search import identifier_token
from sis2fhir.map.patient import demographics
from sis2fhir.records import Student

log = logging.getLogger(__name__)

MATCH_GRADE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/match-grade"
FHIR_JSON = "application/fhir+json"


class LinkStatus(StrEnum):
    LINKED = "linked"
    PENDING = "pending"  # no certain Patient: the items wait, nothing is sent under a guessed identity


@dataclass(frozen=True, slots=True)
class PatientLink:
    system: str
    value: str
    status: LinkStatus
    patient_id: str = ""
    via: str = ""  # identifier | match | created
    reason: str = ""  # why PENDING, for the outbox and the operator (no PHI)

    @property
    def reference(self) -> str:
        return f"Patient/{self.patient_id}"


class LinkError(RuntimeError):
    """The server could not be asked (network, 5xx, unreadable answer): try again later; nothing is cached."""


class PatientLinker:
    """Links students to the recipient's Patients, once per student per run.

    Search `Patient?identifier=system|value`; exactly one hit links. No hit: `Patient/$match` with
    onlyCertainMatches when the server lists the operation, and only a single `certain` entry links.
    Otherwise the student stays PENDING, unless `create_patients` is set: then a Patient is created with
    If-None-Exist on the identifier.
    """

    def __init__(
        self,
        identifier_system: str,
        *,
        create_patients: bool = False,
        client: httpx.AsyncClient | None = None,
        students: Iterable[Student] = (),
    ) -> None:
        self.identifier_system = identifier_system
        self.create_patients = create_patients
        self._client = client
        self._client_given = client is not None
        self._students: dict[str, Student] = {}
        self.remember(students)
        self._links: dict[tuple[str, str], asyncio.Future[PatientLink]] = {}
        self._match_supported: bool | None = None

    def bind(self, client: httpx.AsyncClient) -> None:
        """Use this client (base URL = the FHIR base, with its auth) unless one was given at construction."""
        if not self._client_given:
            self._client = client

    def remember(self, students: Iterable[Student]) -> None:
        """Demographics for $match and for created Patients, by state id."""
        for student in students:
            if student.state_id:
                self._students[student.state_id] = student

    def use_capabilities(self, capabilities: Mapping[str, Any]) -> None:
        """Tell the linker what the server's CapabilityStatement lists (saves a /metadata read)."""
        self._match_supported = _lists_patient_match(capabilities)

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("PatientLinker has no HTTP client: pass client= or call bind()")
        return self._client

    async def link_student(self, student: Student) -> PatientLink:
        self.remember([student])
        return await self.link(student.state_id)

    async def link(self, value: str, system: str | None = None) -> PatientLink:
        """The link for the student with this identifier (default system: the configured one)."""
        key = (system or self.identifier_system, value)
        known = self._links.get(key)
        if known is None:
            known = asyncio.get_running_loop().create_future()
            self._links[key] = known
            try:
                known.set_result(await self._resolve(*key))
            except BaseException as e:
                del self._links[key]  # failures are not cached: the next item asks again
                known.set_exception(e)
                known.exception()  # retrieved here, so asyncio does not warn about it
                raise
        return await asyncio.shield(known)

    async def prefetch(
        self, values: Iterable[str], system: str | None = None, chunk: int = 50, concurrency: int = 4
    ) -> None:
        """Link many students with few searches (`identifier=s|a,s|b,...`, `concurrency` at a time); those not
        found once are left to `link`, which then looks at them one by one (several hits, $match, creation)."""
        system = system or self.identifier_system
        todo = sorted({v for v in values if v and (system, v) not in self._links})
        gate = asyncio.Semaphore(max(1, concurrency))

        async def search(part: list[str]) -> None:
            async with gate:
                query = ",".join(identifier_token(system, v) for v in part)  # "," between, escaped within
                response = await self._call("GET", "Patient", params={"identifier": query, "_count": str(2 * chunk)})
            bundle = _json(response, "Patient search")
            if response.status_code != 200 or any(link.get("relation") == "next" for link in bundle.get("link") or []):
                return  # an error or more than one page: leave these to one-by-one linking
            hits: dict[str, list[str]] = {}
            for entry in bundle.get("entry") or []:
                resource = entry.get("resource") or {}
                if resource.get("resourceType") != "Patient" or not resource.get("id"):
                    continue
                for ident in resource.get("identifier") or []:
                    if ident.get("system") == system and ident.get("value") in part:
                        hits.setdefault(ident["value"], []).append(str(resource["id"]))
            loop = asyncio.get_running_loop()
            for value, ids in hits.items():
                if len(ids) == 1 and (system, value) not in self._links:
                    done = loop.create_future()
                    done.set_result(PatientLink(system, value, LinkStatus.LINKED, ids[0], via="identifier"))
                    self._links[(system, value)] = done

        await asyncio.gather(*(search(todo[i : i + chunk]) for i in range(0, len(todo), chunk)))

    async def _resolve(self, system: str, value: str) -> PatientLink:
        if not value:
            return PatientLink(system, value, LinkStatus.PENDING, reason="the student has no identifier")
        hits = await self._search(system, value)
        if len(hits) == 1:
            return PatientLink(system, value, LinkStatus.LINKED, hits[0], via="identifier")
        if len(hits) > 1:
            return PatientLink(
                system,
                value,
                LinkStatus.PENDING,
                reason=f"{len(hits)} Patients carry the student's identifier",
            )
        reason = "no Patient with the student's identifier"
        if await self._match_available():
            matched, reason = await self._match(system, value)
            if matched:
                return PatientLink(system, value, LinkStatus.LINKED, matched, via="match")
        if self.create_patients:
            return PatientLink(system, value, LinkStatus.LINKED, await self._create(system, value), via="created")
        return PatientLink(system, value, LinkStatus.PENDING, reason=reason)

    async def _search(self, system: str, value: str) -> list[str]:
        response = await self._call("GET", "Patient", params={"identifier": identifier_token(system, value)})
        bundle = _json(response, "Patient search")
        if response.status_code != 200 or bundle.get("resourceType") != "Bundle":
            raise LinkError(f"Patient search answered {response.status_code}")
        ids = []
        for entry in bundle.get("entry") or []:
            resource = entry.get("resource") or {}
            mode = (entry.get("search") or {}).get("mode", "match")
            if resource.get("resourceType") == "Patient" and mode == "match" and resource.get("id"):
                ids.append(str(resource["id"]))
        return ids

    async def _match_available(self) -> bool:
        if self._match_supported is None:
            response = await self._call("GET", "metadata")
            if response.status_code != 200:
                raise LinkError(f"/metadata answered {response.status_code}")
            self._match_supported = _lists_patient_match(_json(response, "CapabilityStatement"))
        return self._match_supported

    async def _match(self, system: str, value: str) -> tuple[str, str]:
        """(Patient id, "") for a single certain match, else ("", why not)."""
        parameters = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "resource", "resource": self._patient(system, value)},
                {"name": "onlyCertainMatches", "valueBoolean": True},
                {"name": "count", "valueInteger": 2},  # two are enough to see "several"
            ],
        }
        response = await self._call("POST", "Patient/$match", json=parameters)
        if response.status_code >= 500:
            raise LinkError(f"Patient/$match answered {response.status_code}")
        if response.status_code != 200:
            return "", f"Patient/$match answered {response.status_code}"
        bundle = _json(response, "Patient/$match")
        matches = [
            e
            for e in bundle.get("entry") or []
            if (e.get("resource") or {}).get("resourceType") == "Patient"
            and (e.get("search") or {}).get("mode", "match") == "match"
        ]
        if not matches:
            return "", "no match"
        if len(matches) > 1:
            return "", f"{len(matches)} possible matches"
        grade = _match_grade(matches[0])
        patient_id = (matches[0].get("resource") or {}).get("id")
        if grade != "certain":
            return "", f"only a {grade or 'ungraded'} match"
        if not patient_id:
            return "", "the match has no Patient id"
        return str(patient_id), ""

    async def _create(self, system: str, value: str) -> str:
        response = await self._call(
            "POST",
            "Patient",
            json=self._patient(system, value),
            headers={
                # a query string: escaped for FHIR search, then URL-encoded (a value may hold '&' or '%')
                "If-None-Exist": f"identifier={quote(identifier_token(system, value), safe=':/|')}",
                "Prefer": "return=representation",
            },
        )
        if response.status_code not in (200, 201):
            raise LinkError(f"creating the Patient answered {response.status_code}")
        location = response.headers.get("location") or response.headers.get("content-location") or ""
        patient_id = _id_from_location(location, "Patient")
        if not patient_id:
            try:
                patient_id = str(response.json().get("id") or "")
            except ValueError:
                patient_id = ""
        if not patient_id:
            raise LinkError("the created Patient's id is neither in Location nor in the body")
        log.info("created a Patient for a student (If-None-Exist on the identifier)")
        return patient_id

    def _patient(self, system: str, value: str) -> dict[str, Any]:
        patient: dict[str, Any] = {
            "resourceType": "Patient",
            "identifier": [{"system": system, "value": value}],
        }
        student = self._students.get(value) if system == self.identifier_system else None
        if student is not None:
            patient.update(demographics(student))
        return patient

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Accept": FHIR_JSON, **kwargs.pop("headers", {})}
        try:
            return await self.client.request(method, path, headers=headers, **kwargs)
        except httpx.TimeoutException:
            raise LinkError(f"{method} {path} timed out") from None
        except httpx.TransportError as e:
            raise LinkError(f"{method} {path} failed: {type(e).__name__}") from None


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise LinkError(f"{what} answered {response.status_code} with a body that is not JSON") from None
    if not isinstance(body, dict):
        raise LinkError(f"{what} answered {response.status_code} with JSON that is not a resource")
    return body


def _lists_patient_match(capabilities: Mapping[str, Any]) -> bool:
    for rest in capabilities.get("rest") or []:
        for op in rest.get("operation") or []:
            if op.get("name", "").lstrip("$") == "match" and "Patient" in op.get("definition", "Patient"):
                return True
        for resource in rest.get("resource") or []:
            if resource.get("type") != "Patient":
                continue
            for op in resource.get("operation") or []:
                if op.get("name", "").lstrip("$") == "match":
                    return True
    return False


def _match_grade(entry: Mapping[str, Any]) -> str:
    for ext in (entry.get("search") or {}).get("extension") or []:
        if ext.get("url") == MATCH_GRADE_EXTENSION:
            return str(ext.get("valueCode", ""))
    return ""


def _id_from_location(location: str, resource_type: str) -> str:
    parts = location.split("/")
    if resource_type in parts:
        i = parts.index(resource_type)
        if i + 1 < len(parts):
            return parts[i + 1]
    return ""
