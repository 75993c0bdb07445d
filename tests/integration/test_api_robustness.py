"""latchkeyd under bad input and in operation (docs/daemon.md).

Malformed bodies, path tricks, wrong methods, huge headers, slow clients, many connections: each
refused request leaves the registry file unchanged (compared before and after) and the daemon
keeps serving; the fixture asserts it is alive at the end and exits 0 on SIGTERM. Operations:
SIGHUP reloads the certificate (a broken one keeps the old).
"""
import json
import resource
import signal
import socket
import ssl
import time

import pytest
from cryptography import x509

from api_common import (Api, Daemon, Env, device_path, devices_path, env, issue_cert,  # noqa: F401
                        refused, registries_path, registry_path)


def unchanged(env, fn):
    before = env.daemon.dump()
    r = fn()
    assert env.daemon.dump() == before, f"a refused request changed the registry: {r}"
    assert env.daemon.alive()
    return r


def raw_exchange(d: Daemon, data: bytes, timeout=5):
    """Send bytes on a fresh TLS connection; return what comes back until the server closes or
    the timeout (b"" when the server just closes)."""
    s = d.tls_socket(timeout=timeout)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        out = b""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError, ssl.SSLError):
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out:
                head, _, body = out.partition(b"\r\n\r\n")
                clen = [int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")]
                if clen and len(body) >= clen[0]:
                    break
        return out
    finally:
        s.close()


def status_of(raw: bytes):
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.") else None


def control(env):
    r = env.api.get(registry_path())
    assert r.status == 200, r


# ---- bodies ----

@pytest.mark.parametrize("raw,word", [
    (b'{"id": "dev-x"', "Invalid JSON"),
    (b'{"id": "dev-x",}', "Invalid JSON"),
    (b"{'id': 'dev-x'}", "Invalid JSON"),
    (b'["id", "dev-x"]', "object"),
    (b'"dev-x"', ""),
    (b"42", ""),
    (b"null", ""),
    (b'{"id": "dev-x", "id": "dev-y"}', "duplicate"),
    (b'{"id": "dev-x", "metadata": {"a": "1", "a": "2"}}', "duplicate"),
    (b'{"id": "dev-\xff"}', ""),
    (b'{"id": "dev-x"} {"id": "dev-y"}', ""),
    (b"\xef\xbb\xbf{}", ""),
])
def test_malformed_bodies(env, raw, word):
    control(env)
    r = unchanged(env, lambda: env.api.call("POST", devices_path(), raw=raw))
    refused(r, "INVALID_ARGUMENT", word)
    control(env)


def test_body_over_max_body_is_413(tmp_path):
    e = Env(tmp_path / "lkd", extra=["--max-body", "8192"])
    try:
        before = e.daemon.dump()
        body = json.dumps({"id": "dev-big", "metadata": {"k": "v" * 20000}}).encode()
        r = e.api.call("POST", devices_path(), raw=body)
        assert r.status == 413, r
        assert e.daemon.dump() == before
        # under the limit, the same daemon answers
        r = e.api.call("POST", devices_path(), raw=json.dumps({"id": "dev-small"}).encode())
        assert r.status in (200, 401), r
    finally:
        assert e.daemon.alive()
        e.stop()


# ---- paths and methods ----

@pytest.mark.parametrize("path", [
    "/v1/projects/proj-one/locations/us-central1/registries/reg%2F1",
    "/v1/projects/proj-one/locations/us-central1/registries/reg-1%2Fdevices",
    "/v1/projects/proj-one/locations/us-central1/registries/reg-1/devices/%2E%2E",
    "/v1/projects/proj-one/locations/us-central1/registries/reg-1/../reg-1",
    "/v1/projects/proj-one/locations/us-central1/registries/./reg-1",
    "/v1/projects/proj-one/locations/us-central1//registries/reg-1",
    "/v1/projects/proj-one/locations/us-central1/registries/reg-1/",
    "/v1//projects/proj-one/locations/us-central1/registries/reg-1",
    "/v1/projects/proj-one/locations/us-central1/registries/reg%00-1",
    "/v1/projects/proj-one/locations/us-central1/registries/reg-1%00",
    "/v1/projects/proj-one/locations/us-central1/registries/reg-1/devices/dev%2F..%2F..",
    "/v1/projects/proj-one/locations/us-central1/registries/reg-1:",
    "/v1/projects/proj-one/locations/us-central1/registries/:getIamPolicy",
    # ".." once the verb is cut (found by fuzz_rest_path)
    "/v1/projects/proj-one/locations/us-central1/registries/reg-1/devices/..:modifyCloudToDeviceConfig",
    "/v1/projects/proj-one/locations/us-central1/registries/%2E%2E:getIamPolicy",
])
def test_path_tricks(env, path):
    control(env)
    for method, body in (("GET", None), ("DELETE", None), ("PATCH", b"{}"), ("POST", b"{}")):
        r = unchanged(env, lambda: env.api.call(method, path, raw=body))
        assert r.status in (400, 404) and r.code in ("INVALID_ARGUMENT", "NOT_FOUND"), (method, path, r)
    control(env)


def test_path_tricks_never_reach_another_project(env):
    """An encoded '/' cannot smuggle a segment past the project check."""
    r = unchanged(env, lambda: env.api.get("/v1/projects/proj-two%2F..%2Fproj-one/locations/us-central1/"
                                           "registries/reg-1"))
    assert r.status in (400, 403, 404), r


@pytest.mark.parametrize("method,path", [
    ("PUT", registry_path()),
    ("DELETE", registries_path()),
    ("PATCH", registries_path()),
    ("PUT", devices_path()),
    ("GET", registry_path() + ":bindDeviceToGateway"),
    ("DELETE", registry_path() + ":unbindDeviceFromGateway"),
    ("POST", registry_path()),
    ("POST", device_path("dev-1")),
    ("GET", "/v1/projects/proj-one"),
    ("GET", "/v1/projects"),
    ("GET", "/v2/projects/proj-one/locations/us-central1/registries"),
    ("GET", "/index.html"),      # "/" itself redirects to the console (test_console_ui.py)
    ("GET", "/v1/projects/proj-one/locations/us-central1/registries/reg-1/devices/dev-1/configVersions/1"),
])
def test_wrong_methods_and_paths(env, method, path):
    control(env)
    body = b"{}" if method in ("POST", "PATCH", "PUT") else None
    r = unchanged(env, lambda: env.api.call(method, path, raw=body))
    refused(r, "NOT_FOUND")


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "TRACE", "CONNECT", "BREW", "PROPFIND"])
def test_odd_methods(env, method):
    control(env)
    raw = raw_exchange(env.daemon, f"{method} {registry_path()} HTTP/1.1\r\nHost: x\r\n"
                                   f"Authorization: Bearer {env.admin_sa.jwt()}\r\nContent-Length: 0\r\n\r\n"
                                   .encode())
    st = status_of(raw)
    assert st in ((404,) if method in ("HEAD", "OPTIONS") else (400, 405, 501)), raw[:300]
    assert env.daemon.alive()
    control(env)


# ---- framing (request smuggling) ----

def test_framing(env):
    control(env)
    tok = env.admin_sa.jwt()
    head = f"POST {devices_path()} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
    # chunked is a valid framing
    raw = raw_exchange(env.daemon, (head + 'Transfer-Encoding: chunked\r\n\r\n11\r\n{"id": "dev-ch1"}\r\n0\r\n\r\n')
                       .encode())
    assert status_of(raw) == 200, raw[:300]
    before = env.daemon.dump()
    smuggled = f"GET {registry_path()}:getIamPolicy HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n\r\n"
    for framing, body in [
        ('Content-Length: 17\r\nContent-Length: 2\r\n\r\n', '{"id": "dev-cl2"}'),
        ('Content-Length: 2\r\nContent-Length: 17\r\n\r\n', '{"id": "dev-cl3"}'),
        ('Content-Length: 17\r\nContent-Length: 17\r\n\r\n', '{"id": "dev-cl4"}'),
        ('Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n', '11\r\n{"id": "dev-ch5"}\r\n0\r\n\r\n'),
        ('Content-Length: -1\r\n\r\n', '{}'),
        ('Content-Length: 0x11\r\n\r\n', '{"id": "dev-cl6"}'),
    ]:
        raw = raw_exchange(env.daemon, (head + framing + body + smuggled).encode())
        assert status_of(raw) == 400, (framing, raw[:300])
        assert raw.count(b"HTTP/1.1 ") == 1, f"a second request was read after bad framing: {raw[:600]!r}"
        assert env.daemon.dump() == before, framing
    control(env)


# ---- headers and connections ----

def test_huge_headers(env):
    control(env)
    before = env.daemon.dump()
    for size in (20000, 200000, 2000000):
        req = (f"POST {devices_path()} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {env.admin_sa.jwt()}\r\n"
               f"X-Big: {'a' * size}\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n"
               '{"id": "dev-hh1"}').encode()
        raw = raw_exchange(env.daemon, req)
        st = status_of(raw)
        assert st in (None, 400, 413, 431), raw[:300]
        # many headers, each small
        many = "".join(f"X-H{i}: {'b' * 60}\r\n" for i in range(size // 64))
        req = (f"POST {devices_path()} HTTP/1.1\r\nHost: x\r\n{many}Content-Length: 2\r\n\r\n{{}}").encode()
        st = status_of(raw_exchange(env.daemon, req))
        assert st is None or 400 <= st < 500
        assert env.daemon.alive()
    assert env.daemon.dump() == before
    # a long Authorization header is refused like any bad token
    r = env.api.get(registry_path(), token="x" * 12000)
    assert r.status in (400, 401, 413, 431), r
    control(env)


def test_slow_client_does_not_hold_others(env):
    control(env)
    slow = []
    try:
        for i in range(5):
            s = env.daemon.tls_socket()
            s.sendall(f"POST {devices_path()} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                      f"Authorization: Bearer {env.admin_sa.jwt()}\r\n\r\n{{\"id\": ".encode())
            slow.append(s)
        half = env.daemon.tls_socket()
        half.sendall(b"GET /v1/projects/proj-one/locations/us-centr")       # half a request line
        slow.append(half)
        raw = socket.create_connection(("127.0.0.1", env.daemon.port), timeout=5)
        raw.sendall(b"\x16\x03\x01\x00")                                     # half a TLS hello
        slow.append(raw)
        for _ in range(20):
            t0 = time.time()
            control(env)
            assert time.time() - t0 < 1.0, "a slow client held the daemon up"
    finally:
        for s in slow:
            s.close()
    control(env)


def test_stalled_connections_are_closed_after_io_timeout(tmp_path):
    e = Env(tmp_path / "lkd", extra=["--io-timeout", "1"])
    try:
        s = e.daemon.tls_socket()
        s.sendall(f"POST {devices_path()} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{".encode())
        t0 = time.time()
        s.settimeout(10)
        try:
            while s.recv(4096):
                pass
        except (ConnectionResetError, ssl.SSLError):
            pass
        took = time.time() - t0
        assert 0.5 <= took < 5, took
        s.close()
        assert e.anon.get(registry_path()).status == 401
    finally:
        assert e.daemon.alive()
        e.stop()


def test_keep_alive_200_requests_on_one_connection(env):
    conn = env.api.conn()
    try:
        for i in range(200):
            r = env.api.call("GET", registry_path(), conn=conn)
            assert r.status == 200, (i, r)
            if i == 0:
                sock = conn.sock
            assert conn.sock is sock, f"the connection was not kept alive (request {i})"
        # refusals keep it open too
        for i in range(20):
            r = env.api.call("GET", registry_path("nope"), conn=conn)
            assert r.status == 404
            r = env.api.call("GET", registry_path(), token="bad", conn=conn)
            assert r.status == 401
        assert conn.sock is sock
    finally:
        conn.close()


def test_answers_are_not_held_by_nagle(env):
    """An answer goes out in several writes; without TCP_NODELAY the last waits for the client's
    delayed ACK (~40 ms a request on Linux), which made a keep-alive client 100 times slower."""
    tok = env.api.access_token()
    conn = env.api.conn()
    try:
        times = []
        for _ in range(41):
            t0 = time.perf_counter()
            assert env.api.call("GET", registry_path(), token=tok, conn=conn).status == 200
            times.append(time.perf_counter() - t0)
    finally:
        conn.close()
    assert sorted(times)[20] < 0.02, f"median {sorted(times)[20] * 1000:.1f} ms a request on one connection"


def test_a_thousand_idle_connections(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    e = Env(tmp_path / "lkd")          # started after the limit is raised: it inherits it
    idle = []
    try:
        for i in range(1000):
            s = socket.create_connection(("127.0.0.1", e.daemon.port), timeout=10)
            idle.append(s)
            if i % 100 == 0:
                control(e)
        # a handful with TLS done and nothing sent
        for _ in range(20):
            idle.append(e.daemon.tls_socket())
        for _ in range(10):
            t0 = time.time()
            control(e)
            assert time.time() - t0 < 2
        r = e.api.create_device("dev-busy")
        assert r.status == 200, r
    finally:
        for s in idle:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    control(e)
    assert e.daemon.alive()
    e.stop()


# ---- operations ----

def served_serial(d: Daemon):
    s = d.tls_socket()
    try:
        return x509.load_der_x509_certificate(s.getpeercert(binary_form=True)).serial_number
    finally:
        s.close()


def wait_log(d: Daemon, text, timeout=5):
    deadline = time.time() + timeout
    while text not in d.log_text():
        if time.time() > deadline:
            raise AssertionError(f"no {text!r} in the log:\n{d.log_text()[-2000:]}")
        time.sleep(0.05)


def test_sighup_new_certificate(env):
    d = env.daemon
    assert served_serial(d) == d.serial
    kept = d.tls_socket()                        # a connection from before the reload
    new_serial = issue_cert(d.ca, d.ca_key, d.cert_path, d.key_path)
    d.signal(signal.SIGHUP)
    wait_log(d, "certificate reloaded")
    assert served_serial(d) == new_serial
    assert x509.load_der_x509_certificate(kept.getpeercert(binary_form=True)).serial_number == d.serial
    kept.close()
    assert env.anon.get(registry_path()).status == 401     # serving over the new certificate
    d.serial = new_serial


@pytest.mark.parametrize("breakage", ["garbage cert", "empty cert", "key of another cert", "missing key"])
def test_sighup_broken_certificate_keeps_the_old(env, breakage, tmp_path):
    d = env.daemon
    assert served_serial(d) == d.serial
    if breakage == "garbage cert":
        d.cert_path.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    elif breakage == "empty cert":
        d.cert_path.write_text("")
    elif breakage == "key of another cert":
        issue_cert(d.ca, d.ca_key, tmp_path / "other.crt", d.key_path)
    else:
        d.key_path.unlink()
    d.signal(signal.SIGHUP)
    wait_log(d, "keeping the old certificate")
    assert served_serial(d) == d.serial
    assert env.anon.get(registry_path()).status == 401
    # and a good one after that is taken
    new_serial = issue_cert(d.ca, d.ca_key, d.cert_path, d.key_path)
    d.signal(signal.SIGHUP)
    wait_log(d, "certificate reloaded")
    assert served_serial(d) == new_serial


def test_wrong_ca_and_plain_http_are_refused(env, tmp_path):
    from api_common import make_ca
    other_ca = make_ca(tmp_path)[2]
    with pytest.raises(ssl.SSLError):
        s = socket.create_connection(("127.0.0.1", env.daemon.port), timeout=5)
        try:
            env.daemon.ssl_context(other_ca).wrap_socket(s, server_hostname="127.0.0.1")
        finally:
            s.close()
    s = socket.create_connection(("127.0.0.1", env.daemon.port), timeout=5)
    try:
        s.sendall(b"GET /v1/projects HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        try:
            got = s.recv(100)
        except (ConnectionResetError, socket.timeout):
            got = b""
        assert not got.startswith(b"HTTP/1.1 200"), got
    finally:
        s.close()
    assert env.daemon.alive()
    assert env.anon.get(registry_path()).status == 401


def test_sigterm_exits_zero_and_frees_the_port(env):
    port = env.daemon.port
    env.daemon.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    env.daemon.start()                      # the fixture stops it again


def _start_fails(tmp_path, *args):
    import subprocess
    from api_common import DAEMON
    cp = subprocess.run([str(DAEMON), "--registry", str(tmp_path / "r.db"), "--port-file", str(tmp_path / "port"),
                         *map(str, args)], capture_output=True, text=True, timeout=20)
    assert cp.returncode in (1, 2), cp
    assert not (tmp_path / "port").exists()
    return cp.stderr


def test_refuses_to_start_without_safe_tls(tmp_path):
    d = Daemon(tmp_path / "d", start=False)
    err = _start_fails(tmp_path, "--admin-listen", "0.0.0.0:0", "--plain-http", "on")
    assert "loopback" in err, err
    err = _start_fails(tmp_path, "--admin-listen", "127.0.0.1:0")
    assert "tls" in err.lower(), err
    other_key = tmp_path / "other.key"
    issue_cert(d.ca, d.ca_key, tmp_path / "other.crt", other_key)
    _start_fails(tmp_path, "--admin-listen", "127.0.0.1:0", "--tls-cert", d.cert_path, "--tls-key", other_key)
    _start_fails(tmp_path, "--admin-listen", "127.0.0.1:0", "--tls-cert", d.cert_path)


def test_plain_http_on_loopback(tmp_path):
    d = Daemon(tmp_path / "d", tls=False)
    try:
        from api_common import service_account
        api = Api(d, service_account(d, "plain-sa", "viewer"), "token")
        assert api.sa.token_uri.startswith("http://127.0.0.1:")
        r = api.get(registries_path())
        assert r.status == 200, r
        refused(Api(d).get(registries_path()), "UNAUTHENTICATED")
    finally:
        d.stop()
