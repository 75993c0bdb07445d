#!/usr/bin/python3
"""latchkeyd's memory per open connection (docs/benchmarks.md, "latchkeyd's memory per connection").

    /usr/bin/python3 bench/daemon_rss.py BUILD OUTFILE

latchkeyd with TLS on a fresh registry (tests/integration/api_common.Daemon); N (LK_BENCH_DAEMON_CONNS, 1,000)
TLS connections each make one authenticated request (GET a device, keep-alive) and stay open. Prints and appends:
  daemon_rss_kb_per_connection   latchkeyd's VmRSS growth from before the first to after the last, per connection
  daemon_rss_kb_per_connection_idle   the same for N connections that only finished the TLS handshake
  daemon_connections, daemon_connections_idle   how many were open when each figure was read
"""
import os
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path

BUILD, OUT = Path(sys.argv[1]).resolve(), sys.argv[2]
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from build_env import use_build  # noqa: E402

use_build(BUILD)

from api_common import Api, Daemon, device_path, service_account  # noqa: E402

N = int(os.environ.get("LK_BENCH_DAEMON_CONNS", "1000"))


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def emit(name, value):
    print(f"{name}: {value}")
    with open(OUT, "a") as f:
        f.write(f"{name}: {value}\n")


def main():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # each kind against a daemon of its own: memory freed by one round would be reused by the next
    for name, count, ask in (("daemon_rss_kb_per_connection", "daemon_connections", True),
                             ("daemon_rss_kb_per_connection_idle", "daemon_connections_idle", False)):
        with tempfile.TemporaryDirectory(prefix="lkbench-daemon-") as tmp:
            opened, figure = one_round(Path(tmp), ask)
            emit(count, opened)
            emit(name, figure)


def one_round(tmp, ask):
    d = Daemon(tmp)
    try:
        api = Api(d, service_account(d, "bench-sa", "admin"))
        assert api.post("/v1/projects/proj-one/locations/us-central1/registries", {"id": "reg-1"}).status == 200
        assert api.post("/v1/projects/proj-one/locations/us-central1/registries/reg-1/devices",
                        {"id": "dev-1"}).status == 200
        token = api.sa.jwt()
        ctx = d.ssl_context()
        req = (f"GET {device_path('dev-1')} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
               "Accept: application/json\r\n\r\n").encode()
        # warm: one connection's worth of everything allocated once
        for t in open_many(d, ctx, 10, req if ask else None):
            t.close()
        time.sleep(0.5)
        before = rss(d.proc.pid)
        socks = open_many(d, ctx, N, req if ask else None)
        time.sleep(1.0)
        after = rss(d.proc.pid)
        if not d.alive():
            return len(socks), "daemon died"
        for t in socks:
            t.close()
        return len(socks), "%.2f" % ((after - before) / len(socks))
    finally:
        d.stop(expect_rc=None)


def recv_some(t):
    """What the daemon sent next; a closed connection is an error, not an empty answer to wait on."""
    data = t.recv(65536)
    if not data:
        raise RuntimeError("latchkeyd closed a connection before its answer")
    return data


def open_many(d, ctx, n, req):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        t = ctx.wrap_socket(s, server_hostname="127.0.0.1")
        if req:
            t.sendall(req)
            got = b""
            while b"\r\n\r\n" not in got:
                got += recv_some(t)
            head, _, body = got.partition(b"\r\n\r\n")
            assert b" 200 " in head.split(b"\r\n")[0], head[:200]
            length = int([h.split(b":")[1] for h in head.split(b"\r\n")
                          if h.lower().startswith(b"content-length")][0])
            while len(body) < length:
                body += recv_some(t)
        socks.append(t)
    return socks


if __name__ == "__main__":
    main()
