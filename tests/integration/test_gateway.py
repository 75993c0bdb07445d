"""Gateways on the real broker (docs/plugin.md, "Gateways"): a gateway attaches devices on its own
connection with a QoS 1 publish to /devices/D/attach, then publishes and subscribes for them; each
of IoT Core's auth methods decides as IoT Core did; what the broker tells the gateway arrives on
/devices/GW/errors as IoT Core's JSON. Tokens are made here with PyJWT, clients are paho.
"""
import json
import os
import time

import paho.mqtt.client as mqtt
import pytest

from plugin_common import (PROJECT, REGION, REGISTRY, Key, close, connect, ensure_registry,
                           make_device, publish, received, start_broker, still_connected,
                           wait_disconnected)

P = PROJECT
METHODS = {"association-only": "ASSOCIATION_ONLY",
           "device-auth-token-only": "DEVICE_AUTH_TOKEN_ONLY",
           "association-and-device-auth-token": "ASSOCIATION_AND_DEVICE_AUTH_TOKEN",
           None: "GATEWAY_AUTH_METHOD_UNSPECIFIED"}


@pytest.fixture(scope="module")
def b(tmp_path_factory):
    # skew 1: an attached device's token ends its attachment within seconds of exp
    br = start_broker(tmp_path_factory, "gateway", opts={"activity_flush": 1, "skew": 1})
    yield br
    br.stop()


@pytest.fixture(scope="module")
def backend(b):
    r = b.lk("backends", "create", "gw-backend", "--project", P, "--format", "json")
    assert r.rc == 0, r
    secret = json.loads(r.out)["secret"]
    c = connect(b, "gw-backend/t", secret, username="backend:gw-backend", protocol=mqtt.MQTTv5)
    assert b.subscribe(c, f"latchkey/{P}/#", 1) == 1
    yield c
    close(c)


def make_gateway(b, gid, method, registry=REGISTRY):
    extra = ["--device-type", "gateway"] + (["--auth-method", method] if method else [])
    return make_device(b, gid, registry=registry, extra=extra)


def bind(b, gw, d):
    r = b.lk("devices", "gateways", "bind", "--gateway", gw.id, "--device", d.id,
             "--registry", gw.registry, "--project", gw.project, "--region", gw.region)
    assert r.rc == 0, r


def unbind(b, gw, d):
    r = b.lk("devices", "gateways", "unbind", "--gateway", gw.id, "--device", d.id,
             "--registry", gw.registry, "--project", gw.project, "--region", gw.region)
    assert r.rc == 0, r


def gw_connect(b, gw):
    c = connect(b, gw.client_id, gw.token())
    assert b.subscribe(c, gw.topic("errors"), 0) == 0
    return c


def errors(c, device=None, kind=None, timeout=0.0):
    deadline = time.time() + timeout
    while True:
        out = []
        for m in received(c, None):
            if m.topic.endswith("/errors"):
                e = json.loads(m.payload)
                if (device is None or e["device_id"] == device) and (kind is None or e["error_type"] == kind):
                    out.append(e)
        if out or time.time() >= deadline:
            return out
        time.sleep(0.02)


def clear(c):
    with c.got:
        c.messages.clear()


def attach(c, d, token=None, payload=None):
    if payload is None:
        payload = json.dumps({"authorization": token or ""}).encode()
    publish(c, f"/devices/{d.id}/attach", payload, qos=1)


def event_arrives(b, c, backend, d, body, timeout=3.0):
    """The gateway publishes an event for d; True when the backend got it as d's, naming the gateway."""
    publish(c, d.topic("events"), body, qos=1)
    msgs = received(backend, d.downstream("events"), body, timeout=timeout)
    return msgs


def attached(c, backend, d, gw, timeout=2.0):
    body = os.urandom(6).hex().encode()
    msgs = event_arrives(None, c, backend, d, body, timeout=timeout)
    if not msgs:
        return False
    props = dict(msgs[0].properties.UserProperty)
    assert props["deviceId"] == d.id and props["gatewayId"] == gw.id, props
    return True


def test_each_auth_method_bound_and_token(b, backend):
    """Every method x bound/unbound x no/valid/wrong token: IoT Core's outcome."""
    dev_bound = make_device(b, "gwm-bound")
    dev_free = make_device(b, "gwm-free")
    stranger = Key(b.base)
    for i, (method, name) in enumerate(METHODS.items()):
        gw = make_gateway(b, f"gwm-gw{i}", method)
        bind(b, gw, dev_bound)
        c = gw_connect(b, gw)
        try:
            for d, bound in ((dev_bound, True), (dev_free, False)):
                for tok_kind in ("none", "valid", "wrong"):
                    token = {"none": None, "valid": d.token(), "wrong": d.token(key=stranger)}[tok_kind]
                    want = {"ASSOCIATION_ONLY": bound,
                            "DEVICE_AUTH_TOKEN_ONLY": tok_kind == "valid",
                            "ASSOCIATION_AND_DEVICE_AUTH_TOKEN": bound and tok_kind == "valid",
                            "GATEWAY_AUTH_METHOD_UNSPECIFIED": False}[name]
                    clear(c)
                    attach(c, d, token)
                    case = f"{name}, {'bound' if bound else 'unbound'}, token {tok_kind}"
                    if want:
                        assert attached(c, backend, d, gw), f"{case}: not attached"
                        assert not errors(c), case
                        publish(c, f"/devices/{d.id}/detach", b"{}", qos=1)
                    else:
                        errs = errors(c, d.id, "GATEWAY_ATTACHMENT_ERROR", timeout=2)
                        assert errs, f"{case}: no attachment error"
                        e = errs[0]
                        assert e["description"] and e["mqtt_message_info"]["topic"] == f"/devices/{d.id}/attach"
                        assert e["mqtt_message_info"]["message_type"] == "PUBLISH"
                        clear(c)
                        publish(c, d.topic("events"), b"must-not-pass", qos=1)
                        assert errors(c, d.id, "GATEWAY_DEVICE_NOT_ATTACHED", timeout=2), case
                        assert not received(backend, d.downstream("events"), b"must-not-pass")
                    assert still_connected(c, 0), case
        finally:
            close(c)
    log = b.log_text()
    assert dev_bound.token() not in log


def test_payload_forms_and_refusals(b, backend):
    gw = make_gateway(b, "gwp-gw", "association-only")
    d = make_device(b, "gwp-dev")
    bind(b, gw, d)
    c = gw_connect(b, gw)
    try:
        for payload in (b"", b"{}", b'{"authorization": ""}', b'{"authorization" : "x.y.z"}'):
            clear(c)
            attach(c, d, payload=payload)
            assert attached(c, backend, d, gw), payload
        for payload, why in ((b"[1]", "JSON object"), (b'{"authorization": 5}', "string"),
                             (b'{"authorization": "", "authorization": ""}', "JSON object"),
                             (b'{"token": ""}', "other than"), (b"{" * 9000, "larger"),
                             (b'{"authorization": "x.y.z", "extra": 1}', "other than")):
            clear(c)
            attach(c, d, payload=payload)
            errs = errors(c, d.id, "GATEWAY_ATTACHMENT_ERROR", timeout=2)
            assert errs and why in errs[0]["description"], (payload[:40], errs)
        # a refused attach of an attached device ends the attachment
        clear(c)
        publish(c, d.topic("events"), b"after-refusal", qos=1)
        assert errors(c, d.id, "GATEWAY_DEVICE_NOT_ATTACHED", timeout=2)
        for dev_id, why in (("gwp-gw", "itself"), ("no-such-dev", "no such device")):
            clear(c)
            publish(c, f"/devices/{dev_id}/attach", b"{}", qos=1)
            errs = errors(c, dev_id, "GATEWAY_ATTACHMENT_ERROR", timeout=2)
            assert errs and why in errs[0]["description"], errs
        clear(c)
        publish(c, "/devices/gwp-dev/detach", b"{}", qos=1)
        assert errors(c, "gwp-dev", "GATEWAY_DETACHMENT_ERROR", timeout=2)
        assert still_connected(c, 0.2)
    finally:
        close(c)


def test_non_gateway_sending_attach_is_disconnected(b):
    d = make_device(b, "gwn-plain")
    other = make_device(b, "gwn-other")
    c = connect(b, d.client_id, d.token())
    try:
        publish(c, f"/devices/{other.id}/attach", b"{}", qos=1)
        assert wait_disconnected(c, 3), "a non-gateway's attach did not close it"
    finally:
        close(c)
    # nor may it publish for another device
    c = connect(b, d.client_id, d.token())
    try:
        publish(c, other.topic("events"), b"x", qos=1)
        assert wait_disconnected(c, 3)
    finally:
        close(c)


def test_config_commands_and_state_through_gateway(b, backend):
    gw = make_gateway(b, "gwc-gw", "association-only")
    d = make_device(b, "gwc-dev")
    bind(b, gw, d)
    assert d.devices("configs", "update", d.id, "--config-data", "cfg-1").rc == 0
    c = gw_connect(b, gw)
    try:
        attach(c, d)
        assert attached(c, backend, d, gw)
        assert b.subscribe(c, d.topic("config"), 1) == 1
        assert received(c, d.topic("config"), b"cfg-1", timeout=3)
        assert d.devices("configs", "update", d.id, "--config-data", "cfg-2").rc == 0
        assert received(c, d.topic("config"), b"cfg-2", timeout=3)
        assert b.subscribe(c, d.topic("commands/#"), 1) == 1
        r = d.devices("commands", "send", d.id, "--command-data", "reboot", "--subfolder", "sys")
        assert r.rc == 0, r
        assert received(c, d.topic("commands", "sys"), b"reboot", timeout=3)
        publish(c, d.topic("state"), b"state-via-gw", qos=1)
        msgs = received(backend, d.downstream("state"), b"state-via-gw", timeout=3)
        assert msgs and dict(msgs[0].properties.UserProperty)["gatewayId"] == gw.id
        time.sleep(1.5)  # one activity flush
        r = d.devices("describe", d.id, "--format", "json")
        g = json.loads(r.out)["gatewayConfig"]
        assert g["lastAccessedGatewayId"] == gw.id and g["lastAccessedGatewayTime"], g
        online = [json.loads(m.payload) for m in received(backend, d.downstream("online"))]
        assert online and online[-1]["gatewayId"] == gw.id
        # not attached: a subscription for another device is refused, with an error
        other = make_device(b, "gwc-other")
        assert b.subscribe(c, other.topic("config"), 1) == 0x80
        assert errors(c, other.id, "GATEWAY_DEVICE_NOT_ATTACHED", timeout=2)
        publish(c, f"/devices/{d.id}/detach", b"{}", qos=1)
        offline = received(backend, d.downstream("offline"), timeout=3)
        assert offline and json.loads(offline[-1].payload)["gatewayId"] == gw.id
    finally:
        close(c)


def test_cross_registry_and_cross_gateway(b, backend):
    ensure_registry(b, "gw-other-reg")
    gw = make_gateway(b, "gwx-gw", "association-only")
    gw2 = make_gateway(b, "gwx-gw2", "association-and-device-auth-token")
    far = make_device(b, "gwx-far", registry="gw-other-reg")
    mine = make_device(b, "gwx-mine")
    bind(b, gw, mine)
    c = gw_connect(b, gw2)
    try:
        # another registry's device cannot even be named
        attach(c, far, far.token())
        errs = errors(c, far.id, "GATEWAY_ATTACHMENT_ERROR", timeout=2)
        assert errs and "no such device" in errs[0]["description"]
        # bound only to another gateway: not without its binding here
        clear(c)
        attach(c, mine, mine.token())
        assert errors(c, mine.id, "GATEWAY_ATTACHMENT_ERROR", timeout=2)
    finally:
        close(c)


def test_unbind_block_delete_while_attached(b, backend):
    gw = make_gateway(b, "gwu-gw", "association-only")
    devs = [make_device(b, f"gwu-dev{i}") for i in range(3)]
    for d in devs:
        bind(b, gw, d)
    c = gw_connect(b, gw)
    try:
        for d in devs:
            attach(c, d)
            assert attached(c, backend, d, gw)
        clear(c)
        unbind(b, gw, devs[0])
        assert devs[1].devices("update", devs[1].id, "--blocked").rc == 0
        assert devs[2].devices("delete", devs[2].id).rc == 0
        for d, why in ((devs[0], "unbound"), (devs[1], "blocked"), (devs[2], "deleted")):
            errs = errors(c, d.id, "GATEWAY_DEVICE_DETACHED", timeout=4)
            assert errs and why in errs[0]["description"], (d.id, errs)
        for d in devs:
            publish(c, d.topic("events"), b"after", qos=1)
            assert errors(c, d.id, "GATEWAY_DEVICE_NOT_ATTACHED", timeout=2)
        assert still_connected(c, 0)
    finally:
        close(c)


def test_direct_connection_wins_and_newest_gateway_wins(b, backend):
    gw1 = make_gateway(b, "gwd-gw1", "association-only")
    gw2 = make_gateway(b, "gwd-gw2", "association-only")
    d = make_device(b, "gwd-dev")
    bind(b, gw1, d)
    bind(b, gw2, d)
    c1, c2 = gw_connect(b, gw1), gw_connect(b, gw2)
    try:
        attach(c1, d)
        assert attached(c1, backend, d, gw1)
        attach(c2, d)                              # the newest attach wins
        assert attached(c2, backend, d, gw2)
        errs = errors(c1, d.id, "GATEWAY_DEVICE_DETACHED", timeout=2)
        assert errs and "another gateway" in errs[0]["description"]
        direct = connect(b, d.client_id, d.token())  # its own connection wins
        try:
            errs = errors(c2, d.id, "GATEWAY_DEVICE_DETACHED", timeout=2)
            assert errs and "directly" in errs[0]["description"]
            clear(c1)
            attach(c1, d)
            errs = errors(c1, d.id, "GATEWAY_ATTACHMENT_ERROR", timeout=2)
            assert errs and "directly" in errs[0]["description"]
        finally:
            close(direct)
    finally:
        close(c1)
        close(c2)


def test_gateway_restart_and_reattach(b, backend):
    gw = make_gateway(b, "gwr-gw", "device-auth-token-only")
    d = make_device(b, "gwr-dev")
    c = gw_connect(b, gw)
    attach(c, d, d.token())
    assert attached(c, backend, d, gw)
    close(c)
    off = received(backend, d.downstream("offline"), timeout=3)
    assert off and "gateway" in json.loads(off[-1].payload)["reason"]
    c = gw_connect(b, gw)
    try:
        publish(c, d.topic("events"), b"not-yet", qos=1)
        assert errors(c, d.id, "GATEWAY_DEVICE_NOT_ATTACHED", timeout=2)
        attach(c, d, d.token())
        assert attached(c, backend, d, gw)
    finally:
        close(c)


def test_thousand_attached_and_the_next_refused(b, backend):
    gw = make_gateway(b, "gwk-gw", "device-auth-token-only")
    key = Key(b.base)
    n = 1000
    lines = []
    for i in range(n + 1):
        lines.append(json.dumps({"id": f"gwk-{i:04d}", "credentials": [
            {"publicKey": {"format": "ES256_PEM", "key": key.pem.decode()}}]}))
    r = b.lk("devices", "import", "-", "--registry", REGISTRY, "--project", P, "--region", REGION,
             input="\n".join(lines) + "\n")
    assert r.rc == 0, r
    token = key.sign({"iat": int(time.time()), "exp": int(time.time()) + 3600, "aud": P})
    payload = json.dumps({"authorization": token}).encode()
    c = gw_connect(b, gw)
    try:
        infos = [c.publish(f"/devices/gwk-{i:04d}/attach", payload, qos=1) for i in range(n)]
        for info in infos:
            info.wait_for_publish(30)
        publish(c, f"/devices/gwk-{n:04d}/attach", payload, qos=1)
        errs = errors(c, f"gwk-{n:04d}", "GATEWAY_ATTACHMENT_ERROR", timeout=5)
        assert errs and "1000 devices attached" in errs[0]["description"], errs
        assert len(errors(c, kind="GATEWAY_ATTACHMENT_ERROR")) == 1
        # the last of the thousand works
        last = type("D", (), {})()
        last.id = f"gwk-{n - 1:04d}"
        last.topic = lambda kind: f"/devices/{last.id}/{kind}"
        last.downstream = lambda kind: f"latchkey/{P}/{REGION}/{REGISTRY}/{last.id}/{kind}"
        assert attached(c, backend, last, gw)
    finally:
        close(c)


def test_token_expiry_and_method_change_end_attachments(b, backend):
    gw = make_gateway(b, "gwt-gw", "association-and-device-auth-token")
    d_tok = make_device(b, "gwt-tok")
    d_bind = make_device(b, "gwt-bind")
    bind(b, gw, d_tok)
    bind(b, gw, d_bind)
    c = gw_connect(b, gw)
    try:
        attach(c, d_tok, d_tok.token(ttl=2))
        assert attached(c, backend, d_tok, gw)
        errs = errors(c, d_tok.id, "GATEWAY_DEVICE_DETACHED", timeout=8)
        assert errs and "token expired" in errs[0]["description"], errs
        # association only now: attached by its binding; then back to needing tokens
        r = gw.devices("update", gw.id, "--auth-method", "association-only")
        assert r.rc == 0, r
        time.sleep(1.2)
        attach(c, d_bind)
        assert attached(c, backend, d_bind, gw)
        r = gw.devices("update", gw.id, "--auth-method", "device-auth-token-only")
        assert r.rc == 0, r
        errs = errors(c, d_bind.id, "GATEWAY_DEVICE_DETACHED", timeout=4)
        assert errs and "own token" in errs[0]["description"], errs
        assert still_connected(c, 0)
    finally:
        close(c)
