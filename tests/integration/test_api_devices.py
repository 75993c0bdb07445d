"""latchkeyd's admin API: devices, their configs and states, gateways (docs/daemon.md, "Methods").

Keys are generated here (python3-cryptography) for every run; every change is read back; every
refusal leaves the registry file unchanged.
"""
import json

import pytest

from api_common import (P, R, L, b64, cred, device_path, devices_path, env, es256_key, ok,  # noqa: F401
                        refused, registry_path, rsa_key, unb64)


def unchanged(env, fn):
    before = env.daemon.dump()
    r = fn()
    assert env.daemon.dump() == before, f"a refused request changed the registry: {r}"
    return r


def norm(pem):
    return pem.strip().replace("\r", "")


# ---- create, get ----

def test_create_with_keys_metadata_and_config(env):
    _, es_pem = es256_key()
    _, rsa_pem = rsa_key()
    body = {"credentials": [cred(es_pem, "ES256_PEM"), cred(rsa_pem, "RSA_PEM", "2031-02-03T04:05:06Z")],
            "metadata": {"site": "north", "empty": "", "json": '{"a": [1, 2]}'},
            "config": {"binaryData": b64(b"first config")},
            "blocked": False, "logLevel": "INFO"}
    d = ok(env.api.create_device("dev-a", **body))
    assert d["id"] == "dev-a"
    assert isinstance(d["numId"], str) and int(d["numId"]) > 0
    assert d["name"] == f"projects/{P}/locations/{L}/registries/{R}/devices/{d['numId']}"
    fmts = [(c["publicKey"]["format"], norm(c["publicKey"]["key"]), c["expirationTime"]) for c in d["credentials"]]
    assert fmts == [("ES256_PEM", norm(es_pem), "1970-01-01T00:00:00Z"),
                    ("RSA_PEM", norm(rsa_pem), "2031-02-03T04:05:06Z")], fmts
    assert d["metadata"] == body["metadata"]
    assert d["config"]["version"] == "1" and unb64(d["config"]["binaryData"]) == b"first config"
    assert d["blocked"] is False and d["logLevel"] == "INFO"
    assert d["gatewayConfig"]["gatewayType"] == "NON_GATEWAY"
    # get by id and by numId: the same device
    assert ok(env.api.get(device_path("dev-a"))) == d
    assert ok(env.api.get(device_path(d["numId"]))) == d


def test_create_without_config_has_version_one(env):
    d = ok(env.api.create_device("dev-b"))
    assert d["config"]["version"] == "1" and d["config"].get("binaryData", "") == "", d
    assert d.get("credentials", []) == []


def test_create_refusals_change_nothing(env):
    ok(env.api.create_device("dev-x"))
    _, pem = es256_key()
    _, rsa_pem = rsa_key()
    bad = {
        "exists": ({"id": "dev-x"}, "ALREADY_EXISTS"),
        "no id": ({"metadata": {"a": "b"}}, "INVALID_ARGUMENT"),
        "bad id": ({"id": "-dash-first"}, "INVALID_ARGUMENT"),
        "wrong format": ({"id": "d1", "credentials": [cred(pem, "RSA_PEM")]}, "INVALID_ARGUMENT"),
        "wrong format 2": ({"id": "d2", "credentials": [cred(rsa_pem, "ES256_PEM")]}, "INVALID_ARGUMENT"),
        "not a key": ({"id": "d3", "credentials": [cred("hello", "ES256_PEM")]}, "INVALID_ARGUMENT"),
        "four keys": ({"id": "d4", "credentials": [cred(es256_key()[1]) for _ in range(4)]}, "INVALID_ARGUMENT"),
        "bad expiry": ({"id": "d5", "credentials": [cred(pem, "ES256_PEM", "tomorrow")]}, "INVALID_ARGUMENT"),
        "bad metadata key": ({"id": "d6", "metadata": {"1abc": "x"}}, "INVALID_ARGUMENT"),
        "metadata not text": ({"id": "d7", "metadata": {"a": 5}}, "INVALID_ARGUMENT"),
        "big config": ({"id": "d8", "config": {"binaryData": b64(b"x" * (64 * 1024 + 1))}}, "INVALID_ARGUMENT"),
        "bad base64": ({"id": "d9", "config": {"binaryData": "not*base64"}}, "INVALID_ARGUMENT"),
        "unknown": ({"id": "d10", "colour": "red"}, "INVALID_ARGUMENT"),
        "bad gateway type": ({"id": "d11", "gatewayConfig": {"gatewayType": "ROUTER"}}, "INVALID_ARGUMENT"),
        "missing registry": (None, "NOT_FOUND"),
    }
    for what, (body, code) in bad.items():
        if body is None:
            r = unchanged(env, lambda: env.api.post(devices_path("no-such-reg"), {"id": "d12"}))
        else:
            r = unchanged(env, lambda: env.api.post(devices_path(), body))
        assert r.code == code, (what, r)


def test_get_refusals(env):
    d = ok(env.api.create_device("dev-g"))
    refused(env.api.get(device_path("nope")), "NOT_FOUND")
    refused(env.api.get(device_path(str(int(d["numId"]) + 1000))), "NOT_FOUND")
    refused(env.api.get(device_path("0")), "NOT_FOUND")
    refused(env.api.get(device_path("bad%21id")), "INVALID_ARGUMENT")
    refused(env.api.get(device_path("dev-g", reg="other")), "NOT_FOUND")
    # the numId of a device in another registry does not reach it from this one
    ok(env.api.create_registry("reg-2"))
    refused(env.api.get(device_path(d["numId"], reg="reg-2")), "NOT_FOUND")


def test_field_mask(env):
    _, pem = es256_key()
    ok(env.api.create_device("dev-m", credentials=[cred(pem)], metadata={"k": "v"}, blocked=True))
    d = ok(env.api.get(device_path("dev-m"), query={"fieldMask": "metadata"}))
    assert set(d) == {"id", "name", "numId", "metadata"}, d
    d = ok(env.api.get(device_path("dev-m"), query={"fieldMask": "blocked,credentials"}))
    assert set(d) == {"id", "name", "numId", "blocked", "credentials"}, d
    d = ok(env.api.get(device_path("dev-m"), query={"fieldMask": "config.version,gateway_config"}))
    assert set(d) == {"id", "name", "numId", "config", "gatewayConfig"}, d
    assert d["config"]["version"] == "1"


# ---- patch ----

def test_patch_credentials_blocked_metadata(env):
    _, pem1 = es256_key()
    _, pem2 = rsa_key()
    ok(env.api.create_device("dev-p", credentials=[cred(pem1)], metadata={"a": "1"}))
    d = ok(env.api.patch(device_path("dev-p"), {"credentials": [cred(pem2, "RSA_PEM")]},
                         query={"updateMask": "credentials"}))
    assert [norm(c["publicKey"]["key"]) for c in d["credentials"]] == [norm(pem2)]
    assert d["metadata"] == {"a": "1"}
    d = ok(env.api.patch(device_path("dev-p"), {"blocked": True}, query={"updateMask": "blocked"}))
    assert d["blocked"] is True
    d = ok(env.api.patch(device_path("dev-p"), {"metadata": {"b": "2"}, "blocked": False},
                         query={"updateMask": "metadata"}))
    assert d["metadata"] == {"b": "2"} and d["blocked"] is True
    d = ok(env.api.patch(device_path(d["numId"]), {"blocked": False, "metadata": {}},
                         query={"updateMask": "blocked,metadata"}))
    assert d["blocked"] is False and "metadata" not in d
    assert ok(env.api.get(device_path("dev-p"))) == d


def test_patch_refusals_change_nothing(env):
    _, pem = es256_key()
    ok(env.api.create_device("dev-q", credentials=[cred(pem)], metadata={"a": "1"}))
    cases = [
        ({}, {"blocked": True}, "updateMask"),
        ({"updateMask": "id"}, {"id": "renamed"}, "id"),
        ({"updateMask": "numId"}, {"numId": "5"}, "numId"),
        ({"updateMask": "config"}, {"config": {"binaryData": ""}}, "config"),
        ({"updateMask": "blocked"}, {"blocked": "yes"}, "blocked"),
        ({"updateMask": "credentials"}, {"credentials": [cred("junk")]}, ""),
        ({"updateMask": "metadata"}, {"metadata": {"a": 1}}, ""),
        ({"updateMask": "blocked"}, {"blocked": True, "colour": 1}, "colour"),
        # no name left once camel-cased (found by fuzz_rest_path)
        ({"updateMask": "blocked,___"}, {"blocked": True}, "not a field path"),
    ]
    for query, body, word in cases:
        r = unchanged(env, lambda: env.api.patch(device_path("dev-q"), body, query=query))
        refused(r, "INVALID_ARGUMENT", word)
    r = unchanged(env, lambda: env.api.patch(device_path("nope"), {"blocked": True}, query={"updateMask": "blocked"}))
    refused(r, "NOT_FOUND")


# ---- delete ----

def test_delete(env):
    d = ok(env.api.create_device("dev-d"))
    ok(env.api.create_device("dev-e"))
    assert ok(env.api.delete(device_path("dev-d"))) == {}
    refused(env.api.get(device_path("dev-d")), "NOT_FOUND")
    refused(env.api.get(device_path(d["numId"])), "NOT_FOUND")
    r = unchanged(env, lambda: env.api.delete(device_path("dev-d")))
    refused(r, "NOT_FOUND")
    e = ok(env.api.get(device_path("dev-e")))
    assert ok(env.api.delete(device_path(e["numId"]))) == {}
    refused(env.api.get(device_path("dev-e")), "NOT_FOUND")


# ---- list ----

def walk(api, size, **query):
    """Every page of devices.list; returns (devices in order, pages)."""
    out, token, pages = [], None, 0
    while True:
        q = dict(query, pageSize=size)
        if token:
            q["pageToken"] = token
        page = ok(api.get(devices_path(), query=q))
        got = page.get("devices", [])
        assert len(got) <= size, page
        out += got
        pages += 1
        token = page.get("nextPageToken")
        if not token:
            return out, pages
        assert pages < 1000


def test_list_walks_every_page_once(env):
    ids = sorted(f"dev-{i:03d}" for i in range(37))
    nums = {}
    for i in ids:
        r = env.lk("devices", "create", i, "--registry", R, "--project", P, "--region", L, "--format", "json")
        assert r.rc == 0, r
        nums[i] = json.loads(r.out)["numId"]
    for size in (1, 5, 10, 36, 37, 500):
        devs, pages = walk(env.api, size)
        got = [d["id"] for d in devs]
        assert len(got) == len(set(got)), f"duplicates at pageSize {size}"
        assert sorted(got) == ids, size
        assert pages <= -(-len(ids) // size) + 1, (size, pages)
        for d in devs:
            assert set(d) == {"id", "name", "numId"}, d       # no fieldMask: id, name, numId
            assert d["numId"] == str(nums[d["id"]])
    full = ok(env.api.get(devices_path(), query={"fieldMask": "metadata,blocked"}))["devices"]
    assert all(set(d) <= {"id", "name", "numId", "metadata", "blocked"} and "blocked" in d for d in full)
    # a device made between pages is not repeated, and one deleted is not shown
    first = ok(env.api.get(devices_path(), query={"pageSize": 10}))
    ok(env.api.create_device("dev-000a"))
    ok(env.api.delete(device_path("dev-020")))
    seen = [d["id"] for d in first["devices"]]
    token = first["nextPageToken"]
    while token:
        page = ok(env.api.get(devices_path(), query={"pageSize": 10, "pageToken": token}))
        seen += [d["id"] for d in page.get("devices", [])]
        token = page.get("nextPageToken")
    assert len(seen) == len(set(seen)) and "dev-020" not in seen


def test_list_filters(env):
    made = {}
    for i in range(6):
        made[f"f-{i}"] = ok(env.api.create_device(f"f-{i}"))["numId"]
    got = ok(env.api.get(devices_path(), query={"deviceIds": "f-1,f-3"}))["devices"]
    assert sorted(d["id"] for d in got) == ["f-1", "f-3"]
    got = ok(env.api.get(devices_path(), query={"deviceIds": ["f-1", "f-4"]}))["devices"]
    assert sorted(d["id"] for d in got) == ["f-1", "f-4"]
    got = ok(env.api.get(devices_path(), query={"deviceNumIds": f"{made['f-2']},{made['f-5']}"}))["devices"]
    assert sorted(d["id"] for d in got) == ["f-2", "f-5"]
    got = ok(env.api.get(devices_path(), query={"deviceIds": "f-0", "deviceNumIds": made["f-5"]}))["devices"]
    assert sorted(d["id"] for d in got) == ["f-0", "f-5"]        # either matches
    got = ok(env.api.get(devices_path(), query={"deviceIds": "nope"})).get("devices", [])
    assert got == []
    refused(env.api.get(devices_path(), query={"deviceNumIds": "12x"}), "INVALID_ARGUMENT")
    refused(env.api.get(devices_path(), query={"deviceNumIds": "-1"}), "INVALID_ARGUMENT")
    refused(env.api.get(devices_path(), query={"pageSize": 10001}), "INVALID_ARGUMENT")
    refused(env.api.get(devices_path(), query={"pageSize": -5}), "INVALID_ARGUMENT")
    refused(env.api.get(devices_path(), query={"pageToken": "garbage!!"}), "INVALID_ARGUMENT")
    refused(env.api.get(devices_path(reg="no-such")), "NOT_FOUND")


def test_presence_filter_and_field(env):
    """online=true|false and fieldMask=presence (latchkey's extensions), from the broker's record (written here
    with sqlite3 the way lk_registry_presence_record writes it)."""
    import sqlite3
    for d in ("p-on", "p-off", "p-never"):
        ok(env.api.create_device(d))
    con = sqlite3.connect(str(env.daemon.db), timeout=30)
    with con:
        con.execute("UPDATE devices SET presence = 1, presence_time = 1700000000, presence_detail = '10.1.2.3:4567' "
                    "WHERE device_id = 'p-on'")
        con.execute("UPDATE devices SET presence = 2, presence_time = 1700000100, presence_detail = 'keep-alive "
                    "timeout' WHERE device_id = 'p-off'")
    con.close()
    ids = lambda q: sorted(d["id"] for d in ok(env.api.get(devices_path(), query=q)).get("devices", []))
    assert ids({"online": "true"}) == ["p-on"]
    assert ids({"online": "false"}) == ["p-never", "p-off"]
    got = {d["id"]: d for d in ok(env.api.get(devices_path(), query={"fieldMask": "presence"}))["devices"]}
    assert got["p-on"]["presence"] == {"online": True, "time": "2023-11-14T22:13:20Z", "address": "10.1.2.3:4567"}
    assert got["p-off"]["presence"] == {"online": False, "time": "2023-11-14T22:15:00Z",
                                        "reason": "keep-alive timeout"}
    assert got["p-never"]["presence"] == {"online": False}
    # a page of the filter may be short, but walking the pages finds every match once
    page = ok(env.api.get(devices_path(), query={"online": "false", "pageSize": 1}))
    seen = [d["id"] for d in page.get("devices", [])]
    while "nextPageToken" in page:
        page = ok(env.api.get(devices_path(), query={"online": "false", "pageSize": 1,
                                                     "pageToken": page["nextPageToken"]}))
        seen += [d["id"] for d in page.get("devices", [])]
    assert sorted(seen) == ["p-never", "p-off"]
    assert "presence" not in ok(env.api.get(device_path("p-on")))          # only when asked
    assert ok(env.api.get(device_path("p-on"), query={"fieldMask": "presence"}))["presence"]["online"] is True
    refused(env.api.get(devices_path(), query={"online": "yes"}), "INVALID_ARGUMENT", "online")


def test_gateways_bind_unbind_and_list_options(env):
    gw = {"gatewayType": "GATEWAY", "gatewayAuthMethod": "ASSOCIATION_ONLY"}
    ok(env.api.create_device("gw-1", gatewayConfig=gw))
    ok(env.api.create_device("gw-2", gatewayConfig=gw))
    for i in range(3):
        ok(env.api.create_device(f"node-{i}"))
    g = ok(env.api.get(device_path("gw-1")))["gatewayConfig"]
    assert g == {"gatewayType": "GATEWAY", "gatewayAuthMethod": "ASSOCIATION_ONLY"}, g

    bind = registry_path() + ":bindDeviceToGateway"
    unbind = registry_path() + ":unbindDeviceFromGateway"
    assert ok(env.api.post(bind, {"gatewayId": "gw-1", "deviceId": "node-0"})) == {}
    assert ok(env.api.post(bind, {"gatewayId": "gw-1", "deviceId": "node-1"})) == {}
    n2 = ok(env.api.get(device_path("node-2")))["numId"]
    g2 = ok(env.api.get(device_path("gw-2")))["numId"]
    assert ok(env.api.post(bind, {"gateway_id": g2, "device_id": n2})) == {}     # numIds, snake_case

    def ids(**opts):
        q = {f"gatewayListOptions.{k}": v for k, v in opts.items()}
        return sorted(d["id"] for d in ok(env.api.get(devices_path(), query=q)).get("devices", []))
    assert ids(gatewayType="GATEWAY") == ["gw-1", "gw-2"]
    assert ids(gatewayType="NON_GATEWAY") == ["node-0", "node-1", "node-2"]
    assert ids(associationsGatewayId="gw-1") == ["node-0", "node-1"]
    assert ids(associationsGatewayId="gw-2") == ["node-2"]
    assert ids(associationsDeviceId="node-2") == ["gw-2"]
    refused(env.api.get(devices_path(), query={"gatewayListOptions.gatewayType": "GATEWAY",
                                               "gatewayListOptions.associationsGatewayId": "gw-1"}),
            "INVALID_ARGUMENT")
    refused(env.api.get(devices_path(), query={"gatewayListOptions.gatewayType": "BRIDGE"}), "INVALID_ARGUMENT")

    assert ok(env.api.post(unbind, {"gatewayId": "gw-1", "deviceId": "node-0"})) == {}
    assert ids(associationsGatewayId="gw-1") == ["node-1"]

    # refusals
    for body, codes in [({"gatewayId": "node-1", "deviceId": "node-0"}, ("FAILED_PRECONDITION", "INVALID_ARGUMENT")),
                        ({"gatewayId": "gw-1", "deviceId": "gw-2"}, ("FAILED_PRECONDITION", "INVALID_ARGUMENT")),
                        ({"gatewayId": "gw-1", "deviceId": "ghost"}, ("NOT_FOUND",)),
                        ({"gatewayId": "ghost", "deviceId": "node-0"}, ("NOT_FOUND",)),
                        ({"gatewayId": "gw-1"}, ("INVALID_ARGUMENT",)),
                        ({"gatewayId": "gw-1", "deviceId": "node-0", "x": 1}, ("INVALID_ARGUMENT",))]:
        r = unchanged(env, lambda: env.api.post(bind, body))
        assert r.code in codes, (body, r)
    r = unchanged(env, lambda: env.api.post(unbind, {"gatewayId": "gw-2", "deviceId": "node-0"}))
    assert r.code in ("NOT_FOUND", "FAILED_PRECONDITION"), r


def test_gateway_list_options_take_ids_numids_and_enum_numbers(env):
    """gatewayListOptions as IoT Core: associations by id or numId, gatewayType by name or number,
    NON_GATEWAY also matching devices whose type was never set; and the binding limits."""
    gw = {"gatewayType": "GATEWAY", "gatewayAuthMethod": "ASSOCIATION_ONLY"}
    gws = [ok(env.api.create_device(f"gwl-{i:02d}", gatewayConfig=gw)) for i in range(11)]
    plain = ok(env.api.create_device("plain-0"))                                     # type never set
    typed = ok(env.api.create_device("typed-0", gatewayConfig={"gatewayType": "NON_GATEWAY"}))
    bind = registry_path() + ":bindDeviceToGateway"
    for g in gws[:10]:
        assert ok(env.api.post(bind, {"gatewayId": g["id"], "deviceId": "plain-0"})) == {}
    assert ok(env.api.post(bind, {"gatewayId": gws[0]["id"], "deviceId": "plain-0"})) == {}   # again: no-op
    # the 11th gateway of one device: IoT Core's limit, nothing written
    r = unchanged(env, lambda: env.api.post(bind, {"gatewayId": gws[10]["id"], "deviceId": "plain-0"}))
    assert r.json["error"]["details"][0]["reason"] == "LK_ERR_REG_LIMIT", r
    assert ok(env.api.post(bind, {"gatewayId": gws[0]["numId"], "deviceId": typed["numId"]})) == {}

    def ids(**opts):
        q = {f"gatewayListOptions.{k}": v for k, v in opts.items()}
        return sorted(d["id"] for d in ok(env.api.get(devices_path(), query=q)).get("devices", []))
    ten = sorted(g["id"] for g in gws[:10])
    assert ids(associationsDeviceId="plain-0") == ten
    assert ids(associationsDeviceId=plain["numId"]) == ten                          # a numId as the id
    assert ids(associationsGatewayId=gws[0]["numId"]) == ["plain-0", "typed-0"]
    assert ids(associationsGatewayId="gwl-05") == ["plain-0"]
    assert ids(associationsGatewayId="gwl-10") == []
    assert ids(gatewayType="NON_GATEWAY") == ["plain-0", "typed-0"]                 # unset counts as non-gateway
    assert ids(gatewayType="2") == ["plain-0", "typed-0"]                           # enum numbers
    assert ids(gatewayType="1") == sorted(g["id"] for g in gws)
    assert ids(gatewayType="GATEWAY_TYPE_UNSPECIFIED") == sorted([g["id"] for g in gws] + ["plain-0", "typed-0"])
    # an unknown or foreign id: NOT_FOUND naming it
    refused(env.api.get(devices_path(), query={"gatewayListOptions.associationsGatewayId": "nobody"}),
            "NOT_FOUND", "nobody")
    refused(env.api.get(devices_path(), query={"gatewayListOptions.associationsDeviceId": "999999999"}),
            "NOT_FOUND")
    # paged like any listing
    page = ok(env.api.get(devices_path(), query={"gatewayListOptions.associationsDeviceId": "plain-0",
                                                 "pageSize": "4"}))
    assert len(page["devices"]) == 4 and page["nextPageToken"], page
    rest = ok(env.api.get(devices_path(), query={"gatewayListOptions.associationsDeviceId": "plain-0",
                                                 "pageSize": "10", "pageToken": page["nextPageToken"]}))
    assert sorted(d["id"] for d in page["devices"] + rest["devices"]) == ten, rest


# ---- configs and states ----

def test_modify_config_and_versions(env):
    ok(env.api.create_device("dev-c"))
    mod = device_path("dev-c") + ":modifyCloudToDeviceConfig"
    c = ok(env.api.post(mod, {"binaryData": b64(b"two")}))
    assert c["version"] == "2" and unb64(c["binaryData"]) == b"two" and c["cloudUpdateTime"].endswith("Z"), c
    c = ok(env.api.post(mod, {"versionToUpdate": "2", "binaryData": b64(b"three")}))
    assert c["version"] == "3", c
    c = ok(env.api.post(mod, {"versionToUpdate": 3, "binaryData": b64(b"four")}))
    assert c["version"] == "4", c
    # a stale version: FAILED_PRECONDITION and nothing written
    r = unchanged(env, lambda: env.api.post(mod, {"versionToUpdate": "3", "binaryData": b64(b"lost")}))
    refused(r, "FAILED_PRECONDITION")
    r = unchanged(env, lambda: env.api.post(mod, {"versionToUpdate": "99", "binaryData": b64(b"lost")}))
    refused(r, "FAILED_PRECONDITION")
    for body in ({}, {"binaryData": "%%%"}, {"binaryData": b64(b"x" * (64 * 1024 + 1))},
                 {"versionToUpdate": "x", "binaryData": ""}, {"versionToUpdate": -1, "binaryData": ""},
                 {"binaryData": "", "colour": 1}):
        r = unchanged(env, lambda: env.api.post(mod, body))
        refused(r, "INVALID_ARGUMENT")
    r = unchanged(env, lambda: env.api.post(device_path("ghost") + ":modifyCloudToDeviceConfig",
                                            {"binaryData": ""}))
    refused(r, "NOT_FOUND")
    assert ok(env.api.get(device_path("dev-c")))["config"]["version"] == "4"

    hist = ok(env.api.get(device_path("dev-c") + "/configVersions"))["deviceConfigs"]
    assert [h["version"] for h in hist] == ["4", "3", "2", "1"], hist
    assert [unb64(h.get("binaryData", "")) for h in hist] == [b"four", b"three", b"two", b""]
    hist = ok(env.api.get(device_path("dev-c") + "/configVersions", query={"numVersions": 2}))["deviceConfigs"]
    assert [h["version"] for h in hist] == ["4", "3"]
    refused(env.api.get(device_path("dev-c") + "/configVersions", query={"numVersions": -1}), "INVALID_ARGUMENT")
    refused(env.api.get(device_path("dev-c") + "/configVersions", query={"numVersions": 11}), "INVALID_ARGUMENT")
    refused(env.api.get(device_path("ghost") + "/configVersions"), "NOT_FOUND")


def test_states_list(env):
    ok(env.api.create_device("dev-s"))
    st = ok(env.api.get(device_path("dev-s") + "/states"))
    assert st.get("deviceStates", []) == [], st
    refused(env.api.get(device_path("dev-s") + "/states", query={"numStates": 11}), "INVALID_ARGUMENT")
    refused(env.api.get(device_path("ghost") + "/states"), "NOT_FOUND")
    refused(env.api.post(device_path("dev-s") + "/states", {}), "NOT_FOUND")


@pytest.mark.parametrize("path,method", [
    ("/devices/dev-v:reboot", "POST"),
    ("/devices/dev-v:modifyCloudToDeviceConfig", "GET"),
    ("/devices/dev-v:sendCommandToDevice", "PATCH"),
    ("/devices/dev-v/configVersions", "POST"),
    ("/devices/dev-v/history", "GET"),
    ("/devices/dev-v", "PUT"),
    ("/devices", "DELETE"),
    ("/devices:list", "GET"),
])
def test_paths_that_name_nothing(env, path, method):
    ok(env.api.create_device("dev-v"))
    r = unchanged(env, lambda: env.api.call(method, registry_path() + path,
                                            body={} if method in ("POST", "PATCH", "PUT") else None))
    refused(r, "NOT_FOUND")
