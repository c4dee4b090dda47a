"""The FHIR R4 server over what sync measured (`sis2fhir serve`): the app (app.py), the FHIR read and search API
(fhir.py), SMART Backend Services (smart.py) and Bulk $export (bulk.py). Layer 9, beside cli/: it calls
sis2fhir.service and below, nothing calls it."""
