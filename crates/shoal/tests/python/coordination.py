"""Coordination scenarios run by a real Consul client library against a
real shoal server: `python3 coordination.py HOST PORT SCENARIO`.

The library is whichever `consul` package is first on PYTHONPATH (the test
harness points it at py-consul or python-consul2, installed by
scripts/test). Each scenario raises on the first wrong answer; every wait is
bounded.
"""

import base64
import json
import sys
import threading
import time
import urllib.error
import urllib.request

import consul


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Raw:
    """Plain HTTP for what a client library does not wrap."""

    def __init__(self, host, port):
        self.base = f"http://{host}:{port}"

    def call(self, method, path, body=None):
        data = body.encode() if isinstance(body, str) else body
        req = urllib.request.Request(self.base + path, data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read().decode(), lower(resp.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), lower(e.headers)


def lower(headers):
    """Header names in lower case (HTTP names are case-insensitive)."""
    return {k.lower(): v for k, v in headers.items()}


def sessions_basic(c, raw):
    sid = c.session.create(name="basic", ttl=10)
    _, info = c.session.info(sid)
    check(info["ID"] == sid and info["TTL"] == "10s", f"info: {info}")
    check(info["Behavior"] == "release", f"behavior: {info}")
    check(info["LockDelay"] == 15_000_000_000, f"lock delay: {info}")
    check(info["NodeChecks"] == ["serfHealth"], f"checks: {info}")
    renewed = c.session.renew(sid)
    check(renewed["ID"] == sid, f"renew: {renewed}")
    _, listed = c.session.list()
    check(any(s["ID"] == sid for s in listed), f"list: {listed}")
    _, on_node = c.session.node(info["Node"])
    check(any(s["ID"] == sid for s in on_node), f"node: {on_node}")
    check(c.session.destroy(sid) is True, "destroy answers true")
    _, gone = c.session.info(sid)
    check(gone is None, f"destroyed session still there: {gone}")
    try:
        c.session.renew(sid)
        raise AssertionError("renewing a destroyed session must be a 404")
    except consul.NotFound:
        pass
    # A blocking read of the sessions wakes on a change.
    index, _ = c.session.list()
    woke = {}

    def watch():
        woke["index"], woke["list"] = c.session.list(index=index, wait="20s")

    t = threading.Thread(target=watch)
    t.start()
    time.sleep(0.3)
    other = c.session.create(name="wake")
    t.join(25)
    check(not t.is_alive(), "blocking session list did not return")
    check(int(woke["index"]) > int(index), f"index did not move: {woke}")
    check(any(s["ID"] == other for s in woke["list"]), "new session not listed")


def ttl_expiry_hands_lock_over(c, raw):
    holder = c.session.create(name="holder", ttl=10, lock_delay=0)
    contender = c.session.create(name="contender", lock_delay=0)
    check(c.kv.put("service/leader", "me", acquire=holder) is True, "holder acquires")
    check(c.kv.put("service/leader", "you", acquire=contender) is False, "lock is held")
    index, entry = c.kv.get("service/leader")
    check(entry["Session"] == holder and entry["LockIndex"] == 1, f"entry: {entry}")
    started = time.monotonic()
    # The contender waits as lock clients do: blocking reads until the key
    # has no session, then acquires. The holder never renews.
    acquired = False
    while time.monotonic() - started < 40:
        index, entry = c.kv.get("service/leader", index=index, wait="5s")
        if entry is not None and not entry.get("Session"):
            acquired = c.kv.put("service/leader", "you", acquire=contender)
            if acquired:
                break
    took = time.monotonic() - started
    check(acquired, "contender never acquired the lock")
    check(took >= 15, f"the lock moved after {took:.1f}s, before the TTL (x2) ran out")
    _, gone = c.session.info(holder)
    check(gone is None, "an expired session must be gone")
    _, entry = c.kv.get("service/leader")
    check(entry["Session"] == contender and entry["LockIndex"] == 2, f"entry: {entry}")


def delete_behavior(c, raw):
    sid = c.session.create(name="eph", behavior="delete", lock_delay=0)
    check(c.kv.put("eph/key", "x", acquire=sid), "acquire")
    c.session.destroy(sid)
    _, entry = c.kv.get("eph/key")
    check(entry is None, f"a delete session's key must go with it: {entry}")


def lock_delay(c, raw):
    first = c.session.create(name="first", lock_delay=3)
    second = c.session.create(name="second", lock_delay=0)
    check(c.kv.put("ld/key", "1", acquire=first), "first acquires")
    c.session.destroy(first)
    _, entry = c.kv.get("ld/key")
    check(entry is not None and not entry.get("Session"), f"released: {entry}")
    check(c.kv.put("ld/key", "2", acquire=second) is False, "refused during lock-delay")
    wait_until(lambda: c.kv.put("ld/key", "2", acquire=second), 6, "lock-delay to end")
    # A normal release starts no lock-delay.
    check(c.kv.put("ld/key", "3", release=second), "release")
    third = c.session.create(name="third", lock_delay=0)
    check(c.kv.put("ld/key", "4", acquire=third), "acquire right after a release")


def session_on_critical_check(c, raw):
    c.agent.service.register("web", service_id="web-1", port=80, check=consul.Check.ttl("30s"))
    check_id = "service:web-1"
    c.agent.check.ttl_pass(check_id)
    sid = c.session.create(name="tied", checks=["serfHealth", check_id], lock_delay=0)
    check(c.kv.put("tied/key", "x", acquire=sid), "acquire")
    c.agent.check.ttl_fail(check_id)
    _, gone = c.session.info(sid)
    check(gone is None, "a session must be invalidated when its check goes critical")
    _, entry = c.kv.get("tied/key")
    check(not entry.get("Session"), f"lock must be released: {entry}")
    # And a session cannot be created on a critical check.
    try:
        c.session.create(name="late", checks=[check_id])
        raise AssertionError("a session on a critical check must be refused")
    except consul.ConsulException as e:
        check("critical" in str(e), f"message: {e}")


def b64(s):
    return base64.b64encode(s.encode()).decode()


def txn(c, raw):
    c.kv.put("txn/c", "old")
    ops = [
        {"KV": {"Verb": "set", "Key": "txn/a", "Value": b64("1")}},
        {"KV": {"Verb": "set", "Key": "txn/b", "Value": b64("2")}},
        {"KV": {"Verb": "cas", "Key": "txn/c", "Value": b64("3"), "Index": 999999}},
    ]
    try:
        c.txn.put(ops)
        raise AssertionError("a transaction with a stale cas must be refused")
    except consul.ConsulException as e:
        check("409" in str(e) and '"OpIndex":2' in str(e).replace(" ", ""), f"409: {e}")
    for key in ("txn/a", "txn/b"):
        _, entry = c.kv.get(key)
        check(entry is None, f"{key} must be rolled back, found {entry}")
    _, entry = c.kv.get("txn/c")
    check(entry["Value"] == b"old", f"txn/c changed: {entry}")
    ok = c.txn.put(ops[:2] + [{"KV": {"Verb": "get", "Key": "txn/c"}}])
    check(ok["Errors"] is None and len(ok["Results"]) == 3, f"results: {ok}")
    check(ok["Results"][2]["KV"]["Value"] == b64("old"), f"get result: {ok}")
    check(ok["Results"][0]["KV"]["Value"] is None, "a set's result carries no value")
    too_many = [{"KV": {"Verb": "get", "Key": "txn/a"}}] * 129
    status, body, _ = raw.call("PUT", "/v1/txn", json.dumps(too_many))
    check(status == 413 and "too many operations (129 > 128)" in body, f"{status} {body}")
    status, body, _ = raw.call("PUT", "/v1/txn", json.dumps(too_many[:128]))
    check(status == 200, f"128 operations must pass: {status} {body}")


def events(c, raw):
    index, _ = c.event.list()
    got = {}

    def watch():
        got["index"], got["events"] = c.event.list(index=index, wait="20s")

    t = threading.Thread(target=watch)
    t.start()
    time.sleep(0.3)
    fired = c.event.fire("deploy", "v2")
    check(fired["Name"] == "deploy" and fired["ID"], f"fire: {fired}")
    t.join(25)
    check(not t.is_alive(), "blocking event list did not return")
    names = [e["Name"] for e in got["events"]]
    check("deploy" in names, f"events: {got}")
    # py-consul decodes the base64 payload, python-consul2 leaves it.
    payload = got["events"][-1]["Payload"]
    check(payload in (b64("v2"), b"v2"), f"payload: {got['events'][-1]}")
    c.event.fire("other")
    _, only = c.event.list(name="deploy")
    check(all(e["Name"] == "deploy" for e in only), f"name filter: {only}")
    # A node filter that does not match this agent: fired, not kept.
    c.event.fire("elsewhere", node="^no-such-node$")
    _, listed = c.event.list(name="elsewhere")
    check(listed == [], f"filtered event kept: {listed}")


def maintenance_and_agent_health(c, raw):
    c.agent.service.register("api", service_id="api-1", port=81, check=consul.Check.ttl("30s"))
    cid = "service:api-1"
    # (action, status of /name/api and /id/api-1, text body)
    steps = [
        (lambda: c.agent.check.ttl_pass(cid), 200, "passing"),
        (lambda: c.agent.check.ttl_warn(cid), 429, "warning"),
        (lambda: c.agent.check.ttl_fail(cid), 503, "critical"),
        (lambda: c.agent.check.ttl_pass(cid), 200, "passing"),
        (lambda: c.agent.maintenance("true", "upgrading"), 503, "critical"),
        (lambda: c.agent.maintenance("false"), 200, "passing"),
    ]
    for i, (action, code, text) in enumerate(steps):
        action()
        for path in ("/v1/agent/health/service/name/api", "/v1/agent/health/service/id/api-1"):
            status, body, _ = raw.call("GET", path + "?format=text")
            check((status, body) == (code, text), f"step {i} {path}: {status} {body}")
        status, body, _ = raw.call("GET", "/v1/agent/health/service/name/api")
        check(status == code and json.loads(body)[0]["AggregatedStatus"] == text, f"json {i}: {body}")
    status, body, _ = raw.call("GET", "/v1/agent/health/service/name/nope?format=text")
    check((status, body) == (404, "ServiceName nope Not Found"), f"unknown: {status} {body}")
    status, body, _ = raw.call("GET", "/v1/agent/health/service/id/nope")
    check(status == 404, f"unknown id: {status} {body}")
    status, body, _ = raw.call("GET", "/v1/agent/health/service/name/")
    check(status == 400 and "Missing service Name" in body, f"missing: {status} {body}")


def bad_input(c, raw):
    # (method, path, body, status, message part) — Consul's own codes.
    cases = [
        ("PUT", "/v1/kv/x?acquire=00000000-0000-0000-0000-000000000000", "v", 500, "invalid session"),
        ("PUT", "/v1/session/create", '{"TTL": "5s"}', 500, "Invalid Session TTL"),
        ("PUT", "/v1/session/create", '{"TTL": "25h"}', 500, "Invalid Session TTL"),
        ("PUT", "/v1/session/create", '{"TTL": "soon"}', 500, "Session TTL 'soon' invalid"),
        ("PUT", "/v1/session/create", '{"Behavior": "explode"}', 500, "Invalid Behavior"),
        ("PUT", "/v1/session/create", '{"Node": "ghost"}', 500, "Missing node registration"),
        ("PUT", "/v1/session/create", "{not json", 400, "Request decode failed"),
        ("GET", "/v1/session/create", None, 405, "not allowed"),
        ("PUT", "/v1/session/renew/ghost", None, 404, "Session id 'ghost' not found"),
        ("PUT", "/v1/session/destroy/", None, 400, "Missing session"),
        ("PUT", "/v1/txn", "[{\"KV\": {\"Verb\": \"frob\"}}]", 400, "unknown KV verb"),
        ("PUT", "/v1/agent/maintenance", None, 400, "Missing value for enable"),
    ]
    for method, path, body, status, part in cases:
        got, text, headers = raw.call(method, path, body)
        check(got == status and part in text, f"{method} {path}: {got} {text!r}")
    # Every read Consul indexes carries X-Consul-Index, 404s included.
    for path in ("/v1/kv/missing", "/v1/session/info/ghost", "/v1/session/list", "/v1/event/list"):
        _, _, headers = raw.call("GET", path)
        check("x-consul-index" in headers, f"{path}: no X-Consul-Index in {headers}")
    _, info = c.session.info("ghost")
    check(info is None, "an unknown session reads as None")


def agent_self(c, raw):
    me = c.agent.self()
    check(me["DebugConfig"]["SessionTTLMin"] == "10s", f"self: {me.get('DebugConfig')}")
    status, body, _ = raw.call("GET", "/v1/coordinate/datacenters")
    check(status == 200 and json.loads(body)[0]["Coordinates"] == [], body)
    status, body, _ = raw.call("GET", "/v1/coordinate/nodes")
    check(status == 200 and json.loads(body) == [], body)
    node = me["Config"]["NodeName"]
    status, body, _ = raw.call("GET", f"/v1/catalog/node-services/{node}")
    check(status == 200 and json.loads(body)["Node"]["Node"] == node, body)
    members = c.agent.members()
    check(any(m["Name"] == node for m in members), f"members: {members}")


def prepared_queries(c, raw):
    c.agent.service.register("db", service_id="db-1", port=5432, tags=["primary"])
    c.agent.service.register("db", service_id="db-2", port=5433, tags=["replica"])
    body = {"Name": "db-primary", "Service": {"Service": "db", "Tags": ["primary"], "OnlyPassing": False}}
    status, text, _ = raw.call("POST", "/v1/query", json.dumps(body))
    check(status == 200, f"create: {status} {text}")
    qid = json.loads(text)["ID"]
    for ref in (qid, "db-primary"):
        status, text, headers = raw.call("GET", f"/v1/query/{ref}/execute")
        check(status == 200 and "x-consul-index" in headers, f"execute {ref}: {status} {text}")
        nodes = json.loads(text)["Nodes"]
        check([n["Service"]["ID"] for n in nodes] == ["db-1"], f"execute {ref}: {nodes}")
    status, text, _ = raw.call("GET", "/v1/query")
    check(status == 200 and json.loads(text)[0]["ID"] == qid, text)
    status, text, _ = raw.call("POST", "/v1/query", json.dumps({"Service": {}}))
    check(status == 500 and "Must provide a Service name" in text, f"{status} {text}")
    status, _, _ = raw.call("DELETE", f"/v1/query/{qid}")
    check(status == 200, "delete")
    status, text, _ = raw.call("GET", f"/v1/query/{qid}")
    check(status == 404, f"deleted query: {status} {text}")


SCENARIOS = {f.__name__: f for f in [
    sessions_basic, ttl_expiry_hands_lock_over, delete_behavior, lock_delay,
    session_on_critical_check, txn, events, maintenance_and_agent_health,
    bad_input, agent_self, prepared_queries,
]}


def main():
    host, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    c = consul.Consul(host=host, port=port)
    SCENARIOS[name](c, Raw(host, port))
    print(f"ok: {name} with {consul.__file__}")


if __name__ == "__main__":
    main()
