"""latchkey --api: the registry commands through latchkeyd's admin API.

The same commands print the same things and exit the same codes with --db
and with --api (one script run both ways, the outputs compared); and what
the API way adds is refused where it must be: --api with --db, plain HTTP
to another host, a missing or broken key file, a server from another CA, no
server at all, another project's registry, commands offered only with --db.
The token never shows in anything the tool prints.
"""
import json
import os
import re
import socket
import subprocess

import pytest

import tool_api
from conftest import BIN, Result


def run_tool(*args, env=None):
    """The tool as given: this file says --db or --api itself (never rewritten
    by LK_TOOL_VIA_API)."""
    cp = subprocess.run([str(BIN / "latchkey"), *map(str, args)], capture_output=True, text=True,
                        env={**os.environ, **(env or {})}, timeout=120)
    return Result(cp)

P, L, R = "proj-api", "europe-west1", "reg-api"
LOC = ["--project", P, "--region", L]
USAGE, FILE_NOT_FOUND, FILE_UNUSABLE = 2, 3, 24
NOT_FOUND, EXISTS, CONFLICT, LIMIT, INVALID = 11, 12, 13, 14, 15
REFUSED, TLS, NETWORK = 30, 31, 32


@pytest.fixture
def api(tmp_path):
    """latchkeyd over a fresh registry file with an admin key file for P."""
    ca = tool_api.TestCA(tmp_path / "ca")
    d = tool_api.Daemon(tmp_path / "registry.db", ca, tool_api.Path(os.environ.get("LK_LATCHKEYD", BIN / "latchkeyd")),
                        BIN / "latchkey")
    d.key = d.key_file(P)
    yield d
    assert d.stop() == 0


def remote(d, *args, env=None, key=None):
    return run_tool("--api", d.url, "--key-file", key or d.key, "--ca-file", d.ca.ca, *args, env=env)


def key_text(d):
    return json.loads(open(d.key).read())


# ---- the same either way ----

def script(keys_dir, pki):
    es = keys_dir / "es.pem"
    big = keys_dir / "big.bin"
    big.write_bytes(b"z" * 65537)
    ca, other, cert, ocert = (pki.paths[n] for n in ("ca", "other_ca", "dev_cert", "other_cert"))
    reg = f"projects/{P}/locations/{L}/registries/{R}"
    return [
        ["registries", "create", R, *LOC, "--no-enable-http-config", "--state-pubsub-topic", f"projects/{P}/topics/sss"],
        ["registries", "create", R, *LOC],
        ["registries", "list", *LOC],
        ["registries", "describe", R, *LOC],
        ["registries", "update", R, *LOC, "--enable-http-config", "--format", "json"],
        ["devices", "create", "dev-1", "--registry", R, *LOC, "--public-key", f"path={es},type=es256",
         "--metadata", "site=berlin,floor=3"],
        ["devices", "create", "dev-2", "--registry", R, *LOC, "--blocked"],
        ["devices", "create", "dev-1", "--registry", R, *LOC],
        ["devices", "create", "Bad id", "--registry", R, *LOC],
        ["devices", "list", "--registry", R, *LOC],
        ["devices", "list", "--registry", R, *LOC, "--format", "json"],
        ["devices", "describe", "dev-1", "--registry", R, *LOC],
        ["devices", "update", "dev-1", "--registry", R, *LOC, "--unblocked", "--clear-metadata"],
        ["devices", "credentials", "list", "dev-1", "--registry", R, *LOC],
        ["devices", "credentials", "create", "dev-1", "--registry", R, *LOC, "--path", es, "--type", "es256"],
        ["devices", "credentials", "delete", "dev-1", "7", "--registry", R, *LOC],
        ["devices", "credentials", "delete", "dev-1", "0", "--registry", R, *LOC, "--format", "json"],
        ["devices", "configs", "update", "dev-1", "--registry", R, *LOC, "--config-data", "on"],
        ["devices", "configs", "update", "dev-1", "--registry", R, *LOC, "--config-data", "x",
         "--version-to-update", "1"],
        ["devices", "configs", "list", "dev-1", "--registry", R, *LOC],
        ["devices", "configs", "list", "dev-1", "--registry", R, *LOC, "--limit", "1"],
        ["devices", "configs", "list", "dev-1", "--registry", R, *LOC, "--limit", "500"],
        ["devices", "states", "list", "dev-1", "--registry", R, *LOC, "--limit", "500"],
        ["devices", "configs", "describe", "dev-1", "--registry", R, *LOC, "--format", "json"],
        ["devices", "states", "list", "dev-1", "--registry", R, *LOC],
        ["devices", "describe", "nobody", "--registry", R, *LOC],
        ["devices", "describe", f"{reg}/devices/dev-1", "--format", "json"],
        ["devices", "list", "--registry", reg, "--limit", "1"],
        ["devices", "configs", "update", "dev-1", "--registry", R, *LOC, "--config-file", big],
        ["devices", "credentials", "create", "dev-1", "--registry", R, *LOC, "--path", es, "--type", "rsa"],
        ["devices", "credentials", "create", "dev-1", "--registry", R, *LOC, "--path", es, "--type", "es256",
         "--expiration-time", "2001-01-01T00:00:00Z"],
        ["devices", "credentials", "create", "dev-1", "--registry", R, *LOC, "--path", es, "--type", "es256"],
        ["devices", "credentials", "create", "dev-1", "--registry", R, *LOC, "--path", es, "--type", "es256"],
        ["devices", "credentials", "create", "dev-1", "--registry", R, *LOC, "--path", es, "--type", "es256"],
        ["devices", "credentials", "describe", "dev-1", "1", "--registry", R, *LOC],
        ["devices", "update", "dev-2", "--registry", R, *LOC, "--metadata", "a=1,b=2", "--format", "json"],
        ["registries", "update", R, *LOC, "--event-notification-config", "topic=projects/p/topics/e,subfolder=x",
         "--clear-state-pubsub-topic"],
        ["registries", "describe", reg],
        ["registries", "credentials", "create", "--registry", R, *LOC, "--path", ca],
        ["registries", "credentials", "create", "--registry", R, *LOC, "--path", ca],
        ["registries", "credentials", "list", "--registry", R, *LOC],
        ["registries", "credentials", "describe", "0", "--registry", R, *LOC, "--format", "json"],
        ["registries", "credentials", "describe", "3", "--registry", R, *LOC],
        ["devices", "create", "dev-x", "--registry", R, *LOC, "--public-key", f"path={ocert},type=es256-x509"],
        ["devices", "create", "dev-x", "--registry", R, *LOC, "--public-key", f"path={cert},type=es256-x509"],
        ["devices", "delete", "dev-x", "--registry", R, *LOC],
        ["registries", "jit", "--registry", R, *LOC, "--show"],
        ["registries", "jit", "--registry", R, *LOC, "--enable", "--max-devices", "5", "--format", "json"],
        ["registries", "jit", "--registry", R, *LOC, "--disable"],
        ["registries", "jit", "--registry", R, *LOC, "--show", "--format", "json"],
        ["registries", "jit", "--registry", "nope", *LOC, "--show"],
        ["registries", "signers", "list", "--registry", R, *LOC],
        ["registries", "signers", "add", "--label", "factory-1", "--path", es, "--registry", R, *LOC],
        ["registries", "signers", "add", "--label", "factory-1", "--path", es, "--registry", R, *LOC],
        ["registries", "signers", "add", "--label", "factory-2", "--path", ca, "--registry", R, *LOC],
        ["registries", "signers", "list", "--registry", R, *LOC],
        ["registries", "signers", "delete", "0", "--registry", R, *LOC, "--format", "json"],
        ["registries", "signers", "delete", "0", "--registry", R, *LOC],
        ["registries", "crls", "add", "--path", es, "--registry", R, *LOC],
        ["registries", "crls", "list", "--registry", R, *LOC, "--format", "json"],
        ["registries", "crls", "delete", "3", "--registry", R, *LOC],
        ["registries", "credentials", "delete", "0", "--registry", R, *LOC],
        ["registries", "credentials", "delete", "0", "--registry", R, *LOC],
        ["registries", "create", "reg-ca", *LOC, "--public-key-path", other, "--format", "json"],
        ["registries", "list", *LOC],
        ["registries", "list", "--format", "json"],
        ["registries", "delete", "reg-ca", *LOC],
        ["registries", "delete", R, *LOC],
        ["devices", "delete", "dev-1", "--registry", R, *LOC],
        ["devices", "delete", "dev-2", "--registry", R, *LOC],
        ["registries", "delete", R, *LOC, "--format", "json"],
        ["registries", "list", "--format", "json"],
    ]


TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
NUMID = re.compile(r"(numId[\"']?:? ?'?\"?|devices/|\(numId )\d+")


def normal(text):
    text = TIME.sub("TIME", text)
    return NUMID.sub(lambda m: m.group(1) + "N", text)


def test_same_output_and_exit_codes_either_way(api, tmp_path):
    from test_registry_cli import PKI
    pki = PKI(tmp_path / "pki")
    keys = tmp_path / "keys"
    keys.mkdir()
    r = run_tool("key", "generate", "--store", keys / "k.lks", "--key", "es", "--alg", "ES256")
    assert r.rc == 0, r
    (keys / "es.pem").write_text(r.out)
    local_db = tmp_path / "local.db"
    for i, args in enumerate(script(keys, pki)):
        here = run_tool("--db", local_db, *args)
        there = remote(api, *args)
        # The one line only a database file gives: that it was created.
        here_err = re.sub(r"latchkey: created registry database .*\n", "", here.err)
        assert (here.rc, normal(here.out), normal(here_err)) == (there.rc, normal(there.out), normal(there.err)), \
            (i, args, here, there)
    assert os.path.exists(local_db)


def test_manifest_import_either_way(api, tmp_path):
    """devices import --manifest through devices:importManifest prints and exits as on the file:
    a dry run, an import, the same manifest again (every device exists), and a tampered file."""
    from test_manifest_import import ca_cert, device_line, leaf, pem, write_manifest
    from cryptography.hazmat.primitives.asymmetric import ec
    ca, ca_key = ca_cert("Customer Root CA")
    signer = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ca.pem").write_text(pem(ca))
    (tmp_path / "signer.pem").write_text(pem(signer.public_key()))
    lines = []
    for i in range(3):
        c, pub = leaf(f"m-{i}", ca, ca_key)
        lines.append(device_line(f"m-{i}", c, pub))
    good = write_manifest(tmp_path / "batch-1.jsonl", lines, signer)
    bad = write_manifest(tmp_path / "batch-2.jsonl", lines, signer, batch="batch-2",
                         alter=lambda d: d.replace(b"m-1", b"m-9"))
    local_db = tmp_path / "local.db"
    imp = ["devices", "import", "--registry", R, *LOC, "--manifest"]
    steps = [
        ["registries", "create", R, *LOC],
        ["registries", "credentials", "create", "--registry", R, *LOC, "--path", tmp_path / "ca.pem"],
        ["registries", "signers", "add", "--label", "acme", "--path", tmp_path / "signer.pem", "--registry", R, *LOC],
        [*imp, good, "--dry-run"],
        [*imp, good, "--dry-run", "--format", "json"],
        [*imp, good],
        [*imp, good, "--format", "json"],
        [*imp, bad],
        [*imp, tmp_path / "missing.jsonl"],
        ["devices", "list", "--registry", R, *LOC],
    ]
    rcs = []
    for i, args in enumerate(steps):
        here = run_tool("--db", local_db, *args)
        there = remote(api, *args)
        here_err = re.sub(r"latchkey: created registry database .*\n", "", here.err)
        assert (here.rc, normal(here.out), normal(here_err)) == (there.rc, normal(there.out), normal(there.err)), \
            (i, args, here, there)
        rcs.append(there.rc)
    assert rcs == [0, 0, 0, 0, 0, 0, 20, 15, FILE_NOT_FOUND, 0], rcs
    assert there.out.count("m-") == 3


# ---- what --api adds, refused where it must be ----

def test_api_and_db_exclude_each_other(api, tmp_path):
    r = run_tool("--db", tmp_path / "x.db", "--api", api.url, "registries", "list")
    assert r.rc == USAGE and "--api and --db exclude each other" in r.err, r
    r = run_tool("registries", "list", "--db", tmp_path / "x.db", "--api", api.url, "--key-file", api.key)
    assert r.rc == USAGE and "exclude each other" in r.err, r
    r = run_tool("registries", "list", env={"LATCHKEY_DB": str(tmp_path / "x.db"), "LATCHKEY_API": api.url})
    assert r.rc == USAGE and "both set" in r.err, r
    # an option outranks the environment
    r = run_tool("--api", api.url, "--key-file", api.key, "--ca-file", api.ca.ca, "registries", "list",
                 "--format", "json", env={"LATCHKEY_DB": str(tmp_path / "x.db")})
    assert r.rc == 0 and json.loads(r.out) == [], r
    assert not (tmp_path / "x.db").exists()


def test_environment_and_config_file(api, tmp_path):
    env = {"LATCHKEY_API": api.url, "LATCHKEY_KEY_FILE": str(api.key), "LATCHKEY_CA_FILE": str(api.ca.ca),
           "LATCHKEY_DB": ""}
    assert run_tool("registries", "create", R, *LOC, env=env).rc == 0
    conf = tmp_path / "latchkey.conf"
    conf.write_text(f"# the laptop's settings\napi {api.url}\nkey_file {api.key}\n  ca_file   {api.ca.ca}  \n")
    env = {"LATCHKEY_CONFIG": str(conf), "LATCHKEY_DB": ""}
    r = run_tool("registries", "list", "--format", "json", env=env)
    assert r.rc == 0 and [x["id"] for x in json.loads(r.out)] == [R], r
    # --api given: the key file and the CA still come from the config file
    conf.write_text(f"key_file {api.key}\nca_file {api.ca.ca}\n")
    r = run_tool("--api", api.url, "registries", "list", "--format", "json", env=env)
    assert r.rc == 0 and [x["id"] for x in json.loads(r.out)] == [R], r
    conf.write_text(f"api {api.url}\nkey-file {api.key}\n")
    r = run_tool("registries", "list", env=env)
    assert r.rc == USAGE and "line 2" in r.err, r
    r = run_tool("registries", "list", env={"LATCHKEY_CONFIG": str(tmp_path / "none.conf"), "LATCHKEY_DB": ""})
    assert r.rc == FILE_NOT_FOUND, r


def test_plain_http_only_to_loopback(api, tmp_path):
    r = run_tool("--api", "http://example.com:8080", "--key-file", api.key, "registries", "list")
    assert r.rc == USAGE and "https://" in r.err, r
    r = run_tool("--api", "ftp://127.0.0.1/", "--key-file", api.key, "registries", "list")
    assert r.rc == USAGE, r
    # a host name that merely starts like a loopback address is not one
    r = run_tool("--api", "http://127.0.0.1.example.com:8080", "--key-file", api.key, "registries", "list")
    assert r.rc == USAGE and "https://" in r.err, r


def test_key_file_refusals(api, tmp_path):
    r = run_tool("--api", api.url, "registries", "list", env={"LATCHKEY_KEY_FILE": ""})
    assert r.rc == USAGE and "--key-file" in r.err, r
    r = remote(api, "registries", "list", key=tmp_path / "missing.json")
    assert r.rc == FILE_NOT_FOUND, r
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = remote(api, "registries", "list", key=bad)
    assert r.rc == FILE_UNUSABLE and "key file" in r.err, r
    k = key_text(api)
    k["private_key"] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    bad.write_text(json.dumps(k))
    r = remote(api, "registries", "list", key=bad)
    assert r.rc == FILE_UNUSABLE and "RSA private key" in r.err, r
    # a key the registry does not know: the API refuses it
    k = key_text(api)
    k["private_key_id"] = "0" * 40
    bad.write_text(json.dumps(k))
    r = remote(api, "registries", "list", *LOC, key=bad)
    assert r.rc == REFUSED and "UNAUTHENTICATED" not in r.out, r


def test_another_projects_registry_is_refused(api):
    assert remote(api, "registries", "create", R, *LOC).rc == 0
    r = remote(api, "registries", "describe", R, "--project", "proj-other", "--region", L)
    assert r.rc == REFUSED and "LK_ERR_REFUSED" in r.err, r


def test_server_of_another_ca_and_no_server(api, tmp_path):
    other = tool_api.TestCA(tmp_path / "other-ca")
    r = run_tool("--api", api.url, "--key-file", api.key, "--ca-file", other.ca, "registries", "list", *LOC)
    assert r.rc == TLS and "LK_ERR_TLS" in r.err, r
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = run_tool("--api", f"https://127.0.0.1:{port}", "--key-file", api.key, "--ca-file", api.ca.ca,
                 "registries", "list", *LOC)
    assert r.rc == NETWORK and "did not answer" in r.err, r


def test_db_only_commands_refuse(api, tmp_path):
    f = tmp_path / "devices.jsonl"
    f.write_text("{}\n")
    for args in (("devices", "import", f, "--registry", R, *LOC), ("registries", "import", f, *LOC),
                 ("backends", "list")):
        r = remote(api, *args)
        assert r.rc == USAGE and "works only with --db" in r.err, (args, r)


def test_token_never_printed(api, tmp_path):
    """Whatever happens, no part of the signed token reaches the output."""
    outs = []
    for args in (("registries", "list", *LOC), ("registries", "describe", "nope", *LOC),
                 ("registries", "describe", R, "--project", "proj-other", "--region", L)):
        r = remote(api, *args)
        outs.append(r.out + r.err)
    log = (api.dir / "latchkeyd.log").read_text()
    for text in outs + [log]:
        assert not re.search(r"eyJ[A-Za-z0-9_-]{10,}\.", text), text
    assert "BEGIN PRIVATE KEY" not in "".join(outs)


# ---- what latchkeyd gained for the tool ----

def api_get(d, path):
    """GET on the API with a self-signed JWT made by PyJWT (independent of the tool)."""
    import ssl
    import time
    import urllib.error
    import urllib.request
    import jwt
    k = key_text(d)
    now = int(time.time())
    tok = jwt.encode({"iss": k["client_email"], "sub": k["client_email"], "iat": now, "exp": now + 600,
                      "scope": "https://www.googleapis.com/auth/cloud-platform"},
                     k["private_key"], algorithm="RS256", headers={"kid": k["private_key_id"]})
    req = urllib.request.Request(d.url + path, headers={"Authorization": f"Bearer {tok}"})
    ctx = ssl.create_default_context(cafile=str(d.ca.ca))
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_every_location_in_pages_and_error_reasons(api):
    made = []
    for loc in ("us-central1", "europe-west1", "asia-east1"):
        for reg in ("a-reg", "b-reg", "c-reg"):
            assert remote(api, "registries", "create", reg, "--project", P, "--region", loc).rc == 0
            made.append((loc, reg))
    seen, token = [], None
    for _ in range(20):
        st, j = api_get(api, f"/v1/projects/{P}/locations/-/registries?pageSize=2" +
                        (f"&pageToken={token}" if token else ""))
        assert st == 200, j
        seen += [(x["name"].split("/")[3], x["id"]) for x in j["deviceRegistries"]]
        token = j.get("nextPageToken")
        if not token:
            break
    assert sorted(seen) == sorted(made) and len(seen) == len(set(seen))
    st, j = api_get(api, f"/v1/projects/{P}/locations/-/registries?pageToken=not-one")
    assert st == 400 and j["error"]["status"] == "INVALID_ARGUMENT", j
    # '-' is a wildcard for listing only
    st, j = api_get(api, f"/v1/projects/{P}/locations/-/registries/a-reg")
    assert st == 400, j
    # a registry refusal names its lk_err in Google's ErrorInfo
    st, j = api_get(api, f"/v1/projects/{P}/locations/us-central1/registries/nope")
    assert st == 404 and j["error"]["details"] == [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                                    "reason": "LK_ERR_REG_NOT_FOUND", "domain": "latchkey"}], j
    # refusals of the request itself carry none
    st, j = api_get(api, f"/v1/projects/{P}/locations/us-central1/registries?pageSize=x")
    assert st == 400 and "details" not in j["error"], j


def test_commands_send_interrupted(api):
    """Interrupted while latchkeyd waits for a broker (there is none): the tool
    says so and exits 130; latchkeyd decides the command itself, and stays up."""
    import signal
    import time
    assert remote(api, "registries", "create", R, *LOC).rc == 0
    assert remote(api, "devices", "create", "dev-1", "--registry", R, *LOC).rc == 0
    p = subprocess.Popen([str(BIN / "latchkey"), "--api", api.url, "--key-file", str(api.key), "--ca-file",
                          str(api.ca.ca), "devices", "commands", "send", "dev-1", "--registry", R, *LOC,
                          "--command-data", "x"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=10)
    assert p.returncode == 130 and "interrupted" in err and out == "", (out, err)
    assert time.monotonic() - t0 < 3
    assert remote(api, "devices", "describe", "dev-1", "--registry", R, *LOC).rc == 0
