"""Test helpers on 127.0.0.1 only: a canary HTTP server that records every connection and
request (to prove that nothing was fetched) and a scripted HTTP server (redirects, trickles,
stalls, big bodies)."""
from __future__ import annotations

import http.server
import socket
import threading
import time


class _Recording(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler):
        super().__init__(("127.0.0.1", 0), handler)
        self.lock = threading.Lock()
        self.connections = 0
        self.requests: list[str] = []
        self.routes: dict = {}

    def verify_request(self, request, client_address) -> bool:
        with self.lock:
            self.connections += 1
        return True


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        srv = self.server
        with srv.lock:
            srv.requests.append(self.path)
        route = srv.routes.get(self.path.split("?")[0])
        if route is None:
            body = b"canary"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        route(self)


class Canary:
    """An HTTP server on 127.0.0.1 that answers everything and remembers every connection."""

    def __init__(self):
        self.httpd = _Recording(_Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def connections(self) -> int:
        with self.httpd.lock:
            return self.httpd.connections

    @property
    def requests(self) -> list[str]:
        with self.httpd.lock:
            return list(self.httpd.requests)

    def route(self, path: str, fn) -> None:
        """``fn(handler)`` answers GET ``path``."""
        self.httpd.routes[path] = fn

    def serve_bytes(self, path: str, body: bytes, ctype: str = "application/octet-stream") -> None:
        def send(h):
            h.send_response(200)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        self.route(path, send)

    def redirect(self, path: str, to: str, code: int = 302) -> None:
        def send(h):
            h.send_response(code)
            h.send_header("Location", to)
            h.send_header("Content-Length", "0")
            h.end_headers()
        self.route(path, send)

    def trickle(self, path: str, length: int, every_s: float, chunk: bytes = b"\0") -> None:
        """Announce ``length`` bytes, then send one ``chunk`` every ``every_s`` seconds."""
        def send(h):
            h.send_response(200)
            h.send_header("Content-Length", str(length))
            h.end_headers()
            try:
                for _ in range(length // len(chunk)):
                    h.wfile.write(chunk)
                    h.wfile.flush()
                    time.sleep(every_s)
            except OSError:
                pass
        self.route(path, send)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def raw_connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)
