"""A small app for the SMART tests: the SMART router and a protected route per scope kind, nothing else."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI

from sis2fhir.api import smart
from sis2fhir.api.smart import ApiClient, require
from sis2fhir.config import load_settings


def create_test_app() -> FastAPI:
    settings = load_settings(Path(os.environ["SIS2FHIR_TEST_CONFIG"]))
    app = FastAPI()
    app.state.settings = settings
    app.include_router(smart.router)
    app.add_exception_handler(smart.Refused, smart.refused_response)

    @app.get("/fhir/metadata")
    async def metadata() -> dict[str, Any]:  # what the API's CapabilityStatement carries of SMART
        return {
            "resourceType": "CapabilityStatement",
            "rest": [{"mode": "server", "security": smart.security_extension(settings)}],
        }

    @app.get("/fhir/Observation")
    async def observations(client: Annotated[ApiClient, Depends(require("system/Observation.rs"))]) -> dict[str, Any]:
        return {"client_id": client.client_id, "recipient": client.recipient, "scopes": client.scopes}

    @app.post("/fhir/Subscription")
    async def subscribe(client: Annotated[ApiClient, Depends(require("system/Subscription.c"))]) -> dict[str, Any]:
        return {"client_id": client.client_id}

    return app
