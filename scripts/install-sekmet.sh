#!/usr/bin/env bash
# Install the real FHIR R4 test server sekmet-fhir (PyPI) into its own venv .venv-ehr; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SEKMET_VENV:-.venv-ehr}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import sekmet" 2>/dev/null; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "sekmet-fhir>=0.1.1,<0.2"
fi
"$VENV/bin/sekmet" --version
