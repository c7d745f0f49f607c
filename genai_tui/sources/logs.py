"""Following container logs off the UI thread: one thread, one Docker client and one raw
stream per container, a bounded ring buffer, and a hand-off queue the UI drains in batches.

Why a raw GET instead of `container.logs()`: it keeps stdout/stderr apart, lets us read
whole HTTP chunks (TTY streams otherwise arrive one byte per iteration), and gives us the
response to shut from another thread so closing never waits on the engine.

A follow stream ends whenever the container stops or restarts. The follower then reopens it
from the last timestamp it stored (`since`, inclusive) and drops the lines it already has —
by timestamp, and for lines sharing the boundary timestamp by their exact bytes — so a
restart shows no duplicate and no gap. A removed container is reported as such and the
follower keeps looking for a new container with the same name.

Nothing here imports Textual: `genai_tui.ui.logs.LogPanel` renders what this produces.
"""

from __future__ import annotations

import calendar
import json
import re
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import docker
import docker.errors
import requests
import urllib3.exceptions
from docker.types.daemon import CancellableStream

from genai_tui.config import Config, DockerConfig, LogConfig, ServiceConfig, TokensConfig
from genai_tui.model import LogEvent
from genai_tui.secret import BCRYPT_ANYWHERE
from genai_tui.sources.logtext import Redactor, analyze, clean_line

COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_ONEOFF = "com.docker.compose.oneoff"
#: a raw partial line longer than this (no `\n` yet) is compacted so a hostile container
#: cannot grow our memory without bound
RAW_LINE_CAP = 1 << 20
#: Docker's log copier splits lines longer than this into parts without `\n`
DOCKER_PART = 16 * 1024
#: LogLine.kind of the lines the follower writes itself (restarts, removal)
META = "meta"
EVENTS_MAX = 200


@dataclass(frozen=True, slots=True)
class LogLine:
    """One stored line: already sanitised and redacted."""

    ts: int  # ns since the epoch (UTC) as Docker stamped it; 0 when unknown
    service: str
    text: str
    kind: str | None = None  # a logtext.KINDS value, META, or None


# ------------------------------------------------------------------ timestamps

_SECONDS_CACHE: dict[str, int] = {}


def parse_ts(token: bytes | str) -> int | None:
    """RFC3339(Nano) as Docker prints it → ns since the epoch; None when it is not one."""
    try:
        s = token.decode("ascii") if isinstance(token, bytes | bytearray) else token
        if len(s) == 30 and s[19] == "." and s[29] == "Z":  # Docker's fixed nanosecond form
            secs = _SECONDS_CACHE.get(s[:19])
            if secs is not None:
                return secs * 1_000_000_000 + int(s[20:29])
        base = s[:19]
        secs = _SECONDS_CACHE.get(base)
        if secs is None:
            if len(base) != 19 or base[4] != "-" or base[10] != "T":
                return None
            secs = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
            if len(_SECONDS_CACHE) > 4096:
                _SECONDS_CACHE.clear()
            _SECONDS_CACHE[base] = secs
        rest = s[19:]
        frac = 0
        if rest.startswith("."):
            i = 1
            while i < len(rest) and rest[i].isdigit():
                i += 1
            frac = int((rest[1:i] + "000000000")[:9])
            rest = rest[i:]
        if rest in ("Z", "z", ""):
            offset = 0
        else:
            sign = -1 if rest[0] == "-" else 1
            hh, mm = rest[1:].split(":")
            offset = sign * (int(hh) * 3600 + int(mm) * 60)
        return (secs - offset) * 1_000_000_000 + frac
    except (ValueError, IndexError, UnicodeDecodeError):
        return None


def format_since(ts_ns: int) -> str:
    """The `since` query value Docker accepts with nanosecond precision."""
    s, ns = divmod(ts_ns, 1_000_000_000)
    return f"{s}.{ns:09d}"


# ------------------------------------------------------------------ raw sources


@dataclass(frozen=True)
class Target:
    """What a source found to read from (a container, later maybe a file)."""

    id: str
    name: str
    running: bool
    started_at: str = ""
    tty: bool = False
    exit_code: int | None = None


class RawStream(Protocol):
    #: True when each chunk is one `[8-byte header]TS payload` frame sequence (Docker,
    #: non-TTY); False for a plain byte stream of `TS payload\n` lines (TTY).
    framed: bool

    def __iter__(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class LogSource(Protocol):
    """Where a follower's raw bytes come from. Docker is the only one so far; a file tail
    for process-runtime services can implement the same four calls."""

    label: str

    def locate(self) -> Target | None: ...

    def inspect(self, target_id: str) -> Target | None: ...

    def open(self, target: Target, tail: int, since_ns: int | None,
             follow: bool = True) -> RawStream: ...

    def close(self) -> None: ...


class SourceUnavailable(Exception):
    """The engine (or file system) cannot be reached right now: retry later."""


class _DockerStream:
    def __init__(self, response: requests.Response, framed: bool) -> None:
        self.framed = framed
        self._response = response
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        fp = getattr(getattr(self._response.raw, "_fp", None), "fp", None)
        chunked = self._response.headers.get("Transfer-Encoding", "").lower() == "chunked"
        if chunked and fp is not None and hasattr(fp, "read1"):
            return _dechunk(fp)
        return self._response.iter_content(chunk_size=None)

    def close(self) -> None:
        """Safe from any thread: shutting the socket wakes a reader blocked on it."""
        if self._closed:
            return
        self._closed = True
        try:
            CancellableStream(None, self._response).close()
        except Exception:  # SSH transport, already closed socket...: best effort
            try:
                self._response.close()
            except Exception:
                pass


def _dechunk(fp: Any) -> Iterator[bytes]:
    """HTTP chunked transfer decoding straight from the socket reader, yielding whatever
    has arrived (many Docker frames per read). Docker flushes one chunk per log message,
    so urllib3's chunk-by-chunk reading costs more than the rest of a line's processing."""
    size_line, data, crlf = 0, 1, 2
    state, left = size_line, 0
    buf = b""
    while True:
        chunk = fp.read1(65536)
        if not chunk:
            return
        buf = buf + chunk if buf else chunk
        out: list[bytes] = []
        pos, n = 0, len(buf)
        while True:
            if state == size_line:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                size = int(buf[pos:eol].split(b";", 1)[0], 16)
                pos = eol + 2
                if size == 0:  # the last chunk: the stream is over
                    if out:
                        yield b"".join(out)
                    return
                state, left = data, size
            elif state == data:
                take = min(left, n - pos)
                if take <= 0:
                    break
                out.append(buf[pos:pos + take])
                pos += take
                left -= take
                if left:
                    break
                state = crlf
            else:
                if n - pos < 2:
                    break
                pos += 2
                state = size_line
        buf = buf[pos:]
        if out:
            yield b"".join(out)


class DockerLogSource:
    """Logs of the container called `name` (or the compose service of that name)."""

    def __init__(self, name: str, make_client: Callable[[], docker.DockerClient],
                 idle_timeout: float = 60.0, connect_timeout: float = 10.0) -> None:
        self.label = name
        self.name = name
        self._make_client = make_client
        self._client: docker.DockerClient | None = None
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout

    def _api(self) -> docker.APIClient:
        if self._client is None:
            try:
                self._client = self._make_client()
            except docker.errors.DockerException as exc:
                raise SourceUnavailable(_describe(exc)) from exc
        return self._client.api

    def _reset(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
        self._client = None

    def _target(self, attrs: dict[str, Any]) -> Target:
        state = attrs.get("State") or {}
        return Target(
            id=attrs.get("Id", ""),
            name=(attrs.get("Name") or self.name).lstrip("/"),
            running=bool(state.get("Running")) and not state.get("Restarting"),
            started_at=state.get("StartedAt") or "",
            tty=bool((attrs.get("Config") or {}).get("Tty")),
            exit_code=state.get("ExitCode"),
        )

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except docker.errors.NotFound:
            return None
        except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
            self._reset()
            raise SourceUnavailable(_describe(exc)) from exc

    def locate(self) -> Target | None:
        api = self._api()
        attrs = self._call(lambda: api.inspect_container(self.name))
        if attrs is None:
            found = self._call(lambda: api.containers(
                all=True, filters={"label": f"{COMPOSE_SERVICE}={self.name}"})) or []
            for item in found:
                if (item.get("Labels") or {}).get(COMPOSE_ONEOFF, "False") != "True":
                    attrs = self._call(lambda i=item: api.inspect_container(i["Id"]))
                    if attrs is not None:
                        break
        return self._target(attrs) if attrs else None

    def inspect(self, target_id: str) -> Target | None:
        api = self._api()
        attrs = self._call(lambda: api.inspect_container(target_id))
        return self._target(attrs) if attrs else None

    def open(self, target: Target, tail: int, since_ns: int | None,
             follow: bool = True) -> RawStream:
        api = self._api()
        params: dict[str, Any] = {"stdout": 1, "stderr": 1, "follow": int(follow),
                                  "timestamps": 1,
                                  "tail": str(tail) if tail >= 0 else "all"}
        if since_ns:
            params["since"] = format_since(since_ns)

        def get() -> requests.Response:
            # the read timeout is an idle watchdog: a quiet or hung stream (docker-py #3084)
            # is reopened from the last timestamp, which costs nothing thanks to dedupe
            resp = api._get(api._url("/containers/{0}/logs", target.id), params=params,
                            stream=True, timeout=(self.connect_timeout, self.idle_timeout))
            if resp.status_code == 404:
                resp.close()
                raise docker.errors.NotFound("container removed")
            api._raise_for_status(resp)
            return resp

        resp = self._call(get)
        if resp is None:
            raise docker.errors.NotFound("container removed")
        return _DockerStream(resp, framed=not target.tty)

    def close(self) -> None:
        self._reset()


def _describe(exc: BaseException) -> str:
    """One short line for an engine failure (no traceback, no library noise)."""
    try:
        from genai_tui.sources.docker import describe_error

        return describe_error(exc)
    except Exception:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return "".join(ch for ch in text if ch.isprintable())[:200]


# ------------------------------------------------------------------ line assembly

_HEADER = struct.Struct(">BxxxL")


class LineAssembler:
    """Bytes from a raw stream → complete `(ts_ns, raw_line)` pairs.

    Chunks are not lines: Docker frames carry one log message each (a message longer than
    16 KiB is split into several, each with its own timestamp), TTY streams are plain
    bytes. Partial lines are kept per stream (stdout/stderr) and bounded."""

    def __init__(self, framed: bool) -> None:
        self.framed = framed
        self._buf = bytearray()  # unparsed frame bytes (framed) or unsplit text (TTY)
        self._partial: dict[int, bytearray] = {}
        self._partial_ts: dict[int, int] = {}
        self._dropped: dict[int, int] = {}
        self.last_ts = 0

    def feed(self, chunk: bytes) -> list[tuple[int, bytes, int]]:
        """Returns complete lines as (ts_ns, raw bytes without `\\n`, dropped bytes)."""
        out: list[tuple[int, bytes, int]] = []
        buf = self._buf
        buf += chunk
        if self.framed:
            pos = 0
            n = len(buf)
            while n - pos >= 8:
                stream, size = _HEADER.unpack_from(buf, pos)
                if n - pos - 8 < size:
                    break
                payload = bytes(buf[pos + 8:pos + 8 + size])
                pos += 8 + size
                if stream in (1, 2):
                    self._message(stream, payload, out)
            if pos:
                del buf[:pos]
        else:
            start = 0
            while True:
                nl = buf.find(b"\n", start)
                if nl < 0:
                    break
                self._message(1, bytes(buf[start:nl + 1]), out)
                start = nl + 1
            if start:
                del buf[:start]
            if len(buf) > RAW_LINE_CAP:  # a TTY line without end: hand it over, bounded
                self._message(1, bytes(buf), out)
                buf.clear()
        return out

    def _message(self, stream: int, payload: bytes, out: list[tuple[int, bytes, int]]) -> None:
        sp = payload.find(b" ", 0, 40)
        ts = parse_ts(payload[:sp]) if sp > 0 else None
        if ts is None:
            ts = self.last_ts
            body = payload
        else:
            body = payload[sp + 1:]
            self.last_ts = ts
        if self.framed and len(body) != DOCKER_PART and not body.endswith(b"\n"):
            # Docker's copier cuts a long line into 16 KiB parts; any other message without
            # `\n` is what a process wrote before it exited: a line of its own. (Joining it
            # to the next run's first line would also break the dedupe on reopen.)
            body += b"\n"
        part = self._partial.get(stream)
        if part is None and body.endswith(b"\n") and b"\n" not in body[:-1]:
            out.append((ts, body[:-1], 0))  # the common case: one whole line
            return
        if part is None:
            part = self._partial[stream] = bytearray()
            self._partial_ts[stream] = ts
        part += body
        while True:
            nl = part.find(b"\n")
            if nl < 0:
                break
            out.append((self._partial_ts[stream], bytes(part[:nl]),
                        self._dropped.pop(stream, 0)))
            del part[:nl + 1]
            self._partial_ts[stream] = ts
        if not part:
            del self._partial[stream]
        elif len(part) > RAW_LINE_CAP:
            self._compact(stream, part)

    def _compact(self, stream: int, part: bytearray) -> None:
        """Keep what the line will show: after `\\r` rewrites only the last segment counts;
        otherwise the head (the cut marker reports the rest)."""
        stripped = part.rstrip(b"\r")
        cr = stripped.rfind(b"\r")
        if cr >= 0:
            del part[:cr]
            self._dropped.pop(stream, None)
        else:
            keep = 64 * 1024
            self._dropped[stream] = self._dropped.get(stream, 0) + len(part) - keep
            del part[keep:]

    def flush(self) -> list[tuple[int, bytes, int]]:
        """The unterminated rest when a stream ends. Framed (non-TTY): nothing — a line cut
        between its 16 KiB parts comes back whole when the stream is reopened from the last
        complete line. TTY: the rest, as one line."""
        out: list[tuple[int, bytes, int]] = []
        if self._buf and not self.framed:
            self._message(1, bytes(self._buf) + b"\n", out)
        if not self.framed:
            for stream, part in list(self._partial.items()):
                if part:
                    out.append((self._partial_ts[stream], bytes(part),
                                self._dropped.pop(stream, 0)))
        self._buf.clear()
        self._partial.clear()
        self._dropped.clear()
        return out


# ------------------------------------------------------------------ follower

STATES = ("starting", "following", "stopped", "removed", "missing", "unavailable", "closed")


class LogFollower:
    """Follows one service's container on a dedicated daemon thread.

    The UI reads with `snapshot()` (the whole ring buffer, at a switch) and `drain()` (the
    lines since, in one batch per tick); both are cheap and never block on Docker."""

    def __init__(
        self,
        service: str,
        source: LogSource,
        *,
        tail: int = 200,
        buffer_lines: int = 5000,
        max_line_bytes: int = 4096,
        redactor: Redactor | None = None,
        poll_interval: float = 2.0,
        removed_poll: float = 3.0,
        prepare: Callable[[], None] | None = None,
    ) -> None:
        self.service = service
        self._prepare = prepare
        self.source = source
        self.tail = tail
        self.buffer_lines = buffer_lines
        self.max_line_bytes = max_line_bytes
        self.redactor = redactor or Redactor()
        self.poll_interval = poll_interval
        self.removed_poll = removed_poll
        self._buffer: deque[LogLine] = deque(maxlen=buffer_lines)
        self._pending: deque[LogLine] = deque(maxlen=buffer_lines)
        self._events: deque[LogEvent] = deque(maxlen=EVENTS_MAX)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._stream: RawStream | None = None
        self._stream_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        #: lines accepted so far (monotonic; the UI derives "+N new" from it)
        self.total = 0
        self.state = "starting"
        self.detail = ""
        self.target: Target | None = None
        # dedupe across reopen: the last timestamp and the lines seen at exactly that time
        self._last_ts = 0
        self._at_last: list[bytes] = []
        self._replay: Counter[bytes] | None = None
        self._prev_kind: str | None = None
        self._last_oom = 0

    # ---------------------------------------------------------- lifecycle

    def start(self) -> LogFollower:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"logs-{self.service}")
            self._thread.start()
        return self

    def stop_nowait(self) -> None:
        """Ask the thread to stop and shut the open stream; does not wait."""
        self._stop.set()
        self._wake.set()
        with self._stream_lock:
            stream = self._stream
        if stream is not None:
            stream.close()

    def close(self, timeout: float = 1.0) -> None:
        """Stop the thread: shut the open stream (wakes the blocked read) and join."""
        self.stop_nowait()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        try:
            self.source.close()
        except Exception:
            pass
        self.state = "closed"

    @property
    def last_ts(self) -> int:
        """Docker timestamp (ns) of the newest line read so far (0 before the first)."""
        return self._last_ts

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def notify_started(self) -> None:
        """The app saw a Docker `start` event for this container: reopen now instead of at
        the next poll. An open stream is closed too: after a restart it should have ended,
        so if it is still open it hung (docker-py #3084); reopening from the last timestamp
        costs one request and shows no line twice."""
        self._wake.set()
        with self._stream_lock:
            stream = self._stream
        if stream is not None:
            stream.close()

    # ---------------------------------------------------------- UI side

    def snapshot(self) -> list[LogLine]:
        """Every buffered line; also empties the pending queue so `drain` continues from
        here with no duplicate and no gap."""
        with self._lock:
            self._pending.clear()
            return list(self._buffer)

    def drain(self) -> list[LogLine]:
        """Lines added since the last `drain`/`snapshot` (at most `buffer_lines`)."""
        if not self._pending:
            return []
        with self._lock:
            out = list(self._pending)
            self._pending.clear()
        return out

    def drain_events(self) -> list[LogEvent]:
        if not self._events:
            return []
        with self._lock:
            out = list(self._events)
            self._events.clear()
        return out

    @property
    def status_text(self) -> str:
        name = self.target.name if self.target else self.source.label
        return {
            "starting": "connecting…",
            "following": "following",
            "stopped": "stream ended, waiting for restart",
            "removed": f"container removed: {name}",
            "missing": f"no container named {self.source.label}",
            "unavailable": f"Docker engine unreachable: {self.detail}",
            "closed": "closed",
        }.get(self.state, self.state)

    # ---------------------------------------------------------- thread

    def _wait(self, seconds: float) -> bool:
        """Sleep until woken or stopped; True when woken (not stopped)."""
        woke = self._wake.wait(seconds)
        self._wake.clear()
        return woke and not self._stop.is_set()

    def _run(self) -> None:
        if self._prepare is not None:
            try:
                self._prepare()  # e.g. load the secrets to redact before the first line
            except Exception:
                pass
        while not self._stop.is_set():
            try:
                self._loop()
            except Exception as exc:  # a bug must not kill following silently
                text = f"{type(exc).__name__}: {exc}"
                self.state = "unavailable"
                self.detail = "".join(ch for ch in text if ch.isprintable())[:200]
                self._wait(2.0)

    def _loop(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                found = self.source.locate()
            except SourceUnavailable as exc:
                self.state, self.detail = "unavailable", str(exc)
                self._wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.5
            if found is None:
                if self.target is not None and self.state != "removed":
                    self._meta(f"container {self.target.name} removed; waiting for a new one")
                    self.state = "removed"
                elif self.target is None:
                    self.state = "missing"
                self._wait(self.removed_poll)
                continue
            if self.target is None or found.id != self.target.id:
                if self.target is not None:
                    self._meta(f"following new container {found.name} ({found.id[:12]})")
                    self._replay = None
                    self._last_ts, self._at_last = 0, []
                since = None
                tail = self.tail
            else:
                since = self._last_ts or None
                tail = self.buffer_lines if since else self.tail
            self.target = found
            self.state = "following" if found.running else "stopped"
            self._follow_once(found, tail, since)
            if self._stop.is_set():
                break
            self._after_stream(found)

    def _follow_once(self, target: Target, tail: int, since: int | None,
                     follow: bool = True) -> None:
        try:
            stream = self.source.open(target, tail, since, follow)
        except docker.errors.NotFound:
            return
        except SourceUnavailable as exc:
            self.state, self.detail = "unavailable", str(exc)
            self._wait(1.0)
            return
        with self._stream_lock:
            if self._stop.is_set():
                stream.close()
                return
            self._stream = stream
        self._replay = Counter(self._at_last) if since else None
        asm = LineAssembler(stream.framed)
        try:
            for chunk in stream:
                if self._stop.is_set():
                    break
                lines = asm.feed(chunk)
                if lines:
                    self._ingest(lines)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError,
                ValueError, AttributeError):
            pass  # closed by us, idle timeout, engine gone: decided by _after_stream
        finally:
            with self._stream_lock:
                self._stream = None
            stream.close()
        if not self._stop.is_set():
            rest = asm.flush()
            if rest:
                self._ingest(rest)

    def _after_stream(self, before: Target) -> None:
        """Why did the stream end? Restarted → reopen now; stopped → wait; gone → locate."""
        try:
            now = self.source.inspect(before.id)
        except SourceUnavailable as exc:
            self.state, self.detail = "unavailable", str(exc)
            self._wait(1.0)
            return
        if now is None:
            return  # removed: the next locate() says so or finds a new one
        if now.running:
            if now.started_at != before.started_at:
                self._meta("container restarted")
            elif self._wait(0.2):  # same run, stream ended early: reopen (not in a hot loop)
                pass
            return
        if self.state != "stopped" or before.running:
            # A follow stream can end before Docker has logged the process's last output
            # (its unterminated last line comes at EOF): one catch-up read from the last
            # timestamp, now that the container has stopped, gets it (dedupe drops repeats).
            self._follow_once(now, self.buffer_lines, self._last_ts or None, follow=False)
            if self._stop.is_set():
                return
            code = f" (exit code {now.exit_code})" if now.exit_code is not None else ""
            self._meta(f"container stopped{code}; waiting for restart")
        self.state = "stopped"
        self.target = now
        while not self._stop.is_set():
            self._wait(self.poll_interval)
            if self._stop.is_set():
                return
            try:
                again = self.source.inspect(before.id)
            except SourceUnavailable:
                continue
            if again is None or again.running or again.started_at != now.started_at:
                if again is not None and again.running:
                    self._meta("container started")
                return

    def _meta(self, text: str) -> None:
        ts = max(time.time_ns(), self._last_ts)
        line = LogLine(ts, self.service, f"── {text} ──", META)
        with self._lock:
            self._buffer.append(line)
            self._pending.append(line)
            self.total += 1

    def _ingest(self, lines: list[tuple[int, bytes, int]]) -> None:
        out: list[LogLine] = []
        events: list[LogEvent] = []
        redact = self.redactor.redact
        service = self.service
        max_len = self.max_line_bytes
        for ts, raw, dropped in lines:
            # --- dedupe against what an earlier stream of this container delivered. Only
            # while replaying after a reopen: in a live stream stdout and stderr lines may
            # arrive slightly out of timestamp order, and none of them is a repeat.
            last = self._last_ts
            if ts > last:
                self._last_ts = ts
                self._at_last = [raw]
                self._replay = None
            elif ts == last:
                replay = self._replay
                if replay and replay.get(raw):
                    replay[raw] -= 1
                    continue
                self._at_last.append(raw)
            elif self._replay is not None:
                continue  # older than what we already have
            # --- clean, diagnose (before redaction), redact, classify
            text = clean_line(raw.decode("utf-8", "replace"), max_len, dropped)
            kind, ev = analyze(service, text, ts)
            if ev is not None:
                if ev.kind == "oom":
                    if ts - self._last_oom < 10_000_000_000:
                        ev = None
                    self._last_oom = ts
                if ev is not None:
                    events.append(ev)
            if kind is None and self._prev_kind == "traceback" and text[:1] in (" ", "\t"):
                kind = "traceback"
            self._prev_kind = kind
            out.append(LogLine(ts, service, redact(text), kind))
        if out or events:
            with self._lock:
                self._buffer.extend(out)
                self._pending.extend(out)
                self._events.extend(events)
                self.total += len(out)


# ------------------------------------------------------------------ several at once


def merge_sorted(batches: Iterable[list[LogLine]]) -> list[LogLine]:
    """Lines of several followers in timestamp order (stable within one service)."""
    out: list[LogLine] = []
    for b in batches:
        out.extend(b)
    out.sort(key=lambda line: line.ts)
    return out


class MergedLogs:
    """The `a` view: one follower per stack service, read as one stream."""

    def __init__(self, followers: list[LogFollower], buffer_lines: int = 5000) -> None:
        self.followers = followers
        self.buffer_lines = buffer_lines

    @property
    def service(self) -> str:
        return "all"

    @property
    def total(self) -> int:
        return sum(f.total for f in self.followers)

    def snapshot(self) -> list[LogLine]:
        return merge_sorted(f.snapshot() for f in self.followers)[-self.buffer_lines:]

    def drain(self) -> list[LogLine]:
        return merge_sorted(f.drain() for f in self.followers)

    def drain_events(self) -> list[LogEvent]:
        out: list[LogEvent] = []
        for f in self.followers:
            out.extend(f.drain_events())
        return out

    @property
    def status_text(self) -> str:
        if not self.followers:
            return "no docker services configured"
        states = Counter(f.state for f in self.followers)
        if states.get("following", 0) == len(self.followers):
            return "following"
        parts = [f"{f.service}: {f.status_text}" for f in self.followers
                 if f.state != "following"]
        return "; ".join(parts)


class LogHub:
    """One follower per service, created on first use and kept until `close()` so that
    switching back to a service is instant and its history is still there."""

    def __init__(self, config: Config, redactor: Redactor | None = None,
                 make_client: Callable[[], docker.DockerClient] | None = None,
                 source_factory: Callable[[ServiceConfig], LogSource] | None = None,
                 secrets: Callable[[], Iterable[str]] | None = None) -> None:
        self.config = config
        self.redactor = redactor or Redactor()
        self._make_client = make_client or (lambda: make_docker_client(config.docker))
        self._source_factory = source_factory
        self._secrets = secrets if secrets is not None else (
            lambda: configured_secrets(config.tokens))
        self._secrets_lock = threading.Lock()
        self._secrets_loaded = False
        self._followers: dict[str, LogFollower] = {}
        self._lock = threading.Lock()

    def ensure_secrets(self) -> None:
        """Load the configured secret values once (from a follower thread, before its first
        line, so nothing is stored unredacted)."""
        with self._secrets_lock:
            if not self._secrets_loaded:
                self._load_secrets()

    def refresh_secrets(self) -> None:
        """Re-read the token locations (they change when tokens are unified); blocking."""
        with self._secrets_lock:
            self._load_secrets()

    def _load_secrets(self) -> None:
        try:
            values = list(self._secrets())
        except Exception:
            values = []
        if values or not self._secrets_loaded:
            self.redactor.set_secrets(values)
        self._secrets_loaded = True

    @property
    def followers(self) -> dict[str, LogFollower]:
        return dict(self._followers)

    def follower(self, service: str) -> LogFollower:
        with self._lock:
            f = self._followers.get(service)
            if f is None:
                svc = self.config.service(service) or ServiceConfig(service, "http://127.0.0.1")
                f = self._new(svc)
                self._followers[service] = f
                f.start()
            return f

    def _new(self, svc: ServiceConfig) -> LogFollower:
        logs: LogConfig = self.config.logs
        if self._source_factory is not None:
            source = self._source_factory(svc)
        else:
            source = DockerLogSource(svc.container_name, self._make_client)
        return LogFollower(svc.name, source, tail=logs.tail, buffer_lines=logs.buffer_lines,
                           max_line_bytes=logs.max_line_bytes, redactor=self.redactor,
                           prepare=self.ensure_secrets)

    def merged(self, services: Iterable[str] | None = None) -> MergedLogs:
        names = list(services) if services is not None else [
            s.name for s in self.config.services if s.runtime == "docker"]
        return MergedLogs([self.follower(n) for n in names], self.config.logs.buffer_lines)

    def notify_started(self, container: str) -> bool:
        """Route a `start` event (container id or name) to the follower it concerns."""
        key = container.lstrip("/")
        hit = False
        for f in list(self._followers.values()):
            t = f.target
            names = {f.service, getattr(f.source, "label", "")}
            if t is not None:
                names |= {t.name, t.id, t.id[:12]}
            if key in names or (t is not None and len(key) >= 12 and t.id.startswith(key)):
                f.notify_started()
                hit = True
        return hit

    def close(self) -> None:
        """Close every follower (in parallel: each join waits up to ~1 s)."""
        with self._lock:
            followers = list(self._followers.values())
            self._followers.clear()
        for f in followers:
            f.stop_nowait()
        deadline = time.monotonic() + 1.0  # ~1 s in all, however many followers
        for f in followers:
            f.close(timeout=max(0.0, deadline - time.monotonic()))


def make_docker_client(cfg: DockerConfig) -> docker.DockerClient:
    """A client of our own per stream (each open stream pins a pooled connection)."""
    if cfg.host:
        return docker.DockerClient(base_url=cfg.host, timeout=int(cfg.timeout))
    return docker.from_env(timeout=int(cfg.timeout))


# ------------------------------------------------------------------ configured secrets

_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def configured_secrets(tokens: TokensConfig, max_bytes: int = 1 << 20) -> list[str]:
    """The secret values held in the configured token locations, for the Redactor.

    Uses `genai_tui.sources.tokens.secret_values` when that module provides it; otherwise a
    small tolerant reader: every bcrypt-shaped value in each file, plus the value of the
    configured key for env/raw_env/json locations. Any error just skips that location."""
    try:
        from genai_tui.sources import tokens as _tokens  # another module's reader, if any

        fn = getattr(_tokens, "secret_values", None)
        if callable(fn):
            values = [v for v in fn(tokens) if isinstance(v, str) and v]
            if values:
                return values
    except Exception:
        pass
    out: set[str] = set()
    seen: set[Path] = set()
    for loc in tokens.locations:
        try:
            path = Path(loc.path)
            data = path.read_bytes()[:max_bytes] if path.is_file() else b""
        except OSError:
            continue
        text = data.decode("utf-8", "replace").lstrip("\ufeff")
        if path not in seen:
            seen.add(path)
            out.update(BCRYPT_ANYWHERE.findall(text))
        try:
            if loc.format in ("hash_file", "password_file"):
                first = text.splitlines()[0].strip() if text.strip() else ""
                if first:
                    out.add(first)
            elif loc.format in ("env", "raw_env") and loc.key:
                for line in text.splitlines():
                    m = _ENV_LINE.match(line)
                    if m and m.group(1) == loc.key:
                        value = m.group(2)
                        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                            value = value[1:-1]
                        if value:
                            out.add(value)
            elif loc.format == "json" and loc.key:
                _json_values(json.loads(text), loc.key, out)
        except (ValueError, IndexError, RecursionError):
            continue
    return sorted(out)


def _json_values(doc: Any, key: str, out: set[str], depth: int = 0) -> None:
    if depth > 20:
        return
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k == key and isinstance(v, str) and v:
                out.add(v)
            else:
                _json_values(v, key, out, depth + 1)
    elif isinstance(doc, list):
        for v in doc:
            _json_values(v, key, out, depth + 1)
