#!/usr/bin/env bash
# Builds shoal and shoal-bench in release mode, installs what the
# throughput and edge benchmarks compare against (nginx, HAProxy) and load
# with (wrk, and h2load from nghttp2-client for edge) when missing, then
# runs the load-balancer benchmarks.
#
#   bench/proxy.sh                          # throughput, time-to-route, churn
#   bench/proxy.sh throughput --seconds 10  # one; extra arguments go to it
#   bench/proxy.sh time-to-route --iterations 200
#   bench/proxy.sh churn --seconds 30
#   bench/proxy.sh edge                     # TLS: HTTPS, HTTP/2, handshakes/s
#   bench/proxy.sh edge --only nginx,haproxy --phases https,h2
#
# Installing needs root and apt-get (Debian); otherwise the script says
# what to install and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

which=${1:-all}
[ $# -gt 0 ] && shift
case "$which" in
    all)
        if [ $# -gt 0 ]; then
            echo "extra arguments need one benchmark: $0 throughput|time-to-route|churn|edge ARGS..." >&2
            exit 2
        fi
        ;;
    throughput | time-to-route | churn | edge) ;;
    *)
        echo "usage: $0 [all|throughput|time-to-route|churn|edge] [ARGS...]" >&2
        exit 2
        ;;
esac

# `have PROGRAM`: on PATH or in an sbin directory (nginx and haproxy live there).
have() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

# `install_tools [edge]`: nginx, HAProxy and wrk; for edge also h2load
# (nghttp2-client) and openssl (the certificate).
install_tools() {
    local missing=()
    have nginx || missing+=(nginx-light)
    have haproxy || missing+=(haproxy)
    have wrk || missing+=(wrk)
    if [ "${1:-}" = edge ]; then
        have h2load || missing+=(nghttp2-client)
        have openssl || missing+=(openssl)
    fi
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "missing: ${missing[*]}." >&2
        echo "install them, e.g. on Debian: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "installing ${missing[*]} ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
        # Releases without nginx-light: the full package has the same binary.
        missing=("${missing[@]/nginx-light/nginx}")
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

if [ "$which" = all ] || [ "$which" = throughput ]; then
    install_tools
elif [ "$which" = edge ]; then
    install_tools edge
    # wrk, h2load and the handshake loop keep up to a few hundred sockets open.
    # The soft limit only: HAProxy raises its own up to the hard one.
    if [ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -lt 4096 ]; then
        ulimit -Sn 4096 2>/dev/null || true
    fi
fi

cargo build --release -p shoal -p shoal-bench

if [ "$which" = all ]; then
    for bench in throughput time-to-route churn; do
        target/release/shoal-bench proxy "$bench"
    done
else
    exec target/release/shoal-bench proxy "$which" "$@"
fi
