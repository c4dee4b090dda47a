"""What the command line and the web server both do: sync, check, the outbox operations, the disclosure log and
the pending matches. Each function takes typed inputs (settings, paths, options) and returns typed results; it
prints nothing and raises the project's exceptions (sis2fhir.errors), which the caller turns into its answer."""
