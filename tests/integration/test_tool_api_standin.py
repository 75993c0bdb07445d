"""latchkey --api against a stand-in for latchkeyd on loopback plain HTTP
(the tool allows http:// only there), for answers the real daemon gives too
rarely to provoke:

- `devices list` in two pages joined by a 2000-character token: the tool used
  to stop silently at a token of 900 characters or more (exit 0, half the
  list), and to cut a long escaped token to fit a fixed buffer;
- `devices commands send` refused UNAVAILABLE with the ErrorInfo reason
  LK_ERR_REG_BUSY (the registry busy: nothing was sent) exits 18 as with
  --db, not 22 "no broker picked the command up" (an UNAVAILABLE without a
  reason, latchkeyd's own outcome).
"""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from cryptography.hazmat.primitives.asymmetric import rsa

from api_common import _write_key_file
from conftest import run_tool

TOKEN = "t" * 1000 + "+/=" * 333 + "z"  # escaped, it is longer still


def device(i):
    return {"id": f"dev-{i}", "name": f"projects/proj-one/locations/here/registries/reg/devices/dev-{i}",
            "numId": str(1000 + i), "credentials": [], "config": {"version": "1"}}


class Fake(BaseHTTPRequestHandler):
    seen = []

    def do_GET(self):
        u = urlparse(self.path)
        q = parse_qs(u.query)
        Fake.seen.append(q.get("pageToken", [None])[0])
        if u.path.endswith("/devices"):
            if "pageToken" not in q:
                body = {"devices": [device(1)], "nextPageToken": TOKEN}
            elif q["pageToken"] == [TOKEN]:
                body = {"devices": [device(2)]}
            else:
                self.send_response(400)
                self.end_headers()
                return
        else:
            body = {"config": {"version": "1"}}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        busy = "/dev-busy:" in self.path
        err = {"code": 503, "status": "UNAVAILABLE",
               "message": "the registry is busy; try again" if busy else "no broker answered"}
        if busy:
            err["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "LK_ERR_REG_BUSY",
                               "domain": "latchkey"}]
        data = json.dumps({"error": err}).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


def key_file(tmp_path):
    kf = tmp_path / "key.json"
    _write_key_file(kf, "proj-one", "tool-admin", "a" * 40,
                    rsa.generate_private_key(public_exponent=65537, key_size=2048), "http://127.0.0.1/token")
    return kf


def serve():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


def test_command_refused_busy_is_not_a_missing_broker(tmp_path):
    kf = key_file(tmp_path)
    srv, url = serve()
    try:
        common = ("--api", url, "--key-file", kf, "devices", "commands", "send")
        where = ("--project", "proj-one", "--region", "here", "--registry", "reg", "--command-data", "x")
        r = run_tool(*common, "dev-busy", *where)
        assert r.rc == 18, r
        assert "busy" in r.err and "LK_ERR_REG_BUSY" in r.err, r
        r = run_tool(*common, "dev-1", *where)
        assert r.rc == 22, r
    finally:
        srv.shutdown()


def test_long_page_token_is_followed(tmp_path):
    kf = key_file(tmp_path)
    srv, url = serve()
    try:
        for fmt in ("json", "text"):
            r = run_tool("--api", url, "--key-file", kf, "devices", "list", "--project", "proj-one",
                         "--region", "here", "--registry", "reg", "--format", fmt)
            assert r.rc == 0, r
            assert "dev-1" in r.out and "dev-2" in r.out, r
    finally:
        srv.shutdown()
    assert TOKEN in Fake.seen
