#!/usr/bin/python3
"""A signed factory manifest of N devices for bench/manifest.sh (and by hand):

    python3 bench/manifest_gen.py DIR N

writes DIR/ca.pem (the customer's root CA, P-256, ten years), DIR/signer.pem
(the manufacturer's public key), DIR/manifest.jsonl and DIR/manifest.jsonl.jws
in the format of docs/provisioning.md: one P-256 key and certificate per
device (CN = device id, signed directly by the CA), made with
python3-cryptography on every core. 100,000 devices take about a minute.
"""
import base64
import datetime
import hashlib
import json
import multiprocessing
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

NOW = datetime.datetime.now(datetime.timezone.utc)
BATCH = "bench-batch"


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def spki(pub):
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def lines(args):
    start, end, ca_pem, ca_key_pem = args
    ca = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, None)
    out = []
    for i in range(start, end):
        did = f"device-{i:07d}"
        pub = ec.generate_private_key(ec.SECP256R1()).public_key()
        c = (x509.CertificateBuilder().subject_name(name(did)).issuer_name(ca.subject).public_key(pub)
             .serial_number(x509.random_serial_number()).not_valid_before(NOW - datetime.timedelta(days=1))
             .not_valid_after(NOW + datetime.timedelta(days=3650))
             .sign(ca_key, hashes.SHA256()))
        out.append(json.dumps({"deviceId": did, "format": "ES256_X509_PEM",
                               "certificate": c.public_bytes(serialization.Encoding.PEM).decode(), "chain": [],
                               "publicKey": spki(pub), "serial": f"SE{i:012d}"}) + "\n")
    return "".join(out)


def main():
    d, n = sys.argv[1], int(sys.argv[2])
    os.makedirs(d, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("bench root CA")).issuer_name(name("bench root CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False),
                         critical=True)
          .sign(ca_key, hashes.SHA256()))
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    ca_key_pem = ca_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
    signer = ec.generate_private_key(ec.SECP256R1())
    head = json.dumps({"latchkeyManifest": 1, "batch": BATCH, "manufacturer": "bench-fab",
                       "created": NOW.strftime("%Y-%m-%dT%H:%M:%SZ")}) + "\n"
    step = 1000
    jobs = [(s, min(s + step, n), ca_pem, ca_key_pem) for s in range(0, n, step)]
    with multiprocessing.Pool() as pool:
        body = "".join(pool.map(lines, jobs))
    data = (head + body).encode()
    with open(os.path.join(d, "manifest.jsonl"), "wb") as f:
        f.write(data)
    der = signer.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    hdr = {"alg": "ES256", "typ": "latchkey-manifest+jws", "kid": hashlib.sha256(der).hexdigest()}
    pay = {"manifest": "manifest.jsonl", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "devices": n,
           "batch": BATCH, "iat": int(NOW.timestamp())}
    si = b64u(json.dumps(hdr).encode()) + "." + b64u(json.dumps(pay).encode())
    r, s = decode_dss_signature(signer.sign(si.encode(), ec.ECDSA(hashes.SHA256())))
    with open(os.path.join(d, "manifest.jsonl.jws"), "w") as f:
        f.write(si + "." + b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big")) + "\n")
    with open(os.path.join(d, "ca.pem"), "wb") as f:
        f.write(ca_pem)
    with open(os.path.join(d, "signer.pem"), "w") as f:
        f.write(spki(signer.public_key()))


if __name__ == "__main__":
    main()
