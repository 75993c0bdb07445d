"""The factory (issue 17, docs/provisioning.md): `latchkey ca`, `latchkey key
csr` and `latchkey provision`, checked by independent code: python3-cryptography
reads every certificate, request and CRL, PyJWT and cryptography verify the
manifest's signature, and the manifest is read line by line against the
published schema. SoftHSM2 tokens stand in for the secure elements.
"""
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import BIN, SOFTHSM_MODULE, SOFTHSM_UTIL, SoftHSM, tool_argv

PEM_CERT = re.compile(r"\A-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n\Z")
PEM_PUB = re.compile(r"\A-----BEGIN PUBLIC KEY-----\n[A-Za-z0-9+/=\n]+-----END PUBLIC KEY-----\n\Z")
ID = re.compile(r"\A[A-Za-z][A-Za-z0-9\-._~+%]{2,254}\Z")


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def load_cert(path):
    return x509.load_pem_x509_certificate(open(path, "rb").read())


def verify_by(cert, issuer):
    """cert's signature checked with issuer's key (cryptography, not OpenSSL's verify)."""
    pub = issuer.public_key()
    if isinstance(pub, ec.EllipticCurvePublicKey):
        pub.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    else:
        pub.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)


@pytest.fixture
def hsm(tmp_path):
    # In /dev/shm when there is one: SoftHSM2's file store rewrites its object
    # files on every change, and on a loaded disk that is most of the time.
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    base = Path(tempfile.mkdtemp(prefix="lk-provision-", dir=shm))
    try:
        yield make_hsm(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def make_hsm(base):
    h = SoftHSM(base / "hsm", label="factory")
    subprocess.run([SOFTHSM_UTIL, "--init-token", "--free", "--label", "cakeys", "--so-pin", "5678",
                    "--pin", "1234"], check=True, capture_output=True, env={**os.environ, **h.env})
    h.env = {**h.env, "LATCHKEY_PKCS11_PIN": "1234"}
    return h


def p11(token, obj):
    return f"pkcs11:token={token};object={obj}?module-path={SOFTHSM_MODULE}"


def ca_init(lk, d, *extra, env=None):
    r = lk("ca", "init", "--ca", d, *extra, env=env)
    assert r.rc == 0, r
    return x509.load_pem_x509_certificate(r.out.encode())


def test_ca_in_files_root_intermediate_device(lk, tmp_path):
    root = ca_init(lk, tmp_path / "root")
    assert oct(os.stat(tmp_path / "root" / "ca.key").st_mode & 0o777) == "0o600"
    bc = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = root.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)
    assert 29 * 365 < (root.not_valid_after - root.not_valid_before).days <= 30 * 366
    verify_by(root, root)

    r = lk("ca", "intermediate", "--ca", tmp_path / "inter", "--parent", tmp_path / "root")
    assert r.rc == 0, r
    inter = load_cert(tmp_path / "inter" / "ca.pem")
    verify_by(inter, root)
    bc = inter.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    aki = inter.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    # An intermediate signs devices, not further intermediates (pathlen 0).
    r = lk("ca", "intermediate", "--ca", tmp_path / "inter2", "--parent", tmp_path / "inter")
    assert r.rc == 9 and "intermediate" in r.err, r
    # A CA directory is never overwritten.
    r = lk("ca", "init", "--ca", tmp_path / "root")
    assert r.rc == 8 and "holds a CA already" in r.err, r

    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "d.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    r = lk("ca", "issue", "--ca", tmp_path / "inter", "--public-key", tmp_path / "d.pub", "--device-id", "dev-1",
           "--out", tmp_path / "d.pem")
    assert r.rc == 0, r
    dev = load_cert(tmp_path / "d.pem")
    verify_by(dev, inter)
    assert [a.value for a in dev.subject] == ["dev-1"]
    assert dev.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "dev-1"
    bc = dev.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = dev.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert dev.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    assert dev.public_key().public_numbers() == key.public_key().public_numbers()
    assert dev.serial_number.bit_length() >= 128 and dev.serial_number != inter.serial_number
    # A key latchkey cannot use is refused.
    weak = rsa.generate_private_key(65537, 1024)
    (tmp_path / "weak.pub").write_bytes(weak.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    r = lk("ca", "issue", "--ca", tmp_path / "inter", "--public-key", tmp_path / "weak.pub", "--device-id", "dev-2")
    assert r.rc == 9 and "P-256 nor RSA" in r.err, r
    r = lk("ca", "issue", "--ca", tmp_path / "inter", "--public-key", tmp_path / "d.pub", "--device-id", "1bad")
    assert r.rc == 2 and "not a valid device id" in r.err, r
    # A CA key that others can read is not used.
    os.chmod(tmp_path / "inter" / "ca.key", 0o640)
    r = lk("ca", "issue", "--ca", tmp_path / "inter", "--public-key", tmp_path / "d.pub", "--device-id", "dev-3")
    assert r.rc == 24 and "chmod 600" in r.err, r


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_ca_key_in_token(lk, tmp_path, hsm, alg):
    root = ca_init(lk, tmp_path / "root", "--alg", alg, "--key", p11("cakeys", "root-" + alg), env=hsm.env)
    verify_by(root, root)
    assert not (tmp_path / "root" / "ca.key").exists()
    ref = (tmp_path / "root" / "ca.keyref").read_text()
    assert ref.startswith("pkcs11:token=cakeys;object=root-") and "1234" not in ref
    r = lk("ca", "intermediate", "--ca", tmp_path / "inter", "--parent", tmp_path / "root", env=hsm.env)
    assert r.rc == 0, r
    verify_by(load_cert(tmp_path / "inter" / "ca.pem"), root)
    # The key stays in the token: without the PIN the CA cannot sign.
    env = {**hsm.env, "LATCHKEY_PKCS11_PIN": ""}
    r = lk("ca", "intermediate", "--ca", tmp_path / "inter2", "--parent", tmp_path / "root", env={
        k: v for k, v in env.items() if k != "LATCHKEY_PKCS11_PIN"})
    assert r.rc != 0, r
    # A PIN is never written into the CA directory.
    r = lk("ca", "init", "--ca", tmp_path / "r2", "--key", p11("cakeys", "r2") + "&pin-value=1234", env=hsm.env)
    assert r.rc == 2 and "may not hold a PIN" in r.err, r


def test_csr_signed_in_token_and_refusals(lk, tmp_path, hsm):
    ca_init(lk, tmp_path / "ca")
    inter = load_cert(tmp_path / "ca" / "ca.pem")
    key = p11("factory", "dev-7")
    r = lk("key", "generate", "--key", key, env=hsm.env)
    assert r.rc == 0, r
    r = lk("key", "csr", "--key", key, "--device-id", "dev-7", "--out", tmp_path / "d.csr", env=hsm.env)
    assert r.rc == 0, r
    csr = x509.load_pem_x509_csr((tmp_path / "d.csr").read_bytes())
    assert csr.is_signature_valid and [a.value for a in csr.subject] == ["dev-7"]
    r = lk("ca", "issue", "--ca", tmp_path / "ca", "--csr", tmp_path / "d.csr", "--device-id", "dev-7")
    assert r.rc == 0, r
    cert = x509.load_pem_x509_certificate(r.out.encode())
    verify_by(cert, inter)
    assert cert.public_key().public_numbers() == csr.public_key().public_numbers()

    # The CN must be the device id.
    r = lk("ca", "issue", "--ca", tmp_path / "ca", "--csr", tmp_path / "d.csr", "--device-id", "dev-8")
    assert r.rc == 9 and "exactly one CN" in r.err, r
    # Two CNs: refused even when one of them is the id.
    other = ec.generate_private_key(ec.SECP256R1())
    two = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "dev-7"), x509.NameAttribute(NameOID.COMMON_NAME, "dev-9")])) \
        .sign(other, hashes.SHA256())
    (tmp_path / "two.csr").write_bytes(two.public_bytes(serialization.Encoding.PEM))
    r = lk("ca", "issue", "--ca", tmp_path / "ca", "--csr", tmp_path / "two.csr", "--device-id", "dev-7")
    assert r.rc == 9 and "exactly one CN" in r.err, r
    # A request whose signature does not verify: the key's owner did not ask.
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01
    bad = x509.load_der_x509_csr(bytes(der))
    (tmp_path / "bad.csr").write_bytes(bad.public_bytes(serialization.Encoding.PEM))
    r = lk("ca", "issue", "--ca", tmp_path / "ca", "--csr", tmp_path / "bad.csr", "--device-id", "dev-7")
    assert r.rc == 9 and "signature does not verify" in r.err, r
    assert len((tmp_path / "ca" / "index.tsv").read_text().splitlines()) == 1


def test_revoke_and_crl(lk, tmp_path):
    root = ca_init(lk, tmp_path / "ca")
    serials = []
    for i in range(3):
        key = ec.generate_private_key(ec.SECP256R1())
        (tmp_path / "p.pub").write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        r = lk("ca", "issue", "--ca", tmp_path / "ca", "--public-key", tmp_path / "p.pub", "--device-id",
               f"dev-{i}", "--out", tmp_path / f"d{i}.pem")
        assert r.rc == 0, r
        serials.append(load_cert(tmp_path / f"d{i}.pem").serial_number)
    r = lk("ca", "revoke", "--ca", tmp_path / "ca", "--cert", tmp_path / "d0.pem", "--reason", "keyCompromise")
    assert r.rc == 0, r
    r = lk("ca", "revoke", "--ca", tmp_path / "ca", "--serial", format(serials[2], "x"))
    assert r.rc == 0, r
    r = lk("ca", "revoke", "--ca", tmp_path / "ca", "--serial", format(serials[2], "x"))
    assert r.rc == 8 and "revoked already" in r.err, r
    r = lk("ca", "revoke", "--ca", tmp_path / "ca", "--serial", "abcdef")
    assert r.rc == 3 and "never issued" in r.err, r
    r = lk("ca", "revoke", "--ca", tmp_path / "ca", "--serial", "1", "--reason", "certificateHold")
    assert r.rc == 2, r
    # A certificate of another CA is not this CA's to revoke.
    ca_init(lk, tmp_path / "other")
    r = lk("ca", "issue", "--ca", tmp_path / "other", "--public-key", tmp_path / "p.pub", "--device-id", "dev-0",
           "--out", tmp_path / "o.pem")
    assert r.rc == 0, r
    r = lk("ca", "revoke", "--ca", tmp_path / "ca", "--cert", tmp_path / "o.pem")
    assert r.rc == 9 and "not signed by this CA" in r.err, r

    for number in (1, 2):
        r = lk("ca", "crl", "--ca", tmp_path / "ca", "--out", tmp_path / "crl.pem", "--days", "7")
        assert r.rc == 0, r
        crl = x509.load_pem_x509_crl((tmp_path / "crl.pem").read_bytes())
        assert crl.is_signature_valid(root.public_key())
        assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number
        assert crl.issuer == root.subject
        assert 6 <= (crl.next_update - crl.last_update).days <= 7
    assert sorted(e.serial_number for e in crl) == sorted([serials[0], serials[2]])
    e0 = crl.get_revoked_certificate_by_serial_number(serials[0])
    assert e0.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    e2 = crl.get_revoked_certificate_by_serial_number(serials[2])
    assert len(e2.extensions) == 0  # unspecified: no reason code (RFC 5280)
    assert crl.get_revoked_certificate_by_serial_number(serials[1]) is None


HEADER_KEYS = {"latchkeyManifest", "batch", "manufacturer", "created"}
DEVICE_KEYS = {"deviceId", "format", "certificate", "chain", "publicKey", "serial"}


def check_manifest(path, batch, chain_pems, ca_cert, fmt="ES256_X509_PEM"):
    """The manifest against docs/provisioning.md's schema, line by line."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    lines = raw.split(b"\n")[:-1]
    header = json.loads(lines[0])
    assert set(header) == HEADER_KEYS and header["latchkeyManifest"] == 1 and header["batch"] == batch
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", header["created"])
    devices = []
    for line in lines[1:]:
        assert line and len(line) + 1 <= 65536
        d = json.loads(line.decode("utf-8"))
        assert set(d) == DEVICE_KEYS, d.keys()
        assert ID.match(d["deviceId"]) and d["format"] == fmt
        assert PEM_CERT.match(d["certificate"]) and PEM_PUB.match(d["publicKey"])
        assert d["chain"] == chain_pems
        assert re.fullmatch(r"[ -~]{1,16}", d["serial"])
        cert = x509.load_pem_x509_certificate(d["certificate"].encode())
        assert [a.value for a in cert.subject] == [d["deviceId"]]
        assert cert.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo).decode() == d["publicKey"]
        verify_by(cert, ca_cert)
        devices.append(d)
    return raw, devices


def check_jws(path, raw, signer, batch, ndev, pub=None):
    """The detached JWS checked twice: by PyJWT and by hand with cryptography."""
    token = (path.parent / (path.name + ".jws")).read_text()
    assert token.endswith("\n") and token.count("\n") == 1
    token = token.strip()
    pub = pub or signer.public_key()
    spki = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    h, p, s = token.split(".")
    header = json.loads(b64d(h))
    assert header == {"alg": "ES256", "typ": "latchkey-manifest+jws", "kid": hashlib.sha256(spki).hexdigest()}
    payload = json.loads(jwt.api_jws.PyJWS().decode(token, pub, algorithms=["ES256"]))
    sig = b64d(s)
    assert len(sig) == 64
    pub.verify(encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")),
               f"{h}.{p}".encode(), ec.ECDSA(hashes.SHA256()))
    assert set(payload) == {"manifest", "sha256", "size", "devices", "batch", "iat"}
    assert payload["manifest"] == path.name and payload["batch"] == batch
    assert payload["sha256"] == hashlib.sha256(raw).hexdigest() and payload["size"] == len(raw)
    assert payload["devices"] == ndev and abs(payload["iat"] - time.time()) < 300
    return payload


def token_labels(lk, hsm):
    r = lk("key", "list", "--key", p11("factory", "x").replace(";object=x", ""), env=hsm.env)
    assert r.rc == 0, r
    return [line.split("\t")[0] for line in r.out.splitlines()]


def provision_args(tmp_path, batch, out, *ids):
    return ["provision", "--ca", tmp_path / "inter", "--token", p11("factory", "%s"), "--batch", batch,
            *ids, "--signer", tmp_path / "signer.pem", "--manufacturer", "ACME Fab 1", "--out", out]


@pytest.fixture
def factory(lk, tmp_path, hsm):
    ca_init(lk, tmp_path / "root")
    r = lk("ca", "intermediate", "--ca", tmp_path / "inter", "--parent", tmp_path / "root")
    assert r.rc == 0, r
    signer = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "signer.pem").write_bytes(signer.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return signer


def test_batch_manifest_and_signature(lk, tmp_path, hsm, factory):
    out = tmp_path / "batch-1.jsonl"
    r = lk(*provision_args(tmp_path, "batch-1", out, "--prefix", "dev-", "--count", 20), env=hsm.env)
    assert r.rc == 0, r
    inter_pem = (tmp_path / "inter" / "ca.pem").read_text()
    raw, devices = check_manifest(out, "batch-1", [inter_pem], load_cert(tmp_path / "inter" / "ca.pem"))
    assert [d["deviceId"] for d in devices] == [f"dev-{i:02d}" for i in range(1, 21)]
    check_jws(out, raw, factory, "batch-1", 20)
    # Each key is in the token under its device id, and the token's is the manifest's.
    assert sorted(token_labels(lk, hsm)) == [d["deviceId"] for d in devices]
    r = lk("key", "public", "--key", p11("factory", "dev-05"), env=hsm.env)
    assert r.rc == 0 and r.out == devices[4]["publicKey"], r
    # Every line's serial is the token's serialNumber.
    assert len({d["serial"] for d in devices}) == 1
    # The CA's index holds the 20 certificates.
    assert len((tmp_path / "inter" / "index.tsv").read_text().splitlines()) == 20

    # A re-run of a complete batch adds nothing.
    r = lk(*provision_args(tmp_path, "batch-1", out, "--prefix", "dev-", "--count", 20), env=hsm.env)
    assert r.rc == 0 and "0 new" in r.out, r
    assert out.read_bytes() == raw
    # Another batch may not continue this file.
    r = lk(*provision_args(tmp_path, "batch-2", out, "--prefix", "dev-", "--count", 20), env=hsm.env)
    assert r.rc == 9 and "holds batch 'batch-1'" in r.err, r
    # A device list with a repeat is refused before anything is made.
    (tmp_path / "ids").write_text("dev-a1\ndev-a2\ndev-a1\n")
    r = lk(*provision_args(tmp_path, "batch-3", tmp_path / "b3.jsonl", "--ids", tmp_path / "ids"), env=hsm.env)
    assert r.rc == 2 and "twice" in r.err and not (tmp_path / "b3.jsonl").exists(), r


def test_interrupted_batch_resumes_without_duplicates(lk, tmp_path, hsm, factory):
    N = 60  # devices in the batch (2-digit ids)
    out = tmp_path / "b.jsonl"
    env = {**os.environ, **hsm.env}
    proc = subprocess.Popen(tool_argv(*provision_args(tmp_path, "batch-9", out, "--prefix", "d-", "--count", N)),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 5):
        time.sleep(0.02)
    # Held still mid-batch (on a quiet machine the batch would otherwise be done before the
    # next step starts); the signals wait for SIGCONT.
    proc.send_signal(signal.SIGSTOP)
    assert out.read_bytes().count(b"\n") < N + 1, "the batch finished before it could be stopped"
    # One run at a time on a manifest.
    r = lk(*provision_args(tmp_path, "batch-9", out, "--prefix", "d-", "--count", N), env=hsm.env)
    assert r.rc == 4 and "another 'latchkey provision'" in r.err, r
    # SIGTERM (or ^C): the device being made is finished, then the run stops.
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)
    err = proc.communicate(timeout=60)[1].decode()
    assert proc.returncode == 1 and "interrupted after" in err and "run the same command again" in err, err
    written = out.read_bytes().count(b"\n") - 1
    assert 4 <= written < N and not (tmp_path / "b.jsonl.jws").exists()
    assert out.read_bytes().endswith(b"\n")
    # What a hard stop (kill -9, a power cut) can leave: a half-written line,
    # and the next device's key made in its token before its line was written.
    with open(out, "ab") as f:
        f.write(b'{"deviceId":"d-')
    nxt = f"d-{written + 2:02d}"
    labels_before = token_labels(lk, hsm)
    if nxt not in labels_before:
        r = lk("key", "generate", "--key", p11("factory", nxt), env=hsm.env)
        assert r.rc == 0, r
    made = lk("key", "public", "--key", p11("factory", nxt), env=hsm.env).out

    r = lk(*provision_args(tmp_path, "batch-9", out, "--prefix", "d-", "--count", N), env=hsm.env)
    assert r.rc == 0, r
    raw, devices = check_manifest(out, "batch-9", [(tmp_path / "inter" / "ca.pem").read_text()],
                                  load_cert(tmp_path / "inter" / "ca.pem"))
    ids = [d["deviceId"] for d in devices]
    assert sorted(ids) == [f"d-{i:02d}" for i in range(1, N + 1)] and len(set(ids)) == N
    labels = token_labels(lk, hsm)
    assert sorted(labels) == sorted(set(labels)) and len(labels) == N  # no second key for any device
    assert next(d for d in devices if d["deviceId"] == nxt)["publicKey"] == made
    check_jws(out, raw, factory, "batch-9", N)


def test_signer_in_token_rsa_devices_direct_ca(lk, tmp_path, hsm):
    """The CA's and the manufacturer's keys in a token (two handles on it, a
    third on the devices' token), RS256 device keys, devices signed directly by
    the root (IoT Core's rule: an empty chain)."""
    root = ca_init(lk, tmp_path / "root", "--key", p11("cakeys", "root"), env=hsm.env)
    signer_ref = p11("cakeys", "manufacturer")
    r = lk("key", "generate", "--key", signer_ref, env=hsm.env)
    assert r.rc == 0, r
    signer_pub = serialization.load_pem_public_key(r.out.encode())
    out = tmp_path / "rsa.jsonl"
    r = lk("provision", "--ca", tmp_path / "root", "--token", p11("factory", "%s"), "--batch", "batch-r",
           "--prefix", "rsa-", "--count", 2, "--alg", "RS256", "--signer", signer_ref, "--manufacturer", "ACME",
           "--out", out, env=hsm.env)
    assert r.rc == 0, r
    raw, devices = check_manifest(out, "batch-r", [], root, fmt="RSA_X509_PEM")
    assert all(isinstance(x509.load_pem_x509_certificate(d["certificate"].encode()).public_key(),
                          rsa.RSAPublicKey) for d in devices)
    check_jws(out, raw, None, "batch-r", 2, pub=signer_pub)
    # A forged manifest: one byte changed, the signature no longer matches the file.
    assert hashlib.sha256(raw.replace(b"rsa-1", b"rsa-3", 1)).hexdigest() != \
        json.loads(b64d((tmp_path / "rsa.jsonl.jws").read_text().split(".")[1]))["sha256"]
    # Bad options are refused before anything is made.
    r = lk("provision", "--ca", tmp_path / "root", "--token", "pkcs11:token=factory;object=fixed", "--batch",
           "batch-x", "--prefix", "x-", "--count", 2, "--signer", signer_ref, "--manufacturer", "ACME",
           "--out", tmp_path / "x.jsonl", env=hsm.env)
    assert r.rc == 2 and "%s" in r.err and not (tmp_path / "x.jsonl").exists(), r
    r = lk("provision", "--ca", tmp_path / "nope", "--token", p11("factory", "%s"), "--batch", "batch-x",
           "--prefix", "x-", "--count", 2, "--signer", signer_ref, "--manufacturer", "ACME",
           "--out", tmp_path / "x.jsonl", env=hsm.env)
    assert r.rc == 24 and not (tmp_path / "x.jsonl").exists(), r
