"""latchkeyd's HTTP device bridge (docs/daemon.md, "The device bridge"): IoT Core's cloudiotdevice v1.

A real broker with the plugin (broker.py) and latchkeyd on the same registry file; latchkeyd's
device listener takes device tokens (PyJWT, keys by python3-cryptography: plugin_common.py) and
passes events and states to the broker through its own MQTT 5 identity. Devices are `requests`
sessions (keep-alive) and curl; backends are paho MQTT 5 subscribers that check the topic, the
payload and IoT Core's attributes (user properties).
"""
import base64
import json
import socket
import sqlite3
import ssl
import subprocess
import time

import pytest

requests = pytest.importorskip("requests")
import paho.mqtt.client as mqtt

from api_common import Daemon, ServiceAccount, service_account
from broker import Broker
from plugin_common import PROJECT, REGION, REGISTRY, close, connect, make_device, publish

DEV_PREFIX = f"/v1/projects/{PROJECT}/locations/{REGION}/registries/{REGISTRY}/devices"


class Bridge:
    """The broker, latchkeyd with its device listener, and helpers to post as a device."""

    def __init__(self, base, opts=None, extra=(), broker_first=True, broker_ca=None):
        o = {"activity_flush": 1}
        o.update(opts or {})
        self.b = Broker(base / "broker", opts=o, start=broker_first)
        self.dev_port_file = base / "lkd" / "devport"
        self.d = Daemon(base / "lkd", db=self.b.db, start=False, extra=[
            "--device-listen", "127.0.0.1:0", "--device-port-file", self.dev_port_file,
            "--broker", f"127.0.0.1:{self.b.tls_port}", "--broker-ca", broker_ca or self.b.ca_path,
            "--publish-wait-ms", "3000", *extra])
        self.d.start()
        self.port = int(self.dev_port_file.read_text())
        self.session = self.new_session()
        if broker_first and broker_ca is None:
            self.wait_bridge()

    def new_session(self):
        s = requests.Session()
        # REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE in the environment would override verify
        s.trust_env = False
        s.verify = str(self.d.ca_path)
        return s

    def wait_bridge(self, timeout=10):
        deadline = time.time() + timeout
        while "bridge: connected" not in self.d.log_text():
            assert time.time() < deadline, self.d.log_text()[-3000:]
            time.sleep(0.05)

    def url(self, dev, tail=""):
        return f"https://127.0.0.1:{self.port}{DEV_PREFIX}/{dev}{tail}"

    def post(self, dev, verb, body, token, session=None):
        h = {} if token is None else {"Authorization": f"Bearer {token}"}
        return (session or self.session).post(self.url(dev, ":" + verb), data=json.dumps(body).encode()
                                              if not isinstance(body, (bytes, str)) else body, headers=h,
                                              timeout=20)

    def event(self, dev, data, token, sub=None, **kw):
        body = {"binaryData": b64(data)}
        if sub is not None:
            body["subFolder"] = sub
        return self.post(dev, "publishEvent", body, token, **kw)

    def state(self, dev, data, token):
        return self.post(dev, "setState", {"state": {"binaryData": b64(data)}}, token)

    def config(self, dev, token, query=""):
        return self.session.get(self.url(dev, "/config" + query), headers={"Authorization": f"Bearer {token}"},
                                timeout=20)

    def backend(self, name="app"):
        secret = self.b.backend(name)
        c = self.b.connect(name, secret, username=f"backend:{name}", protocol=mqtt.MQTTv5)
        assert self.b.subscribe(c, f"latchkey/{PROJECT}/#") == 1
        return c

    def stop(self):
        self.session.close()
        assert self.d.alive(), self.d.log_text()[-3000:]
        self.d.stop()
        self.b.stop()


def b64(data, urlsafe=False):
    return (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(data).decode()


def props(msg):
    return dict(getattr(msg.properties, "UserProperty", []) or [])


def got(c, topic, n=1, timeout=5):
    deadline = time.time() + timeout
    while True:
        msgs = [m for m in c.messages if m.topic == topic]
        if len(msgs) >= n or time.time() > deadline:
            return msgs
        time.sleep(0.02)


def error(r, status, code, *words):
    assert r.status_code == status, (r.status_code, r.text)
    e = r.json()["error"]
    assert e["status"] == code and e["code"] == status, r.text
    for w in words:
        assert w.lower() in e["message"].lower(), (w, r.text)
    return e["message"]


@pytest.fixture
def br(tmp_path):
    x = Bridge(tmp_path)
    yield x
    x.stop()


# ---- what devices send reaches backends as MQTT devices' messages do ----

def test_event_reaches_the_backend_with_iot_cores_attributes(br):
    d = make_device(br.b, "http-dev")
    app = br.backend()
    try:
        t = d.token()
        r = br.event(d.id, b"temp=21", t, sub="alerts")
        assert r.status_code == 200 and r.json() == {}, r.text
        msgs = got(app, d.downstream("events", "alerts"))
        assert [m.payload for m in msgs] == [b"temp=21"]
        assert props(msgs[0]) == {"deviceId": d.id, "deviceNumId": str(d.num_id),
                                  "deviceRegistryLocation": REGION, "deviceRegistryId": REGISTRY,
                                  "projectId": PROJECT, "subFolder": "alerts"}
        assert not msgs[0].retain
        # no subfolder, snake_case, URL-safe base64, by numId: the same device and attributes
        raw = bytes(range(256))
        r = br.post(str(d.num_id), "publishEvent", {"binary_data": b64(raw, urlsafe=True).rstrip("=")}, t)
        assert r.status_code == 200, r.text
        msgs = got(app, d.downstream("events"))
        assert [m.payload for m in msgs] == [raw]
        assert "subFolder" not in props(msgs[0]) and props(msgs[0])["deviceId"] == d.id
        # the same device over MQTT: the same topic and attributes
        c = connect(br.b, d.client_id, t)
        try:
            publish(c, d.topic("events", "alerts"), b"from mqtt", qos=1)
            msgs = got(app, d.downstream("events", "alerts"), n=2)
            assert [m.payload for m in msgs] == [b"temp=21", b"from mqtt"]
            assert props(msgs[0]) == props(msgs[1])
        finally:
            close(c)
    finally:
        close(app)


def test_a_device_with_curl(br):
    d = make_device(br.b, "curl-dev")
    app = br.backend()
    try:
        out = subprocess.run(
            ["curl", "-sS", "--http1.1", "--cacert", str(br.d.ca_path), "-X", "POST",
             "-H", f"authorization: Bearer {d.token()}", "-H", "content-type: application/json",
             "--data", json.dumps({"binary_data": b64(b"hello from curl")}), "-w", "\n%{http_code}",
             br.url(d.id, ":publishEvent")], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        body, status = out.stdout.rsplit("\n", 1)
        assert status == "200" and json.loads(body) == {}, out.stdout
        assert [m.payload for m in got(app, d.downstream("events"))] == [b"hello from curl"]
    finally:
        close(app)


def test_state_is_published_stored_and_timed(br):
    d = make_device(br.b, "state-dev")
    app = br.backend()
    try:
        r = br.state(d.id, b'{"fw":"1.2"}', d.token())
        assert r.status_code == 200 and r.json() == {}, r.text
        msgs = got(app, d.downstream("state"))
        assert [m.payload for m in msgs] == [b'{"fw":"1.2"}']
        assert props(msgs[0])["deviceNumId"] == str(d.num_id)
        # stored as MQTT states are (latchkey devices states list)
        deadline = time.time() + 5
        while True:
            r = d.devices("states", "list", d.id, "--format", "json")
            if r.rc == 0 and r.out.strip() not in ("", "[]"):
                break
            assert time.time() < deadline, r
            time.sleep(0.1)
        states = json.loads(r.out)
        assert base64.b64decode(states[0]["binaryData"]) == b'{"fw":"1.2"}', states
        # lastStateTime and lastEventTime follow (the plugin's activity flush, 1 s here)
        br.event(d.id, b"e", d.token())
        deadline = time.time() + 5
        while True:
            dev = json.loads(d.devices("describe", d.id, "--format", "json").out)
            if dev.get("lastStateTime") and dev.get("lastEventTime"):
                break
            assert time.time() < deadline, dev
            time.sleep(0.2)
    finally:
        close(app)


def test_config_polling_across_versions(br):
    d = make_device(br.b, "cfg-dev")
    t = d.token()
    r = br.config(d.id, t)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == "1" and r.json().get("binaryData", "") == ""
    assert d.devices("configs", "update", d.id, "--config-data", "mode=fast").rc == 0
    for q in ("", "?localVersion=0", "?local_version=1", "?localVersion=1"):
        r = br.config(d.id, t, q)
        assert r.status_code == 200, (q, r.text)
        assert r.json()["version"] == "2" and base64.b64decode(r.json()["binaryData"]) == b"mode=fast", q
        assert "cloudUpdateTime" in r.json()
    # up to date: the same version again, with its data (never an empty config)
    r = br.config(str(d.num_id), t, "?localVersion=2")
    assert r.status_code == 200 and r.json()["version"] == "2", r.text
    assert base64.b64decode(r.json()["binaryData"]) == b"mode=fast"
    # a version that does not exist yet
    error(br.config(d.id, t, "?localVersion=3"), 400, "OUT_OF_RANGE", "3")
    error(br.config(d.id, t, "?localVersion=1&local_version=1"), 400, "INVALID_ARGUMENT")
    error(br.config(d.id, t, "?localVersion=x"), 400, "INVALID_ARGUMENT")
    error(br.config(d.id, t, "?localVersion=-1"), 400, "INVALID_ARGUMENT")
    # lastConfigSendTime is recorded when a newer config was sent
    dev = json.loads(d.devices("describe", d.id, "--format", "json").out)
    assert dev.get("lastConfigSendTime"), dev


# ---- who may call ----

def test_every_token_rule_is_the_brokers(br):
    d = make_device(br.b, "tok-dev")
    other = make_device(br.b, "tok-other")
    now = int(time.time())
    for token, words in [
        (None, ["Authorization"]),
        ("not.a.token", []),
        (d.token(aud="another-project"), ["aud"]),
        (d.token(iat=now - 7200, exp=now - 3600), ["expired"]),
        (d.token(iat=now, exp=now + 86400 * 2), []),     # longer than 24 h
        (d.token(iat=now + 3600, exp=now + 7200), []),   # issued in the future
        (other.token(), []),                             # another device's key
        (d.token()[:-2] + "AA", []),                     # a signature that does not verify
    ]:
        error(br.event(d.id, b"x", token), 401, "UNAUTHENTICATED", *words)
    # an unknown device is told apart from nothing (no enumeration)
    error(br.event("no-such-dev", b"x", d.token()), 401, "UNAUTHENTICATED")
    error(br.event("999999", b"x", d.token()), 401, "UNAUTHENTICATED")
    assert br.event(d.id, b"x", d.token()).status_code == 200


def test_an_expired_credential_and_a_blocked_device(br):
    past = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    d = make_device(br.b, "exp-dev", expiration=past)
    error(br.event(d.id, b"x", d.token()), 401, "UNAUTHENTICATED")
    b = make_device(br.b, "blocked-dev")
    assert br.event(b.id, b"x", b.token()).status_code == 200
    assert b.devices("update", b.id, "--blocked").rc == 0
    error(br.event(b.id, b"x", b.token()), 403, "PERMISSION_DENIED", "blocked")
    error(br.config(b.id, b.token()), 403, "PERMISSION_DENIED", "blocked")
    assert b.devices("update", b.id, "--unblocked").rc == 0
    assert br.event(b.id, b"x", b.token()).status_code == 200


def test_a_removed_key_stops_at_once_and_states_keep_the_cache(br):
    d = make_device(br.b, "key-dev", algs=("ES256", "ES256"))
    t0, t1 = d.token(0), d.token(1)
    for _ in range(3):  # states are stored by the broker: not a change of what auth reads
        assert br.event(d.id, b"e", t0).status_code == 200
        assert br.event(d.id, b"e", t1).status_code == 200
        assert br.state(d.id, b"s", t1).status_code in (200, 429)
    assert d.devices("credentials", "delete", d.id, "0").rc == 0
    error(br.event(d.id, b"x", t0), 401, "UNAUTHENTICATED")
    assert br.event(d.id, b"x", t1).status_code == 200
    # a device deleted and made again under the same id is a new device, with new keys
    assert d.devices("delete", d.id).rc == 0
    error(br.event(d.id, b"x", t1), 401, "UNAUTHENTICATED")
    d2 = make_device(br.b, "key-dev")
    assert br.event(d2.id, b"x", d2.token()).status_code == 200
    error(br.event(d2.id, b"x", t1), 401, "UNAUTHENTICATED")


def test_http_disabled_on_the_registry(br):
    d = make_device(br.b, "nohttp-dev")
    assert br.event(d.id, b"x", d.token()).status_code == 200
    r = br.b.lk("registries", "update", REGISTRY, "--project", PROJECT, "--region", REGION,
                "--no-enable-http-config")
    assert r.rc == 0, r
    error(br.event(d.id, b"x", d.token()), 403, "PERMISSION_DENIED", "HTTP")
    error(br.state(d.id, b"x", d.token()), 403, "PERMISSION_DENIED", "HTTP")
    # MQTT still works: httpConfig is HTTP's alone
    c = connect(br.b, d.client_id, d.token())
    close(c)


def test_admin_credential_on_the_device_listener_and_device_token_on_the_admin_one(br):
    d = make_device(br.b, "surf-dev")
    sa = service_account(br.d, "admin-sa", "admin")
    # a service account's JWT (and its access token) never passes as a device
    error(br.event(d.id, b"x", sa.jwt()), 401, "UNAUTHENTICATED")
    from api_common import Api
    api = Api(br.d, sa, "token")
    error(br.event(d.id, b"x", api.access_token()), 401, "UNAUTHENTICATED")
    # the device listener serves no admin method, and the admin listener no device method
    r = br.session.get(f"https://127.0.0.1:{br.port}{DEV_PREFIX}/{d.id}",
                       headers={"Authorization": f"Bearer {sa.jwt()}"}, timeout=10)
    error(r, 404, "NOT_FOUND")
    r = br.session.post(f"https://127.0.0.1:{br.port}/token", data="grant_type=x", timeout=10)
    error(r, 404, "NOT_FOUND")
    r = br.session.post(f"https://127.0.0.1:{br.d.port}{DEV_PREFIX}/{d.id}:publishEvent",
                        json={"binaryData": b64(b"x")}, headers={"Authorization": f"Bearer {d.token()}"},
                        timeout=10)
    error(r, 401, "UNAUTHENTICATED")


# ---- one rate per device, MQTT and HTTP together ----

def test_one_rate_limit_across_mqtt_and_http(tmp_path):
    x = Bridge(tmp_path, opts={"messages_per_second": 5})
    try:
        d = make_device(x.b, "rate-dev")
        t = d.token()
        # HTTP alone: a burst over 5 in a second gets 429 with Retry-After
        codes = [x.event(d.id, b"x", t) for _ in range(12)]
        limited = [r for r in codes if r.status_code == 429]
        assert limited, [r.status_code for r in codes]
        assert limited[0].headers.get("Retry-After") == "1"
        assert limited[0].json()["error"]["status"] == "RESOURCE_EXHAUSTED"
        assert all(r.status_code in (200, 429) for r in codes)
        # MQTT uses up the second's budget: HTTP is refused in that same second
        c = connect(x.b, d.client_id, t)
        try:
            for attempt in range(5):
                while time.time() % 1 > 0.2:
                    time.sleep(0.01)
                for i in range(5):
                    publish(c, d.topic("events"), b"m%d" % i, qos=1)
                r = x.event(d.id, b"h", t)
                if time.time() % 1 > 0.05 and r.status_code == 429:
                    break
            assert r.status_code == 429, r.text
        finally:
            close(c)
        # and a new second lets it through again
        time.sleep(1.1)
        assert x.event(d.id, b"x", t).status_code == 200
    finally:
        x.stop()


# ---- the broker cannot take it: 503, and nothing is lost silently ----

def test_broker_down_is_503_then_it_recovers(br):
    d = make_device(br.b, "down-dev")
    t = d.token()
    assert br.event(d.id, b"before", t).status_code == 200
    br.b.stop()
    deadline = time.time() + 10
    while True:
        r = br.event(d.id, b"while down", t)
        if r.status_code == 503:
            break
        assert r.status_code == 200 and time.time() < deadline, r.text
        time.sleep(0.1)
    assert r.headers.get("Retry-After") == "1"
    assert r.json()["error"]["status"] == "UNAVAILABLE"
    br.b.start()
    deadline = time.time() + 40  # libmosquitto's reconnect backoff is at most 30 s
    while True:
        r = br.event(d.id, b"after", t)
        if r.status_code == 200:
            break
        assert r.status_code == 503 and time.time() < deadline, r.text
        time.sleep(0.2)
    assert br.d.alive()


def test_a_dropped_bridge_connection_is_made_again_at_once(tmp_path):
    # the broker closes every connection after max_connection (2 s here), the bridge's too
    x = Bridge(tmp_path, opts={"max_connection": 2})
    try:
        d = make_device(x.b, "drop-dev")
        t = d.token()
        down_since, longest, codes = None, 0.0, []
        end = time.time() + 7
        while time.time() < end:
            r = x.event(d.id, b"x", t)
            codes.append(r.status_code)
            assert r.status_code in (200, 503), r.text
            now = time.time()
            if r.status_code == 503:
                down_since = down_since or now
                longest = max(longest, now - down_since)
            else:
                down_since = None
            time.sleep(0.02)
        log = x.d.log_text()
        assert log.count("bridge: connected") >= 2, log[-2000:]
        assert "disconnected from the broker" in log
        assert longest < 1.0, (longest, codes)
        assert codes.count(200) > len(codes) * 0.8, codes
    finally:
        x.stop()


def test_latchkeyd_before_the_broker(tmp_path):
    x = Bridge(tmp_path, broker_first=False)
    try:
        d = make_device(x.b, "early-dev")
        r = x.event(d.id, b"too early", d.token())
        error(r, 503, "UNAVAILABLE", "broker")
        x.b.start()
        x.wait_bridge(timeout=20)   # retried with backoff: 1, 2, 4 ... s
        assert x.event(d.id, b"now", d.token()).status_code == 200
    finally:
        x.stop()


def test_a_broker_certificate_from_another_ca_is_refused(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    from api_common import make_ca
    _, _, other_ca = make_ca(other, cn="not the broker's CA")
    x = Bridge(tmp_path, broker_ca=other_ca)
    try:
        deadline = time.time() + 10
        while "certificate verify failed" not in x.d.log_text():
            assert time.time() < deadline, x.d.log_text()[-2000:]
            time.sleep(0.1)
        d = make_device(x.b, "ca-dev")
        error(x.event(d.id, b"x", d.token()), 503, "UNAVAILABLE")
        assert "bridge: connected" not in x.d.log_text()
    finally:
        x.stop()


# ---- bodies and paths ----

def test_bad_bodies_and_paths_get_clear_errors(br):
    d = make_device(br.b, "bad-dev")
    t = d.token()
    # gatewayInfo has effect (test_http_gateway.py): a gateway that does not exist, a device that is none
    error(br.post(d.id, "publishEvent", {"binaryData": b64(b"x"), "gatewayInfo": {"gatewayId": "gw0"}}, t),
          404, "NOT_FOUND", "gatewayInfo")
    error(br.post(d.id, "setState", {"state": {"binaryData": b64(b"x")}, "gateway_info": {"delegatedDeviceId": "d"}},
                  t), 403, "PERMISSION_DENIED", "not a gateway")
    error(br.post(d.id, "publishEvent", {"binaryData": b64(b"x"), "colour": 1}, t), 400, "INVALID_ARGUMENT", "colour")
    error(br.post(d.id, "publishEvent", {}, t), 400, "INVALID_ARGUMENT", "binaryData")
    error(br.post(d.id, "publishEvent", {"binaryData": "***"}, t), 400, "INVALID_ARGUMENT")
    error(br.post(d.id, "publishEvent", {"binaryData": b64(b"x"), "binary_data": b64(b"y")}, t), 400,
          "INVALID_ARGUMENT")
    error(br.post(d.id, "publishEvent", b'{"binaryData": "eA==", "binaryData": "eQ=="}', t), 400,
          "INVALID_ARGUMENT")
    error(br.post(d.id, "publishEvent", b"[1]", t), 400, "INVALID_ARGUMENT")
    error(br.post(d.id, "publishEvent", b"{", t), 400, "INVALID_ARGUMENT")
    # a stranger's body is never read: no token, no JSON parsed
    error(br.post(d.id, "publishEvent", b"{", None), 401, "UNAUTHENTICATED")
    error(br.post(d.id, "publishEvent", b"{", "not.a.token"), 401, "UNAUTHENTICATED")
    error(br.post(d.id, "publishEvent", {"binaryData": b64(b"x"), "subFolder": "/bad"}, t), 400,
          "INVALID_ARGUMENT", "subFolder")
    error(br.post(d.id, "publishEvent", {"binaryData": b64(b"x"), "subFolder": 3}, t), 400, "INVALID_ARGUMENT")
    error(br.post(d.id, "publishEvent", {"binaryData": b64(b"x" * (256 * 1024 + 1))}, t), 400, "INVALID_ARGUMENT")
    assert br.post(d.id, "publishEvent", {"binaryData": b64(b"x" * (256 * 1024))}, t).status_code == 200
    error(br.post(d.id, "setState", {"state": {"binaryData": b64(b"x" * (64 * 1024 + 1))}}, t), 400,
          "INVALID_ARGUMENT")
    error(br.post(d.id, "setState", {"binaryData": b64(b"x")}, t), 400, "INVALID_ARGUMENT")
    error(br.post(d.id, "setState", {"state": {}}, t), 400, "INVALID_ARGUMENT", "binaryData")
    error(br.post(d.id, "reboot", {}, t), 404, "NOT_FOUND")
    error(br.session.get(br.url(d.id, ":publishEvent"), headers={"Authorization": f"Bearer {t}"}), 404,
          "NOT_FOUND")
    error(br.session.post(br.url(d.id, "/config"), headers={"Authorization": f"Bearer {t}"}), 404, "NOT_FOUND")
    error(br.session.get(f"https://127.0.0.1:{br.port}/v1/projects/{PROJECT}/locations/{REGION}/registries/"
                         f"{REGISTRY}/devices/{d.id}/states", headers={"Authorization": f"Bearer {t}"}),
          404, "NOT_FOUND")
    error(br.session.get(f"https://127.0.0.1:{br.port}/v1/projects/{PROJECT}/locations/{REGION}/registries/"
                         f"no_such_registry!/devices/{d.id}/config", headers={"Authorization": f"Bearer {t}"}),
          400, "INVALID_ARGUMENT")
    # the daemon is still up, and the device too
    assert br.event(d.id, b"still here", t).status_code == 200


def test_keep_alive_and_garbage_never_take_it_down(br):
    d = make_device(br.b, "ka-dev")
    t = d.token()
    s = br.new_session()
    try:
        for i in range(40):
            assert br.event(d.id, b"%d" % i, t, session=s).status_code == 200
    finally:
        s.close()
    ctx = ssl.create_default_context(cafile=str(br.d.ca_path))
    for junk in [b"\x00\xff" * 100, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
                 b"POST " + DEV_PREFIX.encode() + b"/ka-dev:publishEvent HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: 99999999\r\n\r\n", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n"]:
        with socket.create_connection(("127.0.0.1", br.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                try:
                    tls.sendall(junk)
                    tls.recv(4096)
                except (OSError, ssl.SSLError):
                    pass
    assert br.d.alive()
    assert br.event(d.id, b"after junk", t).status_code == 200
    # the bridge's identity is latchkeyd's: its hash is in the registry, never the secret
    con = sqlite3.connect(f"file:{br.b.db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT name, length(secret_sha256) FROM bridges").fetchall()
    finally:
        con.close()
    assert rows == [("latchkeyd", 32)]
