#!/usr/bin/env bash
# Compiles profiles/ with SUSHI (--snapshot), copies the generated StructureDefinitions, ValueSets, CodeSystems
# and the Measure (not the examples) into src/sis2fhir/data/profiles/, the package data the validator reads, and
# assembles the FHIR NPM package (profiles/package/ and profiles/package.tgz, scripts/build-ig-package.py).
# Usage: scripts/build-profiles.sh [PROFILES_DIR] [PACKAGE_DATA_DIR]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROFILES="${1:-$ROOT/profiles}"
DATA="${2:-$ROOT/src/sis2fhir/data/profiles}"
SUSHI="$ROOT/.tools/node_modules/.bin/sushi"
if [[ -x "$ROOT/.venv/bin/python" ]]; then
  PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
else
  PYTHON="${PYTHON:-python3}"
fi

die() { printf 'build-profiles: error: %s\n' "$*" >&2; exit 1; }

[[ -x "$SUSHI" ]] || die "SUSHI is not installed at $SUSHI; run scripts/install-fhir-tools.sh"
[[ -f "${HOME:?HOME must be set}/.fhir/packages/hl7.fhir.r4.core#4.0.1/package/package.json" ]] ||
  die "hl7.fhir.r4.core#4.0.1 is not in $HOME/.fhir/packages; run scripts/install-fhir-tools.sh"
[[ -f "$PROFILES/sushi-config.yaml" ]] || die "no sushi-config.yaml in $PROFILES"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# SUSHI cannot reach packages.fhir.org from here and warns that its automatic dependencies
# (hl7.fhir.uv.tools, hl7.terminology, hl7.fhir.uv.extensions) failed to load; the FSH uses none of them.
if ! "$SUSHI" build "$PROFILES" --snapshot >"$log" 2>&1; then
  cat "$log" >&2
  die "SUSHI reported errors (see above)"
fi
if ! grep -q '[^0-9]0 Errors' "$log"; then
  cat "$log" >&2
  die "SUSHI did not report 0 errors (see above)"
fi

generated="$PROFILES/fsh-generated/resources"
mkdir -p "$DATA"
find "$DATA" -maxdepth 1 -name '*.json' -delete
shopt -s nullglob
copied=0
for f in "$generated"/StructureDefinition-*.json "$generated"/ValueSet-*.json "$generated"/CodeSystem-*.json \
  "$generated"/Measure-*.json; do
  cp "$f" "$DATA/"
  copied=$((copied + 1))
done
((copied > 0)) || die "SUSHI generated no StructureDefinition, ValueSet or CodeSystem in $generated"
printf 'build-profiles: %d resources in %s\n' "$copied" "$DATA"
"$PYTHON" "$ROOT/scripts/build-ig-package.py" "$PROFILES"
