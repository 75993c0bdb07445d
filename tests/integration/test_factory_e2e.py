"""Issue 17 end to end, with latchkey's own commands only (docs/provisioning.md).

The factory: `latchkey ca init` (root) and `ca intermediate`, the manufacturer's key generated in
a token (`latchkey key generate`, `key public`), `latchkey provision` of a batch of devices whose
keys are born in a SoftHSM2 token standing in for the chips. The customer: a registry whose CA is
the intermediate (IoT Core's rule: devices signed directly by a registry CA) and one whose CA is the
root (the manifest's chain goes through the intermediate), `registries signers add`, `devices import
--manifest`. Then each device connects to a real Mosquitto with latchkey's plugin with
`latchkey-device` and its token-held key, and a backend receives its event. Revocation: `ca
revoke` + `ca crl` + `registries crls add`, and a second batch holding the revoked device is refused
whole. Just-in-time: `key csr` in the token, `ca issue --csr`, `latchkey-device --x5c`, the backend's
`registered` message, `devices keys` showing the key used.

The only other programs are softhsm2-util (initialising the tokens, as a chip vendor does) and
python's paho/json to play the backend and read the manifest. About 5 s.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import BIN, SOFTHSM_MODULE, SOFTHSM_UTIL, run_tool
from plugin_common import PROJECT, REGION, close, connect, received, start_broker

pytestmark = pytest.mark.db_only("manifests, signers, CRLs and JIT are managed on the registry file")

P, L = PROJECT, REGION
AGENT = BIN / "latchkey-device"
NDEV = 5


class Factory:
    """A temporary directory with the CA directories, the tokens (SOFTHSM2_CONF of its own, in
    /dev/shm when there is one: SoftHSM2 rewrites its files on every change) and a PIN file."""

    def __init__(self):
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        self.dir = Path(tempfile.mkdtemp(prefix="lk-e2e-", dir=shm))
        (self.dir / "tokens").mkdir()
        conf = self.dir / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {self.dir / 'tokens'}\n"
                        "objectstore.backend = file\nlog.level = ERROR\n")
        self.env = {"SOFTHSM2_CONF": str(conf)}
        self.pin = self.dir / "pin"
        self.pin.write_text("1234\n")
        os.chmod(self.pin, 0o600)
        for label in ("factory", "manufacturer"):
            subprocess.run([SOFTHSM_UTIL, "--init-token", "--free", "--label", label, "--so-pin", "5678",
                            "--pin", "1234"], check=True, capture_output=True, env={**os.environ, **self.env})

    def uri(self, token, obj):
        return f"pkcs11:token={token};object={obj}?module-path={SOFTHSM_MODULE}&pin-source=file:{self.pin}"

    def lk(self, *args, ok=True):
        r = run_tool(*args, env=self.env)
        if ok:
            assert r.rc == 0, r
        return r

    def provision(self, batch, *ids):
        """`latchkey provision` of the device ids, into DIR/BATCH.jsonl: (path, device lines)."""
        (self.dir / f"{batch}.ids").write_text("".join(i + "\n" for i in ids))
        out = self.dir / f"{batch}.jsonl"
        r = self.lk("provision", "--ca", self.dir / "inter", "--token", self.uri("factory", "%s"),
                    "--batch", batch, "--ids", self.dir / f"{batch}.ids",
                    "--signer", self.uri("manufacturer", "signer"), "--manufacturer", "ACME Fab 1", "--out", out)
        assert f"batch {batch}: {len(ids)} devices in" in r.out, r
        lines = out.read_text().splitlines()
        assert json.loads(lines[0])["batch"] == batch
        return out, [json.loads(x) for x in lines[1:]]


class Customer:
    """The broker (the harness: TLS, random ports, its registry file) and its registries."""

    def __init__(self, b):
        self.b = b

    def loc(self, reg):
        return ["--registry", reg, "--project", P, "--region", L]

    def lk(self, *args, ok=True):
        r = self.b.lk(*args)
        if ok:
            assert r.rc == 0, r
        return r

    def registry(self, reg, ca_pem, signer_pub=None):
        self.lk("registries", "create", reg, "--project", P, "--region", L, "--public-key-path", ca_pem)
        if signer_pub:
            self.lk("registries", "signers", "add", "--label", "acme", "--path", signer_pub, *self.loc(reg))
        return reg

    def import_manifest(self, reg, manifest, ok=True):
        return self.lk("devices", "import", "--manifest", manifest, *self.loc(reg), ok=ok)

    def device_ids(self, reg):
        r = self.lk("devices", "list", *self.loc(reg), "--format", "json")
        return sorted(d["id"] for d in json.loads(r.out or "[]"))


def agent(fac, b, reg, dev, payload, *extra, key=None):
    """latchkey-device for dev with its key (default: labelled dev) in the factory token: one event,
    then it exits."""
    ev = fac.dir / f"{reg}-{dev}.events"
    ev.write_text(payload + "\n")
    return subprocess.Popen([str(AGENT), "--host", b.host, "--port", str(b.tls_port), "--ca", str(b.ca_path),
                             "--project", P, "--region", L, "--registry", reg, "--device", dev,
                             "--key", fac.uri("factory", key or dev), "--events", str(ev), "--exit-on-eof",
                             "--max-refusals", "1", "--max-attempts", "3", *map(str, extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **fac.env})


def wait_agents(procs, timeout=30):
    for dev, p in procs:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        assert p.returncode == 0, f"{dev}: rc={p.returncode}\n{out}\n{err}"


def backend(b, name):
    c = connect(b, f"{name}/t", b.backend(name), username=f"backend:{name}")
    assert b.subscribe(c, f"latchkey/{P}/#", 1) in (0, 1)
    return c


def topic(reg, dev, kind):
    return f"latchkey/{P}/{L}/{reg}/{dev}/{kind}"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    fac = Factory()
    b = start_broker(tmp_path_factory, "e2e", opts={"activity_flush": 1})
    try:
        # The factory's CA: a root, an intermediate that signs the devices.
        fac.lk("ca", "init", "--ca", fac.dir / "root", "--cn", "ACME root CA")
        fac.lk("ca", "intermediate", "--ca", fac.dir / "inter", "--parent", fac.dir / "root",
               "--cn", "ACME devices CA")
        # The manufacturer's key, born in its own token; its public key goes to the customer.
        fac.lk("key", "generate", "--key", fac.uri("manufacturer", "signer"))
        pub = fac.lk("key", "public", "--key", fac.uri("manufacturer", "signer")).out
        (fac.dir / "manufacturer.pub").write_text(pub)
        ids = [f"dev-{i}" for i in range(1, NDEV + 1)]
        manifest, lines = fac.provision("batch-1", *ids)
        yield fac, Customer(b), b, manifest, lines
    finally:
        b.stop()
        shutil.rmtree(fac.dir, ignore_errors=True)


def test_factory_to_first_connection(world):
    fac, cu, b, manifest, lines = world
    assert [d["deviceId"] for d in lines] == [f"dev-{i}" for i in range(1, NDEV + 1)]
    inter_pem = (fac.dir / "inter" / "ca.pem").read_text()
    # the factory's chain: the intermediate above each leaf, never the root
    assert all(d["chain"] == [inter_pem] for d in lines), lines[0]["chain"]

    # The customer trusts the intermediate (IoT Core's rule) and the manufacturer's key.
    reg = cu.registry("fab-inter", fac.dir / "inter" / "ca.pem", fac.dir / "manufacturer.pub")
    r = cu.import_manifest(reg, manifest)
    assert r.out.count("\tok") == NDEV and f"Imported {NDEV} devices of batch [batch-1]" in r.out, r
    assert cu.device_ids(reg) == sorted(d["deviceId"] for d in lines)
    d1 = json.loads(cu.lk("devices", "describe", "dev-1", *cu.loc(reg), "--format", "json").out)
    assert d1["credentials"][0]["publicKey"]["format"] == "ES256_X509_PEM"
    assert d1["metadata"] == {"se_serial": lines[0]["serial"], "manifest_batch": "batch-1"}, d1

    # Every device connects with its token-held key and its event reaches the backend.
    be = backend(b, "fab-app")
    try:
        procs = [(d["deviceId"], agent(fac, b, reg, d["deviceId"], f"hello from {d['deviceId']}"))
                 for d in lines]
        wait_agents(procs)
        for d in lines:
            dev = d["deviceId"]
            assert received(be, topic(reg, dev, "events"), f"hello from {dev}".encode(), timeout=5), dev
    finally:
        close(be)

    # Imported again: its devices exist now, the whole manifest is refused, nothing changes.
    r = cu.import_manifest(reg, manifest, ok=False)
    assert r.rc == 20 and "nothing was imported" in r.err, r


def test_same_batch_into_a_registry_of_the_root(world):
    """A registry whose CA is the root: each line's chain (the intermediate) leads there."""
    fac, cu, b, manifest, lines = world
    reg = cu.registry("fab-root", fac.dir / "root" / "ca.pem", fac.dir / "manufacturer.pub")
    r = cu.import_manifest(reg, manifest)
    assert r.out.count("\tok") == NDEV, r
    assert cu.device_ids(reg) == sorted(d["deviceId"] for d in lines)
    be = backend(b, "fab-root-app")
    try:
        wait_agents([("dev-2", agent(fac, b, reg, "dev-2", "via the root"))])
        assert received(be, topic(reg, "dev-2", "events"), b"via the root", timeout=5)
    finally:
        close(be)
    # A registry that trusts neither (another root) refuses the batch whole.
    fac.lk("ca", "init", "--ca", fac.dir / "other")
    reg = cu.registry("fab-other", fac.dir / "other" / "ca.pem", fac.dir / "manufacturer.pub")
    r = cu.import_manifest(reg, manifest, ok=False)
    assert r.rc == 20 and "nothing was imported" in r.err, r
    assert cu.device_ids(reg) == []
    # And one that does not trust the manufacturer's key refuses the signature.
    reg = cu.registry("fab-nosigner", fac.dir / "inter" / "ca.pem")
    r = cu.import_manifest(reg, manifest, ok=False)
    assert r.rc == 16, r
    assert cu.device_ids(reg) == []


def test_revoked_device_refuses_the_batch(world):
    """`ca revoke` one device of a second batch, `ca crl`, `registries crls add`: the manifest that
    holds it is refused whole, in a registry of the intermediate and in one of the root."""
    fac, cu, b, _, _ = world
    manifest, lines = fac.provision("batch-2", "rv-1", "rv-2")
    cert = fac.dir / "rv-1.pem"
    cert.write_text(lines[0]["certificate"])
    r = fac.lk("ca", "revoke", "--ca", fac.dir / "inter", "--cert", cert, "--reason", "keyCompromise")
    assert r.out.startswith("revoked ") and "(rv-1)" in r.out, r
    fac.lk("ca", "crl", "--ca", fac.dir / "inter", "--out", fac.dir / "inter.crl")

    reg = cu.registry("rv-inter", fac.dir / "inter" / "ca.pem", fac.dir / "manufacturer.pub")
    # Before the CRL the batch is accepted (dry run: nothing written)...
    r = cu.lk("devices", "import", "--manifest", manifest, "--dry-run", *cu.loc(reg))
    assert r.out.count("\tok") == 2, r
    # ...with it, refused whole, naming the revoked device.
    cu.lk("registries", "crls", "add", "--path", fac.dir / "inter.crl", *cu.loc(reg))
    r = cu.import_manifest(reg, manifest, ok=False)
    assert r.rc == 20 and "rv-1\trefused" in r.out and "revoked" in r.out and "rv-2\tok" in r.out, r
    assert "nothing was imported" in r.err, r
    assert cu.device_ids(reg) == []

    # A registry of the root holds the intermediate's CRL with the intermediate as its issuer chain.
    reg = cu.registry("rv-root", fac.dir / "root" / "ca.pem", fac.dir / "manufacturer.pub")
    cu.lk("registries", "crls", "add", "--path", fac.dir / "inter.crl",
          "--issuer-chain", fac.dir / "inter" / "chain.pem", *cu.loc(reg))
    r = cu.import_manifest(reg, manifest, ok=False)
    assert r.rc == 20 and "rv-1\trefused" in r.out, r
    assert cu.device_ids(reg) == []


def test_jit_first_connection_with_token_key(world):
    """A key born in the token, its CSR signed there, `ca issue --csr`; `latchkey-device --x5c`
    registers the device on its first connection to a registry with JIT on."""
    fac, cu, b, _, _ = world
    dev = "jit-1"
    fac.lk("key", "generate", "--key", fac.uri("factory", dev))
    csr = fac.dir / f"{dev}.csr"
    fac.lk("key", "csr", "--key", fac.uri("factory", dev), "--device-id", dev, "--out", csr)
    leaf = fac.dir / f"{dev}.pem"
    fac.lk("ca", "issue", "--ca", fac.dir / "inter", "--csr", csr, "--device-id", dev, "--out", leaf)
    chain = fac.dir / f"{dev}-chain.pem"
    chain.write_text(leaf.read_text() + (fac.dir / "inter" / "chain.pem").read_text())

    reg = cu.registry("fab-jit", fac.dir / "root" / "ca.pem")
    cu.lk("registries", "jit", "--enable", "--max-devices", "10", *cu.loc(reg))
    assert cu.device_ids(reg) == []
    be = backend(b, "jit-app")
    try:
        wait_agents([(dev, agent(fac, b, reg, dev, "first words", "--x5c", chain))])
        got = received(be, topic(reg, dev, "registered"), timeout=5)
        assert got, "no registered message"
        ev = json.loads(got[0].payload)
        assert ev["deviceId"] == dev and ev["via"] == "mqtt", ev
        assert received(be, topic(reg, dev, "events"), b"first words", timeout=5)
    finally:
        close(be)
    assert cu.device_ids(reg) == [dev]
    # `devices keys`: the certificate's key, recorded as the one it used (activity every second)
    deadline = time.time() + 8
    while True:
        (entry,) = json.loads(cu.lk("devices", "keys", dev, *cu.loc(reg), "--format", "json").out)
        if entry.get("lastKey") or time.time() > deadline:
            break
        time.sleep(0.3)
    assert entry["lastKey"]["sha256"] == ev["credentialSha256"] == entry["credentials"][0]["sha256"], entry
    assert entry["credentials"][0]["lastUsed"] and not entry["lastKey"].get("removed"), entry
    r = cu.lk("registries", "jit", "--show", *cu.loc(reg), "--format", "json")
    assert json.loads(r.out)["registered"] == "1", r


def test_provisioned_device_rotates_to_a_new_token_key(world):
    """docs/provisioning.md "Rotating a device's key", for a device of a manifest (a registry with CA
    certificates takes only certificates): the new key born in the token, its request signed there
    and certified, added as a second credential; the agent starts on the next key and the server
    accepts it at once (no refusal), `devices keys` shows it used, the old credential goes."""
    fac, cu, b, manifest, _ = world
    reg, dev = cu.registry("fab-rot", fac.dir / "inter" / "ca.pem", fac.dir / "manufacturer.pub"), "dev-3"
    cu.import_manifest(reg, manifest)
    k2 = f"{dev}-k2"
    fac.lk("key", "generate", "--key", fac.uri("factory", k2))
    fac.lk("key", "csr", "--key", fac.uri("factory", k2), "--device-id", dev, "--out", fac.dir / "k2.csr")
    fac.lk("ca", "issue", "--ca", fac.dir / "inter", "--csr", fac.dir / "k2.csr", "--device-id", dev,
           "--out", fac.dir / "k2.pem")
    # A bare key is refused in this registry; its certificate is taken.
    (fac.dir / "k2.pub").write_text(fac.lk("key", "public", "--key", fac.uri("factory", k2)).out)
    r = cu.lk("devices", "credentials", "create", dev, "--path", fac.dir / "k2.pub", "--type", "es256",
              *cu.loc(reg), ok=False)
    assert r.rc == 16 and "certificate" in r.err, r
    cu.lk("devices", "credentials", "create", dev, "--path", fac.dir / "k2.pem", "--type", "es256-x509",
          *cu.loc(reg))
    mark = len(b.log_text())
    p = agent(fac, b, reg, dev, "on the next key", "--next-key", fac.uri("factory", k2))
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0 and "the server accepted the next key" in err, (out, err)
    assert f"event=refused level=info device=projects/{P}/locations/{L}/registries/{reg}/devices/{dev} " \
        not in b.log_text()[mark:]
    deadline = time.time() + 8
    while True:
        (entry,) = json.loads(cu.lk("devices", "keys", dev, *cu.loc(reg), "--format", "json").out)
        used = [c["index"] for c in entry["credentials"] if c.get("lastUsed")]
        if 1 in used or time.time() > deadline:
            break
        time.sleep(0.3)
    assert entry["lastKey"]["sha256"] == entry["credentials"][1]["sha256"], entry
    cu.lk("devices", "credentials", "delete", dev, "0", *cu.loc(reg))
    # From now on the device's key is k2 (the old one is refused).
    wait_agents([(dev, agent(fac, b, reg, dev, "on k2 alone", key=k2))])
    old = agent(fac, b, reg, dev, "old key")
    out, err = old.communicate(timeout=30)
    assert old.returncode == 30, (old.returncode, err)
