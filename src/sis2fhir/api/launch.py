"""The chart as a SMART on FHIR app (SMART App Launch 2.x, EHR launch): `/app/launch?iss=...&launch=...` from a
configured EHR (`api.ehr_launch`), its authorization server discovered, authorize with PKCE S256, `state` and
`aud` = iss; `/app/callback` checks the state, exchanges the code with the verifier, takes `patient` from the
token response, reads that Patient from the EHR with the token, and finds the student by the state student id;
`/app/chart` shows the year (present/chart_page.py) if the EHR's organization holds the student's consent.

Sessions are kept server-side, in this process (a random id in an HttpOnly, SameSite=Lax cookie; nothing personal
in any URL); they end after `api.session_seconds`. One `serve` process per launch, then (or a sticky proxy).
Every chart shown is a disclosure: one FERPA row, channel smart-app, destination `api:<the EHR's client_id>`.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from sis2fhir.api import launch_flow as flow
from sis2fhir.api_config import EhrLaunchSettings
from sis2fhir.config import Settings
from sis2fhir.present.chart_page import CONTENT_SECURITY_POLICY, chart_page, message_page
from sis2fhir.service.chart import CHART, Student, attendance, find_student, record_shown
from sis2fhir.service.served import ServedStore

router = APIRouter(include_in_schema=False)  # described by docs/chart.md, not OpenAPI
COOKIE = "sis2fhir_chart"
MAX_SESSIONS = 10_000  # the oldest go first beyond this
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(slots=True)
class Session:
    ehr: EhrLaunchSettings
    state: str
    verifier: str
    token_url: str
    expires: float
    done: bool = False  # the callback came back (once: the state is used up)
    student: Student | None = None  # None after the callback: no consented student for that Patient


class Sessions:
    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def add(self, session: Session) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._by_id = {k: s for k, s in self._by_id.items() if s.expires > now}
            while len(self._by_id) >= MAX_SESSIONS:
                self._by_id.pop(next(iter(self._by_id)))
            self._by_id[sid] = session
        return sid

    def get(self, sid: str | None) -> Session | None:
        with self._lock:
            found = self._by_id.get(sid or "")
            return found if found is not None and found.expires > time.monotonic() else None


def _sessions(request: Request) -> Sessions:
    found = getattr(request.app.state, "launch_sessions", None)
    if found is None:
        found = request.app.state.launch_sessions = Sessions()
    return found


def _page(status: int, title: str, text: str) -> HTMLResponse:
    return HTMLResponse(message_page(title, text), status_code=status, headers=HEADERS)


def _redirect_uri(settings: Settings) -> str:
    return f"{settings.api.base_url}/app/callback"


@router.get("/app/launch")
async def launch(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    iss, launch_id = request.query_params.get("iss", ""), request.query_params.get("launch", "")
    if not iss or not launch_id:
        return _page(400, "Cannot open the chart", "Open the chart from the EHR: the launch needs iss and launch.")
    ehr = settings.api.ehr(iss)
    if ehr is None:
        return _page(403, "Cannot open the chart", "This EHR is not configured to launch the chart.")
    try:
        async with httpx.AsyncClient(timeout=flow.TIMEOUT, follow_redirects=False) as client:
            endpoints = await flow.discover(client, ehr.iss)
    except flow.LaunchFailed as e:
        return _page(502, "Cannot open the chart", str(e))
    verifier, challenge = flow.pkce_pair()
    state = secrets.token_urlsafe(32)
    expires = time.monotonic() + settings.api.session_seconds
    sid = _sessions(request).add(Session(ehr, state, verifier, endpoints.token, expires))
    target = flow.authorize_url(endpoints, ehr, _redirect_uri(settings), launch_id, state, challenge)
    response = RedirectResponse(target, status_code=302, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        COOKIE,
        sid,
        max_age=settings.api.session_seconds,
        path="/app",
        secure=settings.api.base_url.startswith("https://"),
        httponly=True,
        samesite="lax",
    )
    return response


@router.get("/app/callback")
async def callback(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    session = _sessions(request).get(request.cookies.get(COOKIE))
    if session is None or session.done:
        return _page(400, "Cannot open the chart", "The launch has expired or was used: open the chart again.")
    state = request.query_params.get("state", "")
    if not secrets.compare_digest(state.encode(), session.state.encode()):
        return _page(400, "Cannot open the chart", "The authorization answer does not belong to this launch.")
    session.done = True  # the state is used up, whatever follows
    code = request.query_params.get("code", "")
    if request.query_params.get("error") or not code:
        return _page(403, "Cannot open the chart", "The EHR did not authorize the chart.")
    try:
        async with httpx.AsyncClient(timeout=flow.TIMEOUT, follow_redirects=False) as client:
            granted = await flow.exchange(
                client, session.token_url, session.ehr, code, _redirect_uri(settings), session.verifier
            )
            patient = await flow.read_patient(client, session.ehr.iss, granted)
    except flow.LaunchFailed as e:
        return _page(502, "Cannot open the chart", str(e))
    served: ServedStore = request.app.state.served
    session.student = await run_in_threadpool(
        find_student, served, session.ehr.recipient, patient, settings.district.student_id_system
    )
    return RedirectResponse("/app/chart", status_code=303, headers={"Cache-Control": "no-store"})


@router.get("/app/chart")
async def chart(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    session = _sessions(request).get(request.cookies.get(COOKIE))
    if session is None or not session.done:
        return _page(401, "Cannot open the chart", "Open the chart from the EHR (the session has ended).")
    nothing = "No school attendance is shared with your organization for this patient."
    student = session.student
    if student is None:
        return _page(200, "School attendance", nothing)
    served: ServedStore = request.app.state.served
    ehr = session.ehr

    def gather() -> str | None:
        found = attendance(served, settings, ehr.recipient, student)
        if not found.charts:
            return None
        record_shown(served, ehr.recipient, ehr.client_id, found, "app/chart", CHART)
        return chart_page(found.charts)

    page = await run_in_threadpool(gather)
    if page is None:
        return _page(200, "School attendance", nothing)
    return HTMLResponse(page, headers=HEADERS)
