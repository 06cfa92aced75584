#!/usr/bin/env bash
# Builds shoal and shoal-bench in release mode, installs etcd (Debian's
# etcd-server and etcd-client) when missing, then runs `shoal-bench etcd`:
# two shoal servers on a 3-member etcd cluster on 127.0.0.1. Extra
# arguments go to the benchmark (e.g. --clients 64 --watchers 1000).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client
    else
        echo "etcd is missing: install Debian's etcd-server and etcd-client" >&2
        exit 1
    fi
fi

# 1,000 watchers + 64 clients need well over 1,024 sockets in this process
# and in the servers it starts (which inherit the limit).
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
exec target/release/shoal-bench etcd "$@"
