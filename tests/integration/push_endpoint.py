"""A push subscription's endpoint for the delivery suites: an HTTPS server with a certificate of a CA of
its own, answering each path as the test's rules say and recording what arrived."""
import base64
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from api_common import issue_cert, make_ca

ACK_CODES = (200, 201, 202, 204)      # the statuses a push delivery counts as acknowledged


class Endpoint:
    """rules[path] = f(n-th request of that path, body) -> status, or ("sleep", seconds, status);
    got: (path, headers, body, status) in arrival order; ca_path: the CA that signed its certificate."""

    def __init__(self, base: Path, name="push"):
        base.mkdir(parents=True, exist_ok=True)
        ca, ca_key, self.ca_path = make_ca(base, cn=f"{name} CA")
        crt, key = base / "ep.crt", base / "ep.key"
        issue_cert(ca, ca_key, crt, key)
        self.got, self.count, self.rules = [], {}, {}
        self.lock = threading.Lock()
        ep = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                with ep.lock:
                    k = ep.count.get(self.path, 0)
                    ep.count[self.path] = k + 1
                st = ep.rules.get(self.path, lambda k, b: 200)(k, body)
                if isinstance(st, tuple):
                    time.sleep(st[1])
                    st = st[2]
                with ep.lock:
                    ep.got.append((self.path, dict(self.headers), body, st))
                try:
                    self.send_response(st)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def url(self, path):
        return f"https://127.0.0.1:{self.port}{path}"

    def of(self, path):
        with self.lock:
            return [g for g in self.got if g[0] == path]

    def acked_data(self, path):
        """The payloads (bytes) the endpoint acknowledged on path."""
        return [base64.b64decode(b["message"]["data"]) for _, _, b, st in self.of(path) if st in ACK_CODES]

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()
