"""gatewayInfo on latchkeyd's HTTP device bridge (docs/daemon.md, "Gateways over HTTP").

The broker with the plugin and latchkeyd on one registry, as test_http_bridge.py sets them up. Each
gateway auth method x bound/unbound x delegatedDeviceId (the gateway's path and token, acting for a
device) / gatewayId (the device's path and token, through a gateway), with IoT Core's rule
(lk_gateway_admit: over HTTP a delegated request carries no device token); what passes reaches the
backend as the device's message and records lastAccessedGatewayId; every refusal with its status and
its reason: another registry's devices, blocked devices and gateways, a non-gateway named as one.
"""
import base64
import json
import time

import pytest

from plugin_common import PROJECT, REGION, REGISTRY, close, ensure_registry, make_device
from test_http_bridge import Bridge, b64, error, props

METHODS = {"association-only": "ASSOCIATION_ONLY", "device-auth-token-only": "DEVICE_AUTH_TOKEN_ONLY",
           "association-and-device-auth-token": "ASSOCIATION_AND_DEVICE_AUTH_TOKEN", None: "unspecified"}
GW = {"association-only": "gw-assoc", "device-auth-token-only": "gw-token",
      "association-and-device-auth-token": "gw-both", None: "gw-none"}

# IoT Core's outcome, and latchkey's over HTTP: (method, bound, way) -> passes?
# delegatedDeviceId: the device's own token is not in the request (token_verified = 0).
# gatewayId: the device's token is the request's (token_verified = 1).
EXPECTED = {
    ("association-only", True, "delegated"): True,
    ("association-only", False, "delegated"): False,
    ("device-auth-token-only", True, "delegated"): False,
    ("device-auth-token-only", False, "delegated"): False,
    ("association-and-device-auth-token", True, "delegated"): False,
    ("association-and-device-auth-token", False, "delegated"): False,
    (None, True, "delegated"): False,
    (None, False, "delegated"): False,
    ("association-only", True, "through"): True,
    ("association-only", False, "through"): False,
    ("device-auth-token-only", True, "through"): True,
    ("device-auth-token-only", False, "through"): True,      # the binding is not looked at
    ("association-and-device-auth-token", True, "through"): True,
    ("association-and-device-auth-token", False, "through"): False,
    (None, True, "through"): False,
    (None, False, "through"): False,
}


class Fleet:
    def __init__(self, br):
        self.br = br
        self.gw = {}
        for m, gid in GW.items():
            extra = ["--device-type", "gateway"] + (["--auth-method", m] if m else [])
            self.gw[m] = make_device(br.b, gid, extra=extra)
        self.bound = make_device(br.b, "node-bound")
        self.free = make_device(br.b, "node-free")
        self.blocked = make_device(br.b, "node-blocked", extra=["--blocked"])
        for gid in GW.values():
            for dev in ("node-bound", "node-blocked"):
                r = br.b.lk("devices", "gateways", "bind", "--gateway", gid, "--device", dev, "--registry",
                            REGISTRY, "--project", PROJECT, "--region", REGION)
                assert r.rc == 0, r
        ensure_registry(br.b, "other-reg")
        self.other_gw = make_device(br.b, "gw-other", registry="other-reg",
                                    extra=["--device-type", "gateway", "--auth-method", "association-only"])
        self.other_dev = make_device(br.b, "node-other", registry="other-reg")

    def describe(self, dev):
        return json.loads(dev.devices("describe", dev.id, "--format", "json").out)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    br = Bridge(tmp_path_factory.mktemp("gw"))
    try:
        yield Fleet(br)
    finally:
        br.stop()


def post_event(br, way, gw, dev, data, info_extra=None):
    """publishEvent for dev through gw, either way."""
    if way == "delegated":
        body = {"binaryData": b64(data), "gatewayInfo": {"delegatedDeviceId": dev.id}}
        return br.post(gw.id, "publishEvent", body, gw.token())
    body = {"binaryData": b64(data), "gatewayInfo": {"gatewayId": gw.id}}
    return br.post(dev.id, "publishEvent", body, dev.token())


def arrived(app, topic, payload, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        msgs = [m for m in app.messages if m.topic == topic and m.payload == payload]
        if msgs:
            return msgs
        time.sleep(0.02)
    return []


def test_each_auth_method_bound_or_not_either_way(fleet):
    br = fleet.br
    app = br.backend("gw-app")
    try:
        n = 0
        for (m, bound, way), passes in EXPECTED.items():
            gw, dev = fleet.gw[m], fleet.bound if bound else fleet.free
            data = f"{m}-{bound}-{way}".encode()
            r = post_event(br, way, gw, dev, data)
            if passes:
                assert r.status_code == 200 and r.json() == {}, (m, bound, way, r.text)
                n += 1
                msgs = arrived(app, dev.downstream("events"), data)
                assert msgs, (m, bound, way)
                p = props(msgs[0])
                # the device's message: its topic, its attributes
                assert p["deviceId"] == dev.id and p["deviceNumId"] == str(dev.num_id), p
                # latchkeyd sends gatewayId as an MQTT 5 user property; the plugin copies it into
                # the attributes, as for a gateway's MQTT publish
                assert p.get("gatewayId") == gw.id, p
                g = fleet.describe(dev)["gatewayConfig"]
                assert g["lastAccessedGatewayId"] == gw.id and g["lastAccessedGatewayTime"], g
            else:
                msg = error(r, 403, "PERMISSION_DENIED", gw.id)
                if m is None:
                    assert "unspecified" in msg, msg
                elif (METHODS[m] == "DEVICE_AUTH_TOKEN_ONLY" or bound) and way == "delegated":
                    assert "token" in msg and "ASSOCIATION_ONLY" in msg, msg
                else:
                    assert "not bound" in msg, msg
    finally:
        close(app)


def test_state_and_config_through_a_gateway(fleet):
    br, gw, dev = fleet.br, fleet.gw["association-only"], fleet.bound
    r = dev.devices("configs", "update", dev.id, "--config-data", "for-node-bound")
    assert r.rc == 0, r
    # setState, delegated: stored as the device's state
    r = br.post(gw.id, "setState", {"state": {"binaryData": b64(b"st-1")},
                                    "gateway_info": {"delegated_device_id": dev.id}}, gw.token())
    assert r.status_code == 200, r.text
    # (a second device: one state a second per device, MQTT, HTTP and gateways together)
    free, gwt = fleet.free, fleet.gw["device-auth-token-only"]
    r = br.post(free.id, "setState", {"state": {"binaryData": b64(b"st-2")}, "gatewayInfo": {"gatewayId": gwt.id}},
                free.token())
    assert r.status_code == 200, r.text
    for d, want in [(dev, b"st-1"), (free, b"st-2")]:
        deadline = time.time() + 5
        while True:
            out = d.devices("states", "list", d.id, "--format", "json").out
            if out.strip() not in ("", "[]") and base64.b64decode(json.loads(out)[0]["binaryData"]) == want:
                break
            assert time.time() < deadline, (d.id, out)
            time.sleep(0.1)
    # the config GET takes gatewayInfo as query parameters (gRPC transcoding): the device's config
    for q, token in [(f"?gatewayInfo.delegatedDeviceId={dev.id}", gw.token()),
                     (f"?gateway_info.delegated_device_id={dev.num_id}", gw.token()),
                     (f"?localVersion=0&gatewayInfo.gatewayId={gw.id}", dev.token())]:
        r = br.config(gw.id if "delegated" in q else dev.id, token, q)
        assert r.status_code == 200, (q, r.text)
        assert base64.b64decode(r.json()["binaryData"]) == b"for-node-bound", (q, r.text)
    # ... with the same rules
    error(br.config(gw.id, gw.token(), f"?gatewayInfo.delegatedDeviceId={fleet.free.id}"), 403,
          "PERMISSION_DENIED", "not bound")
    error(br.config(gw.id, gw.token(), "?gatewayInfo.delegatedDeviceId=a1&gatewayInfo.gatewayId=b1"), 400,
          "INVALID_ARGUMENT", "not both")
    # a numId names the device as well as its id
    r = br.post(gw.id, "publishEvent", {"binaryData": b64(b"n"), "gatewayInfo": {"delegatedDeviceId":
                                                                                   str(dev.num_id)}}, gw.token())
    assert r.status_code == 200, r.text


def test_refusals_say_why(fleet):
    br, gw = fleet.br, fleet.gw["association-only"]
    tok = gw.token()

    def ev(path_dev, token, info):
        return br.post(path_dev, "publishEvent", {"binaryData": b64(b"x"), "gatewayInfo": info}, token)

    # another registry's devices are not found: the request names only an id in the caller's registry
    error(ev(gw.id, tok, {"delegatedDeviceId": fleet.other_dev.id}), 404, "NOT_FOUND", "node-other", REGISTRY)
    error(ev(gw.id, tok, {"delegatedDeviceId": str(fleet.other_dev.num_id)}), 404, "NOT_FOUND")
    error(ev(fleet.bound.id, fleet.bound.token(), {"gatewayId": fleet.other_gw.id}), 404, "NOT_FOUND", "gw-other")
    error(ev(fleet.bound.id, fleet.bound.token(), {"gatewayId": "ghost-gw"}), 404, "NOT_FOUND", "ghost-gw")
    # a blocked device, a blocked gateway
    error(ev(gw.id, tok, {"delegatedDeviceId": fleet.blocked.id}), 403, "PERMISSION_DENIED", "blocked")
    r = br.b.lk("devices", "update", gw.id, "--blocked", "--registry", REGISTRY, "--project", PROJECT,
                "--region", REGION)
    assert r.rc == 0, r
    try:
        error(ev(fleet.bound.id, fleet.bound.token(), {"gatewayId": gw.id}), 403, "PERMISSION_DENIED", "blocked")
        # the blocked gateway itself: refused before gatewayInfo is read
        error(ev(gw.id, tok, {"delegatedDeviceId": fleet.bound.id}), 403, "PERMISSION_DENIED", "blocked")
    finally:
        assert br.b.lk("devices", "update", gw.id, "--unblocked", "--registry", REGISTRY, "--project", PROJECT,
                       "--region", REGION).rc == 0
    # a device that is not a gateway, named as one or acting as one
    error(ev(fleet.bound.id, fleet.bound.token(), {"gatewayId": fleet.free.id}), 400, "FAILED_PRECONDITION",
          "not a gateway")
    error(ev(fleet.free.id, fleet.free.token(), {"delegatedDeviceId": fleet.bound.id}), 403, "PERMISSION_DENIED",
          "not a gateway")
    # a gateway acted for, or posting through another
    error(ev(gw.id, tok, {"delegatedDeviceId": fleet.gw["device-auth-token-only"].id}), 400,
          "FAILED_PRECONDITION", "is a gateway")
    error(ev(gw.id, tok, {"gatewayId": fleet.gw["device-auth-token-only"].id}), 400, "FAILED_PRECONDITION",
          "is a gateway")
    # the body
    error(ev(gw.id, tok, {"delegatedDeviceId": "node-bound", "gatewayId": gw.id}), 400, "INVALID_ARGUMENT",
          "not both")
    error(ev(gw.id, tok, {"deviceId": "node-bound"}), 400, "INVALID_ARGUMENT", "deviceId")
    error(ev(gw.id, tok, "node-bound"), 400, "INVALID_ARGUMENT", "object")
    error(ev(gw.id, tok, {"delegatedDeviceId": 7}), 400, "INVALID_ARGUMENT", "string")
    # empty fields are unset (proto3): the gateway posts as itself
    r = ev(gw.id, tok, {"delegatedDeviceId": "", "gatewayId": ""})
    assert r.status_code == 200, r.text
    # the token still decides who calls: the device's token on the gateway's path is refused
    error(ev(gw.id, fleet.bound.token(), {"delegatedDeviceId": fleet.bound.id}), 401, "UNAUTHENTICATED")
