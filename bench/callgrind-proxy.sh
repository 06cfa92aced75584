#!/usr/bin/env bash
# Instructions per proxied request of `shoal proxy --worker-threads 1`,
# counted by callgrind: repeatable where wall-clock throughput on a shared
# 2-core machine is not. Needs valgrind and wrk (Debian packages).
#
# Counters are zeroed after a 1 s warm-up, so only the measured load counts.
#
#   bench/callgrind-proxy.sh            # prints requests, instructions, per request
#   CALLGRIND_KEEP=/tmp/cg.out bench/callgrind-proxy.sh   # also keeps the profile
#   SHOAL_BIN=/path/to/other/shoal bench/callgrind-proxy.sh # another build (A/B)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${SHOAL_BIN:-}" ]; then
    bin=$SHOAL_BIN
else
    cargo build --release -p shoal >/dev/null
    bin=target/release/shoal
fi
work=$(mktemp -d)
# `start` runs in a command substitution (a subshell), so each process's
# id goes to a file: a variable set there would be lost and it would leak.
cleanup() {
    for f in "$work"/*.pid; do [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT

# Starts "$@" with stdout to $work/$name and waits for its "listening on" URL.
start() {
    local name=$1; shift
    "$@" >"$work/$name" 2>/dev/null &
    echo $! >"$work/$name.pid"
    for _ in $(seq 1 300); do
        url=$(grep -o 'listening on http://[0-9.:]*' "$work/$name" | head -1 | cut -d' ' -f3 || true)
        [ -n "$url" ] && { echo "$url"; return; }
        sleep 0.1
    done
    echo "$name did not start" >&2; exit 1
}

registry=$(start registry "$bin" server --in-memory --http-addr 127.0.0.1:0 --dns-addr 127.0.0.1:0 --log-level warn)
start backend "$bin" hello --port 0 --name web --register "$registry" --log-level warn >/dev/null
proxy=$(start proxy valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
    "$bin" proxy --registry "$registry" --listen 127.0.0.1:0 --stats-addr 127.0.0.1:0 --worker-threads 1 --log-level error)
pid=$(cat "$work/proxy.pid")
# Warm up (connections, pools, route caches), then count only the load.
wrk -t1 -c8 -d1s -H 'Host: web.localhost' "$proxy/json" >/dev/null
callgrind_control -z "$pid" >/dev/null 2>&1
requests=$(wrk -t1 -c8 -d8s -H 'Host: web.localhost' "$proxy/json" | awk '/requests in/ {print $1}')
callgrind_control -d "$pid" >/dev/null 2>&1
kill -TERM "$pid"
for _ in $(seq 1 100); do [ -s "$work/callgrind.out" ] && break; sleep 0.1; done
sleep 1
dump=$(ls "$work"/callgrind.out.* | head -1)
[ -n "${CALLGRIND_KEEP:-}" ] && cp "$dump" "$CALLGRIND_KEEP"
total=$(callgrind_annotate "$dump" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "requests=$requests instructions=$total per_request=$((total / requests))"
