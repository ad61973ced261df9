"""A fault-injecting HTTP proxy for the loopback S3 server: some requests get ``503 SlowDown``, some a reset connection.

It stands where a real S3 endpoint would misbehave: between the clients (boto3, and pyarrow's C++
client) and the server, as the endpoint they are given. Each request is read whole first (a
``Content-Length`` body, or an HTTP ``chunked`` one, re-sent with a length), so a faulted request
never reaches the server: the client's retry is its first and only write. A reset sends the status
line of an answer and then RST, before any header: both clients see a failed request, and curl
cannot re-send it unseen (it does when a kept-alive connection dies before a whole line has come
back, which no retry count would see). Faults are drawn from a seeded RNG, the two kinds in turn,
at most ``max_per_request`` for one request (method, path and query), so a client with more
attempts than that for each request of an operation never gives up.
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message><RequestId>fault-proxy</RequestId></Error>")
# Hop-by-hop headers: they describe one connection, not the message, and the proxy frames bodies itself.
_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "expect"}


@dataclass(frozen=True)
class Fault:
    kind: str  # "503" or "reset"
    method: str
    path: str


class FaultProxy:
    """Forward to ``upstream``, answering a ``share`` of requests with a fault instead.

    Args:
        upstream: the S3 server's URL (``http://127.0.0.1:PORT``).
        share: the chance that a request is faulted (0 turns faults off).
        seed: the RNG seed.
        spare: ``(method, path) -> bool`` (the path without its query); requests it accepts are never faulted.
        max_per_request: the most faults one request (method, path and query) gets.

    Attributes:
        url: where clients send their requests.
        faults: every fault injected, in order.
        forwarded: requests passed on to the server.
    """

    def __init__(self, upstream: str, share: float = 0.12, seed: int = 0, spare: Callable[[str, str], bool] | None = None,
                 max_per_request: int = 2):
        self.upstream = urlparse(upstream)
        self.share, self.spare, self.max_per_request = share, spare, max_per_request
        self.faults: list[Fault] = []
        self.forwarded = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._faulted: dict[tuple[str, str], int] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3-fault-proxy", daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def count(self, kind: str | None = None) -> int:
        with self._lock:
            return sum(kind is None or f.kind == kind for f in self.faults)

    def _draw(self, method: str, target: str) -> str | None:
        """The fault for this request (``target``: its path and query), or None to forward it."""
        path = target.split("?")[0]
        with self._lock:
            key = (method, target)
            spared = self.spare is not None and self.spare(method, path)
            if spared or self._faulted.get(key, 0) >= self.max_per_request or self._rng.random() >= self.share:
                self.forwarded += 1
                return None
            self._faulted[key] = self._faulted.get(key, 0) + 1
            kind = ("503", "reset")[len(self.faults) % 2]  # in turn: any two faults show both kinds
            self.faults.append(Fault(kind, method, path))
            return kind


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as both SDKs expect of S3

        def log_message(self, *args) -> None:
            pass

        def _body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                parts = []
                while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline().strip():  # trailers, then the blank line that ends the message
                    pass
                return b"".join(parts)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _serve(self) -> None:
            body = self._body()
            fault = proxy._draw(self.command, self.path)
            if fault == "reset":
                self.wfile.write(b"HTTP/1.1 503 Slow Down\r\n")
                self.wfile.flush()
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()  # closed for good once the handler's files are: RST, without a FIN first
                self.close_connection = True
                return
            if fault == "503":
                self._answer(503, [("Content-Type", "application/xml")], SLOW_DOWN)
                return
            status, headers, data = self._forward(body)
            self._answer(status, headers, data)

        def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            if body or self.command in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            # One connection per request: a kept-alive one the server dropped would need a resend,
            # and the proxy must never send a request twice itself.
            upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
            try:
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                return response.status, response.getheaders(), response.read()
            finally:
                upstream.close()

        def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
            self.send_response_only(status)
            for key, value in headers:
                if key.lower() not in _HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            # A HEAD answer states the length of the body it does not send.
            length = dict((k.lower(), v) for k, v in headers).get("content-length", "0") if self.command == "HEAD" else str(len(data))
            self.send_header("Content-Length", length)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve

    return Handler
