"""latchkey service-accounts: the tool against real SQLite files, its key files checked with
python3-cryptography and PyJWT (independent of latchkey's own code).

A key file must be exactly what Google's auth libraries read (service-account JSON, PKCS#8
private key), mode 0600 and never written over an existing file; the registry must hold the
public half of the key in the file and nothing else; refusals must write nothing.
"""
import json
import os
import sqlite3
import stat
import subprocess
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import run_tool

P = "proj-one"
URI = "https://latchkey.example/token"
NAME = "api-caller"
EMAIL = f"{NAME}@{P}.iam.latchkey"

# Exit codes (docs/cli.md).
USAGE, KEY_EXISTS = 2, 8
NOT_FOUND, EXISTS, LIMIT, INVALID = 11, 12, 14, 15

FIELDS = {"type", "project_id", "private_key_id", "private_key", "client_email", "client_id",
          "auth_uri", "token_uri", "auth_provider_x509_cert_url", "client_x509_cert_url",
          "universe_domain"}


def lkdb(db, *args, input=None):
    return run_tool("--db", db, *args, input=input)


def ok(r):
    assert r.rc == 0, r
    return r


def refused(r, code, *words):
    assert r.rc == code, r
    assert r.err.startswith("latchkey: "), r
    for w in words:
        assert w.lower() in r.err.lower(), (w, r)


def dump(db):
    if not os.path.exists(db):
        return ""
    cp = subprocess.run(["sqlite3", str(db), ".dump"], capture_output=True, text=True, check=True)
    return cp.stdout


def query(db, sql, *args):
    c = sqlite3.connect(str(db), timeout=10)
    try:
        return c.execute(sql, args).fetchall()
    finally:
        c.close()


def listing(db, *args):
    return json.loads(ok(lkdb(db, "service-accounts", "list", "--format", "json", *args)).out)


def create(db, keyfile, name=NAME, role="editor", project=P):
    return lkdb(db, "service-accounts", "create", name, "--project", project, "--role", role,
                "--token-uri", URI, "--key-file", keyfile)


def check_key_file(path, email=EMAIL, project=P):
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    kf = json.loads(open(path).read())
    assert set(kf) == FIELDS
    assert kf["type"] == "service_account"
    assert kf["project_id"] == project
    assert kf["client_email"] == email
    assert kf["token_uri"] == URI and kf["auth_uri"] == URI
    assert kf["auth_provider_x509_cert_url"] == "" and kf["client_x509_cert_url"] == ""
    assert kf["universe_domain"] == "googleapis.com"
    kid = kf["private_key_id"]
    assert len(kid) == 40 and all(c in "0123456789abcdef" for c in kid)
    assert len(kf["client_id"]) == 21 and kf["client_id"].isdigit() and kf["client_id"][0] != "0"
    assert kf["private_key"].startswith("-----BEGIN PRIVATE KEY-----\n")
    assert kf["private_key"].endswith("-----END PRIVATE KEY-----\n")
    key = serialization.load_pem_private_key(kf["private_key"].encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    return kf, key


def public_pem(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def test_create_key_file_and_registry(tmp_path):
    db, kfile = tmp_path / "r.db", tmp_path / "key.json"
    r = ok(create(db, kfile))
    assert EMAIL in r.out and "editor" in r.out
    assert "only copy of the private key" in r.err
    kf, key = check_key_file(kfile)
    # A JWT as Google's libraries make it, signed with the file's key by PyJWT.
    now = int(time.time())
    token = jwt.encode({"iss": EMAIL, "sub": EMAIL, "aud": "https://cloudiot.googleapis.com/",
                        "iat": now, "exp": now + 3600}, kf["private_key"], algorithm="RS256",
                       headers={"kid": kf["private_key_id"]})
    assert jwt.get_unverified_header(token)["kid"] == kf["private_key_id"]
    # The registry holds the public half of exactly this key, and no private key.
    rows = listing(db)
    assert len(rows) == 1
    row = rows[0]
    assert row["email"] == EMAIL and row["project"] == P and row["name"] == NAME
    assert row["role"] == "editor" and row["keyId"] == kf["private_key_id"]
    assert row["disabled"] is False
    assert row["publicKeyPem"] == public_pem(key)
    jwt.decode(token, row["publicKeyPem"], algorithms=["RS256"],
               audience="https://cloudiot.googleapis.com/")
    assert "PRIVATE" not in dump(db)
    # The text listing.
    out = ok(lkdb(db, "service-accounts", "list")).out
    assert "EMAIL" in out.splitlines()[0] and kf["private_key_id"] in out and "ENABLED" in out


def test_key_file_on_stdout_and_second_key(tmp_path):
    db = tmp_path / "r.db"
    r = ok(lkdb(db, "service-accounts", "create", NAME, "--project", P, "--role",
                "roles/cloudiot.viewer", "--token-uri", URI))
    kf = json.loads(r.out)
    assert set(kf) == FIELDS and "Created service account" in r.err
    r2 = ok(lkdb(db, "service-accounts", "keys", "create", NAME, "--project", P, "--token-uri",
                 URI, "--format", "json", "--key-file", tmp_path / "k2.json"))
    summary = json.loads(r2.out)
    assert summary["email"] == EMAIL and summary["keyFile"] == str(tmp_path / "k2.json")
    kf2, key2 = check_key_file(tmp_path / "k2.json")
    assert summary["keyId"] == kf2["private_key_id"] != kf["private_key_id"]
    assert kf2["client_id"] != kf["client_id"]
    rows = listing(db)
    # Keys are listed by creation second, then key id: two made in the same
    # second come in key-id order, which is random.
    assert sorted(x["keyId"] for x in rows) == sorted([kf["private_key_id"], kf2["private_key_id"]])
    assert all(x["role"] == "viewer" for x in rows)
    by_id = {x["keyId"]: x for x in rows}
    assert by_id[kf2["private_key_id"]]["publicKeyPem"] == public_pem(key2)


def test_disable_enable_delete(tmp_path):
    db, kfile = tmp_path / "r.db", tmp_path / "key.json"
    ok(create(db, kfile, role="device-controller"))
    kid = json.loads(open(kfile).read())["private_key_id"]
    assert ok(lkdb(db, "service-accounts", "keys", "disable", kid)).out == f"Disabled key [{kid}].\n"
    assert listing(db)[0]["disabled"] is True
    assert "DISABLED" in ok(lkdb(db, "service-accounts", "list")).out
    ok(lkdb(db, "service-accounts", "keys", "enable", kid))
    assert listing(db)[0]["disabled"] is False
    assert listing(db)[0]["role"] == "deviceController"
    ok(lkdb(db, "service-accounts", "keys", "delete", kid))
    rows = listing(db)
    assert len(rows) == 1 and rows[0]["keyId"] is None  # the account stays, without keys
    refused(lkdb(db, "service-accounts", "keys", "delete", kid), NOT_FOUND, "does not exist")
    refused(lkdb(db, "service-accounts", "keys", "enable", kid), NOT_FOUND, "does not exist")
    assert ok(lkdb(db, "service-accounts", "delete", NAME, "--project", P)).out == \
        f"Deleted service account [{EMAIL}].\n"
    assert listing(db) == []
    refused(lkdb(db, "service-accounts", "delete", NAME, "--project", P), NOT_FOUND)
    # Deleting an account deletes its keys.
    ok(create(db, tmp_path / "again.json"))
    ok(lkdb(db, "service-accounts", "delete", NAME, "--project", P, "--format", "json"))
    assert query(db, "SELECT count(*) FROM service_account_keys") == [(0,)]


def test_list_by_project(tmp_path):
    db = tmp_path / "r.db"
    ok(create(db, tmp_path / "a.json", name="zz-caller"))
    ok(create(db, tmp_path / "b.json", name="aa-caller", project="proj-two", role="admin"))
    assert [x["email"] for x in listing(db)] == ["zz-caller@proj-one.iam.latchkey",
                                                 "aa-caller@proj-two.iam.latchkey"]
    assert [x["role"] for x in listing(db, "--project", "proj-two")] == ["admin"]
    assert listing(db, "--project", "nobody-here") == []


def test_refusals_write_nothing(tmp_path):
    db, kfile = tmp_path / "r.db", tmp_path / "key.json"
    refused(lkdb(db, "service-accounts", "list"), NOT_FOUND, "does not exist")  # no database yet
    ok(create(db, kfile))
    kid = json.loads(open(kfile).read())["private_key_id"]
    before = dump(db)
    original = open(kfile).read()

    # an existing key file: never overwritten, nothing registered
    refused(create(db, kfile, name="other-caller"), KEY_EXISTS, "exists already")
    assert open(kfile).read() == original
    link = tmp_path / "link.json"
    os.symlink(tmp_path / "nowhere.json", link)
    refused(create(db, link, name="other-caller"), KEY_EXISTS)
    assert not os.path.exists(tmp_path / "nowhere.json")
    # a taken name: the new key file is removed again
    refused(create(db, tmp_path / "k2.json"), EXISTS, "exists already")
    assert not os.path.exists(tmp_path / "k2.json")
    # keys create for an account that does not exist
    refused(lkdb(db, "service-accounts", "keys", "create", "nobody-here", "--project", P,
                 "--token-uri", URI, "--key-file", tmp_path / "k3.json"), NOT_FOUND, "does not exist")
    assert not os.path.exists(tmp_path / "k3.json")
    # invalid names, projects, key ids
    for bad in ["short", "1abcdef", "abcdef-", "Abcdefg", "a" * 31, "abc_def"]:
        refused(create(db, tmp_path / "k4.json", name=bad), INVALID, "service account name")
    refused(create(db, tmp_path / "k4.json", project="Bad-Project"), INVALID, "project")
    for bad in ["xyz", kid.upper(), kid + "0"]:
        refused(lkdb(db, "service-accounts", "keys", "disable", bad), INVALID, "key id")
    assert not os.path.exists(tmp_path / "k4.json")
    # usage
    refused(create(db, tmp_path / "k5.json", role="owner"), USAGE, "unknown role")
    refused(lkdb(db, "service-accounts", "create", "abcdefg", "--project", P, "--token-uri", URI),
            USAGE, "--role")
    refused(lkdb(db, "service-accounts", "create", "abcdefg", "--project", P, "--role", "viewer"),
            USAGE, "--token-uri")
    for uri in ["ftp://x/token", "https://x/a b", 'https://x/"', "https://x/\\"]:
        refused(lkdb(db, "service-accounts", "create", "abcdefg", "--project", P, "--role",
                     "viewer", "--token-uri", uri), USAGE, "--token-uri")
    refused(lkdb(db, "service-accounts", "create", "abcdefg", "--role", "viewer", "--token-uri",
                 URI), USAGE, "--project")
    refused(lkdb(db, "service-accounts", "keys", "create", NAME, "--project", P, "--role", "admin",
                 "--token-uri", URI), USAGE, "--role")
    refused(lkdb(db, "service-accounts", "keys", "disable", kid, "--token-uri", URI), USAGE)
    refused(lkdb(db, "service-accounts", "list", "--registry", str(db)), USAGE, "--db FILE")
    refused(lkdb(db, "service-accounts", "keys", "disable"), USAGE, "KEY_ID")
    refused(lkdb(db, "service-accounts", "keys", "rotate", kid), USAGE, "unknown command")
    refused(lkdb(db, "service-accounts", "frobnicate"), USAGE, "unknown command")
    assert not os.path.exists(tmp_path / "k5.json")
    assert dump(db) == before


def test_key_limit(tmp_path):
    db = tmp_path / "r.db"
    ok(create(db, tmp_path / "k0.json"))
    for i in range(1, 10):
        ok(lkdb(db, "service-accounts", "keys", "create", NAME, "--project", P, "--token-uri", URI,
                "--key-file", tmp_path / f"k{i}.json"))
    before = dump(db)
    refused(lkdb(db, "service-accounts", "keys", "create", NAME, "--project", P, "--token-uri",
                 URI, "--key-file", tmp_path / "k10.json"), LIMIT, "at most 10")
    assert not os.path.exists(tmp_path / "k10.json")
    assert dump(db) == before


def test_help():
    r = ok(run_tool("service-accounts", "--help"))
    assert "keys create" in r.out and "--token-uri" in r.out
    assert "service-accounts" in run_tool("--help").out
    assert ok(run_tool("service-accounts", "create", "--help")).out.startswith("usage:")


def test_key_file_before_the_group_is_refused(tmp_path):
    """`latchkey --key-file OUT service-accounts create ...`: before the group
    --key-file is the admin API's key file; taken silently, the new private key
    went to standard output instead of OUT."""
    db, kfile = tmp_path / "g.db", tmp_path / "key.json"
    ok(lkdb(db, "service-accounts", "create", "first-caller", "--project", P, "--role", "admin",
            "--token-uri", URI, "--key-file", tmp_path / "first.json"))
    before = dump(db)
    r = run_tool("--key-file", kfile, "--db", db, "service-accounts", "create", NAME, "--project", P,
                 "--role", "editor", "--token-uri", URI)
    refused(r, USAGE, "--key-file OUT after")
    assert "PRIVATE KEY" not in r.out and "PRIVATE KEY" not in r.err
    assert not kfile.exists() and dump(db) == before
