"""A real Mosquitto with latchkey's plugin, in a temporary directory.

    b = Broker(tmp_path)                  # starts it (start=False to configure first)
    d = b.device("dev-1")                 # registry reg-1, ES256 key in a software store
    c = b.connect(d.client_id, d.token()) # paho client over TLS, connected (or raises Refused)
    ...
    b.stop()

What it builds (docs/plugin.md, "Configuration"):
  - a test CA (P-256) and a server certificate for 127.0.0.1 / localhost, signed by it (ca_path);
  - mosquitto.conf: per_listener_settings false, allow_anonymous false, max_keepalive 800,
    message_size_limit 262144, a TLS listener (tls_port, TLS 1.2+) and a plain-TCP listener
    (plain_port, for benchmarks) on 127.0.0.1, both on random free ports, each with max_qos 1; the plugin with
    plugin_opt_registry=<db> and any extra plugin_opt_* given as opts; log_dest file (log_path);
  - the registry database, with registry reg-1 in project proj-one, region us-central1.

Mosquitto started as root drops to the user `mosquitto` unless told otherwise; the config says
`user <the current user>` so the broker can read and write the temporary database (a deployment
must make the registry file and its directory readable and writable by `mosquitto`).

Environment: LK_BIN_DIR (the latchkey tool's directory, default build/bin), LK_PLUGIN (the
plugin, default build/lib/latchkey_plugin.so), LK_MOSQUITTO (default /usr/sbin/mosquitto),
LK_TEST_LIB_DIR (the test-only shims of tests/shims, default build/tests).

Test-only shims (never part of the product): observer=True loads tests/shims/observer_plugin.c
before latchkey's plugin, so that b.observe() can subscribe to anything the broker holds (device
topics, retained messages); sqlite_fault=True preloads tests/shims/sqlite_fault.c into the
broker, and b.fault("text") makes every SQLite statement whose SQL contains the text fail
("*" = all; b.fault(None) stops it).

This API is shared with the behaviour tests (tests/integration/test_plugin_*.py): keep it stable.
"""
import datetime
import getpass
import json
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import BIN, REPO, VALGRIND_DIR, run_tool, server_timeout, valgrind_prefix

TEST_LIB = Path(os.environ.get("LK_TEST_LIB_DIR", REPO / "build" / "tests"))
OBSERVER_PASSWORD = "observer-" + os.urandom(8).hex()

PLUGIN = Path(os.environ.get("LK_PLUGIN") or Path(os.environ.get("LK_LIB_DIR", REPO / "build" / "lib")) / "latchkey_plugin.so")
MOSQUITTO = os.environ.get("LK_MOSQUITTO", "/usr/sbin/mosquitto")

PROJECT, REGION, REGISTRY = "proj-one", "us-central1", "reg-1"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_id(device, registry=REGISTRY, project=PROJECT, region=REGION):
    return f"projects/{project}/locations/{region}/registries/{registry}/devices/{device}"


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_tls(base: Path):
    """Test CA + server certificate (IP SAN 127.0.0.1, DNS localhost). Returns (ca, crt, key)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("latchkey test CA"))
          .issuer_name(_name("latchkey test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    crt = (x509.CertificateBuilder().subject_name(_name("127.0.0.1"))
           .issuer_name(ca.subject).public_key(key.public_key())
           .serial_number(x509.random_serial_number())
           .not_valid_before(now - datetime.timedelta(hours=1))
           .not_valid_after(now + datetime.timedelta(days=2))
           .add_extension(x509.SubjectAlternativeName([
               x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
               critical=False)
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


class Refused(Exception):
    """CONNECT refused (rc = the CONNACK return/reason code) or the connection failed."""

    def __init__(self, rc, msg=""):
        super().__init__(f"connect refused: rc={rc} {msg}")
        self.rc = rc


class Device:
    """A device in the broker's registry with a key in a software store."""

    def __init__(self, broker, device_id, registry, project, region, store, key, pem_path,
                 alg, num_id):
        self.broker = broker
        self.id = device_id
        self.registry = registry
        self.project = project
        self.region = region
        self.store = store
        self.key = key
        self.pem_path = pem_path
        self.alg = alg
        self.num_id = num_id
        self.client_id = client_id(device_id, registry, project, region)
        # gcloud-style location options for `latchkey devices ...`
        self.loc = ["--registry", registry, "--project", project, "--region", region]

    def token(self, ttl=3600, now=None, aud=None):
        """A JWT for this device's key (latchkey token)."""
        args = ["token", "--key", self.key, "--store", self.store, "--aud", aud or self.project,
                "--ttl", str(ttl)]
        if now is not None:
            args += ["--now", str(int(now))]
        r = run_tool(*args)
        assert r.rc == 0, r
        return r.out.strip()

    def devices(self, *args):
        """`latchkey --db DB devices ARGS... --registry R --project P --region L`."""
        return self.broker.lk("devices", *args, *self.loc)

    def topic(self, kind, sub=None):
        """The device's own topic: /devices/D/events|state|config|commands[/sub]."""
        t = f"/devices/{self.id}/{kind}"
        return t + "/" + sub if sub else t

    def downstream(self, kind, sub=None):
        """latchkey/P/L/R/D/KIND[/sub], where backends see it."""
        t = f"latchkey/{self.project}/{self.region}/{self.registry}/{self.id}/{kind}"
        return t + "/" + sub if sub else t

    def presence_topic(self):
        """latchkey/P/presence/L/R/D: the retained presence (docs/plugin.md, "Presence")."""
        return f"latchkey/{self.project}/presence/{self.region}/{self.registry}/{self.id}"


_CLIENT = None


def _client_class():
    """paho's Client, sending _wire_keepalive in CONNECT (see Broker.connect)."""
    global _CLIENT
    if _CLIENT is None:
        import paho.mqtt.client as mqtt

        class _Client(mqtt.Client):
            _wire_keepalive = None

            def _send_connect(self, keepalive):
                if self._wire_keepalive is not None:
                    keepalive = self._wire_keepalive
                return super()._send_connect(keepalive)

            # paho 1.6 lets ssl.SSLEOFError (the broker closed a TLS connection while the
            # client wrote to it) kill its loop thread without calling on_disconnect: a
            # closed connection then looks open for ever. It is a lost connection.
            def _sock_send(self, buf):
                try:
                    return super()._sock_send(buf)
                except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as e:
                    raise ConnectionResetError(str(e))

            def _sock_recv(self, bufsize):
                try:
                    return super()._sock_recv(bufsize)
                except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as e:
                    raise ConnectionResetError(str(e))
        _CLIENT = _Client
    return _CLIENT


class Broker:
    host = "127.0.0.1"

    def __init__(self, base, opts=None, extra_conf="", start=True, registry=REGISTRY,
                 project=PROJECT, region=REGION, observer=False, sqlite_fault=False,
                 persistence=False, run_as=None, db=None):
        """base: an empty directory (tmp_path). opts: {"skew": 600, ...} -> plugin_opt_skew 600.
        extra_conf: lines appended to mosquitto.conf. persistence: Mosquitto's persistence
        (file in base), so that a restart keeps retained messages and offline sessions. run_as:
        the user Mosquitto switches to after reading its configuration (default: this user). db: the
        registry file (default base/registry.db), e.g. on a file system of its own."""
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.project, self.region, self.registry = project, region, registry
        self.db = Path(db) if db else self.base / "registry.db"
        self.conf_path = self.base / "mosquitto.conf"
        self.log_path = self.base / "mosquitto.log"
        self.store = self.base / "keys.lks"
        self.ca_path, self.cert_path, self.key_path = make_tls(self.base)
        self.tls_port = free_port()
        self.plain_port = free_port()
        while self.plain_port == self.tls_port:
            self.plain_port = free_port()
        # Suites connect the same device dozens of times a minute from one address and read
        # every refusal in the log; the per-device connect limit and the limits on refusal
        # logs (docs/plugin.md) have tests of their own, which set them explicitly.
        self.opts = {"connect_burst": 100000, "connects_per_minute": 60000,
                     "log_refusals_per_source": 1000000, "log_refusals_per_second": 1000000}
        self.opts.update(opts or {})
        self.extra_conf = extra_conf
        self.observer = observer
        self.sqlite_fault = sqlite_fault
        self.persistence = persistence
        self.run_as = run_as or getpass.getuser()
        self.plugin = PLUGIN
        if self.run_as != getpass.getuser():
            # Mosquitto loads plugins after it switches user: that user must read the
            # plugin, which a build in a private directory (a CI clone in a 0700
            # mktemp directory) does not let it. A copy in a directory of its own.
            d = tempfile.mkdtemp(prefix="lk-plugin-")
            os.chmod(d, 0o755)
            self.plugin = Path(d) / PLUGIN.name
            shutil.copy(PLUGIN, self.plugin)
            os.chmod(self.plugin, 0o644)
            weakref.finalize(self, shutil.rmtree, d, True)
        self.fault_path = self.base / "sqlite_fault"
        self.proc = None
        self._n = 0
        r = self.lk("registries", "create", registry, "--project", project, "--region", region)
        assert r.rc == 0, r
        if start:
            self.start()

    # ---- the broker process ----

    def write_conf(self):
        lines = [
            "per_listener_settings false",
            "allow_anonymous false",
            "max_keepalive 800",
            "message_size_limit 262144",
            "set_tcp_nodelay true",
            *(["persistence true", f"persistence_location {self.base}/"] if self.persistence
              else ["persistence false"]),
            f"user {self.run_as}",
            f"log_dest file {self.log_path}",
            "log_type all",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "",
            f"listener {self.tls_port} {self.host}",
            f"certfile {self.cert_path}",
            f"keyfile {self.key_path}",
            "tls_version tlsv1.2",
            "max_qos 1",
            "",
            f"listener {self.plain_port} {self.host}",
            "max_qos 1",
            "",
            *([f"plugin {TEST_LIB / 'lk_test_observer.so'}",
               f"plugin_opt_observer_password {OBSERVER_PASSWORD}"] if self.observer else []),
            f"plugin {self.plugin}",
            f"plugin_opt_registry {self.db}",
        ]
        for k, v in self.opts.items():
            lines.append(f"plugin_opt_{k} {v}")
        lines.append(self.extra_conf)
        self.conf_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout=10):
        self.write_conf()
        self._stderr = open(self.base / "mosquitto.stderr", "ab")
        env = dict(os.environ)
        # A sanitizer build's plugin needs the sanitizer runtimes loaded first
        # into the (uninstrumented) broker; ctest gives their paths. Leaks are
        # not checked in the broker process (mosquitto's own exit leaks).
        preload = []
        if os.environ.get("LK_SANITIZER_PRELOAD"):
            preload += os.environ["LK_SANITIZER_PRELOAD"].split()
            env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=1"
        if self.sqlite_fault:
            preload.append(str(TEST_LIB / "lk_sqlite_fault.so"))
            env["LK_SQLITE_FAULT"] = str(self.fault_path)
        if preload:
            env["LD_PRELOAD"] = " ".join(preload)
        self.proc = subprocess.Popen([*valgrind_prefix(), MOSQUITTO, "-c", str(self.conf_path)],
                                     stdout=self._stderr, stderr=self._stderr, env=env)
        deadline = time.time() + server_timeout(timeout)
        pending = [self.tls_port, self.plain_port]
        while pending:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}:\n"
                                   + self.log_text() + self.stderr_text())
            try:
                with socket.create_connection((self.host, pending[0]), timeout=0.2):
                    pending.pop(0)
            except OSError:
                if time.time() > deadline:
                    self.stop()
                    raise RuntimeError("mosquitto did not listen:\n" + self.log_text())
                time.sleep(0.05)
        return self

    def fault(self, pattern):
        """(sqlite_fault=True) Make SQLite statements containing pattern fail; None: stop."""
        assert self.sqlite_fault, "Broker(sqlite_fault=True) preloads the shim"
        self.fault_path.write_text((pattern or "") + "\n")
        time.sleep(0.05)    # the shim looks at the file every 20 ms

    def observe(self, topic="#", timeout=5):
        """(observer=True) A client that sees everything the broker holds, subscribed to topic;
        retained messages arrive with retain set."""
        assert self.observer, "Broker(observer=True) loads the observer plugin"
        c = self.connect("observer-" + os.urandom(4).hex(), OBSERVER_PASSWORD, username="observer",
                         tls=False)
        g = self.subscribe(c, topic, 1, timeout=timeout)
        assert g in (0, 1), g
        return c

    def rss_kb(self):
        """The broker's resident memory, kB (/proc/PID/status VmRSS)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """Stop (SIGTERM, then SIGKILL after 5 s). Returns the exit code."""
        if self.proc is None:
            return None
        killed = False
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(server_timeout(5))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                killed = True
        rc = self.proc.returncode
        self.proc = None
        self._stderr.close()
        # under valgrind a killed broker writes no leak report: not a silent pass
        assert not (killed and VALGRIND_DIR), "mosquitto did not stop on SIGTERM under valgrind"
        return rc

    def restart(self):
        self.stop()
        return self.start()

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stderr_text(self):
        try:
            return (self.base / "mosquitto.stderr").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, text, timeout=5):
        """Wait until text appears in the log; returns the log, raises on timeout."""
        deadline = time.time() + timeout
        while True:
            log = self.log_text()
            if text in log:
                return log
            if time.time() > deadline:
                raise AssertionError(f"{text!r} not in log:\n{log[-4000:]}")
            time.sleep(0.05)

    # ---- the registry ----

    def lk(self, *args, input=None, env=None):
        """Run build/bin/latchkey --db DB ARGS...; returns conftest.Result (rc, out, err)."""
        return run_tool("--db", self.db, *args, input=input, env=env)

    def device(self, device_id=None, registry=None, alg="ES256", extra=(), create_registry=False,
               project=None, region=None):
        """Create a device with a fresh key (software store) and return a Device."""
        registry = registry or self.registry
        project = project or self.project
        region = region or self.region
        if create_registry:
            r = self.lk("registries", "create", registry, "--project", project, "--region", region)
            assert r.rc == 0, r
        self._n += 1
        device_id = device_id or f"dev-{self._n}"
        key = f"k{self._n}"
        r = run_tool("key", "generate", "--store", self.store, "--key", key, "--alg", alg)
        assert r.rc == 0, r
        pem = self.base / f"{key}.pem"
        pem.write_text(r.out)
        typ = "es256" if alg == "ES256" else "rsa"
        r = self.lk("devices", "create", device_id, "--registry", registry, "--project", project,
                    "--region", region, "--public-key", f"path={pem},type={typ}", *extra,
                    "--format", "json")
        assert r.rc == 0, r
        num_id = int(json.loads(r.out).get("numId", 0))
        return Device(self, device_id, registry, project, region, self.store, key, pem, alg,
                      num_id)

    def backend(self, name, project=None):
        """`latchkey backends create NAME --project P`; returns the secret it prints."""
        r = self.lk("backends", "create", name, "--project", project or self.project)
        assert r.rc == 0, r
        out = r.out.strip()
        if out.startswith("{"):
            return json.loads(out)["secret"]
        # a line "secret: XXX" or the bare secret
        for line in out.splitlines():
            if line.lower().startswith("secret"):
                return line.split(":", 1)[1].strip()
        return out.splitlines()[-1].strip()

    # ---- MQTT clients (paho 1.6) ----

    def connect(self, client_id, password=None, username="unused", tls=True, protocol=None,
                keepalive=60, timeout=5, clean_session=True, on_message=None, port=None,
                properties=None):
        """A connected paho client with its network loop running, or Refused(rc).

        protocol: paho.mqtt.client.MQTTv311 (default) or MQTTv5. Received messages go to
        on_message(client, userdata, msg) if given, and always to client.messages (a list) and
        client.got (a threading.Condition). client.disconnected is an Event set when the
        connection closes; paho does not reconnect."""
        import paho.mqtt.client as mqtt
        protocol = protocol or mqtt.MQTTv311
        kw = {"clean_session": clean_session} if protocol != mqtt.MQTTv5 else {}
        c = _client_class()(client_id=client_id, protocol=protocol, **kw)
        if username is not None or password is not None:
            c.username_pw_set(username, password)
        if tls:
            c.tls_set(ca_certs=str(self.ca_path), cert_reqs=ssl.CERT_REQUIRED)
        c.messages = []
        c.got = threading.Condition()
        c.connected = threading.Event()
        c.disconnected = threading.Event()
        c.rc = None
        c.subacks = {}

        def on_connect(cl, ud, flags, rc, props=None):
            c.rc = rc if isinstance(rc, int) else rc.value
            c.connected.set()

        def on_disconnect(cl, ud, rc, props=None):
            # no automatic reconnect (paho's loop thread would retry): a closed
            # connection stays closed, as a test expects
            cl._thread_terminate = True
            c.disconnected.set()
            c.connected.set()

        def on_msg(cl, ud, msg):
            with c.got:
                c.messages.append(msg)
                c.got.notify_all()
            if on_message:
                on_message(cl, ud, msg)

        def on_subscribe(cl, ud, mid, granted, props=None):
            c.subacks[mid] = [g if isinstance(g, int) else g.value for g in granted]
            with c.got:
                c.got.notify_all()

        c.on_connect = on_connect
        c.on_disconnect = on_disconnect
        c.on_message = on_msg
        c.on_subscribe = on_subscribe
        # paho 1.6 uses the keep-alive as the TLS handshake's socket timeout (0 = non-blocking,
        # which fails on a slow broker): connect with a socket keep-alive of 60 s and put
        # the requested one in the CONNECT packet (_Client._send_connect).
        c._wire_keepalive = keepalive
        try:
            if protocol == mqtt.MQTTv5:
                c.connect(self.host, port or (self.tls_port if tls else self.plain_port),
                          keepalive=keepalive or 60, clean_start=clean_session,
                          properties=properties)
            else:
                c.connect(self.host, port or (self.tls_port if tls else self.plain_port),
                          keepalive=keepalive or 60)
        except (OSError, ssl.SSLError) as e:
            raise Refused(-1, str(e))
        c._keepalive = keepalive  # paho sends no PINGREQ when 0
        c.loop_start()
        if not c.connected.wait(timeout):
            c.loop_stop()
            raise Refused(-1, "no CONNACK")
        if c.rc != 0 or c.rc is None:
            c.loop_stop()
            c.disconnect()
            raise Refused(c.rc if c.rc is not None else -1)
        return c

    def subscribe(self, c, topic, qos=1, timeout=5):
        """Subscribe and wait for the SUBACK; returns the granted QoS (0x80 = refused)."""
        rc, mid = c.subscribe(topic, qos)
        assert rc == 0, rc
        deadline = time.time() + timeout
        with c.got:
            while mid not in c.subacks:
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError(f"no SUBACK for {topic}")
                c.got.wait(left)
        return c.subacks[mid][0]

    @staticmethod
    def wait_messages(c, n=1, timeout=5, topic=None):
        """Wait until c has received n messages (on topic, if given); returns them."""
        deadline = time.time() + timeout
        with c.got:
            while True:
                msgs = [m for m in c.messages if topic is None or m.topic == topic]
                if len(msgs) >= n:
                    return msgs
                left = deadline - time.time()
                if left <= 0:
                    return msgs
                c.got.wait(left)

    @staticmethod
    def close(c):
        try:
            c.disconnect()
        finally:
            c.loop_stop()
