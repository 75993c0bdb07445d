"""The hostile side of bench/flood.sh: one flood of one kind against the broker's TLS port, as
fast as THREADS threads of one process go, until SIGTERM; then prints "ATTEMPTS" (connections
made) on standard output.

    python3 bench/flood.py KIND PORT CA THREADS [TOKEN CLIENT_ID]

KIND (docs/robustness.md, "Floods"):
  tcp_idle       plain TCP connections held open without a byte (up to 800 at once; the oldest
                 closed), the socket a slowloris costs
  tls_garbage    a TLS handshake, then 2 KB of random bytes
  malformed      a TLS handshake, then a CONNECT with a reserved flag set (a valid client id)
  oversized      a TLS handshake, then a CONNECT with a 65,535-byte password
  bad_signature  a TLS handshake, then a well-formed token for the real device CLIENT_ID signed
                 by a key that is not the device's (3,000 different ones, made before the
                 flood starts), so that the broker must check a signature each time
  unknown_device a TLS handshake, then a well-formed token for a device that does not exist
  takeover       a TLS handshake, then the device's own valid TOKEN as CLIENT_ID, again and
                 again: two clients taking one session from each other
Each connection waits for the broker's answer (or close) for at most 2 s. FLOOD_SRC in the
environment: the source address to connect from (flood.sh's firewalled run).
"""
import os
import signal
import socket
import ssl
import sys
import threading
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from mqtt_wire import connect_packet  # noqa: E402  (the wire as the hostile tests write it)

KIND, PORT, CA, THREADS = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
TOKEN = sys.argv[5] if len(sys.argv) > 5 else ""
CID = sys.argv[6] if len(sys.argv) > 6 else "projects/p/locations/l/registries/r/devices/d"
HOST = "127.0.0.1"
SRC = (os.environ["FLOOD_SRC"], 0) if os.environ.get("FLOOD_SRC") else None   # the flooder's own address
stop = threading.Event()
count = [0] * THREADS
STRANGER = ec.generate_private_key(ec.SECP256R1())
FORGED_N = 3000
PROJECT = CID.split("/")[1]


def forged_token(n):
    """A well-formed ES256 token for PROJECT signed by a stranger's key (PyJWT: no signer of our own)."""
    now = int(time.time())
    return jwt.encode({"iat": now - (n % 600), "exp": now + 3600 + n, "aud": PROJECT}, STRANGER,
                      algorithm="ES256").encode()


FORGED = []


def payload(i, n):
    if KIND == "tls_garbage":
        return os.urandom(2048)
    if KIND == "malformed":
        return connect_packet(CID, TOKEN.encode() or b"x", flags=0xC3)
    if KIND == "oversized":
        return connect_packet(CID, b"A" * 65535)
    if KIND == "bad_signature":
        return connect_packet(CID, FORGED[(i * 7919 + n) % len(FORGED)])
    if KIND == "unknown_device":
        return connect_packet(CID.rsplit("/", 1)[0] + f"/nobody-{i}-{n}", FORGED[n % len(FORGED)])
    if KIND == "takeover":
        return connect_packet(CID, TOKEN.encode())
    raise SystemExit(f"flood.py: unknown kind {KIND}")


def tls_flood(i):
    ctx = ssl.create_default_context(cafile=CA)
    ctx.check_hostname = False
    n = 0
    while not stop.is_set():
        n += 1
        try:
            with socket.create_connection((HOST, PORT), timeout=2, source_address=SRC) as raw:
                with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                    s.sendall(payload(i, n))
                    try:
                        s.recv(16)
                    except (socket.timeout, TimeoutError):
                        pass
            count[i] += 1
        except (OSError, ssl.SSLError):
            count[i] += 1
            time.sleep(0.001)


def idle_flood(i):
    held = []
    while not stop.is_set():
        try:
            held.append(socket.create_connection((HOST, PORT), timeout=2, source_address=SRC))
            count[i] += 1
        except OSError:
            time.sleep(0.01)
        if len(held) > 800 // THREADS:
            held.pop(0).close()
        else:
            time.sleep(0.002)
    for s in held:
        s.close()


def main():
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    target = idle_flood if KIND == "tcp_idle" else tls_flood
    if KIND in ("bad_signature", "unknown_device"):
        # made before the flood starts (the attacker's signing is not what is measured);
        # every one different, so that no cache in the broker can know them
        FORGED.extend(forged_token(n) for n in range(FORGED_N))
    if KIND != "tcp_idle":
        payload(0, 0)       # an unknown kind fails now, not in a thread
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()
    print(f"flood.py: {KIND}: flooding with {THREADS} threads", file=sys.stderr, flush=True)
    while not stop.is_set():
        stop.wait(0.2)
    for t in threads:
        t.join(5)
    print(sum(count), flush=True)


if __name__ == "__main__":
    main()
