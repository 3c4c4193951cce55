"""Real servers on 127.0.0.1 for tests: an HTTP file server with Range support and scriptable faults, and
moto's S3 server.

Faults (per path, on the server returned by :func:`http_file_server`):

- ``server.fail(path, times=2, status=503)``: the first ``times`` requests get ``status``, then it serves;
- ``server.always(path, status=404)``: every request gets ``status``;
- ``server.slow(path, delay_sec=5)``: headers come at once, then the body stalls ``delay_sec`` before it;
- ``server.slow_headers(path, delay_sec=5)``: nothing at all for ``delay_sec``;
- ``server.redirect(path, location, status=302)``: redirect (``location`` may be any URL; nothing is
  contacted unless the client follows it);
- ``server.redirect_loop(path)``: ``path`` -> ``path?hop=1`` -> ``path?hop=2`` ... forever;
- ``server.reset(path, times=1)``: the first ``times`` requests have their connection closed without a reply.

``server.requests`` lists ``(method, path)`` of every request (thread-safe), ``server.count(path)`` counts
them, ``server.url(path)`` builds an URL, ``server.clear()`` drops rules and the log.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _handler_for(root: Path):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output quiet
            pass

        def _resolve(self) -> Path | None:
            p = (root / self.path.split("?", 1)[0].lstrip("/")).resolve()
            return p if p.is_file() and root.resolve() in p.parents else None

        def do_HEAD(self):
            if not self._fault():
                self._serve(body=False)

        def do_GET(self):
            if not self._fault():
                self._serve(body=True)

        def _fault(self) -> bool:
            """Apply the path's scripted behaviour; True when the request has been answered."""
            server = self.server
            path = self.path.split("?", 1)[0]
            with server.lock:  # type: ignore[attr-defined]
                server.requests.append((self.command, self.path))  # type: ignore[attr-defined]
                rule = server.rules.get(path)  # type: ignore[attr-defined]
                if rule is None:
                    return False
                kind = rule["kind"]
                if kind in ("fail", "reset"):
                    if rule["left"] <= 0:
                        return False
                    rule["left"] -= 1
            if kind in ("fail", "always"):
                self.send_response(rule["status"])
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                return True
            if kind == "reset":
                # SO_LINGER 0: close() sends a TCP RST, the client sees "connection reset by peer"
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()
                return True
            if kind == "redirect":
                location = rule["location"]
                if location is None:  # loop: every hop points at the next one, forever
                    m = re.search(r"hop=(\d+)", self.path)
                    location = f"{path}?hop={int(m.group(1)) + 1 if m else 1}"
                self.send_response(rule["status"])
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return True
            if kind == "slow_headers":
                time.sleep(rule["delay"])
                return False
            if kind == "slow":
                self._slow_body = rule["delay"]
            return False

        def _serve(self, body: bool):
            p = self._resolve()
            if p is None:
                self.send_error(404, "not found")
                return
            data = p.read_bytes()
            start, end = 0, len(data) - 1
            m = re.match(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
            if m:
                if m.group(1):
                    start = int(m.group(1))
                    end = int(m.group(2)) if m.group(2) else end
                else:
                    start = max(0, len(data) - int(m.group(2)))
                end = min(end, len(data) - 1)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if body:
                delay = getattr(self, "_slow_body", 0)
                if delay:
                    self.wfile.write(data[start:start + 1])  # a trickle, then nothing for `delay` seconds
                    self.wfile.flush()
                    time.sleep(delay)
                    start += 1
                self.wfile.write(data[start:end + 1])
                self.server.bytes_sent += end - start + 1  # type: ignore[attr-defined]

    return Handler


class FaultHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer with scriptable per-path faults (see the module docstring)."""

    daemon_threads = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bytes_sent = 0
        self.lock = threading.Lock()
        self.rules: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []

    @property
    def base(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + "/" + path.lstrip("/")

    def _rule(self, path: str, **rule) -> str:
        path = "/" + path.lstrip("/")
        with self.lock:
            self.rules[path] = rule
        return self.url(path)

    def fail(self, path: str, times: int = 1, status: int = 503) -> str:
        return self._rule(path, kind="fail", left=times, status=status)

    def always(self, path: str, status: int = 404) -> str:
        return self._rule(path, kind="always", status=status)

    def slow(self, path: str, delay_sec: float) -> str:
        return self._rule(path, kind="slow", delay=delay_sec)

    def slow_headers(self, path: str, delay_sec: float) -> str:
        return self._rule(path, kind="slow_headers", delay=delay_sec)

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        return self._rule(path, kind="redirect", location=location, status=status)

    def redirect_loop(self, path: str, status: int = 302) -> str:
        return self._rule(path, kind="redirect", location=None, status=status)

    def reset(self, path: str, times: int = 1) -> str:
        return self._rule(path, kind="reset", left=times)

    def count(self, path: str) -> int:
        path = "/" + path.lstrip("/")
        with self.lock:
            return sum(1 for _, p in self.requests if p.split("?", 1)[0] == path)

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()
            self.requests.clear()


@contextmanager
def http_file_server(root: Path) -> Iterator[FaultHTTPServer]:
    """Serve ``root`` on 127.0.0.1; ``server.bytes_sent`` counts body bytes sent; faults as described above."""
    server = FaultHTTPServer(("127.0.0.1", 0), _handler_for(root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def moto_s3_server() -> Iterator[str]:
    """Start moto's S3 server on 127.0.0.1 and point boto3/s3fs at it; yields the endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    old = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")}
    os.environ["AWS_ENDPOINT_URL_S3"] = endpoint
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    try:
        yield endpoint
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()
