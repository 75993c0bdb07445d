"""Importing a factory's signed manifest (issue 17, the customer's step).

The CA, the devices, the manifest and its signature are made here with
python3-cryptography (not with latchkey's own factory tool), so that the
importer is checked against an independent writer of the format published
in docs/provisioning.md. Every refusal must refuse the whole manifest, say
why, and leave the registry file unchanged.
"""
import datetime
import hashlib
import json
import os
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from conftest import run_tool

P, L = "proj-m", "europe-west1"
LOC = ["--project", P, "--region", L]
INVALID, CERT, IMPORT = 15, 16, 20
NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)

pytestmark = pytest.mark.db_only("signers and manifests are managed on the registry file")


def b64u(b: bytes) -> str:
    import base64
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def pem(obj) -> str:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM).decode()
    return obj.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def ca_cert(cn, key=None, issuer=None, issuer_key=None, before=-DAY, after=30 * DAY):
    key = key or ec.generate_private_key(ec.SECP256R1())
    c = (x509.CertificateBuilder().subject_name(name(cn))
         .issuer_name(issuer.subject if issuer else name(cn)).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(NOW + before).not_valid_after(NOW + after)
         .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True,
                                      content_commitment=False, key_encipherment=False, data_encipherment=False,
                                      key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
         .sign(issuer_key or key, hashes.SHA256()))
    return c, key


def leaf(device_id, issuer, issuer_key, pub=None, before=-DAY, after=30 * DAY):
    pub = pub or ec.generate_private_key(ec.SECP256R1()).public_key()
    c = (x509.CertificateBuilder().subject_name(name(device_id)).issuer_name(issuer.subject).public_key(pub)
         .serial_number(x509.random_serial_number()).not_valid_before(NOW + before).not_valid_after(NOW + after)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .sign(issuer_key, hashes.SHA256()))
    return c, pub


def device_line(device_id, cert, pub, chain=(), serial=None, **extra):
    d = {"deviceId": device_id, "format": "ES256_X509_PEM", "certificate": pem(cert), "chain": [pem(c) for c in chain],
         "publicKey": pem(pub), "serial": serial or "SE" + os.urandom(6).hex()}
    d.update(extra)
    return d


def kid(pub) -> str:
    return hashlib.sha256(pub.public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def sign_manifest(data: bytes, fname, batch, ndevices, key, use_kid=True):
    header = {"alg": "ES256", "typ": "latchkey-manifest+jws"}
    if use_kid:
        header["kid"] = kid(key.public_key())
    payload = {"manifest": fname, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
               "devices": ndevices, "batch": batch, "iat": int(NOW.timestamp())}
    signing_input = (b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(payload).encode())).encode()
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return signing_input.decode() + "." + b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big")) + "\n"


def write_manifest(path, lines, key, batch="batch-1", alter=None, ndevices=None):
    head = {"latchkeyManifest": 1, "batch": batch, "manufacturer": "acme-fab", "created": "2026-12-01T00:00:00Z"}
    data = (json.dumps(head) + "\n" + "".join(json.dumps(d) + "\n" for d in lines)).encode()
    jws = sign_manifest(data, path.name, batch, len(lines) if ndevices is None else ndevices, key)
    path.write_bytes(alter(data) if alter else data)
    (path.parent / (path.name + ".jws")).write_text(jws)
    return path


class Reg:
    """A registry file with registry reg (its own id: parallel-safe), CA ca and signer (the manufacturer)."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.db = tmp_path / "registry.db"
        self.id = "reg-" + os.urandom(4).hex()
        self.ca, self.ca_key = ca_cert("Customer Root CA")
        self.signer = ec.generate_private_key(ec.SECP256R1())
        assert self.lk("registries", "create", self.id, *LOC).rc == 0
        (tmp_path / "ca.pem").write_text(pem(self.ca))
        r = self.lk("registries", "credentials", "create", "--registry", self.id, "--path", tmp_path / "ca.pem", *LOC)
        assert r.rc == 0, r
        self.add_signer(self.signer.public_key(), "acme")

    def lk(self, *args):
        return run_tool("--db", self.db, *args)

    def add_signer(self, pub, label):
        f = self.tmp / f"signer-{label}.pem"
        f.write_text(pem(pub))
        r = self.lk("registries", "signers", "add", "--label", label, "--path", f, "--registry", self.id, *LOC)
        assert r.rc == 0, r

    def devices(self, n, issuer=None, issuer_key=None, chain=(), prefix="dev"):
        out = []
        for i in range(n):
            c, pub = leaf(f"{prefix}-{i}", issuer or self.ca, issuer_key or self.ca_key)
            out.append(device_line(f"{prefix}-{i}", c, pub, chain))
        return out

    def imp(self, path, *extra):
        return self.lk("devices", "import", "--manifest", path, "--registry", self.id, *LOC, *extra)

    def ids(self):
        r = self.lk("devices", "list", "--registry", self.id, *LOC, "--format", "json")
        assert r.rc == 0, r
        return sorted(d["id"] for d in json.loads(r.out))

    def dump(self):
        return subprocess.run(["sqlite3", str(self.db), ".dump"], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def reg(tmp_path):
    return Reg(tmp_path)


def refused_whole(reg, path, rc, *words, extra=()):
    before = reg.dump()
    r = reg.imp(path, *extra)
    assert r.rc == rc, r
    for w in words:
        assert w.lower() in (r.out + r.err).lower(), (w, r)
    assert reg.dump() == before, "a refused manifest wrote something"
    return r


def test_good_manifest_imported_every_device_present(reg):
    lines = reg.devices(5)
    m = write_manifest(reg.tmp / "batch-1.jsonl", lines, reg.signer)
    r = reg.imp(m, "--format", "json")
    assert r.rc == 0, r
    rep = json.loads(r.out)
    assert rep["accepted"] and rep["imported"] == 5 and rep["signer"] == "acme" and rep["batch"] == "batch-1", rep
    assert [x["result"] for x in rep["results"]] == ["ok"] * 5 and all(x["numId"] for x in rep["results"])
    assert reg.ids() == [f"dev-{i}" for i in range(5)]
    d = json.loads(reg.lk("devices", "describe", "dev-3", "--registry", reg.id, *LOC, "--format", "json").out)
    assert d["credentials"][0]["publicKey"]["format"] == "ES256_X509_PEM"
    assert d["metadata"]["se_serial"] == lines[3]["serial"] and d["metadata"]["manifest_batch"] == "batch-1"


def test_dry_run_checks_and_writes_nothing(reg):
    m = write_manifest(reg.tmp / "b.jsonl", reg.devices(3), reg.signer)
    before = reg.dump()
    r = reg.imp(m, "--dry-run")
    assert r.rc == 0 and "Checked 3 devices" in r.out, r
    assert reg.dump() == before


def test_tampered_line_refused(reg):
    lines = reg.devices(3)
    m = write_manifest(reg.tmp / "b.jsonl", lines, reg.signer,
                       alter=lambda d: d.replace(b'"dev-1"', b'"dev-9"'))
    refused_whole(reg, m, INVALID, "SHA-256", "altered")


def test_truncated_file_refused(reg):
    m = write_manifest(reg.tmp / "b.jsonl", reg.devices(3), reg.signer, alter=lambda d: d[:-40])
    refused_whole(reg, m, INVALID, "truncated")


def test_wrong_signer_refused(reg):
    other = ec.generate_private_key(ec.SECP256R1())
    m = write_manifest(reg.tmp / "b.jsonl", reg.devices(2), other)
    refused_whole(reg, m, CERT, "kid")
    # without a kid every signer is tried, and none verifies
    data = m.read_bytes()
    (reg.tmp / "b.jsonl.jws").write_text(sign_manifest(data, "b.jsonl", "batch-1", 2, other, use_kid=False))
    refused_whole(reg, m, CERT, "does not verify")


def test_signature_of_another_file_refused(reg):
    m = write_manifest(reg.tmp / "b.jsonl", reg.devices(2), reg.signer, ndevices=3)
    refused_whole(reg, m, INVALID, "3")


def test_certificate_of_another_ca_refused(reg):
    other, other_key = ca_cert("Someone Else's CA")
    lines = reg.devices(2) + reg.devices(1, other, other_key, prefix="foreign")
    m = write_manifest(reg.tmp / "b.jsonl", lines, reg.signer)
    r = refused_whole(reg, m, IMPORT, "foreign-0", "nothing was imported")
    assert "line 2\tdev-0\tok" in r.out and "line 4\tforeign-0\trefused" in r.out, r


def test_duplicates_in_the_file_refused(reg):
    lines = reg.devices(3)
    c, pub = leaf("dev-1", reg.ca, reg.ca_key)
    lines.append(device_line("dev-1", c, pub))                      # the same id
    lines.append(dict(lines[0], deviceId="dev-x"))                  # the same certificate and key
    c2, pub2 = leaf("dev-y", reg.ca, reg.ca_key)
    lines.append(device_line("dev-y", c2, pub2, serial=lines[2]["serial"]))  # the same serial: allowed
    m = write_manifest(reg.tmp / "b.jsonl", lines, reg.signer)
    r = refused_whole(reg, m, IMPORT, "deviceId is also on line 3")
    assert "line 6\tdev-x\trefused" in r.out and "line 7\tdev-y\tok" in r.out, r


def test_one_token_serial_on_every_line_accepted(reg):
    """One token holding every device's key (an HSM; `latchkey provision` with object=%s in one
    token): its one serial on each line. The serial is traceability, not an identity."""
    lines = [dict(d, serial="0123456789abcdef") for d in reg.devices(3)]
    m = write_manifest(reg.tmp / "b.jsonl", lines, reg.signer)
    r = reg.imp(m)
    assert r.rc == 0 and r.out.count("\tok") == 3, r


def test_device_already_in_registry_refused(reg):
    m = write_manifest(reg.tmp / "a.jsonl", reg.devices(2), reg.signer)
    assert reg.imp(m).rc == 0
    m2 = write_manifest(reg.tmp / "b.jsonl", reg.devices(2, prefix="new") + reg.devices(1), reg.signer,
                        batch="batch-2")
    refused_whole(reg, m2, IMPORT, "dev-0 exists in the registry already")
    assert reg.ids() == ["dev-0", "dev-1"]


def test_line_checks_refused(reg):
    good = reg.devices(2)
    c, pub = leaf("dev-z", reg.ca, reg.ca_key)
    lines = [good[0], dict(good[1], color="red"),                    # unknown member
             device_line("dev-other", c, pub),                       # CN is not deviceId
             dict(device_line("dev-z", c, pub), publicKey=pem(ec.generate_private_key(ec.SECP256R1()).public_key())),
             dict(device_line("dev-q", *leaf("dev-q", reg.ca, reg.ca_key)), format="RSA_X509_PEM")]
    m = write_manifest(reg.tmp / "b.jsonl", lines, reg.signer)
    r = refused_whole(reg, m, IMPORT, 'unknown member "color"', "CN is not deviceId", "key is not publicKey",
                      "does not match the key")
    assert "line 2\tdev-0\tok" in r.out


def test_header_line_and_signature_form_refused(reg):
    lines = reg.devices(1)

    def with_head(head, name):
        data = (json.dumps(head) + "\n" + json.dumps(lines[0]) + "\n").encode()
        m = reg.tmp / name
        m.write_bytes(data)
        (reg.tmp / (name + ".jws")).write_text(sign_manifest(data, name, "batch-1", 1, reg.signer))
        return m

    base = {"latchkeyManifest": 1, "batch": "batch-1", "manufacturer": "acme-fab", "created": "2026-12-01T00:00:00Z"}
    refused_whole(reg, with_head(dict(base, created="2026-12-01 00:00"), "a.jsonl"), INVALID, "created")
    refused_whole(reg, with_head(dict(base, latchkeyManifest=2), "b.jsonl"), INVALID, "latchkeyManifest")
    refused_whole(reg, with_head(dict(base, extra=1), "c.jsonl"), INVALID, 'unknown member "extra"')
    refused_whole(reg, with_head(dict(base, batch="batch-2"), "d.jsonl"), INVALID, "batch")
    refused_whole(reg, with_head(dict(base, manufacturer=""), "e.jsonl"), INVALID, "manufacturer")
    # a device line without its chain member
    m = write_manifest(reg.tmp / "f.jsonl", [{k: v for k, v in lines[0].items() if k != "chain"}], reg.signer)
    refused_whole(reg, m, IMPORT, "chain an array")
    # the JWS: an uppercase kid, a header member the format does not have, not three parts
    m = write_manifest(reg.tmp / "g.jsonl", lines, reg.signer)
    jws = (reg.tmp / "g.jsonl.jws").read_text().strip()
    h, p, sig = jws.split(".")
    import base64
    hdr = json.loads(base64.urlsafe_b64decode(h + "=="))
    for bad, word in ((dict(hdr, kid=hdr["kid"].upper()), "lowercase"), (dict(hdr, jku="https://x"), "jku")):
        (reg.tmp / "g.jsonl.jws").write_text(b64u(json.dumps(bad).encode()) + "." + p + "." + sig + "\n")
        refused_whole(reg, m, INVALID, word)
    (reg.tmp / "g.jsonl.jws").write_text(h + "." + p + "\n")
    refused_whole(reg, m, INVALID, "compact JWS")


def test_json_report_of_a_refusal(reg):
    other, other_key = ca_cert("Other CA")
    m = write_manifest(reg.tmp / "b.jsonl", reg.devices(1) + reg.devices(1, other, other_key, prefix="x"),
                       reg.signer)
    r = reg.imp(m, "--format", "json")
    assert r.rc == IMPORT, r
    rep = json.loads(r.out)
    assert not rep["accepted"] and rep["imported"] == 0 and rep["refused"] == 1, rep
    assert rep["results"][0]["result"] == "ok" and rep["results"][1]["result"] == "refused"
    assert rep["results"][1]["error"] and rep["results"][1]["reason"]


# ---- through the registry's provisioning checks (chains, dates, CRLs: helper R's schema 7) ----

def test_chain_through_an_intermediate(reg):
    inter, inter_key = ca_cert("Factory Intermediate", issuer=reg.ca, issuer_key=reg.ca_key)
    m = write_manifest(reg.tmp / "b.jsonl", reg.devices(3, inter, inter_key, chain=[inter]), reg.signer)
    r = reg.imp(m)
    assert r.rc == 0, r
    assert reg.ids() == ["dev-0", "dev-1", "dev-2"]
    # the same devices without their chain are not signed directly by a registry CA
    m2 = write_manifest(reg.tmp / "c.jsonl", reg.devices(1, inter, inter_key, prefix="nochain"), reg.signer,
                        batch="batch-2")
    refused_whole(reg, m2, IMPORT, "nochain-0")


def test_expired_intermediate_and_expired_leaf_refused(reg):
    inter, inter_key = ca_cert("Old Intermediate", issuer=reg.ca, issuer_key=reg.ca_key, before=-30 * DAY,
                               after=-DAY)
    m = write_manifest(reg.tmp / "b.jsonl", reg.devices(1, inter, inter_key, chain=[inter]), reg.signer)
    refused_whole(reg, m, IMPORT, "dev-0")
    c, pub = leaf("old-0", reg.ca, reg.ca_key, before=-30 * DAY, after=-DAY)
    m2 = write_manifest(reg.tmp / "c.jsonl", [device_line("old-0", c, pub)], reg.signer, batch="batch-2")
    refused_whole(reg, m2, IMPORT, "old-0")


def test_revoked_certificate_refused(reg):
    lines = reg.devices(2)
    revoked = x509.load_pem_x509_certificate(lines[1]["certificate"].encode())
    crl = (x509.CertificateRevocationListBuilder().issuer_name(reg.ca.subject).last_update(NOW - DAY)
           .next_update(NOW + DAY)
           .add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(revoked.serial_number)
                                    .revocation_date(NOW - DAY).build())
           .sign(reg.ca_key, hashes.SHA256()))
    (reg.tmp / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    r = reg.lk("registries", "crls", "add", "--path", reg.tmp / "crl.pem", "--registry", reg.id, *LOC)
    assert r.rc == 0, r
    m = write_manifest(reg.tmp / "b.jsonl", lines, reg.signer)
    refused_whole(reg, m, IMPORT, "revoked")


# ---- the REST call ----

def test_rest_import_manifest(tmp_path):
    from api_common import Env, devices_path, ok, refused, P as AP, L as AL
    e = Env(tmp_path / "lkd")
    try:
        reg = Reg.__new__(Reg)
        reg.tmp, reg.db, reg.id = tmp_path, e.daemon.db, "reg-1"
        reg.ca, reg.ca_key = ca_cert("REST CA")
        (tmp_path / "ca.pem").write_text(pem(reg.ca))
        loc = ["--project", AP, "--region", AL]
        assert e.lk("registries", "credentials", "create", "--registry", "reg-1", "--path", tmp_path / "ca.pem",
                    *loc).rc == 0
        reg.signer = ec.generate_private_key(ec.SECP256R1())
        (tmp_path / "s.pem").write_text(pem(reg.signer.public_key()))
        assert e.lk("registries", "signers", "add", "--label", "acme", "--path", tmp_path / "s.pem",
                    "--registry", "reg-1", *loc).rc == 0
        m = write_manifest(tmp_path / "b.jsonl", reg.devices(3), reg.signer)
        jws = (tmp_path / "b.jsonl.jws").read_text().strip()
        hdr = {"Content-Type": "application/x-ndjson", "X-Latchkey-Manifest-Signature": jws}
        path = devices_path() + ":importManifest"
        # a dry run writes nothing
        rep = ok(e.api.post(path, raw=m.read_bytes(), headers=hdr, query={"validateOnly": "true"}))
        assert rep["accepted"] and rep["dryRun"] and rep["imported"] == 0, rep
        assert ok(e.api.get(devices_path())).get("devices", []) == []
        # a tampered body is refused with the reason
        bad = m.read_bytes().replace(b'"dev-1"', b'"dev-7"')
        msg = refused(e.api.post(path, raw=bad, headers=hdr), "INVALID_ARGUMENT", "SHA-256")
        assert "altered" in msg
        # a refused line: the report rides in the error's details
        other, okey = ca_cert("Other")
        m2 = write_manifest(tmp_path / "c.jsonl", reg.devices(1, other, okey, prefix="x"), reg.signer)
        r = e.api.post(path, raw=m2.read_bytes(),
                       headers=dict(hdr, **{"X-Latchkey-Manifest-Signature":
                                            (tmp_path / "c.jsonl.jws").read_text().strip()}))
        assert r.status == 400, r
        det = [d for d in r.json["error"]["details"] if d.get("@type") == "type.latchkey.dev/ManifestReport"]
        assert det and det[0]["results"][0]["result"] == "refused", r
        # the good one is imported
        rep = ok(e.api.post(path, raw=m.read_bytes(), headers=hdr))
        assert rep["accepted"] and rep["imported"] == 3, rep
        assert sorted(d["id"] for d in ok(e.api.get(devices_path()))["devices"]) == ["dev-0", "dev-1", "dev-2"]
        # no signature header, a wrong content type
        refused(e.api.post(path, raw=m.read_bytes(), headers={"Content-Type": "application/x-ndjson"}),
                "INVALID_ARGUMENT", "X-Latchkey-Manifest-Signature")
        refused(e.api.post(path, raw=m.read_bytes(), headers=dict(hdr, **{"Content-Type": "application/json"})),
                "INVALID_ARGUMENT", "x-ndjson")
        # a provisioner may not import a batch
        refused(e.as_role("provisioner").post(path, raw=m.read_bytes(), headers=hdr), "PERMISSION_DENIED")
    finally:
        e.stop()


def test_rest_signers_and_crls(tmp_path):
    from api_common import Env, registry_path, ok, refused
    e = Env(tmp_path / "lkd")
    try:
        ca, ca_key = ca_cert("REST CA")
        base = registry_path()
        k = ec.generate_private_key(ec.SECP256R1()).public_key()
        # only an admin may trust a manufacturer; anyone who may read sees them
        refused(e.as_role("editor").post(base + "/manifestSigners", {"label": "acme", "publicKey": pem(k)}),
                "PERMISSION_DENIED")
        got = ok(e.api.post(base + "/manifestSigners", {"label": "acme", "publicKey": pem(k)}))
        assert got == {"index": 0, "label": "acme"}, got
        lst = ok(e.as_role("viewer").get(base + "/manifestSigners"))["manifestSigners"]
        assert [(s["label"], s["fingerprint"]) for s in lst] == [("acme", kid(k))], lst
        refused(e.api.post(base + "/manifestSigners", {"label": "x", "publicKey": pem(k), "alg": "ES256"}),
                "INVALID_ARGUMENT", "alg")
        refused(e.api.post(base + "/manifestSigners", {"label": "weak", "publicKey": "not a key"}),
                "INVALID_ARGUMENT")
        ok(e.api.delete(base + "/manifestSigners/0"))
        assert ok(e.api.get(base + "/manifestSigners"))["manifestSigners"] == []
        refused(e.api.delete(base + "/manifestSigners/0"), "NOT_FOUND")
        # a CRL of a registry CA
        from api_common import P as AP, L as AL
        (tmp_path / "ca.pem").write_text(pem(ca))
        assert e.lk("registries", "credentials", "create", "--registry", "reg-1", "--path", tmp_path / "ca.pem",
                    "--project", AP, "--region", AL).rc == 0
        crl = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject).last_update(NOW - DAY)
               .next_update(NOW + DAY)
               .add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(42)
                                        .revocation_date(NOW - DAY).build())
               .sign(ca_key, hashes.SHA256()))
        ok(e.api.post(base + "/crls", {"crl": crl.public_bytes(serialization.Encoding.PEM).decode()}))
        lst = ok(e.api.get(base + "/crls"))["crls"]
        assert len(lst) == 1 and "REST CA" in lst[0]["issuer"] and lst[0]["revoked"] == 1, lst
        other, okey = ca_cert("Not ours")
        foreign = (x509.CertificateRevocationListBuilder().issuer_name(other.subject).last_update(NOW - DAY)
                   .next_update(NOW + DAY).sign(okey, hashes.SHA256()))
        refused(e.api.post(base + "/crls", {"crl": foreign.public_bytes(serialization.Encoding.PEM).decode()}),
                "INVALID_ARGUMENT")
        ok(e.api.delete(base + "/crls/0"))
        assert ok(e.api.get(base + "/crls"))["crls"] == []
    finally:
        e.stop()


def test_cli_signers_and_crls(reg):
    sl = json.loads(reg.lk("registries", "signers", "list", "--registry", reg.id, *LOC, "--format", "json").out)
    assert [(s["index"], s["label"], s["fingerprint"]) for s in sl] == [(0, "acme", kid(reg.signer.public_key()))]
    table = reg.lk("registries", "signers", "list", "--registry", reg.id, *LOC).out
    assert "FINGERPRINT" in table and kid(reg.signer.public_key()) in table
    bad = reg.tmp / "bad.pem"
    bad.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    r = reg.lk("registries", "signers", "add", "--label", "bad", "--path", bad, "--registry", reg.id, *LOC)
    assert r.rc != 0 and r.err, r
    assert reg.lk("registries", "signers", "add", "--path", bad, "--registry", reg.id, *LOC).rc == 2
    crl = (x509.CertificateRevocationListBuilder().issuer_name(reg.ca.subject).last_update(NOW - DAY)
           .next_update(NOW + DAY)
           .add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(7).revocation_date(NOW - DAY)
                                    .build())
           .sign(reg.ca_key, hashes.SHA256()))
    (reg.tmp / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    assert reg.lk("registries", "crls", "add", "--path", reg.tmp / "crl.pem", "--registry", reg.id, *LOC).rc == 0
    cl = json.loads(reg.lk("registries", "crls", "list", "--registry", reg.id, *LOC, "--format", "json").out)
    assert len(cl) == 1 and cl[0]["revoked"] == 1, cl
    assert reg.lk("registries", "crls", "delete", "0", "--registry", reg.id, *LOC).rc == 0
    assert reg.lk("registries", "signers", "delete", "0", "--registry", reg.id, *LOC).rc == 0
    # with no signer left, a manifest is refused as unsigned by anyone trusted
    m = write_manifest(reg.tmp / "b.jsonl", reg.devices(1), reg.signer)
    refused_whole(reg, m, CERT, "trusts no manifest signer")


def test_rest_import_manifest_verb_elsewhere(tmp_path):
    """The verb on another path is not found, and its body is read as JSON as always (never as a manifest)."""
    from api_common import Env, registry_path, device_path, refused
    e = Env(tmp_path / "lkd")
    try:
        hdr = {"Content-Type": "application/x-ndjson", "X-Latchkey-Manifest-Signature": "a.b.c"}
        for path in (registry_path() + ":importManifest", device_path("d1") + ":importManifest",
                     registry_path() + "/manifestSigners:importManifest"):
            r = e.api.post(path, raw=b'{"latchkeyManifest":1}\n{"x":1}\n', headers=hdr)
            assert r.status in (400, 404) and r.code in ("NOT_FOUND", "INVALID_ARGUMENT"), (path, r)
        refused(e.api.call("PATCH", registry_path() + "/devices:importManifest", raw=b"{}", headers=hdr),
                "NOT_FOUND", "POST")
    finally:
        e.stop()
