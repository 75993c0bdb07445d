"""latchkeyd's sendCommandToDevice with a real broker (docs/daemon.md, "Methods").

The broker (tests/integration/broker.py: Mosquitto with latchkey's plugin) and latchkeyd share
one registry file: latchkeyd queues the command, the plugin delivers it to the connected device
and records the outcome, the request waits for it. Devices are paho clients with keys made by
python3-cryptography and tokens made by PyJWT (plugin_common.py).
"""
import signal
import sqlite3
import threading
import time

import pytest

from api_common import Api, Env, b64, device_path, ok, refused
from broker import Broker
from plugin_common import close, connect, make_device, received

# lk_reg_command_status
PENDING, DELIVERED, NOT_CONNECTED, EXPIRED = 0, 1, 2, 3


def command_rows(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT id, subfolder, data, status FROM commands ORDER BY id").fetchall()
    finally:
        con.close()


@pytest.fixture
def broker_env(tmp_path):
    """A broker with its registry (reg-1 in proj-one), and latchkeyd on the same file."""
    b = Broker(tmp_path / "broker")
    e = Env(tmp_path / "lkd", db=b.db, make_registry=False)
    yield b, e
    assert e.daemon.alive(), e.daemon.log_text()[-3000:]
    e.stop()
    b.stop()


def send(api, dev, data, subfolder=None, **kw):
    body = {"binaryData": b64(data)}
    if subfolder is not None:
        body["subfolder"] = subfolder
    return api.post(device_path(dev) + ":sendCommandToDevice", body, **kw)


def test_a_connected_device_gets_the_command(broker_env):
    b, e = broker_env
    d = make_device(b, "cmd-dev")
    c = connect(b, d.client_id, d.token())
    try:
        assert b.subscribe(c, f"/devices/{d.id}/commands/#") == 1
        t0 = time.time()
        assert ok(send(e.api, d.id, b"reboot now")) == {}
        assert time.time() - t0 < 5
        msgs = received(c, f"/devices/{d.id}/commands", timeout=5)
        assert [m.payload for m in msgs] == [b"reboot now"], msgs
        assert ok(send(e.api, d.id, b"\x00\xffbinary", subfolder="fw/update")) == {}
        msgs = received(c, f"/devices/{d.id}/commands/fw/update", timeout=5)
        assert [m.payload for m in msgs] == [b"\x00\xffbinary"]
        # by numId, through an access token
        api = Api(e.daemon, e.admin_sa, "token")
        assert ok(api.post(device_path(str(d.num_id)) + ":sendCommandToDevice",
                           {"binary_data": b64(b"third", urlsafe=True, pad=False)})) == {}
        assert received(c, f"/devices/{d.id}/commands", payload=b"third", timeout=5)
    finally:
        close(c)
    assert [r[3] for r in command_rows(b.db)] == [DELIVERED] * 3


def test_not_connected_is_failed_precondition(broker_env):
    b, e = broker_env
    d = make_device(b, "cmd-off")
    r = send(e.api, d.id, b"hello")
    refused(r, "FAILED_PRECONDITION", "not connected")
    assert [row[3] for row in command_rows(b.db)] == [NOT_CONNECTED]
    # connected but not subscribed to commands: the same
    c = connect(b, d.client_id, d.token())
    try:
        assert b.subscribe(c, f"/devices/{d.id}/config") == 1
        refused(send(e.api, d.id, b"hello"), "FAILED_PRECONDITION")
        assert received(c, f"/devices/{d.id}/commands", timeout=0.5) == []
    finally:
        close(c)


def test_blocked_device_and_bad_requests(broker_env):
    b, e = broker_env
    d = make_device(b, "cmd-blk")
    c = connect(b, d.client_id, d.token())
    try:
        assert b.subscribe(c, f"/devices/{d.id}/commands/#") == 1
        before = e.daemon.dump()
        for body, code in [({}, "INVALID_ARGUMENT"),
                           ({"binaryData": "***"}, "INVALID_ARGUMENT"),
                           ({"binaryData": b64(b"x"), "subfolder": "a//b"}, "INVALID_ARGUMENT"),
                           ({"binaryData": b64(b"x"), "subfolder": "/a"}, "INVALID_ARGUMENT"),
                           ({"binaryData": b64(b"x"), "subfolder": "a/+"}, "INVALID_ARGUMENT"),
                           ({"binaryData": b64(b"x"), "subfolder": "#"}, "INVALID_ARGUMENT"),
                           ({"binaryData": b64(b"x"), "subfolder": 5}, "INVALID_ARGUMENT"),
                           ({"binaryData": b64(b"x" * (256 * 1024 + 1))}, "INVALID_ARGUMENT")]:
            refused(e.api.post(device_path(d.id) + ":sendCommandToDevice", body), code)
        refused(send(e.api, "ghost", b"x"), "NOT_FOUND")
        assert e.daemon.dump() == before
        assert received(c, timeout=0.3) == []
    finally:
        close(c)
    r = e.api.patch(device_path(d.id), {"blocked": True}, query={"updateMask": "blocked"})
    assert r.status == 200, r
    before = e.daemon.dump()
    refused(send(e.api, d.id, b"x"), "FAILED_PRECONDITION", "blocked")
    assert e.daemon.dump() == before


def test_no_broker_is_unavailable(tmp_path):
    e = Env(tmp_path / "lkd", extra=["--command-wait-ms", "1500"])
    try:
        assert e.lk("devices", "create", "lonely", "--registry", "reg-1", "--project", "proj-one",
                    "--region", "us-central1").rc == 0
        t0 = time.time()
        r = send(e.api, "lonely", b"anyone?")
        took = time.time() - t0
        refused(r, "UNAVAILABLE", "withdrawn")
        assert 1.45 <= took < 4, took
        # withdrawn: EXPIRED, so no broker that comes later can deliver it
        assert [row[3] for row in command_rows(e.daemon.db)] == [EXPIRED]
        # the wait held no one else up: another call during a wait is answered at once
        done = {}
        th = threading.Thread(target=lambda: done.setdefault("r", send(e.api, "lonely", b"again")))
        th.start()
        time.sleep(0.2)
        t0 = time.time()
        assert e.api.get(device_path("lonely")).status == 200
        assert time.time() - t0 < 0.8, "a waiting command held another request up"
        th.join(5)
        refused(done["r"], "UNAVAILABLE")
    finally:
        assert e.daemon.alive()
        e.stop()


def test_sigterm_while_a_command_waits(tmp_path):
    """SIGTERM drains: the waiting request still gets its answer, new connections are refused,
    then latchkeyd exits 0."""
    e = Env(tmp_path / "lkd", extra=["--command-wait-ms", "2000"])
    assert e.lk("devices", "create", "waiter", "--registry", "reg-1", "--project", "proj-one",
                "--region", "us-central1").rc == 0
    jwt_tok = e.admin_sa.jwt()
    out = {}
    th = threading.Thread(target=lambda: out.setdefault("r", send(e.api, "waiter", b"x", token=jwt_tok)))
    th.start()
    deadline = time.time() + 5
    while not command_rows(e.daemon.db) and time.time() < deadline:
        time.sleep(0.02)
    assert command_rows(e.daemon.db), "the command was never queued"
    t_term = time.time()
    e.daemon.signal(signal.SIGTERM)
    time.sleep(0.3)
    assert e.daemon.alive(), "latchkeyd did not wait for the request it holds"
    with pytest.raises(OSError):
        e.daemon.tls_socket(timeout=2)              # no new connections while draining
    th.join(10)
    refused(out["r"], "UNAVAILABLE")
    rc = e.daemon.proc.wait(10)
    assert rc == 0, e.daemon.log_text()
    assert time.time() - t_term < 5
    e.daemon.proc = None
    e.daemon.logf.close()


def _lonely_env(tmp_path, wait_ms, devices=("lonely",)):
    e = Env(tmp_path / "lkd", extra=["--command-wait-ms", str(wait_ms)])
    for dev in devices:
        assert e.lk("devices", "create", dev, "--registry", "reg-1", "--project", "proj-one",
                    "--region", "us-central1").rc == 0
    return e


def test_many_waiting_commands_wait_together(tmp_path):
    """Waiting requests hold no thread: 40 at once all end after about one wait, not forty."""
    e = _lonely_env(tmp_path, 700)
    try:
        tok = e.api.access_token()
        out = []
        lock = threading.Lock()

        def one():
            r = send(e.api, "lonely", b"x", token=tok)
            with lock:
                out.append(r)
        threads = [threading.Thread(target=one) for _ in range(40)]
        t0 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        took = time.time() - t0
        assert len(out) == 40 and all(r.code == "UNAVAILABLE" for r in out), out[:3]
        assert took < 4, took
        assert [row[3] for row in command_rows(e.daemon.db)] == [EXPIRED] * 40
    finally:
        assert e.daemon.alive()
        e.stop()


def test_caller_gone_while_its_command_waits(tmp_path):
    e = _lonely_env(tmp_path, 600)
    try:
        for _ in range(3):
            s = e.daemon.tls_socket()
            body = b'{"binaryData": "eA=="}'
            s.sendall(f"POST {device_path('lonely')}:sendCommandToDevice HTTP/1.1\r\nHost: x\r\n"
                      f"Authorization: Bearer {e.admin_sa.jwt()}\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            time.sleep(0.15)
            s.close()                              # gone before the answer
        time.sleep(1.5)
        assert e.daemon.alive(), e.daemon.log_text()[-2000:]
        assert [row[3] for row in command_rows(e.daemon.db)] == [EXPIRED] * 3
        assert e.api.get(device_path("lonely")).status == 200
    finally:
        e.stop()


def test_device_deleted_while_its_command_waits(tmp_path):
    e = _lonely_env(tmp_path, 800)
    try:
        out = {}
        th = threading.Thread(target=lambda: out.setdefault("r", send(e.api, "lonely", b"x")))
        th.start()
        deadline = time.time() + 5
        while not command_rows(e.daemon.db) and time.time() < deadline:
            time.sleep(0.02)
        assert e.api.delete(device_path("lonely")).status == 200
        th.join(10)
        r = out["r"]
        assert r.status in (404, 503) and r.code in ("NOT_FOUND", "UNAVAILABLE"), r
        assert e.daemon.alive()
        assert e.api.get(device_path("lonely")).status == 404
    finally:
        e.stop()


def test_sighup_while_commands_wait(tmp_path):
    e = _lonely_env(tmp_path, 800)
    try:
        out = {}
        th = threading.Thread(target=lambda: out.setdefault("r", send(e.api, "lonely", b"x")))
        th.start()
        time.sleep(0.2)
        e.daemon.signal(signal.SIGHUP)
        th.join(10)
        refused(out["r"], "UNAVAILABLE")
        assert e.daemon.alive()
    finally:
        e.stop()


def test_states_and_config_acks_from_a_real_device(tmp_path):
    """What the device does through the broker shows in the API: states, the config it got, and
    the activity times (which the plugin writes every activity_flush seconds)."""
    b = Broker(tmp_path / "broker", opts={"activity_flush": 1})
    e = Env(tmp_path / "lkd", db=b.db, make_registry=False)
    try:
        _states_and_configs(b, e)
    finally:
        assert e.daemon.alive()
        e.stop()
        b.stop()


def _states_and_configs(b, e):
    from api_common import unb64
    from plugin_common import publish
    d = make_device(b, "state-dev")
    c = connect(b, d.client_id, d.token())
    try:
        assert b.subscribe(c, f"/devices/{d.id}/config") == 1
        r = e.api.post(device_path(d.id) + ":modifyCloudToDeviceConfig", {"binaryData": b64(b"cfg-2")})
        assert r.status == 200 and r.json["version"] == "2", r
        got = received(c, f"/devices/{d.id}/config", payload=b"cfg-2", timeout=5)
        assert got, "the device never got the new config"
        for payload in (b"state-1", b"state-2"):
            publish(c, f"/devices/{d.id}/state", payload, qos=1)
            time.sleep(1.1)          # IoT Core keeps at most one state a second
        deadline = time.time() + 5
        while True:
            st = e.api.get(device_path(d.id) + "/states")
            assert st.status == 200, st
            states = st.json.get("deviceStates", [])
            if len(states) >= 2 or time.time() > deadline:
                break
            time.sleep(0.1)
        assert [unb64(s["binaryData"]) for s in states][:2] == [b"state-2", b"state-1"], states
        assert all(s["updateTime"].endswith("Z") for s in states)
        deadline = time.time() + 5
        while True:
            dev = e.api.get(device_path(d.id)).json
            if "lastStateTime" in dev or time.time() > deadline:
                break
            time.sleep(0.2)
        assert unb64(dev["state"]["binaryData"]) == b"state-2"
        assert dev["lastStateTime"].endswith("Z") and dev["lastConfigSendTime"].endswith("Z"), dev
        one = e.api.get(device_path(d.id) + "/states", query={"numStates": 1}).json["deviceStates"]
        assert [unb64(s["binaryData"]) for s in one] == [b"state-2"]
    finally:
        close(c)
