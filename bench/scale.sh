#!/usr/bin/env bash
# Builds shoal and shoal-bench in release mode and runs the scale
# benchmark: 10,000 services x 10 instances registered through the API, in
# `shoal dev` and in `shoal server` + `shoal proxy --registry`.
#
#   bench/scale.sh                                   # defaults
#   bench/scale.sh --services 3000 --mode server     # extra arguments go to `shoal-bench scale`
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 65536 2>/dev/null || true
cargo build --release -p shoal -p shoal-bench
exec target/release/shoal-bench scale "$@"
