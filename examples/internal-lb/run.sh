#!/usr/bin/env bash
# Internal load balancing end to end: payment (shoal hello --upstream)
# calls validation through the proxy. A call made while validation has no
# instance must wait and succeed once one starts; then validation scales
# 1 -> 3 -> 1 under a load loop of payment calls, none of which may fail.
cd "$(dirname "$0")/../.."
. examples/lib.sh
ensure_image
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-internallb}"
file=examples/internal-lb/docker-compose.yml
dc() { docker-compose -p "$COMPOSE_PROJECT_NAME" -f "$file" "$@"; }
cleanup() { dc down -v -t 1 >/dev/null 2>&1 || true; }
trap cleanup EXIT

dc up -d --scale validation=0
url="http://127.0.0.1:$(dc port proxy 8080 | cut -d: -f2)"
wait_until 60 "payment answers through the proxy" \
  curl -sf --max-time 5 -H 'Host: payment.localhost' "$url/json"

# One call while validation has no instance: it must still be waiting 2 s later.
out="$(mktemp)"
t0=$(now_ms)
curl -s --max-time 60 -o "$out" -w '%{http_code}' -H 'Host: payment.localhost' "$url/upstream" >"$out.code" &
call=$!
sleep 2
if ! kill -0 "$call" 2>/dev/null; then
  echo "FAILED: the call returned while validation had no instance: $(cat "$out.code") $(cat "$out")" >&2
  exit 1
fi
t1=$(now_ms)
dc up -d --scale validation=1
wait "$call" || true
t2=$(now_ms)
code="$(cat "$out.code")"
if [ "$code" != 200 ] || ! grep -q '"name":"validation"' "$out"; then
  echo "FAILED: the waiting call got $code: $(cat "$out")" >&2
  exit 1
fi
rm -f "$out" "$out.code"
echo "internal-lb: a payment call waited $(( t2 - t0 )) ms (validation started $(( t1 - t0 )) ms in), then answered 200 by validation"

load_start "$url/upstream" payment.localhost
dc up -d --scale validation=3
sleep 3
dc up -d --scale validation=1 -t 5
sleep 1
load_stop
echo "internal-lb: payment -> validation under scaling 1 -> 3 -> 1: $LOAD_OK answered, $LOAD_FAILED failed"
[ "$LOAD_OK" -gt 0 ] || { echo "FAILED: the load loop answered nothing" >&2; exit 1; }
[ "$LOAD_FAILED" -eq 0 ] || { echo "FAILED: $LOAD_FAILED calls failed" >&2; exit 1; }
echo "internal-lb: OK"
