#!/usr/bin/env bash
# Runs every property/fuzz test of the workspace (test functions named
# `fuzz_*`) with many more cases than the test suite does, bounded in time.
#
#   bench/fuzz.sh                    # 20,000 cases per test, at most 30 min
#   CASES=200000 FUZZ_TIME=2h bench/fuzz.sh
#   bench/fuzz.sh -p shoal-catalog   # extra arguments go to cargo test
#
# In the test suite each fuzz test runs proptest's default 256 cases (or
# $PROPTEST_CASES). A failure prints the minimal input and proptest
# records it under the crate's proptest-regressions/: commit that file, it
# is the regression corpus every later run replays first.
set -euo pipefail
cd "$(dirname "$0")/.."

cases=${CASES:-20000}
limit=${FUZZ_TIME:-30m}
scope=(--workspace)
[ $# -gt 0 ] && scope=("$@")

echo "bench/fuzz.sh: PROPTEST_CASES=$cases, at most $limit"
cargo build --release --tests "${scope[@]}"
status=0
PROPTEST_CASES=$cases timeout --foreground --signal=INT "$limit" \
  cargo test --release "${scope[@]}" fuzz_ || status=$?
if [ "$status" = 124 ]; then
  # The time bound, not a failure: every test that finished passed.
  echo "bench/fuzz.sh: stopped after $limit (no failure found until then)" >&2
  status=0
fi
exit "$status"
