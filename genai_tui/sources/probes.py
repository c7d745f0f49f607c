"""HTTP/TCP probes of the configured services, headless (no Textual).

Requests go through `httpget` (standard library): a fresh connection each (every probe
proves a fresh accept, no stale-connection errors), no redirects, no proxy variables and no
cookie jar (a session cookie would make the "no token" request count as authenticated).
Failures come back as the `OUTCOMES` of `genai_tui.model`; `classify_error` does the same
for the httpx errors of the job actions and `init`.

The canonical token hash is passed in by the caller. It only ever goes into an
`Authorization` header: never into a URL, a `ProbeResult`, an exception, a log line or a
`repr`. Text taken from an HTTP answer is untrusted: it is sanitised and capped before it
reaches `detail`, and JSON bodies of any shape (or size) never crash a probe. Numbers are
untrusted too: each one is type-checked and bounded (a 401-digit `vram_total`, NaN, a bool
or a string posing as a number is ignored with a note in `detail`), and nothing read after
the verdict is known can change that verdict.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import math
import re
import socket
import ssl
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from genai_tui.config import Config, ProbeConfig, ServiceConfig
from genai_tui.model import ProbeResult
from genai_tui.safety import one_line
from genai_tui.secret import BCRYPT_ANYWHERE
from genai_tui.sources import httpget

log = logging.getLogger(__name__)

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_QUEUE",
    "MAX_VRAM_BYTES",
    "Prober",
    "classify_error",
    "display_url",
    "parse_health",
    "parse_queue",
    "parse_system_stats",
    "probe_once",
    "sanitize",
]

#: bodies are read up to this size; anything longer is treated as unparseable
MAX_BODY_BYTES = 256 * 1024
#: at most this many backends are taken from an orchestrator /health or /status body
MAX_BACKENDS = 32
#: bounds on numbers read from HTTP: far above any real device or queue, so a value past
#: them is a lie (or an attack), not a measurement
MAX_VRAM_BYTES = 1 << 50  # 1 PiB
MAX_QUEUE = 10_000_000
#: notes about ignored fields added to one probe's detail (the rest are counted)
MAX_NOTES = 3
#: ComfyUI-Login's first-login page (no PASSWORD yet)
FIRST_LOGIN_MARKER = b"For your first login"
WELCOME_MARKER = b"Welcome back"

#: every probe request's own headers; identity: bodies are read raw and capped, so no
#: decompression bomb
_HEADERS = {"Accept": "application/json", "Accept-Encoding": "identity",
            "User-Agent": "genai-tui-probe"}
#: a token we are willing to put in a header: printable, no whitespace (anything else could
#: split the request's header block)
_HEADER_SAFE = re.compile(r"^[\x21-\x7e]{1,512}$")


# ------------------------------------------------------------------ small pure helpers


def sanitize(text: object, limit: int = 120, secret: str | None = None) -> str:
    """Untrusted text for one terminal line (`safety.one_line`), with no bcrypt hash (nor
    `secret`) in it, at most `limit` characters."""
    s = str(text)
    if len(s) > limit * 4:
        s = s[: limit * 4]
    if secret:
        s = s.replace(secret, "[token]")
    return one_line(BCRYPT_ANYWHERE.sub("[hash]", s), limit)


def display_url(url: str) -> str:
    """The service URL as shown and stored: no userinfo, no query, no fragment (a token in
    `?token=` or `user:pass@` never reaches the screen or the JSON)."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*://)?(.*)$", url.strip(), re.S)
    assert m is not None  # the pattern matches any string
    scheme, rest = m.group(1) or "", m.group(2)
    rest = rest.split("#", 1)[0].split("?", 1)[0]
    if "@" in rest:  # userinfo; a password may hold "/" so split on the last "@"
        rest = rest.rsplit("@", 1)[1]
    try:
        parts = urlsplit(scheme + rest)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port is not None else host
        shown = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    except ValueError:
        shown = scheme + rest
    return BCRYPT_ANYWHERE.sub("[hash]", sanitize(shown, 200))


def _base_url(url: str) -> str:
    """Where requests go: like `display_url` (no userinfo: it is never sent)."""
    return display_url(url)


def _checked(value: Any, limit: int, *, integer: bool = False) -> tuple[Any, str | None]:
    """(value, None) for a plausible JSON number in 0..limit, else (None, why). A server
    controls these bytes: a 401-digit int (float() raises OverflowError), NaN, a bool or a
    string posing as a number must be refused here, not crash or mislead further on."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, "not an integer" if integer else "not a number"
    if isinstance(value, float) and not math.isfinite(value):
        return None, "not finite"
    if integer and not isinstance(value, int):
        return None, "not an integer"
    if value < 0:
        return None, "negative"
    if value > limit:
        return None, "too large"
    return value, None


def _field(doc: dict[Any, Any], key: str, limit: int, notes: list[str] | None, *,
           integer: bool = False) -> Any:
    """`doc[key]` when present and plausible; a bad value is dropped with a note (a missing
    key is not worth one)."""
    if key not in doc:
        return None
    value, why = _checked(doc[key], limit, integer=integer)
    if why is not None and notes is not None:
        notes.append(f"{key} ignored ({why})")
    return value


def _decode_json(body: bytes | None) -> Any:
    if not body or len(body) >= MAX_BODY_BYTES:
        return None
    try:
        return json.loads(body.decode("utf-8", "replace"))
    except (ValueError, RecursionError):  # a >4300-digit int is a ValueError too
        return None


def _decode_object(body: bytes | None, notes: list[str] | None) -> dict[Any, Any] | None:
    """The JSON object in `body`, or None with a note when a body came but is not one."""
    doc = _decode_json(body)
    if isinstance(doc, dict):
        return doc
    if notes is not None:
        if body is None or (body and len(body) >= MAX_BODY_BYTES):
            notes.append("body over the size cap, not read")
        elif body:
            notes.append("body not a JSON object")
    return None


def parse_queue(body: bytes | None, notes: list[str] | None = None) -> int | None:
    """`queue_remaining` from ComfyUI's `GET /prompt` (`{"exec_info": {...}}`), or None;
    why a value was refused goes to `notes`."""
    doc = _decode_object(body, notes)
    if doc is None:
        return None
    info = doc.get("exec_info")
    if not isinstance(info, dict):
        return None
    value = _field(info, "queue_remaining", MAX_QUEUE, notes, integer=True)
    return int(value) if value is not None else None


@dataclass
class SystemStats:
    vram_total_mb: float | None = None
    vram_free_mb: float | None = None
    device_name: str | None = None


def parse_system_stats(body: bytes | None, notes: list[str] | None = None) -> SystemStats:
    """VRAM (bytes → MiB) and device name of `devices[0]` in ComfyUI's `/system_stats`;
    why a value was refused goes to `notes`."""
    doc = _decode_object(body, notes)
    out = SystemStats()
    if doc is None:
        return out
    total, free, _torch = device_vram(doc, notes)
    if total is not None:
        out.vram_total_mb = round(total / (1024 * 1024), 1)
    if free is not None:
        out.vram_free_mb = round(free / (1024 * 1024), 1)
    dev = _first_device(doc)
    name = dev.get("name") if dev is not None else None
    if isinstance(name, str) and name.strip():
        out.device_name = sanitize(name, 80)
    return out


def _first_device(doc: Any) -> dict[Any, Any] | None:
    devices = doc.get("devices") if isinstance(doc, dict) else None
    if not isinstance(devices, list) or not devices or not isinstance(devices[0], dict):
        return None
    return devices[0]


def device_vram(doc: Any, notes: list[str] | None = None
                ) -> tuple[float | None, float | None, float | None]:
    """(vram_total, vram_free, torch_vram_total) in bytes of `devices[0]` in a decoded
    `/system_stats`, each a plausible number or None (why goes to `notes`); a free above
    the total is dropped. The one reading of it: the probes, the jobs watch and the free
    VRAM action all see the same figures."""
    dev = _first_device(doc)
    if dev is None:
        return None, None, None
    total = _field(dev, "vram_total", MAX_VRAM_BYTES, notes)
    free = _field(dev, "vram_free", MAX_VRAM_BYTES, notes)
    torch = _field(dev, "torch_vram_total", MAX_VRAM_BYTES, notes)
    if total is not None and free is not None and free > total:
        free = None
        if notes is not None:
            notes.append("vram_free ignored (above vram_total)")
    return total, free, torch


@dataclass
class Health:
    status: str | None = None
    backends: dict[str, str] = field(default_factory=dict)


def _state_of(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "healthy" if value else "unhealthy"
    if isinstance(value, dict):
        for key in ("status", "state", "health"):
            v = value.get(key)
            if isinstance(v, str):
                return v
            if isinstance(v, bool):
                return "healthy" if v else "unhealthy"
    return None


def parse_health(body: bytes | None, notes: list[str] | None = None) -> Health:
    """Tolerant reading of an orchestrator `/health` (or `/status`-shaped) body: the overall
    status and, when present, per-backend states (`services` or `backends`, as a mapping
    `{name: state | {status: ...}}` or a list of `{name|id, status}`). A number where a
    state belongs, a backend without a readable name or state, and backends past
    MAX_BACKENDS are ignored with a note in `notes`."""
    doc = _decode_json(body)
    out = Health()
    if not isinstance(doc, dict):
        return out
    if notes is not None:
        for key in ("status", "state", "health", "healthy"):
            value = doc.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                notes.append(f"{key} ignored (a number, not a state)")
    status = _state_of(doc) if not isinstance(doc.get("status"), dict) else None
    if status is None:
        orch = doc.get("orchestrator")
        status = _state_of(orch) if isinstance(orch, dict) else None
    if status is None and isinstance(doc.get("healthy"), bool):
        status = "healthy" if doc["healthy"] else "unhealthy"
    if status is not None:
        out.status = sanitize(status, 40)
    raw = doc.get("services", doc.get("backends"))
    items: Iterable[tuple[Any, Any]] = ()
    if isinstance(raw, dict):
        items = raw.items()
    elif isinstance(raw, list):
        items = ((entry.get("name", entry.get("id")), entry) if isinstance(entry, dict)
                 else (None, None) for entry in raw)
    skipped = extra = 0
    for name, value in items:
        if len(out.backends) >= MAX_BACKENDS:
            extra += 1
            continue
        if not isinstance(name, str | int) or isinstance(name, bool):
            skipped += 1
            continue
        state = _state_of(value)
        if state is None:
            skipped += 1
            continue
        out.backends[sanitize(name, 40)] = sanitize(state, 40)
    if notes is not None and skipped:
        notes.append(f"{skipped} backend entr{'y' if skipped == 1 else 'ies'} ignored "
                     "(no readable name or state)")
    if notes is not None and extra:
        notes.append(f"{extra} backends past the first {MAX_BACKENDS} not read")
    return out


# ------------------------------------------------------------------ classification


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def load_httpx() -> ModuleType:
    """httpx, imported on first use and without its command-line client: httpx's
    `__init__` imports `httpx._main` (click, pygments, rich tables and progress bars:
    ~0.1 s of every `check`) whenever those are installed, and Textual installs rich. A
    `None` in `sys.modules` makes that one import fail, and httpx then defines a stub."""
    if "httpx" not in sys.modules and "httpx._main" not in sys.modules:
        sys.modules["httpx._main"] = None  # type: ignore[assignment]
        try:
            import httpx
        finally:
            if sys.modules.get("httpx._main", 0) is None:
                del sys.modules["httpx._main"]
        return httpx
    import httpx

    return httpx


def classify_error(exc: BaseException, timeouts: ProbeConfig | None = None) -> tuple[str, str]:
    """(outcome, detail) for a failed request. The detail is built from fixed phrases and
    OS error names only: never from the exception's message (it could quote a header)."""
    httpx = load_httpx()

    t = timeouts or ProbeConfig()
    if isinstance(exc, httpx.ConnectTimeout):
        return "timeout", f"no TCP accept within {t.connect_timeout:g}s"
    if isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout):
        return "timeout", f"connected, no answer within {t.read_timeout:g}s"
    if isinstance(exc, httpx.PoolTimeout):
        return "timeout", "no free connection slot (too many probes in flight)"
    if isinstance(exc, TimeoutError):
        return "timeout", "no complete answer within the probe deadline"
    chain = list(_chain(exc))
    if isinstance(exc, httpx.ConnectError):
        if any(isinstance(e, ssl.SSLError) for e in chain):
            return "not_http", "TLS handshake failed (plain HTTP on an https:// URL?)"
        for e in chain:
            if isinstance(e, socket.gaierror):
                return "dns_error", "host name does not resolve"
            if isinstance(e, ConnectionRefusedError):
                return "refused", "connection refused (nothing listens)"
            if isinstance(e, OSError) and e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                return "refused", "host or network unreachable"
        text = " ".join(str(e) for e in chain).lower()
        if "name or service not known" in text or "name resolution" in text \
                or "nodename nor servname" in text or "no address associated" in text:
            return "dns_error", "host name does not resolve"
        return "refused", "connection failed"
    if isinstance(exc, httpx.RemoteProtocolError):
        text = str(exc)
        if "without sending a response" in text:
            return "empty_reply", "connected, closed without an answer"
        if "without sending complete message body" in text:
            return "http_error", "answer cut off before the end of the body"
        return "not_http", "connected, the answer is not HTTP"
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        if any(isinstance(e, ConnectionResetError | BrokenPipeError) for e in chain):
            return "empty_reply", "connected, reset without an answer"
        return "empty_reply", "connected, closed without an answer"
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return "http_error", "invalid service URL"
    leaves = list(exc.exceptions) if isinstance(exc, BaseExceptionGroup) else [exc]
    if leaves and all(isinstance(e, ValueError | OverflowError) for e in leaves):
        return "http_error", "invalid service URL"
    return "http_error", f"request failed ({type(exc).__name__})"


# ------------------------------------------------------------------ the prober


@dataclass
class _Answer:
    status: int
    body: bytes | None  # None when longer than MAX_BODY_BYTES
    location: str | None = None


@dataclass
class _State:
    decided: bool = False  # the outcome and verdict are known; only extras remain


class _Failed(Exception):
    """A request failed; carries only the classified outcome (no message from the peer)."""

    def __init__(self, outcome: str, detail: str, elapsed_ms: float) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.detail = detail
        self.elapsed_ms = elapsed_ms


def _usable_token(token_hash: str | None) -> str | None:
    if not token_hash:
        return None
    token = token_hash.strip()
    return token if _HEADER_SAFE.match(token) else None


def _add_notes(result: ProbeResult, where: str, notes: Sequence[str]) -> None:
    """Append what a parser refused to the detail: fixed phrases only (never the hostile
    value), at most MAX_NOTES of them, so the detail stays one short line."""
    if not notes:
        return
    shown = list(dict.fromkeys(notes))
    more = len(shown) - MAX_NOTES
    text = "; ".join(shown[:MAX_NOTES]) + (f"; +{more} more" if more > 0 else "")
    result.detail = sanitize(f"{result.detail}; {where}: {text}" if result.detail
                             else f"{where}: {text}", 240)


def _queue(result: ProbeResult, where: str, body: bytes | None) -> None:
    """The queue length of a `/prompt` answer, after the verdict is set: whatever the body
    holds, it may add a note but never change that verdict."""
    notes: list[str] = []
    try:
        result.queue_remaining = parse_queue(body, notes)
    except Exception as exc:  # a parser bug must not undo what the requests proved
        notes.append(f"queue not read ({type(exc).__name__})")
    _add_notes(result, where, notes)


class Prober:
    """Probes services with one shared client; at most one probe in flight per service
    (a second call for a busy service waits for, and shares, the running one)."""

    def __init__(self, probes: ProbeConfig | None = None, *, max_connections: int = 16) -> None:
        self.config = probes or ProbeConfig()
        # a connection per request (no keep-alive: a hostile server cannot park one),
        # no cookie jar (a session cookie from /login replayed on the "no token" request
        # would make a protected server look open), no proxy from the environment
        self._slots = asyncio.Semaphore(max(1, max_connections))
        self._inflight: dict[str, asyncio.Task[ProbeResult]] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"<Prober connect={self.config.connect_timeout:g}s " \
               f"read={self.config.read_timeout:g}s>"

    @property
    def deadline(self) -> float:
        """The hard bound on one service's probe sequence."""
        return self.config.connect_timeout + self.config.read_timeout

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Cancel probes in flight and close the client (idempotent)."""
        self._closed = True
        for task in list(self._inflight.values()):
            task.cancel()

    async def __aenter__(self) -> Prober:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def probe_all(self, services: Sequence[ServiceConfig],
                        token_hash: str | None) -> list[ProbeResult]:
        """Probe every service concurrently; results in the order of `services`."""
        return list(await asyncio.gather(*(self.probe(s, token_hash) for s in services)))

    async def probe(self, service: ServiceConfig, token_hash: str | None) -> ProbeResult:
        """One probe sequence for one service, bounded by `deadline`; never raises for a
        network or protocol problem (that is the outcome)."""
        if self._closed:
            raise RuntimeError("the prober is closed")
        task = self._inflight.get(service.name)
        if task is None or task.done():
            task = asyncio.ensure_future(self._bounded(service, token_hash))
            self._inflight[service.name] = task
            task.add_done_callback(lambda t, n=service.name: self._forget(n, t))
        return await asyncio.shield(task)

    def _forget(self, name: str, task: asyncio.Task[ProbeResult]) -> None:
        if self._inflight.get(name) is task:
            del self._inflight[name]

    async def _bounded(self, service: ServiceConfig, token_hash: str | None) -> ProbeResult:
        result = ProbeResult(service=service.name, url=display_url(service.url),
                             outcome="timeout", auth="unknown" if service.kind == "comfyui"
                             else None)
        state = _State()
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self.deadline):
                if service.kind == "comfyui":
                    await self._comfyui(service, _usable_token(token_hash), token_hash, result,
                                        state)
                else:
                    await self._health(service, result)
                    state.decided = True
        except TimeoutError:
            if state.decided:  # only the optional /system_stats was cut short
                result.detail = sanitize(result.detail + "; VRAM not read (too slow)", 160)
            else:
                result.outcome = "timeout"
                result.auth = "unknown" if service.kind == "comfyui" else None
                result.detail = (f"answers too slow: the probe sequence took over "
                                 f"{self.deadline:g}s" if result.status is not None else
                                 f"no complete answer within {self.deadline:g}s")
                result.status = None
            if result.latency_ms is None:
                result.latency_ms = (time.perf_counter() - start) * 1000
        except _Failed as failure:
            result.outcome = failure.outcome
            result.detail = failure.detail
            result.status = None
            if service.kind == "comfyui":
                result.auth = "unknown"
            if result.latency_ms is None:
                result.latency_ms = failure.elapsed_ms
        except Exception as exc:  # a bug here must not take the whole round down
            log.warning("probe of %s failed: %s", sanitize(service.name, 40),
                        type(exc).__name__)
            result.outcome = "http_error"
            result.detail = f"probe failed ({type(exc).__name__})"
        result.checked_at = datetime.now(UTC)
        return result

    async def _get(self, base: str, path: str, token: str | None = None) -> tuple[_Answer, float]:
        headers = dict(_HEADERS)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        start = time.perf_counter()
        try:
            try:
                async with asyncio.timeout(self.config.read_timeout):
                    await self._slots.acquire()
            except TimeoutError:
                raise httpget.FetchError(
                    "timeout", "no free connection slot (too many probes in flight)") from None
            try:
                status, body, location = await httpget.get(
                    base + path, headers, connect_timeout=self.config.connect_timeout,
                    read_timeout=self.config.read_timeout, max_body=MAX_BODY_BYTES)
            finally:
                self._slots.release()
        except httpget.FetchError as exc:
            raise _Failed(exc.outcome, exc.detail,
                          (time.perf_counter() - start) * 1000) from None
        return _Answer(status, body, location), (time.perf_counter() - start) * 1000

    def _unexpected(self, path: str, answer: _Answer, secret: str | None) -> str:
        if 300 <= answer.status < 400:
            where = ""
            if answer.location:
                where = " to " + sanitize(answer.location.split("?", 1)[0], 60, secret)
            return f"{path}: redirect {answer.status}{where} (not followed)"
        return f"{path}: unexpected HTTP {answer.status}"

    async def _health(self, service: ServiceConfig, result: ProbeResult) -> None:
        base = _base_url(service.url)
        answer, ms = await self._get(base, service.health_path)
        result.latency_ms = ms
        result.status = answer.status
        notes: list[str] = []
        try:
            health = parse_health(answer.body, notes)
        except Exception as exc:  # a parser bug must not turn an answer into a failure
            health = Health()
            notes.append(f"body not read ({type(exc).__name__})")
        result.backends = health.backends
        result.health = health.status
        if 200 <= answer.status < 300:
            result.outcome = "ok"
            bits = [f"status: {health.status}" if health.status else "answered"]
            if health.backends:
                down = [n for n, s in health.backends.items() if s.lower() not in
                        ("healthy", "ok", "up", "running", "ready")]
                bits.append(f"{len(health.backends)} backends"
                            + (f", not healthy: {', '.join(down)}" if down else ""))
            result.detail = sanitize("; ".join(bits), 160)
        else:
            result.outcome = "http_error"
            text = self._unexpected(service.health_path, answer, None)
            if health.status:
                text += f" (status: {health.status})"
            result.detail = sanitize(text, 160)
        _add_notes(result, service.health_path, notes)

    async def _comfyui(self, service: ServiceConfig, token: str | None, raw_token: str | None,
                       result: ProbeResult, state: _State) -> None:
        """The ComfyUI-Login sequence: /login open, /prompt without then with the hash."""
        base = _base_url(service.url)
        secret = raw_token or None
        login, ms = await self._get(base, "/login")
        result.latency_ms = ms
        result.status = login.status
        if login.status == 200:
            result.login_loaded = True
            body = login.body or b""
            if FIRST_LOGIN_MARKER in body:
                result.password_set = False
            elif WELCOME_MARKER in body:
                result.password_set = True
        elif login.status == 404:
            result.login_loaded = False
        else:
            result.outcome = "http_error"
            result.detail = sanitize(self._unexpected("/login", login, secret), 160, secret)
            return

        if result.password_set is False:
            # first-login state: whoever opens the page picks the password. No point (and no
            # need) to send the hash; the queue is still useful if the API answers.
            open_, _ = await self._get(base, "/prompt")
            result.outcome = "ok"
            result.auth = "no_password"
            result.status = open_.status
            result.detail = "no password set (first-login page): anyone can pick it"
            if open_.status == 200:
                _queue(result, "/prompt", open_.body)
            return

        anon, _ = await self._get(base, "/prompt")
        result.status = anon.status
        if anon.status == 200:
            result.outcome = "ok"
            result.auth = "disabled"
            why = "ComfyUI-Login not loaded" if result.login_loaded is False else \
                "ComfyUI-Login page served but not enforcing"
            result.detail = f"API open: 200 without any token ({why})"
            _queue(result, "/prompt", anon.body)
            state.decided = True
            await self._stats(base, None, result)
            return
        if anon.status != 401:
            result.outcome = "http_error"
            result.detail = sanitize(self._unexpected("/prompt", anon, secret), 160, secret)
            return

        if token is None:
            result.outcome = "ok"
            result.auth = "unknown"
            result.detail = ("auth on (401 without token); no usable token hash to check"
                             if not raw_token else
                             "auth on (401 without token); the token hash is malformed")
            return

        authed, _ = await self._get(base, "/prompt", token)
        result.status = authed.status
        if authed.status == 200:
            result.outcome = "ok"
            result.auth = "enforced"
            result.detail = "auth enforced: 401 without token, 200 with the token on disk"
            _queue(result, "/prompt", authed.body)
            state.decided = True
            await self._stats(base, token, result)
        elif authed.status == 401:
            result.outcome = "ok"
            result.auth = "rejected"
            result.detail = ("401 with the token on disk: the server uses another hash "
                             "(restart needed, or --enable-cors-header)")
        else:
            result.outcome = "http_error"
            result.detail = sanitize(self._unexpected("/prompt (with token)", authed, secret),
                                     160, secret)

    async def _stats(self, base: str, token: str | None, result: ProbeResult) -> None:
        """VRAM from /system_stats; a failure here does not change the verdict."""
        try:
            answer, _ = await self._get(base, "/system_stats", token)
        except _Failed as failure:
            result.detail += f"; VRAM not read ({failure.outcome})"
            return
        if answer.status != 200:
            result.detail += f"; VRAM not read (/system_stats: HTTP {answer.status})"
        else:
            notes: list[str] = []
            try:
                stats = parse_system_stats(answer.body, notes)
            except Exception as exc:  # a parser bug must not undo the verdict
                stats = SystemStats()
                notes.append(f"VRAM not read ({type(exc).__name__})")
            result.vram_total_mb = stats.vram_total_mb
            result.vram_free_mb = stats.vram_free_mb
            result.device_name = stats.device_name
            _add_notes(result, "/system_stats", notes)


# ------------------------------------------------------------------ headless entry point


def probe_once(config: Config, token_hash: str | None) -> list[ProbeResult]:
    """One probe round over every configured service, for `genai-tui check`. Returns within
    about connect_timeout + read_timeout even when services hang."""

    async def run() -> list[ProbeResult]:
        async with Prober(config.probes, max_connections=max(4, len(config.services))) as p:
            return await p.probe_all(config.services, token_hash)

    return asyncio.run(run())
