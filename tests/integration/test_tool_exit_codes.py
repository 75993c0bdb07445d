"""Exit codes: one table for both tools (issue 11, item 8).

- tools/common/exit.h is the only place that numbers an exit code; docs/cli.md documents
  exactly its codes; docs/device.md refers to that table instead of keeping one of its own;
  the codes a restart cannot fix are the same in exit.h, docs/cli.md and the device agent's packaged
  systemd unit (RestartPreventExitStatus).
- The same condition exits the same code in `latchkey` and `latchkey-device`: every key
  failure, the other algorithm than --alg, a missing or unreadable PIN file -- and for the
  agent its CA, events and state files -- each run with both tools where both take it.
- A file error names the file and the system's reason: "No such file or directory" versus
  "Permission denied" (root reads any file: the runs that need EACCES drop
  CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH with setpriv).
"""
import os
import re
import shutil
import socket
from pathlib import Path

import pytest

import broker as _harness
from conftest import BIN, REPO, SOFTHSM_MODULE, SoftHSM, run_tool

SRC = Path(os.environ.get("LK_SOURCE_DIR", REPO))
NO_DAC = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


def exit_table():
    text = (SRC / "tools/common/exit.h").read_text()
    return {name: int(v) for name, v in re.findall(r"\b(EXIT_[A-Z_]+) = ([0-9]+)", text)}


def documented_codes():
    doc = (SRC / "docs/cli.md").read_text()
    section = doc[doc.index("## Exit codes"):]
    section = section[:section.index("\n## ")] if "\n## " in section[3:] else section
    return {int(c) for c in re.findall(r"^\| ([0-9]+) \|", section, re.M)}, section


def no_restart_sets():
    header = (SRC / "tools/common/exit.h").read_text()
    m = re.search(r"restart cannot fix.*?:\s*((?:[0-9]+,?\s*)+)\.", header, re.S)
    in_header = {int(x) for x in re.findall(r"[0-9]+", m.group(1))}
    _, section = documented_codes()
    m = re.search(r"A restart cannot fix ([0-9, and]+):", section)
    in_doc = {int(x) for x in re.findall(r"[0-9]+", m.group(1))}
    unit = (SRC / "tools/latchkey-device/deploy/latchkey-device.service.in").read_text()
    m = re.search(r"^RestartPreventExitStatus=([0-9 ]+)$", unit, re.M)
    in_unit = {int(x) for x in m.group(1).split()}
    return in_header, in_doc, in_unit


def test_one_table_documented_once():
    table = exit_table()
    assert len(set(table.values())) == len(table), f"two names for one code: {table}"
    codes, _ = documented_codes()
    assert codes == set(table.values()), (f"docs/cli.md documents {sorted(codes)}, "
                                          f"tools/common/exit.h has {sorted(set(table.values()))}")
    # no tool numbers an exit code of its own
    for f in list((SRC / "tools").rglob("*.c")) + list((SRC / "tools").rglob("*.h")):
        if f.name == "exit.h":
            continue
        assert not re.search(r"\bEXIT_[A-Z_]+ = [0-9]+", f.read_text()), f"{f} numbers exit codes"
    # docs/device.md refers to the table; it keeps none of its own
    device = (SRC / "docs/device.md").read_text()
    assert "| code |" not in device and "docs/cli.md" in device


def test_no_restart_codes_agree():
    in_header, in_doc, in_unit = no_restart_sets()
    assert in_header == in_doc == in_unit, (in_header, in_doc, in_unit)
    assert {2, 3, 24, 30} <= in_unit
    assert not in_unit & {1, 31, 32, 33, 34}, "codes that may heal must be restarted"


def test_version_like_exit_codes_in_tools_help():
    """Each tool's --help and docs name the shared table."""
    r = run_tool("run", "--help", binary="latchkey-device")
    assert r.rc == 0 and "24" in r.out and "docs/cli.md" in r.out, r


# ---------------------------------------------------------------------------
# the same condition, the same code, in both tools

def closed_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("exit")
    hsm = SoftHSM(base / "softhsm", label="exitcodes", pin="4321")
    r = run_tool("key", "generate", "--key", hsm.uri("dev-1"), env=hsm.env)
    assert r.rc == 0, r
    store = base / "keys.lks"
    r = run_tool("key", "generate", "--store", store, "--key", "k")
    assert r.rc == 0, r
    (base / "tls").mkdir()
    ca, _, _ = _harness.make_tls(base / "tls")
    pin = base / "pin"
    pin.write_text("4321\n")
    os.chmod(pin, 0o600)
    return {"base": base, "hsm": hsm, "store": store, "ca": ca, "pin": pin}


def both(env, key_args, prefix=()):
    """The same key options given to `latchkey token` and to `latchkey-device run` (which
    fails before any traffic, or at its one attempt on a closed port: exit 32)."""
    lk = _run(prefix, "latchkey", ["token", "--aud", "p", *key_args], env)
    dev_args = ["--host", "127.0.0.1", "--port", str(closed_port()), "--ca", str(env["ca"]),
                "--project", "proj-1", "--region", "us-central1", "--registry", "reg-1",
                "--device", "dev-1", "--max-attempts", "1", *key_args]
    return lk, _run(prefix, "latchkey-device", dev_args, env)


def _run(prefix, tool, args, env):
    import subprocess
    from conftest import Result
    cp = subprocess.run([*prefix, str(BIN / tool), *map(str, args)], capture_output=True, text=True,
                        env={**os.environ, **env["hsm"].env}, timeout=60, stdin=subprocess.DEVNULL)
    return Result(cp)


def uri(env, obj="dev-1", query=None):
    h = env["hsm"]
    q = query if query is not None else f"module-path={SOFTHSM_MODULE}&pin-value={h.pin}"
    return f"pkcs11:token={h.label};object={obj}?{q}"


CONDITIONS = {
    # name: (key options, code, words the message must hold)
    "store key not found": (lambda e: ["--store", e["store"], "--key", "nope"], 3, ["no key 'nope'"]),
    "store missing": (lambda e: ["--store", e["base"] / "none.lks", "--key", "k"], 3, ["does not exist"]),
    "store too open": (lambda e: ["--store", e["open_store"], "--key", "k"], 7, ["0600"]),
    "store is a link": (lambda e: ["--store", e["link_store"], "--key", "k"], 24, ["LK_ERR_FILE_UNUSABLE"]),
    "store is a directory": (lambda e: ["--store", e["base"], "--key", "k"], 24, ["LK_ERR_FILE_UNUSABLE"]),
    "store key of the other algorithm": (lambda e: ["--store", e["store"], "--key", "k", "--alg", "RS256"],
                                         10, ["--alg RS256", "is an ES256 key"]),
    "token key of the other algorithm": (lambda e: ["--key", uri(e), "--alg", "RS256"], 10,
                                         ["--alg RS256", "is an ES256 key", "pin-value=***"]),
    "token object not found": (lambda e: ["--key", uri(e, "nope")], 3, ["no private key matches"]),
    "no such token": (lambda e: ["--key", uri(e).replace("token=exitcodes", "token=nope")], 3,
                      ["no initialized token"]),
    "wrong PIN": (lambda e: ["--key", uri(e, query=f"module-path={SOFTHSM_MODULE}&pin-value=9999")], 4,
                  ["CKR_PIN_INCORRECT"]),
    "module missing": (lambda e: ["--key", uri(e, query="module-path=/nonexistent/lib.so&pin-value=1")], 5,
                       ["dlopen"]),
    "malformed URI": (lambda e: ["--key", uri(e, query="x-what=1")], 2, ["unknown query attribute"]),
    "PIN file missing": (lambda e: ["--key", uri(e, query=f"module-path={SOFTHSM_MODULE}"
                                                          f"&pin-source=file:{e['base']}/no-pin")],
                         3, ["pin-source file", "/no-pin: No such file or directory"]),
    "PIN file is a directory": (lambda e: ["--key", uri(e, query=f"module-path={SOFTHSM_MODULE}"
                                                                 f"&pin-source={e['base']}")],
                                24, ["pin-source file", "not a regular file"]),
    "PIN file empty": (lambda e: ["--key", uri(e, query=f"module-path={SOFTHSM_MODULE}"
                                                       f"&pin-source={e['empty_pin']}")],
                       24, ["pin-source file", "first line is empty"]),
}


@pytest.fixture(scope="module")
def env_files(env):
    base = env["base"]
    open_store = base / "open.lks"
    shutil.copy(env["store"], open_store)
    os.chmod(open_store, 0o644)
    link_store = base / "link.lks"
    if not link_store.exists():
        link_store.symlink_to(env["store"])
    empty_pin = base / "empty-pin"
    empty_pin.write_text("")
    return {**env, "open_store": open_store, "link_store": link_store, "empty_pin": empty_pin}


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_same_condition_same_code(env_files, name):
    make_args, code, words = CONDITIONS[name]
    lk, dev = both(env_files, [str(a) for a in make_args(env_files)])
    for tool, r in (("latchkey", lk), ("latchkey-device", dev)):
        assert r.rc == code, f"{name}: {tool} exited {r.rc}, not {code}: {r!r}"
        for w in words:
            assert w in r.err, f"{name}: {tool}'s message lacks {w!r}: {r!r}"
        assert r.err.startswith(tool + ":"), r
        assert len(r.err.strip().splitlines()) == 1 or tool == "latchkey-device", r


def test_pin_file_permission_denied_both_tools(env_files):
    """A PIN file the process may not read: 24 in both, the file named, 'Permission denied'
    (not 'No such file'), which a restart would not fix."""
    pin = env_files["base"] / "locked-pin"
    pin.write_text("4321\n")
    os.chmod(pin, 0)
    key = ["--key", uri(env_files, query=f"module-path={SOFTHSM_MODULE}&pin-source=file:{pin}")]
    lk, dev = both(env_files, key, prefix=NO_DAC)
    for tool, r in (("latchkey", lk), ("latchkey-device", dev)):
        assert r.rc == 24, f"{tool}: {r!r}"
        assert f"pin-source file {pin}: Permission denied" in r.err, f"{tool}: {r!r}"
    # the control: with the capability, root reads it (so the refusal above was EACCES)
    lk, dev = both(env_files, key)
    assert lk.rc == 0 and dev.rc == 32, (lk, dev)


# ---------------------------------------------------------------------------
# latchkey-device's own files: --ca, --events, --state-file

def agent(env, *extra, ca=None, prefix=()):
    args = ["--host", "127.0.0.1", "--port", str(closed_port()), "--ca", str(ca or env["ca"]),
            "--project", "proj-1", "--region", "us-central1", "--registry", "reg-1",
            "--device", "dev-1", "--max-attempts", "1", "--store", str(env["store"]), "--key", "k",
            *map(str, extra)]
    return _run(prefix, "latchkey-device", args, env)


def test_ca_file_missing_exit_3(env_files):
    ca = env_files["base"] / "no-ca.crt"
    r = agent(env_files, ca=ca)
    assert r.rc == 3, r
    assert f"cannot read the CA file {ca}: No such file or directory" in r.err, r
    assert "LK_ERR_FILE_MISSING" in r.err, r


def test_ca_file_permission_denied_exit_24(env_files):
    ca = env_files["base"] / "locked-ca.crt"
    shutil.copy(env_files["ca"], ca)
    os.chmod(ca, 0)
    r = agent(env_files, ca=ca, prefix=NO_DAC)
    assert r.rc == 24, r
    assert f"cannot read the CA file {ca}: Permission denied" in r.err, r
    r = agent(env_files, ca=ca)       # control: readable with the capability
    assert r.rc == 32, r


def test_ca_file_without_certificate_exit_24(env_files):
    bad = env_files["base"] / "not-a-ca.crt"
    bad.write_text("not a certificate\n")
    r = agent(env_files, ca=bad)
    assert r.rc == 24 and "no usable certificate in the CA file" in r.err and str(bad) in r.err, r
    r = agent(env_files, ca=env_files["base"])      # a directory
    assert r.rc == 24, r


def test_events_and_state_files(env_files):
    base = env_files["base"]
    r = agent(env_files, "--events", base / "no-events")
    assert r.rc == 3 and f"--events {base}/no-events: No such file or directory" in r.err, r
    r = agent(env_files, "--state-file", base / "no-state")
    assert r.rc == 3 and f"--state-file {base}/no-state: No such file or directory" in r.err, r
    r = agent(env_files, "--state-file", base)
    assert r.rc == 24 and "Is a directory" in r.err, r
    locked = base / "locked-events"
    locked.write_text("a\n")
    os.chmod(locked, 0)
    r = agent(env_files, "--events", locked, prefix=NO_DAC)
    assert r.rc == 24 and f"--events {locked}: Permission denied" in r.err, r
    r = agent(env_files, "--state-file", locked, prefix=NO_DAC)
    assert r.rc == 24 and f"--state-file {locked}: Permission denied" in r.err, r
