"""Faults around the broker (issue 20; docs/robustness.md, "Faults"): the broker killed with SIGKILL while
configs are being updated.

A real Mosquitto with latchkey's plugin and a real latchkeyd on the same registry file; devices are paho
MQTT 3.1.1 clients. What is checked against is independent of latchkey: what the devices received, the
API's and the tool's answers, SQLite's own `PRAGMA integrity_check`.
"""
import threading
import time

from api_common import Env, b64, device_path
from broker import Broker, Refused
from conftest import integrity
from plugin_common import close, connect, make_device, received


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
