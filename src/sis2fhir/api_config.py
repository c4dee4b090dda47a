"""The `api:` section of the configuration (`sis2fhir serve`): the clients with the recipient each is bound to.

A minimal stand-in on the i9-store branch, with the names of the shared contract; the i9-auth branch owns this
module (key, scope and URL checks) and replaces it at the merge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ApiClientSettings(BaseModel):
    """One client of the API (SMART Backend Services), bound to one recipient organization."""

    model_config = ConfigDict(extra="forbid")
    client_id: str = Field(min_length=1)
    recipient: str = Field(min_length=1)  # as in consents.csv recipientOrganization (and `recipients:`)
    jwks: str | dict[str, Any]
    scopes: str


class ApiSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_url: str = ""
    clients: list[ApiClientSettings] = Field(default_factory=list)
    token_lifetime_seconds: int = Field(300, ge=1, le=3600)
    signing_key: str | None = None
    export_dir: Path | None = None
    export_expiry_seconds: int = Field(3600, ge=1)
