"""No secret in any output (issue 11, item 3).

A PKCS#11 URI may carry the PIN (`pin-value=`). Both tools show key references in their
messages, and under systemd those messages land in the journal. Every error path of
`latchkey` and `latchkey-device` that can be reached with such a URI is run here with a
distinctive PIN, and standard output and standard error -- the agent's progress and event
lines included -- are scanned for it: it must never appear. Where a key reference is shown,
it is shown redacted (`pin-value=***`, lk_key_ref_redact).
"""
import os
import socket
import subprocess

import pytest

import broker as _harness
from conftest import BIN, SOFTHSM_MODULE, SoftHSM, run_tool

PIN = "Qz7PinSecret93"          # never a substring of anything else the tools print
WRONG_PIN = PIN + "0"           # a wrong PIN that still contains the distinctive one


def closed_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def hsm(tmp_path_factory):
    h = SoftHSM(tmp_path_factory.mktemp("secrets") / "softhsm", label="secrets", pin=PIN)
    r = run_tool("key", "generate", "--key", h.uri("dev-1"), env=h.env)
    assert r.rc == 0, r
    (h.base / "dev-1.pem").write_text(r.out)
    return h


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    base = tmp_path_factory.mktemp("secrets-tls")
    ca, _, _ = _harness.make_tls(base)
    return ca


def uris(h):
    """Every kind of key reference that goes wrong, each with the PIN in it."""
    m = SOFTHSM_MODULE
    return {
        "good": h.uri("dev-1"),
        "wrong-module": h.uri("dev-1", module="/nonexistent/libnope.so"),
        "relative-module": h.uri("dev-1", module="libsofthsm2.so"),
        "no-module": f"pkcs11:token={h.label};object=dev-1?pin-value={PIN}",
        "wrong-token": f"pkcs11:token=nope;object=dev-1?module-path={m}&pin-value={PIN}",
        "wrong-object": h.uri("nope"),
        "wrong-pin": h.uri("dev-1", pin=WRONG_PIN),
        "no-object": f"pkcs11:token={h.label}?module-path={m}&pin-value={PIN}",
        "unknown-attr": f"pkcs11:token={h.label};object=dev-1?module-path={m}&x-vendor=1&pin-value={PIN}",
        "bad-escape": f"pkcs11:token={h.label};object=dev%zz?module-path={m}&pin-value={PIN}",
        "pin-twice": f"pkcs11:token={h.label};object=dev-1?module-path={m}&pin-value={PIN}&pin-value={PIN}",
        "pin-and-source": (f"pkcs11:token={h.label};object=dev-1?module-path={m}&pin-value={PIN}"
                           f"&pin-source=/nonexistent/pin"),
        "module-name": f"pkcs11:token={h.label};object=dev-1?module-name=softhsm2&pin-value={PIN}",
        "pin-in-path": f"pkcs11:token={h.label};object=dev-1;pin-value={PIN}?module-path={m}",
        "upper-scheme": f"PKCS11:token={h.label};object=dev-1?module-path={m}&pin-value={PIN}",
        "scheme-typo": f"pkcs11;token={h.label};object=dev-1?module-path={m}&pin-value={PIN}",
        "space-before": f" pkcs11:token={h.label};object=dev-1?module-path={m}&pin-value={PIN}",
        "too-long": h.uri("dev-1") + "&x=" + "a" * 3000,
    }


def assert_no_pin(r, what):
    for name, text in (("stdout", r.out), ("stderr", r.err)):
        assert PIN not in text, f"{what}: the PIN is on {name}: {r!r}"


def lk_cases(h):
    u = uris(h)
    good = u["good"]
    cases = []
    for name, uri in u.items():
        gen = uri.replace("dev-1", "gen-x").replace("object=nope", "object=gen-y")
        cases += [
            (f"key generate {name}", ("key", "generate", "--key", gen)),
            (f"key generate RS256 {name}", ("key", "generate", "--key", gen, "--alg", "RS256")),
            (f"key public {name}", ("key", "public", "--key", uri)),
            (f"key list {name}", ("key", "list", "--key", uri)),
            (f"token {name}", ("token", "--key", uri, "--aud", "p")),
            (f"token create {name}", ("token", "create", "--key", uri, "--aud", "p", "--now", "1800000000")),
            (f"token --alg RS256 {name}", ("token", "--key", uri, "--aud", "p", "--alg", "RS256")),
            (f"token --store {name}", ("token", "--key", uri, "--store", "/nonexistent.lks", "--aud", "p")),
            (f"token no --aud {name}", ("token", "--key", uri)),
        ]
    cases += [
        ("key generate exists", ("key", "generate", "--key", good)),
        ("key generate weak RSA", ("key", "generate", "--key", good, "--alg", "RS256", "--bits", "1024")),
        ("key generate --bits ES256", ("key", "generate", "--key", good, "--bits", "2048")),
        ("key generate bad --alg", ("key", "generate", "--key", good, "--alg", "HS256")),
        ("--alg given the URI", ("token", "--key", good, "--aud", "p", "--alg", good)),
        ("--ttl given the URI", ("token", "--key", good, "--aud", "p", "--ttl", good)),
        ("token URI as an argument", ("token", good, "--aud", "p")),
        ("token URI after --key", ("token", "--key", good, good, "--aud", "p")),
        ("key URI as an argument", ("key", "public", good)),
        ("key subcommand is the URI", ("key", good)),
        ("misspelt option with =", ("token", "--kye=" + good, "--aud", "p")),
        ("misspelt option", ("token", "--kye", good, "--aud", "p")),
        ("key misspelt option with =", ("key", "public", "--kye=" + good)),
        ("option without value", ("token", "--aud", "p", "--key")),
        ("unknown command", (good,)),
        ("unknown command 2", ("keys", "--key", good)),
    ]
    return cases


def leaks(results):
    return [f"{what}: {r!r}" for what, r in results if PIN in r.out or PIN in r.err]


def test_latchkey_never_prints_the_pin(hsm):
    # the scheme is case-insensitive (RFC 3986): PKCS11: works as pkcs11: does
    ok = {f"{cmd} {name}" for cmd in ("key public", "key list", "token", "token create")
          for name in ("good", "upper-scheme")} | {"key generate good", "key generate wrong-object",
                                                  # a list that matches nothing, or the whole token
                                                  "key list wrong-object", "key list no-object"}
    results = [(what, run_tool(*args, env=hsm.env)) for what, args in lk_cases(hsm)]
    bad = leaks(results)
    assert not bad, f"{len(bad)} of {len(results)} runs printed the PIN:\n" + "\n".join(bad)
    for what, r in results:
        assert (r.rc == 0) == (what in ok), f"{what}: {r!r}"


def test_latchkey_environment_pin_never_printed(hsm):
    """LATCHKEY_PKCS11_PIN: wrong, and right, never on either stream."""
    m = SOFTHSM_MODULE
    uri = f"pkcs11:token={hsm.label};object=dev-1?module-path={m}"
    for pin in (PIN, WRONG_PIN):
        env = {**hsm.env, "LATCHKEY_PKCS11_PIN": pin}
        for args in (("token", "--key", uri, "--aud", "p"), ("key", "public", "--key", uri),
                     ("token", "--key", uri, "--aud", "p", "--alg", "RS256"),
                     ("key", "generate", "--key", uri)):
            assert_no_pin(run_tool(*args, env=env), f"{args} with LATCHKEY_PKCS11_PIN")


def test_shown_key_reference_is_redacted(hsm):
    """Where a message names the key, it shows the reference with the PIN replaced."""
    good = uris(hsm)["good"]
    r = run_tool("token", "--key", good, "--aud", "p", "--alg", "RS256", env=hsm.env)
    assert r.rc != 0 and "pin-value=***" in r.err and "object=dev-1" in r.err, r
    r = run_tool("token", good, "--aud", "p", env=hsm.env)
    assert r.rc == 2 and "pin-value=***" in r.err, r


def device_cases(h, ca):
    u = uris(h)
    base = ["--host", "127.0.0.1", "--port", str(closed_port()), "--ca", str(ca),
            "--project", "proj-1", "--region", "us-central1", "--registry", "reg-1",
            "--device", "dev-1", "--max-attempts", "1", "--backoff-max", "1"]
    cases = []
    for name, uri in u.items():
        cases += [
            (f"run {name}", ["run", *base, "--key", uri]),
            (f"run --alg RS256 {name}", [*base, "--key", uri, "--alg", "RS256"]),
            (f"run --store {name}", [*base, "--key", uri, "--store", "/nonexistent.lks"]),
            (f"run --module {name}", [*base, "--key", uri, "--module", "/nonexistent/lib.so"]),
            (f"run bad --ca {name}", ["--host", "127.0.0.1", "--ca", "/nonexistent/ca.crt",
                                      *base[4:], "--key", uri]),
        ]
    good = u["good"]
    cases += [
        ("run URI as an argument", [*base, "--key", good, good]),
        ("run misspelt option with =", [*base, "--kye=" + good]),
        ("run misspelt option", [*base, "--kye", good]),
        ("run --alg given the URI", [*base, "--key", good, "--alg", good]),
        ("run --format given the URI", [*base, "--key", good, "--format", good]),
        ("run --subfolder given the URI", [*base, "--key", good, "--subfolder", good]),
        ("run --device given the URI", [*base, "--key", good, "--device", good]),
        ("run --project given the URI", [*base, "--key", good, "--project", good]),
        ("run no --host", [*base[2:], "--key", good]),
        ("run --host given the URI", ["--host", good, *base[2:], "--key", good]),
        ("run --events given the URI", [*base, "--key", good, "--events", good]),
        ("run --state-file given the URI", [*base, "--key", good, "--state-file", good]),
        ("run --ca given the URI", ["--host", "127.0.0.1", "--ca", good, *base[4:], "--key", good]),
        ("simulate --key=URI", ["simulate", "--key=" + good, "--devices", "1", "--store", "x.lks"]),
        ("simulate URI as an argument", ["simulate", good, "--devices", "1", "--store", "x.lks"]),
        ("simulate --ca URI", ["simulate", "--devices", "1", "--store", "x.lks", "--host", "127.0.0.1",
                               "--ca", good, "--project", "p-1", "--region", "r", "--registry", "reg"]),
        ("simulate --store URI", ["simulate", "--devices", "1", "--store", good, "--host", "127.0.0.1",
                                  "--ca", "ca.crt", "--project", "p-1", "--region", "r", "--registry", "reg"]),
        ("simulate --create-keys URI", ["simulate", "--devices", "1", "--store", "/nonexistent/x.lks",
                                        "--create-keys", good]),
        ("simulate --prefix URI", ["simulate", "--prefix", good, "--devices", "1", "--store", "x.lks",
                                   "--create-keys", "-"]),
        ("unknown subcommand", [good]),
    ]
    return cases


def test_device_agent_never_prints_the_pin(hsm, tls, tmp_path):
    results = [(what, run_tool(*args, env=hsm.env, binary="latchkey-device"))
               for what, args in device_cases(hsm, tls)]
    bad = leaks(results)
    assert not bad, f"{len(bad)} of {len(results)} runs printed the PIN:\n" + "\n".join(bad)
    for what, r in results:
        assert r.rc != 0, f"{what}: expected a failure: {r!r}"


def test_device_agent_failed_event_redacted(hsm, tls):
    """A key that cannot sign (the other algorithm) fails in the client: its event line names the
    key, redacted."""
    good = uris(hsm)["good"]
    r = run_tool("--host", "127.0.0.1", "--port", closed_port(), "--ca", tls, "--project", "proj-1",
                 "--region", "us-central1", "--registry", "reg-1", "--device", "dev-1",
                 "--key", good, "--alg", "RS256", env=hsm.env, binary="latchkey-device")
    assert r.rc != 0, r
    assert_no_pin(r, "run --alg RS256")
    assert "pin-value=***" in r.err, r


def test_device_agent_live_never_prints_the_pin(hsm, broker):
    """The agent against the real broker with the PIN in its URI: connected, a config and a
    command arrive, it stops on SIGTERM; none of its lines holds the PIN."""
    import time
    d_id = "secret-dev"
    r = broker.lk("devices", "create", d_id, "--registry", broker.registry, "--project",
                  broker.project, "--region", broker.region, "--public-key",
                  f"path={hsm.base / 'dev-1.pem'},type=es256")
    assert r.rc == 0, r
    args = ["--host", broker.host, "--port", str(broker.tls_port), "--ca", str(broker.ca_path),
            "--project", broker.project, "--region", broker.region, "--registry", broker.registry,
            "--device", d_id, "--key", uris(hsm)["good"], "--state", "up"]
    p = subprocess.Popen([str(BIN / "latchkey-device"), *args], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={**os.environ, **hsm.env})
    try:
        deadline = time.time() + 20
        def connected():   # the plugin's event=connect line
            return any("latchkey: event=connect " in ln and f"/devices/{d_id} addr=" in ln
                       for ln in broker.log_text().splitlines())
        while time.time() < deadline and not connected():
            time.sleep(0.1)
        assert connected(), broker.log_text()[-2000:]
        p.stdin.write(b"event-1\n")
        p.stdin.flush()
        r = broker.lk("devices", "configs", "update", d_id, "--registry", broker.registry,
                      "--project", broker.project, "--region", broker.region,
                      "--config-data", "cfg-2")
        assert r.rc == 0, r
        time.sleep(1.5)
    finally:
        p.terminate()
        out, err = p.communicate(timeout=20)
    out, err = out.decode(), err.decode()
    assert "connected" in err, err
    assert "config: cfg-2" in out, (out, err)
    assert PIN not in out and PIN not in err, (out, err)
    assert PIN not in broker.log_text()
