"""Probes against local simulator processes and small misbehaving socket servers.

Each test asserts what an admin would see: the outcome, the auth verdict, the status and
the parsed queue/VRAM/backends — and that the token hash never leaks anywhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from genai_tui.config import Config, ProbeConfig, ServiceConfig
from genai_tui.model import OUTCOMES, Snapshot
from genai_tui.sources.probes import (
    MAX_BODY_BYTES,
    Prober,
    display_url,
    parse_health,
    parse_queue,
    parse_system_stats,
    probe_once,
    sanitize,
)
from tests.conftest import free_port, make_hash

REPO = Path(__file__).resolve().parents[2]
FAST = ProbeConfig(interval=5.0, connect_timeout=0.5, read_timeout=1.0)


# ------------------------------------------------------------------ local simulator


class LocalSim:
    def __init__(self, proc: subprocess.Popen, port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_local_sim(tmp_path: Path, *, kind: str = "comfyui", scenario: str = "healthy",
                    hash_: str | None = None, extra: tuple[str, ...] = ()) -> LocalSim:
    """A simulator as a plain local process (no docker-proxy in front of it)."""
    root = tmp_path / f"sim-{kind}-{scenario}-{os.urandom(2).hex()}"
    (root / "login").mkdir(parents=True)
    if hash_ is not None:
        (root / "login" / "PASSWORD").write_text(f"{hash_}\nadmin")
    port = free_port()
    log = root / "sim.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "genai_tui.sim", "--kind", kind, "--host", "127.0.0.1",
             "--port", str(port), "--scenario", scenario,
             "--password-file", str(root / "login" / "PASSWORD"), *extra],
            cwd=root, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO)})
    ready = "Starting server" if scenario == "no_listen" else {
        "comfyui": "To see the GUI go to", "orchestrator": "listening on",
        "stub": "Serving HTTP on"}[kind]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if ready in log.read_text(errors="replace"):
            return LocalSim(proc, port, log)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"simulator did not start: {log.read_text(errors='replace')[-2000:]}")


@pytest.fixture
def local_sim(tmp_path: Path) -> Iterator[Callable[..., LocalSim]]:
    made: list[LocalSim] = []

    def start(**kwargs) -> LocalSim:
        sim = start_local_sim(tmp_path, **kwargs)
        made.append(sim)
        return sim

    yield start
    for sim in made:
        sim.proc.terminate()
        try:
            sim.proc.wait(5)
        except subprocess.TimeoutExpired:
            sim.proc.kill()
            sim.proc.wait()


def comfy(url: str, name: str = "comfy") -> ServiceConfig:
    return ServiceConfig(name, url, "comfyui", auth=True)


async def probe(service: ServiceConfig, token: str | None, config: ProbeConfig = FAST):
    async with Prober(config) as p:
        return await p.probe(service, token)


# ------------------------------------------------------------------ small socket servers

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A one-handler asyncio TCP server that records what it received."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task] = set()

    async def __aenter__(self) -> Server:
        async def wrapped(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            self.connections += 1
            self.tasks.add(asyncio.current_task())  # type: ignore[arg-type]
            try:
                await self.handler(r, w)
            except (asyncio.CancelledError, ConnectionError):
                pass
            finally:
                w.close()

        self.server = await asyncio.start_server(wrapped, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def read_head(self, r: asyncio.StreamReader) -> bytes:
        head = await r.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        return head


def http_answer(status: int, body: bytes = b"", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{extra}"
            "Connection: close\r\n\r\n").encode() + body


def answering(routes: Callable[[bytes], bytes]) -> Callable[[Server], Handler]:
    def make(srv: Server) -> Handler:
        async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            head = await srv.read_head(r)
            w.write(routes(head))
            await w.drain()
        return handler
    return make


async def serve(make: Callable[[Server], Handler]) -> Server:
    srv = Server(None)  # type: ignore[arg-type]
    srv.handler = make(srv)
    return await srv.__aenter__()


def path_of(head: bytes) -> str:
    return head.split(b" ", 2)[1].decode()


def header(head: bytes, name: str) -> str | None:
    for line in head.decode("latin-1").split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == name.lower():
            return v.strip()
    return None


# ------------------------------------------------------------------ simulator scenarios


async def test_healthy_comfyui_is_ok_and_enforced_with_queue_and_vram(tmp_path, local_sim):
    h = make_hash()
    sim = local_sim(hash_=h)
    r = await probe(comfy(sim.url), h)
    assert (r.outcome, r.auth, r.status) == ("ok", "enforced", 200)
    assert r.login_loaded is True and r.password_set is True
    assert r.queue_remaining == 0
    assert r.vram_total_mb and r.vram_total_mb > 1000
    assert r.vram_free_mb is not None and r.vram_free_mb <= r.vram_total_mb
    assert r.device_name and "RTX" in r.device_name
    assert r.latency_ms is not None and r.latency_ms > 0
    assert r.url == sim.url


async def test_wrong_hash_on_disk_is_rejected(local_sim):
    sim = local_sim(hash_=make_hash())
    r = await probe(comfy(sim.url), make_hash())
    assert (r.outcome, r.auth, r.status) == ("ok", "rejected", 401)
    assert r.queue_remaining is None and r.vram_total_mb is None


async def test_login_missing_is_disabled(local_sim):
    h = make_hash()
    sim = local_sim(scenario="login_missing", hash_=h)
    r = await probe(comfy(sim.url), h)
    assert (r.outcome, r.auth, r.status) == ("ok", "disabled", 200)
    assert r.login_loaded is False
    assert r.queue_remaining == 0 and r.vram_total_mb  # read without any token
    assert "open" in r.detail


async def test_no_password_is_reported(local_sim):
    sim = local_sim(scenario="no_password", hash_=make_hash())
    r = await probe(comfy(sim.url), make_hash())
    assert (r.outcome, r.auth) == ("ok", "no_password")
    assert r.password_set is False


async def test_no_hash_available_is_unknown(local_sim):
    sim = local_sim(hash_=make_hash())
    for token in (None, "", "   "):
        r = await probe(comfy(sim.url), token)
        assert (r.outcome, r.auth, r.status) == ("ok", "unknown", 401)


async def test_no_listen_local_process_is_refused(local_sim):
    sim = local_sim(scenario="no_listen", hash_=make_hash())
    r = await probe(comfy(sim.url), make_hash())
    assert (r.outcome, r.auth, r.status) == ("refused", "unknown", None)


async def test_wrong_port_local_process_is_refused_on_the_configured_port(local_sim):
    sim = local_sim(scenario="wrong_port", hash_=make_hash())
    r = await probe(comfy(sim.url), make_hash())
    assert r.outcome == "refused"
    # ... while the process does answer one port up
    r2 = await probe(comfy(f"http://127.0.0.1:{sim.port + 1}"), None)
    assert r2.outcome == "ok"


@pytest.mark.parametrize("scenario, outcome", [
    ("empty_reply", "empty_reply"),
    ("not_http", "not_http"),
    ("hang", "timeout"),
])
async def test_broken_port_scenarios(local_sim, scenario, outcome):
    sim = local_sim(scenario=scenario, hash_=make_hash())
    r = await probe(comfy(sim.url), make_hash())
    assert (r.outcome, r.auth, r.status) == (outcome, "unknown", None)
    http_svc = ServiceConfig("h", sim.url, "http")
    r2 = await probe(http_svc, None)
    assert (r2.outcome, r2.auth) == (outcome, None)


async def test_orchestrator_health_with_backends(local_sim):
    comfy_sim = local_sim(hash_=make_hash())
    dead = free_port()
    orch = local_sim(kind="orchestrator",
                     extra=("--backends", f"qwen={comfy_sim.url}/,flux=http://127.0.0.1:{dead}/",
                            "--check-interval", "0.2"))
    svc = ServiceConfig("orchestrator", orch.url, "orchestrator", health_path="/health")
    deadline = time.monotonic() + 10
    while True:
        r = await probe(svc, None)
        # the monitor probes one backend after the other: wait for its whole first round
        if (r.backends and "unknown" not in r.backends.values()) \
                or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert (r.outcome, r.auth, r.status, r.health) == ("ok", None, 200, "healthy")
    assert r.backends == {"qwen": "healthy", "flux": "unhealthy"}
    assert "flux" in r.detail
    # /status-shaped bodies are read too
    r = await probe(ServiceConfig("o", orch.url, "orchestrator", health_path="/status"), None)
    assert r.outcome == "ok" and r.health == "running"
    assert r.backends == {"qwen": "healthy", "flux": "unhealthy"}
    # a missing health path is an http_error, not ok
    r = await probe(ServiceConfig("o", orch.url, "orchestrator", health_path="/nope"), None)
    assert (r.outcome, r.status) == ("http_error", 404)


async def test_stub_http_service(local_sim):
    stub = local_sim(kind="stub")
    r = await probe(ServiceConfig("sd35", stub.url, "http", health_path="/health"), None)
    assert (r.outcome, r.auth, r.status) == ("ok", None, 200)


# ------------------------------------------------------------------ transport failures


async def test_closed_port_is_refused():
    port = free_port()
    r = await probe(ServiceConfig("x", f"http://127.0.0.1:{port}", "http"), None)
    assert (r.outcome, r.status) == ("refused", None)
    assert r.latency_ms is not None


async def test_unresolvable_host_is_dns_error():
    r = await probe(comfy("http://nonexistent.invalid:8188"), make_hash())
    assert (r.outcome, r.auth) == ("dns_error", "unknown")


async def test_full_backlog_is_connect_timeout():
    """SYNs to a listener whose accept queue is full are dropped: a connect timeout."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # fill the (tiny) accept queue
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.1)
        cfg = ProbeConfig(connect_timeout=0.3, read_timeout=1.0)
        r = await probe(ServiceConfig("x", f"http://127.0.0.1:{port}", "http"), None, cfg)
        assert r.outcome == "timeout"
        assert "TCP" in r.detail
    finally:
        for s in fillers:
            s.close()
        lsock.close()


async def test_accept_without_answer_is_read_timeout():
    async def hang(r, w):
        await asyncio.sleep(30)

    async with Server(hang) as srv:
        r = await probe(ServiceConfig("x", srv.url, "http"), None)
    assert r.outcome == "timeout"
    assert r.latency_ms is not None and r.latency_ms >= 900


async def test_trickling_answer_is_cut_by_the_overall_deadline():
    """A server that sends a byte every 0.2 s never trips the read timeout; the overall
    deadline (connect + read) still ends the probe."""
    async def trickle(r, w):
        w.write(b"HTTP/1.1 200 OK\r\n")
        while True:
            w.write(b"X")
            await w.drain()
            await asyncio.sleep(0.2)

    async with Server(trickle) as srv:
        start = time.monotonic()
        r = await probe(ServiceConfig("x", srv.url, "http"), None)
        elapsed = time.monotonic() - start
    assert r.outcome == "timeout"
    assert elapsed < FAST.connect_timeout + FAST.read_timeout + 2.0


def delayed_comfy(hash_: str, delays: dict[str, float]) -> Callable[[Server], Handler]:
    """fake_comfy, but each path answers after its delay."""
    routes = None

    def make(srv: Server) -> Handler:
        nonlocal routes
        inner = fake_comfy(hash_)(srv)

        async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            head = await r.readuntil(b"\r\n\r\n")
            await asyncio.sleep(delays.get(path_of(head), 0.0))
            feed = asyncio.StreamReader()
            feed.feed_data(head)
            await inner(feed, w)
        return handler
    return make


async def test_slow_system_stats_keeps_the_verdict():
    """The deadline hitting during the optional /system_stats must not turn an enforced,
    working server into a timeout."""
    h = make_hash()
    srv = await serve(delayed_comfy(h, {"/system_stats": 5.0}))
    try:
        r = await probe(comfy(srv.url), h)
    finally:
        await srv.__aexit__()
    assert (r.outcome, r.auth, r.status, r.queue_remaining) == ("ok", "enforced", 200, 3)
    assert r.vram_total_mb is None and "VRAM not read" in r.detail


async def test_sequence_slower_than_the_deadline_is_timeout():
    """Each answer within the read timeout, the whole sequence over connect+read: timeout,
    with a detail that says the server answers, slowly."""
    h = make_hash()
    srv = await serve(delayed_comfy(h, {"/login": 0.6, "/prompt": 0.6}))
    try:
        r = await probe(comfy(srv.url), h)
    finally:
        await srv.__aexit__()
    assert (r.outcome, r.auth, r.status) == ("timeout", "unknown", None)
    assert "too slow" in r.detail


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999", "ftp://127.0.0.1:21"])
async def test_invalid_url_is_an_http_error_not_a_crash(url):
    r = await probe(ServiceConfig("x", url, "http"), None)
    assert (r.outcome, r.detail) == ("http_error", "invalid service URL")


async def test_close_without_answer_is_empty_reply():
    async def close(r, w):
        await r.readuntil(b"\r\n\r\n")

    async with Server(close) as srv:
        r = await probe(comfy(srv.url), make_hash())
    assert (r.outcome, r.auth) == ("empty_reply", "unknown")


async def test_reset_is_empty_reply():
    async def reset(r, w):
        await r.readuntil(b"\r\n\r\n")
        sock = w.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        w.transport.abort()

    async with Server(reset) as srv:
        r = await probe(ServiceConfig("x", srv.url, "http"), None)
    assert r.outcome == "empty_reply"
    assert "reset" in r.detail


async def test_garbage_with_blank_line_is_not_http():
    async def junk(r, w):
        await r.readuntil(b"\r\n\r\n")
        w.write(b"220 smtp.example ESMTP ready\r\n\r\n")
        await w.drain()

    async with Server(junk) as srv:
        r = await probe(ServiceConfig("x", srv.url, "http"), None)
    assert r.outcome == "not_http"


async def test_server_error_is_http_error():
    srv = await serve(answering(lambda head: http_answer(500, b"500 Internal Server Error")))
    try:
        r = await probe(comfy(srv.url), make_hash())
        assert (r.outcome, r.status, r.auth) == ("http_error", 500, "unknown")
        r = await probe(ServiceConfig("x", srv.url, "http"), None)
        assert (r.outcome, r.status) == ("http_error", 500)
    finally:
        await srv.__aexit__()


async def test_redirects_are_not_followed():
    srv = await serve(answering(lambda head: http_answer(
        302, extra="Location: /elsewhere?token=abc\r\n")))
    try:
        r = await probe(ServiceConfig("x", srv.url, "http", health_path="/health"), None)
        assert (r.outcome, r.status) == ("http_error", 302)
        assert [path_of(h) for h in srv.requests] == ["/health"]
        assert "token" not in r.detail
    finally:
        await srv.__aexit__()


# ------------------------------------------------------------------ request hygiene


def fake_comfy(hash_: str, *, set_cookie: bool = False, body_for: dict | None = None):
    """A ComfyUI-Login lookalike: /login open, other routes need the bearer (or, to catch
    a client that keeps cookies, the cookie /login hands out)."""
    body_for = body_for or {}

    def routes(head: bytes) -> bytes:
        path = path_of(head)
        if path == "/login":
            extra = "Set-Cookie: AIOHTTP_SESSION=authed; Path=/\r\n" if set_cookie else ""
            return http_answer(200, b"<html>Welcome back, admin!</html>", extra)
        auth = header(head, "authorization")
        cookie = header(head, "cookie") or ""
        if auth != f"Bearer {hash_}" and "AIOHTTP_SESSION=authed" not in cookie:
            return http_answer(401, b'{"error": "Authentication required."}')
        if path in body_for:
            return http_answer(200, body_for[path])
        if path == "/prompt":
            return http_answer(200, b'{"exec_info": {"queue_remaining": 3}}')
        return http_answer(200, b"{}")

    return answering(routes)


async def test_headers_and_where_the_bearer_goes():
    h = make_hash()
    srv = await serve(fake_comfy(h))
    try:
        r = await probe(comfy(srv.url), h)
        assert (r.outcome, r.auth, r.queue_remaining) == ("ok", "enforced", 3)
        seen = [(path_of(x), header(x, "authorization")) for x in srv.requests]
        assert seen == [("/login", None), ("/prompt", None), ("/prompt", f"Bearer {h}"),
                        ("/system_stats", f"Bearer {h}")]
        assert all(header(x, "accept") == "application/json" for x in srv.requests)
        assert all("token" not in path_of(x) for x in srv.requests)
        # the hash never goes to a non-ComfyUI service
        srv.requests.clear()
        await probe(ServiceConfig("o", srv.url, "orchestrator"), h)
        assert [header(x, "authorization") for x in srv.requests] == [None]
    finally:
        await srv.__aexit__()


async def test_cookies_are_never_kept():
    """If a session cookie from /login were replayed, the "no token" request would look
    authorised and a correctly protected server would be reported as `disabled`."""
    h = make_hash()
    srv = await serve(fake_comfy(h, set_cookie=True))
    try:
        async with Prober(FAST) as p:
            for _ in range(2):
                r = await p.probe(comfy(srv.url), h)
                assert r.auth == "enforced"
        assert all(header(x, "cookie") is None for x in srv.requests)
    finally:
        await srv.__aexit__()


async def test_proxy_variables_are_ignored(monkeypatch):
    dead = free_port()
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{dead}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    srv = await serve(answering(lambda head: http_answer(200, b'{"status": "healthy"}')))
    try:
        r = await probe(ServiceConfig("x", srv.url, "http"), None)
        assert (r.outcome, r.health) == ("ok", "healthy")
    finally:
        await srv.__aexit__()


async def test_one_probe_in_flight_per_service():
    async def slow(r, w):
        await r.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.3)
        w.write(http_answer(200, b"{}"))
        await w.drain()

    async with Server(slow) as srv:
        svc = ServiceConfig("x", srv.url, "http")
        async with Prober(FAST) as p:
            a, b = await asyncio.gather(p.probe(svc, None), p.probe(svc, None))
            assert a.outcome == b.outcome == "ok"
            assert srv.connections == 1
            await p.probe(svc, None)  # once finished, a new probe does go out
            assert srv.connections == 2


# ------------------------------------------------------------------ hostile bodies


HOSTILE = [
    b"",
    b"null",
    b"[1, 2, 3]",
    b'"a string"',
    b"{not json",
    b"\xff\xfe\x00garbage",
    b'{"exec_info": "nope"}',
    b'{"exec_info": {"queue_remaining": "7"}}',
    b'{"exec_info": {"queue_remaining": true}}',
    b'{"exec_info": {"queue_remaining": -4}}',
    b'{"devices": {"0": 1}}',
    b'{"devices": [null]}',
    b'{"devices": [{"vram_total": "big", "vram_free": NaN, "name": 5}]}',
    b'{"devices": [{"vram_total": 1e400, "vram_free": -1}]}',
    b"[" * 100000 + b"]" * 100000,
    b'{"status": {"nested": 1}, "services": [1, "x", {"name": null}]}',
    b'{"status": 5, "services": {"a": [1], "b": {"status": 3}}}',
    b'{"pad": "' + b"x" * (MAX_BODY_BYTES + 10) + b'"}',
]


@pytest.mark.parametrize("body", HOSTILE, ids=range(len(HOSTILE)))
def test_parsers_survive_hostile_bodies(body):
    assert parse_queue(body) is None
    stats = parse_system_stats(body)
    assert stats.vram_total_mb is None and stats.vram_free_mb is None
    health = parse_health(body)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in health.backends.items())


def test_parsers_read_the_documented_shapes():
    assert parse_queue(b'{"exec_info": {"queue_remaining": 2}}') == 2
    s = parse_system_stats(json.dumps({"system": {}, "devices": [
        {"name": "cuda:0 RTX", "vram_total": 25769803776, "vram_free": 1073741824}]}).encode())
    assert (s.vram_total_mb, s.vram_free_mb, s.device_name) == (24576.0, 1024.0, "cuda:0 RTX")
    h = parse_health(b'{"status": "healthy", "service": "GenAI-Orchestrator"}')
    assert (h.status, h.backends) == ("healthy", {})
    h = parse_health(json.dumps({"orchestrator": {"status": "running"}, "services": {
        "a": {"status": "healthy", "error_count": 0}, "b": {"status": "unhealthy"}}}).encode())
    assert (h.status, h.backends) == ("running", {"a": "healthy", "b": "unhealthy"})
    h = parse_health(b'{"healthy": false, "backends": [{"name": "x", "state": "down"}]}')
    assert (h.status, h.backends) == ("unhealthy", {"x": "down"})


async def test_hostile_answers_from_a_server_do_not_crash_or_inject(tmp_path):
    """Escape sequences, a bcrypt hash and megabytes in a device name: sanitised, capped."""
    h = make_hash()
    evil_name = "\x1b[2J\x1b]0;pwned\x07GPU " + make_hash() + " \u202e" + "A" * 5000
    stats = json.dumps({"devices": [{"name": evil_name, "vram_total": 1 << 30,
                                     "vram_free": 1 << 29}]}).encode()
    srv = await serve(fake_comfy(h, body_for={"/system_stats": stats,
                                              "/prompt": b"[" * 50000}))
    try:
        r = await probe(comfy(srv.url), h)
    finally:
        await srv.__aexit__()
    assert (r.outcome, r.auth, r.queue_remaining) == ("ok", "enforced", None)
    assert (r.vram_total_mb, r.vram_free_mb) == (1024.0, 512.0)
    assert r.device_name is not None
    assert "\x1b" not in r.device_name and "\x07" not in r.device_name
    assert "\u202e" not in r.device_name and "$2b$" not in r.device_name
    assert len(r.device_name) <= 80
    big = await serve(answering(lambda head: http_answer(
        200, b'{"status": "' + b"\x1b[31m" * 200000 + b'"}')))
    try:
        r = await probe(ServiceConfig("o", big.url, "orchestrator"), None)
    finally:
        await big.__aexit__()
    assert r.outcome == "ok" and r.health is None  # over the body cap: not parsed


def test_sanitize_and_display_url():
    h = make_hash()
    # the whole escape sequence goes, not just its ESC byte (safety.one_line)
    assert sanitize(f"a\x1b[31mb\x00c\u202ed {h}", secret=h) == "abcd [token]"
    assert sanitize("x" * 500, 20) == "x" * 19 + "…"
    assert display_url(f"http://admin:{h}@127.0.0.1:8188/comfy/?token={h}#f") == \
        "http://127.0.0.1:8188/comfy"
    assert display_url("http://[::1]:8188") == "http://[::1]:8188"


# ------------------------------------------------------------------ secrets


async def test_token_never_leaks_into_results_json_repr_or_logs(local_sim, caplog):
    caplog.set_level(logging.DEBUG)
    h = make_hash()
    good = local_sim(hash_=h)
    wrong = local_sim(hash_=make_hash())
    dead = free_port()
    services = (comfy(good.url, "good"), comfy(wrong.url, "wrong"),
                comfy(f"http://127.0.0.1:{dead}", "dead"),
                comfy(f"http://user:{h}@127.0.0.1:{good.port}/?token={h}", "in-url"),
                comfy("http://nonexistent.invalid:1", "dns"))
    async with Prober(FAST) as p:
        results = await p.probe_all(services, h)
        text_p = repr(p)
    # malformed tokens (newline, space) must not raise an exception quoting the header
    bad = h + "\nX-Evil: 1"
    async with Prober(FAST) as p:
        odd = await p.probe(comfy(good.url), bad)
    assert odd.auth == "unknown" and "malformed" in odd.detail
    assert [r.auth for r in results] == ["enforced", "rejected", "unknown", "enforced",
                                         "unknown"]
    dump = json.dumps(Snapshot(probes=[*results, odd]).to_json())
    blobs = [dump, text_p, caplog.text, *(repr(r) for r in (*results, odd))]
    for blob in blobs:
        for i in range(len(h) - 8 + 1):
            assert h[i:i + 8] not in blob


def test_probe_once_bounded_even_when_services_hang(local_sim, tmp_path):
    """`genai-tui check` must end within the probe timeouts when every service hangs."""
    hung = [local_sim(scenario="hang") for _ in range(3)]
    services = tuple(comfy(s.url, f"s{i}") for i, s in enumerate(hung))
    config = Config(services=services + (ServiceConfig("o", hung[0].url, "orchestrator"),),
                    probes=FAST)
    start = time.monotonic()
    results = probe_once(config, make_hash())
    elapsed = time.monotonic() - start
    assert [r.outcome for r in results] == ["timeout"] * 4
    assert [r.service for r in results] == ["s0", "s1", "s2", "o"]
    assert elapsed < FAST.connect_timeout + FAST.read_timeout + 2.0
    assert all(r.outcome in OUTCOMES for r in results)
