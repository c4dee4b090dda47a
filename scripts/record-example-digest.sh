#!/usr/bin/env bash
# Re-records tests/fixtures/example-output.sha256 from the example district's output. Only for a deliberate change
# of what recipients get; say so in the commit (tests/end_to_end/test_example_digest.py).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
"$ROOT/.venv/bin/sis2fhir" sync "$ROOT/examples/district" --as-of 2026-03-31 --out "$OUT/out" --workers 1 >/dev/null
(cd "$OUT/out" && sha256sum */*.ndjson) > "$ROOT/tests/fixtures/example-output.sha256"
echo "record-example-digest: $(wc -l < "$ROOT/tests/fixtures/example-output.sha256") files"
