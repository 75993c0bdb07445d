"""latchkeyd's admin API: registries, IAM and service-account keys (docs/daemon.md, "Methods").

Every change is read back with a get; every refusal leaves the registry file unchanged.
"""
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from api_common import (L, P, R, env, ok, refused, registries_path, registry_path,  # noqa: F401
                        service_account)

FULL = {
    "eventNotificationConfigs": [
        {"subfolderMatches": "alerts", "pubsubTopicName": "projects/proj-one/topics/alerts"},
        {"pubsubTopicName": "projects/proj-one/topics/events"},
    ],
    "stateNotificationConfig": {"pubsubTopicName": "projects/proj-one/topics/state"},
    "mqttConfig": {"mqttEnabledState": "MQTT_ENABLED"},
    "httpConfig": {"httpEnabledState": "HTTP_DISABLED"},
    "logLevel": "INFO",
}


def ca_pem(cn="device CA"):
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def cert_cred(pem):
    return {"publicKeyCertificate": {"format": "X509_CERTIFICATE_PEM", "certificate": pem}}


def unchanged(env, fn):
    before = env.daemon.dump()
    r = fn()
    assert env.daemon.dump() == before, f"a refused request changed the registry: {r}"
    return r


# ---- create, get, list, delete ----

def test_create_and_get_with_every_field(env):
    r = env.api.create_registry("full", **FULL)
    got = ok(r)
    assert got["id"] == "full" and got["name"] == f"projects/{P}/locations/{L}/registries/full", got
    for k, v in FULL.items():
        assert got[k] == v, (k, got)
    assert ok(env.api.get(registry_path("full"))) == got


def test_create_defaults(env):
    got = ok(env.api.create_registry("plain"))
    assert got["mqttConfig"] == {"mqttEnabledState": "MQTT_ENABLED"}, got
    assert got["httpConfig"] == {"httpEnabledState": "HTTP_ENABLED"}, got
    assert "eventNotificationConfigs" not in got and "credentials" not in got, got


def test_create_refusals_change_nothing(env):
    ok(env.api.get(registry_path()))
    cases = {
        "exists": ({"id": R}, "ALREADY_EXISTS"),
        "no id": ({"mqttConfig": {"mqttEnabledState": "MQTT_ENABLED"}}, "INVALID_ARGUMENT"),
        "bad id": ({"id": "9starts-with-digit"}, "INVALID_ARGUMENT"),
        "id too long": ({"id": "r" * 256}, "INVALID_ARGUMENT"),
        "id not a string": ({"id": 7}, "INVALID_ARGUMENT"),
        "bad mqtt state": ({"id": "x1", "mqttConfig": {"mqttEnabledState": "MQTT_SOMETIMES"}}, "INVALID_ARGUMENT"),
        "bad log level": ({"id": "x2", "logLevel": "LOUD"}, "INVALID_ARGUMENT"),
        "unknown field": ({"id": "x3", "colour": "red"}, "INVALID_ARGUMENT"),
        "bad topic": ({"id": "x4", "stateNotificationConfig": {"pubsubTopicName": 5}}, "INVALID_ARGUMENT"),
        "bad certificate": ({"id": "x5", "credentials": [cert_cred("-----BEGIN CERTIFICATE-----\nAAAA\n"
                                                                   "-----END CERTIFICATE-----\n")]},
                            "INVALID_ARGUMENT"),
        "unspecified cert format": ({"id": "x7", "credentials": [{"publicKeyCertificate": {
            "format": "UNSPECIFIED_PUBLIC_KEY_CERTIFICATE_FORMAT", "certificate": ca_pem()}}]}, "INVALID_ARGUMENT"),
        "cert format 0": ({"id": "x8", "credentials": [{"publicKeyCertificate": {
            "format": 0, "certificate": ca_pem()}}]}, "INVALID_ARGUMENT"),
        "no cert format": ({"id": "x9", "credentials": [{"publicKeyCertificate": {"certificate": ca_pem()}}]},
                           "INVALID_ARGUMENT"),
    }
    for what, (body, code) in cases.items():
        r = unchanged(env, lambda: env.api.post(registries_path(), body))
        assert r.code == code, (what, r)
    r = unchanged(env, lambda: env.api.post(registries_path(loc="mars-1"), {"id": "x6"}))
    assert r.status in (400, 404), r


def test_get_missing_and_bad_names(env):
    refused(env.api.get(registry_path("nope")), "NOT_FOUND")
    refused(env.api.get(registry_path("bad%21id")), "INVALID_ARGUMENT")
    refused(env.api.get(registry_path(R, project="Bad_Project")), "INVALID_ARGUMENT")


def test_list_pages(env):
    ids = {R}
    for i in range(12):
        ok(env.api.create_registry(f"reg-p{i:02d}"))
        ids.add(f"reg-p{i:02d}")
    whole = ok(env.api.get(registries_path()))
    assert {r["id"] for r in whole["deviceRegistries"]} == ids
    assert "nextPageToken" not in whole
    for size in (1, 5, 13, 100):
        seen, token, pages = [], None, 0
        while True:
            q = {"pageSize": size}
            if token:
                q["pageToken"] = token
            page = ok(env.api.get(registries_path(), query=q))
            got = [r["id"] for r in page["deviceRegistries"]]
            assert len(got) <= size
            seen += got
            pages += 1
            token = page.get("nextPageToken")
            if not token:
                break
            assert pages < 50
        assert len(seen) == len(set(seen)) and set(seen) == ids, (size, seen)
    refused(env.api.get(registries_path(), query={"pageSize": -1}), "INVALID_ARGUMENT")
    refused(env.api.get(registries_path(), query={"pageSize": "ten"}), "INVALID_ARGUMENT")
    refused(env.api.get(registries_path(), query={"pageToken": "!!"}), "INVALID_ARGUMENT")
    # another location has none of them
    assert ok(env.api.get(registries_path(loc="europe-west1"))).get("deviceRegistries", []) == []


def test_list_pages_across_locations(env):
    """Location "us" lists before "us-central1" though "us-central1/..." sorts before "us/..." as text: a page
    ending in "us" must not make the next skip every registry of "us-central1"."""
    assert L == "us-central1"
    ok(env.api.post(registries_path(loc="us"), {"id": "reg-us"}))
    ok(env.api.post(registries_path(loc="us-east1"), {"id": "reg-east"}))
    whole = [(r["name"].split("/")[3], r["id"]) for r in ok(env.api.get(registries_path(loc="-")))["deviceRegistries"]]
    assert len(whole) == 3 and whole[0] == ("us", "reg-us"), whole
    for size in (1, 2):
        seen, token = [], None
        for _ in range(10):
            q = {"pageSize": size, **({"pageToken": token} if token else {})}
            page = ok(env.api.get(registries_path(loc="-"), query=q))
            seen += [(r["name"].split("/")[3], r["id"]) for r in page.get("deviceRegistries", [])]
            token = page.get("nextPageToken")
            if not token:
                break
        assert seen == whole, (size, seen)


def test_delete(env):
    ok(env.api.create_registry("gone"))
    assert ok(env.api.delete(registry_path("gone"))) == {}
    refused(env.api.get(registry_path("gone")), "NOT_FOUND")
    refused(env.api.delete(registry_path("gone")), "NOT_FOUND")
    # a registry with devices is not deleted
    ok(env.api.create_device("dev-d1"))
    r = unchanged(env, lambda: env.api.delete(registry_path()))
    refused(r, "FAILED_PRECONDITION")
    ok(env.api.delete(registry_path() + "/devices/dev-d1"))
    ok(env.api.delete(registry_path()))


# ---- patch ----

@pytest.mark.parametrize("mask,body,want", [
    ("mqttConfig", {"mqttConfig": {"mqttEnabledState": "MQTT_DISABLED"}},
     {"mqttConfig": {"mqttEnabledState": "MQTT_DISABLED"}}),
    ("mqtt_config.mqtt_enabled_state", {"mqttConfig": {"mqttEnabledState": "MQTT_DISABLED"}},
     {"mqttConfig": {"mqttEnabledState": "MQTT_DISABLED"}}),
    ("httpConfig", {"httpConfig": {"httpEnabledState": "HTTP_DISABLED"}},
     {"httpConfig": {"httpEnabledState": "HTTP_DISABLED"}}),
    ("eventNotificationConfigs", {"eventNotificationConfigs": [{"pubsubTopicName": "projects/proj-one/topics/ev2"}]},
     {"eventNotificationConfigs": [{"pubsubTopicName": "projects/proj-one/topics/ev2"}]}),
    ("stateNotificationConfig", {"stateNotificationConfig": {"pubsubTopicName": "projects/proj-one/topics/st2"}},
     {"stateNotificationConfig": {"pubsubTopicName": "projects/proj-one/topics/st2"}}),
    ("logLevel", {"logLevel": "DEBUG"}, {"logLevel": "DEBUG"}),
])
def test_patch_one_field(env, mask, body, want):
    ok(env.api.create_registry("reg-pt", **FULL))
    before = ok(env.api.get(registry_path("reg-pt")))
    got = ok(env.api.patch(registry_path("reg-pt"), body, query={"updateMask": mask}))
    expect = dict(before)
    expect.update(want)
    assert got == expect, (got, expect)
    assert ok(env.api.get(registry_path("reg-pt"))) == expect


def test_patch_masks_only_what_it_names(env):
    ok(env.api.create_registry("reg-pm", **FULL))
    body = {"mqttConfig": {"mqttEnabledState": "MQTT_DISABLED"}, "httpConfig": {"httpEnabledState": "HTTP_ENABLED"},
            "logLevel": "ERROR"}
    got = ok(env.api.patch(registry_path("reg-pm"), body, query={"updateMask": "mqttConfig,logLevel"}))
    assert got["mqttConfig"]["mqttEnabledState"] == "MQTT_DISABLED"
    assert got["logLevel"] == "ERROR"
    assert got["httpConfig"]["httpEnabledState"] == "HTTP_DISABLED"        # not in the mask: kept
    assert got["eventNotificationConfigs"] == FULL["eventNotificationConfigs"]
    # a masked field absent from the body is cleared (proto3)
    got = ok(env.api.patch(registry_path("reg-pm"), {}, query={"updateMask": "eventNotificationConfigs,"
                                                                          "stateNotificationConfig"}))
    assert "eventNotificationConfigs" not in got and not got.get("stateNotificationConfig"), got


def test_patch_credentials(env):
    ok(env.api.create_registry("reg-pc"))
    pems = [ca_pem("CA one"), ca_pem("CA two")]
    got = ok(env.api.patch(registry_path("reg-pc"), {"credentials": [cert_cred(p) for p in pems]},
                           query={"updateMask": "credentials"}))
    creds = ok(env.api.get(registry_path("reg-pc")))["credentials"]
    assert got["credentials"] == creds
    assert [c["publicKeyCertificate"]["certificate"].strip() for c in creds] == [p.strip() for p in pems]
    for c, cn in zip(creds, ("CA one", "CA two")):
        det = c["publicKeyCertificate"]["x509Details"]
        assert cn in det["subject"] and cn in det["issuer"], det
        assert det["startTime"].endswith("Z") and det["expiryTime"].endswith("Z")
        assert c["publicKeyCertificate"]["format"] == "X509_CERTIFICATE_PEM"
    got = ok(env.api.patch(registry_path("reg-pc"), {"credentials": []}, query={"updateMask": "credentials"}))
    assert "credentials" not in got


def test_patch_refusals_change_nothing(env):
    ok(env.api.create_registry("reg-pr", **FULL))
    cases = [
        ({}, {"logLevel": "DEBUG"}, "updateMask"),                        # no mask
        ({"updateMask": "id"}, {"id": "other"}, "id"),
        ({"updateMask": "name"}, {"name": "x"}, "name"),
        ({"updateMask": "colour"}, {}, "colour"),
        ({"updateMask": "mqttConfig"}, {"mqttConfig": {"mqttEnabledState": "ON"}}, "mqttEnabledState"),
        ({"updateMask": "logLevel"}, {"logLevel": 99}, "logLevel"),
        ({"updateMask": "credentials"}, {"credentials": [cert_cred("not a pem")]}, ""),
        ({"updateMask": "logLevel"}, {"logLevel": "DEBUG", "colour": 1}, "colour"),
    ]
    for query, body, word in cases:
        r = unchanged(env, lambda: env.api.patch(registry_path("reg-pr"), body, query=query))
        refused(r, "INVALID_ARGUMENT", word)
    r = unchanged(env, lambda: env.api.patch(registry_path("missing"), {"logLevel": "DEBUG"},
                                             query={"updateMask": "logLevel"}))
    refused(r, "NOT_FOUND")


# ---- IAM ----

def test_get_iam_policy(env):
    v = service_account(env.daemon, "watcher", "viewer")
    c = service_account(env.daemon, "ctl-sa1", "deviceController")
    service_account(env.daemon, "alien-sa", "admin", project="proj-two")
    pol = ok(env.api.post(registry_path() + ":getIamPolicy", {}))
    members = {b["role"]: b["members"] for b in pol["bindings"]}
    assert members["roles/cloudiot.admin"] == [f"serviceAccount:{env.admin_sa.email}"], members
    assert members["roles/cloudiot.viewer"] == [f"serviceAccount:{v.email}"], members
    assert members["roles/cloudiot.deviceController"] == [f"serviceAccount:{c.email}"], members
    assert not any("alien" in m for ms in members.values() for m in ms), members
    assert "etag" in pol
    refused(env.api.post(registry_path("nope") + ":getIamPolicy", {}), "NOT_FOUND")
    refused(env.api.get(registry_path() + ":getIamPolicy"), "NOT_FOUND")


def test_set_iam_policy_is_unimplemented(env):
    r = unchanged(env, lambda: env.api.post(registry_path() + ":setIamPolicy",
                                            {"policy": {"bindings": [{"role": "roles/cloudiot.admin",
                                                                      "members": ["user:x@example.com"]}]}}))
    refused(r, "UNIMPLEMENTED", "service-accounts")


def test_test_iam_permissions_refusals(env):
    r = ok(env.api.post(registry_path() + ":testIamPermissions", {"permissions": []}))
    assert r.get("permissions", []) == []
    refused(env.api.post(registry_path() + ":testIamPermissions", {"permissions": "cloudiot.devices.get"}),
            "INVALID_ARGUMENT")
    refused(env.api.post(registry_path() + ":testIamPermissions",
                         {"permissions": ["cloudiot.devices.get"] * 101}), "INVALID_ARGUMENT")
    refused(env.api.post(registry_path() + ":testIamPermissions", {"perms": []}), "INVALID_ARGUMENT", "perms")


def test_groups_are_unimplemented(env):
    refused(env.api.get(registry_path() + "/groups"), "UNIMPLEMENTED")
    refused(env.api.get(registry_path() + "/groups/g1/devices"), "UNIMPLEMENTED")


# ---- service-account keys through the API ----

def sa_path(email=None, key=None, verb=None):
    p = f"/v1/projects/{P}/serviceAccounts"
    if email:
        p += f"/{email}/keys"
    if key:
        p += f"/{key}"
    if verb:
        p += f":{verb}"
    return p


def test_service_account_keys(env):
    from api_common import Api
    viewer = Api(env.daemon, service_account(env.daemon, "keyed-sa", "viewer"))
    assert viewer.get(registry_path()).status == 200
    accounts = ok(env.api.get(sa_path()))["accounts"]
    emails = {a["email"]: a for a in accounts}
    assert set(emails) == {env.admin_sa.email, viewer.sa.email}, accounts
    assert emails[viewer.sa.email]["role"] == "roles/cloudiot.viewer"
    assert emails[viewer.sa.email]["name"] == f"projects/{P}/serviceAccounts/{viewer.sa.email}"

    keys = ok(env.api.get(sa_path(viewer.sa.email)))["keys"]
    assert [k["name"] for k in keys] == [f"projects/{P}/serviceAccounts/{viewer.sa.email}/keys/{viewer.sa.key_id}"]
    assert keys[0]["disabled"] is False and keys[0]["keyAlgorithm"] == "KEY_ALG_RSA_2048"
    assert "PRIVATE" not in str(keys) and "BEGIN" not in str(keys)

    ok(env.api.post(sa_path(viewer.sa.email, viewer.sa.key_id, "disable"), {}))
    assert ok(env.api.get(sa_path(viewer.sa.email)))["keys"][0]["disabled"] is True
    refused(viewer.get(registry_path()), "UNAUTHENTICATED")
    ok(env.api.post(sa_path(viewer.sa.email, viewer.sa.key_id, "enable"), {}))
    assert viewer.get(registry_path()).status == 200

    # a key named under the wrong account, or another project, is not found
    refused(env.api.post(sa_path(env.admin_sa.email, viewer.sa.key_id, "disable"), {}), "NOT_FOUND")
    refused(env.api.post(sa_path(viewer.sa.email, "0" * 40, "disable"), {}), "NOT_FOUND")
    refused(env.api.get(sa_path(viewer.sa.email, viewer.sa.key_id)), "NOT_FOUND")        # GET a key: no
    refused(env.api.post(sa_path(viewer.sa.email, viewer.sa.key_id, "rotate"), {}), "NOT_FOUND")
    assert viewer.get(registry_path()).status == 200

    ok(env.api.delete(sa_path(viewer.sa.email, viewer.sa.key_id)))
    refused(viewer.get(registry_path()), "UNAUTHENTICATED")
    refused(env.api.get(sa_path(viewer.sa.email)), "NOT_FOUND")
    refused(env.api.delete(sa_path(viewer.sa.email, viewer.sa.key_id)), "NOT_FOUND")


def test_other_projects_keys_are_out_of_reach(env):
    alien = service_account(env.daemon, "alien-sa", "admin", project="proj-two")
    path = f"/v1/projects/proj-two/serviceAccounts/{alien.email}/keys/{alien.key_id}:disable"
    r = unchanged(env, lambda: env.api.post(path, {}))
    refused(r, "PERMISSION_DENIED")
    # named under proj-one, the key of proj-two's account is not proj-one's
    r = unchanged(env, lambda: env.api.post(sa_path(alien.email, alien.key_id, "disable"), {}))
    refused(r, "NOT_FOUND")
