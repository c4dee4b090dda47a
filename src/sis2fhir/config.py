"""Configuration: the district's identity, the policy, the state store and the recipients with their destinations.

Read from a YAML file (`--config`) with environment overrides (`SIS2FHIR_...`, nested with `__`). Secrets are
never written here: credentials are references (`env:NAME` or `file:/path`) resolved when a destination starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from sis2fhir.api_config import ApiClientSettings as ApiClientSettings  # re-exported: the `api:` section
from sis2fhir.api_config import ApiSettings
from sis2fhir.errors import ConfigError
from sis2fhir.notify_config import NotifySettings
from sis2fhir.policy import Policy, resolve_policy
from sis2fhir.population_config import PopulationSettings
from sis2fhir.terminology import NPI_SYSTEM


def parse_state_id_source(source: str) -> tuple[str, str]:
    """Where users.csv carries the state student id: ("identifier" | "userMasterIdentifier", "") or
    ("userIds", <type>) for `userIds:<type>`; ValueError naming the accepted forms."""
    if source in ("identifier", "userMasterIdentifier"):
        return source, ""
    if source.startswith("userIds:") and source[len("userIds:") :].strip():
        return "userIds", source[len("userIds:") :].strip()
    raise ValueError(
        f"state_id_source '{source}' is not one of: identifier, userIds:<type> (e.g. userIds:state), "
        "userMasterIdentifier."
    )


# The namespace shipped for the example district. Two districts on it would mint the same identifier systems, and
# a recipient serving both could overwrite one district's students with the other's: no network delivery on it.
DEFAULT_NAMESPACE: Final = "urn:sis2fhir:district:example"
NAMESPACE_RECIPE: Final = (
    "a URL the district controls, e.g. https://id.<district-domain>/fhir, or an OID assigned to the district, "
    "e.g. urn:oid:2.16.840.1.113883.3.<number>"
)
PatientDetail = Literal["matching", "identifier-only"]


class DistrictSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Base of every business identifier system this adapter mints; one per district, never changed once used.
    namespace: str = DEFAULT_NAMESPACE
    # Where the state student id is in users.csv: identifier | userIds:<type> | userMasterIdentifier
    state_id_source: str = "identifier"
    # The identifier system recipients know the state student id by (Patient.identifier.system).
    state_id_system: str = ""
    # HL7 v2 PID-3.4: the assigning authority of the state student id ("NAME" or "NAME&OID&ISO").
    state_id_authority: str = "STATE"
    # The Patient written to a Bulk NDJSON folder: identifiers, name, birth date and gender for matching, or the
    # identifiers only. A recipient's own `patient_detail` overrides it. (FHIR REST recipients get no Patient.)
    patient_detail: PatientDetail = "matching"

    @field_validator("namespace")
    @classmethod
    def _no_trailing_slash(cls, v: str) -> str:
        return v.rstrip("/")

    @field_validator("state_id_source")
    @classmethod
    def _known_source(cls, v: str) -> str:
        parse_state_id_source(v)  # ValueError names the accepted forms
        return v

    def system(self, kind: str) -> str:
        """An identifier system under the district namespace, e.g. system('attendance-summary')."""
        sep = ":" if self.namespace.startswith("urn:") else "/"
        return f"{self.namespace}{sep}{kind}"

    @property
    def student_id_system(self) -> str:
        return self.state_id_system or self.system("state-student-id")

    def network_problems(self) -> list[str]:
        """Why identifiers minted under these settings could collide at a recipient that serves several
        districts (network delivery is refused then): one line per setting, as `path: what to set`."""
        problems = []
        if self.namespace == DEFAULT_NAMESPACE:
            problems.append(
                f"district.namespace: still the shipped example {DEFAULT_NAMESPACE!r}; set the district's own: "
                f"{NAMESPACE_RECIPE} (never change it once used)"
            )
        if not self.state_id_system.strip():
            problems.append(
                "district.state_id_system: not set; give the identifier system the recipients know the state "
                "student id by (the state's, e.g. urn:oid:<the state education agency's OID> or its https URL)"
            )
        return problems


class Hl7Settings(BaseModel):
    """MSH-3..6 of every HL7 v2 message (a MLLP destination's own `v2:` overrides them): HD values, a namespace id
    or "NAME^OID^ISO". Network delivery needs all four (checked with the destination, sis2fhir.map.oru)."""

    model_config = ConfigDict(extra="forbid")
    sending_application: str = ""  # MSH-3; empty: SIS2FHIR
    sending_facility: str = ""  # MSH-4: the district, as the HIE registered it
    receiving_application: str = ""  # MSH-5: the HIE's interface
    receiving_facility: str = ""  # MSH-6: the HIE (or the recipient, where the HIE routes by MSH-6)


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

    @field_validator("token", "private_key")
    @classmethod
    def _a_reference(cls, v: str) -> str:
        # the value itself is never repeated in the message: it may be the secret pasted in by mistake
        kind, sep, where = v.partition(":")
        if v and (kind not in ("env", "file") or not sep or not where.strip()):
            raise ValueError("must be a reference, env:NAME or file:/path; secrets are never written in the config")
        return v

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, v: str) -> str:
        return check_http_url(v, "token_url") if v else v


_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]+|[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)$")


def check_host(host: str) -> bool:
    """A DNS name, an IPv4 address or an IPv6 address (as urlsplit gives it); nothing else connects."""
    return bool(_HOST.match(host))


def check_http_url(url: str, what: str = "url") -> str:
    """An http(s) URL with a host and, if given, a valid port; ValueError saying what is wrong (no credentials)."""
    u = urlsplit(url.strip())
    if u.scheme.lower() not in ("http", "https"):
        shown = f"{u.scheme}://" if u.scheme else repr(url.strip()[:40])
        raise ValueError(f"{what} must start with https:// (or http://), not {shown}")
    if u.username or u.password:
        raise ValueError(f"{what} must not hold a user name or password: put credentials in `auth`")
    try:
        port = u.port
    except ValueError:
        raise ValueError(f"{what} has a port outside 1-65535") from None
    if not u.hostname:
        raise ValueError(f"{what} has no host: write it like https://ehr.example.org/fhir")
    if not check_host(u.hostname):
        raise ValueError(f"{what} has a host name with characters a host name cannot have (a space, a quote, ...)")
    if any(c.isspace() for c in url.strip()):
        raise ValueError(f"{what} contains white space: write it like https://ehr.example.org/fhir")
    if port == 0:
        raise ValueError(f"{what} has port 0; give the server's port (1-65535) or none")
    return url.strip()


class DestinationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["ndjson", "fhir", "mllp"]
    folder: str = ""  # ndjson
    url: str = ""  # fhir base
    host: str = ""  # mllp
    port: int = Field(0, ge=0, le=65535)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    bundle_size: int = Field(50, ge=1, le=1000)
    concurrency: int = Field(4, ge=1, le=64)
    timeout_seconds: float = Field(30.0, gt=0)
    create_patients: bool = False
    patient_identifier_system: str = ""  # defaults to the district's state id system
    v2: dict[str, Any] = Field(default_factory=dict)  # HL7 v2 MSH settings: sis2fhir.map.oru.V2Settings

    @model_validator(mode="after")
    def _what_the_type_needs(self) -> DestinationSettings:
        if self.type == "ndjson" and not self.folder.strip():
            raise ValueError("an ndjson destination needs `folder`")
        if self.type == "fhir":
            check_http_url(self.url, "a fhir destination's `url`")
        if self.type == "mllp":
            host = self.host.strip()
            if not host or "/" in host or ":" in host.strip("[]") or not check_host(host):
                raise ValueError("an mllp destination needs `host` (a name or an address, without scheme or port)")
            if not 1 <= self.port <= 65535:
                raise ValueError(f"an mllp destination needs `port` between 1 and 65535, not {self.port}")
        return self


class RecipientSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    identifier: str  # as in consents.csv recipientOrganization (an NPI or the HIE's id)
    system: str = NPI_SYSTEM
    name: str = ""
    patient_detail: PatientDetail | None = None  # default: the district's
    destinations: list[DestinationSettings] = Field(default_factory=list)


class OutboxSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_age_hours: float = Field(72.0, gt=0)  # then the dead letters, with the last error
    initial_backoff_seconds: float = Field(30.0, gt=0)
    max_backoff_seconds: float = Field(3600.0, gt=0)


class PlausibilitySettings(BaseModel):
    """How far an export may differ from the last accepted run of the same district before the run stops
    (`sis2fhir sync --accept-change REASON` lets a deliberate change through; see plausibility.py)."""

    model_config = ConfigDict(extra="forbid")
    # a drop in attendance rows per school day (district-wide) beyond this fraction stops the run
    max_drop_rows_per_school_day: float = Field(0.25, ge=0, le=1)
    # a drop in students (x schools) with any absence beyond this fraction stops the run
    max_drop_students_absent: float = Field(0.25, ge=0, le=1)
    # days absent that shrink for days already reported (corrections): allowed up to this share of the students
    # (x schools) compared, each listed in the row report; beyond it the run stops
    max_shrink_share: float = Field(0.02, ge=0, le=1)


@dataclass(frozen=True, slots=True)
class ZipLimits:
    """Limits against zip bombs. CSV text deflates 5 to 20 times in real SIS exports, and even a sorted
    attendance file stays well under 100; a crafted member reaches about 1000 per layer."""

    max_total_bytes: int = 16 << 30  # all members, uncompressed
    max_ratio: float = 200.0  # uncompressed / compressed size of one member
    ratio_from_bytes: int = 1 << 20  # smaller members are not ratio-checked (a tiny file compresses oddly)


class ExportSettings(BaseModel):
    """Limits on what an export may be (against zip bombs); the defaults fit the largest real districts."""

    model_config = ConfigDict(extra="forbid")
    zip_max_total_bytes: int = Field(ZipLimits().max_total_bytes, gt=0)  # all members, uncompressed
    zip_max_ratio: float = Field(ZipLimits().max_ratio, gt=1)  # per member: uncompressed / compressed

    def zip_limits(self) -> ZipLimits:
        return ZipLimits(max_total_bytes=self.zip_max_total_bytes, max_ratio=self.zip_max_ratio)


def check_store_url(url: str) -> str:
    """A SQLAlchemy URL for SQLite or PostgreSQL; ValueError without repeating the URL (it may hold a password)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        u = make_url(url.strip())
    except ArgumentError:
        raise ValueError(
            "store_url is not a database URL: give sqlite:///path/to/state.sqlite or "
            "postgresql+psycopg://user@host/database"
        ) from None
    if u.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(
            f"store_url names the database {u.get_backend_name()!r}; sis2fhir keeps its state in SQLite "
            "(sqlite:///path) or PostgreSQL (postgresql+psycopg://...)"
        )
    if u.get_backend_name() == "postgresql" and not u.database:
        raise ValueError("store_url names no PostgreSQL database: postgresql+psycopg://user@host/database")
    return url.strip()


def shown_store_url(url: str) -> str:
    """The store URL for messages: the password masked (or nothing of it, when it does not parse)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(the store_url given)"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SIS2FHIR_", env_nested_delimiter="__", extra="forbid", validate_assignment=True
    )

    district: DistrictSettings = Field(default_factory=DistrictSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    store_url: str = "sqlite:///sis2fhir-state.sqlite"
    # how long a writing command waits for another one on the same store (sis2fhir.store.lock), then exits 5
    store_lock_wait_seconds: float = Field(30.0, ge=0)
    recipients: list[RecipientSettings] = Field(default_factory=list)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)
    workers: int = Field(0, ge=0, le=256)  # processes for reading attendance and mapping; 0: one per core
    # the attendance engine: auto (columnar for a large attendance.csv, else streaming), streaming or columnar
    engine: Literal["auto", "streaming", "columnar"] = "auto"
    plausibility: PlausibilitySettings = Field(default_factory=PlausibilitySettings)
    hl7: Hl7Settings = Field(default_factory=Hl7Settings)
    api: ApiSettings = Field(default_factory=ApiSettings)  # sis2fhir serve (sis2fhir.api_config)
    notify: NotifySettings = Field(default_factory=NotifySettings)  # triggers and Subscriptions (notify_config)
    population: PopulationSettings = Field(default_factory=PopulationSettings)  # population, evaluate

    @field_validator("store_url")
    @classmethod
    def _store_url(cls, v: str) -> str:
        return check_store_url(v)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # the file's values arrive as init arguments; the environment must beat them (12-factor deployments)
        return (env_settings, init_settings)


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Settings from a YAML file (if given), the environment, then explicit overrides (CLI options)."""
    data: dict[str, Any] = {}
    where = (f"{path}, " if path is not None else "") + "SIS2FHIR_... variables or command-line options"
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except IsADirectoryError:
            raise ConfigError(f"the config file {path} is a folder; give the YAML file") from None
        except OSError as e:
            raise ConfigError(f"cannot read the config file {path}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path} is not UTF-8 text; save the configuration as UTF-8 YAML") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {e}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(
                f"{path} must hold a mapping at the top level (district:, policy:, store_url:, recipients: ...), "
                f"not a {type(loaded).__name__}"
            )
        data = loaded or {}
        if any(not isinstance(k, str) for k in data):
            raise ConfigError(f"{path}: every top-level key must be a name such as store_url or recipients")
    try:
        settings = Settings(**data)
        for key, value in overrides.items():  # command-line options beat the environment and the file
            if value is not None:
                setattr(settings, key, value)
    except ValidationError as e:
        raise ConfigError(describe(e, f"invalid configuration (from {where})")) from None
    except SettingsError as e:
        raise ConfigError(f"an environment variable SIS2FHIR_... cannot be read: {e}") from None
    try:
        settings.policy.resolve()
    except ValidationError as e:
        raise ConfigError(describe(e, f"invalid policy (from {where})", "policy")) from None
    except ValueError as e:
        raise ConfigError(f"invalid policy (from {where}): {e}") from None
    return settings


def describe(e: ValidationError, title: str, prefix: str = "") -> str:
    """A ValidationError as one line per setting: where it is and what is wrong (numbers shown, text never:
    a wrong text value may be a secret pasted into the wrong place)."""
    lines = []
    for err in e.errors(include_url=False):
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "") or "(top level)"
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting: check its spelling and indentation"
        value = err.get("input")
        if isinstance(value, int | float) and not isinstance(value, bool):
            msg += f" (found {value})"
        lines.append(f"  {loc}: {msg}")
    return f"{title}:\n" + "\n".join(lines)
