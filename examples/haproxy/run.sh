#!/usr/bin/env bash
# The HAProxy demo end to end: HAProxy on the host (Debian's haproxy)
# started by `shoal render --exec`, which renders haproxy.ctmpl from a
# shoal server in a container and reloads HAProxy (SIGUSR2, master-worker
# mode) on every change; the app is scaled 1 -> 5 -> 1 under a load loop
# addressed by a server_aliases= host name ("exec": the command runs
# under sh -c, and the reload signal must reach HAProxy itself, not sh).
# Fails on any failed request through HAProxy (the app drains: README).
cd "$(dirname "$0")/../.."
. examples/lib.sh
command -v haproxy >/dev/null || { echo "FAILED: haproxy is not installed (apt-get install haproxy)" >&2; exit 1; }
ensure_image
shoal="${SHOAL_BINARY:-target/release/shoal}"
[ -x "$shoal" ] || cargo build --workspace --release --locked -q
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-haproxydemo}"
file=examples/haproxy/docker-compose.yml
dc() { docker-compose -p "$COMPOSE_PROJECT_NAME" -f "$file" "$@"; }
work="$(mktemp -d)"
render_pid=""
cleanup() {
  [ -n "$render_pid" ] && kill "$render_pid" 2>/dev/null && wait "$render_pid" 2>/dev/null
  dc down -v -t 1 >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

dc up -d --scale web=1
registry="127.0.0.1:$(dc port server 8500 | cut -d: -f2)"
passing() { curl -sf "http://$registry/v1/health/service/web?passing" | grep -q '"Port"'; }
wait_until 60 "web registered and passing" passing
# The example's template, on a free port of this host.
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
sed "s/bind 127.0.0.1:8082/bind 127.0.0.1:$port/" examples/haproxy/haproxy.ctmpl >"$work/haproxy.ctmpl"
"$shoal" render --log-level warn --consul-addr "$registry" \
  --template "$work/haproxy.ctmpl:$work/haproxy.cfg" \
  --exec "exec haproxy -W -db -f $work/haproxy.cfg" --exec-reload-signal SIGUSR2 \
  --wait 100ms:500ms >"$work/render.log" 2>&1 &
render_pid=$!
url="http://127.0.0.1:$port"
wait_until 60 "HAProxy answers for www.example.com" \
  curl -sf --max-time 5 -H 'Host: www.example.com' "$url/"
echo "haproxy: HAProxy answers on $url (Host: www.example.com, from the server_aliases= tag)"

load_start "$url/json" www.example.com
t0=$(now_ms)
dc up -d --scale web=5
instances() { test "$(hostnames "$url" www.example.com "$2")" "$1" "$3"; }
diagnose() {
  echo "--- shoal render and HAProxy said:" >&2; tail -30 "$work/render.log" >&2
  echo "--- the rendered configuration:" >&2; cat "$work/haproxy.cfg" >&2
  echo "--- 10 answers through HAProxy (status, time, instance):" >&2
  for _ in $(seq 1 10); do
    curl -s --max-time 5 -o "$work/answer" -w '%{http_code} %{time_total}s ' -H 'Host: www.example.com' "$url/json" >&2 || echo -n "curl-error($?) " >&2
    grep -o '"hostname": *"[^"]*"' "$work/answer" >&2 || echo >&2
  done
  echo "--- each registered instance, directly:" >&2
  curl -sf "http://$registry/v1/health/service/web" | python3 -c '
import json, sys
for e in json.load(sys.stdin):
    s = e["Service"]
    print(s["ID"], s["Address"], s["Port"], [c["Status"] for c in e["Checks"]])' >&2 || true
  echo "--- each registered address from this host, bypassing HAProxy:" >&2
  curl -sf "http://$registry/v1/health/service/web" | python3 -c '
import json, sys
for e in json.load(sys.stdin):
    print(e["Service"]["Address"], e["Service"]["Port"])' | while read -r addr p; do
    echo "$addr:$p $(curl -s --max-time 3 -o /dev/null -w '%{http_code} %{time_total}s' "http://$addr:$p/health" || echo "curl-error($?)")" >&2
  done
  dc ps >&2 || true
}
wait_until 60 "five instances answer through HAProxy" instances -ge 20 5 || { diagnose; exit 1; }
t1=$(now_ms)
echo "haproxy: 'up --scale web=5' to all five routed by HAProxy: $(( t1 - t0 )) ms"
dc up -d --scale web=1 -t 5
wait_until 60 "back to one instance" instances -eq 10 1
t2=$(now_ms)
echo "haproxy: 'up --scale web=1' to one routed: $(( t2 - t1 )) ms"
load_stop
echo "haproxy: load loop through HAProxy: $LOAD_OK answered, $LOAD_FAILED failed"
[ "$LOAD_OK" -gt 0 ] || { echo "FAILED: the load loop answered nothing" >&2; cat "$work/render.log" >&2; exit 1; }
# The app answers for a moment after SIGTERM (SHOAL_HELLO_DRAIN), so
# HAProxy, which learns of a stop only by a re-render and a reload, sends
# nothing to an instance that no longer answers: no request may fail.
if [ "$LOAD_FAILED" -gt 0 ]; then
  echo "FAILED: $LOAD_FAILED of $(( LOAD_OK + LOAD_FAILED )) requests failed through HAProxy" >&2
  diagnose
  exit 1
fi
echo "haproxy: OK"
