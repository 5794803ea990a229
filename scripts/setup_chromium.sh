#!/usr/bin/env bash
# Install Debian's chromium, which tests/dashboard_output.rs uses to open the feature dashboards' HTML
# headlessly (no console errors, a screenshot of the top-examples table). Idempotent.
# Without chromium that test is skipped, unless CI is set (then it fails).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  echo "chromium present: $(chromium --version 2>/dev/null | head -1)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
echo "setup_chromium: installing Debian's chromium with apt-get (apt-get update first)"
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y chromium
chromium --version
