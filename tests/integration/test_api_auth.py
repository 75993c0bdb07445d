"""latchkeyd's admin API: who gets in (docs/daemon.md, "Service accounts").

Two ways in, as Google's client libraries use a service-account key file: a self-signed JWT as
the Bearer token, or the RFC 7523 JWT-bearer grant at token_uri for an access token. Every
refusal is proven against a control: the same account, the same call, a good credential, 200.
Tokens are made with PyJWT and keys with python3-cryptography, never with latchkey's code.
"""
import time

import jwt
import pytest

from api_common import (GRANT, P, R, SCOPE, Api, ServiceAccount, delete_key, env, es256_key,  # noqa: F401
                        refused, registries_path, registry_path, rsa_key, service_account,
                        set_key_disabled)

CLOUDIOT_SCOPE = "https://www.googleapis.com/auth/cloudiot"


def works(api, token=None):
    r = api.get(registry_path(), token=token)
    assert r.status == 200 and r.json["id"] == R, r
    return r


def unauthenticated(api, token, *words):
    r = api.get(registry_path(), token=token)
    msg = refused(r, "UNAUTHENTICATED", *words)
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), r.headers
    return msg


# ---- no credential at all (no service account needed) ----

def test_no_authorization_header(env):
    r = env.anon.get(registry_path())
    refused(r, "UNAUTHENTICATED", "missing")
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")


@pytest.mark.parametrize("value", ["Basic YWRtaW46YWRtaW4=", "Token abc", "Bearer", "bearer",
                                   "Digest username=admin"])
def test_not_a_bearer_token(env, value):
    r = env.anon.get(registry_path(), headers={"Authorization": value})
    refused(r, "UNAUTHENTICATED")


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "....", "eyJhbGciOiJub25lIn0.e30.",
                                   "lkat_" + "A" * 43, "lkat_"])
def test_garbage_bearer(env, token):
    refused(env.anon.get(registry_path(), token=token), "UNAUTHENTICATED")


def test_token_longer_than_the_cap(env):
    big = env.admin_sa.jwt(extra={"pad": "x" * 5000})
    assert len(big) > 4096
    refused(env.anon.get(registry_path(), token=big), "UNAUTHENTICATED", "longer")


# ---- the grant's own refusals (OAuth errors, RFC 6749 §5.2) ----

def test_grant_wrong_grant_type(env):
    for gt in ("client_credentials", "password", GRANT + "x", ""):
        r = env.api.grant(grant_type=gt)
        assert r.status == 400 and r.json["error"] == "unsupported_grant_type", r
        assert r.headers.get("Cache-Control") == "no-store"


def test_grant_missing_assertion(env):
    r = env.api.grant(form={"grant_type": GRANT})
    assert r.status == 400 and r.json["error"] == "invalid_request", r
    r = env.api.grant(form={"grant_type": GRANT, "assertion": ""})
    assert r.status == 400 and r.json["error"] == "invalid_request", r


def test_grant_empty_or_garbled_body(env):
    for body in (b"", b"\x00\x01\x02", b"grant_type=%zz"):
        r = env.api.grant(form=body)
        assert r.status == 400 and r.json["error"] in ("invalid_request", "unsupported_grant_type"), (body, r)


def test_token_endpoint_takes_post_only(env):
    r = env.anon.raw_request("GET", "/token")
    assert r.status == 404 and r.code == "NOT_FOUND", r


# ---- the self-signed JWT ----

def test_self_signed_jwt_with_either_scope_or_an_audience(env):
    sa = env.admin_sa
    works(env.api)
    works(env.api, sa.jwt(scope=CLOUDIOT_SCOPE))
    works(env.api, sa.jwt(scope=f"openid {SCOPE} email"))
    works(env.api, sa.jwt(scope=None, aud="https://cloudiot.googleapis.com/"))


@pytest.mark.parametrize("case", ["expired", "future", "too_long_lived", "no_exp", "no_iat"])
def test_jwt_times(env, case):
    sa, now = env.admin_sa, int(time.time())
    works(env.api)
    tok = {
        "expired": lambda: sa.jwt(iat=now - 7200, ttl=3600),
        "future": lambda: sa.jwt(iat=now + 3600, ttl=600),
        "too_long_lived": lambda: sa.jwt(iat=now, ttl=3600 * 2),
        "no_exp": lambda: sa.jwt(drop=("exp",)),
        "no_iat": lambda: sa.jwt(drop=("iat",)),
    }[case]()
    unauthenticated(env.api, tok)


def test_jwt_clock_skew(env):
    """60 s of skew either way is allowed (docs/daemon.md); well past it is not."""
    sa, now = env.admin_sa, int(time.time())
    works(env.api, sa.jwt(iat=now + 30, ttl=600))
    works(env.api, sa.jwt(iat=now - 600, exp=now - 20))
    unauthenticated(env.api, sa.jwt(iat=now + 300, ttl=600))
    unauthenticated(env.api, sa.jwt(iat=now - 900, exp=now - 300))
    unauthenticated(env.api, sa.jwt(iat=now, exp=now - 10))             # exp before iat


def test_access_token_lifetime_is_the_configured_one(tmp_path):
    from api_common import Env
    e = Env(tmp_path / "lkd", extra=["--access-token-ttl", "120"])
    try:
        r = e.api.grant()
        assert r.status == 200 and r.json["expires_in"] == 120, r
        works(e.api, r.json["access_token"])
    finally:
        e.stop()


def test_jwt_wrong_kid(env):
    works(env.api)
    sa = env.admin_sa
    unauthenticated(env.api, sa.jwt(kid="0" * 40), "no service-account key")
    unauthenticated(env.api, sa.jwt(kid=sa.key_id.upper()))
    unauthenticated(env.api, sa.jwt(kid=""))
    tok = jwt.encode({"iss": sa.email, "sub": sa.email, "scope": SCOPE, "iat": int(time.time()),
                      "exp": int(time.time()) + 600}, sa.private_key, algorithm="RS256")
    unauthenticated(env.api, tok, "kid")   # no kid at all


def test_jwt_wrong_issuer_or_subject(env):
    works(env.api)
    sa = env.admin_sa
    other = env.as_role("viewer").sa
    unauthenticated(env.api, sa.jwt(iss=other.email, sub=other.email))
    unauthenticated(env.api, sa.jwt(iss="someone@proj-one.iam.latchkey"))
    unauthenticated(env.api, sa.jwt(sub="someone@proj-one.iam.latchkey"))
    unauthenticated(env.api, sa.jwt(drop=("iss",)))


def test_jwt_without_scope_or_audience(env):
    works(env.api)
    sa = env.admin_sa
    unauthenticated(env.api, sa.jwt(scope=None))
    unauthenticated(env.api, sa.jwt(scope="https://www.googleapis.com/auth/pubsub"))
    unauthenticated(env.api, sa.jwt(scope=None, aud="https://pubsub.googleapis.com/"))
    # the token endpoint's audience buys an access token; it is not an API credential itself
    unauthenticated(env.api, sa.jwt(scope=None, aud=sa.token_uri))


def test_jwt_wrong_signature(env):
    works(env.api)
    sa = env.admin_sa
    stranger, _ = rsa_key()
    unauthenticated(env.api, sa.jwt(key=stranger))
    good = sa.jwt()
    head, body, sig = good.split(".")
    flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    unauthenticated(env.api, f"{head}.{body}.{flipped}")
    unauthenticated(env.api, f"{head}.{body}.")
    other_body = jwt.encode({"x": 1}, "k", algorithm="HS256").split(".")[1]
    unauthenticated(env.api, f"{head}.{other_body}.{sig}")


def test_jwt_other_algorithms(env):
    works(env.api)
    sa = env.admin_sa
    ec_priv, _ = es256_key()
    unauthenticated(env.api, sa.jwt(key=ec_priv, alg="ES256"))
    # HS256 keyed with the public key (the classic confusion), and alg none
    pub_pem = sa.private_key.public_key().public_bytes(
        __import__("cryptography.hazmat.primitives.serialization", fromlist=["x"]).Encoding.PEM,
        __import__("cryptography.hazmat.primitives.serialization", fromlist=["x"]).PublicFormat
        .SubjectPublicKeyInfo)
    claims = {"iss": sa.email, "sub": sa.email, "scope": SCOPE, "iat": int(time.time()),
              "exp": int(time.time()) + 600}
    import base64
    import hashlib
    import hmac
    import json

    def b64u(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    h = b64u(json.dumps({"alg": "HS256", "typ": "JWT", "kid": sa.key_id}).encode())
    p = b64u(json.dumps(claims).encode())
    s = b64u(hmac.new(pub_pem, f"{h}.{p}".encode(), hashlib.sha256).digest())
    unauthenticated(env.api, f"{h}.{p}.{s}")
    h = b64u(json.dumps({"alg": "none", "kid": sa.key_id}).encode())
    unauthenticated(env.api, f"{h}.{p}.")
    unauthenticated(env.api, sa.jwt(alg="RS512"))
    unauthenticated(env.api, sa.jwt(alg="PS256"))


def test_a_device_token_is_refused(env):
    """A device's ES256 JWT with aud = project, as the broker accepts it, never opens the admin API."""
    works(env.api)
    priv, pem = es256_key()
    r = env.api.create_device("dev-tok", credentials=[{"publicKey": {"format": "ES256_PEM", "key": pem}}])
    assert r.status == 200, r
    now = int(time.time())
    device_token = jwt.encode({"iat": now, "exp": now + 3600, "aud": P}, priv, algorithm="ES256")
    unauthenticated(env.api, device_token)
    r = env.api.grant(assertion=device_token)
    assert r.status == 400 and r.json["error"] == "invalid_grant", r
    # nor with the device's key dressed as a service account's
    dressed = jwt.encode({"iat": now, "exp": now + 3600, "aud": P, "iss": env.admin_sa.email,
                          "sub": env.admin_sa.email, "scope": SCOPE}, priv, algorithm="ES256",
                         headers={"kid": env.admin_sa.key_id})
    unauthenticated(env.api, dressed)
    works(env.api)


# ---- the grant ----

def test_grant_gives_an_access_token(env):
    r = env.api.grant()
    assert r.status == 200, r
    body = r.json
    assert set(body) >= {"access_token", "expires_in", "token_type"}, body
    assert body["token_type"] == "Bearer" and 0 < body["expires_in"] <= 3600, body
    assert r.headers.get("Cache-Control") == "no-store"
    works(env.api, body["access_token"])
    # a second grant: another token; both live
    r2 = env.api.grant()
    assert r2.status == 200 and r2.json["access_token"] != body["access_token"], r2
    works(env.api, body["access_token"])
    works(env.api, r2.json["access_token"])
    # the access token with one character changed is unknown
    t = body["access_token"]
    unauthenticated(env.api, t[:-1] + ("A" if t[-1] != "A" else "B"), "unknown")


def test_grant_refusals(env):
    sa = env.admin_sa
    assert env.api.grant().status == 200
    bad = {
        "api audience": sa.jwt(aud="https://cloudiot.googleapis.com/", scope=None),
        "scope only": sa.jwt(scope=SCOPE),
        "other token_uri": sa.assertion(aud="https://127.0.0.1:1/token"),
        "expired": sa.assertion(iat=int(time.time()) - 7200),
        "too long": sa.assertion(ttl=7200),
        "wrong key": sa.assertion(key=rsa_key()[0]),
        "wrong kid": sa.assertion(kid="f" * 40),
        "wrong iss": sa.assertion(iss="x@proj-one.iam.latchkey"),
        "ES256": sa.assertion(key=es256_key()[0], alg="ES256"),
        "garbage": "not.a.jwt",
    }
    for what, assertion in bad.items():
        r = env.api.grant(assertion=assertion)
        assert r.status == 400 and r.json["error"] == "invalid_grant", (what, r)
        assert "access_token" not in r.json


def test_grant_is_not_an_api_path(env):
    """The access token works on the API only; the API does not take the grant's form."""
    tok = env.api.access_token()
    r = env.api.call("POST", registries_path(), raw=b"grant_type=x", token=tok,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    refused(r, "INVALID_ARGUMENT")


# ---- keys disabled and deleted ----

@pytest.mark.parametrize("mode", ["jwt", "token"])
def test_disabled_key(env, mode):
    viewer = env.as_role("viewer", mode=mode)
    early_access = viewer.access_token()          # issued before the key is disabled
    works(viewer)
    works(viewer, early_access)
    set_key_disabled(env.daemon.db, viewer.sa.key_id, True)
    unauthenticated(viewer, viewer.sa.jwt(), "disabled")
    unauthenticated(viewer, early_access, "disabled")
    r = viewer.grant()
    assert r.status == 400 and r.json["error"] == "invalid_grant", r
    works(env.api)                                 # other keys unaffected
    set_key_disabled(env.daemon.db, viewer.sa.key_id, False)
    works(viewer, viewer.sa.jwt())
    works(viewer, early_access)


def test_deleted_key(env):
    viewer = env.as_role("viewer")
    early_access = viewer.access_token()
    works(viewer)
    works(viewer, early_access)
    delete_key(env.daemon.db, viewer.sa.key_id)
    unauthenticated(viewer, viewer.sa.jwt(), "no service-account key")
    unauthenticated(viewer, early_access)
    r = viewer.grant()
    assert r.status == 400 and r.json["error"] == "invalid_grant", r


def test_access_tokens_die_with_the_daemon(env):
    """Access tokens live in memory: a restart forgets them; clients fetch a new one on 401."""
    tok = env.api.access_token()
    works(env.api, tok)
    env.daemon.stop()
    env.daemon.start()
    env.admin_sa.token_uri = env.daemon.token_uri
    unauthenticated(env.api, tok)
    works(env.api, env.api.access_token(refresh=True))


# ---- both ways of making the account ----

@pytest.mark.parametrize("via", ["sql", "tool"])
def test_account_made_either_way(env, via):
    sa = service_account(env.daemon, f"made-{via}", "viewer", via=via)
    info = sa.info
    assert info["type"] == "service_account" and info["project_id"] == P
    assert info["client_email"] == f"made-{via}@{P}.iam.latchkey"
    assert len(info["private_key_id"]) == 40 and int(info["private_key_id"], 16) >= 0
    assert info["private_key_id"] == info["private_key_id"].lower()
    assert info["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert info["token_uri"] == env.daemon.token_uri
    for mode in ("jwt", "token"):
        works(Api(env.daemon, ServiceAccount(sa.key_file), mode))


# ---- the log ----

def test_the_log_never_holds_a_token(env):
    sa = env.admin_sa
    tokens = [sa.jwt(), sa.jwt(iat=int(time.time()) - 7200), sa.jwt(key=rsa_key()[0]), sa.jwt(kid="0" * 40)]
    assertions = [sa.assertion(), sa.assertion(aud="https://x/token")]
    for t in tokens:
        env.api.get(registry_path(), token=t)
        env.api.get(registry_path(), token=t + "x")
    access = []
    for a in assertions:
        r = env.api.grant(assertion=a)
        if r.status == 200:
            access.append(r.json["access_token"])
    assert access, "no access token was issued"
    works(env.api, access[0])
    set_key_disabled(env.daemon.db, sa.key_id, True)
    env.api.get(registry_path(), token=access[0])
    set_key_disabled(env.daemon.db, sa.key_id, False)
    env.daemon.stop()
    log = env.daemon.log_text()
    for t in tokens + assertions + access:
        assert t not in log, "a token is in latchkeyd's log"
        for part in t.split("."):
            if len(part) >= 16:
                assert part not in log, "a part of a token is in latchkeyd's log"
    assert "PRIVATE KEY" not in log
    env.daemon.start()   # the fixture stops it again


def _raw_jwt(sa, header_json, payload_json):
    """A JWT whose header and payload are exactly these texts, signed RS256 with sa's key."""
    import base64
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    def b64u(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    h, p = b64u(header_json.encode()), b64u(payload_json.encode())
    sig = sa.private_key.sign(f"{h}.{p}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{h}.{p}.{b64u(sig)}"


def test_jwt_header_and_claim_strictness(env):
    """As strict as device tokens: header parameters that fetch or embed keys, crit, duplicate
    names, claims of the wrong type, a padded segment: all refused, even with a good signature."""
    import json
    sa, now = env.admin_sa, int(time.time())
    claims = {"iss": sa.email, "sub": sa.email, "scope": SCOPE, "iat": now, "exp": now + 600}
    hdr = {"alg": "RS256", "kid": sa.key_id}
    c = json.dumps(claims)

    def h(**kw):
        return json.dumps(dict(hdr, **kw))
    works(env.api, _raw_jwt(sa, h(typ="JWT"), c))
    works(env.api, _raw_jwt(sa, h(), json.dumps(dict(claims, aud=["https://cloudiot.googleapis.com/"]))))
    refused_tokens = {
        "crit": _raw_jwt(sa, h(crit=["exp"]), c),
        "jku": _raw_jwt(sa, h(jku="https://evil.example/keys"), c),
        "jwk": _raw_jwt(sa, h(jwk={"kty": "RSA", "n": "AQAB", "e": "AQAB"}), c),
        "x5u": _raw_jwt(sa, h(x5u="https://evil.example/cert"), c),
        "duplicate kid": _raw_jwt(sa, '{"alg":"RS256","kid":"%s","kid":"%s"}' % ("0" * 40, sa.key_id), c),
        "duplicate alg": _raw_jwt(sa, '{"alg":"none","alg":"RS256","kid":"%s"}' % sa.key_id, c),
        "duplicate iss": _raw_jwt(sa, h(), c[:-1] + ', "iss": "other@proj-one.iam.latchkey"}'),
        "kid a number": _raw_jwt(sa, json.dumps({"alg": "RS256", "kid": 12}), c),
        "payload array": _raw_jwt(sa, h(), "[1]"),
        "iat a string": _raw_jwt(sa, h(), json.dumps(dict(claims, iat=str(now)))),
        "exp a float": _raw_jwt(sa, h(), json.dumps(dict(claims, exp=now + 600.5))),
        "scope a list": _raw_jwt(sa, h(), json.dumps(dict(claims, scope=[SCOPE]))),
    }
    good = _raw_jwt(sa, h(), c).split(".")
    refused_tokens["padded segment"] = good[0] + "=." + good[1] + "." + good[2]
    refused_tokens["four segments"] = ".".join(good + ["x"])
    for what, tok in refused_tokens.items():
        r = env.api.get(registry_path(), token=tok)
        assert r.status == 401 and r.code == "UNAUTHENTICATED", (what, r)
    works(env.api, _raw_jwt(sa, h(), c))
