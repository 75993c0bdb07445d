"""The plugin's topic rules (docs/plugin.md, "Topics"): what devices and backends may publish and
subscribe, the downstream rewrite, isolation of equal device ids in two registries, sizes and
rates. One broker for the module, default options.
"""
import json
import math
import os
import time

import paho.mqtt.client as mqtt
import pytest

from plugin_common import (CONNACK_NOT_AUTHORISED, PROJECT, REGION, REGISTRY, SUBACK_FAILURE,
                                assert_secret_not_logged, backend_secret, close, connack, connect,
                                ensure_registry, make_device, publish, received, start_broker,
                                still_connected, wait_disconnected)

P, L, R = PROJECT, REGION, REGISTRY
P2 = "proj-two"
SAME = "dev-same"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = start_broker(tmp_path_factory, "topics")
    yield b
    b.stop()


@pytest.fixture(scope="module")
def A(broker):
    return make_device(broker, SAME)                       # reg-1/dev-same


@pytest.fixture(scope="module")
def B(broker):
    ensure_registry(broker, "reg-2")
    return make_device(broker, SAME, registry="reg-2")     # reg-2/dev-same: same id


@pytest.fixture(scope="module")
def O(broker):
    return make_device(broker, "dev-other")                # reg-1/dev-other


@pytest.fixture(scope="module")
def secrets(broker):
    return {}


def backend(broker, secrets, name, project=P, protocol=None, sub=True):
    if name not in secrets:
        secrets[name] = backend_secret(broker, name, project)
    c = connect(broker, f"{name}/client-{os.urandom(3).hex()}", secrets[name],
                username=f"backend:{name}", protocol=protocol)
    if sub:
        g = broker.subscribe(c, f"latchkey/{project}/#", 1)
        assert g in (0, 1), g
    return c


@pytest.fixture(scope="module")
def be(broker, secrets):
    """A backend of proj-one subscribed to latchkey/proj-one/# for the whole module."""
    c = backend(broker, secrets, "be-main")
    yield c
    close(c)


def uniq(tag):
    return f"{tag}-{os.urandom(6).hex()}".encode()


def dev_connect(d):
    return connect(d.broker, d.client_id, d.token())


# ---- upstream → downstream ----

def test_events_and_state_reach_backend_rewritten(broker, be, A, B):
    ca, cb = dev_connect(A), dev_connect(B)
    try:
        pa = b"\x00\xff\x01A binary " + os.urandom(8)
        pb = uniq("B")
        psub = uniq("A-sub")
        pstate = uniq("A-state")
        assert publish(ca, A.topic("events"), pa, qos=1).is_published()     # PUBACK
        assert publish(cb, B.topic("events"), pb, qos=1).is_published()
        publish(ca, A.topic("events", "sub/folder"), psub, qos=0)
        assert publish(ca, A.topic("state"), pstate, qos=1).is_published()
        assert received(be, A.downstream("events"), pa, 2), "A's event did not reach the backend"
        assert received(be, B.downstream("events"), pb, 2), "B's event did not reach the backend"
        assert received(be, A.downstream("events", "sub/folder"), psub, 2)
        assert received(be, A.downstream("state"), pstate, 2)
        assert A.downstream("events") != B.downstream("events")
        # Each payload exactly once and only on its own downstream topic.
        for topic, p in [(A.downstream("events"), pa), (B.downstream("events"), pb),
                         (A.downstream("events", "sub/folder"), psub), (A.downstream("state"), pstate)]:
            hits = [m.topic for m in be.messages if m.payload == p]
            assert hits == [topic], (p, hits)
        assert not [m.topic for m in be.messages if m.topic.startswith("/devices/")]
        assert still_connected(ca, 0) and still_connected(cb, 0)
    finally:
        close(ca)
        close(cb)


def test_online_and_offline_notices(broker, be):
    d = make_device(broker, "dev-onoff")
    c = dev_connect(d)
    on = received(be, d.downstream("online"), timeout=2)
    assert on, "no online notice"
    j = json.loads(on[0].payload)
    assert j["deviceId"] == d.id and str(j["deviceNumId"]) == str(d.num_id), j
    assert "time" in j and "127.0.0.1" in str(j.get("address")), j
    close(c)
    off = received(be, d.downstream("offline"), timeout=2)
    assert off, "no offline notice"
    j = json.loads(off[0].payload)
    assert j["deviceId"] == d.id and str(j["deviceNumId"]) == str(d.num_id) and "time" in j, j
    assert "reason" in j, j


def test_reconnect_with_same_client_id_ends_online(broker, be):
    """IoT Core's one connection per device: the new connection replaces the old one, and a
    backend tracking presence must end with the device online (offline of the old one first)."""
    d = make_device(broker, "dev-takeover")
    c1 = dev_connect(d)
    assert received(be, d.downstream("online"), timeout=2)
    c2 = dev_connect(d)
    try:
        assert wait_disconnected(c1, 2) is not None
        p = uniq("after-takeover")
        publish(c2, d.topic("events"), p, qos=1)
        assert received(be, d.downstream("events"), p, 2)
        time.sleep(0.3)
        presence = [m.topic.rsplit("/", 1)[1] for m in be.messages
                    if m.topic in (d.downstream("online"), d.downstream("offline"))]
        assert presence[-1] == "online" and presence.count("online") == 2, presence
        assert still_connected(c2, 0)
    finally:
        close(c1)
        close(c2)


def test_mqtt5_backend_gets_pubsub_attributes(broker, secrets, A):
    c5 = backend(broker, secrets, "be-v5", protocol=mqtt.MQTTv5)
    ca = dev_connect(A)
    try:
        p = uniq("v5")
        publish(ca, A.topic("events", "alerts/hot"), p, qos=1)
        msgs = received(c5, A.downstream("events", "alerts/hot"), p, 2)
        assert msgs, "no event at the MQTT 5 backend"
        props = dict(getattr(msgs[0].properties, "UserProperty", []) or [])
        assert props.get("deviceId") == A.id, props
        assert props.get("deviceNumId") == str(A.num_id), props
        assert props.get("deviceRegistryLocation") == L and props.get("deviceRegistryId") == R, props
        assert props.get("projectId") == P and props.get("subFolder") == "alerts/hot", props
    finally:
        close(ca)
        close(c5)


def test_device_id_with_special_characters(broker, be):
    d = make_device(broker, "dev%41~x.y_z-")
    c = dev_connect(d)
    try:
        p = uniq("special")
        publish(c, d.topic("events"), p, qos=1)
        assert received(be, d.downstream("events"), p, 2)
        assert broker.subscribe(c, d.topic("config"), 1) == 1
    finally:
        close(c)


def test_retained_event_is_not_kept(broker, secrets, A):
    """IoT Core had no retained messages: a retained publish is delivered (retain cleared) and
    never replayed to a later subscriber."""
    ca = dev_connect(A)
    p = uniq("retained")
    publish(ca, A.topic("events"), p, qos=1, retain=True)
    close(ca)
    late = backend(broker, secrets, "be-late")
    try:
        time.sleep(0.4)
        assert not [m for m in late.messages if m.payload == p], "a retained event was replayed"
        # (the only retained messages are the plugin's own presence, docs/plugin.md "Presence")
        assert not [m for m in late.messages if m.retain and m.topic.split("/")[2:3] != ["presence"]]
    finally:
        close(late)


@pytest.mark.parametrize("form", ["latchkey/{P}/{L}/{R}/{O}/events", "/devices/{O}/events",
                                  "/devices/{D}/events", "/devices/{O}/config"])
def test_last_will_never_delivered(broker, be, A, O, form):
    """IoT Core did not support Last Will (spec 1.1). The safest behaviour: a will is never
    published anywhere — above all not as another device's telemetry or config."""
    topic = form.format(D=A.id, O=O.id, P=P, L=L, R=R)
    co = dev_connect(O)
    assert broker.subscribe(co, O.topic("config"), 1) == 1
    c = mqtt.Client(client_id=A.client_id, protocol=mqtt.MQTTv311)
    c.username_pw_set("unused", A.token())
    will = uniq("will")
    c.will_set(topic, will, qos=1)
    rcs = []
    c.on_connect = lambda cl, ud, flags, rc: rcs.append(rc)
    c.connect(broker.host, broker.plain_port, 60)
    deadline = time.time() + 3
    while not rcs and time.time() < deadline:
        c.loop(0.05)
    assert rcs == [0], rcs
    try:
        c.socket().close()                 # dropped without DISCONNECT: the will is due
        time.sleep(0.6)
        assert not [m.topic for m in be.messages if m.payload == will], "a will was delivered"
        assert not [m.topic for m in co.messages if m.payload == will], "a will reached a device"
    finally:
        close(co)


# ---- what a device may not do ----

BAD_PUBLISH = [
    "/devices/{D}/config",
    "/devices/{D}/commands",
    "/devices/{D}/commands/x",
    "/devices/{D}/state/sub",
    "/devices/{D}/eventsx",
    "/devices/{D}/Events",
    "/devices/{D}",
    "/devices/{D}/attach",
    "/devices/{O}/events",
    "/devices/{O}/state",
    "devices/{D}/events",
    "latchkey/{P}/{L}/{R}/{D}/events",
    "latchkey/{P}/{L}/{R}/{O}/state",
    "x/devices/{D}/events",
]


@pytest.mark.parametrize("form", BAD_PUBLISH)
def test_publish_to_other_topic_closes_connection(broker, be, A, O, form):
    topic = form.format(D=A.id, O=O.id, P=P, L=L, R=R)
    c = dev_connect(A)
    try:
        p = uniq("bad")
        publish(c, topic, p, qos=1, timeout=1)
        assert wait_disconnected(c, 2) is not None, f"publish to {topic} did not close the connection"
        time.sleep(0.2)
        assert not [m.topic for m in be.messages if m.payload == p], "a refused publish got through"
    finally:
        close(c)


def test_qos2_publish_closes_connection(broker, be, A):
    c = dev_connect(A)
    try:
        p = uniq("qos2")
        c.publish(A.topic("events"), p, qos=2)
        assert wait_disconnected(c, 2) is not None
        time.sleep(0.2)
        assert not [m for m in be.messages if m.payload == p]
    finally:
        close(c)


ALLOWED_SUB = [("config", 0, 0), ("config", 1, 1), ("config", 2, 1),
               ("commands/#", 0, 0), ("commands/#", 1, 1), ("commands/#", 2, 1)]

BAD_SUB = [
    "/devices/{D}/events", "/devices/{D}/events/#", "/devices/{D}/state", "/devices/{D}/commands",
    "/devices/{D}/commands/sub", "/devices/{D}/config/#", "/devices/{D}/+", "/devices/{D}/#",
    "/devices/{O}/config", "/devices/{O}/commands/#", "/devices/+/config", "/devices/+/commands/#",
    "/devices/#", "#", "+/+/+", "/#", "latchkey/#", "latchkey/{P}/#", "latchkey/{P}/{L}/{R}/{D}/#",
    "$SYS/#", "devices/{D}/config", "/devices/{D}/configx",
]


def test_subscription_matrix(broker, A, O):
    c = dev_connect(A)
    try:
        for sub, qos, granted in ALLOWED_SUB:
            assert broker.subscribe(c, A.topic(sub), qos) == granted, (sub, qos)
        for form in BAD_SUB:
            topic = form.format(D=A.id, O=O.id, P=P, L=L, R=R)
            for qos in (0, 1):
                assert broker.subscribe(c, topic, qos) == SUBACK_FAILURE, topic
        # A refused subscription leaves the connection open.
        assert still_connected(c, 0.2)
        assert publish(c, A.topic("events"), b"after", qos=1).is_published()
    finally:
        close(c)


def test_same_id_in_two_registries_never_meet(broker, be, A, B, O):
    clients = {n: dev_connect(d) for n, d in (("A", A), ("B", B), ("O", O))}
    devs = {"A": A, "B": B, "O": O}
    try:
        for n, c in clients.items():
            assert broker.subscribe(c, devs[n].topic("config"), 1) == 1
            assert broker.subscribe(c, devs[n].topic("commands/#"), 1) == 1
        pa, pb = uniq("iso-A"), uniq("iso-B")
        publish(clients["A"], A.topic("events"), pa, qos=1)
        publish(clients["B"], B.topic("events"), pb, qos=1)
        assert received(be, A.downstream("events"), pa, 2) and received(be, B.downstream("events"), pb, 2)
        time.sleep(0.3)
        for n, c in clients.items():
            assert still_connected(c, 0), f"{n} was disconnected (same id in another registry?)"
            for m in c.messages:
                assert m.payload not in (pa, pb), f"device {n} received a device's event on {m.topic}"
                assert m.topic == devs[n].topic("config"), f"device {n} got {m.topic}"
    finally:
        for c in clients.values():
            close(c)


# ---- backends ----

BACKEND_OK = ["latchkey/{P}/#", "latchkey/{P}/{L}/{R}/+/events", "latchkey/{P}/+/+/+/state",
              "latchkey/{P}/{L}/{R}/dev-same/events/#"]
BACKEND_BAD = ["latchkey/{P2}/#", "latchkey/{P}x/#", "latchkey/#", "latchkey/+/#", "+/{P}/#", "#",
               "+/#", "$SYS/#", "/devices/dev-same/config", "/devices/+/events", "/devices/#",
               "latchkey/+/{L}/{R}/+/events"]


def test_backend_subscription_rules(broker, secrets):
    c = backend(broker, secrets, "be-rules", sub=False)
    try:
        for form in BACKEND_OK:
            t = form.format(P=P, L=L, R=R)
            assert broker.subscribe(c, t, 1) in (0, 1), t
        for form in BACKEND_BAD:
            t = form.format(P=P, P2=P2, L=L, R=R)
            assert broker.subscribe(c, t, 1) == SUBACK_FAILURE, t
    finally:
        close(c)


def test_backend_of_another_project(broker, secrets, A):
    c2 = backend(broker, secrets, "be-two", project=P2)
    ca = dev_connect(A)
    try:
        assert broker.subscribe(c2, f"latchkey/{P}/#", 1) == SUBACK_FAILURE
        p = uniq("p2")
        publish(ca, A.topic("events"), p, qos=1)
        time.sleep(0.5)
        assert not [m for m in c2.messages if m.payload == p]
    finally:
        close(ca)
        close(c2)


def test_backend_may_publish_nothing(broker, secrets, be, A):
    bp = backend(broker, secrets, "be-pub", sub=False)
    ca = dev_connect(A)
    try:
        assert broker.subscribe(ca, A.topic("config"), 1) == 1
        assert broker.subscribe(ca, A.topic("commands/#"), 1) == 1
        received(ca, A.topic("config"), timeout=1)
        forged = uniq("forged")
        for t in (A.downstream("events"), A.downstream("state"), A.downstream("online"),
                  A.topic("config"), A.topic("commands"), A.topic("commands", "x"), A.topic("events")):
            bp.publish(t, forged, qos=1)
        time.sleep(0.7)
        assert not [m.topic for m in be.messages if m.payload == forged], "backend publish delivered"
        assert not [m.topic for m in ca.messages if m.payload == forged], "backend reached a device"
        # whether the backend is disconnected for trying is not specified: not checked
    finally:
        close(ca)
        close(bp)


def test_backend_wrong_secret_refused(broker, secrets, be):
    good = secrets["be-main"]
    assert connack(broker, "be-main/cl-1", good + "x", username="backend:be-main") == CONNACK_NOT_AUTHORISED
    assert connack(broker, "be-main/cl-2", good[:-1], username="backend:be-main") == CONNACK_NOT_AUTHORISED
    assert connack(broker, "be-nope/cl-3", good, username="backend:be-nope") == CONNACK_NOT_AUTHORISED
    assert connack(broker, "be-main/cl-4", None, username="backend:be-main") == CONNACK_NOT_AUTHORISED
    assert connack(broker, "cl-5", good, username="be-main") == CONNACK_NOT_AUTHORISED
    assert connack(broker, "cl-6", good, username="backend:") == CONNACK_NOT_AUTHORISED
    assert_secret_not_logged(broker, good)
    assert_secret_not_logged(broker, good + "x")


def test_device_cannot_borrow_backend_identity(broker, secrets, be, A):
    good = secrets["be-main"]
    # A device path with a backend username and the backend's secret: still a device, whose
    # password is no token.
    assert connack(broker, A.client_id, good, username="backend:be-main") == CONNACK_NOT_AUTHORISED
    # With its own token it connects, but as a device: no backend subscriptions.
    c = connect(broker, A.client_id, A.token(), username="backend:be-main")
    try:
        assert broker.subscribe(c, f"latchkey/{P}/#", 1) == SUBACK_FAILURE
    finally:
        close(c)


def test_deleting_backend_closes_its_connection(broker, secrets):
    c = backend(broker, secrets, "be-gone")
    try:
        r = broker.lk("backends", "delete", "be-gone")
        assert r.rc == 0, r
        assert wait_disconnected(c, 2.0) is not None, "deleted backend still connected after 2 s"
        assert connack(broker, "be-gone/cl", secrets["be-gone"], username="backend:be-gone") \
            == CONNACK_NOT_AUTHORISED
    finally:
        close(c)


# ---- sizes ----

def test_event_size_limit(broker, be, A):
    c = dev_connect(A)
    try:
        at = os.urandom(262144)
        over = os.urandom(262145)
        publish(c, A.topic("events"), at, qos=1)
        assert received(be, A.downstream("events"), at, 3), "a 256 KiB event was not delivered"
        c.publish(A.topic("events"), over, qos=1)
        time.sleep(0.7)
        assert not [m for m in be.messages if len(m.payload) == 262145], "an oversized event got through"
    finally:
        close(c)


def states(d):
    r = d.devices("states", "list", d.id, "--format", "json")
    assert r.rc == 0, r
    import base64
    return [base64.b64decode(s["binaryData"]) for s in json.loads(r.out)]


def test_state_size_limit(broker, be):
    d = make_device(broker, "dev-bigstate")
    c = dev_connect(d)
    try:
        over = os.urandom(65537)
        c.publish(d.topic("state"), over, qos=1)
        time.sleep(0.7)
        assert not [m for m in be.messages if m.payload == over], "an oversized state got through"
        assert over not in states(d)
        time.sleep(0.5)   # past any 1/s window, in case the plugin counts the refused one
        if still_connected(c, 0):
            at = os.urandom(65536)
            publish(c, d.topic("state"), at, qos=1)
            assert received(be, d.downstream("state"), at, 2), "a 64 KiB state was not delivered"
    finally:
        close(c)


def test_state_rate_one_per_second(broker, be):
    d = make_device(broker, "dev-staterate")
    c = dev_connect(d)
    try:
        s1, s2 = uniq("s1"), uniq("s2")
        publish(c, d.topic("state"), s1, qos=1)
        publish(c, d.topic("state"), s2, qos=1)
        assert received(be, d.downstream("state"), s1, 2)
        time.sleep(0.5)
        assert not received(be, d.downstream("state"), s2), "a second state within 1 s got through"
        assert s2 not in states(d)
        time.sleep(0.6)
        s3 = uniq("s3")
        publish(c, d.topic("state"), s3, qos=1)
        assert received(be, d.downstream("state"), s3, 2), "a state 1.1 s later was dropped"
    finally:
        close(c)


# ---- message rate ----

def test_message_rate_at_half_limit_passes(broker, be):
    d = make_device(broker, "dev-rate-ok")
    c = dev_connect(d)
    try:
        tag = os.urandom(3).hex()
        for i in range(60):
            c.publish(d.topic("events"), f"{tag}-{i}".encode(), qos=0)
            time.sleep(0.02)                                 # 50 msg/s
        time.sleep(0.5)
        got = [m for m in be.messages if m.topic == d.downstream("events")]
        assert len(got) == 60, len(got)
        assert still_connected(c, 0)
    finally:
        close(c)


def test_message_rate_limit(broker, be):
    d = make_device(broker, "dev-rate")
    c = dev_connect(d)
    try:
        # Start just after a wall-clock second begins, so the burst falls in one second whatever
        # the plugin's window (fixed seconds or a bucket).
        time.sleep(1.02 - (time.time() % 1.0))
        t0 = time.time()
        for i in range(300):
            c.publish(d.topic("events"), b"burst-%d" % i, qos=0)
        burst = time.time() - t0
        time.sleep(1.0)
        n = len([m for m in be.messages if m.topic == d.downstream("events")])
        # 100 msg/s per connection: at most a second's allowance plus what accrues while the
        # burst is sent.
        print(f"rate: {n} of 300 passed in a burst of {burst:.3f} s")
        assert 0 < n <= 100 + math.ceil(100 * burst) + 5, (n, burst)
        # Sustained at ~4x the limit: the connection is closed (docs: sustained 2x closes).
        deadline = time.time() + 6
        i = 0
        while time.time() < deadline and not c.disconnected.is_set():
            for _ in range(4):
                c.publish(d.topic("events"), b"sustained-%d" % i, qos=0)
                i += 1
            time.sleep(0.01)
        assert c.disconnected.is_set(), f"sustained over 2x the rate did not close it ({i} sent)"
        print(f"rate: closed after {time.time() - (deadline - 6):.2f} s of sustained abuse ({i} sent)")
        got = len([m for m in be.messages if m.topic == d.downstream("events")])
        assert got - n <= 100 * 7, got - n
    finally:
        close(c)
