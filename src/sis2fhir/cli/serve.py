"""`sis2fhir serve`: the FHIR R4 API over the served store that `sync` writes (sis2fhir.api), in this process
(uvicorn, one event loop, no forked workers), on the same state store as sync (SQLite or PostgreSQL)."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from sis2fhir.cli.options import ConfigOpt, err, fail, failing, settings_for
from sis2fhir.config import Settings
from sis2fhir.errors import StoreMissing


def serve_command(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (behind a reverse proxy: keep the loopback default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port to listen on.")] = 8080,
    config: ConfigOpt = None,
) -> None:
    """Serve the consented data as a FHIR R4 API at <api.base_url>/fhir with SMART Backend Services and Bulk
    $export, until stopped (Ctrl-C or SIGTERM). Needs `api.base_url` and `api.clients` in the configuration and a
    state store that a sync wrote; each request is logged in one line (no personal data, no tokens). Exit 1 when
    the configuration or the store cannot be used."""
    settings = settings_for(config, None, None, None)
    refuse_without_api(settings)
    import uvicorn

    from sis2fhir.api.app import create_app
    from sis2fhir.service.served import open_served

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    refuse_without_a_synced_store(settings)
    with failing(), open_served(settings) as served:
        app = create_app(settings, served)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_config=None,  # the root logger's format above; uvicorn's own lines go through it
                access_log=False,  # its access line shows the query string (identifiers): api.request_log instead
                server_header=False,
                lifespan="on",
            )
        )
        err.print(f"serving {settings.api.base_url.rstrip('/')}/fhir on http://{host}:{port}", highlight=False)
        server.run()
    if not server.started:  # the address was taken or cannot be bound: uvicorn said why
        raise typer.Exit(1)


def refuse_without_a_synced_store(settings: Settings) -> None:
    """An empty store would answer every search with nothing, as if no student were consented: exit 1 instead."""
    from sis2fhir.config import shown_store_url
    from sis2fhir.service.state import open_existing

    try:
        with failing():
            open_existing(settings).dispose()
    except StoreMissing as e:
        raise fail(
            f"no state store that a sync wrote at {shown_store_url(settings.store_url)}: {e}. serve answers from "
            "what `sis2fhir sync` stored: run it with this configuration (its store_url) first"
        ) from None


def refuse_without_api(settings: Settings) -> None:
    """`serve` needs the public base URL and at least one client: exit 1 saying what to set."""
    api = getattr(settings, "api", None)
    if api is None or not str(getattr(api, "base_url", "") or "").strip():
        raise fail(
            "api.base_url is not set: give the public https URL the clients use (e.g. "
            "https://sis2fhir.example-hie.org, the reverse proxy's address); the FHIR base is <base_url>/fhir"
        )
    if not any(getattr(api, name, None) for name in ("clients", "cds_clients", "ehr_launch")):
        raise fail(
            "api.clients is empty: configure at least one client (client_id, recipient, jwks, scopes), CDS Hooks "
            "client (api.cds_clients) or launching EHR (api.ehr_launch); "
            "without one, nothing can be served"
        )
