"""The ComfyUI queue of each service: what runs, what waits, what failed, what holds VRAM.

One `JobsSource` per ComfyUI service, each with one thread. It keeps **one** websocket
open (`/ws?clientId=<a fresh uuid of our own>`: reusing another client's id would make the
server drop that client's socket, a browser tab's events). ComfyUI broadcasts a `status`
frame to every socket on every queue change (put, start, done, delete); that frame is the
trigger to read the detail over HTTP, and nothing else is read while the queue is quiet
but one slow safety poll. Per-step `progress`/`executing` frames reach us only for jobs
queued without a `client_id` (the server broadcasts those); for the others, per-step
progress comes from the log lines the log hub already follows (`observe`). No websocket
(an old server, a proxy that refuses upgrades) means polling at the safety interval,
poked by the log's `got prompt` / `Prompt executed` lines; a dropped socket is reopened
with backoff.

Detail: `GET /api/jobs?status=…` where the server has the jobs API (newer ComfyUI), else
`GET /queue` (whose items carry whole graphs and `extra_data` that can hold API keys:
only ids, numbers and node counts are kept) and `GET /history?max_items=N`. VRAM: what
`/system_stats` says (torch's reservation, the device), joined with NVML's per-process
figures by `attach_nvml` where the GPU source attributed processes to the service.

The token only ever goes into an `Authorization: Bearer` header (and, where a proxy
drops that header on the upgrade, into the websocket's `?token=`): never into a URL that
is shown, an error, a log line or a `repr`. Everything read from the server is untrusted:
bounded, type-checked and passed through `safety.shown` before it is stored.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import select
import socket
import ssl
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from genai_tui.config import Config, JobsConfig, ProbeConfig, ServiceConfig
from genai_tui.model import (
    QUEUE_HISTORY_LEN,
    GpuReport,
    JobInfo,
    JobsReport,
    LogEvent,
    ServiceJobs,
)
from genai_tui.safety import shown
from genai_tui.secret import BCRYPT_ANYWHERE
from genai_tui.sources.probes import device_vram

log = logging.getLogger(__name__)

__all__ = [
    "JOB_EVENT_KINDS",
    "JobsSource",
    "JobsWatcher",
    "WebSocket",
    "WebSocketRefused",
    "attach_nvml",
    "collect_jobs",
    "error_type",
    "parse_history",
    "parse_jobs_api",
    "parse_queue",
    "redact_url",
]

#: log event kinds (genai_tui.sources.logtext) that the jobs sources read
JOB_EVENT_KINDS = frozenset({"job_start", "job_progress", "job_done", "job_interrupted",
                             "model_load", "model_loaded", "models_unloaded", "oom", "error"})
#: bodies read up to this size: /queue carries whole graphs, a flood of pending jobs can
#: make it large; past this, the answer is treated as unreadable
MAX_BODY = 8 * 1024 * 1024
#: at most this many pending jobs are kept (the count is still exact up to MAX_BODY)
MAX_PENDING = 200
#: websocket frames above this size are skipped unread (binary previews)
MAX_FRAME = 16 * 1024 * 1024
#: the earliest a second detail round follows the first (a burst of status frames)
MIN_REFRESH = 0.25
#: reconnect backoff of a dropped websocket, and how long a server that refused the
#: upgrade (404: no /ws, a proxy) is left alone before the next try
BACKOFF_START, BACKOFF_MAX = 1.0, 60.0
WS_REFUSED_RETRY = 300.0
#: numbers from the server are believed up to these bounds
MAX_COUNT = 1_000_000
MAX_MODELS = 16
_ONE_S = timedelta(seconds=1)
_OOM = re.compile(r"OutOfMemoryError|out of memory|Allocation on device|\bOOM\b", re.I)


# ------------------------------------------------------------------ pure helpers


def redact_url(url: str) -> str:
    """A URL as it may be shown or logged: the value of any `token=` replaced, no
    userinfo, and no bcrypt hash anywhere (the websocket URL can carry the credential)."""
    text = re.sub(r"(?i)([?&;](?:token|access_token|api_key|key)=)[^&#\s]*", r"\1[redacted]",
                  url)
    text = re.sub(r"//[^/@\s]*@", "//", text)
    return BCRYPT_ANYWHERE.sub("[redacted]", text)


def error_type(exc_type: object, message: object = "") -> str | None:
    """The failure's name as shown: "OOM" for any CUDA/torch out-of-memory, else the
    exception's class (the last dotted part), one clean line."""
    t = shown(exc_type, 80) if exc_type else ""
    if _OOM.search(t) or _OOM.search(str(message)[:2000]):
        return "OOM"
    if not t:
        return None
    return t.rsplit(".", 1)[-1] or t


def _int(value: Any, limit: int = MAX_COUNT) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value != value or not -limit <= value <= limit:  # NaN, absurd
        return None
    return int(value)


def _ms(value: Any) -> datetime | None:
    """A ComfyUI timestamp (ms since the epoch) as a datetime, when plausible."""
    n = _int(value, 1 << 45)
    if n is None or n <= 0:
        return None
    try:
        return datetime.fromtimestamp(n / 1000.0, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _pid(value: Any) -> str | None:
    if not isinstance(value, str) or not value or len(value) > 128:
        return None
    return shown(value, 64)


def _message(value: Any) -> str | None:
    if value is None:
        return None
    return shown(str(value)[:4000], 200) or None


def parse_queue(doc: Any, first_seen: dict[str, datetime], now: datetime
                ) -> tuple[JobInfo | None, list[JobInfo], int]:
    """`GET /queue` → (running, pending, pending count). Items are `[number, prompt_id,
    prompt, extra_data, outputs]`: only the number, the id, the graph's node count and
    `extra_data.create_time` are read (the rest can hold secrets)."""
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")

    def items(key: str) -> list[Any]:
        value = doc.get(key, [])
        return value if isinstance(value, list) else []

    def job(item: Any, state: str) -> JobInfo | None:
        if not isinstance(item, (list, tuple)) or len(item) < 2:
            return None
        pid = _pid(item[1])
        if pid is None:
            return None
        prompt = item[2] if len(item) > 2 else None
        extra = item[3] if len(item) > 3 and isinstance(item[3], dict) else {}
        queued = _ms(extra.get("create_time")) or first_seen.setdefault(pid, now)
        return JobInfo(prompt_id=pid, number=_int(item[0]), state=state, queued_at=queued,
                       nodes_total=len(prompt) if isinstance(prompt, dict) else None)

    running = [j for j in (job(i, "running") for i in items("queue_running")) if j]
    raw_pending = items("queue_pending")
    pending = [j for j in (job(i, "pending") for i in raw_pending[:MAX_PENDING * 4]) if j]
    pending.sort(key=lambda j: (j.number if j.number is not None else 0))
    return (running[0] if running else None), pending[:MAX_PENDING], len(raw_pending)


def _history_job(pid: str, entry: Any) -> JobInfo | None:
    if not isinstance(entry, dict):
        return None
    status = entry.get("status") if isinstance(entry.get("status"), dict) else {}
    prompt = entry.get("prompt")
    number = _int(prompt[0]) if isinstance(prompt, (list, tuple)) and prompt else None
    extra = prompt[3] if isinstance(prompt, (list, tuple)) and len(prompt) > 3 \
        and isinstance(prompt[3], dict) else {}
    info = JobInfo(prompt_id=pid, number=number, state="success",
                   queued_at=_ms(extra.get("create_time")))
    interrupted = False
    messages = status.get("messages") if isinstance(status.get("messages"), list) else []
    for m in messages[:64]:
        if not isinstance(m, (list, tuple)) or len(m) < 2 or not isinstance(m[1], dict):
            continue
        name, data = m[0], m[1]
        if name == "execution_start":
            info.started_at = _ms(data.get("timestamp"))
        elif name in ("execution_success", "execution_error", "execution_interrupted"):
            info.finished_at = _ms(data.get("timestamp"))
            if name == "execution_error":
                info.error_type = error_type(data.get("exception_type"),
                                             data.get("exception_message"))
                info.error_message = _message(data.get("exception_message"))
            elif name == "execution_interrupted":
                interrupted = True
    if status.get("status_str") == "error":
        info.state = "interrupted" if interrupted else "error"
    return info


def parse_history(doc: Any) -> list[JobInfo]:
    """`GET /history?max_items=N` → finished jobs, newest first (`status.status_str`, the
    `execution_*` messages and their timestamps; the graph and outputs are not read)."""
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    out = [j for j in (_history_job(p, e) for p, e in doc.items()
                       if isinstance(p, str) and _pid(p)) if j]
    out.sort(key=lambda j: (j.finished_at or j.started_at or datetime.min.replace(tzinfo=UTC),
                            j.number or 0), reverse=True)
    return out


_API_STATES = {"in_progress": "running", "pending": "pending", "completed": "success",
               "failed": "error", "cancelled": "interrupted"}


def parse_jobs_api(doc: Any, first_seen: dict[str, datetime], now: datetime
                   ) -> list[JobInfo]:
    """`GET /api/jobs?…` (comfy_execution/jobs.py) → jobs in the answer's order."""
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), list):
        raise ValueError("no jobs list")
    out: list[JobInfo] = []
    for item in doc["jobs"][:MAX_PENDING * 4]:
        if not isinstance(item, dict):
            continue
        pid = _pid(item.get("id"))
        state = _API_STATES.get(item.get("status")) if isinstance(item.get("status"),
                                                                  str) else None
        if pid is None or state is None:
            continue
        err = item.get("execution_error") if isinstance(item.get("execution_error"),
                                                        dict) else None
        info = JobInfo(prompt_id=pid, number=_int(item.get("priority")), state=state,
                       queued_at=_ms(item.get("create_time")),
                       started_at=_ms(item.get("execution_start_time")),
                       finished_at=_ms(item.get("execution_end_time")))
        if info.queued_at is None and state in ("running", "pending"):
            info.queued_at = first_seen.setdefault(pid, now)
        if err is not None:
            info.error_type = error_type(err.get("exception_type"),
                                         err.get("exception_message"))
            info.error_message = _message(err.get("exception_message"))
        out.append(info)
    return out


def parse_system_stats(doc: Any) -> tuple[int | None, int | None, str | None]:
    """(used, total, source) in bytes: torch's reservation when the server reports one
    (what this process holds), else the device's used memory."""
    total, free, torch_total = device_vram(doc)
    total_b = int(total) if total is not None else None
    if torch_total is not None:
        return int(torch_total), total_b, "torch"
    if total_b is not None and free is not None:
        return total_b - int(free), total_b, "system_stats"
    return None, total_b, None


@dataclass
class _LogState:
    """What the log says about the running job and the models in memory."""

    step: int | None = None
    steps: int | None = None
    it_per_s: float | None = None
    at: datetime | None = None
    error_type: str | None = None
    models: list[str] = field(default_factory=list)
    requested: str | None = None


# ------------------------------------------------------------------ websocket (RFC 6455)


class WebSocketRefused(Exception):
    """The server answered the upgrade with something else than 101 (`status`)."""

    def __init__(self, status: int | None, why: str) -> None:
        super().__init__(why)
        self.status = status


class WebSocketClosed(Exception):
    pass


class WebSocket:
    """A minimal client: handshake, masked frames out, text frames in, ping → pong.

    No library: one socket, read with `select` so `close()` from another thread (or a
    wake-up byte on `wake_fd`) ends a blocked read at once."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = b""
        self._lock = threading.Lock()
        self.closed = False

    @classmethod
    def connect(cls, host: str, port: int, path: str, headers: dict[str, str], *,
                timeout: float, tls: bool = False) -> WebSocket:
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            if tls:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
            key = base64.b64encode(os.urandom(16)).decode()
            lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
                     "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                     "Sec-WebSocket-Version: 13", "User-Agent: genai-tui"]
            lines += [f"{k}: {v}" for k, v in headers.items()]
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            data = b""
            deadline = time.monotonic() + timeout
            while b"\r\n\r\n" not in data:
                if len(data) > 16384 or time.monotonic() > deadline:
                    raise WebSocketRefused(None, "no complete answer to the upgrade")
                chunk = sock.recv(4096)
                if not chunk:
                    raise WebSocketRefused(None, "connection closed during the upgrade")
                data += chunk
            head, rest = data.split(b"\r\n\r\n", 1)
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            parts = status_line.split(" ", 2)
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
            if status != 101:
                raise WebSocketRefused(status, f"upgrade answered {status or 'garbage'}")
            want = base64.b64encode(hashlib.sha1(
                (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            accept = next((h.split(":", 1)[1].strip() for h in header_lines
                           if h.lower().startswith("sec-websocket-accept:")), None)
            if accept != want:
                raise WebSocketRefused(101, "bad Sec-WebSocket-Accept")
        except BaseException:
            with contextlib.suppress(OSError):
                sock.close()
            raise
        sock.settimeout(None)
        ws = cls(sock)
        ws._buf = rest
        return ws

    def _read(self, n: int, deadline: float | None, wake_fd: int | None) -> bytes:
        while len(self._buf) < n:
            if self.closed:
                raise WebSocketClosed("closed")
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            fds: list[Any] = [self.sock] + ([wake_fd] if wake_fd is not None else [])
            pending = getattr(self.sock, "pending", lambda: 0)()
            ready = [self.sock] if pending else select.select(fds, [], [], wait)[0]
            if not ready:
                raise TimeoutError
            if self.sock not in ready:
                raise InterruptedError  # woken
            chunk = self.sock.recv(65536)
            if not chunk:
                raise WebSocketClosed("connection closed by the server")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def recv(self, timeout: float | None, wake_fd: int | None = None) -> str | None:
        """The next text message; None for a binary one (skipped). Raises TimeoutError
        when nothing came in `timeout` s, InterruptedError when `wake_fd` became readable
        (only between frames: a frame begun is read to its end), WebSocketClosed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        message = b""
        text: bool | None = None
        while True:
            head = self._read(2, deadline, wake_fd)
            deadline, wake_fd_frame = None, None  # a frame begun is read whole
            fin, opcode = head[0] & 0x80, head[0] & 0x0F
            size = head[1] & 0x7F
            if size == 126:
                size = struct.unpack(">H", self._read(2, None, wake_fd_frame))[0]
            elif size == 127:
                size = struct.unpack(">Q", self._read(8, None, wake_fd_frame))[0]
            if head[1] & 0x80:
                self._read(4, None, None)  # a server must not mask; tolerate it
            if size > MAX_FRAME:
                raise WebSocketClosed("frame too large")
            payload = self._read(size, None, None)
            if opcode == 0x8:
                with contextlib.suppress(OSError):
                    self._send(0x8, payload[:2])
                raise WebSocketClosed("closed by the server")
            if opcode == 0x9:
                self._send(0xA, payload[:125])
                continue
            if opcode == 0xA:
                continue
            if opcode in (0x1, 0x2):
                text = opcode == 0x1
                message = payload
            elif opcode == 0x0:
                message += payload
                if len(message) > MAX_FRAME:
                    raise WebSocketClosed("message too large")
            if fin and text is not None:
                if not text:
                    return None
                return message.decode("utf-8", "replace")

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        size = len(payload)
        head = bytes([0x80 | opcode])
        if size < 126:
            head += bytes([0x80 | size])
        elif size < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", size)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", size)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        with self._lock:
            self.sock.sendall(head + mask + body)

    def close(self) -> None:
        """Safe from any thread, twice: a polite close frame, then the socket."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.settimeout(0.2)
            self._send(0x8, struct.pack(">H", 1000))
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()


# ------------------------------------------------------------------ one service


class _HttpError(Exception):
    def __init__(self, status: int | None, why: str) -> None:
        super().__init__(why)
        self.status = status


class JobsSource:
    """The queue of one ComfyUI service, kept current by one thread (see module doc).

    `on_update(ServiceJobs)` is called from that thread after every change; `observe`
    takes the log events of this service (from the log hub); `close()` ends the thread
    and every socket within about a second."""

    def __init__(self, service: ServiceConfig, token: Callable[[], str | None],
                 jobs: JobsConfig | None = None, probes: ProbeConfig | None = None,
                 on_update: Callable[[ServiceJobs], None] | None = None, *,
                 websocket: bool = True) -> None:
        self.service = service
        self.config = jobs or JobsConfig()
        self.probes = probes or ProbeConfig()
        self._token = token
        self._on_update = on_update
        self._use_ws = websocket
        parts = urlsplit(service.url)
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._tls else 80)
        self._prefix = (parts.path or "").rstrip("/")
        self.client_id = uuid.uuid4().hex  # ours alone: never another client's id
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._poke = threading.Event()
        self._thread: threading.Thread | None = None
        self._ws: WebSocket | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._api: str | None = None  # "jobs" | "queue" once known
        self._first_seen: dict[str, datetime] = {}
        self._log = _LogState()
        self._ws_progress: dict[str, tuple[int, int, float, float | None]] = {}
        self._nodes_done: dict[str, set[str]] = {}
        self._last_depth: int | None = None
        self._last_refresh = 0.0
        self._greeting = False
        self._one_shot = False
        self.state = ServiceJobs(service=service.name)
        #: why there is no websocket (redacted, one line), None while one is open
        self.ws_note: str | None = None
        #: counters for tests and the idle-cost check: detail rounds, websocket opens
        self.rounds = 0
        self.ws_opens = 0
        self.requests = 0

    def __repr__(self) -> str:
        return f"JobsSource({self.service.name!r}, api={self._api!r})"

    # -------------------------------------------------------------- lifecycle

    def start(self) -> JobsSource:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"jobs-{self.service.name}")
            self._thread.start()
        return self

    def close(self, timeout: float = 1.0) -> None:
        """Stop the thread: wake it, shut the websocket and any HTTP request in flight."""
        self._stop.set()
        self._wake()
        ws, conn = self._ws, self._conn
        if ws is not None:
            ws.close()
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self._thread is None or not self._thread.is_alive():
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._wake_r = self._wake_w = -1

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def poke(self) -> None:
        """Read the detail now (a log line said the queue moved)."""
        self._poke.set()
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            os.write(self._wake_w, b"x")

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            while select.select([self._wake_r], [], [], 0)[0]:
                if not os.read(self._wake_r, 512):
                    break

    def _sleep(self, seconds: float) -> bool:
        """Wait unless stopping or poked; True when it is time to stop."""
        if self._stop.is_set():
            return True
        with contextlib.suppress(OSError, ValueError):
            select.select([self._wake_r], [], [], max(0.0, seconds))
        self._drain_wake()
        return self._stop.is_set()

    # -------------------------------------------------------------- the thread

    def _run(self) -> None:
        backoff = BACKOFF_START
        refused_until = 0.0
        try:
            while not self._stop.is_set():
                ws = None
                if self._use_ws and time.monotonic() >= refused_until:
                    try:
                        ws = self._open_ws()
                    except WebSocketRefused as exc:
                        if exc.status in (400, 404, 405, 426, 501) or exc.status is None:
                            refused_until = time.monotonic() + WS_REFUSED_RETRY
                        self._set(websocket=False, ws_note=f"websocket refused ({exc})")
                    except OSError as exc:
                        self._set(websocket=False,
                                  ws_note=f"websocket: {type(exc).__name__}")
                if ws is not None:
                    backoff = BACKOFF_START
                    self._follow(ws)
                    if self._stop.is_set():
                        break
                    # dropped: poll once now (the queue may have moved), then reconnect
                    self._refresh()
                    if self._sleep(backoff):
                        break
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    continue
                # no websocket: poll at the safety interval, poked by the log
                self._refresh()
                wait = self.config.safety_poll
                if self._use_ws and time.monotonic() < refused_until:
                    wait = min(wait, max(0.0, refused_until - time.monotonic()))
                elif self._use_ws:
                    wait = min(wait, backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
                if self._sleep(wait):
                    break
        except Exception as exc:  # never let the thread die silently
            log.error("jobs source %s stopped: %s", self.service.name, type(exc).__name__)
        finally:
            ws, self._ws = self._ws, None
            if ws is not None:
                ws.close()

    def _open_ws(self) -> WebSocket:
        token = self._usable_token()
        path = f"{self._prefix}/ws?clientId={self.client_id}"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        timeout = self.probes.connect_timeout + self.probes.read_timeout
        try:
            ws = WebSocket.connect(self._host, self._port, path, headers, timeout=timeout,
                                   tls=self._tls)
        except WebSocketRefused as exc:
            if exc.status != 401 or not token:
                raise
            # a proxy that drops Authorization on upgrades: the browser way, ?token=
            ws = WebSocket.connect(self._host, self._port,
                                   f"{path}&token={quote(token, safe='')}", {},
                                   timeout=timeout, tls=self._tls)
        self._ws = ws
        self.ws_opens += 1
        if self._stop.is_set():
            ws.close()
        return ws

    def _follow(self, ws: WebSocket) -> None:
        self._set(websocket=True, ws_note=None)
        self._refresh()
        self._greeting = True  # the server's first status frame: what we just read
        due: float | None = None  # a refresh asked for, not yet done (MIN_REFRESH)
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if self._poke.is_set():
                    self._poke.clear()
                    due = now
                if due is not None and now >= due:
                    due = None
                    self._refresh()
                    continue
                wait = self.config.safety_poll if due is None else max(0.0, due - now)
                try:
                    text = ws.recv(wait, self._wake_r)
                except TimeoutError:
                    if due is None:
                        self._refresh()  # the slow safety poll
                    continue
                except InterruptedError:
                    self._drain_wake()
                    continue
                if text is None:
                    continue
                if self._frame(text):
                    due = max(time.monotonic(), self._last_refresh + MIN_REFRESH) \
                        if due is None else due
        except (WebSocketClosed, OSError, ValueError):
            pass
        finally:
            self._ws = None
            ws.close()
            self._set(websocket=False)

    def _frame(self, text: str) -> bool:
        """Apply one websocket message; True when the queue changed (detail needed)."""
        try:
            msg = json.loads(text[:MAX_FRAME])
        except ValueError:
            return False
        if not isinstance(msg, dict) or not isinstance(msg.get("data"), dict):
            return False
        kind, data = msg.get("type"), msg["data"]
        now = datetime.now(UTC)
        if kind == "status":
            greeting, self._greeting = self._greeting, False
            status = data.get("status") if isinstance(data.get("status"), dict) else {}
            info = status.get("exec_info") if isinstance(status.get("exec_info"), dict) else {}
            remaining = _int(info.get("queue_remaining"))
            # the frame every socket gets on connect says nothing new when it matches
            return not (greeting and remaining is not None and remaining == self._last_depth)
        pid = _pid(data.get("prompt_id"))
        if kind == "progress" and pid:
            value, top = _int(data.get("value")), _int(data.get("max"))
            if value is None or top is None or top <= 0:
                return False
            t = time.monotonic()
            with self._lock:
                old = self._ws_progress.get(pid)
                rate = None
                if old is not None and value > old[0] and t > old[2]:
                    rate = (value - old[0]) / (t - old[2])
                elif old is not None:
                    rate = old[3]
                self._ws_progress[pid] = (value, top, t, rate)
                self.state.last_progress_at = now
            self._publish_progress()
            return False
        if kind == "executing" and pid:
            node = data.get("node")
            with self._lock:
                if isinstance(node, str):
                    self._nodes_done.setdefault(pid, set()).add(node[:64])
                self.state.last_progress_at = now
            if node is None:
                return True
            self._publish_progress()
            return False
        if kind in ("execution_start", "execution_success", "execution_error",
                    "execution_interrupted"):
            with self._lock:
                self.state.last_progress_at = now
            return True
        return False

    # -------------------------------------------------------------- HTTP detail

    def _usable_token(self) -> str | None:
        try:
            token = self._token()
        except Exception:
            return None
        token = (token or "").strip()
        return token if re.fullmatch(r"[\x21-\x7e]{1,512}", token) else None

    def _get(self, path: str) -> Any:
        """One GET (Bearer), JSON decoded; raises _HttpError with a shown-safe reason."""
        token = self._usable_token()
        headers = {"Accept": "application/json", "User-Agent": "genai-tui"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        timeout = self.probes.connect_timeout + self.probes.read_timeout
        cls = http.client.HTTPSConnection if self._tls else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=timeout)
        self._conn = conn
        self.requests += 1
        try:
            conn.request("GET", self._prefix + path, headers=headers)
            resp = conn.getresponse()
            body = resp.read(MAX_BODY + 1)
            status = resp.status
        except (OSError, http.client.HTTPException) as exc:
            why = "timeout" if isinstance(exc, TimeoutError) else (
                "refused" if isinstance(exc, ConnectionRefusedError) else type(exc).__name__)
            raise _HttpError(None, f"{path.split('?')[0]}: {why}") from None
        finally:
            self._conn = None
            conn.close()
        if status != 200:
            raise _HttpError(status, f"{path.split('?')[0]}: HTTP {status}")
        if len(body) > MAX_BODY:
            raise _HttpError(status, f"{path.split('?')[0]}: answer over {MAX_BODY} bytes")
        try:
            return json.loads(body.decode("utf-8", "replace") or "null")
        except ValueError:
            raise _HttpError(status, f"{path.split('?')[0]}: not JSON") from None

    def _refresh(self) -> None:
        """One detail round (the api found on the first), then publish."""
        self._last_refresh = time.monotonic()
        self.rounds += 1
        now = datetime.now(UTC)
        recent_n = self.config.recent
        running: JobInfo | None = None
        pending: list[JobInfo] = []
        recent: list[JobInfo] = []
        depth = 0
        error: str | None = None
        try:
            if self._api in (None, "jobs"):
                try:
                    active = parse_jobs_api(self._get(
                        f"/api/jobs?status=in_progress,pending&sort_order=asc"
                        f"&limit={MAX_PENDING}"), self._first_seen, now)
                    done = parse_jobs_api(self._get(
                        f"/api/jobs?status=completed,failed,cancelled&limit={recent_n}"),
                        self._first_seen, now)
                    self._api = "jobs"
                    running = next((j for j in active if j.state == "running"), None)
                    pending = [j for j in active if j.state == "pending"]
                    depth = len(pending)
                    recent = done[:recent_n]
                except (_HttpError, ValueError) as exc:
                    status = getattr(exc, "status", 200)
                    if self._api == "jobs" or status not in (404, 405, 200):
                        raise
                    self._api = "queue"  # an older server (0.3.64): no jobs API
            if self._api == "queue":
                running, pending, depth = parse_queue(self._get("/queue"), self._first_seen,
                                                      now)
                recent = parse_history(self._get(f"/history?max_items={recent_n}"))[:recent_n]
        except (_HttpError, ValueError) as exc:
            error = shown(str(exc), 160)
        vram = (None, None, None)
        if error is None:
            with contextlib.suppress(_HttpError, ValueError):
                vram = parse_system_stats(self._get("/system_stats"))
        self._apply(running, pending, depth, recent, error, vram, now)

    def _apply(self, running: JobInfo | None, pending: list[JobInfo], depth: int,
               recent: list[JobInfo], error: str | None,
               vram: tuple[int | None, int | None, str | None], now: datetime) -> None:
        with self._lock:
            st = self.state
            if error is not None:
                st.error = error
                st.checked_at = now
                snapshot = self._copy()
            else:
                prev_running = st.running.prompt_id if st.running else None
                if running is not None:
                    started = self._first_seen.setdefault("run:" + running.prompt_id, now)
                    if not self._one_shot:  # one look cannot tell when it started
                        running.started_at = running.started_at or started
                    if running.prompt_id != prev_running and (
                            self._log.at is None or self._log.at < started - _ONE_S):
                        self._log.step = self._log.steps = None
                        self._log.it_per_s = None
                        self._log.error_type = None
                total = len(pending) + (1 if running else 0)
                if self._last_depth is None:
                    # a first look: what the server says of the past, else (live) from now
                    last_end = max((j.finished_at for j in recent if j.finished_at),
                                   default=None)
                    st.last_progress_at = (running.started_at if self._one_shot else now) \
                        if running is not None else (last_end or (None if self._one_shot
                                                                  else now))
                elif total != self._last_depth or (running and running.prompt_id != prev_running):
                    st.last_progress_at = now  # the queue moved: that is activity
                self._last_depth = total
                st.running, st.pending, st.recent = running, pending, recent
                waits = [(now - j.queued_at).total_seconds() for j in pending if j.queued_at]
                st.oldest_wait_s = round(max(0.0, max(waits)), 1) if waits else None
                st.api = self._api or "none"
                st.error = None
                st.checked_at = now
                if vram[2] is not None:
                    st.vram_used, st.vram_total, st.vram_source = vram
                hist = st.queue_depth_history
                hist.append(depth + (1 if running else 0))
                del hist[:-QUEUE_HISTORY_LEN]
                known = {j.prompt_id for j in pending} | ({running.prompt_id} if running
                                                          else set())
                for key in list(self._first_seen):
                    if key.removeprefix("run:") not in known:
                        del self._first_seen[key]
                for pid in list(self._ws_progress):
                    if pid not in known:
                        self._ws_progress.pop(pid, None)
                        self._nodes_done.pop(pid, None)
                snapshot = self._copy()
        self._emit(snapshot)

    # -------------------------------------------------------------- the log

    def observe(self, events: Iterable[LogEvent]) -> None:
        """Log events of this service (genai_tui.sources.logtext job kinds)."""
        poke = changed = False
        with self._lock:
            lg = self._log
            for ev in events:
                at = ev.at or datetime.now(UTC)
                if ev.kind == "job_progress" and ev.detail:
                    parts = ev.detail.split()
                    try:
                        lg.step, lg.steps = (int(x) for x in parts[0].split("/"))
                        lg.it_per_s = float(parts[1]) if len(parts) > 1 else None
                    except ValueError:
                        continue
                    lg.at = at
                    self.state.last_progress_at = max(self.state.last_progress_at or at, at)
                    changed = True
                elif ev.kind in ("job_start", "job_done", "job_interrupted"):
                    poke = True
                    if ev.kind != "job_start":
                        lg.step = lg.steps = None
                        lg.it_per_s = None
                elif ev.kind == "model_load" and ev.detail:
                    lg.requested = ev.detail
                    self.state.last_progress_at = max(self.state.last_progress_at or at, at)
                elif ev.kind == "model_loaded" and lg.requested:
                    if lg.requested not in lg.models:
                        lg.models.append(lg.requested)
                        del lg.models[:-MAX_MODELS]
                    lg.requested = None
                    changed = True
                elif ev.kind == "models_unloaded":
                    try:
                        n = int(ev.detail or "0")
                    except ValueError:
                        n = 0
                    del lg.models[:max(n, 0)]
                    changed = True
                elif ev.kind == "oom":
                    lg.error_type = "OOM"
                    lg.models.clear()  # "Got an OOM, unloading all loaded models."
                    poke = changed = True
            snapshot = self._copy() if changed else None
        if snapshot is not None:
            self._emit(snapshot)
        if poke:
            self.poke()

    def _publish_progress(self) -> None:
        with self._lock:
            snapshot = self._copy()
        self._emit(snapshot)

    # -------------------------------------------------------------- output

    def _copy(self) -> ServiceJobs:
        """The state with progress merged in (caller holds the lock)."""
        st = self.state
        out = replace(st, pending=list(st.pending), recent=list(st.recent),
                      resident_models=list(self._log.models),
                      queue_depth_history=list(st.queue_depth_history))
        if st.running is not None:
            run = replace(st.running)
            ws = self._ws_progress.get(run.prompt_id)
            if ws is not None:
                run.step, run.steps = ws[0], ws[1]
                run.it_per_s = round(ws[3], 3) if ws[3] is not None else None
            elif self._log.steps:
                run.step, run.steps = self._log.step, self._log.steps
                run.it_per_s = self._log.it_per_s
            done = self._nodes_done.get(run.prompt_id)
            if done:
                run.nodes_done = len(done)
            out.running = run
        return out

    def _set(self, **changes: Any) -> None:
        note = changes.pop("ws_note", "keep")
        with self._lock:
            for k, v in changes.items():
                setattr(self.state, k, v)
            if note != "keep":
                self.ws_note = None if note is None else shown(redact_url(note), 160)
            snapshot = self._copy()
        self._emit(snapshot)

    def _emit(self, snapshot: ServiceJobs) -> None:
        if self._on_update is not None and not self._stop.is_set():
            try:
                self._on_update(snapshot)
            except Exception as exc:  # a face's bug must not stop the source
                log.error("jobs listener failed: %s", type(exc).__name__)

    def snapshot(self) -> ServiceJobs:
        with self._lock:
            return self._copy()

    def refresh_once(self) -> ServiceJobs:
        """One HTTP detail round, no websocket, no thread (`check`): nothing is assumed
        about when the running job last moved (a single look cannot tell)."""
        self._one_shot = True
        self._refresh()
        return self.snapshot()


# ------------------------------------------------------------------ the stack's sources


class JobsWatcher:
    """A `JobsSource` per ComfyUI service of the config; `on_change(JobsReport)` after
    each update (from the sources' threads)."""

    def __init__(self, config: Config, token: Callable[[], str | None],
                 on_change: Callable[[JobsReport], None] | None = None) -> None:
        self.config = config
        self._on_change = on_change
        self._lock = threading.Lock()
        self._latest: dict[str, ServiceJobs] = {}
        self.sources: dict[str, JobsSource] = {
            s.name: JobsSource(s, token, config.jobs, config.probes, self._update)
            for s in comfy_services(config)}

    def start(self) -> JobsWatcher:
        for s in self.sources.values():
            s.start()
        return self

    def _update(self, sj: ServiceJobs) -> None:
        with self._lock:
            self._latest[sj.service] = sj
        if self._on_change is not None:
            self._on_change(self.report())

    def report(self) -> JobsReport:
        with self._lock:
            return JobsReport([self._latest[n] for n in self.sources if n in self._latest])

    def observe(self, events: Sequence[LogEvent]) -> None:
        by_service: dict[str, list[LogEvent]] = {}
        for ev in events:
            if ev.kind in JOB_EVENT_KINDS:
                by_service.setdefault(ev.service, []).append(ev)
        for name, evs in by_service.items():
            src = self.sources.get(name)
            if src is not None:
                src.observe(evs)

    def refresh(self) -> None:
        for s in self.sources.values():
            s.poke()

    def close(self, timeout: float = 1.0) -> None:
        """Every source in parallel: about `timeout` s in all, however many."""
        for s in self.sources.values():
            s._stop.set()
            s._wake()
            ws = s._ws
            if ws is not None:
                ws.close()
        deadline = time.monotonic() + timeout
        for s in self.sources.values():
            s.close(max(0.0, deadline - time.monotonic()))


def comfy_services(config: Config) -> list[ServiceConfig]:
    return [s for s in config.services if s.kind == "comfyui"] if config.jobs.enabled else []


def collect_jobs(config: Config, token: str | None) -> JobsReport | None:
    """One HTTP round per ComfyUI service, in parallel, no websocket (`check`)."""
    services = comfy_services(config)
    if not services:
        return None
    from concurrent.futures import ThreadPoolExecutor

    def one(svc: ServiceConfig) -> ServiceJobs:
        source = JobsSource(svc, lambda: token, config.jobs, config.probes, websocket=False)
        try:
            return source.refresh_once()
        finally:
            source.close()

    with ThreadPoolExecutor(max_workers=min(8, len(services))) as pool:
        return JobsReport(list(pool.map(one, services)))


def attach_nvml(report: JobsReport | None, gpu: GpuReport | None) -> JobsReport | None:
    """Prefer NVML's per-process memory for a service where the GPU source attributed
    processes to it (what the driver says the container holds, CUDA context included)."""
    if report is None or gpu is None:
        return report
    held: dict[str, float] = {}
    total: dict[str, float] = {}
    for g in gpu.gpus:
        if g.source != "nvml":
            continue
        for p in g.processes:
            if p.service and p.memory_mb is not None:
                held[p.service] = held.get(p.service, 0.0) + p.memory_mb
                if g.memory_total_mb:
                    total[p.service] = max(total.get(p.service, 0.0), g.memory_total_mb)
    for sj in report.services:
        if sj.service in held:
            sj.vram_used = int(held[sj.service] * 1024 * 1024)
            if sj.service in total:
                sj.vram_total = int(total[sj.service] * 1024 * 1024)
            sj.vram_source = "nvml"
    return report


def summary(sj: ServiceJobs) -> str:
    """One clean line per service for text faces (`check`): running job and progress,
    pending and the oldest wait, recent failures, VRAM, and where the data came from."""
    parts: list[str] = []
    if sj.error and sj.api == "none":
        return f"jobs {shown(sj.service, 60)}: unknown ({shown(sj.error, 120)})"
    run = sj.running
    if run is not None:
        step = f" step {run.step}/{run.steps}" if run.steps else ""
        rate = f" {run.it_per_s:.2f} it/s" if run.it_per_s else ""
        parts.append(f"running #{run.number if run.number is not None else '?'}{step}{rate}")
    else:
        parts.append("idle")
    wait = f" (oldest {sj.oldest_wait_s:.0f} s)" if sj.pending and sj.oldest_wait_s else ""
    parts.append(f"{len(sj.pending)} pending{wait}")
    failed = [j for j in sj.recent if j.state == "error"]
    if failed:
        kinds = sorted({j.error_type or "error" for j in failed})
        parts.append(f"{len(failed)} failed ({', '.join(shown(k, 30) for k in kinds)})")
    if sj.vram_used is not None:
        total = f"/{sj.vram_total / 1024 ** 3:.1f}" if sj.vram_total else ""
        parts.append(f"VRAM {sj.vram_used / 1024 ** 3:.1f}{total} GiB")
    parts.append(f"via {sj.api}" + (" + websocket" if sj.websocket else ""))
    if sj.error:
        parts.append(f"error: {shown(sj.error, 80)}")
    return f"jobs {shown(sj.service, 60)}: " + ", ".join(parts)


def next_threshold(report: JobsReport | None, jobs: JobsConfig, now: datetime) -> float | None:
    """Seconds until the earliest job finding threshold is crossed with nothing else
    changing (a running job reaching `stuck_after`, the oldest wait `backlog_after`, an
    idle server `idle_hold_after`): when the live engine re-derives findings next."""
    if report is None:
        return None
    waits: list[float] = []
    for sj in report.services:
        if sj.running is not None and sj.last_progress_at is not None:
            waits.append(jobs.stuck_after - (now - sj.last_progress_at).total_seconds())
        if sj.pending and sj.oldest_wait_s is not None and sj.checked_at is not None:
            waits.append(jobs.backlog_after - sj.oldest_wait_s
                         - (now - sj.checked_at).total_seconds())
        if sj.running is None and not sj.pending and sj.last_progress_at is not None:
            waits.append(jobs.idle_hold_after - (now - sj.last_progress_at).total_seconds())
    future = [w for w in waits if w > 0]
    return min(future) if future else None
