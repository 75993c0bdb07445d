#!/usr/bin/python3
"""Regenerate the seed corpora in tests/fuzz/corpus/ (see docs/fuzzing.md).

    python3 tests/fuzz/make_corpus.py [tests/fuzz/corpus]

Every key is made here, used in memory and dropped: the corpus holds tokens,
public keys and certificates only, never a private key. Tokens are signed
with these throwaway keys, so in fuzz_verify's raw mode they fail at the
signature (as they must), after exercising every earlier rule. The JSON and
signing-input seeds (first byte 0x01 / 0x02) are signed by the harness with
its own keys, so the checks after the signature are reached as well.
Times are around fuzz_verify's now, 1700000000; the audience is
"fuzz-project".
"""
import base64
import datetime
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

NOW = 1700000000
AUD = "fuzz-project"
CLAIMS = '{"iat":%d,"exp":%d,"aud":"%s"}' % (NOW, NOW + 3600, AUD)
ES_HDR = '{"alg":"ES256","typ":"JWT"}'
RS_HDR = '{"alg":"RS256","typ":"JWT"}'


def b64(data, pad=False):
    s = base64.urlsafe_b64encode(data)
    return s if pad else s.rstrip(b"=")


def es_sign(key, msg, der=False):
    sig = key.sign(msg, ec.ECDSA(hashes.SHA256()))
    if der:
        return sig
    r, s = decode_dss_signature(sig)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def rs_sign(key, msg):
    return key.sign(msg, padding.PKCS1v15(), hashes.SHA256())


def token(header, claims, signer, pad_sig=False, raw_sig=None):
    h = header if isinstance(header, bytes) else header.encode()
    c = claims if isinstance(claims, bytes) else claims.encode()
    si = b64(h) + b"." + b64(c)
    sig = raw_sig if raw_sig is not None else signer(si)
    return si + b"." + b64(sig, pad_sig)


def pem_pub(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def pem_cert(key):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "latchkey fuzz seed")])
    start = datetime.datetime(2023, 1, 1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=3650))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def manifest_seeds():
    """fuzz_manifest's: .jsonl files of batch "batch-1" (the harness signs them), self-signed device
    certificates (its registry has no CA)."""
    import json

    def line(did):
        k = ec.generate_private_key(ec.SECP256R1())
        n = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, did)])
        t = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
        c = (x509.CertificateBuilder().subject_name(n).issuer_name(n).public_key(k.public_key())
             .serial_number(1).not_valid_before(t).not_valid_after(t + datetime.timedelta(days=36500))
             .sign(k, hashes.SHA256()))
        return {"deviceId": did, "format": "ES256_X509_PEM",
                "certificate": c.public_bytes(serialization.Encoding.PEM).decode(), "chain": [],
                "publicKey": pem_pub(k).decode(), "serial": "SE" + did}

    head = json.dumps({"latchkeyManifest": 1, "batch": "batch-1", "manufacturer": "fuzz-fab",
                       "created": "2026-01-01T00:00:00Z"})
    a, b = line("dev-a"), line("dev-b")
    seeds = {"good-2": [head, json.dumps(a), json.dumps(b)],
             "dup-id": [head, json.dumps(a), json.dumps(dict(b, deviceId="dev-a"))],
             "unknown-member": [head, json.dumps(dict(a, extra=1))],
             "bad-format": [head, json.dumps(dict(a, format="RSA_X509_PEM"))],
             "header-only": [head]}
    out = {k: ("\n".join(v) + "\n").encode() for k, v in seeds.items()}
    out["truncated"] = (head + "\n" + json.dumps(a)[:300]).encode()
    return out


def manifest_jws_seeds():
    """fuzz_manifest_jws's: 0x01 OPTS-in-bits + HEADER 0x00 PAYLOAD (the harness signs), or 0x00 + a raw .jws.
    The payloads name fuzz_manifest_jws's fixed manifest (its size and SHA-256)."""
    import hashlib
    import json
    fixed = (b'{"latchkeyManifest":1,"batch":"batch-1","manufacturer":"fuzz-fab",'
             b'"created":"2026-01-01T00:00:00Z"}\n')
    pay = {"manifest": "f.jsonl", "sha256": hashlib.sha256(fixed).hexdigest(), "size": len(fixed),
           "devices": 0, "batch": "batch-1", "iat": NOW}
    j = lambda o: json.dumps(o, separators=(",", ":")).encode()  # noqa: E731
    rs_hdr = j({"alg": "RS256", "typ": "latchkey-manifest+jws"})
    es_hdr = j({"alg": "ES256", "typ": "latchkey-manifest+jws"})
    k = ec.generate_private_key(ec.SECP256R1())
    si = b64(es_hdr) + b"." + b64(j(pay))
    return {
        "es_default_header": b"\x01" + j(pay),
        "es_no_kid_newline": b"\x09" + es_hdr + b"\x00" + j(pay),
        "rs256": b"\x05" + rs_hdr + b"\x00" + j(pay),
        "alg_lies": b"\x05" + es_hdr + b"\x00" + j(pay),
        "foreign_key": b"\x03" + j(pay),
        "wrong_size": b"\x01" + j(dict(pay, size=1)),
        "unknown_member": b"\x01" + j(dict(pay, extra=1)),
        "bad_sha": b"\x01" + j(dict(pay, sha256="AB" * 32)),
        "header_crit": b"\x01" + j({"alg": "ES256", "typ": "latchkey-manifest+jws", "crit": []}) + b"\x00" + j(pay),
        "raw_throwaway_key": b"\x00" + si + b"." + b64(es_sign(k, si)) + b"\n",
    }


def registry_certs_seeds():
    """fuzz_registry_certs's: a mode byte (0 CA, 1 DER, 2 details, 3 chain, 4 CRL, 5 signer key, 6 JIT
    certificate) and PEM: a CA, a device certificate (CN dev-1) it signed, the two as a chain, a CRL it
    signed, P-256 and RSA public keys."""
    from cryptography.x509 import (BasicConstraints, CertificateRevocationListBuilder,
                                   RevokedCertificateBuilder)
    t = datetime.datetime(2023, 1, 1, tzinfo=datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "latchkey fuzz CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(t).not_valid_after(t + datetime.timedelta(days=3650))
          .add_extension(BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    dev_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev-1")])).issuer_name(ca_name)
            .public_key(dev_key.public_key()).serial_number(2).not_valid_before(t)
            .not_valid_after(t + datetime.timedelta(days=3650)).sign(ca_key, hashes.SHA256()))
    crl = (CertificateRevocationListBuilder().issuer_name(ca_name).last_update(t)
           .next_update(t + datetime.timedelta(days=3650))
           .add_revoked_certificate(RevokedCertificateBuilder().serial_number(2).revocation_date(t).build())
           .sign(ca_key, hashes.SHA256()))
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)  # noqa: E731
    rs = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {"ca": b"\x00" + pem(ca), "ca_is_leaf": b"\x00" + pem(leaf), "der": b"\x01" + pem(leaf),
            "details": b"\x02" + pem(ca), "chain": b"\x03" + pem(leaf) + pem(ca), "crl": b"\x04" + pem(crl),
            "signer_es": b"\x05" + pem_pub(dev_key), "signer_rsa": b"\x05" + pem_pub(rs),
            "jit": b"\x06" + pem(leaf)}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    es = ec.generate_private_key(ec.SECP256R1())
    rs = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    es_s = lambda m: es_sign(es, m)  # noqa: E731
    rs_s = lambda m: rs_sign(rs, m)  # noqa: E731

    verify = {
        # Raw tokens: everything up to the signature is right or wrong on purpose.
        "raw_es256_valid_shape": token(ES_HDR, CLAIMS, es_s),
        "raw_rs256_valid_shape": token(RS_HDR, CLAIMS, rs_s),
        "raw_es256_padded_sig": token(ES_HDR, CLAIMS, es_s, pad_sig=True),
        "raw_alg_none": b64(b'{"alg":"none","typ":"JWT"}') + b"." + b64(CLAIMS.encode()) + b".",
        "raw_crit": token('{"alg":"ES256","crit":["exp"]}', CLAIMS, es_s),
        "raw_dup_alg": token('{"alg":"ES256","alg":"HS256"}', CLAIMS, es_s),
        "raw_der_sig": token(ES_HDR, CLAIMS, lambda m: es_sign(es, m, der=True)),
        "raw_exp_1e300": token(ES_HDR, '{"iat":%d,"exp":1e300,"aud":"%s"}' % (NOW, AUD), es_s),
        "raw_aud_array": token(ES_HDR, '{"iat":%d,"exp":%d,"aud":["%s"]}' % (NOW, NOW + 60, AUD), es_s),
        "raw_aud_nul": token(ES_HDR, '{"iat":%d,"exp":%d,"aud":"%s\\u0000evil"}' % (NOW, NOW + 60, AUD), es_s),
        "raw_std_b64_sig": token(ES_HDR, CLAIMS, None, raw_sig=b"\xfb\xff" * 32).replace(b"-", b"+").replace(b"_", b"/"),
        "raw_r0_s0": token(ES_HDR, CLAIMS, None, raw_sig=bytes(64)),
        # JSON mode: 0x01, opts, header, 0x00, claims (no 0x00: claims only).
        # A 24-hour token: it outlives the fixture's P-256 credential (now + 5000).
        "json_es256_24h": b"\x01\x00" + ES_HDR.encode() + b"\x00" + (
            '{"iat":%d,"exp":%d,"aud":"%s"}' % (NOW, NOW + 86400, AUD)).encode(),
        # On the time rules' edges (now 1700000000, skew 600): one digit from
        # the wrong side of exp > now - skew, and of iat <= now + skew.
        "json_rs256_exp_edge": b"\x01\x01" + RS_HDR.encode() + b"\x00" + (
            '{"iat":%d,"exp":%d,"aud":"%s"}' % (NOW - 86000, NOW - 600 + 1, AUD)).encode(),
        "json_claims_only_iat_edge": b"\x01\x00" + (
            '{"iat":%d,"exp":%d,"aud":"%s"}' % (NOW + 600, NOW + 4200, AUD)).encode(),
        "json_padded_high_s": b"\x01" + bytes([(3 << 1) | 8 | 16]) + CLAIMS.encode(),
        "json_strict_padded": b"\x01" + bytes([16 | 32]) + CLAIMS.encode(),
        "json_crit_kid": b"\x01\x00" + b'{"alg":"ES256","kid":"k","crit":[]}\x00' + CLAIMS.encode(),
        "json_exp_float_escaped_aud": b"\x01\x00" + ('{"iat":%d,"exp":%d.0,"\\u0061ud":"%s"}'
                                                     % (NOW, NOW + 60, AUD)).encode(),
        "json_lifetime_edge": b"\x01\xc0" + ('{"iat":%d,"exp":%d,"aud":"%s"}'
                                            % (NOW - 600, NOW - 600 + 87000, AUD)).encode(),
        "json_foreign_key": b"\x01" + bytes([2 << 1]) + CLAIMS.encode(),
        # Signing-input mode: 0x02, opts, the raw "header.payload" to sign.
        "si_es256": b"\x02\x40" + b64(ES_HDR.encode()) + b"." + b64(CLAIMS.encode()),
        "si_rs256_padded": b"\x02\x19" + b64(RS_HDR.encode(), True) + b"." + b64(CLAIMS.encode(), True),
    }
    b64url = {
        "empty": b"",
        "one_byte": b"QQ",
        "two_bytes": b"QUI",
        "three_bytes": b"QUJD",
        "padded_two": b"QQ==",
        "padded_one": b"QUI=",
        "nonzero_unused_bits": b"QR",
        "std_alphabet": b"+/+/",
    }
    p384 = ec.generate_private_key(ec.SECP384R1())
    rsa1024 = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    cred = {
        "es256_pem": b"\x03" + pem_pub(es),
        "rsa_pem": b"\x01" + pem_pub(rs),
        "es256_x509": b"\x04" + pem_cert(es),
        "rsa_x509_detect": b"\x00" + pem_cert(rs),
        "p384_refused": b"\x03" + pem_pub(p384),
        "rsa1024_refused": b"\x01" + pem_pub(rsa1024),
        "two_objects_expired": b"\x80" + pem_pub(es) + pem_pub(es),
        # fuzz_cred's finding: END run into the last base64 line (OpenSSL refuses it)
        "end_on_data_line": b"\x40" + pem_pub(es).replace(b"\n-----END", b"-----END"),
    }
    manifest = manifest_seeds()
    for sub, files in (("verify", verify), ("b64url", b64url), ("cred", cred), ("manifest", manifest),
                       ("manifest_jws", manifest_jws_seeds()), ("registry_certs", registry_certs_seeds())):
        d = os.path.join(out, sub)
        os.makedirs(d, exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
