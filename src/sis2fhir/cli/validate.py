"""`sis2fhir validate`: FHIR files against the project's profiles and the R4 core definitions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def validate_command(
    paths: Annotated[list[Path], typer.Argument(help="FHIR JSON, NDJSON or Bundle files, or folders of them.")],
    ig: Annotated[
        Path | None,
        typer.Option(
            "--ig",
            help="Load the profiles, code systems and value sets from this FHIR NPM package (a .tgz such as "
            "profiles/package.tgz, or its unpacked folder) instead of the bundled ones.",
        ),
    ] = None,
) -> None:
    """Check FHIR resources against the project's profiles and the R4 core definitions. Exit 0 all valid, 1 a
    resource has an error, 2 an input (or the --ig package) could not be read at all. Warnings (a claimed profile
    from elsewhere that the validator does not have) are printed and do not fail."""
    from sis2fhir.validate import Validator, run_validate_command
    from sis2fhir.validate.definitions import Definitions, PackageError

    validator = None
    if ig is not None:
        try:
            validator = Validator(Definitions.from_package(ig))
        except PackageError as error:
            print(f"sis2fhir validate: --ig: {error}", file=sys.stderr)
            raise typer.Exit(2) from None
    raise typer.Exit(run_validate_command(paths, validator=validator))
