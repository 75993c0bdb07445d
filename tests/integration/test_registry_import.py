"""Importing what IoT Core's tools printed (issue 11, items 5 and 7).

The fixtures are built here from templates modelled on `gcloud iot devices
list|describe --format json` and `gcloud iot registries list|describe
--format json`: every field IoT Core had, enums as names, timestamps with
microseconds, int64s as strings, keys sorted and indented as gcloud prints
them. Keys and CA certificates are made at test time (python3-cryptography).
"""
import base64
import datetime
import json
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from conftest import run_tool

P, L, R = "proj-new", "europe-west1", "reg-1"
LOC = ["--project", P, "--region", L]
OLD = "projects/old-project/locations/us-central1/registries/old-reg"
NOT_FOUND, EXISTS, CONFLICT, LIMIT, INVALID, CERT, NOT_EMPTY, BUSY, STORAGE, IMPORT = range(11, 21)


def lkdb(db, *args, input=None):
    return run_tool("--db", db, *args, input=input)


def ok(r):
    assert r.rc == 0, r
    return r


def js(r):
    assert r.rc == 0, r
    return json.loads(r.out)


def dev(db, *args, registry=R, **kw):
    return lkdb(db, "devices", *args, "--registry", registry, *LOC, **kw)


def describe(db, device, registry=R):
    return js(dev(db, "describe", device, "--format", "json", registry=registry))


def dump(db):
    return subprocess.run(["sqlite3", str(db), ".dump"], capture_output=True, text=True, check=True).stdout


def gcloud_json(obj):
    """As gcloud's --format json prints: indent 2, keys sorted."""
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def es_pem():
    k = ec.generate_private_key(ec.SECP256R1())
    return k.public_key().public_bytes(serialization.Encoding.PEM,
                                       serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def ts(day=1, hour=12, micro=123456):
    return f"2023-05-{day:02d}T{hour:02d}:00:00.{micro:06d}Z"


def gcloud_device(i, key, num_id, gateway=False, config=b'{"interval": 60}', version=7, blocked=False):
    """One Device as `gcloud iot devices describe --format json` printed it."""
    d = {
        "blocked": blocked,
        "config": {
            "binaryData": base64.b64encode(config).decode(),
            "cloudUpdateTime": ts(1, 12),
            "deviceAckTime": ts(1, 13, 654321),
            "version": str(version),
        },
        "credentials": [{
            "expirationTime": "1970-01-01T00:00:00Z",
            "publicKey": {"format": "ES256_PEM", "key": key},
        }],
        "gatewayConfig": {
            "gatewayAuthMethod": "ASSOCIATION_ONLY" if gateway else "GATEWAY_AUTH_METHOD_UNSPECIFIED",
            "gatewayType": "GATEWAY" if gateway else "NON_GATEWAY",
        },
        "id": f"dev-{i}",
        "lastConfigAckTime": ts(2, 8),
        "lastConfigSendTime": ts(2, 7),
        "lastErrorStatus": {"code": 9, "message": "mqtt: SERVER: The connection was closed because MQTT "
                                                  "keep-alive check failed."},
        "lastErrorTime": ts(3, 9),
        "lastEventTime": ts(4, 10),
        "lastHeartbeatTime": ts(4, 11),
        "lastStateTime": ts(4, 12),
        "logLevel": "ERROR" if gateway else "INFO",
        "metadata": {"site": f"site-{i}", "model": "gw-9000" if gateway else "sensor"},
        "name": f"{OLD}/devices/{num_id}",
        "numId": str(num_id),
        "state": {"binaryData": base64.b64encode(b'{"ok": true}').decode(), "updateTime": ts(4, 12)},
    }
    if not gateway:
        d["gatewayConfig"]["lastAccessedGatewayId"] = "dev-0"
        d["gatewayConfig"]["lastAccessedGatewayTime"] = ts(4, 9, 500000)
    return d


NUM_IDS = [2820826361193189, 3086236573614516, 2651877375386513]


@pytest.fixture(scope="module")
def export():
    """Three devices: a gateway and two devices bound to it, as gcloud listed them."""
    keys = [es_pem() for _ in range(3)]
    return [gcloud_device(i, keys[i], NUM_IDS[i], gateway=i == 0, version=7 + i) for i in range(3)]


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "registry.db"
    ok(lkdb(path, "registries", "create", R, *LOC))
    return path


def check_imported(db, export, registry=R, keep_num_ids=True):
    for src in export:
        d = describe(db, src["id"], registry=registry)
        if keep_num_ids:
            assert d["numId"] == src["numId"]
            assert d["name"].endswith("/devices/" + src["numId"])
        assert d["blocked"] is src["blocked"]
        assert d["metadata"] == src["metadata"]
        assert [c["publicKey"] for c in d["credentials"]] == [c["publicKey"] for c in src["credentials"]]
        # the config keeps its version, data and cloudUpdateTime (an HTTP device's localVersion stays valid)
        assert d["config"]["version"] == src["config"]["version"]
        assert d["config"]["binaryData"] == src["config"]["binaryData"]
        assert d["config"]["cloudUpdateTime"] == src["config"]["cloudUpdateTime"][:19] + "Z"
        assert "deviceAckTime" not in d["config"]  # not acknowledged to us
        assert d["logLevel"] == src["logLevel"]
        g, sg = d["gatewayConfig"], src["gatewayConfig"]
        assert g["gatewayType"] == sg["gatewayType"]
        if sg["gatewayAuthMethod"] != "GATEWAY_AUTH_METHOD_UNSPECIFIED":
            assert g["gatewayAuthMethod"] == sg["gatewayAuthMethod"]
        else:
            assert "gatewayAuthMethod" not in g
        assert g.get("lastAccessedGatewayId") == sg.get("lastAccessedGatewayId")
        if "lastAccessedGatewayTime" in sg:
            assert g["lastAccessedGatewayTime"] == sg["lastAccessedGatewayTime"][:19] + "Z"
        # output-only fields are not taken over
        for k in ("lastHeartbeatTime", "lastEventTime", "lastStateTime", "lastConfigAckTime",
                  "lastConfigSendTime", "lastErrorTime", "lastErrorStatus", "state"):
            assert k not in d, k


# ---- devices ----

def test_gcloud_list_array_imports_every_field(db, export, tmp_path):
    f = tmp_path / "devices.json"
    f.write_text(gcloud_json(export))  # `gcloud iot devices list --format json`: one JSON array
    r = ok(dev(db, "import", f))
    assert "Imported 3 devices" in r.out
    # logLevel is in effect (the broker's log levels): no note, nothing else to say
    assert r.err == "", r.err
    check_imported(db, export)
    # the list shows them too
    listed = {d["id"]: d for d in js(dev(db, "list", "--format", "json"))}
    assert listed["dev-0"]["gatewayConfig"]["gatewayType"] == "GATEWAY"
    assert listed["dev-1"]["logLevel"] == "INFO"
    # the next config continues the version: optimistic concurrency knows the imported one
    r = dev(db, "configs", "update", "dev-0", "--config-data", "x", "--version-to-update", "1")
    assert r.rc == CONFLICT and "current version is 7" in r.err, r
    cfg = js(dev(db, "configs", "update", "dev-0", "--config-data", "x", "--version-to-update", "7",
                 "--format", "json"))
    assert cfg["version"] == "8"
    # a new device gets a numId above the kept ones
    new = js(dev(db, "create", "dev-new", "--format", "json"))
    assert int(new["numId"]) > max(NUM_IDS)
    # 'devices list --format json' output (our own, with sha256 fingerprints) imports as it is
    ok(lkdb(db, "registries", "create", "reg-2", *LOC))
    g = tmp_path / "ours.json"
    g.write_text(json.dumps(js(dev(db, "list", "--format", "json"))))
    r = ok(dev(db, "import", g, registry="reg-2"))
    assert "Imported 4 devices" in r.out


def test_bindings_import_with_the_devices_or_alone(db, export, tmp_path):
    """The pairs `gcloud iot devices gateways list-bound-devices` printed, as {"gatewayId", "deviceId"}
    records: with the devices in their one transaction (--bindings), or alone (devices gateways import);
    every refused pair reported with where and why, and then nothing imported."""
    devices = tmp_path / "devices.json"
    devices.write_text(gcloud_json(export))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"gatewayId": "dev-0", "deviceId": "dev-1"}\n{"gateway_id": "dev-0", "device_id": "dev-2"}\n')
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(json.dumps(x) for x in [
        {"gatewayId": "dev-0", "deviceId": "dev-1"},          # fine on its own
        {"gatewayId": "dev-0", "deviceId": "ghost"},          # unknown device
        {"gatewayId": "dev-1", "deviceId": "dev-2"},          # not a gateway
        {"gatewayId": "dev-0", "deviceId": "dev-0"},          # a gateway bound to a gateway
        {"gatewayId": "dev-0", "device": "dev-2"},            # unknown field
        {"gatewayId": "dev-0"},                               # no device
    ]) + "\n")
    before = dump(db)
    r = dev(db, "import", devices, "--bindings", bad)
    assert r.rc == IMPORT, r
    lines = r.err.splitlines()
    assert "bindings line 2:" in lines[0] and "ghost" in lines[0] and "LK_ERR_REG_NOT_FOUND" in lines[0], r.err
    assert "bindings line 3:" in lines[1] and "not a gateway" in lines[1], r.err
    assert "bindings line 4:" in lines[2] and "cannot be bound to another gateway" in lines[2], r.err
    assert "bindings line 5:" in lines[3] and "unknown field 'device'" in lines[3], r.err
    assert "bindings line 6:" in lines[4] and "deviceId is required" in lines[4], r.err
    assert "nothing was imported" in lines[-1], r.err
    assert dump(db) == before                                 # not even the devices
    r = ok(dev(db, "import", devices, "--bindings", pairs))
    assert "Imported 3 devices" in r.out and "and 2 bindings" in r.out, r.out
    bound = js(lkdb(db, "devices", "gateways", "list-bound-devices", "--gateway", "dev-0", "--registry", R, *LOC,
                    "--format", "json"))
    assert [d["id"] for d in bound] == ["dev-1", "dev-2"]
    # alone, in its own transaction: a refusal writes nothing; pairs bound already are taken as they are
    ok(lkdb(db, "devices", "gateways", "unbind", "--gateway", "dev-0", "--device", "dev-1", "--registry", R, *LOC))
    before = dump(db)
    r = lkdb(db, "devices", "gateways", "import", bad, "--registry", R, *LOC, "--format", "json")
    assert r.rc == IMPORT, r
    summary = json.loads(r.out)
    assert summary["imported"] == 0 and summary["refused"] == 5, summary
    assert [e["line"] for e in summary["errors"]] == [2, 3, 4, 5, 6], summary
    assert dump(db) == before
    r = ok(lkdb(db, "devices", "gateways", "import", "-", "--registry", R, *LOC,
                input=json.dumps([{"gatewayId": "dev-0", "deviceId": "dev-1"},
                                  {"gatewayId": "dev-0", "deviceId": NUM_IDS[2]}])))   # a numId as a number
    assert r.out == f"Imported 2 bindings into registry [{R}] in " + r.out.split(" in ")[1], r.out
    assert len(js(lkdb(db, "devices", "gateways", "list-bound-devices", "--gateway", "dev-0", "--registry", R,
                       *LOC, "--format", "json"))) == 2
    # the limits: a device bound to 10 gateways takes no 11th
    gws = tmp_path / "gws.jsonl"
    gws.write_text("".join(json.dumps({"id": f"gw-{i:02d}", "gatewayConfig": {"gatewayType": "GATEWAY"}}) + "\n"
                           for i in range(11)))
    many = tmp_path / "many.jsonl"
    many.write_text("".join(json.dumps({"gatewayId": f"gw-{i:02d}", "deviceId": "dev-2"}) + "\n"
                            for i in range(11)))
    before = dump(db)
    r = dev(db, "import", gws, "--bindings", many)
    assert r.rc == IMPORT and "LK_ERR_REG_LIMIT" in r.err and "bindings line 10:" in r.err, r.err  # dev-0 + 9
    assert dump(db) == before
    r = lkdb(db, "devices", "gateways", "import", many, "--registry", R, *LOC, "--skip-existing")
    assert r.rc == 2 and "--skip-existing" in r.err, r
    r = lkdb(db, "devices", "gateways", "import", tmp_path / "missing.jsonl", "--registry", R, *LOC)
    assert r.rc == 3, r


def test_json_lines_and_describe_objects(db, export, tmp_path):
    # JSON lines (jq -c '.[]') ...
    lines = tmp_path / "devices.jsonl"
    lines.write_text("".join(json.dumps(d) + "\n" for d in export))
    s = js(dev(db, "import", lines, "--format", "json"))
    assert s["imported"] == 3 and s["records"] == 3 and s["lines"] == 3 and s["form"] == "json-lines"
    check_imported(db, export)
    # ... and `gcloud iot devices describe --format json` run once per device: objects one after another
    ok(lkdb(db, "registries", "create", "reg-2", *LOC))
    objs = tmp_path / "described.json"
    objs.write_text("".join(gcloud_json(d) for d in export))
    s = js(dev(db, "import", objs, "--format", "json", registry="reg-2"))
    assert s["imported"] == 3 and s["form"] == "json-objects"
    check_imported(db, export, registry="reg-2", keep_num_ids=False)
    # the same numIds were taken (by reg-1's devices): each got a new one, and the summary says which
    assert sorted(c["requested"] for c in s["numIdsChanged"]) == sorted(str(n) for n in NUM_IDS)
    for c in s["numIdsChanged"]:
        assert describe(db, c["id"], registry="reg-2")["numId"] == c["assigned"] != c["requested"]
    # a JSON array in one line imports too, and so does standard input
    ok(lkdb(db, "registries", "create", "reg-3", *LOC))
    r = ok(dev(db, "import", "-", registry="reg-3", input=json.dumps(export)))
    assert "Imported 3 devices" in r.out


def test_num_id_collision_is_reported_per_device(db, export, tmp_path):
    f = tmp_path / "devices.json"
    f.write_text(gcloud_json(export))
    ok(dev(db, "import", f))
    ok(lkdb(db, "registries", "create", "reg-2", *LOC))
    # a device whose numId is free keeps it, even in the same run
    free = gcloud_device(9, es_pem(), 4000000000000001)
    f.write_text(gcloud_json(export + [free]))
    r = ok(dev(db, "import", f, registry="reg-2"))
    assert "with a new numId" in r.out
    for src in export:
        got = describe(db, src["id"], registry="reg-2")["numId"]
        assert got != src["numId"]
        line = [x for x in r.err.splitlines() if f"device '{src['id']}'" in x]
        assert line and f"numId {src['numId']} belongs to another device" in line[0] and \
            f"it is numId {got} now" in line[0], r.err
    assert describe(db, "dev-9", registry="reg-2")["numId"] == "4000000000000001"
    assert "dev-9" not in r.err
    # the numIds of the first import are untouched
    for src in export:
        assert describe(db, src["id"])["numId"] == src["numId"]
    # a numId above 2^62 is not kept (numIds assigned after it must still fit)
    ok(lkdb(db, "registries", "create", "reg-3", *LOC))
    big = gcloud_device(5, es_pem(), 2 ** 63 + 5)
    r = ok(dev(db, "import", "-", registry="reg-3", input=json.dumps(big)))
    assert "is above 2^62" in r.err
    # not a number at all: refused
    bad = dict(big, numId="12x")
    r = dev(db, "import", "-", registry="reg-3", input=json.dumps(dict(bad, id="dev-6")))
    assert r.rc == IMPORT and "numId must be an unsigned 64-bit number" in r.err, r


def test_skip_existing_reruns_a_batch(db, export, tmp_path):
    f = tmp_path / "devices.json"
    f.write_text(gcloud_json(export))
    ok(dev(db, "import", f))
    before = dump(db)
    # a plain re-run is refused, whole
    r = dev(db, "import", f)
    assert r.rc == IMPORT, r
    assert "3 of 3 records refused; nothing was imported" in r.err
    assert r.err.count("already exists") == 3
    assert dump(db) == before
    # with --skip-existing the existing ones are skipped and reported, the new ones imported
    extra = gcloud_device(7, es_pem(), 1234567890123, version=1)
    f.write_text(gcloud_json(export + [extra]))
    r = ok(dev(db, "import", f, "--skip-existing"))
    assert "Imported 1 devices" in r.out and "3 skipped (they exist already)" in r.out
    for src in export:
        assert f"device '{src['id']}': exists already: skipped" in r.err
    assert describe(db, "dev-7")["numId"] == "1234567890123"
    s = js(dev(db, "import", f, "--skip-existing", "--format", "json"))
    assert s["imported"] == 0 and s["skipped"] == 4
    assert sorted(s["skippedIds"]) == ["dev-0", "dev-1", "dev-2", "dev-7"]
    # an id twice in one input is an error, skip or not
    f.write_text(gcloud_json([extra, dict(extra, numId="55")]))
    r = dev(db, "import", f, "--skip-existing")
    assert r.rc == IMPORT and "the id appears twice in the input (first at line 2)" in r.err, r


def test_import_refusals_are_capped_and_write_nothing(db, export, tmp_path):
    before = dump(db)
    # a pretty-printed file read as lines used to print one error per line; now at most 20, then a count
    f = tmp_path / "junk.jsonl"
    f.write_text("".join(f'not json {i}\n' for i in range(100)))
    r = dev(db, "import", f)
    assert r.rc == IMPORT
    shown = [x for x in r.err.splitlines() if ": line " in x]
    assert len(shown) == 20 and "line 20:" in shown[-1], r.err
    assert "... and 80 more refused" in r.err
    assert "100 of 100 lines refused; nothing was imported" in r.err
    s = json.loads(dev(db, "import", f, "--format", "json").out)
    assert s["refused"] == 100 and len(s["errors"]) == 100 and s["errors"][0]["line"] == 1
    assert dump(db) == before
    # a broken array: one error, and where
    bad = tmp_path / "broken.json"
    bad.write_text(gcloud_json(export)[:-3])  # the closing "}\n]" cut off
    r = dev(db, "import", bad)
    assert r.rc == IMPORT and "does not end" in r.err and "nothing after it was read" in r.err, r
    bad.write_text("[" + json.dumps(export[0]) + ",]")
    r = dev(db, "import", bad)
    assert r.rc == IMPORT and "a ',' before the array's closing ']'" in r.err, r
    bad.write_text(json.dumps(export) + "\n[]\n")
    r = dev(db, "import", bad)
    assert r.rc == IMPORT and "text after the array's closing ']'" in r.err, r
    # a record over 1 MiB inside an array is refused on its own; the others are still checked
    huge = dict(export[1], metadata={"k": "v" * (1 << 20)})
    bad.write_text(gcloud_json([export[0], huge, {"id": "1bad"}]))
    r = dev(db, "import", bad)
    assert r.rc == IMPORT, r
    assert "record 2 (line" in r.err and "longer than 1048576 bytes" in r.err
    assert "record 3 (line" in r.err and "'1bad'" in r.err
    # unknown fields are still refused (a misspelt field must not import a wrong device)
    bad.write_text(json.dumps([dict(export[0], blokced=True)]))
    r = dev(db, "import", bad)
    assert r.rc == IMPORT and "unknown field 'blokced'" in r.err, r
    bad.write_text(json.dumps([dict(export[0], gatewayConfig={"gatewayType": "BRIDGE"})]))
    r = dev(db, "import", bad)
    assert r.rc == IMPORT and "gatewayConfig.gatewayType 'BRIDGE' is none of" in r.err, r
    bad.write_text(json.dumps([dict(export[0], logLevel="LOUD")]))
    r = dev(db, "import", bad)
    assert r.rc == IMPORT and "logLevel 'LOUD' is none of" in r.err, r
    assert dump(db) == before


def test_import_config_base64_is_canonical(db, export, tmp_path):
    """binaryData: the standard or the URL alphabet, padding absent or complete (docs/cli.md), and only
    the canonical text of each byte string: one alphabet per text, zero unused bits."""
    data = bytes([0xfb, 0xff, 0xbf, 0x00, 0x01])
    std = base64.b64encode(data).decode()          # "+/+/AAE=" both special characters of the standard one
    url = base64.urlsafe_b64encode(data).decode()  # "-_-_AAE="
    assert "+" in std and "/" in std and "-" in url and "_" in url
    f = tmp_path / "one.json"
    for i, text in enumerate([std, url, url.rstrip("=")]):
        f.write_text(json.dumps([dict(export[0], id=f"ok-{i}", numId=str(10 + i), name=f"{OLD}/devices/{10 + i}",
                                      config=dict(export[0]["config"], binaryData=text))]))
        ok(dev(db, "import", f))
        assert describe(db, f"ok-{i}")["config"]["binaryData"] == std
    before = dump(db)
    # a mix of the two alphabets used to be accepted; so are non-zero unused bits ("AAF=" for "AAE="),
    # partial padding and padding inside the text: all refused, nothing written
    for bad in ["+_+_AAE=", "-/-/AAE=", std[:-2] + "F=", std[:-1] + "==", "+/+/=AAE"]:
        f.write_text(json.dumps([dict(export[0], id="bad-0", numId="99", name=f"{OLD}/devices/99",
                                      config=dict(export[0]["config"], binaryData=bad))]))
        r = dev(db, "import", f)
        assert r.rc == IMPORT and "binaryData is not base64" in r.err, (bad, r)
    assert dump(db) == before


def test_import_bounds(db, tmp_path):
    # at most 1,000,000 records
    f = tmp_path / "many.jsonl"
    f.write_text("1\n" * 1_000_001)
    r = dev(db, "import", f)
    assert r.rc == IMPORT
    assert "line 1000001: more than 1000000 records" in r.err and "... and 999980 more refused" in r.err, \
        r.err[-600:]
    assert "the input was not read to its end; nothing was imported" in r.err
    # at most 4 GiB (a sparse file: its NUL bytes are one over-long line, then the bound)
    big = tmp_path / "big.jsonl"
    with open(big, "wb") as out:
        out.truncate(4 * 1024 ** 3 + 10)
    r = dev(db, "import", big)
    big.unlink()
    assert r.rc == IMPORT
    assert "line 1: longer than 1048576 bytes" in r.err
    assert "the input is larger than 4294967296 bytes, the most one import reads" in r.err, r.err


def test_import_expired_and_pkcs1_credentials(db, tmp_path):
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pkcs1 = k.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1).decode()
    spki = k.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    d = {"id": "old-rsa", "credentials": [
        {"publicKey": {"format": "RSA_PEM", "key": pkcs1}, "expirationTime": "2021-01-01T00:00:00Z"}]}
    r = ok(dev(db, "import", "-", input=json.dumps(d)))
    assert "credential 0 expired at 2021-01-01T00:00:00Z: imported" in r.err
    assert "RSA PUBLIC KEY (PKCS#1) was stored as the same key in a PUBLIC KEY block" in r.err
    got = describe(db, "old-rsa")["credentials"][0]
    assert got["publicKey"]["key"] == spki and got["expirationTime"] == "2021-01-01T00:00:00Z"
    # skipped: no word about its credentials (nothing of it was imported)
    r = ok(dev(db, "import", "-", "--skip-existing", input=json.dumps(d)))
    assert "expired" not in r.err and "PKCS#1" not in r.err and "exists already: skipped" in r.err, r


# ---- registries ----

def make_ca(cn, days=(-1, 365)):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=days[0]))
            .not_valid_after(now + datetime.timedelta(days=days[1]))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def gcloud_registry(rid, ca_pem=None, events=True, state=True, http="HTTP_ENABLED", log="INFO"):
    """One DeviceRegistry as `gcloud iot registries describe --format json` printed it."""
    r = {
        "httpConfig": {"httpEnabledState": http},
        "id": rid,
        "logLevel": log,
        "mqttConfig": {"mqttEnabledState": "MQTT_ENABLED"},
        "name": f"projects/old-project/locations/us-central1/registries/{rid}",
        "stateNotificationConfig": {"pubsubTopicName": "projects/old-project/topics/state"} if state else {},
    }
    if events:
        r["eventNotificationConfigs"] = [
            {"pubsubTopicName": "projects/old-project/topics/alerts", "subfolderMatches": "alerts"},
            {"pubsubTopicName": "projects/old-project/topics/telemetry"}]
    if ca_pem:
        r["credentials"] = [{"publicKeyCertificate": {
            "certificate": ca_pem, "format": "X509_CERTIFICATE_PEM",
            "x509Details": {"expiryTime": "2033-05-01T12:00:00Z", "issuer": "CN=Fleet CA",
                            "publicKeyType": "EC", "signatureAlgorithm": "ECDSA_SHA256",
                            "startTime": "2023-05-01T12:00:00Z", "subject": "CN=Fleet CA"}}}]
    return r


def test_registries_import(tmp_path):
    db = tmp_path / "r.db"
    ok(lkdb(db, "registries", "create", "existing", *LOC))
    ca = make_ca("Fleet CA")
    regs = [gcloud_registry("fleet-a", ca_pem=ca),
            gcloud_registry("fleet-b", events=False, state=False, http="HTTP_DISABLED", log="DEBUG")]
    f = tmp_path / "registries.json"
    f.write_text(gcloud_json(regs))  # `gcloud iot registries list --format json`
    r = ok(lkdb(db, "registries", "import", f, *LOC))
    assert "Imported 2 registries (1 CA certificate)" in r.out
    # item 7: what nothing reads yet is said once, naming what was set
    note = [x for x in r.err.splitlines() if "not yet in effect" in x]
    assert len(note) == 1 and "note: httpConfig is stored" in note[0]
    # notification configs route (schema 6): the export's project's topics become P's
    moved = [x for x in r.err.splitlines() if "notification topics" in x]
    assert len(moved) == 1 and f"3 notification topics of the export's project now name project {P}'s" in moved[0]
    a = js(lkdb(db, "registries", "describe", "fleet-a", *LOC, "--format", "json"))
    assert a["name"] == f"projects/{P}/locations/{L}/registries/fleet-a"  # created in P and L, not the old ones
    assert a["eventNotificationConfigs"] == [
        {"pubsubTopicName": f"projects/{P}/topics/alerts", "subfolderMatches": "alerts"},
        {"pubsubTopicName": f"projects/{P}/topics/telemetry"}]
    assert a["stateNotificationConfig"] == {"pubsubTopicName": f"projects/{P}/topics/state"}
    assert a["mqttConfig"] == {"mqttEnabledState": "MQTT_ENABLED"}
    assert a["httpConfig"] == {"httpEnabledState": "HTTP_ENABLED"}
    assert a["logLevel"] == "INFO"
    assert a["credentials"][0]["publicKeyCertificate"]["certificate"] == ca
    b = js(lkdb(db, "registries", "describe", "fleet-b", *LOC, "--format", "json"))
    assert b["httpConfig"] == {"httpEnabledState": "HTTP_DISABLED"} and b["logLevel"] == "DEBUG"
    assert "stateNotificationConfig" not in b and "eventNotificationConfigs" not in b
    # the CA works: a device certificate it did not sign is refused in fleet-a
    r = lkdb(db, "devices", "create", "d-1", "--registry", "fleet-a", *LOC, "--public-key",
             f"path={write(tmp_path / 'k.pem', es_pem())},type=es256")
    assert r.rc == CERT, r
    # a re-run: refused whole, or skipped with --skip-existing
    before = dump(db)
    r = lkdb(db, "registries", "import", f, *LOC)
    assert r.rc == IMPORT and r.err.count("already exists") == 2, r
    assert dump(db) == before
    f.write_text("".join(gcloud_json(x) for x in regs + [gcloud_registry("fleet-c", log="NONE")]))
    r = ok(lkdb(db, "registries", "import", f, *LOC, "--skip-existing"))
    assert "Imported 1 registry" in r.out and "2 skipped" in r.out
    assert "registry 'fleet-a': exists already: skipped" in r.err
    # an id twice in one input is an error, skip or not
    f.write_text(gcloud_json([gcloud_registry("fleet-d"), gcloud_registry("fleet-d")]))
    r = lkdb(db, "registries", "import", f, *LOC, "--skip-existing")
    assert r.rc == IMPORT and "the id appears twice in the input (first at line 2)" in r.err, r
    # describe output of ours imports too (as JSON lines)
    g = tmp_path / "ours.jsonl"
    g.write_text(json.dumps(a) + "\n")
    ok(lkdb(db, "registries", "import", g, "--project", "proj-other", "--region", L))


def write(path, text):
    path.write_text(text)
    return path


def test_registries_import_refusals_write_nothing(tmp_path):
    db = tmp_path / "r.db"
    ok(lkdb(db, "registries", "create", "existing", *LOC))
    before = dump(db)
    expired = make_ca("Old CA", days=(-30, -1))
    not_ca = gcloud_registry("x-cert", ca_pem="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    cases = [
        (gcloud_registry("x-expired", ca_pem=expired), CERT, "CA certificate 0"),
        (not_ca, INVALID, "CA certificate 0"),
        (dict(gcloud_registry("x-field"), eventNotificationConfig=[]), INVALID, "unknown field 'eventNotificationConfig'"),
        (gcloud_registry("x-http", http="HTTP_MAYBE"), INVALID, "httpConfig.httpEnabledState 'HTTP_MAYBE'"),
        (dict(gcloud_registry("x-topic"), stateNotificationConfig={"topic": "t"}), INVALID, "member 'topic'"),
        ({"name": "projects/p/locations/l/registries/noid"}, INVALID, '"id" (a string) is required'),
    ]
    f = tmp_path / "bad.json"
    f.write_text(gcloud_json([gcloud_registry("good-one")] + [c[0] for c in cases]))
    r = lkdb(db, "registries", "import", f, *LOC)
    assert r.rc == IMPORT, r
    for _, _, words in cases:
        assert words in r.err, (words, r.err)
    assert f"{len(cases)} of {len(cases) + 1} records refused; nothing was imported" in r.err
    assert dump(db) == before


# ---- item 7: settings stored but not yet in effect ----

def test_notice_for_settings_not_in_effect(tmp_path):
    db = tmp_path / "n.db"
    r = ok(lkdb(db, "registries", "create", "plain", *LOC))
    assert "not yet in effect" not in r.err  # nothing of the kind was set
    # notification configs route since schema 6: no note for them
    r = ok(lkdb(db, "registries", "create", "routed", *LOC, "--event-notification-config", "topic=ttt"))
    assert "not yet in effect" not in r.err, r.err
    r = ok(lkdb(db, "registries", "update", "plain", *LOC, "--state-pubsub-topic", f"projects/{P}/topics/sss",
                "--no-enable-http-config"))
    note = [x for x in r.err.splitlines() if "not yet in effect" in x]
    assert note == ["latchkey: registries update: note: httpConfig is stored and shown, but not yet "
                    "in effect: nothing reads them yet (no HTTP bridge, no device logs; "
                    "devices connect over MQTT only, which mqttConfig governs; docs/registry.md)"], r.err
    # another project's topic is refused, saying which rule
    r = lkdb(db, "registries", "update", "plain", *LOC, "--state-pubsub-topic", "projects/p/topics/sss")
    assert r.rc != 0 and f"must be projects/{P}/topics/TOPIC" in r.err, r.err
    r = ok(lkdb(db, "registries", "update", "plain", *LOC, "--enable-http-config"))
    assert "httpConfig is stored and shown, but not yet in effect" in r.err
    r = ok(lkdb(db, "registries", "update", "plain", *LOC, "--no-enable-mqtt-config"))
    assert "not yet in effect" not in r.err  # MQTT is in effect
    r = ok(lkdb(db, "registries", "update", "plain", *LOC, "--clear-state-pubsub-topic"))
    assert "not yet in effect" not in r.err  # clearing sets nothing
