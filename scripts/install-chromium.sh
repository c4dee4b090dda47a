#!/usr/bin/env bash
# Chromium (Debian packages chromium and chromium-driver) for the chart tests, which drive it with Playwright
# (executable_path=/usr/bin/chromium: `playwright install` is never run, its download is not wanted). Quiet and
# quick when already there; as root on a clean machine (CI) it installs the packages; otherwise it says what to do.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Chromium is missing (/usr/bin/chromium): as root, run: apt-get install -y chromium chromium-driver" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
