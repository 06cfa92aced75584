#!/usr/bin/env bash
# Builds shoal and shoal-bench in release mode, then runs the registry
# benchmark: durable registrations/s, KV puts/s and blocking-query wake-up
# delay against `shoal server` on the embedded store. Extra arguments go to
# `shoal-bench registry` (e.g. --clients 64 --count 20000 --watchers 1000 --rounds 5).
set -euo pipefail
cd "$(dirname "$0")/.."

# 1,000 watchers + 64 clients need well over 1,024 sockets in this process
# and in the server it starts (which inherits the limit).
need=4096
current=$(ulimit -n)
if [ "$current" != unlimited ] && [ "$current" -lt "$need" ]; then
    hard=$(ulimit -Hn)
    if [ "$hard" = unlimited ] || [ "$hard" -ge "$need" ]; then
        ulimit -n "$need"
    else
        ulimit -n "$hard"
        echo "note: open-file limit raised only to $hard (hard limit); shoal-bench checks what it needs" >&2
    fi
fi
echo "open-file limit: $(ulimit -n)"

cargo build --release -p shoal -p shoal-bench
exec target/release/shoal-bench registry "$@"
