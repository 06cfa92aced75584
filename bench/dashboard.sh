#!/usr/bin/env bash
# Builds shoal in release mode and runs the dashboard benchmark in headless
# Chromium: first meaningful paint with 10,000 services, and the server's
# CPU and RSS with 20 dashboards open while the catalog changes. Needs
# what scripts/test installs (Debian's chromium and chromium-driver,
# Selenium in target/pyclients/selenium). Note `uptime`: the machine may
# be busy.
#
#   bench/dashboard.sh                          # defaults
#   bench/dashboard.sh --tabs 5 --seconds 10    # extra arguments go to bench/dashboard.py
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p shoal
sel="${CARGO_TARGET_DIR:-target}/pyclients/selenium"
[ -d "$sel/selenium" ] || python3 -m pip install --quiet --disable-pip-version-check --target "$sel" selenium
uptime
PYTHONPATH="$sel:crates/shoal/tests/python" exec python3 bench/dashboard.py "${CARGO_TARGET_DIR:-target}/release/shoal" "$@"
