"""A backend that is offline loses nothing (docs/plugin.md, "Backends"): with a persistent session
(MQTT 3.1.1 clean session off, or MQTT 5 with a session expiry), the QoS 1 events, states and presence
messages published while it was away are delivered in order when it comes back, also across a broker
restart with persistence on, when the plugin's own memory is gone too. Before, the access check did not
know a client that was not connected and deferred, which Mosquitto treats as a denial: nothing was queued.
"""
import json
import os
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from broker import Broker
from plugin_common import (PROJECT, backend_secret, close, connect, make_device, publish,
                           received)

P = PROJECT


@pytest.fixture(scope="module")
def b(tmp_path_factory):
    br = Broker(tmp_path_factory.mktemp("offline"), persistence=True)
    yield br
    br.stop()


def persistent_backend(b, name, secret, protocol=None):
    kw = {}
    if protocol == mqtt.MQTTv5:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        kw = {"protocol": protocol, "properties": props}
    c = connect(b, f"{name}/durable", secret, username=f"backend:{name}", clean_session=False, **kw)
    return c


def numbered(c, topic):
    return [m.payload.decode() for m in c.messages if m.topic == topic]


def wait_for(c, topic, n, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline and len(numbered(c, topic)) < n:
        time.sleep(0.05)
    return numbered(c, topic)


@pytest.mark.parametrize("proto", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["mqtt311", "mqtt5"])
def test_offline_backend_gets_everything_on_reconnect(b, proto):
    name = f"be-off-{'5' if proto == mqtt.MQTTv5 else '3'}"
    secret = backend_secret(b, name)
    d = make_device(b, f"dev-{name}")
    be = persistent_backend(b, name, secret, proto)
    assert b.subscribe(be, f"latchkey/{P}/#", 1) == 1
    close(be)
    time.sleep(0.3)

    c = connect(b, d.client_id, d.token())
    want = [f"e{i:03d}" for i in range(60)]
    for p in want:
        publish(c, d.topic("events"), p.encode(), qos=1)
    publish(c, d.topic("state"), b"state-while-away", qos=1)
    close(c)
    time.sleep(0.5)

    be = persistent_backend(b, name, secret, proto)
    try:
        got = wait_for(be, d.downstream("events"), len(want))
        assert got == want, f"{len(got)} of {len(want)} events, in order: {got[:5]}..."
        assert received(be, d.downstream("state"), b"state-while-away", timeout=3)
        # The offline message follows the state in the backend's queue: it may arrive just after it.
        offline = [json.loads(m.payload) for m in received(be, d.downstream("offline"), timeout=3)]
        online = [json.loads(m.payload) for m in be.messages if m.topic == d.downstream("online")]
        assert online and offline, "presence messages were not kept for the offline backend"
    finally:
        close(be)


def test_offline_backend_survives_broker_restart(b):
    name = "be-restart"
    secret = backend_secret(b, name)
    d = make_device(b, "dev-restart")
    be = persistent_backend(b, name, secret)
    assert b.subscribe(be, f"latchkey/{P}/#", 1) == 1
    close(be)
    time.sleep(0.3)

    c = connect(b, d.client_id, d.token())
    first = [f"a{i:03d}" for i in range(20)]
    for p in first:
        publish(c, d.topic("events"), p.encode(), qos=1)
    close(c)
    time.sleep(0.3)
    b.restart()                   # the plugin starts with nothing; the session comes back from disk

    c = connect(b, d.client_id, d.token())
    second = [f"b{i:03d}" for i in range(20)]
    for p in second:
        publish(c, d.topic("events"), p.encode(), qos=1)
    close(c)
    time.sleep(0.3)

    be = persistent_backend(b, name, secret)
    try:
        got = wait_for(be, d.downstream("events"), 40)
        assert got == first + second, got
    finally:
        close(be)


def test_deleted_backends_session_gets_nothing(b):
    name = "be-gone-offline"
    secret = backend_secret(b, name)
    d = make_device(b, "dev-gone")
    be = persistent_backend(b, name, secret)
    assert b.subscribe(be, f"latchkey/{P}/#", 1) == 1
    close(be)
    assert b.lk("backends", "delete", name).rc == 0
    time.sleep(0.5)
    c = connect(b, d.client_id, d.token())
    publish(c, d.topic("events"), b"after-delete", qos=1)
    close(c)
    # recreated under the same name (a new secret): the old session's queue held nothing
    secret2 = backend_secret(b, name)
    be = persistent_backend(b, name, secret2)
    try:
        time.sleep(1)
        assert not [m for m in be.messages if m.payload == b"after-delete"]
    finally:
        close(be)


def test_queue_limits_documented_in_shipped_config():
    """The shipped configuration sizes the offline queue for an outage (docs/plugin.md)."""
    conf = (os.path.dirname(__file__) + "/../../service/plugin/deploy/mosquitto-latchkey.conf")
    text = open(conf).read()
    values = dict(line.split(None, 1) for line in text.splitlines()
                  if line and not line.startswith("#") and " " in line)
    assert int(values["max_queued_messages"]) >= 1_000_000
    assert int(values["max_queued_bytes"]) >= 1 << 30
    assert values["persistence"].strip() == "true"
    assert int(values["autosave_interval"]) <= 300
