"""Benchmark (not a test) of the dashboard, in a real headless Chromium.

1. Page load to first meaningful paint with 10,000 services: Chromium's
   performance timing from navigation start to the page's
   `shoal-catalog-shown` mark (the catalog first on screen), and to
   first-contentful-paint, over --loads fresh loads.
2. The server's cost of 20 open dashboards while the catalog changes
   (--writes/s registrations and deregistrations, bounded in count):
   CPU (utime+stime of the shoal process over the window) and RSS, against
   the same window with no dashboard open.

Usage: bench/dashboard.py SHOAL_BIN [--services N] [--tabs N] [--seconds S]
Every loop is bounded in count and time; all traffic stays on 127.0.0.1.
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import threading
import time

import chromium

CLK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def register_many(port, n, threads=8):
    def work(lo, hi):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for i in range(lo, hi):
            body = json.dumps({"Node": "bench-node", "Address": "10.1.0.1",
                               "Service": {"ID": f"svc-{i:05}", "Service": f"svc-{i:05}", "Port": 8000 + i % 1000}})
            c.request("PUT", "/v1/catalog/register", body)
            r = c.getresponse()
            r.read()
            assert r.status == 200, r.status
    ts = [threading.Thread(target=work, args=(k * n // threads, (k + 1) * n // threads)) for k in range(threads)]
    [t.start() for t in ts]
    [t.join() for t in ts]


def churn(port, rate, seconds, stop_at):
    """Registers and deregisters `churn-<i>` at about `rate` writes/s."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    n = 0
    limit = int(rate * seconds) + 1
    started = time.time()
    while time.time() < stop_at and n < limit:
        i = n // 2
        if n % 2 == 0:
            body = json.dumps({"ID": f"churn-{i % 50}", "Name": "churn", "Port": 9000 + i % 50})
            c.request("PUT", "/v1/agent/service/register", body)
        else:
            c.request("PUT", f"/v1/agent/service/deregister/churn-{i % 50}")
        c.getresponse().read()
        n += 1
        wait = started + n / rate - time.time()
        if wait > 0:
            time.sleep(wait)
    return n


def browser():
    return chromium.browser()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("shoal")
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--tabs", type=int, default=20, help="dashboards (one browser each) open at once")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--writes", type=float, default=20, help="catalog writes/s during the CPU window")
    a = ap.parse_args()

    api = free_port()
    server = subprocess.Popen([a.shoal, "dev", "--in-memory", "--http-addr", f"127.0.0.1:{api}",
                               "--dns-addr", f"127.0.0.1:{free_port()}", "--listen", f"127.0.0.1:{free_port()}",
                               "--log-level", "warn"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    d = None
    others = []
    try:
        deadline = time.time() + 30
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", api, timeout=2)
                c.request("GET", "/v1/status/leader")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit("shoal dev did not start within 30 s")
            time.sleep(0.1)
        t0 = time.time()
        register_many(api, a.services)
        print(f"registered {a.services} services in {time.time() - t0:.1f} s")

        d = browser()
        shown, fcp = [], []
        for _ in range(a.loads):
            d.get("about:blank")
            d.get(f"http://127.0.0.1:{api}/ui/")
            end = time.time() + 60
            mark = []
            while not mark and time.time() < end:
                mark = d.execute_script("return performance.getEntriesByName('shoal-catalog-shown').map(e => e.startTime)")
                time.sleep(0.05)
            if not mark:
                raise SystemExit("the catalog was not shown within 60 s")
            shown.append(mark[0])
            p = d.execute_script("return performance.getEntriesByName('first-contentful-paint').map(e => e.startTime)")
            if p:
                fcp.append(p[0])
        print(f"{a.services} services, {a.loads} fresh loads: first contentful paint median {statistics.median(fcp):.0f} ms; "
              f"catalog on screen (first meaningful paint) median {statistics.median(shown):.0f} ms, max {max(shown):.0f} ms")

        def window(label):
            stop_at = time.time() + a.seconds
            c0, t = cpu_seconds(server.pid), time.time()
            writes = churn(api, a.writes, a.seconds, stop_at)
            secs = time.time() - t
            cpu = (cpu_seconds(server.pid) - c0) / secs * 100
            print(f"{label}: server CPU {cpu:.1f} % of one core over {secs:.0f} s with {writes} catalog writes; RSS {rss_mib(server.pid):.0f} MiB")
            return cpu

        d.quit()
        d = None
        time.sleep(2)
        idle = window("no dashboard open")
        rss_idle = rss_mib(server.pid)
        # One browser per dashboard: a browser keeps only 6 connections per
        # server, and a visible page holds one for the stream.
        for i in range(a.tabs):
            b = browser()
            b.get(f"http://127.0.0.1:{api}/ui/" + ("#/services" if i % 2 == 0 else "#/traffic"))
            others.append(b)
        time.sleep(5)
        rss_open = rss_mib(server.pid)
        busy = window(f"{a.tabs} dashboards open")
        print(f"{a.tabs} open dashboards cost the server {busy - idle:.1f} % of one core more; "
              f"RSS {rss_idle:.0f} MiB without them, {rss_open:.0f} MiB with them open")
    finally:
        if d:
            d.quit()
        for b in others:
            b.quit()
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
