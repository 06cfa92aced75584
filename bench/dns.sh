#!/usr/bin/env bash
# Builds shoal and shoal-bench in release mode, installs dnsperf (the load
# generator) and dnsmasq (the server shoal is compared with) when missing,
# then runs the DNS benchmark: SRV lookups per second of a 100-instance
# service, shoal vs dnsmasq serving the same records.
#
#   bench/dns.sh                         # default settings
#   bench/dns.sh --seconds 5 --rounds 1  # extra arguments go to `shoal-bench dns`
#   bench/dns.sh --cpus 0                # both servers pinned to CPU 0
#
# Installing needs root and apt-get (Debian); otherwise the script says
# what to install and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

have() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

missing=()
have dnsperf || missing+=(dnsperf)
have dnsmasq || missing+=(dnsmasq-base)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "missing: ${missing[*]}; install them, e.g. on Debian: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "installing ${missing[*]} ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

cargo build --release -p shoal -p shoal-bench
exec target/release/shoal-bench dns "$@"
