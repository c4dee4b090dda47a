"""`sis2fhir validate`: FHIR files against the project's profiles and the R4 core definitions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def validate_command(
    paths: Annotated[list[Path], typer.Argument(help="FHIR JSON, NDJSON or Bundle files, or folders of them.")],
) -> None:
    """Check FHIR resources against the project's profiles and the R4 core definitions. Exit 0 all valid, 1 a
    resource has an error, 2 an input could not be read at all. Warnings (a claimed profile from elsewhere that the
    validator does not have) are printed and do not fail."""
    from sis2fhir.validate import run_validate_command

    raise typer.Exit(run_validate_command(paths))
