"""One bounded HTTP/1.1 GET on asyncio streams, for the probes.

The probes need one thing from HTTP: status, a capped raw body and `Location`, from a
server that may be hostile, with every failure named by what happened on the wire. The
standard library does that in ~200 lines, where httpx (httpcore, h11, anyio, idna,
certifi's CA bundle) cost every `genai-tui check` ~0.1 s of CPU and the dashboard ~5 MB.
Seeing the raw bytes also tells "closed without a word" from "answered, not in HTTP"
without a second connection.

Errors are `FetchError(outcome, detail)` with details built from fixed phrases: never
from a peer's bytes or an exception's message (either could quote a header).
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

#: a status line, its header block and each chunk-size line are capped by the stream's limit
HEAD_LIMIT = 64 * 1024
MAX_HEADERS = 100
_STATUS = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: [^\r\n]*)?")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_PATH_SAFE = re.compile(r"[\x21-\x7e]*")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")

_tls: ssl.SSLContext | None = None


class FetchError(Exception):
    """A request that got no usable answer: `outcome` is a probe outcome."""

    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(outcome, detail)
        self.outcome = outcome
        self.detail = detail


def _tls_context() -> ssl.SSLContext:
    """The verifying context, built on the first https:// request (loading the system's
    CA store is most of a plain-http `check`'s would-be TLS cost)."""
    global _tls
    if _tls is None:
        _tls = ssl.create_default_context()
    return _tls


async def get(url: str, headers: Mapping[str, str], *, connect_timeout: float,
              read_timeout: float, max_body: int) -> tuple[int, bytes | None, str | None]:
    """(status, body or None when longer than `max_body`, Location) of `GET url`.
    `connect_timeout` bounds the TCP (and TLS) connect, `read_timeout` each read."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise FetchError("http_error", "invalid service URL") from None
    host = parts.hostname
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if parts.scheme not in ("http", "https") or not host \
            or not _PATH_SAFE.fullmatch(target):
        raise FetchError("http_error", "invalid service URL")
    tls = parts.scheme == "https"
    try:
        host = host.encode("idna").decode("ascii")
        netloc = f"[{host}]" if ":" in host else host
        if port is not None:
            netloc += f":{port}"
        lines = [f"GET {target} HTTP/1.1", f"Host: {netloc}", "Connection: close",
                 *(f"{k}: {v}" for k, v in headers.items())]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    except UnicodeError:
        raise FetchError("http_error", "invalid service URL") from None

    writer = None
    try:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                host, port or (443 if tls else 80), limit=HEAD_LIMIT,
                ssl=_tls_context() if tls else None), connect_timeout)
        except TimeoutError:
            raise FetchError("timeout", f"no TCP accept within {connect_timeout:g}s") from None
        except ssl.SSLCertVerificationError:
            raise FetchError("not_http", "TLS certificate not trusted") from None
        except ssl.SSLError:
            raise FetchError("not_http",
                             "TLS handshake failed (plain HTTP on an https:// URL?)") from None
        except OSError as exc:
            raise _connect_error(exc) from None
        except (ValueError, UnicodeError):
            raise FetchError("http_error", "invalid service URL") from None
        try:
            writer.write(request)
            async with asyncio.timeout(read_timeout):
                await writer.drain()
            return await _answer(_Timed(reader, read_timeout), max_body)
        except TimeoutError:
            raise FetchError("timeout",
                             f"connected, no answer within {read_timeout:g}s") from None
        except (ConnectionResetError, BrokenPipeError):
            raise FetchError("empty_reply", "connected, reset without an answer") from None
        except ssl.SSLError:
            raise FetchError("not_http", "connected, the answer is not HTTP") from None
        except OSError:
            raise FetchError("empty_reply", "connected, closed without an answer") from None
    finally:
        if writer is not None:
            writer.close()  # no wait_closed: a peer that never acks must not hold us


def _connect_error(exc: OSError) -> FetchError:
    if isinstance(exc, socket.gaierror):
        return FetchError("dns_error", "host name does not resolve")
    if isinstance(exc, ConnectionRefusedError):
        return FetchError("refused", "connection refused (nothing listens)")
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return FetchError("refused", "host or network unreachable")
    # every address failed: asyncio joins the errors into one message (never shown)
    if exc.errno is None and f"[Errno {errno.ECONNREFUSED}]" in str(exc):
        return FetchError("refused", "connection refused (nothing listens)")
    return FetchError("refused", "connection failed")


class _Timed:
    """The stream's reads, each bounded by the read timeout (as a socket timeout is: a
    slow but steady answer is left to the caller's overall deadline)."""

    def __init__(self, reader: asyncio.StreamReader, timeout: float) -> None:
        self._reader = reader
        self._timeout = timeout

    async def readuntil(self, separator: bytes) -> bytes:
        async with asyncio.timeout(self._timeout):
            return await self._reader.readuntil(separator)

    async def readexactly(self, n: int) -> bytes:
        async with asyncio.timeout(self._timeout):
            return await self._reader.readexactly(n)

    async def read(self, n: int) -> bytes:
        async with asyncio.timeout(self._timeout):
            return await self._reader.read(n)


async def _answer(reader: _Timed, max_body: int
                  ) -> tuple[int, bytes | None, str | None]:
    while True:
        status, fields = await _head(reader)
        if status >= 200 or status == 101:
            break  # 1xx interim answers (100 Continue, 103 Early Hints) come first
    location = fields.get(b"location")
    shown_location = location.decode("latin-1") if location is not None else None
    body = await _body(reader, status, fields, max_body)
    return status, body, shown_location


async def _head(reader: _Timed) -> tuple[int, dict[bytes, bytes]]:
    try:
        block = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise FetchError("empty_reply", "connected, closed without an answer") from None
        if exc.partial.startswith(b"HTTP/"):
            raise FetchError("http_error", "answer cut off in its headers") from None
        raise FetchError("not_http", "connected, the answer is not HTTP") from None
    except asyncio.LimitOverrunError:
        raise FetchError("not_http", "connected, the answer is not HTTP "
                         "(no end of headers in the first 64 KiB)") from None
    status_line, *header_lines = block[:-4].split(b"\r\n")
    match = _STATUS.fullmatch(status_line)
    if match is None or len(header_lines) > MAX_HEADERS:
        raise FetchError("not_http", "connected, the answer is not HTTP")
    fields: dict[bytes, bytes] = {}
    for line in header_lines:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):  # also an obsolete folded line
            raise FetchError("not_http", "connected, the answer is not HTTP")
        key, value = name.lower(), value.strip(b" \t")
        if key in fields and key in (b"content-length", b"transfer-encoding") \
                and fields[key] != value:
            raise FetchError("not_http", "connected, the answer is not HTTP")
        fields[key] = value
    return int(match.group(1)), fields


async def _body(reader: _Timed, status: int, fields: dict[bytes, bytes],
                max_body: int) -> bytes | None:
    if status in (204, 304):
        return b""
    cut = FetchError("http_error", "answer cut off before the end of the body")
    encoding = fields.get(b"transfer-encoding")
    if encoding is not None:
        if encoding.lower() != b"chunked":
            raise FetchError("not_http", "connected, the answer is not HTTP")
        return await _chunked(reader, max_body, cut)
    length = fields.get(b"content-length")
    if length is not None:
        if not length.isdigit() or len(length) > 18:
            raise FetchError("not_http", "connected, the answer is not HTTP")
        size = int(length)
        if size > max_body:
            return None
        try:
            return await reader.readexactly(size)
        except asyncio.IncompleteReadError:
            raise cut from None
    data = await reader.read(max_body + 1)  # delimited by the close
    body = bytearray(data)
    while data and len(body) <= max_body:
        data = await reader.read(max_body + 1 - len(body))
        body += data
    return bytes(body) if len(body) <= max_body else None


async def _chunked(reader: _Timed, max_body: int,
                   cut: FetchError) -> bytes | None:
    body = bytearray()
    try:
        while True:
            line = await reader.readuntil(b"\r\n")
            size_text = line[:-2].split(b";", 1)[0].strip(b" \t")
            if not _HEX.fullmatch(size_text):
                raise FetchError("not_http", "connected, the answer is not HTTP")
            size = int(size_text, 16)
            if size == 0:
                return bytes(body)  # trailers are never read: the connection closes
            if len(body) + size > max_body:
                return None
            body += await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise FetchError("not_http", "connected, the answer is not HTTP")
    except asyncio.IncompleteReadError:
        raise cut from None
    except asyncio.LimitOverrunError:
        raise FetchError("not_http", "connected, the answer is not HTTP") from None
