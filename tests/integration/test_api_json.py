"""latchkeyd's admin API: the proto3 JSON mapping (docs/daemon.md, "JSON").

camelCase out, snake_case accepted in, both spellings of one field refused; int64 as strings;
bytes in standard and URL-safe base64 with and without padding; enums by name and by number in,
by number out with $alt=json;enum-encoding=int; unknown fields refused, naming the field.
"""
import pytest

from api_common import (b64, cred, device_path, devices_path, env, es256_key, ok, refused,  # noqa: F401
                        registries_path, registry_path, unb64)

# bytes whose base64 holds '+' and '/' (standard) or '-' and '_' (URL-safe), and padding
AWKWARD = bytes([0xfb, 0xff, 0xbf, 0xfe, 0x3e, 0x3f]) + b"\x00\x01"


def unchanged(env, fn):
    before = env.daemon.dump()
    r = fn()
    assert env.daemon.dump() == before, f"a refused request changed the registry: {r}"
    return r


def all_keys(j):
    if isinstance(j, dict):
        for k, v in j.items():
            yield k
            yield from all_keys(v)
    elif isinstance(j, list):
        for v in j:
            yield from all_keys(v)


def test_camel_case_out(env):
    _, pem = es256_key()
    d = ok(env.api.create_device("dev-1", credentials=[cred(pem, expiration="2030-01-01T00:00:00Z")],
                                 metadata={"snake_key": "v"}, logLevel="DEBUG"))
    keys = set(all_keys(d)) - {"snake_key"}          # metadata keys are the user's
    assert {"numId", "publicKey", "expirationTime", "gatewayConfig", "gatewayType", "gatewayAuthMethod",
            "binaryData", "cloudUpdateTime", "logLevel"} <= keys, keys
    assert not [k for k in keys if "_" in k], keys
    r = ok(env.api.get(registry_path()))
    assert {"mqttConfig", "httpConfig", "mqttEnabledState", "httpEnabledState"} <= set(all_keys(r))
    assert not [k for k in all_keys(r) if "_" in k]
    assert r.get("mqttConfig") and "mqtt_config" not in r
    assert env.api.get(registry_path()).headers["Content-Type"].startswith("application/json")


def test_snake_case_in(env):
    _, pem = es256_key()
    d = ok(env.api.post(devices_path(), {
        "id": "dev-s",
        "credentials": [{"public_key": {"format": "ES256_PEM", "key": pem}, "expiration_time": "2031-01-01T00:00:00Z"}],
        "gateway_config": {"gateway_type": "GATEWAY", "gateway_auth_method": "ASSOCIATION_AND_DEVICE_AUTH_TOKEN"},
        "log_level": "ERROR"}))
    assert d["credentials"][0]["expirationTime"] == "2031-01-01T00:00:00Z"
    assert d["gatewayConfig"] == {"gatewayType": "GATEWAY", "gatewayAuthMethod": "ASSOCIATION_AND_DEVICE_AUTH_TOKEN"}
    assert d["logLevel"] == "ERROR"
    c = ok(env.api.post(device_path("dev-s") + ":modifyCloudToDeviceConfig",
                        {"version_to_update": "1", "binary_data": b64(b"snake")}))
    assert c["version"] == "2" and unb64(c["binaryData"]) == b"snake"
    r = ok(env.api.post(registries_path(), {"id": "reg-s", "mqtt_config": {"mqtt_enabled_state": "MQTT_DISABLED"},
                                            "state_notification_config": {"pubsub_topic_name": "projects/proj-one/topics/state"}}))
    assert r["mqttConfig"] == {"mqttEnabledState": "MQTT_DISABLED"}
    assert r["stateNotificationConfig"] == {"pubsubTopicName": "projects/proj-one/topics/state"}


@pytest.mark.parametrize("body,names", [
    ({"id": "dev-d", "logLevel": "INFO", "log_level": "INFO"}, ["logLevel", "log_level"]),
    ({"id": "dev-d", "gatewayConfig": {"gatewayType": "GATEWAY", "gateway_type": "GATEWAY"}},
     ["gatewayType", "gateway_type"]),
    ({"id": "dev-d", "credentials": [{"publicKey": {"format": "ES256_PEM", "key": "x"},
                                  "public_key": {"format": "ES256_PEM", "key": "x"}}]},
     ["publicKey", "public_key"]),
])
def test_both_spellings_refused(env, body, names):
    r = unchanged(env, lambda: env.api.post(devices_path(), body))
    refused(r, "INVALID_ARGUMENT", *names)


def test_both_spellings_refused_in_a_method_body(env):
    ok(env.api.create_device("dev-b"))
    r = unchanged(env, lambda: env.api.post(device_path("dev-b") + ":modifyCloudToDeviceConfig",
                                            {"binaryData": "", "binary_data": ""}))
    refused(r, "INVALID_ARGUMENT", "binaryData", "binary_data")


def test_text_round_trips(env):
    meta = {"city": "Zürich", "mark": "✓ ok", "quote": 'say "hi"\\', "nl": "a\nb", "emoji": "\U0001F512"}
    d = ok(env.api.create_device("dev-txt", metadata=meta))
    assert d["metadata"] == meta
    assert ok(env.api.get(device_path("dev-txt")))["metadata"] == meta
    r = unchanged(env, lambda: env.api.call("POST", devices_path(), raw=b'{"id": "dev-\\ud800"}'))
    refused(r, "INVALID_ARGUMENT")


def test_int64_as_strings(env):
    d = ok(env.api.create_device("dev-i"))
    assert isinstance(d["numId"], str) and d["numId"].isdigit()
    assert isinstance(d["config"]["version"], str)
    # in: a string or a number
    ok(env.api.post(device_path("dev-i") + ":modifyCloudToDeviceConfig", {"versionToUpdate": "1", "binaryData": ""}))
    ok(env.api.post(device_path("dev-i") + ":modifyCloudToDeviceConfig", {"versionToUpdate": 2, "binaryData": ""}))
    for bad in ("3.0", " 3", "3 ", "0x3", "", "99999999999999999999", True, [3], {"v": 3}, 3.5):
        r = unchanged(env, lambda: env.api.post(device_path("dev-i") + ":modifyCloudToDeviceConfig",
                                                {"versionToUpdate": bad, "binaryData": ""}))
        refused(r, "INVALID_ARGUMENT", "versionToUpdate")
    ok(env.api.post(device_path("dev-i") + ":modifyCloudToDeviceConfig", {"versionToUpdate": "3", "binaryData": ""}))


@pytest.mark.parametrize("urlsafe", [False, True])
@pytest.mark.parametrize("pad", [True, False])
def test_bytes_in_every_base64(env, urlsafe, pad):
    ok(env.api.create_device("dev-64"))
    text = b64(AWKWARD, urlsafe=urlsafe, pad=pad)
    assert ("=" in text) == pad and (("-" in text or "_" in text) if urlsafe else ("+" in text or "/" in text))
    c = ok(env.api.post(device_path("dev-64") + ":modifyCloudToDeviceConfig", {"binaryData": text}))
    assert c["binaryData"] == b64(AWKWARD), c          # out: standard, padded
    got = ok(env.api.get(device_path("dev-64")))["config"]
    assert unb64(got["binaryData"]) == AWKWARD


@pytest.mark.parametrize("bad", ["a", "ab=c", "a===", "+-", "ab cd", "Zm9v\n", "Zm9v=", "Zg===", "Zm8==", "Zg==Zg=="])
def test_bytes_refused(env, bad):
    ok(env.api.create_device("dev-bad"))
    r = unchanged(env, lambda: env.api.post(device_path("dev-bad") + ":modifyCloudToDeviceConfig",
                                            {"binaryData": bad}))
    refused(r, "INVALID_ARGUMENT", "binaryData")


def test_enums_by_name_and_by_number(env):
    _, pem = es256_key()
    # ES256_PEM = 2, GATEWAY = 1, ASSOCIATION_ONLY = 1, INFO = 30 (google.cloud.iot.v1)
    d = ok(env.api.post(devices_path(), {"id": "dev-n", "credentials": [{"publicKey": {"format": 2, "key": pem}}],
                                         "gatewayConfig": {"gatewayType": 1, "gatewayAuthMethod": 1},
                                         "logLevel": 30}))
    assert d["credentials"][0]["publicKey"]["format"] == "ES256_PEM"
    assert d["gatewayConfig"] == {"gatewayType": "GATEWAY", "gatewayAuthMethod": "ASSOCIATION_ONLY"}
    assert d["logLevel"] == "INFO"
    q = {"$alt": "json;enum-encoding=int"}
    n = ok(env.api.get(device_path("dev-n"), query=q))
    assert n["credentials"][0]["publicKey"]["format"] == 2
    assert n["gatewayConfig"]["gatewayType"] == 1 and n["gatewayConfig"]["gatewayAuthMethod"] == 1
    assert n["logLevel"] == 30
    assert n["numId"] == d["numId"]                       # int64 stays a string
    r = ok(env.api.get(registry_path(), query=q))
    assert r["mqttConfig"]["mqttEnabledState"] == 1 and r["httpConfig"]["httpEnabledState"] == 1
    # names also accepted when numbers are asked for out
    ok(env.api.patch(device_path("dev-n"), {"logLevel": "DEBUG"}, query={"updateMask": "logLevel", **q}))
    assert ok(env.api.get(device_path("dev-n"), query=q))["logLevel"] == 40
    refused(env.api.get(registry_path(), query={"$alt": "proto"}), "INVALID_ARGUMENT", "$alt")
    for bad in (7, -1, "ES256", "es256_pem", 2.0, None, True):
        r = unchanged(env, lambda: env.api.post(devices_path(), {
            "id": "dev-e", "credentials": [{"publicKey": {"format": bad, "key": pem}}]}))
        refused(r, "INVALID_ARGUMENT")


@pytest.mark.parametrize("path,body,name", [
    ("devices", {"id": "dev-d", "colour": "red"}, "colour"),
    ("devices", {"id": "dev-d", "credentials": [{"publicKey": {"format": "ES256_PEM", "key": "k", "alg": "x"}}]}, "alg"),
    ("devices", {"id": "dev-d", "credentials": [{"publicKey": {"format": "ES256_PEM", "key": "k"}, "notAfter": 1}]},
     "notAfter"),
    ("devices", {"id": "dev-d", "gatewayConfig": {"gatewayType": "GATEWAY", "mode": 1}}, "mode"),
    ("devices", {"id": "dev-d", "config": {"binaryData": "", "extra": 1}}, "extra"),
    ("devices", {"id": "dev-d", "numid": "5"}, "numid"),
    # neither the json_name nor the proto name, only the same once camel-cased (found by fuzz_api_body)
    ("devices", {"id": "dev-d", "blocked_": True}, "blocked_"),
    ("registry", {"id": "reg-r", "log__level": "DEBUG"}, "log__level"),
    ("registry", {"id": "reg-r", "mqttConfig": {"enabled": True}}, "enabled"),
    ("registry", {"id": "reg-r", "eventNotificationConfigs": [{"topic": "t"}]}, "topic"),
    ("registry", {"id": "reg-r", "Id": "r"}, "Id"),
    ("modify", {"binaryData": "", "version": "1"}, "version"),
    ("command", {"binaryData": "", "qos": 1}, "qos"),
])
def test_unknown_fields_named(env, path, body, name):
    ok(env.api.create_device("dev-u"))
    url = {"devices": devices_path(), "registry": registries_path(),
           "modify": device_path("dev-u") + ":modifyCloudToDeviceConfig",
           "command": device_path("dev-u") + ":sendCommandToDevice"}[path]
    r = unchanged(env, lambda: env.api.post(url, body))
    msg = refused(r, "INVALID_ARGUMENT")
    assert f'"{name}"' in msg, msg


def test_output_only_fields_are_accepted_and_ignored(env):
    d = ok(env.api.post(devices_path(), {"id": "dev-o", "name": "projects/x/locations/y/registries/z/devices/1",
                                         "numId": "12345", "lastHeartbeatTime": "2020-01-01T00:00:00Z"}))
    assert d["numId"] != "12345" and d["name"].startswith("projects/proj-one/")
    assert "lastHeartbeatTime" not in d


def test_timestamps(env):
    _, pem = es256_key()
    d = ok(env.api.create_device("dev-t", credentials=[cred(pem, expiration="2030-06-01T12:00:00+02:00")]))
    assert d["credentials"][0]["expirationTime"] == "2030-06-01T10:00:00Z"     # UTC out
    for bad in ("2030-06-01", "2030-13-01T00:00:00Z", "yesterday", 1900000000, "2030-06-01T12:00:00",
                "2030-06-01T-1:00:00Z", "2030-06-01T+1:00:00Z", "2030-06- 1T01:00:00Z", "2030-02-31T00:00:00Z",
                "2031-02-29T00:00:00Z", "2030-04-31T00:00:00Z"):
        r = unchanged(env, lambda: env.api.post(devices_path(), {"id": "dev-t2", "credentials": [
            cred(pem, expiration=bad)]}))
        refused(r, "INVALID_ARGUMENT", "expirationTime")
