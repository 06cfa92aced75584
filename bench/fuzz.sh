#!/usr/bin/env bash
# Runs every fuzz/property test of the workspace (the `fuzz_*` tests) for
# longer than CI does: PROPTEST_CASES cases per property (default 20000;
# CI runs 256). Failures are shrunk and saved under each crate's
# proptest-regressions/, which is committed as the regression corpus.
#
#   bench/fuzz.sh                 # 20000 cases per property
#   PROPTEST_CASES=200000 bench/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${PROPTEST_CASES:-20000}"
echo "fuzz: PROPTEST_CASES=$PROPTEST_CASES"
exec cargo test --workspace --release -- fuzz_ "$@"
