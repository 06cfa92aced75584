#!/usr/bin/env bash
# Builds shoal-bench in release mode and runs the template-engine benchmark:
# render time of a consul-template-style nginx template over 1,000 services
# x 10 instances, side by side with Go's text/template when `go` is on PATH
# (Debian: apt-get install golang-go).
#
#   bench/template.sh                               # default settings
#   bench/template.sh --services 100 --runs 50      # extra arguments go to `shoal-bench template`
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p shoal-bench
exec target/release/shoal-bench template "$@"
