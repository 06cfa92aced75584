#!/usr/bin/env bash
# Builds shoal and shoal-bench in release mode and runs the renderer
# benchmark: registration -> reload command p99 (wait 0), `shoal render
# -once` over 1,000 services x 10 instances with Go's text/template on the
# same data beside it (when `go` is on PATH), idle CPU and RSS while
# watching them. Note `uptime` beside the figures: the machine may be busy.
#
#   bench/render.sh                         # default settings
#   bench/render.sh --samples 50 --idle 5s  # extra arguments go to `shoal-bench render`
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p shoal -p shoal-bench
uptime
exec target/release/shoal-bench render "$@"
