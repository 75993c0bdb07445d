"""latchkeyd's bridge (docs/plugin.md, "latchkeyd's bridge"): what latchkeyd publishes for HTTP
devices as "latchkeyd:NAME" reaches backends as a device's own publish does, is stored and
counted against the device's one rate limit; every refusal is a denial (PUBACK 0x87), never a
closed connection.

The bridge's identity is written straight into the registry's bridges table with Python's
sqlite3 (SHA-256 of the 43-character secret text), as latchkeyd does through
lk_registry_bridge_set. The bridge's side is a minimal MQTT 5 client over a socket: paho 1.6
does not report a PUBACK's reason code, which is what latchkeyd reads.
"""
import base64
import hashlib
import json
import os
import sqlite3
import time

import paho.mqtt.client as mqtt
import pytest

from plugin_common import (PROJECT, REGION, REGISTRY, backend_secret, close, connack, connect,
                           log_line, make_device, publish, received, start_broker,
                           still_connected)
from mqtt_wire import RawClient

P, L, R = PROJECT, REGION, REGISTRY
RATE = 5                       # plugin_opt_messages_per_second for this module
NAME = "latchkeyd-1"
USER = "latchkeyd:" + NAME
NOT_AUTHORIZED = 0x87
NO_SUBSCRIBERS = 0x10


def Raw(broker, client_id, username, password, protocol=5, clean=True, keepalive=60):
    """latchkeyd's side of the bridge, by hand: MQTT 5 on the plain listener."""
    return RawClient(broker.host, broker.plain_port, client_id, username, password, protocol=protocol,
                     clean=clean, keepalive=keepalive)


# ---- fixtures ----

@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = start_broker(tmp_path_factory, "bridge", opts={"messages_per_second": RATE})
    yield b
    b.stop()


def set_bridge(broker, name, secret):
    """What lk_registry_bridge_set stores: the SHA-256 of the secret's text."""
    db = sqlite3.connect(broker.db)
    try:
        with db:
            db.execute("INSERT OR REPLACE INTO bridges(name, secret_sha256, updated) VALUES(?, ?, ?)",
                       (name, hashlib.sha256(secret.encode()).digest(), int(time.time())))
    finally:
        db.close()


@pytest.fixture(scope="module")
def secret(broker):
    s = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    assert len(s) == 43
    set_bridge(broker, NAME, s)
    return s


@pytest.fixture(scope="module")
def bridge(broker, secret):
    c = Raw(broker, USER, USER, secret)
    assert c.connack == 0, c.connack
    yield c
    c.close()


@pytest.fixture(scope="module")
def be(broker):
    """An MQTT 5 backend of the project, subscribed to all of it (it sees the attributes)."""
    s = backend_secret(broker, "be-bridge")
    c = connect(broker, "be-bridge/sub", s, username="backend:be-bridge", protocol=mqtt.MQTTv5)
    assert broker.subscribe(c, f"latchkey/{P}/#", 1) in (0, 1)
    yield c
    close(c)


_n = [0]


def new_device(broker, prefix="hdev", **kw):
    _n[0] += 1
    return make_device(broker, f"{prefix}-{_n[0]}", **kw)


def btopic(d, kind, sub=None):
    t = (f"latchkeyd/projects/{d.project}/locations/{d.region}/registries/{d.registry}/devices/"
         f"{d.id}/{kind}")
    return t + "/" + sub if sub else t


def uniq(tag):
    return f"{tag}-{os.urandom(6).hex()}".encode()


def at_second_start():
    """Just after a wall-clock second begins: the plugin counts rates per second."""
    time.sleep(1.02 - (time.time() % 1.0))


# ---- what passes ----

def test_bridge_connects_and_is_logged(broker, bridge):
    assert log_line(broker, f"latchkeyd bridge {NAME} connected from") is not None
    assert bridge.alive()


def test_event_reaches_backend_as_a_devices_own(broker, bridge, be):
    d = new_device(broker)
    p = uniq("ev")
    assert bridge.publish(btopic(d, "events", "alerts/hot"), p) in (0, NO_SUBSCRIBERS)
    msgs = received(be, d.downstream("events", "alerts/hot"), p, 3)
    assert msgs, "no event at the backend"
    m = msgs[0]
    assert not m.retain
    assert m.qos == 1
    props = dict(getattr(m.properties, "UserProperty", []) or [])
    assert props == {"deviceId": d.id, "deviceNumId": str(d.num_id), "deviceRegistryLocation": L,
                     "deviceRegistryId": R, "projectId": P, "subFolder": "alerts/hot"}, props
    # without a subfolder: no subFolder attribute; the bridge's topic is never seen downstream
    p2 = uniq("ev2")
    assert bridge.publish(btopic(d, "events"), p2) in (0, NO_SUBSCRIBERS)
    msgs = received(be, d.downstream("events"), p2, 3)
    assert msgs
    props = dict(getattr(msgs[0].properties, "UserProperty", []) or [])
    assert "subFolder" not in props and props["deviceId"] == d.id, props
    assert not [x for x in be.messages if x.topic.startswith("latchkeyd/")]
    # presence is not published for the bridge's devices
    assert not received(be, d.downstream("online"))


def test_state_is_stored_and_published(broker, bridge, be):
    d = new_device(broker)
    p = uniq("st")
    assert bridge.publish(btopic(d, "state"), p) in (0, NO_SUBSCRIBERS)
    assert received(be, d.downstream("state"), p, 3)
    deadline = time.time() + 3
    while True:
        r = d.devices("states", "list", d.id, "--format", "json")
        assert r.rc == 0, r
        got = [base64.b64decode(s["binaryData"]) for s in json.loads(r.out)]
        if got:
            break
        assert time.time() < deadline, "the state was not stored"
        time.sleep(0.2)
    assert got[0] == p, got


def test_qos0_passes(broker, bridge, be):
    d = new_device(broker)
    p = uniq("q0")
    assert bridge.publish(btopic(d, "events"), p, qos=0) is None
    assert received(be, d.downstream("events"), p, 3)


# ---- the device's one rate limit ----

def test_rate_exceeded_is_0x87_and_keeps_the_connection(broker, bridge, be):
    d = new_device(broker)           # never connected over MQTT: its rate is counted all the same
    at_second_start()
    codes = [bridge.publish(btopic(d, "events"), b"burst-%d" % i) for i in range(RATE + 3)]
    assert all(c in (0, NO_SUBSCRIBERS) for c in codes[:RATE]), codes
    assert codes[RATE:] == [NOT_AUTHORIZED] * 3, codes
    assert bridge.alive()
    time.sleep(1.05)
    assert bridge.publish(btopic(d, "events"), b"next second") in (0, NO_SUBSCRIBERS)
    time.sleep(0.3)
    n = len([m for m in be.messages if m.topic == d.downstream("events")])
    assert n == RATE + 1, n
    # rate denials are not logged one by one
    assert log_line(broker, "denied", btopic(d, "events")[10:], timeout=0.2) is None


def test_state_rate(broker, bridge):
    d = new_device(broker)
    at_second_start()
    assert bridge.publish(btopic(d, "state"), b"s1") in (0, NO_SUBSCRIBERS)
    assert bridge.publish(btopic(d, "state"), b"s2") == NOT_AUTHORIZED
    assert bridge.alive()
    time.sleep(1.05)
    assert bridge.publish(btopic(d, "state"), b"s3") in (0, NO_SUBSCRIBERS)


def test_mqtt_and_bridge_share_one_rate(broker, bridge, be):
    d = new_device(broker)
    c = connect(broker, d.client_id, d.token())
    try:
        at_second_start()
        for i in range(RATE):
            publish(c, d.topic("events"), b"mqtt-%d" % i, qos=1)
        # the device's allowance for this second is used up over MQTT: the bridge is refused
        assert bridge.publish(btopic(d, "events"), b"http-over") == NOT_AUTHORIZED
        assert bridge.alive()
        time.sleep(1.05)
        # and the other way round: the bridge uses it up, the device's own publish is dropped
        for i in range(RATE):
            assert bridge.publish(btopic(d, "events"), b"http-%d" % i) in (0, NO_SUBSCRIBERS)
        publish(c, d.topic("events"), b"mqtt-over", qos=1)
        time.sleep(0.5)
        got = [m.payload for m in be.messages if m.topic == d.downstream("events")]
        assert b"http-over" not in got and b"mqtt-over" not in got, got
        assert len(got) == 2 * RATE, got
        assert still_connected(c, 0.2)
    finally:
        close(c)


# ---- denials: PUBACK 0x87, one log line, the bridge stays ----

def test_unknown_device_denied(broker, bridge):
    t = f"latchkeyd/projects/{P}/locations/{L}/registries/{R}/devices/no-such-dev/events"
    assert bridge.publish(t, b"x") == NOT_AUTHORIZED
    line = log_line(broker, "event=bridge_denied", "no-such-dev", "no such device")
    assert line is not None
    assert bridge.alive()


def test_blocked_device_denied(broker, bridge, be):
    d = new_device(broker, extra=("--blocked",))
    assert bridge.publish(btopic(d, "events"), b"blocked") == NOT_AUTHORIZED
    assert log_line(broker, "event=bridge_denied", d.id, "blocked") is not None
    assert bridge.publish(btopic(d, "state"), b"blocked") == NOT_AUTHORIZED
    assert bridge.alive()
    time.sleep(0.3)
    assert not received(be, d.downstream("events"))


@pytest.mark.parametrize("topic", [
    "/devices/{id}/events",                                    # a device's own topic
    "latchkey/{p}/{l}/{r}/{id}/events",                        # the downstream topic
    "latchkeyd/projects/{p}/locations/{l}/registries/{r}/devices/{id}/config",
    "latchkeyd/projects/{p}/locations/{l}/registries/{r}/devices/{id}/state/x",
    "latchkeyd/projects/{p}/locations/{l}/registries/{r}/devices/{id}/events/",
    "latchkeyd/projects/{p}/locations/{l}/registries/{r}/devices/{id}/events//a",
    "latchkeyd/projects/{p}/locations/{l}/registries/{r}/devices/{id}",
    "latchkeyd/projects/{p}/locations/{l}/registries/{r}/{id}/events",
    "latchkeyd/{p}/{l}/{r}/{id}/events",
])
def test_other_topics_denied(broker, bridge, be, topic):
    d = new_device(broker)
    t = topic.format(id=d.id, p=P, l=L, r=R)
    assert bridge.publish(t, b"spoof") == NOT_AUTHORIZED, t
    assert bridge.alive()
    time.sleep(0.2)
    assert not [m for m in be.messages if m.payload == b"spoof"]


def test_retained_denied(broker, bridge, be):
    d = new_device(broker)
    assert bridge.publish(btopic(d, "events"), b"kept", retain=True) == NOT_AUTHORIZED
    assert log_line(broker, "event=bridge_denied", d.id, "retained") is not None
    assert bridge.alive()


def test_oversize_state_denied(broker, bridge):
    d = new_device(broker)
    assert bridge.publish(btopic(d, "state"), b"s" * (64 * 1024 + 1)) == NOT_AUTHORIZED
    assert log_line(broker, "event=bridge_denied", d.id, "64 KB") is not None
    assert bridge.alive()


def test_bridge_may_not_subscribe(broker, bridge):
    for t in ("#", f"latchkey/{P}/#", "latchkeyd/#"):
        codes = bridge.subscribe(t)
        assert codes and codes[0] >= 0x80, (t, codes)
    assert bridge.alive()


# ---- refused connections ----

def test_wrong_secret_refused(broker, secret):
    c = Raw(broker, USER, USER, secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    assert c.connack in (0x86, 0x87, 5), c.connack
    c.close()
    assert log_line(broker, "event=refused", "bridge=", "wrong secret") is not None
    assert secret not in broker.log_text()


def test_unknown_bridge_and_no_password_refused(broker, secret):
    c = Raw(broker, "latchkeyd:nobody", "latchkeyd:nobody", secret)
    assert c.connack in (0x86, 0x87, 5), c.connack
    c.close()
    assert log_line(broker, "event=refused", "bridge=nobody ", "no such bridge") is not None
    c = Raw(broker, USER, USER, None)
    assert c.connack in (0x86, 0x87, 5), c.connack
    c.close()


def test_client_id_must_equal_username(broker, secret):
    for cid in (NAME, USER + "/x", "latchkeyd:other", USER.upper()):
        c = Raw(broker, cid, USER, secret)
        assert c.connack in (0x85, 0x86, 0x87, 5), (cid, c.connack)
        c.close()
    assert log_line(broker, "event=refused", "bridge=", "client id must be its username") is not None


def test_mqtt311_and_persistent_session_refused(broker, secret):
    assert connack(broker, USER, secret, username=USER) == 5      # paho, MQTT 3.1.1
    c = Raw(broker, USER, USER, secret, protocol=4)
    assert c.connack == 5, c.connack
    c.close()
    assert log_line(broker, "event=refused", "bridge=", "MQTT 5") is not None
    c = Raw(broker, USER, USER, secret, clean=False)
    assert c.connack in (0x86, 0x87, 5), c.connack
    c.close()
    assert log_line(broker, "event=refused", "bridge=", "clean start") is not None


def test_a_new_secret_replaces_the_old(broker):
    old = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    new = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    set_bridge(broker, "latchkeyd-2", old)
    c = Raw(broker, "latchkeyd:latchkeyd-2", "latchkeyd:latchkeyd-2", old)
    assert c.connack == 0
    c.close()
    set_bridge(broker, "latchkeyd-2", new)              # latchkeyd restarted
    c = Raw(broker, "latchkeyd:latchkeyd-2", "latchkeyd:latchkeyd-2", old)
    assert c.connack in (0x86, 0x87, 5), c.connack
    c.close()
    c = Raw(broker, "latchkeyd:latchkeyd-2", "latchkeyd:latchkeyd-2", new)
    assert c.connack == 0
    c.close()


def test_device_cannot_publish_bridge_topics(broker, be):
    d = new_device(broker)
    c = connect(broker, d.client_id, d.token())
    try:
        publish(c, btopic(d, "events"), b"from-device", qos=1)
        assert c.disconnected.wait(3), "a device publishing to a bridge topic was not closed"
    finally:
        close(c)
    assert not [m for m in be.messages if m.payload == b"from-device"]


def test_rate_denials_are_reported_every_10_s(broker, bridge):
    # the rate tests above were denied without a line each; the count comes within 10 s
    line = log_line(broker, "latchkeyd bridge:", "denied over their device's rate", timeout=15)
    assert line is not None, broker.log_text()[-2000:]
    n = int(line.split("latchkeyd bridge: ")[1].split()[0])
    assert n >= 1, line
