#!/usr/bin/env bash
# Builds shoal and shoal-bench in release mode, then runs the coordination
# benchmark against `shoal server` on the embedded store: lock hand-over
# latency (holder releases -> the next of 100 waiters, all on blocking
# queries, holds it; target p99 <= 20 ms) and session renewals/s with
# 10,000 sessions (target >= 2,000/s). Extra arguments go to
# `shoal-bench locks` (e.g. --waiters 100 --handovers 300 --sessions 10000
# --clients 32 --seconds 10; --store etcd: two servers on a 3-member etcd).
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 4096 2>/dev/null || true
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo build --release -p shoal -p shoal-bench
exec target/release/shoal-bench locks "$@"
