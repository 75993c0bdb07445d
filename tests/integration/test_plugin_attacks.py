"""Attacks on the broker that once succeeded (issue 10), each reproduced against the real broker:
a will that became a retained message on a takeover, revocation that failed open when the
registry could not be read, rate limits reset by reconnecting, one backend closing another's
connection, refusal logs without limit, and the smaller holes (docs/plugin.md).

Test-only shims (tests/shims, never part of the product): an observer plugin that sees every
message the broker holds, retained ones included, and an LD_PRELOAD library that makes the
broker's SQLite fail on demand.
"""
import base64
import json
import os
import socket
import time

import paho.mqtt.client as mqtt
import pytest

from broker import Broker, Refused
from plugin_common import (CONNACK_NOT_AUTHORISED, PROJECT, REGION, REGISTRY, backend_secret,
                           close, connack, connect, ensure_registry, log_line, make_device,
                           publish, received, still_connected, wait_disconnected)
from mqtt_wire import varint

P, L, R = PROJECT, REGION, REGISTRY


def uniq(tag):
    return f"{tag}-{os.urandom(6).hex()}".encode()


def backend(b, name, project=P, cid=None):
    secret = backend_secret(b, name, project)
    c = connect(b, cid or f"{name}/t-{os.urandom(3).hex()}", secret, username=f"backend:{name}")
    assert b.subscribe(c, f"latchkey/{project}/#", 1) in (0, 1)
    return c, secret


def raw_client(b, d, will=None, protocol=mqtt.MQTTv311, clean=True):
    """A paho client for device d that is not started: (client, connack list)."""
    kw = {"clean_session": clean} if protocol != mqtt.MQTTv5 else {}
    c = mqtt.Client(client_id=d.client_id, protocol=protocol, **kw)
    c.username_pw_set("unused", d.token())
    if will:
        c.will_set(*will)
    rcs = []
    c.on_connect = lambda cl, ud, flags, rc, props=None: rcs.append(rc)
    return c, rcs


def pump(c, rcs, timeout=3):
    deadline = time.time() + timeout
    while not rcs and time.time() < deadline:
        c.loop(0.02)
    return rcs[0] if rcs else None


def retained(b, wait=1.0):
    """Every retained message the broker holds (the observer's view) but the plugin's own
    presence messages (one per device, docs/plugin.md "Presence")."""
    o = b.observe("#")
    try:
        time.sleep(wait)
        return [(m.topic, len(m.payload)) for m in o.messages
                if m.retain and not (m.topic.startswith("latchkey/") and m.topic.split("/")[2:3] == ["presence"])]
    finally:
        close(o)


# ---- 1. wills: never written, never retained ----

@pytest.fixture(scope="module")
def wb(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("wills"), observer=True, persistence=True)
    yield b
    b.stop()


def test_takeover_loop_with_retained_wills_keeps_nothing(wb):
    """The attack: a device takes over its own session in a loop, each connection with a 64 KB
    retained will (MQTT 3.1.1's largest) on a new subfolder. Mosquitto sends the old
    connection's will on a takeover (the plugin's record is then superseded): before the fix
    each became a retained message nobody could read or clear, in memory and on disk."""
    d = make_device(wb, "will-taker")
    be, _ = backend(wb, "be-wills")
    big = os.urandom(65000)
    rounds = 300
    rss0 = wb.rss_kb()
    prev = None
    for i in range(rounds):
        c, rcs = raw_client(wb, d, will=(d.topic("events", f"w{i}"), big, 1, True))
        c.connect(wb.host, wb.plain_port, 60)
        assert pump(c, rcs) == 0, (i, rcs)
        if prev:
            prev.loop(0.01)
            prev.socket() and prev.socket().close()
        prev = c
    prev.socket().close()
    time.sleep(1.0)
    growth = wb.rss_kb() - rss0
    held = retained(wb)
    wills = [m for m in be.messages if m.payload == big]
    close(be)
    print(f"takeover loop: {rounds} rounds, broker RSS growth {growth} kB, retained {len(held)}")
    assert held == [], f"retained messages left behind: {held[:5]}"
    assert wills == [], "a will was delivered downstream"
    if not os.environ.get("LK_SANITIZER_PRELOAD"):  # ASan's quarantine holds freed memory
        assert growth < 8 * 1024, f"the broker grew by {growth} kB over {rounds} takeovers"


def test_will_at_disconnect_and_at_shutdown_is_not_retained(wb):
    """A will is also sent when a connection drops, and for every connected client when the
    broker shuts down (with persistence, before it saves what it holds)."""
    d = make_device(wb, "will-dropper")
    c, rcs = raw_client(wb, d, will=(d.topic("events", "drop"), b"dropped", 1, True))
    c.connect(wb.host, wb.plain_port, 60)
    assert pump(c, rcs) == 0
    c.socket().close()
    time.sleep(0.5)
    s, rcs = raw_client(wb, d, will=(d.topic("state"), b"at-shutdown", 1, True))
    s.connect(wb.host, wb.plain_port, 60)
    assert pump(s, rcs) == 0
    wb.restart()                      # SIGTERM: wills of live clients, then persistence
    s.socket().close()
    assert retained(wb) == []


def test_retained_publish_is_delivered_not_retained(wb):
    """A device's own retained publish (IoT Core had no retained messages) reaches backends as
    an ordinary message and is stored nowhere."""
    d = make_device(wb, "retainer")
    be, _ = backend(wb, "be-retain")
    c = connect(wb, d.client_id, d.token())
    try:
        for kind in ("events", "state"):
            p = uniq(kind)
            publish(c, d.topic(kind), p, qos=1, retain=True)
            got = received(be, d.downstream(kind), p, timeout=3)
            assert got and not got[0].retain, kind
        assert retained(wb) == []
    finally:
        close(c)
        close(be)


# ---- 2. registry read errors: revocation never fails open past the bound ----

BOUND = 3   # plugin_opt_confirm_timeout for these tests


@pytest.fixture(scope="module")
def fb(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("faults"), sqlite_fault=True,
               opts={"confirm_timeout": BOUND})
    yield b
    b.stop()


@pytest.fixture
def fault(fb):
    yield fb.fault
    fb.fault(None)


def closed_within(c, limit):
    t0 = time.time()
    t = wait_disconnected(c, limit)
    return None if t is None else t - t0


def test_change_feed_error_then_block(fb, fault):
    """The feed cannot be read when a device is blocked: before the fix the block was ignored
    until some unrelated change. Now the feed is retried on every tick and, past the bound,
    nothing stands that the registry cannot confirm; a blocked device cannot come back."""
    d = make_device(fb, "feed-blocked")
    c = connect(fb, d.client_id, d.token())
    fault("FROM changes")
    assert d.devices("update", d.id, "--blocked").rc == 0
    took = closed_within(c, BOUND + 3)
    assert took is not None, "a blocked device stayed connected while the feed could not be read"
    assert connack(fb, d.client_id, d.token()) in (CONNACK_NOT_AUTHORISED, -1)
    fault(None)
    time.sleep(0.5)
    assert connack(fb, d.client_id, d.token()) == CONNACK_NOT_AUTHORISED
    assert log_line(fb, "reading the change feed failed")


def test_feed_error_recovered_within_the_bound_closes_nothing(fb, fault):
    d = make_device(fb, "feed-brief")
    c = connect(fb, d.client_id, d.token())
    try:
        fault("FROM changes")
        assert fb.lk("devices", "update", d.id, "--metadata", "k=v", *d.loc).rc == 0
        time.sleep(BOUND - 1.5)
        fault(None)
        assert still_connected(c, BOUND + 1), "a short registry hiccup closed a connection"
        assert log_line(fb, "the change feed is read again")
    finally:
        close(c)


def test_recheck_error_then_block(fb, fault):
    """The feed is read, but the device's own re-check cannot read it: before the fix the
    connection of a blocked device stayed until its token expired."""
    d = make_device(fb, "recheck-blocked")
    c = connect(fb, d.client_id, d.token())
    fault("LEFT JOIN device_credentials")
    assert d.devices("update", d.id, "--blocked").rc == 0
    took = closed_within(c, BOUND + 3)
    assert took is not None, "the blocked device stayed connected"
    assert took >= BOUND - 1.5, f"closed after {took:.1f} s: before the bound"
    assert log_line(fb, d.client_id, "standing could not be confirmed")


def test_registry_unreadable_turns_devices_away_without_connack(fb, fault):
    """While the registry cannot be read a device is not refused as if its token were bad
    (CONNACK 5 makes clients give up on their token): the connection closes without CONNACK
    and the device backs off and retries."""
    d = make_device(fb, "unreadable")
    fault("*")
    assert connack(fb, d.client_id, d.token()) == -1
    assert log_line(fb, d.client_id, "could not be read", "retry=1")
    fault(None)
    assert connack(fb, d.client_id, d.token()) == 0


def test_backend_recheck_error_then_delete(fb, fault):
    c, _ = backend(fb, "be-faulty")
    fault("FROM backends")
    assert fb.lk("backends", "delete", "be-faulty").rc == 0
    assert closed_within(c, BOUND + 3) is not None, "a deleted backend stayed connected"


# ---- 3. limits per device, across connections ----

@pytest.fixture(scope="module")
def lb(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("limits"),
               opts={"messages_per_second": 20, "connect_burst": 3, "connects_per_minute": 6})
    yield b
    b.stop()


def test_message_rate_counts_across_reconnects(lb):
    """Before: a device that reconnected got a fresh count (990 events/s against 100)."""
    d = make_device(lb, "rate-hopper")
    be, _ = backend(lb, "be-rate")
    try:
        # align on the start of a second, then send 2 x 20 within it, reconnecting in between
        time.sleep(1 - time.time() % 1 + 0.05)
        t0 = int(time.time())
        for _ in range(2):
            c = connect(lb, d.client_id, d.token())
            for i in range(20):
                c.publish(d.topic("events"), f"{t0}-{i}".encode(), qos=0)
            time.sleep(0.15)
            close(c)
        assert int(time.time()) == t0, "the machine was too slow to stay within one second"
        time.sleep(0.5)
        got = [m for m in be.messages if m.topic == d.downstream("events")]
        assert len(got) <= 20, f"{len(got)} events in one second against a limit of 20"
    finally:
        close(be)


def test_state_rate_counts_across_reconnects(lb):
    d = make_device(lb, "state-hopper")
    c = connect(lb, d.client_id, d.token())
    publish(c, d.topic("state"), b"s1", qos=1)
    close(c)
    c = connect(lb, d.client_id, d.token())
    publish(c, d.topic("state"), b"s2", qos=1)
    close(c)
    time.sleep(0.3)
    r = d.devices("states", "list", d.id, "--format", "json")
    assert r.rc == 0, r
    states = [base64.b64decode(s["binaryData"]) for s in json.loads(r.out)]
    assert states == [b"s1"], f"a reconnect reset the state rate: {states}"


def test_connects_are_limited_per_device(lb):
    """Every takeover costs a TLS handshake: a device may connect 3 times at once here
    (plugin_opt_connect_burst), then once every 10 s (connects_per_minute 6). Over it the
    connection closes without CONNACK, so that clients back off instead of dropping their
    token; another device is not affected."""
    d = make_device(lb, "connect-loop")
    other = make_device(lb, "connect-other")
    tok = d.token()
    rcs = [connack(lb, d.client_id, tok) for _ in range(6)]
    assert rcs[:3] == [0, 0, 0], rcs
    assert rcs[3:] == [-1, -1, -1], rcs
    assert log_line(lb, d.client_id, "connects too often")
    assert connack(lb, other.client_id, other.token()) == 0
    time.sleep(10.5)
    assert connack(lb, d.client_id, tok) == 0


def test_bad_tokens_do_not_use_up_a_devices_connects(lb):
    """Only a connect with a good token counts: nobody else can lock a device out."""
    d = make_device(lb, "victim")
    for _ in range(10):
        assert connack(lb, d.client_id, d.token(aud="not-the-project")) == CONNACK_NOT_AUTHORISED
    assert connack(lb, d.client_id, d.token()) == 0


# ---- 5. one backend cannot close another's connection ----

def test_backend_cannot_take_another_backends_client_id(lb):
    ensure_registry(lb, "reg-x", project="proj-two")
    a, _ = backend(lb, "be-alpha", cid="be-alpha/main")
    try:
        secret_b = backend_secret(lb, "be-beta", "proj-two")
        assert connack(lb, "be-alpha/main", secret_b, username="backend:be-beta") \
            == CONNACK_NOT_AUTHORISED
        assert connack(lb, "be-alpha", secret_b, username="backend:be-beta") \
            == CONNACK_NOT_AUTHORISED
        assert connack(lb, "be-betax", secret_b, username="backend:be-beta") \
            == CONNACK_NOT_AUTHORISED
        assert still_connected(a, 0.5), "another backend's CONNECT closed this backend"
        assert connack(lb, "be-beta", secret_b, username="backend:be-beta") == 0
        assert connack(lb, "be-beta/worker-2", secret_b, username="backend:be-beta") == 0
        assert log_line(lb, "be-beta", "client id must be its name")
    finally:
        close(a)


# ---- 6. refusal logs are bounded ----

def test_refusal_logs_are_rate_limited(tmp_path):
    b = Broker(tmp_path / "b", opts={"log_refusals_per_source": 3, "log_refusals_window": 4,
                                     "log_refusals_per_second": 10})
    try:
        d = make_device(b, "flooder")
        bad = d.token(aud="wrong-project")
        mark = len(b.log_text())
        for _ in range(60):
            assert connack(b, d.client_id, bad) == CONNACK_NOT_AUTHORISED
        log = b.log_text()[mark:]
        lines = [ln for ln in log.splitlines() if "latchkey: event=refused " in ln and f" device={d.client_id} " in ln]
        assert len(lines) == 3, lines
        line = log_line(b, "refused 57 more connections from 127.0.0.1", timeout=8, after=mark)
        assert line is not None, b.log_text()[mark:][-2000:]
        # many sources: at most 10 lines a second in all, and a count of the rest
        mark = len(b.log_text())
        for i in range(2, 42):
            c = mqtt.Client(client_id=d.client_id, protocol=mqtt.MQTTv311)
            c.username_pw_set("unused", bad)
            rcs = []
            c.on_connect = lambda cl, ud, fl, rc, props=None: rcs.append(rc)
            c.connect(b.host, b.plain_port, 60, bind_address=f"127.0.0.{i}")
            assert pump(c, rcs) == CONNACK_NOT_AUTHORISED
            c.socket() and c.socket().close()
        log = b.log_text()[mark:]
        lines = [ln for ln in log.splitlines() if "latchkey: event=refused " in ln and f" device={d.client_id} " in ln]
        assert len(lines) <= 20, len(lines)
        assert log_line(b, "refusals were not logged", timeout=12, after=mark)
    finally:
        b.stop()


# ---- 7. the smaller ones ----

@pytest.mark.parametrize("proto,clean,why", [(mqtt.MQTTv5, True, "MQTT 5"),
                                              (mqtt.MQTTv31, True, "MQTT 3.1"),
                                              (mqtt.MQTTv311, False, "clean session")])
def test_devices_speak_mqtt_311_with_a_clean_session(lb, proto, clean, why):
    """IoT Core allowed devices MQTT 3.1.1 with a clean session only; a persistent session
    brought back subscriptions the plugin never saw (commands then went nowhere)."""
    d = make_device(lb, f"proto-{os.urandom(3).hex()}")
    c, rcs = raw_client(lb, d, protocol=proto, clean=clean)
    c.connect(lb.host, lb.plain_port, 60)
    rc = pump(c, rcs)
    rc = rc if isinstance(rc, int) else rc.value
    assert rc in (CONNACK_NOT_AUTHORISED, 135), rc
    assert log_line(lb, d.client_id, why)


def test_dollar_topics_reach_no_one(wb):
    """Mosquitto refuses a client's publish to $SYS/... or $share/... itself, before any plugin
    sees it (docs/plugin.md, limits of Mosquitto 2.0.11): nothing is delivered."""
    d = make_device(wb, "dollar")
    o = wb.observe("$SYS/latchkey/#")
    c = connect(wb, d.client_id, d.token())
    try:
        for t in ("$SYS/latchkey/x", "$share/g/latchkey/x"):
            publish(c, t, b"dollar", qos=1)
        time.sleep(0.5)
        assert not [m for m in o.messages if m.payload == b"dollar"]
    finally:
        close(c)
        close(o)


def test_longest_device_path_connects(lb):
    """Every id at its longest (644-byte client id): before, paths over 319 bytes never
    connected."""
    project = "p" + "x" * 28 + "9"                 # 30
    region = "r" + "e" * 62                        # 63
    registry = "R" + "g" * 254                     # 255
    device = "D" + "v" * 254                       # 255
    ensure_registry(lb, registry, project=project, region=region)
    d = make_device(lb, device, registry=registry, project=project, region=region)
    assert len(d.client_id) == 644
    be, _ = backend(lb, "be-long", project=project)
    c = connect(lb, d.client_id, d.token())
    try:
        p = uniq("long")
        publish(c, d.topic("events"), p, qos=1)
        assert received(be, d.downstream("events"), p, timeout=3)
    finally:
        close(c)
        close(be)


def test_client_id_garbage_is_logged_safely(lb):
    """Whatever a client sends as its id, the log gets one line of printable ASCII, cut short
    (a quoted value, every byte outside printable ASCII as \\xHH: docs/plugin.md, "Logs").
    (Mosquitto refuses control characters in a client id itself.)"""
    mark = len(lb.log_text())
    s = socket.create_connection((lb.host, lb.plain_port))
    cid = ("x\u2028latchkey: forged line\u202e" + "y" * 5000).encode()
    body = b"\x00\x04MQTT\x04\xc2\x00\x3c" + len(cid).to_bytes(2, "big") + cid \
        + b"\x00\x06unused\x00\x05token"
    s.sendall(bytes([0x10]) + varint(len(body)) + body)
    s.recv(16)
    s.close()
    line = log_line(lb, 'event=refused', r'client="x\xe2\x80\xa8latchkey: forged line\xe2\x80\xaeyyy', after=mark)
    assert line is not None and len(line) < 600 and 'yyy..." ' in line, line
    assert "\u2028" not in lb.log_text()[mark:]


