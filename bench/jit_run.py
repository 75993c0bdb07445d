"""The measurements of bench/jit.sh (see there). `setup` makes the registry (TMP/registry.db: a
P-256 CA, JIT on, one registered device) and the certificates and tokens (TMP/jit.json); `run`
connects over plain TCP with a minimal MQTT 3.1.1 client (CONNECT, CONNACK, DISCONNECT) and prints
`name: value` lines."""
import base64
import datetime
import json
import os
import socket
import statistics
import subprocess
import sys
import time

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

E = os.environ
TMP, PROJECT, REGION, REGISTRY, NDEV = E["TMP"], E["PROJECT"], E["REGION"], E["REGISTRY"], int(E["NDEV"])
NOW = datetime.datetime.now(datetime.timezone.utc)


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def cert(cn, key, issuer, issuer_key, ca):
    b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(NOW - datetime.timedelta(hours=1))
         .not_valid_after(NOW + datetime.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                            critical=True)
    return b.sign(issuer_key, hashes.SHA256())


def tool(*args):
    r = subprocess.run([E["TOOL"], "--db", f"{TMP}/registry.db", *args], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"jit_run.py: {' '.join(args[:2])}: {r.stderr.strip()}")
    return r.stdout


def cid(dev):
    return f"projects/{PROJECT}/locations/{REGION}/registries/{REGISTRY}/devices/{dev}"


def claims():
    t = int(time.time())
    return {"iat": t, "exp": t + 3600, "aud": PROJECT}


def setup():
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("bench-jit-ca", ca_key, "bench-jit-ca", ca_key, True)
    with open(f"{TMP}/jit-ca.pem", "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    loc = ["--registry", REGISTRY, "--project", PROJECT, "--region", REGION]
    tool("registries", "create", REGISTRY, "--project", PROJECT, "--region", REGION,
         "--public-key-path", f"{TMP}/jit-ca.pem")
    tool("registries", "jit", *loc, "--enable")
    known = ec.generate_private_key(ec.SECP256R1())
    # a registry with CA certificates takes only certificates signed by one of them
    with open(f"{TMP}/known.pem", "wb") as f:
        f.write(cert("known", known, "bench-jit-ca", ca_key, False).public_bytes(serialization.Encoding.PEM))
    tool("devices", "create", "known", *loc, "--public-key", f"path={TMP}/known.pem,type=es256-x509")
    jit, reg = [], []
    for i in range(NDEV):
        k = ec.generate_private_key(ec.SECP256R1())
        dev = f"jit-{i:06d}"
        der = cert(dev, k, "bench-jit-ca", ca_key, False).public_bytes(serialization.Encoding.DER)
        jit.append([cid(dev), jwt.encode(claims(), k, algorithm="ES256",
                                         headers={"x5c": [base64.b64encode(der).decode()]})])
        c = claims()
        c["jti"] = str(i)  # a fresh token each time: the verified-token cache misses
        reg.append([cid("known"), jwt.encode(c, known, algorithm="ES256")])
    with open(f"{TMP}/jit.json", "w") as f:
        json.dump({"jit": jit, "reg": reg}, f)


def s16(b):
    return len(b).to_bytes(2, "big") + b


def connect_ms(port, client_id, token):
    body = s16(b"MQTT") + bytes([4, 0xC2, 0, 60]) + s16(client_id.encode()) + s16(b"u") + \
        s16(token.encode())
    n, rl = len(body), b""
    while True:
        d, n = n % 128, n // 128
        rl += bytes([d | (0x80 if n else 0)])
        if not n:
            break
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.perf_counter()
    s.sendall(b"\x10" + rl + body)
    got = b""
    while len(got) < 4:
        chunk = s.recv(4 - len(got))
        if not chunk:
            break
        got += chunk
    t = (time.perf_counter() - t0) * 1000.0
    if got[:1] == b"\x20" and len(got) == 4 and got[3] == 0:
        s.sendall(b"\xe0\x00")
    s.close()
    if len(got) != 4 or got[3] != 0:
        sys.exit(f"jit_run.py: {client_id} refused ({got!r})")
    return t


def run():
    port = int(E["PORT"])
    with open(f"{TMP}/jit.json") as f:
        d = json.load(f)
    # the plugin takes logins from its first tick on; the registered device warms the cache
    for _ in range(50):
        try:
            connect_ms(port, *d["reg"][0])
            break
        except SystemExit:
            time.sleep(0.1)
    jit, reg = [], []
    for i in range(NDEV):
        jit.append(connect_ms(port, *d["jit"][i]))
        reg.append(connect_ms(port, *d["reg"][i]))
    mj, mr = statistics.median(jit), statistics.median(reg)
    print(f"jit_first_connect_ms: {mj:.2f}")
    print(f"connect_registered_ms: {mr:.2f}")
    print(f"jit_first_connect_vs_registered: {mj / mr:.2f}")
    print(f"jit: {NDEV} first connections, p90 {sorted(jit)[int(NDEV * 0.9)]:.2f} ms", file=sys.stderr)


if __name__ == "__main__":
    {"setup": setup, "run": run}[sys.argv[1]]()
