"""Shared fixtures for latchkey's integration tests.

Everything is real: the tools from the build tree, SoftHSM2 tokens
initialised in temporary directories, Debian's PyJWT and cryptography as
independent checkers.
"""
import os
import subprocess
import shutil
from pathlib import Path

import pytest

import tool_api

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("LK_BIN_DIR", REPO / "build" / "bin"))
SOFTHSM_MODULE = os.environ.get("LK_SOFTHSM_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
SOFTHSM_UTIL = os.environ.get("LK_SOFTHSM_UTIL", shutil.which("softhsm2-util") or "softhsm2-util")
# The repository's own test vectors (tests/vectors/SOURCE.md), never a copy elsewhere.
VECTORS = REPO / "tests" / "vectors"
# `make test-valgrind` (tests/valgrind/run.sh): the broker and latchkeyd run under memcheck, each
# process's report in LK_VALGRIND_DIR, read afterwards for leaks and errors in latchkey's code.
VALGRIND_DIR = os.environ.get("LK_VALGRIND_DIR")


def valgrind_prefix():
    """The command that wraps a long-running server under `make test-valgrind`, else []."""
    if not VALGRIND_DIR:
        return []
    return ["valgrind", "--tool=memcheck", "--leak-check=full", "--show-leak-kinds=definite,indirect",
            "--errors-for-leak-kinds=definite,indirect", "--num-callers=40", "--track-fds=no",
            f"--log-file={VALGRIND_DIR}/vg.%p.log"]


def server_timeout(seconds):
    """A wait for a server, longer under valgrind (about 20 times slower)."""
    return seconds * 10 if VALGRIND_DIR else seconds


class Result:
    def __init__(self, cp):
        self.rc = cp.returncode
        self.out = cp.stdout
        self.err = cp.stderr

    def __repr__(self):
        return f"<rc={self.rc} out={self.out[:200]!r} err={self.err[:400]!r}>"


def tool_argv(*args, binary="latchkey", env=None):
    """The command line of a latchkey tool; with LK_TOOL_VIA_API=1, --db FILE
    becomes the admin API's options (tool_api.py)."""
    args = [str(a) for a in args]
    if tool_api.VIA_API and binary == "latchkey":
        args = tool_api.rewrite(args, env, BIN)
    return [str(BIN / binary), *args]


def run_tool(*args, env=None, input=None, binary="latchkey"):
    """Run a latchkey tool; returns Result with rc, out, err (text)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    cp = subprocess.run(tool_argv(*args, binary=binary, env=env), capture_output=True,
                        text=True, env=full_env, input=input, timeout=120)
    return Result(cp)


def integrity(db):
    """SQLite's own `PRAGMA integrity_check` of the database file db (read-only): [("ok",)] when sound."""
    import sqlite3
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("PRAGMA integrity_check").fetchall()
    finally:
        con.close()


def pytest_configure(config):
    config.addinivalue_line("markers", "db_only(reason): the test is about the registry database file "
                                       "itself; skipped when the tool runs through the API")


def pytest_runtest_setup(item):
    m = item.get_closest_marker("db_only")
    if m is not None and tool_api.VIA_API:
        pytest.skip(f"only with --db: {m.args[0] if m.args else 'the test is about the database file'}")


@pytest.fixture(autouse=True)
def _tool_api_daemons():
    """Through the API: the latchkeyd each test started is stopped after it."""
    yield
    if tool_api.VIA_API:
        tool_api.stop_all()


@pytest.fixture
def lk():
    return run_tool


@pytest.fixture
def store(tmp_path):
    return tmp_path / "keys.lks"


class SoftHSM:
    """A SoftHSM2 token of our own, in a temporary directory."""

    def __init__(self, base: Path, label="latchkey-test", pin="1234", so_pin="5678"):
        self.base = base
        self.label = label
        self.pin = pin
        (base / "tokens").mkdir(parents=True)
        self.conf = base / "softhsm2.conf"
        self.conf.write_text(f"directories.tokendir = {base / 'tokens'}\n"
                             "objectstore.backend = file\nlog.level = ERROR\n")
        self.env = {"SOFTHSM2_CONF": str(self.conf)}
        subprocess.run([SOFTHSM_UTIL, "--init-token", "--free", "--label", label,
                        "--so-pin", so_pin, "--pin", pin],
                       check=True, capture_output=True, env={**os.environ, **self.env})

    def uri(self, obj, pin=None, module=SOFTHSM_MODULE):
        pin = self.pin if pin is None else pin
        return (f"pkcs11:token={self.label};object={obj}"
                f"?module-path={module}&pin-value={pin}")


@pytest.fixture
def softhsm(tmp_path):
    return SoftHSM(tmp_path / "softhsm")


@pytest.fixture
def broker(tmp_path):
    """A running Mosquitto with latchkey's plugin (tests/integration/broker.py); stopped after."""
    from broker import Broker
    b = Broker(tmp_path / "broker")
    yield b
    b.stop()
