"""Hostile MQTT clients against the broker with latchkey's plugin (docs/robustness.md).

What test_plugin_auth.py, test_plugin_attacks.py and test_broker_limits.py already prove is not
repeated here; this suite adds the raw-wire attacks: CONNECT packets built by hand over TLS
(bad lengths, protocol names and levels, flags, truncation, a second CONNECT), each carrying a
VALID token and client id so that any parsing slip would let it in; random bytes before and
after the TLS handshake; passwords, usernames and client ids at MQTT's 65,535-byte limit; a
device's valid, already verified token presented as another device; and two clients fighting
over one client id. After every attack the broker is still running and a legitimate device
connects and publishes (its QoS 1 event acknowledged).
"""
import os
import socket
import ssl
import threading
import time

import pytest

from mqtt_wire import connect_packet, varint
from plugin_common import (CONNACK_NOT_AUTHORISED, PROJECT, assert_refused, close, connack,
                           connect, ensure_registry, log_line, make_device, publish, start_broker)

CONNACK_BAD_PROTOCOL = 1


@pytest.fixture(scope="module")
def hb(tmp_path_factory):
    b = start_broker(tmp_path_factory, "hostile")
    yield b
    assert b.running(), "the broker died:\n" + b.log_text()[-3000:] + b.stderr_text()
    b.stop()


@pytest.fixture(scope="module")
def legit(hb):
    return make_device(hb, "legit")


@pytest.fixture(scope="module")
def victim(hb):
    return make_device(hb, "victim")


def still_serving(b, d):
    """The broker runs, and device d connects over TLS and gets its QoS 1 event acknowledged."""
    assert b.running(), b.log_text()[-3000:] + b.stderr_text()
    c = connect(b, d.client_id, d.token(), tls=True)
    try:
        info = publish(c, d.topic("events"), b"still here", qos=1)
        assert info.is_published(), "no PUBACK for a legitimate event"
    finally:
        close(c)


# ---- the wire ----

def tls_socket(b, timeout=5):
    ctx = ssl.create_default_context(cafile=str(b.ca_path))
    s = socket.create_connection((b.host, b.tls_port), timeout=timeout)
    return ctx.wrap_socket(s, server_hostname="127.0.0.1")


def exchange(b, data, wait=3.0, tls=True):
    """Send data on a new connection; (bytes received, closed by the broker?) after at most wait s."""
    s = tls_socket(b) if tls else socket.create_connection((b.host, b.tls_port), timeout=5)
    out, closed = b"", False
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            return out, True
        s.settimeout(0.2)
        deadline = time.time() + wait
        while time.time() < deadline:
            try:
                chunk = s.recv(4096)
            except (socket.timeout, TimeoutError):
                continue
            except (ConnectionResetError, ssl.SSLError, OSError):
                closed = True
                break
            if not chunk:
                closed = True
                break
            out += chunk
    finally:
        s.close()
    return out, closed


def connack_rc(data):
    """The return code of a CONNACK at the start of data, or None when there is none."""
    if len(data) >= 4 and data[0] == 0x20 and data[1] == 2:
        return data[3]
    return None


def assert_not_in(data, closed, why):
    rc = connack_rc(data)
    assert rc != 0, f"{why}: CONNACK 0 (accepted)"
    assert closed or rc is not None or data == b"", f"{why}: {data[:60]!r}"


# ---- malformed CONNECTs, each with a valid client id and token ----

def _malformed(cid, tok):
    good = connect_packet(cid, tok)
    return {
        "protocol name MQTX": connect_packet(cid, tok, name=b"MQTX"),
        "protocol name empty": connect_packet(cid, tok, name=b""),
        "protocol level 9": connect_packet(cid, tok, level=9),
        "protocol level 0": connect_packet(cid, tok, level=0),
        "reserved connect flag": connect_packet(cid, tok, flags=0xC3),
        "password flag without username": connect_packet(cid, tok, username=None, flags=0x42),
        "password flag without password": connect_packet(cid, None, flags=0xC2),
        "will qos 3": connect_packet(cid, tok, flags=0xDA),
        "will flag without will fields": connect_packet(cid, tok, flags=0xC6),
        "fixed header flags set": connect_packet(cid, tok, header=0x11),
        "remaining length in 5 bytes": b"\x10\xff\xff\xff\xff\x7f" + good[4:],
        "remaining length shorter than the packet": connect_packet(cid, tok, length=varint(12)),
        "client id longer than the packet": good[:2] + good[2:12] + b"\xff\xff" + good[14:],
        "username invalid utf-8": connect_packet(cid, tok, username=b"\xc3\x28\xff"),
        "client id with a nul": connect_packet(cid.encode() + b"\x00x", tok),
        "publish before connect": b"\x30\x0b\x00\x03a/b" + b"payload" + good,
        "mqtt5 properties longer than the packet": connect_packet(cid, tok, level=5,
                                                                  props=b"\xff\xff\xff\x7f"),
        "zero remaining length": b"\x10\x00",
    }


CASES = list(_malformed("c", "t").keys())


@pytest.mark.parametrize("case", CASES)
def test_malformed_connect_is_refused_and_the_broker_survives(hb, legit, case):
    pkt = _malformed(legit.client_id, legit.token())[case]
    data, closed = exchange(hb, pkt)
    assert_not_in(data, closed, case)
    still_serving(hb, legit)


def test_truncated_connect_is_never_accepted(hb, legit):
    """A CONNECT cut anywhere is never acted on: the broker waits for the rest (Mosquitto holds
    such a socket, test_broker_limits.py), sends nothing and takes the next client."""
    pkt = connect_packet(legit.client_id, legit.token())
    socks = []
    try:
        for cut in (1, 2, 5, 12, len(pkt) // 2, len(pkt) - 1):
            s = tls_socket(hb)
            s.sendall(pkt[:cut])
            socks.append(s)
        still_serving(hb, legit)
        for s in socks:
            s.settimeout(0.3)
            try:
                got = s.recv(16)
            except (socket.timeout, TimeoutError):
                got = None
            assert got is None or connack_rc(got) != 0, got
    finally:
        for s in socks:
            s.close()
    still_serving(hb, legit)


def test_second_connect_on_a_connection_closes_it(hb, legit):
    """MQTT allows one CONNECT a connection: the second is a protocol error, not a re-login."""
    other = make_device(hb, "second-connect")
    pkt = connect_packet(legit.client_id, legit.token()) + connect_packet(other.client_id, other.token())
    data, closed = exchange(hb, pkt)
    assert connack_rc(data) == 0, data[:20]
    assert data.count(b"\x20\x02") == 1, f"two CONNACKs: {data!r}"
    assert closed, "the second CONNECT did not close the connection"
    still_serving(hb, legit)


# ---- random bytes ----

@pytest.mark.parametrize("what", ["random 1 KB", "random 64 KB", "connect byte then random",
                                  "0xff stream"])
def test_random_bytes_after_tls(hb, legit, what):
    r = os.urandom
    data = {"random 1 KB": r(1024), "random 64 KB": r(65536),
            "connect byte then random": b"\x10" + r(4096), "0xff stream": b"\xff" * 32768}[what]
    got, closed = exchange(hb, data)
    assert connack_rc(got) in (None, CONNACK_BAD_PROTOCOL), got[:20]
    assert connack_rc(got) != 0
    still_serving(hb, legit)


def test_random_bytes_instead_of_tls(hb, legit):
    for data in (os.urandom(512), b"\x16\x03\x01\xff\xff" + os.urandom(2000), b"GET / HTTP/1.1\r\n\r\n"):
        got, closed = exchange(hb, data, wait=2, tls=False)
        assert connack_rc(got) is None and closed, got[:40]
    still_serving(hb, legit)


# ---- MQTT's length limits ----

def test_password_of_65535_bytes(hb, legit):
    """A password at MQTT's largest (65,535 bytes), whatever it holds, is refused as too
    large before anything is parsed or checked; never logged."""
    tok = legit.token()
    pad = legit.keys[0].sign({"iat": int(time.time()), "exp": int(time.time()) + 3600,
                              "aud": PROJECT, "pad": "x" * 48990})
    for password in ("A" * 65535, (tok + "." * 65535)[:65535], pad):
        assert len(password) <= 65535
        assert_refused(hb, legit.client_id, password, "LK_ERR_TOKEN_TOO_LARGE", tls=True)
    # the same over the wire by hand: 65,535 bytes exactly in the length field
    data, closed = exchange(hb, connect_packet(legit.client_id, b"B" * 65535))
    assert connack_rc(data) == CONNACK_NOT_AUTHORISED, data[:20]
    still_serving(hb, legit)


def test_username_and_client_id_of_65535_bytes(hb, legit):
    tok = legit.token()
    data, _ = exchange(hb, connect_packet(legit.client_id, tok, username=b"u" * 65535))
    # the username is ignored (IoT Core's rule): a valid token still gets in
    assert connack_rc(data) == 0, data[:20]
    long_cid = legit.client_id + "/" + "d" * (65535 - len(legit.client_id) - 1)
    mark = len(hb.log_text())
    data, closed = exchange(hb, connect_packet(long_cid, tok))
    assert connack_rc(data) != 0 and (closed or connack_rc(data) is not None), data[:20]
    # one refusal line, the id cut short in it
    line = log_line(hb, "refused", "ddd...", after=mark)
    assert line is not None and len(line) < 1000, line
    still_serving(hb, legit)


@pytest.mark.parametrize("cid", [
    "projects/proj-one/locations/us-central1/registries/reg-1/devices/legit/",
    "projects/proj-one/locations/us-central1/registries/reg-1/devices/legit/../legit",
    "projects/proj-one/locations/us-central1/registries/reg-1/devices/LEGIT",
    "projects//locations/us-central1/registries/reg-1/devices/legit",
    "projects/proj-one/locations/us-central1/registries/reg-1/devices/legit\u00a0",
    "projects/proj-one/locations/us-central1/registries/reg-1/devices/%6cegit",
    "projects/proj-one/locations/us-central1/registries/reg-1/devices/+",
    "projects/proj-one/locations/us-central1/registries/reg-1/devices/#",
    " projects/proj-one/locations/us-central1/registries/reg-1/devices/legit",
])
def test_odd_client_ids_with_a_valid_token(hb, legit, cid):
    """Near misses of a device's own path, each with that device's valid token: refused."""
    assert connack(hb, cid, legit.token(), tls=True) != 0
    still_serving(hb, legit)


# ---- one device's valid token as another device ----

def test_a_verified_token_of_one_device_does_not_open_another(hb, legit, victim):
    """The token is verified (and cached) for legit first; as victim, or as a device of the same
    id in another registry or project, it is refused: a cache hit needs the same device and key."""
    tok = legit.token()
    c = connect(hb, legit.client_id, tok, tls=True)
    close(c)
    assert_refused(hb, victim.client_id, tok, ["LK_ERR_TOKEN_SIGNATURE", "signature"], tls=True)
    ensure_registry(hb, "reg-2")
    twin = make_device(hb, "legit", registry="reg-2")
    assert_refused(hb, twin.client_id, tok, ["LK_ERR_TOKEN_SIGNATURE", "signature"], tls=True)
    ensure_registry(hb, "reg-1", project="proj-two")
    far = make_device(hb, "legit", project="proj-two")
    assert_refused(hb, far.client_id, tok, ["LK_ERR_TOKEN_AUDIENCE", "LK_ERR_TOKEN_SIGNATURE",
                                            "LK_ERR_TOKEN_CLAIM"], tls=True)
    # ... even with the right audience for that project: the key is still the wrong one
    tok2 = legit.token(aud="proj-two")
    assert_refused(hb, far.client_id, tok2, ["LK_ERR_TOKEN_SIGNATURE", "signature"], tls=True)
    # and the victim, with its own token, is not locked out by any of it
    assert connack(hb, victim.client_id, victim.token(), tls=True) == 0
    still_serving(hb, legit)


# ---- two clients fighting over one client id ----

def test_two_clients_fighting_over_one_id(hb, legit):
    """Two holders of valid tokens for one device take the session from each other in a loop
    (each reconnecting at once): the broker stays up, the per-device connect limit is the
    only thing that ends the fight, and other devices keep connecting and publishing."""
    fighter = make_device(hb, "fighter")
    stop = threading.Event()
    counts = [0, 0]
    errors = []

    def fight(i):
        tok = fighter.token()
        while not stop.is_set():
            try:
                s = tls_socket(hb, timeout=3)
                s.sendall(connect_packet(fighter.client_id, tok))
                got = s.recv(4)
                if connack_rc(got) == 0:
                    counts[i] += 1
                s.close()
            except (OSError, ssl.SSLError):
                pass
            except Exception as e:      # pragma: no cover - reported below
                errors.append(e)

    threads = [threading.Thread(target=fight, args=(i,), daemon=True) for i in (0, 1)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            still_serving(hb, legit)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not errors, errors
    assert sum(counts) >= 2, counts
    still_serving(hb, legit)
    # after the fight the id is usable again
    assert connack(hb, fighter.client_id, fighter.token(), tls=True) == 0
