#!/usr/bin/env bash
# Instructions per proxied request of nginx (1 worker, upstream keepalive)
# and HAProxy (1 thread, http-reuse always) counted by callgrind the same
# way as bench/callgrind-proxy.sh counts shoal's: one `shoal hello`
# backend, wrk with 8 connections for 8 s, total instructions of the
# balancer process during the load (counters zeroed after a 1 s warm-up)
# divided by the requests wrk completed. Needs valgrind, wrk, nginx, haproxy.
#
#   bench/callgrind-contenders.sh         # prints one line per balancer
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p shoal >/dev/null
bin=target/release/shoal
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$bin" hello --port 0 --name web --log-level warn >"$work/backend" 2>/dev/null &
pids+=($!)
for _ in $(seq 1 100); do grep -q 'listening on' "$work/backend" && break; sleep 0.1; done
backend=$(grep -o 'listening on http://[0-9.:]*' "$work/backend" | head -1 | cut -d' ' -f3)
backend=${backend#http://}

nginx_port=$(free_port)
cat >"$work/nginx.conf" <<CONF
worker_processes 1;
master_process off;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $work/body;
    proxy_temp_path $work/proxy;
    fastcgi_temp_path $work/fastcgi;
    uwsgi_temp_path $work/uwsgi;
    scgi_temp_path $work/scgi;
    upstream web { server $backend; keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$nginx_port;
        location / { proxy_pass http://web; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
CONF
haproxy_port=$(free_port)
cat >"$work/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    http-reuse always
frontend web
    bind 127.0.0.1:$haproxy_port
    default_backend web
backend web
    balance roundrobin
    server s1 $backend
CONF

# measure NAME PORT COMMAND...: runs COMMAND under callgrind, loads it, counts.
measure() {
    local name=$1 port=$2; shift 2
    valgrind --tool=callgrind --callgrind-out-file="$work/$name.out" "$@" >"$work/$name.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 300); do curl -s -o /dev/null "http://127.0.0.1:$port/json" && break; sleep 0.1; done
    wrk -t1 -c8 -d1s -H 'Host: web.localhost' "http://127.0.0.1:$port/json" >/dev/null
    callgrind_control -z "$pid" >/dev/null 2>&1
    local requests
    requests=$(wrk -t1 -c8 -d8s -H 'Host: web.localhost' "http://127.0.0.1:$port/json" | awk '/requests in/ {print $1}')
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    local total
    total=$(callgrind_annotate "$(ls "$work/$name.out".* | head -1)" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    echo "$name requests=$requests instructions=$total per_request=$((total / requests))"
}
measure nginx "$nginx_port" /usr/sbin/nginx -p "$work" -c "$work/nginx.conf"
measure haproxy "$haproxy_port" /usr/sbin/haproxy -f "$work/haproxy.cfg" -db
