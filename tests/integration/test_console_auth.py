"""Console sign-in and the audit record (docs/console.md, "Sign-in and accounts", "Audit record").

An operator made with `latchkey operators create` signs in at POST /console/api/signin over TLS
and gets an HttpOnly, Secure, SameSite=Strict cookie and a CSRF token; with the cookie every API
call is the operator's, and every change needs the token in X-CSRF-Token. A wrong password and an
unknown name get the same 401; repeated failures get 429 with Retry-After. Every change -- through
the API as a service account, with the cookie as an operator, or with the tool writing the
database -- is found in `latchkey audit list` and in GET /v1/projects/P/auditRecords with who
made it. Passwords never reach latchkeyd's log.

Each test has its own latchkeyd (the per-address sign-in limit would otherwise carry over).
"""
import json
import os
import pwd
import socket
import sqlite3

import pytest

from api_common import L, P, Env, ok, refused, registries_path, registry_path, devices_path
from conftest import run_tool

PASSWORD = "correct horse battery staple"
OTHER = "an entirely different one"


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path / "lkd")
    r = run_tool("--db", e.daemon.db, "operators", "create", "alice", "--project", P, "--role", "admin",
                 input=PASSWORD + "\n")
    assert r.rc == 0, r
    yield e
    log = e.daemon.log_text()
    e.stop()
    for secret in (PASSWORD, OTHER):
        assert secret not in log, "a password reached latchkeyd's log"


def signin(e, name="alice", password=PASSWORD, headers=None):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return e.anon.raw_request("POST", "/console/api/signin",
                              json.dumps({"name": name, "password": password}).encode(), h)


def cookie_of(r):
    sc = r.headers.get("Set-Cookie")
    assert sc, r
    value = sc.split(";")[0]
    assert value.startswith("lk_session=") and len(value) > 40, sc
    return value, sc


def as_operator(e, cookie, method, path, body=None, csrf=None):
    h = {"Cookie": cookie, "Accept": "application/json"}
    if csrf is not None:
        h["X-CSRF-Token"] = csrf
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    return e.anon.raw_request(method, path, data, h)


def test_signin_session_csrf_signout(env):
    r = signin(env)
    j = ok(r)
    assert (j["name"], j["role"], j["project"]) == ("alice", "admin", P), j
    assert len(j["csrf"]) >= 40, j
    cookie, sc = cookie_of(r)
    flags = [f.strip().lower() for f in sc.split(";")[1:]]
    for flag in ("path=/", "httponly", "secure", "samesite=strict"):
        assert flag in flags, sc

    s = ok(as_operator(env, cookie, "GET", "/console/api/session"))
    assert (s["name"], s["role"], s["project"], s["csrf"]) == ("alice", "admin", P, j["csrf"])
    # the cookie is a principal for the REST API: reads need no token
    ok(as_operator(env, cookie, "GET", registries_path()))

    # a change needs the session's CSRF token
    before = env.daemon.dump()
    body = {"id": "by-alice"}
    refused(as_operator(env, cookie, "POST", registries_path(), body), "PERMISSION_DENIED", "CSRF")
    refused(as_operator(env, cookie, "POST", registries_path(), body, csrf="x" * 43), "PERMISSION_DENIED", "CSRF")
    assert env.daemon.dump() == before
    ok(as_operator(env, cookie, "POST", registries_path(), body, csrf=j["csrf"]))

    # an Authorization header wins over the cookie
    h = {"Cookie": cookie, "Authorization": "Bearer nonsense"}
    assert env.anon.raw_request("GET", registries_path(), None, h).status == 401

    # sign-out is a change too; then the cookie is worth nothing
    assert as_operator(env, cookie, "POST", "/console/api/signout").status == 403
    r = as_operator(env, cookie, "POST", "/console/api/signout", csrf=j["csrf"])
    assert r.status == 204, r
    assert "max-age=0" in r.headers.get("Set-Cookie", "").lower(), r.headers
    refused(as_operator(env, cookie, "GET", "/console/api/session"), "UNAUTHENTICATED")
    refused(as_operator(env, cookie, "GET", registries_path()), "UNAUTHENTICATED")

    # the operator's change is in the audit record, made via the console
    rows = [json.loads(x) for x in env.lk("audit", "list", "--format", "jsonl").out.splitlines()]
    mine = [x for x in rows if x["resource"].endswith("/registries/by-alice")]
    assert mine and mine[0]["actor"] == "operator:alice" and mine[0]["via"] == "console", rows
    assert mine[0]["action"] == "registries.create" and mine[0]["outcome"] == "ok", mine


def test_refusals_look_alike_and_are_rate_limited(env):
    wrong = signin(env, password=OTHER)
    unknown = signin(env, name="mallory", password=OTHER)
    m1 = refused(wrong, "UNAUTHENTICATED")
    m2 = refused(unknown, "UNAUTHENTICATED")
    assert m1 == m2 and "Set-Cookie" not in wrong.headers
    # not JSON: refused before any password is looked at
    r = env.anon.raw_request("POST", "/console/api/signin", b"name=alice&password=x",
                             {"Content-Type": "application/x-www-form-urlencoded"})
    refused(r, "INVALID_ARGUMENT", "application/json")
    # 5 failures per 15 minutes, then 429 -- even with the right password
    for _ in range(3):
        refused(signin(env, password=OTHER), "UNAUTHENTICATED")
    r = signin(env)
    refused(r, "RESOURCE_EXHAUSTED")
    assert int(r.headers["Retry-After"]) > 0, r.headers
    log = env.daemon.log_text()
    assert "wrong password" in log and "no operator of that name" in log and "rate-limited" in log, log


def test_disabled_operator_loses_the_session(env):
    r = signin(env)
    cookie, _ = cookie_of(r)
    ok(as_operator(env, cookie, "GET", registries_path()))
    assert env.lk("operators", "disable", "alice").rc == 0
    refused(as_operator(env, cookie, "GET", registries_path()), "UNAUTHENTICATED", "disabled")
    refused(signin(env), "UNAUTHENTICATED")
    assert env.lk("operators", "enable", "alice").rc == 0
    ok(signin(env))


def test_changes_through_api_and_tool_are_audited(env):
    editor = env.as_role("editor")  # made with the tool: audited too
    # through the API as the admin service account
    ok(env.api.create_device("dev-api"))
    # with the tool, straight into the database
    r = env.lk("devices", "create", "dev-tool", "--registry", "reg-1", "--project", P, "--region", L)
    assert r.rc == 0, r
    me = f"tool:{pwd.getpwuid(os.getuid()).pw_name}@{socket.gethostname()}"
    sa = f"serviceAccount:{env.admin_sa.email}"

    rows = json.loads(env.lk("audit", "list", "--format", "json").out)
    by = {x["resource"].rsplit("/", 1)[-1]: x for x in rows if "/devices/" in x["resource"]}
    assert (by["dev-api"]["actor"], by["dev-api"]["via"], by["dev-api"]["action"]) == (sa, "api", "devices.create")
    assert (by["dev-tool"]["actor"], by["dev-tool"]["via"], by["dev-tool"]["action"]) == (me, "tool",
                                                                                         "devices.create")
    # a patch names its fields in the detail
    ok(env.api.patch(f"{devices_path()}/dev-api", {"blocked": True}, query={"updateMask": "blocked"}))
    rows = json.loads(env.lk("audit", "list", "--format", "json").out)
    assert (rows[0]["action"], rows[0]["detail"]) == ("devices.patch", "updateMask=blocked"), rows[0]
    # reads leave nothing; export is oldest first, csv with a header
    ok(env.api.get(devices_path()))
    assert len(json.loads(env.lk("audit", "list", "--format", "json").out)) == len(rows)
    csv = env.lk("audit", "export", "--format", "csv").out.splitlines()
    assert csv[0].startswith("time,actor,via,action") and "registries.create" in csv[1], csv  # Env made reg-1 first

    # REST: admin only, newest first, a page at a time
    path = f"/v1/projects/{P}/auditRecords"
    refused(editor.get(path), "PERMISSION_DENIED")
    got, token = [], None
    while True:
        j = ok(env.api.get(path, query={"pageSize": 2, **({"pageToken": token} if token else {})}))
        got += j["auditRecords"]
        token = j.get("nextPageToken")
        if not token:
            break
    assert len(got) == len(rows), (got, rows)
    acts = {(x["actor"], x["via"], x["resource"].rsplit("/", 1)[-1]) for x in got}
    assert (sa, "api", "dev-api") in acts and (me, "tool", "dev-tool") in acts, acts
    assert int(got[0]["id"]) > int(got[-1]["id"])


def test_tool_operators(tmp_path):
    db = tmp_path / "r.db"
    pwfile = tmp_path / "pw"
    pwfile.write_text(PASSWORD + "\nsecond line ignored\n")
    lk = lambda *a, **kw: run_tool("--db", db, "operators", *a, **kw)
    assert lk("create", "bob", "--project", P, "--role", "viewer", "--password-file", pwfile).rc == 0
    # never on the command line: there is no such option
    for opt in (["--password", PASSWORD], [f"--password={PASSWORD}"], ["--pass", PASSWORD]):
        r = lk("create", "eve", "--project", P, "--role", "viewer", *opt)
        assert r.rc == 2 and PASSWORD not in r.err + r.out, r  # not taken for --password-file, not echoed
    r = lk("create", "eve", "--project", P, "--role", "viewer", input="too short\n")
    assert r.rc == 15 and "12 to 1024" in r.err, r
    assert lk("create", "bob", "--project", P, "--role", "viewer", input=PASSWORD + "\n").rc == 12
    assert lk("create", "eve", "--project", P, "--role", "owner", input=PASSWORD + "\n").rc == 2
    assert lk("create", "Eve", "--project", P, "--role", "viewer", input=PASSWORD + "\n").rc == 15
    assert lk("passwd", "nobody", input=PASSWORD + "\n").rc == 11
    rows = json.loads(lk("list", "--format", "json").out)
    assert [(x["name"], x["role"], x["disabled"]) for x in rows] == [("bob", "viewer", False)], rows
    con = sqlite3.connect(str(db))
    rec = con.execute("SELECT password FROM operators WHERE name = 'bob'").fetchone()[0]
    con.close()
    assert rec.startswith("scrypt$15$8$1$") and PASSWORD not in rec, rec
    assert lk("delete", "bob").rc == 0 and lk("delete", "bob").rc == 11
    acts = [x["action"] for x in map(json.loads, run_tool("--db", db, "audit", "export").out.splitlines())]
    assert acts == ["operators.create", "operators.delete"], acts
