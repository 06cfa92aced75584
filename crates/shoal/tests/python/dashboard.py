"""The dashboard (/ui/) in a real headless Chromium, driven by Selenium.

Usage: dashboard.py SHOAL_BIN SCENARIO

Each scenario starts its own shoal processes on free loopback ports,
drives the page as a person would (clicks, typing, confirm dialogs) and
checks the page against the HTTP API. Every wait is bounded; the script
exits non-zero with the reason on the first failure.
"""

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

import chromium

SHOAL = sys.argv[1]
WAIT = 30.0  # seconds any single expectation may take (a bound, not a target)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A shoal process that announced its listeners on stdout."""

    def __init__(self, *args):
        self.args = args
        self.p = subprocess.Popen(
            [SHOAL, *args, "--log-level", "warn"] if args[0] in ("dev", "server", "proxy") else [SHOAL, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def wait_http(self, port):
        deadline = time.time() + WAIT
        while time.time() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/ui/")
                if c.getresponse().status == 200:
                    return self
            except OSError:
                pass
            if self.p.poll() is not None:
                raise SystemExit(f"shoal {self.args} exited with {self.p.returncode}")
            time.sleep(0.1)
        raise SystemExit(f"shoal {self.args}: /ui/ not served on {port} within {WAIT} s")

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def dev(*extra):
    api, dns, proxy = free_port(), free_port(), free_port()
    p = Proc("dev", "--in-memory", "--http-addr", f"127.0.0.1:{api}", "--dns-addr",
             f"127.0.0.1:{dns}", "--listen", f"127.0.0.1:{proxy}", *extra)
    p.wait_http(api)
    return p, api, proxy


def call(port, method, path, body=None, token=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    data = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
    c.request(method, path, data, headers={"X-Consul-Token": token} if token else {})
    r = c.getresponse()
    text = r.read().decode()
    if r.status >= 300:
        raise SystemExit(f"{method} {path}: {r.status} {text}")
    return json.loads(text) if text and text[0] in "[{" else text


def register(port, sid, name, svc_port, **extra):
    body = {"ID": sid, "Name": name, "Address": "127.0.0.1", "Port": svc_port}
    body.update(extra)
    call(port, "PUT", "/v1/agent/service/register", body)


def browser(width=1280, height=900):
    return chromium.browser(width, height, page_load_timeout=WAIT)


def until(what, fn, timeout=WAIT):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            v = fn()
            if v:
                return v
        except (StaleElementReferenceException, WebDriverException) as e:
            last = e
        time.sleep(0.1)
    raise SystemExit(f"timed out after {timeout} s waiting for: {what} (last error: {last})")


def click(d, by, sel):
    """Clicks what `sel` finds now (the page redraws rows as the catalog moves)."""
    until(f"click {sel}", lambda: d.find_element(by, sel).click() or True)


def shot(d, name):
    """Saves what the page looks like now, for a person to look at."""
    where = os.environ.get("SHOAL_SCREENSHOTS")
    if where:
        os.makedirs(where, exist_ok=True)
        time.sleep(0.3)  # let the last redraw land
        d.save_screenshot(os.path.join(where, name + ".png"))


def through_proxy(proxy, host, n=20):
    """Which instances answered `n` requests for `host` through the proxy."""
    seen = set()
    for _ in range(n):
        c = http.client.HTTPConnection("127.0.0.1", proxy, timeout=10)
        c.request("GET", "/json", headers={"Host": host})
        r = c.getresponse()
        body = r.read().decode()
        if r.status == 200:
            seen.add(json.loads(body).get("instance") or json.loads(body).get("name"))
    return seen


def text_of(d, css):
    try:
        return " ".join(e.text for e in d.find_elements(By.CSS_SELECTOR, css))
    except StaleElementReferenceException:
        return ""


def console_errors(d):
    # Failed requests are logged by the browser as "network" errors; the
    # page expects some (a 404 for a key being created, a refused
    # connection while the server restarts). Script errors are defects.
    bad = [e for e in d.get_log("browser") if e["level"] == "SEVERE" and e.get("source") != "network"]
    if bad:
        raise SystemExit(f"errors in the browser console: {bad}")


# ---------------------------------------------------------------- scenarios

def with_acls():
    """Under default deny the page shows nothing until a token is given in
    its token field; then the services that token may read, live."""
    p, api, _ = dev("--acl-enabled", "--acl-default-policy", "deny")
    d = browser()
    try:
        root = call(api, "PUT", "/v1/acl/bootstrap")["SecretID"]
        call(api, "PUT", "/v1/agent/service/register",
             {"ID": "web-1", "Name": "web", "Address": "127.0.0.1", "Port": 7001}, token=root)
        rules = 'service_prefix "" { policy = "read" }\nnode_prefix "" { policy = "read" }'
        call(api, "PUT", "/v1/acl/policy", {"Name": "viewer", "Rules": rules}, token=root)
        viewer = call(api, "PUT", "/v1/acl/token", {"Policies": [{"Name": "viewer"}]}, token=root)["SecretID"]
        d.get(f"http://127.0.0.1:{api}/ui/")
        until("the refusal said", lambda: "ACL token" in d.find_element(By.ID, "conn").text)
        assert not d.find_elements(By.CSS_SELECTOR, 'tr[data-service="web"]')
        box = d.find_element(By.ID, "acl-token")
        box.send_keys(viewer, Keys.ENTER)
        until("web listed with the token", lambda: d.find_elements(By.CSS_SELECTOR, 'tr[data-service="web"]'))
        until("connected", lambda: "Live" in d.find_element(By.ID, "conn").text)
        call(api, "PUT", "/v1/agent/service/register",
             {"ID": "api-1", "Name": "api", "Address": "127.0.0.1", "Port": 7002}, token=root)
        until("a later registration shows live", lambda: d.find_elements(By.CSS_SELECTOR, 'tr[data-service="api"]'))
        # The token stays for the next visit, and is never in the page's URL.
        d.get(f"http://127.0.0.1:{api}/ui/")
        until("still listed after a reload", lambda: d.find_elements(By.CSS_SELECTOR, 'tr[data-service="web"]'))
        assert viewer not in d.current_url
        shot(d, "acl-token")
        console_errors(d)
    finally:
        d.quit()
        p.stop()


def live_catalog():
    """Instances coming and going show up without a reload, in the list,
    on the service's page and in the event timeline."""
    p, api, _ = dev("--demo", "3")
    d = browser()
    try:
        d.get(f"http://127.0.0.1:{api}/")  # shoal dev sends / to the dashboard
        until("redirect to /ui/", lambda: d.current_url.endswith("/ui/"))
        until("connected", lambda: "Live" in d.find_element(By.ID, "conn").text)
        until("the demo's 3 instances", lambda: "3" in text_of(d, 'tr[data-service="hello"] td:nth-of-type(2)'))
        t0 = time.time()
        register(api, "checkout-1", "checkout", 7001, Tags=["v2", "blue"])
        row = until("checkout listed", lambda: d.find_elements(By.CSS_SELECTOR, 'tr[data-service="checkout"]'))
        print(f"a registration appeared on the page {1000 * (time.time() - t0):.0f} ms after the API call was made (polled every 100 ms)")
        assert "v2" in row[0].text, row[0].text
        register(api, "checkout-2", "checkout", 7002, Check={"TTL": "30s", "Status": "critical"})
        until("2 instances, 1 critical", lambda: "2" in text_of(d, 'tr[data-service="checkout"] td:nth-of-type(2)')
              and "1" in text_of(d, 'tr[data-service="checkout"] td:nth-of-type(5)'))
        shot(d, "services")
        # Search narrows the list, keyboard only.
        register(api, "other-1", "payments", 7003)
        until("payments listed", lambda: d.find_elements(By.CSS_SELECTOR, 'tr[data-service="payments"]'))
        box = d.find_element(By.ID, "svc-filter")
        box.send_keys("check")
        until("filtered to checkout", lambda: not d.find_elements(By.CSS_SELECTOR, 'tr[data-service="payments"]'))
        assert d.find_elements(By.CSS_SELECTOR, 'tr[data-service="checkout"]')
        box.send_keys(Keys.CONTROL, "a", Keys.DELETE)
        click(d, By.LINK_TEXT, "checkout")
        until("two instance rows", lambda: len(d.find_elements(By.CSS_SELECTOR, "tr[data-instance]")) == 2)
        assert "127.0.0.1:7002" in d.find_element(By.CSS_SELECTOR, 'tr[data-instance="checkout-2"]').text
        call(api, "PUT", "/v1/agent/service/deregister/checkout-1")
        until("checkout-1 gone from the page", lambda: len(d.find_elements(By.CSS_SELECTOR, "tr[data-instance]")) == 1)
        call(api, "PUT", "/v1/agent/check/pass/service:checkout-2")
        until("checkout-2 passing on the page", lambda: "passing" in text_of(d, 'tr[data-instance="checkout-2"] th'))
        shot(d, "service")
        click(d, By.LINK_TEXT, "Events")
        until("timeline", lambda: "deregistered checkout/checkout-1" in text_of(d, "ol.events"))
        events = text_of(d, "ol.events")
        assert "registered checkout/checkout-2" in events, events
        assert "critical → passing" in events, events
        shot(d, "events")
        click(d, By.LINK_TEXT, "Nodes")
        until("the node listed", lambda: d.find_elements(By.CSS_SELECTOR, "tr[data-node]"))
        shot(d, "nodes")
        console_errors(d)
    finally:
        d.quit()
        p.stop()


def kv_editing():
    """Browse, create, edit with CAS (a conflicting edit is shown, never
    silently overwritten), delete with confirmation."""
    p, api, _ = dev()
    d = browser()
    try:
        call(api, "PUT", "/v1/kv/app/db/url", "postgres://one")
        call(api, "PUT", "/v1/kv/app/name", "shop")
        d.get(f"http://127.0.0.1:{api}/ui/#/kv/")
        until("folder app/", lambda: d.find_elements(By.LINK_TEXT, "app/"))
        click(d, By.LINK_TEXT, "app/")
        until("keys of app/", lambda: d.find_elements(By.LINK_TEXT, "db/") and d.find_elements(By.LINK_TEXT, "name"))
        shot(d, "kv-folder")
        click(d, By.LINK_TEXT, "name")
        box = until("editor", lambda: d.find_elements(By.ID, "kv-value"))[0]
        until("value loaded", lambda: d.find_element(By.ID, "kv-value").get_attribute("value") == "shop")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys("shop-from-page")
        # Someone else writes meanwhile.
        call(api, "PUT", "/v1/kv/app/name", "shop-from-api")
        click(d, By.CSS_SELECTOR, "form.kv-edit button[type=submit]")
        conflict = until("conflict shown", lambda: d.find_elements(By.CSS_SELECTOR, ".conflict"))[0]
        assert "shop-from-api" in conflict.text, conflict.text
        shot(d, "kv-conflict")
        assert call(api, "GET", "/v1/kv/app/name?raw") == "shop-from-api", "the page overwrote a newer value"
        # The user chooses to overwrite: now it is written.
        conflict.find_element(By.XPATH, ".//button[contains(., 'Overwrite')]").click()
        until("overwritten", lambda: call(api, "GET", "/v1/kv/app/name?raw") == "shop-from-page")
        # A save still in flight when the user moves on must leave them
        # where they went (it used to send them back to the key): every
        # answer is held back 1.5 s, and the user leaves at once.
        until("editor shows the overwrite",
              lambda: d.find_element(By.ID, "kv-value").get_attribute("value") == "shop-from-page")
        slow = {"offline": False, "latency": 1500, "downloadThroughput": -1, "uploadThroughput": -1}
        d.execute_cdp_cmd("Network.enable", {})
        d.execute_cdp_cmd("Network.emulateNetworkConditions", slow)
        box = d.find_element(By.ID, "kv-value")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys("slow-save")
        click(d, By.CSS_SELECTOR, "form.kv-edit button[type=submit]")
        d.get(f"http://127.0.0.1:{api}/ui/#/kv/app/")
        until("saved while away", lambda: call(api, "GET", "/v1/kv/app/name?raw") == "slow-save")
        time.sleep(2.5)  # the save's answer has reached the page
        d.execute_cdp_cmd("Network.emulateNetworkConditions", dict(slow, latency=0))
        where = d.execute_script("return location.hash")
        assert where == "#/kv/app/", f"a finished save moved the page to {where}"
        # Create a key through the form.
        d.get(f"http://127.0.0.1:{api}/ui/#/kv/app/")
        new = until("create field", lambda: d.find_elements(By.ID, "kv-new"))[0]
        new.send_keys("feature/flag")
        new.send_keys(Keys.ENTER)
        box = until("new key editor", lambda: d.find_elements(By.ID, "kv-value"))[0]
        box.send_keys("on")
        click(d, By.CSS_SELECTOR, "form.kv-edit button[type=submit]")
        until("created", lambda: call_or_none(api, "/v1/kv/app/feature/flag?raw") == "on")
        # Delete: cancelling the confirmation keeps it, accepting deletes it.
        click(d, By.XPATH, "//button[.='Delete']")
        d.switch_to.alert.dismiss()
        time.sleep(0.5)
        assert call_or_none(api, "/v1/kv/app/feature/flag?raw") == "on", "deleted without confirmation"
        click(d, By.XPATH, "//button[.='Delete']")
        d.switch_to.alert.accept()
        until("deleted", lambda: call_or_none(api, "/v1/kv/app/feature/flag?raw") is None)
        console_errors(d)
    finally:
        d.quit()
        p.stop()


def call_or_none(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    text = r.read().decode()
    return None if r.status == 404 else text


def hello_backends(api, service, n=2):
    """`n` real `shoal hello` instances registered as `service`-1..n."""
    backends = []
    for i in range(1, n + 1):
        port = free_port()
        backends.append(Proc("hello", "--port", str(port), "--name", f"{service}-{i}"))
        register(api, f"{service}-{i}", service, port)
    return backends


def operations():
    """Maintenance and deregistration from the page, through the API."""
    p, api, proxy = dev()
    backends = hello_backends(api, "api")
    d = browser()
    try:
        until("both in the proxy's rotation", lambda: len(through_proxy(proxy, "api.localhost")) == 2)
        d.get(f"http://127.0.0.1:{api}/ui/#/service/api")
        until("two rows", lambda: len(d.find_elements(By.CSS_SELECTOR, "tr[data-instance]")) == 2)
        click(d, By.CSS_SELECTOR, 'tr[data-instance="api-1"] button[aria-label="Start maintenance of api-1"]')
        until("maintenance check on the server", lambda: any(
            c["CheckID"] == "_service_maintenance:api-1" and c["Status"] == "critical"
            for c in call(api, "GET", "/v1/health/checks/api")))
        until("marked on the page", lambda: "maintenance" in text_of(d, 'tr[data-instance="api-1"] th'))
        shot(d, "service-maintenance")
        # Out of the proxy's rotation: every answer now comes from api-2.
        until("api-1 out of rotation", lambda: len(through_proxy(proxy, "api.localhost")) == 1)
        answered = through_proxy(proxy, "api.localhost", 30)
        assert len(answered) == 1 and "api-1" not in str(answered), answered
        click(d, By.CSS_SELECTOR, 'tr[data-instance="api-1"] button[aria-label="End maintenance of api-1"]')
        until("maintenance ended", lambda: not any(
            c["CheckID"].startswith("_service_maintenance") for c in call(api, "GET", "/v1/health/checks/api")))
        click(d, By.CSS_SELECTOR, 'tr[data-instance="api-2"] button[aria-label="Deregister api-2"]')
        d.switch_to.alert.dismiss()
        time.sleep(0.5)
        assert len(call(api, "GET", "/v1/catalog/service/api")) == 2, "deregistered without confirmation"
        click(d, By.CSS_SELECTOR, 'tr[data-instance="api-2"] button[aria-label="Deregister api-2"]')
        d.switch_to.alert.accept()
        until("deregistered on the server", lambda: [s["ServiceID"] for s in call(api, "GET", "/v1/catalog/service/api")] == ["api-1"])
        until("gone from the page", lambda: len(d.find_elements(By.CSS_SELECTOR, "tr[data-instance]")) == 1)
        # Node maintenance.
        d.get(f"http://127.0.0.1:{api}/ui/#/nodes")
        node = until("node row", lambda: d.find_elements(By.CSS_SELECTOR, "tr[data-node]"))[0].get_attribute("data-node")
        click(d, By.CSS_SELECTOR, f'button[aria-label="Start maintenance of node {node}"]')
        until("node maintenance", lambda: any(c["CheckID"] == "_node_maintenance" for c in call(api, "GET", f"/v1/health/node/{node}")))
        click(d, By.CSS_SELECTOR, f'button[aria-label="End maintenance of node {node}"]')
        until("node maintenance ended", lambda: not any(c["CheckID"] == "_node_maintenance" for c in call(api, "GET", f"/v1/health/node/{node}")))
        console_errors(d)
    finally:
        d.quit()
        for b in backends:
            b.stop()
        p.stop()


def traffic():
    """The traffic view follows requests through the proxy about every second."""
    p, api, proxy = dev()
    backends = hello_backends(api, "shop")
    d = browser()
    try:
        d.get(f"http://127.0.0.1:{api}/ui/#/traffic")
        stop = time.time() + 20

        def load():
            n = 0
            while time.time() < stop and n < 4000:
                try:
                    c = http.client.HTTPConnection("127.0.0.1", proxy, timeout=5)
                    c.request("GET", "/", headers={"Host": "shop.localhost"})
                    c.getresponse().read()
                except OSError:
                    pass
                n += 1
                time.sleep(0.01)

        t = threading.Thread(target=load)
        t.start()
        row = until("shop's traffic row", lambda: d.find_elements(By.CSS_SELECTOR, 'tr[data-traffic="shop"]'))
        def rate():
            cells = d.find_elements(By.CSS_SELECTOR, 'tr[data-traffic="shop"] td')
            return cells and cells[0].text not in ("–", "0.0") and float(cells[1].text.replace(",", "")) > 0
        until("a 2xx rate above 0", rate)
        until("a row per instance", lambda: len(d.find_elements(By.CSS_SELECTOR, "tr[data-traffic-instance]")) == 2
              and "not routed" not in text_of(d, "tr[data-traffic-instance]"))
        assert d.find_elements(By.CSS_SELECTOR, "canvas#chart-total")
        # The chart moved: some pixels of the line are drawn above its floor.
        drawn = d.execute_script("""
          const c = document.getElementById('chart-total'), x = c.getContext('2d');
          const px = x.getImageData(0, 0, c.width, c.height - 12).data;
          let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++;
          return n;""")
        assert drawn > 50, f"the requests chart shows nothing ({drawn} pixels)"
        shot(d, "traffic")
        # An instance dies under load: the proxy ejects it, the page marks
        # it and the timeline says so.
        backends[0].stop()
        until("ejected instance marked", lambda: "ejected" in text_of(d, 'tr[data-traffic-instance="shop-1"]'))
        shot(d, "traffic-ejected")
        stop = 0
        t.join()
        click(d, By.LINK_TEXT, "Events")
        until("ejection in the timeline", lambda: "proxy ejected shop/shop-1" in text_of(d, "ol.events"))
        click(d, By.LINK_TEXT, "Traffic")
        # A dead instance: its check goes critical and the traffic row says so.
        call(api, "PUT", "/v1/agent/service/register", {"ID": "shop-2", "Name": "shop", "Address": "127.0.0.1",
             "Port": int(backends[1].args[2]), "Check": {"TTL": "30s", "Status": "critical"}})
        until("critical instance marked", lambda: "critical" in text_of(d, 'tr[data-traffic-instance="shop-2"]')
              and "not routed" in text_of(d, 'tr[data-traffic-instance="shop-2"]'))
        shot(d, "traffic-critical")
        console_errors(d)
    finally:
        d.quit()
        for b in backends:
            b.stop()
        p.stop()


def reconnects():
    """The page survives the server restarting, says so, and catches up."""
    api = free_port()
    args = ("server", "--in-memory", "--http-addr", f"127.0.0.1:{api}", "--dns-addr", f"127.0.0.1:{free_port()}")
    p = Proc(*args).wait_http(api)
    d = browser()
    try:
        d.get(f"http://127.0.0.1:{api}/ui/")
        until("live", lambda: "Live" in d.find_element(By.ID, "conn").text)
        register(api, "a-1", "alpha", 7201)
        until("alpha", lambda: d.find_elements(By.CSS_SELECTOR, 'tr[data-service="alpha"]'))
        p.stop()
        until("says it reconnects", lambda: "Reconnecting" in d.find_element(By.ID, "conn").text)
        shot(d, "reconnecting")
        p = Proc(*args).wait_http(api)
        register(api, "b-1", "beta", 7202)
        until("live again", lambda: "Live" in d.find_element(By.ID, "conn").text)
        until("beta after the restart", lambda: d.find_elements(By.CSS_SELECTOR, 'tr[data-service="beta"]'))
        # The restarted in-memory server lost alpha: the page must not keep it.
        until("alpha gone", lambda: not d.find_elements(By.CSS_SELECTOR, 'tr[data-service="alpha"]'))
        # No proxy in a server: the traffic view says where to look.
        click(d, By.LINK_TEXT, "Traffic")
        until("no-proxy note", lambda: "--stats-addr" in d.find_element(By.ID, "main").text)
    finally:
        d.quit()
        p.stop()


def without_stream():
    """Against a server without the change stream (as a Consul): blocking
    queries still show registrations and health changes live."""
    api = free_port()
    p = Proc("server", "--in-memory", "--no-stream", "--http-addr", f"127.0.0.1:{api}",
             "--dns-addr", f"127.0.0.1:{free_port()}").wait_http(api)
    d = browser()
    try:
        d.get(f"http://127.0.0.1:{api}/ui/")
        until("live", lambda: "Live" in d.find_element(By.ID, "conn").text)
        register(api, "web-1", "web", 7501, Check={"TTL": "30s", "Status": "passing"})
        until("web listed", lambda: d.find_elements(By.CSS_SELECTOR, 'tr[data-service="web"]'))
        call(api, "PUT", "/v1/agent/check/fail/service:web-1")
        until("critical counted", lambda: "1" in text_of(d, 'tr[data-service="web"] td:nth-of-type(5)'))
        click(d, By.LINK_TEXT, "web")
        until("instance with its address", lambda: "127.0.0.1:7501" in text_of(d, 'tr[data-instance="web-1"]'))
        call(api, "PUT", "/v1/agent/service/deregister/web-1")
        until("gone", lambda: not d.find_elements(By.CSS_SELECTOR, 'tr[data-instance="web-1"]'))
        console_errors(d)
    finally:
        d.quit()
        p.stop()


def many_tabs():
    """A browser keeps 6 connections per server: pages in background tabs
    let go of theirs, so the 8th tab opened still goes live, and a tab
    shown again follows the catalog again."""
    p, api, _ = dev()
    d = browser()
    try:
        d.get(f"http://127.0.0.1:{api}/ui/")
        d.execute_script("localStorage.setItem('shoal.hiddenGraceMs', '300')")
        d.refresh()
        until("first tab live", lambda: "Live" in d.find_element(By.ID, "conn").text)
        first = d.current_window_handle
        for i in range(8):
            d.switch_to.new_window("tab")
            d.get(f"http://127.0.0.1:{api}/ui/")
            until(f"tab {i + 2} live", lambda: "Live" in d.find_element(By.ID, "conn").text)
            time.sleep(0.5)  # past the grace: the tab just hidden lets go
        d.switch_to.window(first)
        register(api, "late-1", "late", 7601)
        until("the first tab follows again", lambda: d.find_elements(By.CSS_SELECTOR, 'tr[data-service="late"]'))
        console_errors(d)
    finally:
        d.quit()
        p.stop()


def proxy_stats_page():
    """`shoal proxy` serves the traffic view on its --stats-addr."""
    p, api, _ = dev()
    stats = free_port()
    px = Proc("proxy", "--registry", f"http://127.0.0.1:{api}", "--listen", f"127.0.0.1:{free_port()}",
              "--stats-addr", f"127.0.0.1:{stats}").wait_http(stats)
    d = browser()
    try:
        register(api, "solo-1", "solo", 7301)
        d.get(f"http://127.0.0.1:{stats}/ui/")
        until("traffic view", lambda: "Traffic" in d.find_element(By.CSS_SELECTOR, "h1").text)
        until("solo routed", lambda: d.find_elements(By.CSS_SELECTOR, 'tr[data-traffic="solo"]'))
        shot(d, "proxy-traffic")
        hidden = [li.get_attribute("hidden") for li in d.find_elements(By.CSS_SELECTOR, '#nav [data-need="catalog"]')]
        assert all(h is not None for h in hidden), f"catalog views offered on a proxy: {hidden}"
        console_errors(d)
    finally:
        d.quit()
        px.stop()
        p.stop()


def many_services():
    """10,000 services: the list loads, searches and sorts."""
    p, api, _ = dev()
    d = browser()
    try:
        n = 10000
        def reg(lo, hi):
            c = http.client.HTTPConnection("127.0.0.1", api, timeout=30)
            for i in range(lo, hi):
                body = json.dumps({"Node": "big-node", "Address": "10.1.0.1",
                                   "Service": {"ID": f"svc-{i:05}", "Service": f"svc-{i:05}", "Port": 8000 + i % 1000}})
                c.request("PUT", "/v1/catalog/register", body)
                r = c.getresponse()
                r.read()
                assert r.status == 200, r.status
        threads = [threading.Thread(target=reg, args=(k * n // 8, (k + 1) * n // 8)) for k in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        started = time.time()
        d.get(f"http://127.0.0.1:{api}/ui/")
        until("10,000 counted", lambda: f"of {n:,} services" in d.find_element(By.CSS_SELECTOR, "main").text, timeout=60)
        loaded = time.time() - started
        rows = len(d.find_elements(By.CSS_SELECTOR, "tr[data-service]"))
        shot(d, "services-10000")
        assert rows == 500, f"{rows} rows drawn at once (500 expected, the rest behind a button)"
        box = d.find_element(By.ID, "svc-filter")
        t0 = time.time()
        box.send_keys("svc-09999")
        until("one match", lambda: len(d.find_elements(By.CSS_SELECTOR, "tr[data-service]")) == 1)
        searched = time.time() - t0
        box.send_keys(Keys.CONTROL, "a", Keys.DELETE)
        until("all back", lambda: len(d.find_elements(By.CSS_SELECTOR, "tr[data-service]")) == 500)
        click(d, By.XPATH, "//th/button[contains(., 'Service')]")
        until("sorted descending", lambda: d.find_elements(By.CSS_SELECTOR, "tr[data-service]")[0].get_attribute("data-service") == "svc-09999")
        print(f"10,000 services: listed {loaded:.2f} s after opening the page; a search answered in {searched:.2f} s")
        console_errors(d)
    finally:
        d.quit()
        p.stop()


def accessible():
    """Labels, keyboard focus, contrast; readable on a phone."""
    p, api, _ = dev()
    d = browser(390, 844)
    try:
        register(api, "a-1", "a-service-with-a-rather-long-name-to-wrap", 7401, Tags=["t1", "t2"],
                 Check={"TTL": "30s", "Status": "warning"})
        for view in ("#/services", "#/service/a-service-with-a-rather-long-name-to-wrap", "#/nodes", "#/kv/", "#/traffic", "#/events"):
            d.get(f"http://127.0.0.1:{api}/ui/{view}")
            time.sleep(1.5)
            shot(d, "phone-" + view.strip("#/").split("/")[0])
            problems = d.execute_script(r"""
              const out = [];
              for (const el of document.querySelectorAll('input, select, textarea')) {
                if (!el.closest('label') && !el.getAttribute('aria-label')) out.push('unlabelled ' + el.outerHTML.slice(0, 80));
              }
              for (const b of document.querySelectorAll('button, a')) {
                if (!(b.textContent.trim() || b.getAttribute('aria-label'))) out.push('nameless ' + b.outerHTML.slice(0, 80));
              }
              for (const c of document.querySelectorAll('canvas')) if (!c.getAttribute('aria-label')) out.push('canvas without a label');
              const lum = (rgb) => {
                const [r, g, b] = rgb.match(/\d+(\.\d+)?/g).slice(0, 3).map(Number).map((v) => {
                  v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
                return 0.2126 * r + 0.7152 * g + 0.0722 * b;
              };
              const bgOf = (el) => {
                for (let e = el; e; e = e.parentElement) {
                  const bg = getComputedStyle(e).backgroundColor;
                  if (bg && !bg.startsWith('rgba(0, 0, 0, 0)') && bg !== 'transparent') return bg;
                }
                return 'rgb(255, 255, 255)';
              };
              for (const el of document.querySelectorAll('main *, header *')) {
                if (!el.childNodes.length || ![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
                const fg = lum(getComputedStyle(el).color), bg = lum(bgOf(el));
                const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
                if (ratio < 4.5) out.push(`contrast ${ratio.toFixed(2)} on ${el.tagName}.${el.className}: ${el.textContent.trim().slice(0, 30)}`);
              }
              if (document.documentElement.scrollWidth > window.innerWidth + 1)
                out.push(`page wider than the phone screen: ${document.documentElement.scrollWidth} > ${window.innerWidth}`);
              return out;
            """)
            if problems:
                raise SystemExit(f"{view}: {problems}")
        # Keyboard: on a fresh load the skip link comes first, then the
        # views' links.
        d.get("about:blank")
        d.get(f"http://127.0.0.1:{api}/ui/#/services")
        time.sleep(1)
        ActionChains(d).send_keys(Keys.TAB).perform()
        first = d.switch_to.active_element.get_attribute("textContent")
        assert first == "Skip to content", d.switch_to.active_element.get_attribute("outerHTML")
        ActionChains(d).send_keys(Keys.TAB).perform()
        assert d.switch_to.active_element.get_attribute("href").endswith("#/services")
        console_errors(d)
    finally:
        d.quit()
        p.stop()


SCENARIOS = {f.__name__: f for f in (with_acls, live_catalog, kv_editing, operations, traffic, reconnects, without_stream, many_tabs,
                                    proxy_stats_page, many_services, accessible)}

if __name__ == "__main__":
    SCENARIOS[sys.argv[2]]()
    print(f"{sys.argv[2]}: ok")
