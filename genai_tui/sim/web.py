"""Tiny request/response layer over ``http.server`` (stdlib only).

The simulators keep their routing logic as plain functions ``Request -> Response`` so the
same code can be unit-tested without sockets and served by ``ThreadingHTTPServer``.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")


@dataclass
class Request:
    """What a route handler needs to know about one HTTP request."""

    method: str
    target: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes = b""
    client: str = ""

    def arg(self, name: str) -> str | None:
        """First query value like aiohttp's ``request.query.get`` (``?token=`` gives "")."""
        values = self.query.get(name)
        return values[0] if values else None

    def header(self, name: str, default: str | None = None) -> str | None:
        """Case-insensitive header lookup."""
        value = self.headers.get(name)
        return default if value is None else value


@dataclass
class Response:
    """A complete response; ``websocket`` takes over the connection after the handshake."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False
    websocket: Callable[[BaseHTTPRequestHandler], None] | None = None


def json_response(
    obj: Any, status: int = 200, headers: list[tuple[str, str]] | None = None
) -> Response:
    """JSON like aiohttp's ``web.json_response`` (``json.dumps`` defaults, utf-8)."""
    return Response(
        status,
        json.dumps(obj).encode("utf-8"),
        "application/json; charset=utf-8",
        list(headers or []),
    )


def text_response(text: str, status: int = 200, content_type: str = "text/plain") -> Response:
    """Plain text/HTML body with an explicit charset, as aiohttp sends it."""
    return Response(status, text.encode("utf-8"), f"{content_type}; charset=utf-8")


def parse_target(target: str) -> tuple[str, dict[str, list[str]]]:
    """Split a request target into a decoded path and a query dict (blank values kept)."""
    parts = urlsplit(target)
    return unquote(parts.path) or "/", parse_qs(parts.query, keep_blank_values=True)


def make_handler(
    app: Callable[[Request], Response],
    *,
    protocol: str = "HTTP/1.1",
    server_header: str | None = None,
    access_log: Callable[[str], None] | None = None,
    methods: tuple[str, ...] = ALL_METHODS,
    idle_timeout: float = 75.0,
) -> type[BaseHTTPRequestHandler]:
    """Build a handler class bound to ``app``.

    ``methods`` limits which ``do_*`` exist, so other verbs get http.server's own 501 just
    like the reference orchestrator (a plain ``http.server`` app).
    """

    class Handler(BaseHTTPRequestHandler):
        protocol_version = protocol
        timeout = idle_timeout

        def version_string(self) -> str:
            return server_header or super().version_string()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            if access_log is not None:
                access_log(
                    f"{self.address_string()} - - [{self.log_date_time_string()}] {format % args}"
                )

        def _read_body(self) -> bytes | None:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                chunks = []
                while True:
                    size_line = self.rfile.readline(65537)
                    try:
                        size = int(size_line.split(b";")[0].strip() or b"0", 16)
                    except ValueError:
                        return None
                    if size == 0:
                        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline(65537)
            length = self.headers.get("Content-Length")
            if not length:
                return b""
            try:
                count = int(length)
            except ValueError:
                return None
            return self.rfile.read(count) if count > 0 else b""

        def _dispatch(self) -> None:
            body = self._read_body()
            if body is None:
                self.send_error(400, "Bad Request")
                return
            path, query = parse_target(self.path)
            request = Request(
                method=self.command,
                target=self.path,
                path=path,
                query=query,
                headers=self.headers,
                body=body,
                client=self.client_address[0] if self.client_address else "",
            )
            try:
                response = app(request)
            except Exception:  # safety net: routes normally build their own 500
                response = text_response(
                    "500 Internal Server Error\n\nServer got itself in trouble", 500
                )
                response.close = True
            if response.websocket is not None:
                self.close_connection = True
                response.websocket(self)
                return
            self.send_response(response.status)
            for name, value in response.headers:
                self.send_header(name, value)
            if response.content_type:
                self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            if response.close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD" and response.body:
                self.wfile.write(response.body)

    for method in methods:
        setattr(Handler, f"do_{method}", Handler._dispatch)
    return Handler


class SimHTTPServer(ThreadingHTTPServer):
    """Threaded server with daemon threads so SIGTERM exits at once."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet on client disconnects: the real servers print no access noise."""


class SimHTTPServer6(SimHTTPServer):
    """IPv6 (and dual-stack ``::``) variant."""

    address_family = socket.AF_INET6


def start_http_server(host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> SimHTTPServer:
    """Bind now (raises ``OSError`` if the port is taken) and serve in a daemon thread."""
    cls = SimHTTPServer6 if ":" in host else SimHTTPServer
    server = cls((host, port), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True, name="http"
    )
    thread.start()
    return server
