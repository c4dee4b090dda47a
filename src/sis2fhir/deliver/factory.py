"""Destinations built from the configuration (recipients -> destinations) or from a `--destination` string."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from pydantic import ValidationError

from sis2fhir.config import ConfigError, DestinationSettings, Settings, describe
from sis2fhir.deliver.base import Destination
from sis2fhir.deliver.ndjson import NdjsonDestination
from sis2fhir.deliver.routing import Route
from sis2fhir.deliver.served import ServedDestination, served_recipients
from sis2fhir.keys import read_reference

if TYPE_CHECKING:
    from sis2fhir.deliver.outbox import Outbox


def fhir_destination(ds: DestinationSettings, settings: Settings) -> Destination:
    from sis2fhir.deliver.fhir_rest import FhirRestDestination
    from sis2fhir.link import PatientLinker

    auth = _auth(ds)
    linker = PatientLinker(
        identifier_system=ds.patient_identifier_system or settings.district.student_id_system,
        create_patients=ds.create_patients,
    )
    return FhirRestDestination(
        ds.url,
        auth,
        linker=linker,
        bundle_size=ds.bundle_size,
        concurrency=ds.concurrency,
        timeout=ds.timeout_seconds,
    )


def _auth(ds: DestinationSettings) -> Any:
    from sis2fhir.deliver import smart_auth

    a = ds.auth

    def secret(setting: str, ref: str) -> str:
        # read_reference's messages name the variable or the file, never the value
        if not ref:
            raise ConfigError(f"destination {ds.url}: {a.type} auth needs `auth.{setting}` (env:NAME or file:/path)")
        value = read_reference(ref)
        if not value.strip():
            raise ConfigError(
                f"destination {ds.url}: the secret `auth.{setting}` ({ref.partition(':')[0]}:...) is empty"
            )
        return value

    try:
        if a.type == "bearer":
            return smart_auth.StaticBearerAuth(secret("token", a.token).strip())
        if a.type == "smart-backend":
            if not (a.client_id and a.private_key and a.key_id):
                raise ConfigError(
                    f"destination {ds.url}: smart-backend auth needs client_id, private_key (env:NAME or file:/path) "
                    "and key_id"
                )
            pem = secret("private_key", a.private_key)
            _check_private_key(ds, pem)
            return smart_auth.SmartBackendAuth(
                ds.url,
                a.client_id,
                pem,
                a.key_id,
                alg=a.alg,
                scope=a.scope,
                token_url=a.token_url or None,
            )
    except (OSError, KeyError, ValueError) as e:
        # ValueError also covers a PEM that is not a key: the cryptography message says so without the key
        raise ConfigError(f"destination {ds.url}: cannot load the credentials: {e}") from None
    return smart_auth.NoAuth()


def folder_problem(path: Path) -> str | None:
    """Why `path` cannot be (or become) a folder this user writes to; None when it can. Creates nothing."""
    try:
        return _folder_problem(path)
    except OSError as e:  # e.g. a parent folder this user may not enter
        return f"{path} cannot be reached: {e.strerror}"


def _folder_problem(path: Path) -> str | None:
    if path.exists():
        if not path.is_dir():
            return f"{path} is a file, not a folder"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"the folder {path} is not writable for this user"
        return None
    if path.is_symlink():
        return f"{path} is a symbolic link that loops or points nowhere"
    parent = path.absolute().parent
    while not parent.exists():
        if parent.is_symlink():
            return f"{parent} is a symbolic link that loops or points nowhere"
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is a file, so {path} cannot be made a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{path} cannot be created: {parent} is not writable for this user"
    return _creation_problem(path.absolute(), parent)


def _creation_problem(path: Path, existing: Path) -> str | None:
    """Make (and remove) a folder of our own in `existing`, the nearest folder of `path` that exists: the permission
    bits do not tell (root passes os.access everywhere; /proc or a read-only mount refuses what they allow). Not
    `path` itself: a second command starting at the same moment may be making it."""
    try:
        probe = tempfile.mkdtemp(prefix=".sis2fhir-probe-", dir=existing)
    except OSError as e:
        return f"{path} cannot be created: {e.strerror}"
    with contextlib.suppress(OSError):
        os.rmdir(probe)
    return None


def _check_private_key(ds: DestinationSettings, pem: str) -> None:
    """The key must load now, not at the first token request in the middle of a delivery."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    ref = ds.auth.private_key.partition(":")
    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            f"destination {ds.url}: auth.private_key ({ref[0]}:{ref[2] if ref[0] == 'file' else '...'}) is not an "
            "unencrypted PEM private key"
        ) from None
    wanted = rsa.RSAPrivateKey if ds.auth.alg == "RS384" else ec.EllipticCurvePrivateKey
    if not isinstance(key, wanted):
        raise ConfigError(f"destination {ds.url}: auth.private_key is not a key for alg {ds.auth.alg}")


def build(ds: DestinationSettings, settings: Settings) -> tuple[str, Destination]:
    """(what the destination takes: "fhir" or "hl7v2", the destination)"""
    if ds.type == "ndjson":
        if not ds.folder:
            raise ConfigError("an ndjson destination needs `folder`")
        problem = folder_problem(Path(ds.folder))
        if problem:
            raise ConfigError(f"the NDJSON destination cannot be written: {problem}")
        return "fhir", NdjsonDestination(Path(ds.folder))
    if ds.type == "fhir":
        if not ds.url.startswith(("http://", "https://")):
            raise ConfigError(f"a fhir destination needs an http(s) `url`, not {ds.url!r}")
        dest = fhir_destination(ds, settings)  # its own problems (secrets, keys) first
        _refuse_colliding_identifiers(f"FHIR destination {ds.url}", settings.district.network_problems())
        return "fhir", dest
    if not ds.host or not ds.port:
        raise ConfigError("an mllp destination needs `host` and `port`")
    from pydantic import ValidationError

    from sis2fhir.map.oru import MSH_FIELDS, v2_settings

    try:
        v2 = v2_settings(settings, ds.v2)
    except ValidationError as e:
        raise ConfigError(f"mllp destination {ds.host}:{ds.port}: invalid `hl7` or `v2` settings: {e}") from None
    empty = [
        f"hl7.{name} (or the destination's v2.{name}): {MSH_FIELDS[name]} is empty; set what the HIE registered"
        for name in v2.empty_routing_fields()
    ]
    _refuse_colliding_identifiers(f"MLLP destination {ds.host}:{ds.port}", settings.district.network_problems() + empty)
    from sis2fhir.deliver.mllp import MllpDestination

    return "hl7v2", MllpDestination(ds.host, ds.port, ack_timeout=ds.timeout_seconds)


def _refuse_colliding_identifiers(what: str, problems: list[str]) -> None:
    """Network delivery stops before anything leaves while the identifiers (or the HL7 v2 routing) are not the
    district's own: two districts on the shipped namespace would overwrite each other's students at a recipient."""
    if problems:
        lines = "\n".join(f"  {p}" for p in problems)
        raise ConfigError(f"{what}: nothing is sent over the network until these are set:\n{lines}")


def from_spec(spec: str, settings: Settings) -> tuple[str, Destination]:
    """A `--destination`: an http(s) FHIR base, an mllp://host:port address, or a folder (see `build`)."""
    scheme, sep, _ = spec.partition("://")
    shown = _without_credentials(spec)
    try:
        if sep and scheme.lower() in ("http", "https"):
            return build(DestinationSettings(type="fhir", url=spec), settings)
        if sep and scheme.lower() == "mllp":
            u = urlparse(spec)
            try:
                port = u.port
            except ValueError:
                port = None
            if not u.hostname or not port or u.path not in ("", "/"):
                raise ConfigError(f"an MLLP destination is mllp://host:port with a port 1-65535, not {shown!r}")
            return build(DestinationSettings(type="mllp", host=u.hostname, port=port), settings)
        if sep:
            raise ConfigError(
                f"--destination {scheme}://... is not supported: give an https:// FHIR base, mllp://host:port, "
                "or a folder"
            )
        if not spec.strip():
            raise ConfigError("--destination is empty: give an https:// FHIR base, mllp://host:port, or a folder")
        return build(DestinationSettings(type="ndjson", folder=spec), settings)
    except ValidationError as e:
        raise ConfigError(describe(e, f"--destination {shown!r} cannot be used")) from None


def _without_credentials(spec: str) -> str:
    """A destination string for messages: a user name or password in it is masked."""
    scheme, sep, rest = spec.partition("://")
    if not sep:
        return spec
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return f"{scheme}://{netloc}{slash}{path}"


def configured_routes(settings: Settings) -> tuple[dict[str, list[Route]], dict[str, Destination]]:
    """(recipient -> its routes, destination name -> destination) for the configuration's recipients."""
    routes: dict[str, list[Route]] = {}
    destinations: dict[str, Destination] = {}
    for r in settings.recipients:
        for ds in r.destinations:
            takes, dest = build(ds, settings)
            destinations.setdefault(dest.name, dest)
            routes.setdefault(r.identifier, []).append(
                Route(dest.name, takes, dict(ds.v2), dest.self_contained, dest.reads_resources)
            )
    if served := served_recipients(settings):  # what `sis2fhir serve` answers with, for its clients' recipients
        dest = ServedDestination(settings.store_url)
        destinations[dest.name] = dest
        for recipient in sorted(served):
            routes.setdefault(recipient, []).append(
                Route(dest.name, "fhir", self_contained=dest.self_contained, reads_resources=dest.reads_resources)
            )
    return routes, destinations


def destinations_for_outbox(settings: Settings, outbox: Outbox) -> dict[str, Destination]:
    """Every destination that has items in the outbox: from the config, or rebuilt from its name (one-off runs)."""
    _, destinations = configured_routes(settings)
    for (name, _status), _n in outbox.counts().items():
        if name in destinations:
            continue
        kind, _, rest = name.partition(":")
        if kind in ("ndjson", "fhir"):  # names are "ndjson:<folder>", "fhir:<base>", "mllp://host:port"
            destinations[name] = from_spec(rest, settings)[1]
        elif kind == "mllp":
            destinations[name] = from_spec(name, settings)[1]
    return destinations
