"""latchkey-device, the agent (docs/device.md), against a real Mosquitto with latchkey's plugin.

Each test runs the agent as a process (standard input to events, standard output for config and
commands, standard error for progress) and watches three things: what a backend application
(username `backend:NAME`, subscribed to latchkey/P/#) receives downstream, what the broker log
says (connects, refusals, closes), and the agent's own output and exit code.

  - events (with a subfolder) and state arrive downstream; --count N and --exit-on-eof end with 0;
  - config updates and commands reach standard output, as text (escaped) and as JSON;
  - the token is refreshed across its expiry (plugin skew 0, lifetime 10 s) without losing a QoS 1
    message and without a refusal;
  - a broker that goes away and comes back: growing, jittered backoff, then reconnect and delivery
    of what was queued meanwhile; a backlog of 300 events delivered in full (paced to the server's
    100 messages/s, beyond which the plugin, like IoT Core, drops messages);
  - a server certificate from another CA, or for another host: exit 31, every attempt reported as
    a certificate failure, the CONNECT (and so the token) never reaches the broker;
  - a revoked credential or a blocked device: exit 30, a handful of refused attempts, not more;
  - command-line errors (exit 2), an unknown key (3), an unreachable server (32), stopping with
    undelivered messages (33), a line over 256 KiB (34);
  - no token in any output, ever (checked after every test).

The agent's progress lines are matched loosely, on key words ("connected", "refused",
"next attempt in X s", "certificate"); their exact wording is the agent's.
"""
import base64
import datetime
import ipaddress
import json
import math
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import broker as _harness
from conftest import BIN
from plugin_common import PROJECT, backend_secret, close, connect, received, start_broker

AGENT = BIN / "latchkey-device"

# Exit codes (docs/device.md)
EXIT_OK, EXIT_USAGE, EXIT_KEY_NOT_FOUND = 0, 2, 3
EXIT_REFUSED, EXIT_TLS, EXIT_NETWORK, EXIT_UNDELIVERED, EXIT_INPUT = 30, 31, 32, 33, 34

BACKOFF_RE = re.compile(r"next attempt in ([0-9]+(?:\.[0-9]+)?) ?s", re.I)
CONNECTED_RE = re.compile(r"\bconnected\b", re.I)
REFRESH_RE = re.compile(r"refresh|expires soon", re.I)
TOKEN_RE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}")
LONG_B64_RE = re.compile(r"[A-Za-z0-9_-]{80,}")   # a JWT signature is 86 characters


# ---------------------------------------------------------------------------
# The agent as a process

class Agent:
    """latchkey-device ARGS with its standard input a pipe (unless stdin is given); standard
    output and error are read line by line by threads, each line stamped with time.time()."""

    live = []

    def __init__(self, args, stdin=subprocess.PIPE):
        if not AGENT.exists():
            pytest.fail(f"{AGENT} is not built (set LK_BIN_DIR)")
        self.args = [str(a) for a in args]
        self.cond = threading.Condition()
        self.out, self.err = [], []          # [(time, line)]
        self._eof = 0
        self.t0 = time.time()
        self.proc = subprocess.Popen([str(AGENT), *self.args], stdin=stdin,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for f, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(f, lines), daemon=True).start()
        Agent.live.append(self)

    def _read(self, f, lines):
        for raw in iter(f.readline, b""):
            with self.cond:
                lines.append((time.time(), raw.rstrip(b"\n").decode("utf-8", "replace")))
                self.cond.notify_all()
        with self.cond:
            self._eof += 1
            self.cond.notify_all()

    # -- input --

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.proc.stdin.write(data + b"\n")
        self.proc.stdin.flush()

    def close_stdin(self):
        if self.proc.stdin is None:
            return
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass

    # -- output --

    def err_text(self):
        with self.cond:
            return "\n".join(l for _, l in self.err)

    def out_text(self):
        with self.cond:
            return "\n".join(l for _, l in self.out)

    def dump(self):
        return (f"\n--- latchkey-device {' '.join(self.args)}\n--- rc={self.proc.poll()}"
                f"\n--- stdout:\n{self.out_text()[-3000:]}\n--- stderr:\n{self.err_text()[-5000:]}")

    def wait_line(self, which, pattern, timeout, after=0):
        """The first line (index >= after) of stdout/stderr matching pattern: (index, match, t).
        Fails when the timeout passes or the agent exits without printing it."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        lines = self.out if which == "out" else self.err
        deadline = time.time() + timeout
        with self.cond:
            while True:
                for i in range(after, len(lines)):
                    m = rx.search(lines[i][1])
                    if m:
                        return i, m, lines[i][0]
                if self._eof == 2 and self.proc.poll() is not None:
                    raise AssertionError(f"agent exited without printing /{rx.pattern}/" + self.dump())
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError(f"no /{rx.pattern}/ on std{which} within {timeout} s"
                                         + self.dump())
                self.cond.wait(min(left, 0.2))

    def wait_err(self, pattern, timeout=20, after=0):
        return self.wait_line("err", pattern, timeout, after)

    def wait_out(self, pattern, timeout=10, after=0):
        return self.wait_line("out", pattern, timeout, after)

    def wait_connected(self, timeout=30, after=0):
        return self.wait_err(CONNECTED_RE, timeout, after)

    def wait_exit(self, timeout):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"agent still running after {timeout} s" + self.dump())
        with self.cond:     # let the readers drain the pipes
            deadline = time.time() + 5
            while self._eof < 2 and time.time() < deadline:
                self.cond.wait(0.1)
        return rc

    def stop(self, timeout=15):
        """SIGTERM; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.close_stdin()

    def backoffs(self, after=0, before=None):
        """[(index, time, delay_s)] of the 'next attempt in X s' lines."""
        with self.cond:
            lines = list(self.err)
        end = len(lines) if before is None else before
        return [(i, t, float(m.group(1))) for i, (t, l) in enumerate(lines[:end])
                if i >= after and (m := BACKOFF_RE.search(l))]


def assert_no_token(agent):
    for name, text in (("stdout", agent.out_text()), ("stderr", agent.err_text())):
        assert not TOKEN_RE.search(text), f"a token-like string (eyJ...) on {name}" + agent.dump()
        assert not LONG_B64_RE.search(text), f"a signature-like base64url run on {name}" + agent.dump()


def assert_progress_lines(agent):
    """docs/device.md: progress goes to standard error, one line each, starting `latchkey-device:`."""
    with agent.cond:
        bad = [l for _, l in agent.err if not l.startswith("latchkey-device")]
    assert not bad, f"stderr lines not starting with 'latchkey-device:': {bad[:5]}" + agent.dump()


@pytest.fixture(autouse=True)
def _agents_cleanup():
    """Every agent a test started is killed after it, and none may have printed a token."""
    Agent.live = []
    yield
    agents, Agent.live = Agent.live, []
    for a in agents:
        a.kill()
    for a in agents:
        a.wait_exit(5)
        if os.environ.get("LK_AGENT_VERBOSE"):      # for debugging: every agent's output
            print(a.dump())
        assert_no_token(a)


# ---------------------------------------------------------------------------
# Brokers, devices, backends

@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = start_broker(tmp_path_factory, "agent")
    yield b
    b.stop()


_n = [0]


def new_device(b, prefix="agent"):
    _n[0] += 1
    return b.device(f"{prefix}-{_n[0]}")


def uniq(tag):
    return f"{tag}-{os.urandom(4).hex()}"


_secrets = {}


def backend(b, name=None, project=PROJECT):
    """A backend client (plain port) subscribed to latchkey/P/#."""
    key = (str(b.base), name or "be")
    if key not in _secrets:
        _secrets[key] = (name or f"be-{os.urandom(3).hex()}",)
        _secrets[key] += (backend_secret(b, _secrets[key][0], project),)
    bname, secret = _secrets[key]
    c = connect(b, f"{bname}/client-{os.urandom(3).hex()}", secret, username=f"backend:{bname}")
    assert b.subscribe(c, f"latchkey/{project}/#", 1) == 1
    return c


def payloads(c, topic):
    with c.got:
        return [m.payload for m in c.messages if m.topic == topic]


def wait_payloads(c, topic, want, timeout=10):
    """Wait until every payload of want (bytes) has arrived on topic; returns what arrived."""
    deadline = time.time() + timeout
    want = set(want)
    while True:
        got = payloads(c, topic)
        if want <= set(got) or time.time() > deadline:
            return got
        with c.got:
            c.got.wait(0.2)


def agent_args(b, d, *extra, host=None, port=None, ca=None, cmd=()):
    return [*cmd, "--host", host or b.host, "--port", port or b.tls_port, "--ca", ca or b.ca_path,
            "--project", d.project, "--region", d.region, "--registry", d.registry,
            "--device", d.id, "--key", d.key, "--store", d.store, *extra]


def log_lines(b, *needles, after=0):
    return [l for l in b.log_text()[after:].splitlines() if all(n in l for n in needles)]


def device_connects(b, d, after=0):
    return log_lines(b, "latchkey: event=connect ", f" device={d.client_id} ", after=after)


def device_refusals(b, d, after=0):
    return log_lines(b, "latchkey: event=refused ", f" device={d.client_id} ", after=after)


def closed_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def send_command(d, *args, timeout=10):
    """`latchkey devices commands send D ...`, retried while the device is not yet subscribed."""
    deadline = time.time() + timeout
    while True:
        r = d.devices("commands", "send", d.id, *args)
        if r.rc != 21 or time.time() > deadline:
            assert r.rc == 0, r
            return r
        time.sleep(0.2)


def b64any(s):
    """Standard or URL-safe base64, padded or not."""
    s = s + "=" * (-len(s) % 4)
    return base64.b64decode(s, altchars=b"-_") if ("-" in s or "_" in s) else base64.b64decode(s)


def make_tls_names(base: Path, dns=(), ips=(), cn="latchkey test server"):
    """A CA and a server certificate whose subjectAltName is exactly dns + ips (CN given)."""
    base.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(s):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, s)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("latchkey other test CA"))
          .issuer_name(name("latchkey other test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    crt = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
           .public_key(key.public_key()).serial_number(x509.random_serial_number())
           .not_valid_before(now - datetime.timedelta(hours=1))
           .not_valid_after(now + datetime.timedelta(days=2))
           .add_extension(x509.SubjectAlternativeName(sans), critical=False)
           .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                          critical=False)
           .sign(ca_key, hashes.SHA256()))
    paths = (base / "ca.crt", base / "server.crt", base / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(crt.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(paths[2], 0o600)
    return paths


# ---------------------------------------------------------------------------
# a. events and state downstream

def test_events_with_subfolder_and_state_then_count_exits_0(broker):
    d = new_device(broker)
    be = backend(broker)
    try:
        state = uniq("state")
        a = Agent(agent_args(broker, d, "--subfolder", "sensors/temp", "--state", state,
                             "--count", "5"))
        a.wait_connected()
        sent = [uniq(f"ev{i}").encode() for i in range(5)]
        for s in sent:
            a.send(s)
        # standard input stays open: --count alone ends the agent, after 5 deliveries
        assert a.wait_exit(30) == EXIT_OK, a.dump()
        topic = d.downstream("events", "sensors/temp")
        got = wait_payloads(be, topic, sent)
        assert got == sent, f"events downstream {got}, sent {sent}"
        assert received(be, d.downstream("state"), state.encode(), timeout=5), \
            f"state not downstream: {payloads(be, d.downstream('state'))}"
        assert payloads(be, d.downstream("events")) == [], "events without the subfolder"
        assert len(device_connects(broker, d)) == 1, broker.log_text()[-3000:]
        # MQTT 3.1.1 (mosquitto's p2), clean session, keep-alive 60 s, username "unused"
        conn = log_lines(broker, f"as {d.client_id} (")
        assert len(conn) == 1 and "p2, c1, k60, u'unused'" in conn[0], conn
        with be.got:
            qos = {m.qos for m in be.messages if m.topic in (topic, d.downstream("state"))}
        assert qos == {1}, f"events/state not published at QoS 1: {qos}"
        assert_progress_lines(a)
        assert a.out_text() == "" or all(l.startswith(("config", "command", "{"))
                                         for l in a.out_text().splitlines()), a.dump()
    finally:
        close(be)


def test_events_file_exit_on_eof(broker, tmp_path):
    d = new_device(broker)
    be = backend(broker)
    try:
        sent = [uniq("line one"), uniq("zwei ü"), uniq("3 {\"json\": true}")]
        f = tmp_path / "events.txt"
        f.write_text("".join(s + "\n" for s in sent), encoding="utf-8")
        state = tmp_path / "state.bin"
        state.write_bytes(b"\x00state\xff")
        a = Agent(agent_args(broker, d, "--events", f, "--exit-on-eof", "--state-file", state,
                             "--keepalive", 30, cmd=("run",)),
                  stdin=subprocess.DEVNULL)
        assert a.wait_exit(30) == EXIT_OK, a.dump()
        want = [s.encode() for s in sent]
        got = wait_payloads(be, d.downstream("events"), want)
        assert got == want, got
        assert wait_payloads(be, d.downstream("state"), [b"\x00state\xff"]) == [b"\x00state\xff"]
        conn = log_lines(broker, f"as {d.client_id} (")
        assert len(conn) == 1 and ", k30, " in conn[0], conn
        assert_progress_lines(a)
    finally:
        close(be)


def test_events_file_is_followed_through_truncation_and_rotation(broker, tmp_path):
    """--events FILE without --exit-on-eof follows the file as `tail -F` does: the lines there at
    the start, lines appended while the agent runs (a line written in two parts is one event),
    the file truncated in place (copytruncate: read again from its start) and the file replaced
    by a new one (rotation: the old file is finished -- a late line, and a last line without its
    newline, are sent -- then the new one is read from its start)."""
    d = new_device(broker)
    be = backend(broker)
    topic = d.downstream("events")
    try:
        f = tmp_path / "events.log"
        f.write_text("start-1\nstart-2\n")
        a = Agent(agent_args(broker, d, "--events", f), stdin=subprocess.DEVNULL)
        a.wait_connected()
        assert wait_payloads(be, topic, [b"start-1", b"start-2"]) == [b"start-1", b"start-2"], a.dump()

        with open(f, "a") as w:                       # appended later; one line in two writes
            w.write("appended-1\nappe")
            w.flush()
            time.sleep(0.8)
            w.write("nded-2\n")
        got = wait_payloads(be, topic, [b"appended-1", b"appended-2"])
        assert got[2:] == [b"appended-1", b"appended-2"], (got, a.dump())

        with open(f, "r+") as w:                      # truncated in place, then written anew
            w.truncate(0)
        time.sleep(0.6)
        with open(f, "a") as w:
            w.write("after-truncate\n")
        got = wait_payloads(be, topic, [b"after-truncate"])
        assert got[4:] == [b"after-truncate"], (got, a.dump())
        a.wait_err(r"truncated", timeout=5)

        rotated = tmp_path / "events.log.1"           # rotated: rename, the old writer finishes
        os.rename(f, rotated)
        with open(rotated, "a") as w:
            w.write("late-in-old\nold-tail-without-newline")
        time.sleep(0.8)
        f.write_text("new-1\nnew-2\n")
        want = [b"late-in-old", b"old-tail-without-newline", b"new-1", b"new-2"]
        got = wait_payloads(be, topic, want)
        assert got[5:] == want, (got, a.dump())
        a.wait_err(r"replaced", timeout=5)
        with open(f, "a") as w:                       # and the new file is followed too
            w.write("new-3\n")
        got = wait_payloads(be, topic, [b"new-3"])
        assert got[9:] == [b"new-3"], (got, a.dump())

        assert a.proc.poll() is None, "the end of the file is not the end of the input" + a.dump()
        assert a.stop() == EXIT_OK, a.dump()
        assert_progress_lines(a)
    finally:
        close(be)


# ---------------------------------------------------------------------------
# b. config and commands on standard output

def test_config_and_commands_text(broker, tmp_path):
    d = new_device(broker)
    a = Agent(agent_args(broker, d))
    a.wait_connected()
    # version 1 (empty) is sent on subscribe
    a.wait_out(r"^config: ?$", timeout=15)
    r = d.devices("configs", "update", d.id, "--config-data", "mode=fast path=C:\\x")
    assert r.rc == 0, r
    a.wait_out(r"^config: mode=fast path=C:\\\\x$")
    send_command(d, "--command-data", "reboot now")
    a.wait_out(r"^command: reboot now$")
    send_command(d, "--command-data", "open", "--subfolder", "valve/3")
    a.wait_out(r"^command/valve/3: open$")
    blob = tmp_path / "cmd.bin"
    blob.write_bytes(b"bin\x01\x7f\xff\nend\\")
    send_command(d, "--command-file", blob, "--subfolder", "raw")
    i, _, _ = a.wait_out(r"^command/raw: ")
    line = a.out[i][1]
    assert line.lower() == "command/raw: bin\\x01\\x7f\\xff\\x0aend\\\\", line
    assert a.stop() == EXIT_OK, a.dump()
    lines = a.out_text().splitlines()
    assert len(lines) == 5, f"one line per config/command expected: {lines}"
    assert_progress_lines(a)


def test_config_and_commands_json(broker, tmp_path):
    d = new_device(broker)
    a = Agent(agent_args(broker, d, "--format", "json"))
    a.wait_connected()

    def next_obj(after, timeout=10):
        i, _, _ = a.wait_out(r"^\s*\{", timeout=timeout, after=after)
        line = a.out[i][1]
        try:
            return i, json.loads(line)
        except ValueError:
            raise AssertionError(f"not JSON: {line!r}" + a.dump())

    i, o = next_obj(0, timeout=15)
    assert o.get("type") == "config" and o.get("data") == "", o
    r = d.devices("configs", "update", d.id, "--config-data", "héllo \"wörld\"\t\\")
    assert r.rc == 0, r
    i, o = next_obj(i + 1)
    assert o == {"type": "config", "data": "héllo \"wörld\"\t\\"}, o
    send_command(d, "--command-data", "ping")
    i, o = next_obj(i + 1)
    assert o.get("type") == "command" and o.get("data") == "ping", o
    assert o.get("subfolder", "") == "", o
    send_command(d, "--command-data", "x", "--subfolder", "a/b")
    i, o = next_obj(i + 1)
    assert o == {"type": "command", "subfolder": "a/b", "data": "x"}, o
    blob = tmp_path / "bad-utf8.bin"
    raw = b"\xff\xfe\x00abc"
    blob.write_bytes(raw)
    send_command(d, "--command-file", blob, "--subfolder", "bin")
    i, o = next_obj(i + 1)
    assert o.get("type") == "command" and o.get("subfolder") == "bin", o
    assert "data" not in o and "dataBase64" in o, o
    assert b64any(o["dataBase64"]) == raw, o
    a.proc.send_signal(signal.SIGINT)       # SIGINT stops it as SIGTERM does
    assert a.wait_exit(15) == EXIT_OK, a.dump()


# ---------------------------------------------------------------------------
# c. token refresh across expiry without losing a QoS 1 message

def test_token_refresh_without_loss(tmp_path_factory):
    b = start_broker(tmp_path_factory, "refresh", opts={"skew": 0})
    be = None
    try:
        d = new_device(b, "refresh")
        be = backend(b, "be-refresh")
        a = Agent(agent_args(b, d, "--token-lifetime", 10, "--refresh-margin", 5, "--exit-on-eof"))
        a.wait_connected()
        # >= 2 refreshes (every ~5 s); 20 events/s so that some are in flight at a refresh; and
        # commands sent back to back meanwhile: each the broker says it handed to the device
        # (exit 0; 21 = not connected or not subscribed) must reach it, refreshes or not
        t_end = time.time() + 17
        sent_commands = []

        def commands():
            k = 0
            while time.time() < t_end - 1:
                r = d.devices("commands", "send", d.id, "--command-data", f"c-{k}")
                assert r.rc in (0, 21), r
                if r.rc == 0:
                    sent_commands.append(f"c-{k}")
                k += 1
        ct = threading.Thread(target=commands)
        ct.start()
        n = 0
        while time.time() < t_end:
            a.send(f"n-{n}")
            n += 1
            time.sleep(0.05)
            assert a.proc.poll() is None, a.dump()
        ct.join()
        time.sleep(1)
        a.close_stdin()
        assert a.wait_exit(30) == EXIT_OK, a.dump()
        got_commands = {l.split(": ", 1)[1] for _, l in a.out if l.startswith("command: ")}
        lost = [c for c in sent_commands if c not in got_commands]
        assert sent_commands and not lost, f"commands handed over but never received: {lost}" + a.dump()
        # how: before each goodbye the device withdraws its commands subscription twice, each
        # answered, so nothing handed over before can still be on its way (docs/device.md)
        mine = [l for l in b.log_text().splitlines() if f" {d.client_id}" in l and
                re.search(r"Received (UNSUBSCRIBE|DISCONNECT)|Sending UNSUBACK", l)]
        seq = [re.search(r"(UNSUBSCRIBE|UNSUBACK|DISCONNECT)", l).group(1) for l in mine]
        goodbyes = [i for i, w in enumerate(seq) if w == "DISCONNECT"]
        assert len(goodbyes) >= 3, seq
        for i in goodbyes:
            assert seq[max(0, i - 4):i] == ["UNSUBSCRIBE", "UNSUBACK"] * 2, (i, seq)

        want = [f"n-{i}".encode() for i in range(n)]
        got = wait_payloads(be, d.downstream("events"), want, timeout=10)
        missing = sorted(set(want) - set(got), key=lambda p: int(p[2:]))
        assert not missing, f"{len(missing)} of {n} events lost: {missing[:10]}" + a.dump()
        firsts = []
        for p in got:
            if p not in firsts:
                firsts.append(p)
        assert firsts == want, "events first delivered out of order" + a.dump()

        refreshes = [l for _, l in a.err if REFRESH_RE.search(l)]
        assert len(refreshes) >= 2, "fewer than 2 refresh lines" + a.dump()
        conns = device_connects(b, d)
        assert len(conns) >= 3, f"{len(conns)} connects of the device:\n" + b.log_text()[-4000:]
        assert not device_refusals(b, d), "\n".join(device_refusals(b, d))
        closes = log_lines(b, "latchkey: event=close ", f" device={d.client_id} ")
        assert not closes, "the plugin closed the device (expired token?):\n" + "\n".join(closes)
        assert not re.search(r"expired", a.err_text(), re.I), a.dump()
        assert not a.backoffs(), "a refresh is not a failure: no backoff expected" + a.dump()
    finally:
        if be is not None:
            close(be)
        b.stop()


# ---------------------------------------------------------------------------
# d. broker down, then back

def test_broker_restart_backoff_and_queued_events(tmp_path_factory):
    b = start_broker(tmp_path_factory, "restart")
    be = None
    try:
        d = new_device(b, "restart")
        be = backend(b, "be-restart")
        a = Agent(agent_args(b, d))
        a.wait_connected()
        a.send("before-0")
        assert wait_payloads(be, d.downstream("events"), [b"before-0"]) == [b"before-0"], a.dump()
        close(be)
        be = None

        mark = len(a.err)
        t_stop = time.time()
        b.stop()
        a.wait_err(BACKOFF_RE, timeout=15, after=mark)
        queued = [f"down-{i}".encode() for i in range(5)]
        for q in queued:
            a.send(q)
        # down for at least 12 s
        while time.time() < t_stop + 12:
            time.sleep(0.2)
            assert a.proc.poll() is None, a.dump()
        # restart while the agent waits: at least 1.5 s before its next attempt, so that the
        # backend is subscribed before the queued events can arrive
        while True:
            last_i, last_t, delay = a.backoffs(after=mark)[-1]
            if last_t + delay - time.time() >= 1.5:
                break
            a.wait_err(BACKOFF_RE, timeout=delay + 30, after=last_i + 1)
        restart_mark = len(a.err)
        b.start()
        be = backend(b, "be-restart")
        i, _, t_conn = a.wait_connected(timeout=delay + 30, after=restart_mark)

        delays = [x for _, _, x in a.backoffs(after=mark, before=i)]
        assert len(delays) >= 3, f"backoff delays while down: {delays}" + a.dump()
        exps = []
        for x in delays:
            k = int(math.floor(math.log2(x))) if x >= 1 else -1
            assert 0 <= k <= 6 and 2 ** k <= x < 2 ** k + 1, \
                f"delay {x} s is not 2^n s plus 0..1 s of jitter: {delays}" + a.dump()
            exps.append(k)
        assert exps == sorted(exps) and exps[-1] > exps[0], f"delays do not grow: {delays}"
        fracs = [round(x - 2 ** k, 3) for x, k in zip(delays, exps)]
        assert any(f > 0 for f in fracs) and len(set(fracs)) > 1, f"no jitter: {delays}"

        got = wait_payloads(be, d.downstream("events"), queued, timeout=15)
        assert set(queued) <= set(got), f"queued while down, not delivered: {got}" + a.dump()
        firsts = []
        for p in got:
            if p in queued and p not in firsts:
                firsts.append(p)
        assert firsts == queued, f"queued events out of order: {got}"
        assert len(device_connects(b, d)) >= 2
        assert a.stop() == EXIT_OK, a.dump()
    finally:
        if be is not None:
            close(be)
        b.stop()


def test_backlog_after_outage_delivered_within_rate_limit(tmp_path_factory):
    """The agent starts while the server is unreachable; 300 events are queued (the queue holds
    1000). When the server comes up every one must reach the backend: docs/device.md promises no
    loss while the queue has room, and the server (like IoT Core, spec 1.4) accepts 100 messages
    per second per connection and drops the excess, so the client has to pace its backlog."""
    b = _harness.Broker(tmp_path_factory.mktemp("backlog"), start=False)
    be = None
    try:
        d = new_device(b, "backlog")
        a = Agent(agent_args(b, d, "--backoff-max", 2, "--count", 300))
        a.wait_err(BACKOFF_RE, timeout=15)
        want = [f"b-{i}".encode() for i in range(300)]
        for w in want:
            a.send(w)
        b.start()
        be = backend(b, "be-backlog")
        a.wait_connected(timeout=20)
        assert a.wait_exit(40) == EXIT_OK, a.dump()
        got = wait_payloads(be, d.downstream("events"), want, timeout=10)
        missing = set(want) - set(got)
        drops = log_lines(b, "drop") + log_lines(b, "rate")
        assert not missing, (f"{len(missing)} of 300 queued events never reached the backend, "
                             f"though the agent counted them delivered; broker: {drops[-3:]}"
                             + a.dump())
    finally:
        if be is not None:
            close(be)
        b.stop()


# ---------------------------------------------------------------------------
# e, g. the server is not authenticated: nothing is sent

def assert_nothing_sent(b, d, mark):
    # The broker writes its log line a moment after the agent has already
    # given up: on a loaded machine, wait for it. Mosquitto says "New
    # connection from" or, when the handshake fails early, "Client
    # connection from ... failed".
    reached = re.compile(r"(New|Client) connection from")
    deadline = time.time() + 10
    log = b.log_text()[mark:]
    while not reached.search(log) and time.time() < deadline:
        time.sleep(0.1)
        log = b.log_text()[mark:]
    assert reached.search(log), "the agent never reached the broker:\n" + log[-3000:]
    assert not re.search(rf"devices/{re.escape(d.id)}(?![A-Za-z0-9._+~%-])", log), \
        "the device's CONNECT reached the broker:\n" + log[-3000:]


def assert_each_attempt_tls(a, attempts):
    """Every failed attempt is reported as the server not being authenticated (docs/device.md:
    a TLS failure, not a network one; exit 31 depends on it)."""
    with a.cond:
        lines = [l for _, l in a.err if not re.search(r"giving up|gave up|next attempt|signed|"
                                                       r"delivered", l, re.I)]
    tls = [l for l in lines if re.search(r"certificate|not authenticated", l, re.I)]
    assert len(tls) == attempts, (f"{attempts} attempts, {len(tls)} reported as a certificate "
                                  f"failure; the others: {[l for l in lines if l not in tls]}"
                                  + a.dump())


def test_certificate_from_another_ca_refused(broker, tmp_path):
    d = new_device(broker)
    other = tmp_path / "other-ca"
    other.mkdir()
    other_ca, _, _ = _harness.make_tls(other)
    mark = len(broker.log_text())
    a = Agent(agent_args(broker, d, "--max-attempts", 2, ca=other_ca))
    rc = a.wait_exit(40)
    assert rc == EXIT_TLS, a.dump()
    assert re.search(r"certificate", a.err_text(), re.I), a.dump()
    assert_each_attempt_tls(a, 2)
    assert not re.search(r"^latchkey-device: connected", a.err_text(), re.M), a.dump()
    time.sleep(0.3)
    assert_nothing_sent(broker, d, mark)
    assert_progress_lines(a)


def test_certificate_refused_on_a_single_attempt_exit_31(broker, tmp_path):
    """--max-attempts 1: the one attempt fails on the certificate, so the exit is 31 (not 32, the
    network's), every time (repeated: the classification must not depend on timing)."""
    d = new_device(broker)
    other = tmp_path / "other-ca"
    other.mkdir()
    other_ca, _, _ = _harness.make_tls(other)
    results = []
    for _ in range(6):
        a = Agent(agent_args(broker, d, "--max-attempts", 1, ca=other_ca))
        rc = a.wait_exit(30)
        results.append((rc, a.err_text().splitlines()[1:2]))
    bad = [(rc, line) for rc, line in results if rc != EXIT_TLS]
    assert not bad, f"{len(bad)} of {len(results)} runs did not exit 31: {bad}"


def test_wrong_host_name_refused(tmp_path_factory, tmp_path):
    """The server's certificate names only DNS:localhost. Connecting to 127.0.0.1 (an IP address
    the certificate does not hold) is refused; connecting as "localhost" works (control)."""
    base = tmp_path_factory.mktemp("hostname")
    b = _harness.Broker(base, start=False)
    try:
        ca, crt, key = make_tls_names(tmp_path / "names", dns=["localhost"], cn="localhost")
        b.ca_path, b.cert_path, b.key_path = ca, crt, key
        b.start()
        d = new_device(b, "host")
        mark = len(b.log_text())
        a = Agent(agent_args(b, d, "--max-attempts", 2, host="127.0.0.1", ca=ca))
        assert a.wait_exit(40) == EXIT_TLS, a.dump()
        assert re.search(r"certificate|host|name|match|verif", a.err_text(), re.I), a.dump()
        assert_each_attempt_tls(a, 2)
        time.sleep(0.3)
        assert_nothing_sent(b, d, mark)

        ok = Agent(agent_args(b, d, "--max-attempts", 2, host="localhost", ca=ca))
        ok.wait_connected()
        assert ok.stop() == EXIT_OK, ok.dump()
        assert len(device_connects(b, d)) == 1
    finally:
        b.stop()


# ---------------------------------------------------------------------------
# f. revoked credential / blocked device

@pytest.mark.parametrize("how", ["credential-deleted", "blocked"])
def test_revoked_device_stops_without_hammering(broker, how):
    d = new_device(broker)
    # What is asserted is the count of refused attempts, not the backoff between them (its schedule
    # is test_broker_restart_backoff_and_queued_events's): a cap of 2 s keeps this case short.
    a = Agent(agent_args(broker, d, "--backoff-max", 2))
    a.wait_connected()
    mark = len(broker.log_text())
    if how == "blocked":
        r = d.devices("update", d.id, "--blocked")
    else:
        r = d.devices("credentials", "delete", d.id, "0")
    assert r.rc == 0, r
    t0 = time.time()
    rc = a.wait_exit(45)
    took = time.time() - t0
    assert rc == EXIT_REFUSED, a.dump()
    assert took < 30, f"exit 30 took {took:.1f} s" + a.dump()
    last = " / ".join(l for _, l in a.err[-3:])
    assert re.search(r"refused", last, re.I), f"no clear final message: {last!r}" + a.dump()
    closes = log_lines(broker, "latchkey: event=close ", f" device={d.client_id} ", after=mark)
    assert closes, "the plugin did not close the connection:\n" + broker.log_text()[mark:][-3000:]
    refusals = device_refusals(broker, d, after=mark)
    assert 1 <= len(refusals) <= 5, f"{len(refusals)} refused attempts:\n" + "\n".join(refusals)
    assert_progress_lines(a)


# ---------------------------------------------------------------------------
# h. command-line errors and other exits

@pytest.fixture(scope="module")
def usage_dev(broker):
    return new_device(broker, "usage")


@pytest.mark.parametrize("change,word", [
    (("--ca", None), "--ca"),
    (("--host", None), "--host"),
    (("--device", "9bad"), "device"),
    (("--device", "goog-dev"), "device"),
    (("--device", "ab"), "device"),
    (("--device", "dev/1"), "device"),
    (("--project", "Bad_Project"), "project"),
    (("--registry", "r"), "registry"),
    (("--token-lifetime", "9"), "lifetime"),
    (("--token-lifetime", "86401"), "lifetime"),
    (("--refresh-margin", "3600"), "margin"),
    (("--keepalive", "5"), "keep"),
    (("--port", "0"), "port"),
    (("--port", "65536"), "port"),
    (("--format", "xml"), "format"),
    (("--subfolder", "a//b"), "subfolder"),
    (("--no-such-option", "x"), "no-such-option"),
    (("--count", "-1"), "count"),
    (("--alg", "HS256"), "alg"),
])
def test_usage_errors(broker, usage_dev, change, word):
    args = agent_args(broker, usage_dev)
    opt, val = change
    if opt in args:
        i = args.index(opt)
        if val is None:
            del args[i:i + 2]
        else:
            args[i + 1] = val
    else:
        args += [opt, val]
    mark = len(broker.log_text())
    a = Agent(args)
    assert a.wait_exit(15) == EXIT_USAGE, a.dump()
    err = a.err_text()
    assert err.startswith("latchkey-device"), a.dump()
    assert word.lower() in err.lower(), f"the message does not name {word!r}" + a.dump()
    assert "New connection" not in broker.log_text()[mark:], "a usage error reached the network"


def test_two_state_sources_is_usage_error(broker, tmp_path):
    d = new_device(broker)
    (tmp_path / "s").write_text("x")
    a = Agent(agent_args(broker, d, "--state", "a", "--state-file", tmp_path / "s"))
    assert a.wait_exit(15) == EXIT_USAGE, a.dump()
    assert "state" in a.err_text(), a.dump()


def test_unknown_key_exit_3(broker):
    d = new_device(broker)
    args = agent_args(broker, d)
    args[args.index("--key") + 1] = "no-such-key"
    a = Agent(args)
    assert a.wait_exit(15) == EXIT_KEY_NOT_FOUND, a.dump()
    assert "no-such-key" in a.err_text() or "key" in a.err_text().lower(), a.dump()


def test_unreachable_server_exit_32(broker):
    d = new_device(broker)
    a = Agent(agent_args(broker, d, "--max-attempts", 2, port=closed_port()))
    assert a.wait_exit(30) == EXIT_NETWORK, a.dump()
    delays = [x for _, _, x in a.backoffs()]
    assert len(delays) == 1 and 1 <= delays[0] < 2, f"one backoff of 1..2 s expected: {delays}" + a.dump()
    assert_progress_lines(a)


def test_stop_with_undelivered_exit_33(broker):
    d = new_device(broker)
    a = Agent(agent_args(broker, d, port=closed_port()))
    a.send("never-delivered-1")
    a.send("never-delivered-2")
    a.wait_err(BACKOFF_RE, timeout=15)
    assert a.stop(timeout=20) == EXIT_UNDELIVERED, a.dump()


def test_line_over_256_kib_exit_34(broker):
    d = new_device(broker)
    a = Agent(agent_args(broker, d))
    a.wait_connected()
    big = b"x" * (256 * 1024 + 1)
    w = threading.Thread(target=lambda: _quiet(a.send, big), daemon=True)
    w.start()
    assert a.wait_exit(20) == EXIT_INPUT, a.dump()
    assert re.search(r"256|long|line", a.err_text(), re.I), a.dump()


def _quiet(f, *args):
    try:
        f(*args)
    except (BrokenPipeError, OSError, ValueError):
        pass


def test_duration_exits_0(broker):
    d = new_device(broker)
    a = Agent(agent_args(broker, d, "--duration", 3))
    t0 = time.time()
    a.wait_connected()
    a.send("within-duration")
    assert a.wait_exit(20) == EXIT_OK, a.dump()
    took = time.time() - t0
    assert 2.5 <= took < 12, f"--duration 3 ended after {took:.1f} s" + a.dump()


def test_line_of_256_kib_is_one_event(broker):
    """docs/device.md: lines up to 256 KiB (IoT Core's event limit, the broker's message_size_limit)."""
    d = new_device(broker)
    be = backend(broker)
    try:
        a = Agent(agent_args(broker, d, "--count", 2))
        a.wait_connected()
        big = bytes(65 + i % 26 for i in range(256 * 1024))
        w = threading.Thread(target=lambda: (_quiet(a.send, big), _quiet(a.send, b"after-big")),
                             daemon=True)
        w.start()
        assert a.wait_exit(30) == EXIT_OK, a.dump()
        got = wait_payloads(be, d.downstream("events"), [big, b"after-big"])
        assert [len(p) for p in got] == [256 * 1024, 9], [len(p) for p in got]
        assert got[0] == big
    finally:
        close(be)


# ---------------------------------------------------------------------------
# i. never the token

def test_quiet_prints_nothing_and_never_the_token(broker):
    d = new_device(broker)
    be = backend(broker)
    try:
        a = Agent(agent_args(broker, d, "--quiet", "--count", 1))
        a.send("quiet-1")
        assert a.wait_exit(30) == EXIT_OK, a.dump()
        assert a.err_text() == "", "--quiet keeps only errors" + a.dump()
        assert wait_payloads(be, d.downstream("events"), [b"quiet-1"]) == [b"quiet-1"]
        # and a verbose run: every progress line, no token
        v = Agent(agent_args(broker, d, "--count", 1))
        v.send("verbose-1")
        assert v.wait_exit(30) == EXIT_OK, v.dump()
        assert v.err_text(), v.dump()
        for ag in (a, v):
            assert_no_token(ag)
    finally:
        close(be)
