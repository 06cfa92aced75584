#!/usr/bin/env bash
# The Let's-Chat-style demo end to end: shoal server, agent and proxy in
# containers, `shoal hello` as the app, scaled 1 -> 5 -> 1 with
# docker-compose under a load loop through the proxy; fails on any failed
# request. Run from anywhere; everything it starts is removed on exit.
cd "$(dirname "$0")/../.."
. examples/lib.sh
ensure_image
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-hello}"
file=examples/hello-compose/docker-compose.yml
dc() { docker-compose -p "$COMPOSE_PROJECT_NAME" -f "$file" "$@"; }
cleanup() { dc down -v -t 1 >/dev/null 2>&1 || true; }
trap cleanup EXIT

dc up -d --scale app=1
port="$(dc port proxy 8080 | cut -d: -f2)"
url="http://127.0.0.1:$port"
wait_until 60 "the first instance answers through the proxy" \
  curl -sf --max-time 5 -H 'Host: hello.localhost' "$url/"
echo "hello-compose: the proxy answers on $url (Host: hello.localhost)"

load_start "$url/json" hello.localhost
t0=$(now_ms)
dc up -d --scale app=5
instances() { test "$(hostnames "$url" hello.localhost "$2")" "$1" "$3"; }
wait_until 60 "five instances answer" instances -ge 20 5
t1=$(now_ms)
echo "hello-compose: 'up --scale app=5' to all five routed: $(( t1 - t0 )) ms"
dc up -d --scale app=1 -t 5
wait_until 60 "back to one instance" instances -eq 10 1
t2=$(now_ms)
echo "hello-compose: 'up --scale app=1' to one routed: $(( t2 - t1 )) ms"
load_stop
echo "hello-compose: load loop through the proxy: $LOAD_OK answered, $LOAD_FAILED failed"
[ "$LOAD_OK" -gt 0 ] || { echo "FAILED: the load loop answered nothing" >&2; exit 1; }
[ "$LOAD_FAILED" -eq 0 ] || { echo "FAILED: $LOAD_FAILED requests failed" >&2; exit 1; }
echo "hello-compose: OK"
