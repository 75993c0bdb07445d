"""Faults around the broker (issue 20; docs/robustness.md, "Faults"): the broker killed with SIGKILL while
configs are being updated, and the registry held by a long writer.

A real Mosquitto with latchkey's plugin and a real latchkeyd on the same registry file; devices are paho
MQTT 3.1.1 clients; the long writer is Python's sqlite3 module (another process than the broker, the tool and
latchkeyd) holding `BEGIN IMMEDIATE`. What is checked against is independent of latchkey: what the devices
received, the API's and the tool's answers, SQLite's own `PRAGMA integrity_check`.
"""
import sqlite3
import threading
import time

from api_common import Env, b64, device_path, refused
from broker import Broker, Refused
from plugin_common import (CONNACK_NOT_AUTHORISED, backend_secret, close, connack, connect, log_line, make_device, publish,
                           received, wait_disconnected)


def integrity(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("PRAGMA integrity_check").fetchall()
    finally:
        con.close()


def kill_broker(b):
    b.proc.kill()
    b.proc.wait()
    b.proc = None
    b._stderr.close()


def subscribed(b, d):
    """d connected and subscribed to its config (QoS 1), or None while the broker is not there yet."""
    try:
        c = connect(b, d.client_id, d.token())
    except Refused:
        return None
    assert b.subscribe(c, d.topic("config"), 1) == 1
    return c


# ---- 1. the broker killed while configs are updated ----

def test_broker_killed_during_config_updates_every_device_gets_the_latest(tmp_path):
    """A loop updates the configs of 16 connected devices through latchkeyd's API (and, while the broker
    is down, through the tool); the broker is killed with SIGKILL in the middle and started again. After the
    devices reconnect and resubscribe, and the updates stop, every device's last config message is the
    latest version the registry acknowledged (IoT Core: a device gets the latest config on subscribe, and
    every update after it)."""
    b = Broker(tmp_path / "b")
    e = Env(tmp_path / "lkd", db=b.db, make_registry=False)
    devs = [make_device(b, f"cfg-{i:02d}") for i in range(16)]
    clients = {d.id: subscribed(b, d) for d in devs}
    latest = {d.id: b"" for d in devs}          # the newest payload whose update was acknowledged
    lock = threading.Lock()
    stop, rounds = threading.Event(), [0]
    errors = []

    def updater():
        conn = e.api.conn()
        r = 0
        while not stop.is_set():
            r += 1
            for d in devs:
                data = f"{d.id} api round {r}".encode()
                try:
                    resp = e.api.post(device_path(d.id) + ":modifyCloudToDeviceConfig", {"binaryData": b64(data)},
                                      conn=conn)
                except OSError:
                    conn = e.api.conn()
                    continue
                if resp.status != 200:
                    errors.append(resp)
                    continue
                with lock:
                    latest[d.id] = data
            rounds[0] = r

    t = threading.Thread(target=updater, daemon=True)
    t.start()
    try:
        while rounds[0] < 3:
            assert t.is_alive(), errors
            time.sleep(0.05)
        kill_broker(b)
        for c in clients.values():
            close(c)
        # while the broker is down, the updates go on, some with the tool
        for d in devs[::4]:
            data = f"{d.id} tool while down".encode()
            r = d.devices("configs", "update", d.id, "--config-data", data.decode())
            assert r.rc == 0, r
            with lock:
                latest[d.id] = data
        down = rounds[0]
        while rounds[0] < down + 1:
            time.sleep(0.05)
        b.start()
        clients = {}
        deadline = time.time() + 20
        while len(clients) < len(devs):
            assert time.time() < deadline, "the devices could not reconnect"
            for d in devs:
                if d.id not in clients and (c := subscribed(b, d)) is not None:
                    clients[d.id] = c
        after = rounds[0]
        while rounds[0] < after + 2:       # updates go on after the reconnect
            time.sleep(0.05)
        stop.set()
        t.join(30)
        assert not errors, errors[:3]
        for d in devs:
            want = latest[d.id]
            got = received(clients[d.id], d.topic("config"), want, timeout=5)
            assert got, (d.id, want, [m.payload for m in clients[d.id].messages][-3:])
            r = d.devices("configs", "describe", d.id, "--format", "json")
            assert r.rc == 0 and b64(want) in r.out, (r, want)
        time.sleep(1.0)    # nothing older comes after the latest
        for d in devs:
            last = [m.payload for m in clients[d.id].messages if m.topic == d.topic("config")][-1]
            assert last == latest[d.id], (d.id, last, latest[d.id])
        assert integrity(b.db) == [("ok",)]
    finally:
        stop.set()
        for c in clients.values():
            close(c)
        e.stop()
        b.stop()


# ---- 2. the registry locked by a long writer ----

HOLD = 7.0   # seconds the writer holds the lock: longer than every busy timeout (latchkeyd's 5 s)


def test_long_writer_clear_errors_service_goes_on_revocation_enforced(tmp_path):
    """Another process holds the registry's write lock for 7 s. Meanwhile the tool's write exits 18 (busy)
    after its --busy-timeout and latchkeyd's answers 503 UNAVAILABLE after its 5 s, both saying so; reads
    answer; the broker keeps serving connected devices and connects new ones; a device blocked just before
    the lock is closed and refused while it is held (reads do not wait for writers: the change feed is read
    within a tick), and a credential deleted just after it is released closes its connection too. Nothing
    is written by the refused writes, and the file passes integrity_check."""
    b = Broker(tmp_path / "b")
    e = Env(tmp_path / "lkd", db=b.db, make_registry=False)
    blocked, revoked, steady, late = (make_device(b, n) for n in ("blocked-dev", "revoked-dev", "steady-dev",
                                                                    "late-dev"))
    backend = connect(b, "be-watch/t", backend_secret(b, "be-watch"), username="backend:be-watch")
    assert b.subscribe(backend, "latchkey/proj-one/#", 1) == 1
    cb, cr, cs = (connect(b, d.client_id, d.token()) for d in (blocked, revoked, steady))
    holder = sqlite3.connect(str(b.db), timeout=5, isolation_level=None)
    try:
        assert blocked.devices("update", blocked.id, "--blocked").rc == 0
        holder.execute("BEGIN IMMEDIATE")
        t_lock = time.time()

        api_answer = []
        api = threading.Thread(target=lambda: api_answer.append(
            e.api.patch(device_path(revoked.id), {"blocked": True}, query={"updateMask": "blocked"})), daemon=True)
        api.start()
        # the tool: a clear error after its busy timeout
        r = b.lk("devices", "update", revoked.id, "--blocked", "--busy-timeout", "300", *revoked.loc)
        assert r.rc == 18, r
        assert "LK_ERR_REG_BUSY" in r.err and "busy" in r.err.lower(), r.err
        r = b.lk("devices", "describe", steady.id, *steady.loc, "--format", "json")
        assert r.rc == 0, r                                          # reads do not wait for writers
        # the broker: the device blocked before the lock is closed and refused
        assert wait_disconnected(cb, 5) is not None, "the blocked device stayed connected while the lock was held"
        assert connack(b, blocked.client_id, blocked.token()) == CONNACK_NOT_AUTHORISED
        # ... and keeps serving the others: events flow, a new device connects and gets its config
        for i in range(5):
            publish(cs, steady.topic("events"), f"under lock {i}".encode(), qos=1)
        assert received(backend, steady.downstream("events"), b"under lock 4", timeout=5)
        cl = connect(b, late.client_id, late.token())
        try:
            assert b.subscribe(cl, late.topic("config"), 1) == 1
            assert received(cl, late.topic("config"), b"", timeout=5)
        finally:
            close(cl)
        api.join(HOLD + 5)
        assert time.time() - t_lock < HOLD, "the checks took longer than the lock: they prove nothing"
        refused(api_answer[0], "UNAVAILABLE")
        assert api_answer[0].status == 503, api_answer
        assert not cr.disconnected.is_set()
        time.sleep(max(0.0, HOLD - (time.time() - t_lock)))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    try:
        # the refused writes wrote nothing: the device is not blocked
        assert still_unblocked(revoked)
        assert not cr.disconnected.is_set()
        # a credential deleted just after the lock: its connection is closed, its token refused
        r = revoked.devices("credentials", "delete", revoked.id, "0")
        assert r.rc == 0, r
        assert wait_disconnected(cr, 5) is not None, "the connection of a deleted credential stayed"
        assert connack(b, revoked.client_id, revoked.token()) == CONNACK_NOT_AUTHORISED
        assert not cs.disconnected.is_set(), "the steady device was closed"
        assert log_line(b, blocked.client_id, "blocked")
        assert integrity(b.db) == [("ok",)]
        assert e.daemon.alive()
    finally:
        for c in (cb, cr, cs, backend):
            close(c)
        e.stop()
        b.stop()


def still_unblocked(d):
    import json
    r = d.devices("describe", d.id, "--format", "json")
    assert r.rc == 0, r
    return not json.loads(r.out).get("blocked", False)
