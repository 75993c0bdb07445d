"""Routing, the push spool and retained presence (docs/plugin.md, "Routing and push subscriptions",
"Presence"), against a real broker.

One broker for the module, with a spool (plugin_opt_spool), activity flushed every second, Mosquitto's
persistence (so that a restart keeps retained messages) and the SQLite fault shim (to make the spool
fail inside the broker). The spool is read with Python's sqlite3, the presence with a backend; a raw
MQTT 3.1.1 client shows what the broker answers a device's PUBLISH (paho hides a missing PUBACK).
"""
import base64
import hashlib
import json
import os
import signal
import sqlite3
import time

import paho.mqtt.client as mqtt
import pytest

import broker as _harness
from broker import Broker
from plugin_common import (PROJECT, REGION, backend_secret, close, connect, ensure_registry, make_device,
                           publish, received)
from mqtt_wire import RawClient

P, L = PROJECT, REGION
FULL_AT = 20          # plugin_opt_spool_max_messages for this module


def topic_name(t):
    return f"projects/{P}/topics/{t}"


def routed(d, t, kind, sub=None):
    s = f"latchkey/{P}/topics/{t}/{L}/{d.registry}/{d.id}/{kind}"
    return s + "/" + sub if sub else s


def Raw(broker, client_id, username, password, protocol=4):
    """A raw client on the broker's plain listener (MQTT 3.1.1, or 5 for latchkeyd's bridge), connected:
    it shows the PUBACK a device's PUBLISH gets, or the broker closing the connection."""
    c = RawClient(broker.host, broker.plain_port, client_id, username, password, protocol=protocol)
    assert c.connack == 0, c.connack
    return c


# ---- fixtures ----

@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    if not _harness.PLUGIN.exists():
        pytest.fail(f"the plugin {_harness.PLUGIN} is not built (set LK_LIB_DIR / LK_PLUGIN)")
    base = tmp_path_factory.mktemp("routing")
    b = Broker(base, opts={"spool": base / "spool.db", "activity_flush": 1,
                           "spool_max_messages": FULL_AT}, sqlite_fault=True, persistence=True)
    b.spool = base / "spool.db"
    yield b
    b.stop()


@pytest.fixture(scope="module")
def be(broker):
    """An MQTT 5 backend subscribed to the whole project (it sees the attributes)."""
    s = backend_secret(broker, "be-route")
    c = connect(broker, "be-route/all", s, username="backend:be-route", protocol=mqtt.MQTTv5)
    assert broker.subscribe(c, f"latchkey/{P}/#", 1) in (0, 1)
    c.secret = s
    yield c
    close(c)


def registry(broker, name, events=(), state=None):
    ensure_registry(broker, name)
    args = []
    for t, sub in events:
        args += ["--event-notification-config",
                 f"topic={topic_name(t)}" + ("" if sub is None else f",subfolder={sub}")]
    if state:
        args += ["--state-pubsub-topic", topic_name(state)]
    if args:
        r = broker.lk("registries", "update", name, "--project", P, "--region", L, *args)
        assert r.rc == 0, r
    return name


_n = [0]


def device(broker, reg):
    _n[0] += 1
    return make_device(broker, f"rdev-{_n[0]}", registry=reg)


def dev_raw(d):
    return Raw(d.broker, d.client_id, "unused", d.token())


def uniq(tag):
    return f"{tag}-{os.urandom(5).hex()}".encode()


def arrived(be, payload, timeout=3):
    msgs = received(be, payload=payload, timeout=timeout)
    assert msgs, f"{payload!r} reached no backend topic"
    return msgs


# ---- routing ----

def test_events_and_state_routed_first_match_and_catch_all(broker, be):
    reg = registry(broker, "reg-route", events=[("t-a", "a"), ("t-bc", "b/c"), ("t-a2", "a"), ("t-all", None)],
                   state="t-state")
    d = device(broker, reg)
    c = connect(broker, d.client_id, d.token())
    try:
        cases = [("a", "t-a"),          # first match wins over the later "a"
                 ("b/c", "t-bc"),       # the whole subfolder, exactly
                 ("b", "t-all"),        # no exact match: the catch-all
                 ("b/c/d", "t-all"),
                 (None, "t-all")]       # no subfolder: only "" matches
        for sub, t in cases:
            p = uniq("ev")
            publish(c, d.topic("events", sub), p, qos=1)
            m = arrived(be, p)
            assert [x.topic for x in m] == [routed(d, t, "events", sub)], (sub, [x.topic for x in m])
        props = dict(m[0].properties.UserProperty)
        assert props["deviceId"] == d.id and props["deviceNumId"] == str(d.num_id)
        assert props["deviceRegistryId"] == reg and props["projectId"] == P
        p = uniq("state")
        publish(c, d.topic("state"), p, qos=1)
        assert [x.topic for x in arrived(be, p)] == [routed(d, "t-state", "state")]
    finally:
        close(c)


def test_no_match_goes_to_the_default_topic_and_changes_apply(broker, be):
    reg = registry(broker, "reg-nomatch", events=[("t-x", "x")])
    d = device(broker, reg)
    c = connect(broker, d.client_id, d.token())
    try:
        for sub in ("y", None):
            p = uniq("ev")
            publish(c, d.topic("events", sub), p, qos=1)
            assert [x.topic for x in arrived(be, p)] == [d.downstream("events", sub)]
        p = uniq("state")
        publish(c, d.topic("state"), p, qos=1)
        assert [x.topic for x in arrived(be, p)] == [d.downstream("state")]
        # a changed config applies from the next tick (the change feed)
        r = broker.lk("registries", "update", reg, "--project", P, "--region", L,
                      "--event-notification-config", f"topic={topic_name('t-y')},subfolder=y")
        assert r.rc == 0, r
        time.sleep(0.5)
        p = uniq("ev")
        publish(c, d.topic("events", "y"), p, qos=1)
        assert [x.topic for x in arrived(be, p)] == [routed(d, "t-y", "events", "y")]
    finally:
        close(c)


def test_bridge_events_are_routed_alike(broker, be):
    reg = registry(broker, "reg-bridge", events=[("t-http", "h")])
    d = device(broker, reg)
    secret = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    db = sqlite3.connect(broker.db)
    with db:
        db.execute("INSERT OR REPLACE INTO bridges(name, secret_sha256, updated) VALUES(?, ?, ?)",
                   ("lkd-route", hashlib.sha256(secret.encode()).digest(), int(time.time())))
    db.close()
    br = Raw(broker, "latchkeyd:lkd-route", "latchkeyd:lkd-route", secret, protocol=5)
    try:
        base = f"latchkeyd/projects/{P}/locations/{L}/registries/{reg}/devices/{d.id}"
        p = uniq("http")
        assert br.publish(base + "/events/h", p) in (0, 0x10)
        assert [x.topic for x in arrived(be, p)] == [routed(d, "t-http", "events", "h")]
        p = uniq("http")
        assert br.publish(base + "/events/other", p) in (0, 0x10)
        assert [x.topic for x in arrived(be, p)] == [d.downstream("events", "other")]
    finally:
        br.close()


# ---- the push spool ----

def add_subscription(broker, name, topic):
    """A push subscription as lk_registry_subscription_create stores it, and its change (kind 8,
    LK_CHANGE_SUBSCRIPTION) for the broker's feed. No latchkeyd runs: nothing is taken."""
    now = int(time.time())
    db = sqlite3.connect(broker.db)
    with db:
        db.execute("INSERT INTO subscriptions(project, name, topic, push_endpoint, auth, min_backoff_ms, "
                   "max_backoff_ms, ack_deadline_ms, max_delivery_attempts, retention_ms, created) "
                   "VALUES(?, ?, ?, 'https://127.0.0.1:9/push', 0, 10000, 600000, 10000, 0, 604800000, ?)",
                   (P, name, topic, now))
        db.execute("INSERT INTO changes(kind, num_id, time) VALUES(8, 0, ?)", (now,))
    db.close()
    time.sleep(0.3)   # the next tick reads the feed


def spooled(broker, payload):
    """(message row, {subscription: attempts}) of the spooled message with this payload, or None."""
    db = sqlite3.connect(broker.spool)
    try:
        row = db.execute("SELECT id, topic, ordering_key, publish_time, attributes FROM messages WHERE data = ?",
                         (payload,)).fetchall()
        if not row:
            return None
        assert len(row) == 1, row
        subs = dict(db.execute("SELECT subscription, attempts FROM deliveries WHERE message = ?",
                               (row[0][0],)).fetchall())
        return row[0], subs
    finally:
        db.close()


def sub_name(s):
    return f"projects/{P}/subscriptions/{s}"


@pytest.fixture(scope="module")
def push_reg(broker):
    reg = registry(broker, "reg-push", events=[("t-push", "p"), ("t-full", "full"), ("t-nosub", None)],
                   state="t-push")
    add_subscription(broker, "s-one", "t-push")
    add_subscription(broker, "s-two", "t-push")
    add_subscription(broker, "s-full", "t-full")
    return reg


def test_routed_messages_are_spooled_with_iot_cores_attributes(broker, be, push_reg):
    d = device(broker, push_reg)
    c = connect(broker, d.client_id, d.token())
    try:
        t0 = time.time() * 1000
        p = uniq("push")
        publish(c, d.topic("events", "p"), p, qos=1)
        row, subs = spooled(broker, p)
        assert row[1] == topic_name("t-push") and row[2] == str(d.num_id)
        assert t0 - 1000 <= row[3] <= time.time() * 1000 + 1000
        assert json.loads(row[4]) == {"deviceId": d.id, "deviceNumId": str(d.num_id), "deviceRegistryId": push_reg,
                                      "deviceRegistryLocation": L, "projectId": P, "subFolder": "p"}
        assert subs == {sub_name("s-one"): 0, sub_name("s-two"): 0}
        assert [x.topic for x in arrived(be, p)] == [routed(d, "t-push", "events", "p")]
        # a state routed to the same topic: no subFolder
        p = uniq("state")
        publish(c, d.topic("state"), p, qos=1)
        row, subs = spooled(broker, p)
        assert "subFolder" not in json.loads(row[4]) and len(subs) == 2
        # routed to a topic without push subscriptions, or not routed: not stored
        for sub in (None, "q"):
            p = uniq("nosub")
            publish(c, d.topic("events", sub), p, qos=1)
            arrived(be, p)
            assert spooled(broker, p) is None
    finally:
        close(c)


def test_a_full_queue_drops_only_its_copy(broker, be, push_reg):
    d = device(broker, push_reg)
    c = Raw(broker, d.client_id, "unused", d.token())
    try:
        for i in range(FULL_AT + 2):
            assert c.publish(d.topic("events", "full"), uniq(f"full{i}")) == 0, i
            time.sleep(0.011)       # within the device's 100 messages a second
        assert c.publish(d.topic("events", "p"), b"after-full") == 0
    finally:
        c.close()
    db = sqlite3.connect(broker.spool)
    depth, dropped = db.execute("SELECT depth, dropped FROM queues WHERE subscription = ?",
                                (sub_name("s-full"),)).fetchone()
    db.close()
    assert (depth, dropped) == (FULL_AT, 2)
    assert len(spooled(broker, b"after-full")[1]) == 2
    line = broker.wait_log("push subscription " + sub_name("s-full") + " is full")
    assert line.count("is full") == 1, "one line a minute"


def test_a_failing_spool_gives_no_puback_and_closes_the_connection(broker, be, push_reg):
    d = device(broker, push_reg)
    c = dev_raw(d)
    mark = len(broker.log_text())
    broker.fault("INSERT INTO messages")
    try:
        # a message that needs no spool is acknowledged as usual
        assert c.publish(d.topic("events", "q"), uniq("plain")) == 0
        p = uniq("failing")
        assert c.publish(d.topic("events", "p"), p) is None, "PUBACK although the spool failed"
        assert c.read(timeout=1) is None, "the connection stays open"
        assert spooled(broker, p) is None and not received(be, payload=p, timeout=0.3)
        assert "could not store a message" in broker.log_text()[mark:]
        # retained: the same
        c = dev_raw(d)
        assert c.publish(d.topic("events", "p"), uniq("failing"), retain=True) is None
        # latchkeyd's bridge: a denial, 0x87, and it stays connected
        secret = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
        db = sqlite3.connect(broker.db)
        with db:
            db.execute("INSERT OR REPLACE INTO bridges(name, secret_sha256, updated) VALUES(?, ?, ?)",
                       ("lkd-fail", hashlib.sha256(secret.encode()).digest(), int(time.time())))
        db.close()
        br = Raw(broker, "latchkeyd:lkd-fail", "latchkeyd:lkd-fail", secret, protocol=5)
        base = f"latchkeyd/projects/{P}/locations/{L}/registries/{push_reg}/devices/{d.id}"
        assert br.publish(base + "/events/p", uniq("http")) == 0x87
    finally:
        broker.fault(None)
    # the device sends it again once it reconnects: acknowledged and stored
    assert br.publish(base + "/events/p", uniq("http")) in (0, 0x10)
    br.close()
    c = dev_raw(d)
    assert c.publish(d.topic("events", "p"), p) == 0
    c.close()
    assert len(spooled(broker, p)[1]) == 2


# ---- retained presence ----

def retained(broker, be, topic, timeout=1.5):
    """The retained messages a backend that subscribes now gets on topic."""
    c = connect(broker, f"be-route/r-{os.urandom(4).hex()}", be.secret, username="backend:be-route")
    try:
        assert broker.subscribe(c, topic, 1) in (0, 1)
        time.sleep(timeout)
        return [m for m in c.messages if m.retain]
    finally:
        close(c)


def presence(broker, be, d, timeout=1.5):
    msgs = retained(broker, be, d.presence_topic(), timeout)
    assert len(msgs) <= 1, msgs
    return json.loads(msgs[0].payload) if msgs else None


def test_presence_is_retained_online_then_offline(broker, be):
    reg = registry(broker, "reg-presence")
    d = device(broker, reg)
    c = connect(broker, d.client_id, d.token())
    try:
        p = presence(broker, be, d, timeout=0.7)
        assert p and p["online"] is True and p["deviceId"] == d.id and p["deviceNumId"] == str(d.num_id)
        assert p["address"] == "127.0.0.1" and p["time"].endswith("Z") and "reason" not in p
        time.sleep(1.2)               # recorded by the activity flush
        assert online_ids(broker, reg) == [d.id]
    finally:
        close(c)
    time.sleep(0.3)
    p = presence(broker, be, d, timeout=0.7)
    assert p and p["online"] is False and p["reason"] and "address" not in p
    time.sleep(1.0)
    assert online_ids(broker, reg) == []


def online_ids(broker, reg):
    r = broker.lk("devices", "list", "--registry", reg, "--project", P, "--region", L, "--online",
                  "--format", "json")
    assert r.rc == 0, r
    return [x["id"] for x in json.loads(r.out)]


def test_presence_reset_after_kill9_and_cleared_after_delete(broker, be):
    """Last in the module: it kills the broker."""
    reg = registry(broker, "reg-restart")
    a, b, c = device(broker, reg), device(broker, reg), device(broker, reg)
    ca = connect(broker, a.client_id, a.token())
    for d in (b, c):
        close(connect(broker, d.client_id, d.token()))
    time.sleep(1.5)                   # recorded by the activity flush
    assert online_ids(broker, reg) == [a.id]
    assert c.devices("delete", c.id).rc == 0
    time.sleep(0.4)
    assert presence(broker, be, c, timeout=0.7) is None, "a deleted device's presence stays"
    os.kill(broker.proc.pid, signal.SIGUSR1)     # Mosquitto saves its persistence (retained presence)
    time.sleep(0.5)
    broker.proc.kill()
    broker.proc.wait()
    broker.proc = None
    broker._stderr.close()
    assert b.devices("delete", b.id).rc == 0     # deleted while the broker is down
    broker.start()
    time.sleep(0.5)
    pa = presence(broker, be, a, timeout=0.7)
    assert pa and pa["online"] is False and pa["reason"] == "the broker restarted", pa
    assert presence(broker, be, b, timeout=0.7) is None
    assert online_ids(broker, reg) == []         # recorded offline too
    close(ca)


def test_presence_moves_from_the_old_topic_once(tmp_path):
    """A persistence file from a build that published latchkey/P/L/R/D/presence: the first start
    clears those retained messages, stores the layout, and a second start does not clear again."""
    b = Broker(tmp_path, opts={"activity_flush": 1}, persistence=True)
    try:
        reg = registry(b, "reg-move")
        d = device(b, reg)
        close(connect(b, d.client_id, d.token()))
        time.sleep(1.5)                              # its presence recorded
        b.stop()
        # What the old build left: a plain Mosquitto on the same persistence file puts a
        # retained message at the old place.
        old = f"latchkey/{P}/{L}/{reg}/{d.id}/presence"
        port = _harness.free_port()
        conf = tmp_path / "plain.conf"
        conf.write_text(f"per_listener_settings false\nallow_anonymous true\npersistence true\n"
                        f"persistence_location {tmp_path}/\nlistener {port} 127.0.0.1\n")
        plain = _harness.subprocess.Popen([_harness.MOSQUITTO, "-c", str(conf)],
                                          stderr=_harness.subprocess.DEVNULL)
        try:
            deadline = time.time() + 5
            while True:
                try:
                    c = b.connect("old-build", None, username=None, tls=False, port=port)
                    break
                except Exception:
                    assert time.time() < deadline, "the plain broker did not start"
                    time.sleep(0.1)
            c.publish(old, b'{"online":true}', qos=1, retain=True).wait_for_publish(5)
            close(c)
        finally:
            plain.terminate()                        # saves the persistence file
            assert plain.wait(10) == 0
        with sqlite3.connect(b.db) as db:            # a registry the old build used
            db.execute("DELETE FROM meta WHERE key = 'presence_layout'")
        b.start()
        log = b.wait_log("presence_moved", timeout=5)
        assert "latchkey/P/L/R/D/presence, cleared for 1 devices" in log, log[-2000:]
        s = backend_secret(b, "be-move")
        o = connect(b, "be-move/o", s, username="backend:be-move")
        try:
            assert b.subscribe(o, f"latchkey/{P}/#", 1) in (0, 1)
            time.sleep(1.0)
            kept = {m.topic: m.payload for m in o.messages if m.retain}
        finally:
            close(o)
        assert old not in kept, kept
        assert json.loads(kept[d.presence_topic()])["online"] is False
        with sqlite3.connect(b.db) as db:
            assert db.execute("SELECT value FROM meta WHERE key = 'presence_layout'").fetchone() == (1,)
        # once: a restart clears nothing more
        b.stop()
        b.log_path.write_text("")
        b.start()
        time.sleep(1.5)
        assert "presence_moved" not in b.log_text()
    finally:
        b.stop()
