#!/usr/bin/env bash
# Make sure Debian's chromium is there for the Playwright browser tests.
set -euo pipefail
for c in "${CHROMIUM_PATH:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
  if [ -n "$c" ] && [ -x "$c" ]; then echo "chromium: $c"; exit 0; fi
done
if command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing Debian's chromium for the browser tests..."
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  exit 0
fi
echo "chromium not found and apt-get is unavailable: install chromium and set CHROMIUM_PATH;" \
     "the browser tests will be skipped until then." >&2
