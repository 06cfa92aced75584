#!/usr/bin/env bash
# Builds shoal and shoal-bench in release mode, then runs the agent
# benchmark: one `shoal agent` with 10,000 HTTP checks every 10 s against
# local backends; reports its CPU, RSS and the spread of check runs.
# Extra arguments go to `shoal-bench agent` (e.g. --checks 10000 --interval 10 --intervals 3).
set -euo pipefail
cd "$(dirname "$0")/.."

# 10,000 registrations and probes need more than 1,024 sockets.
need=16384
current=$(ulimit -n)
if [ "$current" != unlimited ] && [ "$current" -lt "$need" ]; then
    hard=$(ulimit -Hn)
    if [ "$hard" = unlimited ] || [ "$hard" -ge "$need" ]; then
        ulimit -n "$need"
    else
        ulimit -n "$hard"
    fi
fi

cargo build --release -p shoal -p shoal-bench
exec target/release/shoal-bench agent "$@"
