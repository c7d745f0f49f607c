"""The probes' own HTTP/1.1 GET against raw socket servers that answer in every way a real
or hostile server can: what comes back is the status and capped body a probe shows, or
the outcome it names (never a traceback, never the peer's bytes in a message)."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path

import pytest

from genai_tui.sources import httpget
from genai_tui.sources.httpget import FetchError
from tests.unit.test_probes import Server

HEADERS = {"Accept": "application/json", "User-Agent": "genai-tui-probe"}


async def fetch(url: str, *, max_body: int = 1024, read_timeout: float = 1.0,
                headers: dict[str, str] | None = None):
    return await httpget.get(url, HEADERS if headers is None else headers,
                             connect_timeout=0.5, read_timeout=read_timeout,
                             max_body=max_body)


def answering(raw: bytes):
    """A server that reads one request head and writes `raw`, then closes."""
    async def handler(r, w):
        await r.readuntil(b"\r\n\r\n")
        w.write(raw)
        await w.drain()
    return handler


async def outcome_of(raw: bytes, **kw) -> tuple[str, str]:
    async with Server(answering(raw)) as srv:
        with pytest.raises(FetchError) as info:
            await fetch(srv.url + "/x", **kw)
    return info.value.outcome, info.value.detail


async def test_a_request_names_host_path_and_headers_and_asks_to_close():
    got: list[bytes] = []

    async def handler(r, w):
        got.append(await r.readuntil(b"\r\n\r\n"))
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    async with Server(handler) as srv:
        url = srv.url
        status, body, location = await fetch(url + "/queue?x=1")
    assert (status, body, location) == (200, b"ok", None)
    head = got[0].decode()
    assert head.startswith("GET /queue?x=1 HTTP/1.1\r\n")
    assert f"Host: {url.removeprefix('http://')}\r\n" in head
    assert "Connection: close\r\n" in head and "User-Agent: genai-tui-probe\r\n" in head


async def test_chunked_bodies_are_joined_and_capped():
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" \
              b"4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\n"
    async with Server(answering(chunked)) as srv:
        assert (await fetch(srv.url))[:2] == (200, b"wikipedia")
        assert (await fetch(srv.url, max_body=6))[:2] == (200, None)  # over the cap


@pytest.mark.parametrize("size", [b"0x4", b"+4", b"4_0", b"-1", b"zz", b"1" * 40])
async def test_a_chunk_size_that_is_not_plain_hex_is_not_http(size):
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size + b"\r\nwiki\r\n0\r\n\r\n"
    assert (await outcome_of(raw))[0] == "not_http"


async def test_a_body_cut_before_its_length_or_last_chunk_is_an_http_error():
    for raw in (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwi"):
        assert await outcome_of(raw) == ("http_error",
                                         "answer cut off before the end of the body")


async def test_a_body_delimited_by_the_close_is_read_up_to_the_cap():
    async with Server(answering(b"HTTP/1.0 200 OK\r\n\r\n" + b"a" * 300)) as srv:
        assert (await fetch(srv.url))[:2] == (200, b"a" * 300)
        assert (await fetch(srv.url, max_body=299))[:2] == (200, None)


async def test_interim_answers_are_skipped_and_location_is_kept():
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" \
          b"HTTP/1.1 302 Found\r\nLocation: /login\r\nContent-Length: 0\r\n\r\n"
    async with Server(answering(raw)) as srv:
        assert await fetch(srv.url) == (302, b"", "/login")


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",  # smuggling
    b"HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/2 200\r\n\r\n",
    b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 70_000 + b"\r\n\r\n",  # no end of head
    b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n",
], ids=["two-lengths", "float-length", "gzip", "folded", "status", "http2", "ssh", "huge-head",
        "many-headers"])
async def test_answers_that_are_not_http_1_say_so(raw):
    outcome, detail = await outcome_of(raw)
    assert outcome == "not_http"
    assert "OpenSSH" not in detail and "X-" not in detail  # never the peer's bytes


async def test_a_banner_then_close_is_not_http_on_one_connection():
    """What was "empty reply" plus a second look with httpx is now one connection."""
    async def banner(r, w):
        w.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        await w.drain()

    async with Server(banner) as srv:
        with pytest.raises(FetchError) as info:
            await fetch(srv.url)
    assert info.value.outcome == "not_http" and srv.connections == 1


async def test_headers_cut_off_is_an_http_error_and_silence_an_empty_reply():
    assert await outcome_of(b"HTTP/1.1 200 OK\r\nContent-") == \
        ("http_error", "answer cut off in its headers")
    assert (await outcome_of(b""))[0] == "empty_reply"


async def test_a_silent_server_is_a_read_timeout_per_read():
    async def hang(r, w):
        await asyncio.sleep(30)

    async with Server(hang) as srv:
        with pytest.raises(FetchError) as info:
            await fetch(srv.url, read_timeout=0.3)
    assert (info.value.outcome, info.value.detail) == \
        ("timeout", "connected, no answer within 0.3s")


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:21/", "http://127.0.0.1:99999/",
                                 "http:///nohost", "http://127.0.0.1:1/a b",
                                 "http://127.0.0.1:1/a\r\nX-Injected: 1",
                                 "http://" + "a" * 70 + ".example/"])
async def test_urls_that_cannot_be_requested_are_invalid_not_a_crash(url):
    with pytest.raises(FetchError) as info:
        await fetch(url)
    assert (info.value.outcome, info.value.detail) == ("http_error", "invalid service URL")


async def test_https_to_a_plain_http_port_is_a_tls_failure():
    async def plain(r, w):  # as a real HTTP server does with a TLS hello: 400, close
        await r.read(1)
        w.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await w.drain()

    async with Server(plain) as srv:
        with pytest.raises(FetchError) as info:
            await fetch(srv.url.replace("http://", "https://"))
    assert info.value.outcome == "not_http" and "TLS" in info.value.detail


@pytest.fixture
def self_signed(tmp_path: Path) -> ssl.SSLContext:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


async def test_an_untrusted_certificate_is_refused_not_read(self_signed):
    served: list[bool] = []

    async def handler(r, w):
        served.append(True)
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=self_signed)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(FetchError) as info:
            await fetch(f"https://127.0.0.1:{port}/")
    finally:
        server.close()
    assert (info.value.outcome, info.value.detail) == ("not_http", "TLS certificate not trusted")
    assert not served  # the handshake failed before any request was sent
