#!/usr/bin/env bash
# Runs the proxy's fuzz/property tests (`fuzz_*`) longer than CI does.
#   bench/fuzz-proxy.sh            # 20,000 cases per parser, 500 raw-socket cases
#   CASES=100000 bench/fuzz-proxy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${CASES:-20000}
PROPTEST_CASES=$cases cargo test -p shoal-proxy fuzz_
PROPTEST_CASES=$((cases / 40)) cargo test -p shoal --test proxy_fuzz
