"""The `sis2fhir` command line: one module per command group (sync and check, validate, outbox, the records, serve,
population and evaluate),
each calling sis2fhir.service; options.py holds what they share and failures.py the net under them all."""

from __future__ import annotations

from typing import Annotated

import typer

from sis2fhir.cli.failures import GuardedGroup
from sis2fhir.cli.options import out
from sis2fhir.cli.outbox import outbox_app
from sis2fhir.cli.population import evaluate_command, population_command
from sis2fhir.cli.records import disclosures_command, pending_command
from sis2fhir.cli.serve import serve_command
from sis2fhir.cli.sync import check_command, sync_command
from sis2fhir.cli.validate import validate_command

app = typer.Typer(
    cls=GuardedGroup,
    help="School attendance (OneRoster / Ed-Fi) to FHIR R4 and HL7 v2, gated by FERPA consent.\n\n"
    "Exit codes: 0 done; 1 the export, configuration, store or a recipient cannot be used (nothing was sent); "
    "2 usage; 3 done, but input rows were rejected or resources quarantined; 4 done, but deliveries wait or are "
    "dead; 70 internal error (please report it; SIS2FHIR_DEBUG=1 shows the traceback).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(outbox_app, name="outbox")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            out.print(f"sis2fhir {version('sis2fhir')}", highlight=False)
        except PackageNotFoundError:
            out.print("sis2fhir (version unknown: not installed as a package)", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """School attendance (OneRoster / Ed-Fi) to FHIR R4 and HL7 v2, gated by FERPA consent."""


app.command("sync")(sync_command)
app.command("check")(check_command)
app.command("validate")(validate_command)
app.command("pending")(pending_command)
app.command("disclosures")(disclosures_command)
app.command("serve")(serve_command)
app.command("population")(population_command)
app.command("evaluate")(evaluate_command)


def main() -> None:  # pragma: no cover
    app()


__all__ = ["app", "main"]
