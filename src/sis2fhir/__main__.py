"""`python -m sis2fhir`: the command line."""

from sis2fhir.cli import app

app(prog_name="sis2fhir")
