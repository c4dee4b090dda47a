"""De-identified population figures and program evaluations (`sis2fhir population`, `sis2fhir evaluate`): pure
aggregation (aggregate.py), suppression (suppress.py, publish.py), the evaluation (evaluate.py), and the written
forms: population.csv (table.py) and the static HTML report (html.py, svg.py). docs/population.md has the rules."""
