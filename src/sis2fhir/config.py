"""Configuration: the district's identity, the policy, the state store and the recipients with their destinations.

Read from a YAML file (`--config`) with environment overrides (`SIS2FHIR_...`, nested with `__`). Secrets are
never written here: credentials are references (`env:NAME` or `file:/path`) resolved when a destination starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sis2fhir.policy import Policy, resolve_policy
from sis2fhir.terminology import NPI_SYSTEM


class ConfigError(Exception):
    """The configuration cannot be used; the message says which setting and what to do."""


class DistrictSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Base of every business identifier system this adapter mints; one per district, never changed once used.
    namespace: str = "urn:sis2fhir:district:example"
    # Where the state student id is in users.csv: identifier | userIds:<type> | userMasterIdentifier
    state_id_source: str = "identifier"
    # The identifier system recipients know the state student id by (Patient.identifier.system).
    state_id_system: str = ""
    # HL7 v2 PID-3.4: the assigning authority of the state student id ("NAME" or "NAME&OID&ISO").
    state_id_authority: str = "STATE"

    @field_validator("namespace")
    @classmethod
    def _no_trailing_slash(cls, v: str) -> str:
        return v.rstrip("/")

    def system(self, kind: str) -> str:
        """An identifier system under the district namespace, e.g. system('attendance-summary')."""
        sep = ":" if self.namespace.startswith("urn:") else "/"
        return f"{self.namespace}{sep}{kind}"

    @property
    def student_id_system(self) -> str:
        return self.state_id_system or self.system("state-student-id")


class PolicySettings(BaseModel):
    model_config = ConfigDict(extra="allow")
    preset: str = "essa"

    def resolve(self) -> Policy:
        overrides: dict[str, Any] = dict(self.model_extra or {})
        return resolve_policy(self.preset, **overrides)


class AuthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["none", "bearer", "smart-backend"] = "none"
    token: str = ""  # bearer: a reference, env:NAME or file:/path
    client_id: str = ""
    private_key: str = ""  # smart-backend: reference to a PEM (env:NAME or file:/path)
    key_id: str = ""
    alg: Literal["RS384", "ES384"] = "RS384"
    scope: str = "system/Observation.cu system/Consent.cu system/Patient.rs"
    token_url: str = ""  # optional: skips discovery


class DestinationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["ndjson", "fhir", "mllp"]
    folder: str = ""  # ndjson
    url: str = ""  # fhir base
    host: str = ""  # mllp
    port: int = 0
    auth: AuthSettings = Field(default_factory=AuthSettings)
    bundle_size: int = Field(50, ge=1, le=1000)
    concurrency: int = Field(4, ge=1, le=64)
    timeout_seconds: float = Field(30.0, gt=0)
    create_patients: bool = False
    patient_identifier_system: str = ""  # defaults to the district's state id system
    v2: dict[str, Any] = Field(default_factory=dict)  # HL7 v2 MSH settings: sis2fhir.map.oru.V2Settings


class RecipientSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    identifier: str  # as in consents.csv recipientOrganization (an NPI or the HIE's id)
    system: str = NPI_SYSTEM
    name: str = ""
    destinations: list[DestinationSettings] = Field(default_factory=list)


class OutboxSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_age_hours: float = Field(72.0, gt=0)  # then the dead letters, with the last error
    initial_backoff_seconds: float = Field(30.0, gt=0)
    max_backoff_seconds: float = Field(3600.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIS2FHIR_", env_nested_delimiter="__", extra="forbid")

    district: DistrictSettings = Field(default_factory=DistrictSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    store_url: str = "sqlite:///sis2fhir-state.sqlite"
    # how long a writing command waits for another one on the same store (sis2fhir.store.lock), then exits 5
    store_lock_wait_seconds: float = Field(30.0, ge=0)
    recipients: list[RecipientSettings] = Field(default_factory=list)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    workers: int = Field(0, ge=0)  # processes for reading attendance and mapping; 0: one per core

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):  # type: ignore[no-untyped-def]
        # the file's values arrive as init arguments; the environment must beat them (12-factor deployments)
        return (env_settings, init_settings)


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Settings from a YAML file (if given), the environment, then explicit overrides (CLI options)."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"cannot read the config file {path}: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {e}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping at the top level")
        data = loaded or {}
    try:
        settings = Settings(**data)
        for key, value in overrides.items():  # command-line options beat the environment and the file
            if value is not None:
                setattr(settings, key, value)
        settings.policy.resolve()
    except (ValidationError, ValueError) as e:
        raise ConfigError(f"invalid configuration: {e}") from None
    return settings
