#!/usr/bin/env bash
# Builds shoal and shoal-bench in release mode, installs what the
# throughput benchmark compares against (nginx, HAProxy) and loads with
# (wrk) when missing, then runs the load-balancer benchmarks.
#
#   bench/proxy.sh                          # all three, default settings
#   bench/proxy.sh throughput --seconds 10  # one; extra arguments go to it
#   bench/proxy.sh time-to-route --iterations 200
#   bench/proxy.sh churn --seconds 30
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
            echo "extra arguments need one benchmark: $0 throughput|time-to-route|churn ARGS..." >&2
            exit 2
        fi
        ;;
    throughput | time-to-route | churn) ;;
    *)
        echo "usage: $0 [all|throughput|time-to-route|churn] [ARGS...]" >&2
        exit 2
        ;;
esac

# `have PROGRAM`: on PATH or in an sbin directory (nginx and haproxy live there).
have() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

install_tools() {
    local missing=()
    have nginx || missing+=(nginx-light)
    have haproxy || missing+=(haproxy)
    have wrk || missing+=(wrk)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "missing: ${missing[*]} (nginx, haproxy, wrk)." >&2
        echo "install them, e.g. on Debian: sudo apt-get install -y nginx-light haproxy wrk" >&2
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
fi

cargo build --release -p shoal -p shoal-bench

if [ "$which" = all ]; then
    for bench in throughput time-to-route churn; do
        target/release/shoal-bench proxy "$bench"
    done
else
    exec target/release/shoal-bench proxy "$which" "$@"
fi
