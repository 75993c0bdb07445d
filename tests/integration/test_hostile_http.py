"""Hostile HTTP clients against latchkeyd: admin API, device bridge and console (docs/robustness.md).

test_api_robustness.py, test_api_auth.py, test_api_roles.py, test_console_auth.py and
test_http_bridge.py already prove most refusals; this suite adds what they leave out:
slowloris (headers trickled so that no single read stalls), path tricks on the device bridge,
double encoding on the admin API, oversized headers and bodies on the device listener, stolen
credentials used where they do not belong (an access token of another daemon or another
project, a device's verified token on another device's path, a key id of one account with
another's signature), and cross-site requests against the console. After each, latchkeyd is
still up and a legitimate client (and a device through the bridge) is still served.
"""
import json
import socket
import ssl
import time

import pytest
import requests

from api_common import (Env, P, device_path, ok, refused, registries_path, registry_path)
from conftest import run_tool
from test_http_bridge import Bridge, error
from plugin_common import make_device

PASSWORD = "correct horse battery staple"


def trickle(sock, data, every, until):
    """Send data a byte at a time, one every `every` seconds; True if the server closed the
    connection before `until` seconds passed (and before data ran out)."""
    deadline = time.time() + until
    for i in range(len(data)):
        if time.time() > deadline:
            return False
        try:
            sock.sendall(data[i:i + 1])
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            return True
        # a close shows as EOF/reset on a read; poll for it without blocking the trickle
        sock.settimeout(every)
        try:
            if sock.recv(4096) == b"":
                return True
        except (socket.timeout, TimeoutError):
            pass
        except (ConnectionResetError, ssl.SSLError, OSError):
            return True
    return False


def tls_to(port, ca):
    ctx = ssl.create_default_context(cafile=str(ca))
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return ctx.wrap_socket(s, server_hostname="127.0.0.1")


def refused_or_closed(send, statuses):
    """send() is answered with one of statuses, or the connection is closed before the client
    has sent it all (the daemon answers and closes as soon as it knows)."""
    try:
        r = send()
    except requests.exceptions.ConnectionError:
        return True
    assert r.status_code in statuses, (r.status_code, r.text[:200])
    return True


# ---- the admin API ----

@pytest.fixture
def slow_env(tmp_path):
    e = Env(tmp_path / "lkd", extra=["--io-timeout", "1", "--request-timeout", "2"])
    yield e
    assert e.daemon.alive(), e.daemon.log_text()[-3000:]
    e.stop()


def test_slowloris_headers_are_cut_off(slow_env):
    """Headers sent a byte at a time, each byte well inside io_timeout (1 s): the request as a
    whole must arrive within request_timeout (2 s), or the connection is closed, with a log
    line that says why; others are served."""
    e = slow_env
    head = (f"GET {registry_path()} HTTP/1.1\r\nHost: x\r\n" + "".join(
        f"X-Pad-{i}: {'p' * 20}\r\n" for i in range(40))).encode()
    s = e.daemon.tls_socket()
    try:
        assert trickle(s, head, 0.4, 15), "a trickled request was held open past its bound"
    finally:
        s.close()
    assert "request_timeout" in e.daemon.log_text()
    ok(e.api.get(registry_path()))
    # a keep-alive connection that answers quickly is not cut: several requests on one
    # connection, spread over more than request_timeout
    c = e.api.conn()
    try:
        for _ in range(4):
            ok(e.api.get(registry_path(), conn=c))
            time.sleep(0.7)
    finally:
        c.close()


def test_slowloris_body_is_cut_off(slow_env):
    e = slow_env
    s = e.daemon.tls_socket()
    try:
        s.sendall(f"POST {registries_path()} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                  f"{e.admin_sa.jwt()}\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"
                  .encode())
        assert trickle(s, b'{"id": "' + b"r" * 380 + b'"}', 0.4, 15), "a trickled body was held open"
    finally:
        s.close()
    r = ok(e.api.get(registries_path()))
    assert [x for x in r.get("deviceRegistries", []) if "rrrr" in x["id"]] == [], r


def test_many_slowloris_connections_do_not_hold_others(slow_env):
    e = slow_env
    socks = []
    try:
        for _ in range(50):
            s = e.daemon.tls_socket()
            s.sendall(b"GET /v1/projects/proj-one HTTP/1.1\r\nX-")
            socks.append(s)
        for _ in range(10):
            ok(e.api.get(registry_path()))
    finally:
        for s in socks:
            s.close()
    ok(e.api.get(registry_path()))


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path / "lkd")
    yield e
    assert e.daemon.alive(), e.daemon.log_text()[-3000:]
    e.stop()


PATHS = [
    "/v1/projects/proj-one/locations/us-central1/registries/reg%252F1",
    "/v1/projects/proj-one/locations/us-central1/registries/%252E%252E",
    "/v1/projects/proj-one/locations/us-central1/registries/reg-1/devices/%252e%252e%252fx",
    "/v1/projects/proj-one/locations/us-central1/registries/reg-1%2500",
    "/v1/projects/proj-one/locations/us-central1/registries/reg-1%u002f",
    "/v1/projects/proj-one/locations/us-central1/registries/reg-1%c0%af",
    "/v1/projects/proj-one/locations/us-central1/registries/reg-1\\..\\reg-1",
    "/v1/projects/proj-one/locations/us-central1/registries/" + "a" * 12000,
    "/v1/projects/proj-one/locations/us-central1/registries/reg-1/devices/" + "%41" * 3000,
    "/" + "../" * 400 + "etc/passwd",
]


def test_double_encoding_and_long_paths(env):
    """Decoded once, segment by segment: what a second decoding would turn into '/', '..' or
    NUL stays a name (and no such name exists); overlong UTF-8 and %u are not decoded."""
    before = env.daemon.dump()
    tok = env.admin_sa.jwt()
    for path in PATHS:
        for method, body in (("GET", None), ("DELETE", None), ("POST", b"{}")):
            r = env.api.call(method, path, raw=body, token=tok)
            assert r.status in (400, 404, 414, 431), (method, path[:100], r)
    assert env.daemon.dump() == before
    ok(env.api.get(registry_path()))


def test_access_token_of_another_daemon_or_project(tmp_path, env):
    """An access token is the daemon's own (in its memory): one issued by another latchkeyd,
    however valid there, is refused here; an access token of another project's admin reaches
    nothing of this project; a token edited by one character is refused."""
    other = Env(tmp_path / "lkd-other")
    try:
        stolen = other.api.access_token()
        assert other.api.get(registry_path(), token=stolen).status in (200, 404)
    finally:
        other.stop()
    refused(env.api.get(registry_path(), token=stolen), "UNAUTHENTICATED")
    theirs = env.as_role("admin", project="proj-two", mode="token")
    tok = theirs.access_token()
    r = env.api.get(registry_path(), token=tok)
    assert r.status in (403, 404) and r.code in ("PERMISSION_DENIED", "NOT_FOUND"), r
    before = env.daemon.dump()
    r = env.api.post(registries_path(), {"id": "stolen"}, token=tok)
    assert r.status in (403, 404), r
    assert env.daemon.dump() == before
    mine = env.api.access_token()
    flipped = mine[:-3] + ("A" if mine[-3] != "A" else "B") + mine[-2:]
    refused(env.api.get(registry_path(), token=flipped), "UNAUTHENTICATED")
    ok(env.api.get(registry_path(), token=mine))


def test_one_accounts_key_id_with_another_accounts_signature(env):
    """kid names account A's key, iss/sub say A, the signature is B's (a valid key of this
    daemon): refused. And B's own valid JWT with A's email is refused too."""
    a = env.as_role("viewer").sa
    b = env.admin_sa
    forged = a.jwt(key=b.private_key)
    refused(env.api.get(registry_path(), token=forged), "UNAUTHENTICATED")
    forged = b.jwt(iss=a.email, sub=a.email)
    refused(env.api.get(registry_path(), token=forged), "UNAUTHENTICATED")
    forged = b.jwt(kid=a.key_id)
    refused(env.api.get(registry_path(), token=forged), "UNAUTHENTICATED")
    ok(env.api.get(registry_path()))


# ---- the console ----

@pytest.fixture
def console(tmp_path):
    e = Env(tmp_path / "lkd")
    r = run_tool("--db", e.daemon.db, "operators", "create", "alice", "--project", P, "--role", "admin",
                 input=PASSWORD + "\n")
    assert r.rc == 0, r
    yield e
    assert e.daemon.alive()
    e.stop()


def signin(e, headers=None, body=None, ctype="application/json"):
    h = {"Content-Type": ctype}
    h.update(headers or {})
    data = body if body is not None else json.dumps({"name": "alice", "password": PASSWORD}).encode()
    return e.anon.raw_request("POST", "/console/api/signin", data, h)


def session(e):
    r = signin(e)
    assert r.status == 200, r
    return r.headers["Set-Cookie"].split(";")[0], r.json["csrf"]


def test_cross_site_requests_against_the_console(console):
    e = console
    cookie, csrf = session(e)
    _, other_csrf = session(e)          # a second session of the same operator
    evil = {"Origin": "https://evil.example", "Referer": "https://evil.example/x", "Cookie": cookie}
    before = e.daemon.dump()
    # a cross-site form POST: the cookie, no CSRF token, a form body
    r = e.anon.raw_request("POST", registries_path(), b"id=evil",
                           {**evil, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status in (400, 403, 415), r
    # the JSON a script could send cross-site (no preflight is ever answered): no token, a
    # made-up one, another session's token, the token with a wrong case
    for token in (None, "x" * 43, other_csrf, csrf.swapcase() if csrf.swapcase() != csrf else csrf + "x"):
        h = {**evil, "Content-Type": "application/json"}
        if token is not None:
            h["X-CSRF-Token"] = token
        for method, path, body in (("POST", registries_path(), b'{"id": "evil"}'),
                                   ("PATCH", registry_path() + "?updateMask=logLevel",
                                    b'{"logLevel": "DEBUG"}'),
                                   ("DELETE", device_path("nobody"), None)):
            r = e.anon.raw_request(method, path, body, h)
            refused(r, "PERMISSION_DENIED", "CSRF")
    # sign-in by a cross-site form (login CSRF) is not taken
    r = signin(e, {"Origin": "https://evil.example"}, b"name=alice&password=x",
               "application/x-www-form-urlencoded")
    assert r.status in (400, 415) and "Set-Cookie" not in r.headers, r
    r = signin(e, {"Origin": "https://evil.example"}, ctype="text/plain")
    assert r.status in (400, 415) and "Set-Cookie" not in r.headers, r
    # a cross-origin read is never allowed to a script: no CORS header, no preflight answer
    r = e.anon.raw_request("GET", registry_path(), None, evil)
    assert "Access-Control-Allow-Origin" not in r.headers, r.headers
    r = e.anon.raw_request("OPTIONS", registries_path(), None,
                           {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in r.headers and r.status >= 400, r
    assert e.daemon.dump() == before
    # the CSRF token of a signed-out session is dead with it
    cookie2, csrf2 = session(e)
    r = e.anon.raw_request("POST", "/console/api/signout", None, {"Cookie": cookie2, "X-CSRF-Token": csrf2})
    assert r.status == 204, r
    r = e.anon.raw_request("POST", registries_path(), b'{"id": "late"}',
                           {"Cookie": cookie2, "X-CSRF-Token": csrf2, "Content-Type": "application/json"})
    assert r.status == 401, r
    # the session itself still works, with its own token
    r = e.anon.raw_request("POST", registries_path(), b'{"id": "mine"}',
                           {"Cookie": cookie, "X-CSRF-Token": csrf, "Content-Type": "application/json"})
    assert r.status == 200, r


# ---- the device bridge ----

@pytest.fixture
def br(tmp_path):
    x = Bridge(tmp_path, extra=["--io-timeout", "1", "--request-timeout", "2", "--max-body", "65536"])
    yield x
    x.stop()


def test_device_bridge_hostile_requests(br):
    d = make_device(br.b, "hb-dev")
    victim = make_device(br.b, "hb-victim")
    t = d.token()
    assert br.event(d.id, b"first", t).status_code == 200     # t is now verified and cached
    # d's verified token on the victim's path
    error(br.event(victim.id, b"x", t), 401, "UNAUTHENTICATED")
    # path tricks on the device listener: never another device, never a 200
    h = {"Authorization": f"Bearer {t}"}
    base = f"https://127.0.0.1:{br.port}/v1/projects/proj-one/locations/us-central1/registries/reg-1/devices"
    for tail in [f"/{victim.id}/..%2F{d.id}:publishEvent", f"/{d.id}%2F..%2F{victim.id}:publishEvent",
                 f"/{d.id}%00:publishEvent", f"/{d.id}%252F:publishEvent", f"/%2E%2E/{d.id}:publishEvent",
                 f"/{d.id}/../{victim.id}:publishEvent", "/" + "d" * 9000 + ":publishEvent",
                 f"/{d.id}:publishEvent%00", f"/{victim.id}%3ApublishEvent"]:
        r = br.session.post(base + tail, data=b'{"binaryData": "eA=="}', headers=h, timeout=20)
        assert r.status_code in (400, 401, 404, 414), (tail[:80], r.status_code, r.text[:200])
    # oversized headers and bodies, malformed JSON
    assert refused_or_closed(lambda: br.session.post(
        br.url(d.id, ":publishEvent"), data=b"{}", headers={**h, "X-Big": "b" * 100000}, timeout=20),
        (400, 413, 431))
    assert refused_or_closed(lambda: br.session.post(
        br.url(d.id, ":publishEvent"), data=b'{"binaryData": "' + b"A" * 200000 + b'"}', headers=h,
        timeout=20), (413,))
    for junk in (b'{"binaryData": "eA=="', b'{"binaryData": [' * 3000, b"\x00" * 100, b'{"binaryData": "\xff"}'):
        r = br.post(d.id, "publishEvent", junk, t)
        assert r.status_code == 400, (junk[:20], r.status_code)
    # slowloris on the device listener
    s = tls_to(br.port, br.d.ca_path)
    try:
        head = (f"POST {br.url(d.id, ':publishEvent')[len(f'https://127.0.0.1:{br.port}'):]} HTTP/1.1\r\n"
                "Host: x\r\n" + "X-Pad: " + "p" * 400 + "\r\n").encode()
        assert trickle(s, head, 0.4, 15), "a trickled request held the device listener"
    finally:
        s.close()
    # still up; the device still publishes, the victim too
    assert br.event(d.id, b"after", t).status_code == 200
    assert br.event(victim.id, b"mine", victim.token()).status_code == 200
