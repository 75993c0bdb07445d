#!/usr/bin/python3
"""Compute, independently of the C core, the expected strings that
tests/cortexm/kat.c holds as literals. Run it and compare by eye:

    /usr/bin/python3 tests/cortexm/expected.py

The deterministic test signer of kat.c answers a digest d with d||d
(ES256, 64 bytes) or d repeated 8 times (RS256, 256 bytes).
JSON escaping follows lk_jwt.h: quote and backslash get a backslash, every
control character (< 0x20) becomes \\u00xx with lower-case hex, everything
else (valid UTF-8, DEL, '/') is copied.
"""
import base64
import hashlib

P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jstr(raw):
    out = ['"']
    for ch in raw.decode("utf-8"):
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20:
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def token(alg, claims):
    header = '{"alg":"%s","typ":"JWT"}' % alg
    body = "{" + ",".join('"%s":%s' % (k, v) for k, v in claims) + "}"
    signing_input = b64u(header.encode()) + "." + b64u(body.encode("utf-8"))
    d = hashlib.sha256(signing_input.encode()).digest()
    if alg == "ES256":
        assert 0 < int.from_bytes(d, "big") < P256_N, "digest not a valid scalar"
        sig = d * 2
    else:
        sig = d * 8
    return body, signing_input + "." + b64u(sig)


def c_literal(s, indent="    ", width=76):
    """s as C string-literal pieces, one per line, never splitting an escape."""
    b = s.encode("utf-8") if isinstance(s, str) else s
    pieces = []
    for c in b:
        if c in (0x22, 0x5C):
            pieces.append("\\" + chr(c))
        elif 0x20 <= c < 0x7F and chr(c) != "?":
            pieces.append(chr(c))
        else:
            pieces.append("\\%03o" % c)  # always 3 digits: safe before a digit
    lines, cur = [], ""
    for p in pieces:
        if len(cur) + len(p) > width - len(indent) - 2:
            lines.append(cur)
            cur = ""
        cur += p
    lines.append(cur)
    return "\n".join(indent + '"' + line + '"' for line in lines)


def show(name, s):
    n = len(s.encode("utf-8") if isinstance(s, str) else s)
    print("/* %d bytes */\nstatic const char %s[] =\n%s;" % (n, name, c_literal(s)))


# 1. lk_jwt_iotcore, ES256.
body, tok = token("ES256", [("iat", 1700000000), ("exp", 1700003600),
                            ("aud", jstr(b"my-project"))])
show("KAT_IOTCORE_JSON", body)
show("KAT_IOTCORE_TOKEN", tok)

# 2. lk_jwt_iotcore with an aud that needs escaping (a NUL inside it).
AUD2 = (b'a"b\\c\x00d\x01\x08\t\n\x0c\r\x1f\x7f/ '
        b'\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e')
body, tok = token("ES256", [("iat", 0), ("exp", 86400), ("aud", jstr(AUD2))])
show("KAT_ESCAPE_AUD", AUD2)
show("KAT_ESCAPE_JSON", body)
show("KAT_ESCAPE_TOKEN", tok)

# 3. lk_jwt_init / add_claim_* / finalize, RS256, 64-bit integers.
body, tok = token("RS256", [("sub", jstr(b"device-1")),
                            ("min", -9223372036854775808),
                            ("max", 9223372036854775807),
                            ("zero", 0), ("neg", -1)])
show("KAT_RS256_JSON", body)
show("KAT_RS256_TOKEN", tok)

# Base64url vectors (RFC 4648 section 10, plus the two url-safe characters).
for raw in [b"", b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar",
            b"\xfb\xff\xbf", b"\xfb\xff", b"\x00\x00\x00\xff"]:
    print("/* b64url %s -> \"%s\" */" % (c_literal(raw, indent=""), b64u(raw)))

# SHA-256 (FIPS 180-4 examples).
for name, m in [("abc", b"abc"),
                ("448", b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
                ("million", b"a" * 1000000), ("empty", b"")]:
    print("/* sha256 %s: %s */" % (name, hashlib.sha256(m).hexdigest()))
