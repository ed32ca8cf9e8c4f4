#!/usr/bin/env bash
# System packages the test suite needs beyond Python: Debian's Chromium, for the browser test
# (tests/serving/test_browser.py drives /usr/bin/chromium; no browser is ever downloaded).
# One place for both `make test` and CI (.ci/run). Idempotent: does nothing when present.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-test-deps: Chromium is missing and this is not a Debian/Ubuntu system;" \
       "install Chromium so that 'chromium' is on PATH (the browser test needs it)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install-test-deps: Chromium is missing; run as root: apt-get install -y chromium" >&2
    exit 1
  fi
fi
echo "install-test-deps: installing Debian's chromium (for the browser test)" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
