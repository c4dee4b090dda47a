"""/healthz (the process is up) and /readyz (the state store answers and its tables are this release's): for a
load balancer or an orchestrator, no token, no data."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import JSONResponse

from sis2fhir.store.migrate import current_revision, head

router = APIRouter()


class Health(BaseModel):
    status: str  # "up" | "ready" | "not-ready"
    detail: str = ""


def store_problem(engine: Engine) -> str:
    """Why the store cannot serve now ("" when it can): it does not answer, or its schema is not at head."""
    try:
        with engine.connect() as conn:
            revision = current_revision(conn)
    except SQLAlchemyError as e:  # the first line of the database's own message (no SQL, no parameters)
        first = str(getattr(e, "orig", None) or type(e).__name__).strip().splitlines()
        return f"the state store does not answer: {first[0][:200] if first else type(e).__name__}"
    if revision != head():
        return (
            f"the state store's tables are at {revision or 'no revision'}, this release needs {head()}: "
            "run `sis2fhir sync` once (it upgrades the store)"
        )
    return ""


@router.get("/healthz", response_model=Health, summary="The process is up")
def healthz() -> Health:
    return Health(status="up")


@router.get(
    "/readyz",
    response_model=Health,
    summary="The state store answers and its schema is current",
    responses={503: {"model": Health, "description": "not ready: the store does not answer or is not current"}},
)
def readyz(request: Request) -> Any:
    problem = store_problem(request.app.state.served.engine)
    if problem:
        return JSONResponse({"status": "not-ready", "detail": problem}, status_code=503)
    return Health(status="ready")
