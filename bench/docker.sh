#!/usr/bin/env bash
# Builds shoal and shoal-bench in release mode, then runs the Docker
# registrator benchmark: 20 containers of a FROM-scratch image of shoal
# (no pulls), each timed from `docker start` returning to the first request
# through `shoal dev`'s proxy that it answers. Needs a Docker engine.
# Extra arguments go to `shoal-bench docker` (e.g. --containers 20).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p shoal -p shoal-bench
exec target/release/shoal-bench docker "$@"
