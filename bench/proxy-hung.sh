#!/usr/bin/env bash
# Throughput of `shoal proxy` while one of three instances hangs
# (SIGSTOP: its sockets still accept, nothing answers). Builds shoal in
# release mode; needs wrk. Bounded: one warm-up and one measured wrk run.
#
#   bench/proxy-hung.sh                          # 20 s measured, default proxy flags
#   SECONDS_MEASURED=30 bench/proxy-hung.sh --upstream-timeout 1s   # extra args go to shoal proxy
#   SHOAL_BIN=/path/to/shoal bench/proxy-hung.sh # another binary (e.g. an older build)
#
# Prints requests/s with all three answering, then with one stopped, and
# the load average next to each figure.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SHOAL_BIN:-}" ]; then
    cargo build --release -p shoal >/dev/null
fi
bin=${SHOAL_BIN:-target/release/shoal}
seconds=${SECONDS_MEASURED:-20}
command -v wrk >/dev/null || { echo "wrk is missing (Debian: apt-get install -y wrk)" >&2; exit 1; }
work=$(mktemp -d)
cleanup() {
    for f in "$work"/*.pid; do
        [ -e "$f" ] || continue
        kill -CONT "$(cat "$f")" 2>/dev/null || true
        kill "$(cat "$f")" 2>/dev/null || true
    done
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
for i in 1 2 3; do
    start "web$i" "$bin" hello --port 0 --name web --id "web-$i" --register "$registry" --log-level warn >/dev/null
done
proxy=$(start proxy "$bin" proxy --registry "$registry" --listen 127.0.0.1:0 --stats-addr 127.0.0.1:0 --log-level error "$@")
for _ in $(seq 1 100); do
    n=$(curl -s "$registry/v1/health/service/web?passing" | grep -o '"ID":"web-' | wc -l)
    [ "$n" -ge 3 ] && break
    sleep 0.1
done
load() { cut -d' ' -f1-3 /proc/loadavg; }
rate() { wrk -t2 -c32 -d"$1"s --timeout 60s -H 'Host: web.localhost' "$proxy/json" | awk '/Requests\/sec/ {print $2}'; }
wrk -t2 -c32 -d2s -H 'Host: web.localhost' "$proxy/json" >/dev/null
echo "all three answering: $(rate 5) req/s (load average $(load))"
kill -STOP "$(cat "$work/web2.pid")"
echo "web-2 stopped, ${seconds} s: $(rate "$seconds") req/s (load average $(load)) proxy flags: ${*:-(defaults)}"
kill -CONT "$(cat "$work/web2.pid")"
