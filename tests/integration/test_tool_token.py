"""latchkey key / token against independent checkers (PyJWT, OpenSSL).

Covers issue 2's promises from the command line: keys generated in the
software store and in a PKCS#11 token (SoftHSM2), tokens that PyJWT and the
openssl command accept, any tampered byte refused, and a clear message with a
documented exit code for every failure.
"""
import base64
import re
import json
import os
import stat
import subprocess

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from conftest import SOFTHSM_MODULE

NOW = 1_800_000_000
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def gen(lk, store, name, *extra):
    r = lk("key", "generate", "--store", store, "--key", name, *extra)
    assert r.rc == 0, r
    return serialization.load_pem_public_key(r.out.encode())


def make_token(lk, *key_args, aud="proj-1", ttl=1200, now=NOW, extra=()):
    r = lk("token", *key_args, "--aud", aud, "--ttl", ttl, "--now", now, *extra)
    assert r.rc == 0, r
    assert r.err == ""
    tok = r.out.strip()
    assert r.out == tok + "\n"
    return tok


def pyjwt_decode(tok, pub, aud="proj-1"):
    return jwt.decode(tok, pub, algorithms=["ES256", "RS256"], audience=aud,
                      options={"verify_exp": False, "verify_iat": False})


def openssl_verify(tmp_path, tok, pub):
    """Verify with the openssl command line, an implementation independent of ours."""
    h, p, s = tok.split(".")
    sig = b64d(s)
    if isinstance(pub, ec.EllipticCurvePublicKey):
        assert len(sig) == 64
        sig = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    (tmp_path / "in").write_bytes(f"{h}.{p}".encode())
    (tmp_path / "sig").write_bytes(sig)
    (tmp_path / "pub.pem").write_bytes(pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    cp = subprocess.run(["openssl", "dgst", "-sha256", "-verify", tmp_path / "pub.pem",
                         "-signature", tmp_path / "sig", tmp_path / "in"], capture_output=True, text=True)
    return cp.returncode == 0 and "Verified OK" in cp.stdout


@pytest.mark.parametrize("alg,extra,bits", [("ES256", (), None), ("RS256", ("--alg", "RS256"), 2048),
                                            ("RS256", ("--alg", "RS256", "--bits", "3072"), 3072)])
def test_soft_store_token_verifies(lk, store, tmp_path, alg, extra, bits):
    pub = gen(lk, store, "dev-1", *extra)
    if alg == "ES256":
        assert isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.name == "secp256r1"
    else:
        assert isinstance(pub, rsa.RSAPublicKey) and pub.key_size == bits
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600
    tok = make_token(lk, "--store", store, "--key", "dev-1")
    header = json.loads(b64d(tok.split(".")[0]))
    assert header == {"alg": alg, "typ": "JWT"}
    claims = pyjwt_decode(tok, pub)
    assert claims == {"iat": NOW, "exp": NOW + 1200, "aud": "proj-1"}
    assert openssl_verify(tmp_path, tok, pub)
    # `key public` gives the same key as `key generate` printed.
    r = lk("key", "public", "--store", store, "--key", "dev-1")
    assert r.rc == 0 and serialization.load_pem_public_key(r.out.encode()).public_numbers() == pub.public_numbers()


def test_tampering_any_byte_fails(lk, store):
    pub = gen(lk, store, "dev-1")
    tok = make_token(lk, "--store", store, "--key", "dev-1")
    pyjwt_decode(tok, pub)
    for i, ch in enumerate(tok):
        if ch == ".":
            continue
        # +16 changes a used bit even in the last character of a segment, whose low bits
        # may be unused padding bits that a lenient decoder (PyJWT) ignores.
        bad = tok[:i] + B64[(B64.index(ch) + 16) % 64] + tok[i + 1:]
        with pytest.raises(jwt.PyJWTError):
            pyjwt_decode(bad, pub)


def test_token_with_live_clock_and_default_ttl(lk, store):
    import time
    pub = gen(lk, store, "dev-1")
    before = int(time.time())
    r = lk("token", "--store", store, "--key", "dev-1", "--aud", "p")
    assert r.rc == 0, r
    claims = jwt.decode(r.out.strip(), pub, algorithms=["ES256"], audience="p")  # checks exp too
    assert before <= claims["iat"] <= int(time.time()) and claims["exp"] - claims["iat"] == 3600


def test_audience_is_escaped_not_injected(lk, store):
    pub = gen(lk, store, "dev-1")
    aud = 'p","aud":"evil\\\n\t'
    claims = pyjwt_decode(make_token(lk, "--store", store, "--key", "dev-1", aud=aud), pub, aud=aud)
    assert claims["aud"] == aud and set(claims) == {"iat", "exp", "aud"}


def test_many_keys_in_one_store(lk, store):
    pubs = {f"dev-{i}": gen(lk, store, f"dev-{i}") for i in range(5)}
    r = lk("key", "list", "--store", store)
    assert r.rc == 0 and r.out.splitlines() == [f"dev-{i}\tES256" for i in range(5)]
    for name, pub in pubs.items():
        pyjwt_decode(make_token(lk, "--store", store, "--key", name), pub)


# ---- failures: message and exit code ----

def test_missing_store(lk, tmp_path):
    r = lk("token", "--store", tmp_path / "nope.lks", "--key", "k", "--aud", "p")
    assert r.rc == 3 and "does not exist" in r.err and "LK_ERR_STORE_MISSING" in r.err


def test_unknown_key(lk, store):
    gen(lk, store, "dev-1")
    r = lk("token", "--store", store, "--key", "dev-2", "--aud", "p")
    assert r.rc == 3 and "no key 'dev-2'" in r.err and r.out == ""


def test_key_exists(lk, store):
    gen(lk, store, "dev-1")
    before = store.read_bytes()
    r = lk("key", "generate", "--store", store, "--key", "dev-1")
    assert r.rc == 8 and "already exists" in r.err
    assert store.read_bytes() == before


@pytest.mark.parametrize("content,code,word", [
    (b"-----BEGIN PRIVATE KEY-----\nabc\n", 7, "not a latchkey key store"),
    (b"latchkey-keystore v9\nkey a ES256 AAAA\n", 7, "newer format"),
])
def test_foreign_store(lk, store, content, code, word):
    store.write_bytes(content)
    os.chmod(store, 0o600)
    r = lk("token", "--store", store, "--key", "k", "--aud", "p")
    assert r.rc == code and word in r.err, r


def test_corrupt_store(lk, store):
    gen(lk, store, "dev-1")
    data = bytearray(store.read_bytes())
    data[len(data) // 2] ^= 1
    store.write_bytes(bytes(data))
    r = lk("token", "--store", store, "--key", "dev-1", "--aud", "p")
    assert r.rc == 7 and "corrupt" in r.err
    store.write_bytes(bytes(data[: len(data) - 30]))
    r = lk("token", "--store", store, "--key", "dev-1", "--aud", "p")
    assert r.rc == 7 and "corrupt" in r.err


def test_store_readable_by_others_is_refused(lk, store):
    gen(lk, store, "dev-1")
    os.chmod(store, 0o644)
    r = lk("token", "--store", store, "--key", "dev-1", "--aud", "p")
    assert r.rc == 7 and "0600" in r.err


@pytest.mark.parametrize("args,word", [
    (("--ttl", "86401"), "--ttl"),
    (("--ttl", "0"), "--ttl"),
    (("--ttl", "12x"), "--ttl"),
    (("--alg", "HS256"), "--alg"),
    (("--now", "-5"), "--now"),
])
def test_bad_options(lk, store, args, word):
    gen(lk, store, "dev-1")
    r = lk("token", "--store", store, "--key", "dev-1", "--aud", "p", *args)
    assert r.rc == 2 and word in r.err, r
    assert r.out == ""


def test_alg_of_the_other_key_exits_10(lk, store):
    """--alg asserts the key's algorithm: a key of the other one exits 10, as latchkey-device
    does (docs/cli.md), not 2 (the option itself is valid)."""
    gen(lk, store, "dev-1")
    r = lk("token", "--store", store, "--key", "dev-1", "--aud", "p", "--alg", "RS256")
    assert r.rc == 10 and "is an ES256 key" in r.err and "LK_ERR_KEY_TYPE" in r.err, r
    assert r.out == ""


def test_missing_aud_and_key(lk, store):
    r = lk("token", "--store", store, "--key", "dev-1")
    assert r.rc == 2 and "--aud" in r.err
    r = lk("token", "--store", store, "--aud", "p")
    assert r.rc == 2 and "--key" in r.err


def test_token_too_large(lk, store):
    gen(lk, store, "dev-1")
    r = lk("token", "--store", store, "--key", "dev-1", "--aud", "p" * 3000)
    assert r.rc == 6 and "too large" in r.err and r.out == ""


def test_weak_rsa_refused(lk, store):
    r = lk("key", "generate", "--store", store, "--key", "d", "--alg", "RS256", "--bits", "1024")
    assert r.rc == 2 and "2048" in r.err


def test_invalid_key_name(lk, store):
    r = lk("key", "generate", "--store", store, "--key", "bad/name")
    assert r.rc == 2, r
    assert "bad/name" in r.err and "A-Za-z0-9" in r.err, r


@pytest.mark.parametrize("args,code", [
    (("--key", "bad/name"), 2),
    (("--key", "x" * 256), 2),
    (("--key", "k", "--alg", "HS256"), 2),
    (("--key", "k", "--alg", "RS256", "--bits", "1024"), 2),
    (("--key", "k", "--alg", "RS256", "--bits", "8192"), 2),
    (("--key", "k", "--bits", "2048"), 2),
    (("--key", "k", "--no-such-option"), 2),
])
def test_refused_generate_leaves_no_store(lk, tmp_path, args, code):
    """A refused `key generate` into a store that does not exist yet leaves no file behind
    (neither the store nor its lock)."""
    store = tmp_path / "new" / "keys.lks"
    store.parent.mkdir()
    r = lk("key", "generate", "--store", store, *args)
    assert r.rc == code, r
    assert r.out == ""
    assert list(store.parent.iterdir()) == [], list(store.parent.iterdir())
    # and the same store is created by the first key that is made
    r = lk("key", "generate", "--store", store, "--key", "k")
    assert r.rc == 0 and store.exists(), r


def test_generate_into_unwritable_directory_leaves_no_store(lk, tmp_path):
    """The directory may not be written (CAP_DAC_OVERRIDE dropped, as root ignores modes): the
    store cannot be locked or written; exit 1, and nothing is left behind."""
    import subprocess
    from conftest import BIN, Result
    d = tmp_path / "ro"
    d.mkdir()
    os.chmod(d, 0o500)
    cp = subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search",
                         str(BIN / "latchkey"), "key", "generate", "--store", str(d / "keys.lks"),
                         "--key", "k"], capture_output=True, text=True)
    r = Result(cp)
    assert r.rc == 1 and "LK_ERR_IO" in r.err, r
    assert list(d.iterdir()) == []


# ---- PKCS#11 (SoftHSM2) through the same tool ----

@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_pkcs11_token_verifies(lk, softhsm, tmp_path, alg):
    uri = softhsm.uri("dev-1")
    r = lk("key", "generate", "--key", uri, "--alg", alg, env=softhsm.env)
    assert r.rc == 0, r
    pub = serialization.load_pem_public_key(r.out.encode())
    r2 = lk("key", "public", "--key", uri, env=softhsm.env)
    assert r2.rc == 0 and r2.out == r.out
    tok = make_token(lambda *a: lk(*a, env=softhsm.env), "--key", uri)
    assert pyjwt_decode(tok, pub) == {"iat": NOW, "exp": NOW + 1200, "aud": "proj-1"}
    assert openssl_verify(tmp_path, tok, pub)
    # Never the PIN in any output.
    assert softhsm.pin not in r.err + r2.err


def test_pkcs11_failures(lk, softhsm, tmp_path):
    r = lk("key", "generate", "--key", softhsm.uri("dev-1"), env=softhsm.env)
    assert r.rc == 0, r
    r = lk("key", "generate", "--key", softhsm.uri("dev-1"), env=softhsm.env)
    assert r.rc == 8, r
    r = lk("token", "--key", softhsm.uri("dev-1", pin="9999"), "--aud", "p", env=softhsm.env)
    assert r.rc == 4 and "9999" not in r.err, r
    r = lk("token", "--key", softhsm.uri("nope"), "--aud", "p", env=softhsm.env)
    assert r.rc == 3, r
    r = lk("token", "--key", softhsm.uri("dev-1", module=tmp_path / "no-such-module.so"), "--aud", "p",
           env=softhsm.env)
    assert r.rc == 5, r
    r = lk("token", "--key", "pkcs11:token=other;object=dev-1?module-path=" + SOFTHSM_MODULE + "&pin-value=1234",
           "--aud", "p", env=softhsm.env)
    assert r.rc == 3, r


def test_pkcs11_key_list(lk, softhsm, tmp_path):
    """`key list --key pkcs11:URI` lists the key pairs of the token the URI names: LABEL, ALG, ID
    (RFC 7512 encoding: they paste into object= and id=); object=/id= narrow the list."""
    token = (f"pkcs11:token={softhsm.label}?module-path={SOFTHSM_MODULE}&pin-value={softhsm.pin}")
    r = lk("key", "list", "--key", token, env=softhsm.env)
    assert r.rc == 0 and r.out == "" and r.err == "", r           # an empty token
    for args in ((softhsm.uri("dev-1"),), (softhsm.uri("dev 2").replace("dev 2", "dev%202"), "--alg", "RS256"),
                 (softhsm.uri("dev-3").replace("object=dev-3", "object=dev-3;id=%01%a2"),)):
        g = lk("key", "generate", "--key", args[0], *args[1:], env=softhsm.env)
        assert g.rc == 0, g
    # a key latchkey cannot sign with (P-384), imported by SoftHSM's own tool
    k = ec.generate_private_key(ec.SECP384R1())
    (tmp_path / "p384.pem").write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                                        serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    subprocess.run(["softhsm2-util", "--import", str(tmp_path / "p384.pem"), "--token", softhsm.label,
                    "--label", "other", "--id", "07", "--pin", softhsm.pin], check=True,
                   capture_output=True, env={**os.environ, **softhsm.env})
    r = lk("key", "list", "--key", token, env=softhsm.env)
    assert r.rc == 0, r
    assert sorted(r.out.splitlines()) == sorted(["dev-1\tES256\t", "dev%202\tRS256\t",
                                                 "dev-3\tES256\t%01%a2", "other\tnone\t%07"]), r
    assert "'other' cannot sign for latchkey: EC key on a curve other than P-256" in r.err, r
    assert softhsm.pin not in r.out + r.err
    # each line names its key: object= and id= from it make a working key reference
    for line in r.out.splitlines():
        label, alg, kid = line.split("\t")
        if alg == "none":
            continue
        ref = f"pkcs11:token={softhsm.label};object={label}" + (f";id={kid}" if kid else "")
        p = lk("key", "public", "--key", ref + f"?module-path={SOFTHSM_MODULE}", env=softhsm.env)
        assert p.rc == 0, (line, p)
    # narrowed by object= or id=; the query (module, PIN) as for any key reference
    r = lk("key", "list", "--key", softhsm.uri("dev-1"), env=softhsm.env)
    assert r.rc == 0 and r.out == "dev-1\tES256\t\n", r
    r = lk("key", "list", "--key", token.replace("?", ";id=%01%a2?"), env=softhsm.env)
    assert r.rc == 0 and r.out == "dev-3\tES256\t%01%a2\n", r
    r = lk("key", "list", "--key", softhsm.uri("nope"), env=softhsm.env)
    assert r.rc == 0 and r.out == "", r
    # without the PIN the private keys are invisible: said so, exit 4
    r = lk("key", "list", "--key", f"pkcs11:token={softhsm.label}?module-path={SOFTHSM_MODULE}",
           env=softhsm.env)
    assert r.rc == 4 and "not logged in" in r.err and r.out == "", r
    # the PIN from the environment works as for the other commands
    r = lk("key", "list", "--key", f"pkcs11:token={softhsm.label}?module-path={SOFTHSM_MODULE}",
           env={**softhsm.env, "LATCHKEY_PKCS11_PIN": softhsm.pin})
    assert r.rc == 0 and len(r.out.splitlines()) == 4, r
    # another token, a wrong PIN, a store name given to --key
    r = lk("key", "list", "--key", token.replace(f"token={softhsm.label}", "token=nope"), env=softhsm.env)
    assert r.rc == 3, r
    r = lk("key", "list", "--key", token.replace(f"pin-value={softhsm.pin}", "pin-value=0000"),
           env=softhsm.env)
    assert r.rc == 4 and "CKR_PIN_INCORRECT" in r.err, r
    r = lk("key", "list", "--key", "dev-1", "--store", tmp_path / "s.lks")
    assert r.rc == 2 and "pkcs11:" in r.err, r


@pytest.mark.parametrize("sub,others", [
    ("generate", ("key public", "key list")),
    ("public", ("key generate", "key list")),
    ("list", ("key generate", "key public")),
])
def test_key_subcommand_help_is_its_own(lk, sub, others):
    r = lk("key", sub, "--help")
    assert r.rc == 0 and r.err == "", r
    assert r.out.startswith(f"usage: latchkey key {sub} "), r
    for o in others:
        assert f"latchkey {o}" not in r.out, f"`key {sub} --help` shows `{o}`: {r.out}"
    # the whole group only for `key --help`
    g = lk("key", "--help")
    assert g.rc == 0 and all(f"latchkey key {s}" in g.out for s in ("generate", "public", "list")), g


@pytest.mark.parametrize("args", [("token", "--help"), ("token", "create", "--help")])
def test_token_help_is_its_own(lk, args):
    r = lk(*args)
    assert r.rc == 0 and r.out.startswith("usage: latchkey token --key"), r
    assert "--credential" not in r.out, "`token --help` shows token verify's usage"


def test_version_both_tools(lk):
    a = lk("--version")
    b = lk("--version", binary="latchkey-device")
    assert a.rc == 0 and b.rc == 0, (a, b)
    va, vb = a.out.split(), b.out.split()
    assert va[0] == "latchkey" and vb[0] == "latchkey-device", (a, b)
    assert len(va) == len(vb) == 2 and va[1] == vb[1], (a, b)
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", va[1]), a
