"""The `api:` section of the configuration (`sis2fhir serve`): the public base URL, the clients with the recipient
each is bound to, their JWKS and scopes, and the key access tokens are signed with. Re-exported by sis2fhir.config
as `Settings.api`. Every key is read and checked when the configuration is loaded (a bad one stops with exit 1,
naming the client), and read again by the server when it starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sis2fhir.keys import CDS_JWT_ALGS, load_jwks, load_signing_key
from sis2fhir.scopes import check_configured


class ApiClientSettings(BaseModel):
    """One client of the API (SMART Backend Services), bound to one recipient organization."""

    model_config = ConfigDict(extra="forbid")
    client_id: str = Field(min_length=1)
    recipient: str = Field(min_length=1)  # as in consents.csv recipientOrganization (and `recipients:`)
    jwks: str | dict[str, Any]  # "file:/path", "env:NAME" (the JSON) or the JWKS object itself
    scopes: str  # space separated SMART v2 system scopes; v1 `.read` is taken as `.rs`

    @model_validator(mode="after")
    def _keys_and_scopes(self) -> ApiClientSettings:
        what = f"client {self.client_id!r}"
        load_jwks(self.jwks, f"{what}: jwks")  # ValueError names the client, never the key material
        try:
            self.scopes = check_configured(self.scopes)
        except ValueError as e:
            raise ValueError(f"{what}: scopes: {e}") from None
        return self


class CdsClientSettings(BaseModel):
    """A CDS Hooks client (an EHR calling the patient-view service), known by the `iss` of its JWTs and bound to one
    recipient organization like an API client. Its JWKS is configured (a `jku` in its JWTs is never fetched)."""

    model_config = ConfigDict(extra="forbid")
    issuer: str = Field(min_length=1)  # the JWT's iss, exactly
    recipient: str = Field(min_length=1)
    jwks: str | dict[str, Any]  # as an API client's: file:/path, env:NAME or the JWKS object
    # URL prefixes the requests' fhirServer must start with (the EHR's FHIR bases); empty: any http(s) URL
    fhir_servers: list[str] = Field(default_factory=list)

    def allows_fhir_server(self, url: str) -> bool:
        return not self.fhir_servers or any(url.startswith(prefix) for prefix in self.fhir_servers)

    @model_validator(mode="after")
    def _keys(self) -> CdsClientSettings:
        load_jwks(self.jwks, f"CDS client {self.issuer!r}: jwks", CDS_JWT_ALGS)
        return self


class EhrLaunchSettings(BaseModel):
    """An EHR that may launch the chart (SMART App Launch, EHR launch): its FHIR base as it sends it in `iss`, the
    client id it registered this app under, and the recipient organization it stands for."""

    model_config = ConfigDict(extra="forbid")
    iss: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    recipient: str = Field(min_length=1)
    scope: str = "launch openid fhirUser patient/Patient.rs"

    @field_validator("iss")
    @classmethod
    def _iss(cls, v: str) -> str:
        from sis2fhir.config import check_http_url  # config imports this module

        return check_http_url(v, "api.ehr_launch.iss").rstrip("/")


class ApiSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_url: str = ""  # the public base the clients see (behind a TLS proxy: its https URL); FHIR at <base>/fhir
    clients: list[ApiClientSettings] = Field(default_factory=list)
    token_lifetime_seconds: int = Field(300, ge=1, le=3600)  # SMART: access tokens SHOULD live 5 minutes or less
    # env:NAME, file:/path or the PEM (EC P-256 -> ES256, RSA -> RS256). Absent: a key made per process, so tokens
    # do not survive a restart and several processes behind one URL refuse each other's tokens: configure it then.
    signing_key: str | None = None
    export_dir: Path | None = None  # where Bulk $export files are written
    export_expiry_seconds: int = Field(3600, ge=1)
    cds_clients: list[CdsClientSettings] = Field(default_factory=list)  # CDS Hooks (api/cds.py)
    ehr_launch: list[EhrLaunchSettings] = Field(default_factory=list)  # SMART EHR launch of the chart (api/launch.py)
    session_seconds: int = Field(900, ge=60, le=43200)  # a launched chart's session

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        from sis2fhir.config import check_http_url  # config imports this module

        if not v.strip():
            return ""
        url = check_http_url(v, "api.base_url").rstrip("/")
        if "?" in url or "#" in url:
            raise ValueError("api.base_url must be a plain base URL, without query or fragment")
        return url

    @field_validator("signing_key")
    @classmethod
    def _signing_key(cls, v: str | None) -> str | None:
        if v is not None:
            load_signing_key(v)  # ValueError says what is wrong, without the key
        return v

    @model_validator(mode="after")
    def _clients(self) -> ApiSettings:
        if (self.clients or self.cds_clients or self.ehr_launch) and not self.base_url:
            raise ValueError("api.base_url is needed with clients: the token URL and the audience derive from it")
        if len({c.issuer for c in self.cds_clients}) < len(self.cds_clients):
            raise ValueError("api.cds_clients: an issuer is configured twice")
        if len({e.iss for e in self.ehr_launch}) < len(self.ehr_launch):
            raise ValueError("api.ehr_launch: an iss is configured twice")
        seen: set[str] = set()
        for client in self.clients:
            if client.client_id in seen:
                raise ValueError(f"client {client.client_id!r} is configured twice")
            seen.add(client.client_id)
        return self

    @property
    def fhir_base(self) -> str:
        return f"{self.base_url}/fhir"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/auth/token"

    def cds_client(self, issuer: str) -> CdsClientSettings | None:
        return next((c for c in self.cds_clients if c.issuer == issuer), None)

    def ehr(self, iss: str) -> EhrLaunchSettings | None:
        return next((e for e in self.ehr_launch if e.iss == iss.rstrip("/")), None)

    def client(self, client_id: str) -> ApiClientSettings | None:
        return next((c for c in self.clients if c.client_id == client_id), None)
