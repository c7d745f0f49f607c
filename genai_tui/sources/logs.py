"""Following container logs off the UI thread: one thread, one Docker client and one raw
stream per container, a bounded ring buffer, and a hand-off queue the UI drains in batches.
Services outside Docker (`runtime = "process"`) are followed the same way through their
`log_file` (`FileLogFollower`: tail, then poll for growth, truncation and rotation).

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
import errno
import json
import os
import re
import stat
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
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
from genai_tui.sources.logtext import LineProcessor, Redactor, classify

#: a raw partial line longer than this (no `\n` yet) is compacted so a hostile container
#: cannot grow our memory without bound
RAW_LINE_CAP = 1 << 20
#: Docker's log copier splits lines longer than this into parts without `\n`
DOCKER_PART = 16 * 1024
#: LogLine.kind of the lines the follower writes itself (restarts, removal)
META = "meta"
#: diagnosis events kept per (service, kind)
EVENTS_PER_KIND = 50
#: a busy stream is read at most this often (seconds) unless a read brings BATCH_BYTES:
#: short, because the engine stops writing once the socket buffer (~200 KB) is full
BATCH_WINDOW = 0.01
BATCH_BYTES = 32 * 1024
_TS = itemgetter(0)


#: `LogLine.kind` not worked out yet
LATER: Any = object()


class LogLine:
    """One stored line, already sanitised (no byte of it can drive a terminal).

    Two things are done the first time they are asked for rather than for every line
    read, because a flood's lines mostly scroll by unseen: redaction (`text` goes through
    the follower's `Redactor` before anything — drawing, saving, searching, a test — can
    read it; the hub's newest secrets apply) and the highlight class (`kind`: a
    logtext.KINDS value, META or None, from the redacted text). The follower decides the
    class up front where it depends on context (traceback continuations) or comes with a
    diagnosis event. Only the UI thread reads lines, so the lazy steps need no lock."""

    __slots__ = ("ts", "service", "hint", "_text", "_kind", "_redactor")

    def __init__(self, ts: int, service: str, text: str, kind: Any = LATER,
                 redactor: Redactor | None = None) -> None:
        self.ts = ts  # ns since the epoch (UTC) as Docker stamped it; 0 when unknown
        self.service = service
        self.hint = len(text)  # width before redaction: the view's first guess
        self._text = text
        self._kind = kind
        self._redactor = redactor  # None once `text` is final

    @property
    def text(self) -> str:
        redactor = self._redactor
        if redactor is not None:
            self._text = redactor.redact(self._text)
            self._redactor = None
        return self._text

    @property
    def kind(self) -> str | None:
        kind = self._kind
        if kind is LATER:
            kind = self._kind = classify(self.text)
        return kind

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LogLine):
            return NotImplemented
        return (self.ts, self.service, self.text, self.kind) == (
            other.ts, other.service, other.text, other.kind)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"LogLine(ts={self.ts}, service={self.service!r}, text={self.text!r}, "
                f"kind={self.kind!r})")


class RecentEvents:
    """Diagnosis events, the newest `per_kind` of each (service, kind): a flood of one kind
    (a job finishing every millisecond) cannot push out the token line of start-up."""

    def __init__(self, per_kind: int = EVENTS_PER_KIND) -> None:
        self.per_kind = per_kind
        self._by_kind: dict[tuple[str, str], deque[LogEvent]] = {}

    def __len__(self) -> int:
        return sum(map(len, self._by_kind.values()))

    def extend(self, events: Iterable[LogEvent]) -> None:
        for ev in events:
            q = self._by_kind.get((ev.service, ev.kind))
            if q is None:
                q = self._by_kind[(ev.service, ev.kind)] = deque(maxlen=self.per_kind)
            q.append(ev)

    def list(self) -> list[LogEvent]:
        """All kept events, oldest first."""
        out = [ev for q in self._by_kind.values() for ev in q]
        out.sort(key=lambda ev: ev.at.timestamp() if ev.at else 0.0)
        return out

    def take(self) -> list[LogEvent]:
        out = self.list()
        self._by_kind.clear()
        return out


# ------------------------------------------------------------------ timestamps

_SECONDS: dict[str | bytes, int] = {}


def _seconds(base: str | bytes) -> int | None:
    """`YYYY-MM-DDTHH:MM:SS` → seconds since the epoch; cached (a log's lines share them)."""
    secs = _SECONDS.get(base)
    if secs is None:
        try:
            s = base.decode("ascii") if isinstance(base, bytes) else base
            if len(s) != 19 or s[4] != "-" or s[10] != "T":
                return None
            secs = calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%S"))
        except (ValueError, UnicodeDecodeError):
            return None
        if len(_SECONDS) > 4096:
            _SECONDS.clear()
        _SECONDS[base] = secs
    return secs


def parse_ts(token: bytes | str) -> int | None:
    """RFC3339(Nano) as Docker prints it → ns since the epoch; None when it is not one."""
    try:
        s = token.decode("ascii") if isinstance(token, bytes | bytearray) else token
        secs = _seconds(s[:19])
        if secs is None:
            return None
        if len(s) == 30 and s[19] == "." and s[29] == "Z":  # Docker's fixed nanosecond form
            return secs * 1_000_000_000 + int(s[20:29])
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


#: what `LineAssembler._whole_lines` takes: stream 1/2 header (its size is checked), a
#: fixed-width RFC3339Nano time, one line of text (Docker never frames more than 16 KiB)
_WHOLE_LINE = re.compile(
    rb"[\x01\x02]\x00\x00\x00(....)(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{9})Z "
    rb"([^\n]{0,%d})\n" % DOCKER_PART, re.S)


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
    """Where a `LogFollower`'s raw bytes come from (Docker). Log files of process-runtime
    services have no streams to reopen: `FileLogSource` + `FileLogFollower` tail them."""

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
        chunk = fp.read1(1 << 18)
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
                 idle_timeout: float = 60.0, connect_timeout: float = 10.0,
                 service: ServiceConfig | None = None) -> None:
        self.label = name
        self.name = name
        self.service = service
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
        """The container by exact name or one compose service label, resolved to a full
        ID from the engine's listing: never an ID prefix (a hex-only name like `cafe`
        would otherwise show an unrelated container's log)."""
        from genai_tui.sources.docker import resolve_container

        api = self._api()
        listing = self._call(lambda: api.containers(all=True)) or []
        service = self.service or ServiceConfig(self.name, "http://127.0.0.1",
                                                container=self.name)
        cid, _ = resolve_container([service], service, listing)
        attrs = self._call(lambda: api.inspect_container(cid)) if cid else None
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
    bytes. Partial lines are kept per stream (stdout/stderr) and bounded.

    `timestamped=False` is for plain files (process services): nothing is parsed off the
    line, and each line gets the `now` of the `feed` call that completed it (read time)."""

    def __init__(self, framed: bool, timestamped: bool = True) -> None:
        self.framed = framed
        self.timestamped = timestamped
        self._buf = bytearray()  # unparsed frame bytes (framed) or unsplit text (TTY)
        self._partial: dict[int, bytearray] = {}
        self._partial_ts: dict[int, int] = {}
        self._dropped: dict[int, int] = {}
        self.last_ts = 0

    def feed(self, chunk: bytes, now: int = 0) -> list[tuple[int, bytes, int]]:
        """Returns complete lines as (ts_ns, raw bytes without `\\n`, dropped bytes)."""
        out: list[tuple[int, bytes, int]] = []
        if not self.timestamped:
            self.last_ts = now
        buf = self._buf
        buf += chunk
        if self.framed:
            data = bytes(buf)
            pos = 0
            n = len(data)
            while True:
                if self.timestamped and not self._partial:
                    pos = self._whole_lines(data, pos, out)
                if n - pos < 8:
                    break
                stream, size = _HEADER.unpack_from(data, pos)
                if n - pos - 8 < size:
                    break
                payload = data[pos + 8:pos + 8 + size]
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

    def _whole_lines(self, data: bytes, pos: int, out: list[tuple[int, bytes, int]]) -> int:
        """The common case in one regex pass: frames that each hold one whole line with
        Docker's fixed-width timestamp. Stops at the first frame that is anything else
        (a 16 KiB part, several lines, a header whose size disagrees...) and returns its
        offset for `_message` to handle."""
        seconds = _SECONDS
        match = _WHOLE_LINE.match  # anchored: a frame that is not one never costs a search
        ts = -1
        while (m := match(data, pos)) is not None:
            end = m.end()
            size, base, nanos, text = m.groups()
            if int.from_bytes(size, "big") != end - pos - 8:
                break
            secs = seconds.get(base)  # `_seconds` looks there too: this saves a call a line
            if secs is None:
                secs = _seconds(base)
                if secs is None:
                    break
            ts = secs * 1_000_000_000 + int(nanos)
            out.append((ts, text, 0))
            pos = end
        if ts >= 0:
            self.last_ts = ts
        return pos

    def _message(self, stream: int, payload: bytes, out: list[tuple[int, bytes, int]]) -> None:
        sp = payload.find(b" ", 0, 40) if self.timestamped else -1
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

    #: drop lines a reopened Docker stream delivers again (timestamps + bytes)
    DEDUPE = True
    #: line times are Docker's; `FileLogFollower` stamps lines with the time they were read
    read_times = False

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
        self._events = RecentEvents()
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
        self._processor = LineProcessor(service, max_line_bytes)

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
            return self._events.take()

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
        read_at = 0.0
        try:
            for chunk in stream:
                if self._stop.is_set():
                    break
                lines = asm.feed(chunk)
                if lines:
                    self._ingest(lines)
                # A busy stream is read in gulps: what arrives within BATCH_WINDOW of the
                # last read waits in the socket and is taken in one batch (per-read costs
                # dominate otherwise). A line after a quiet spell is taken at once.
                now = time.monotonic()
                if len(chunk) < BATCH_BYTES and now - read_at < BATCH_WINDOW:
                    self._stop.wait(BATCH_WINDOW - (now - read_at))
                read_at = time.monotonic()
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
        if not self.DEDUPE:  # files are read by offset: nothing comes twice
            self._last_ts = max(self._last_ts, max(lines, key=_TS)[0])
        elif self._replay is not None:
            lines = self._unseen(lines)
        else:
            self._note_last(lines)
        if not lines:
            return
        tss, raws, drops = (list(map(itemgetter(k), lines)) for k in range(3))
        texts, kinds, events = self._processor.process(tss, raws, drops)
        out = list(map(LogLine, tss, repeat(self.service), texts, repeat(LATER),
                       repeat(self.redactor)))
        for i, kind in kinds.items():
            out[i]._kind = kind
        with self._lock:
            self._buffer.extend(out)
            self._pending.extend(out)
            self._events.extend(events)
            self.total += len(out)

    def _note_last(self, lines: list[tuple[int, bytes, int]]) -> None:
        """A live stream: nothing to drop, but remember the newest timestamp and the lines
        that carry it, to recognise them when a reopened stream delivers them again.
        (stdout and stderr lines may arrive slightly out of timestamp order.)"""
        newest = max(lines, key=_TS)[0]
        last = self._last_ts
        if newest < last:
            return
        at = [raw for ts, raw, _ in lines if ts == newest]
        if newest == last:
            self._at_last.extend(at)
        else:
            self._last_ts, self._at_last = newest, at

    def _unseen(self, lines: list[tuple[int, bytes, int]]) -> list[tuple[int, bytes, int]]:
        """After a reopen: drop what an earlier stream of this container delivered — older
        lines, and at the boundary timestamp the exact bytes seen there — until the first
        newer line ends the replay (from then on it is a live stream again)."""
        out: list[tuple[int, bytes, int]] = []
        for k, item in enumerate(lines):
            ts, raw, _ = item
            last = self._last_ts
            if ts > last:
                self._replay = None
                self._note_last(lines[k:])
                out.extend(lines[k:])
                break
            if ts < last:
                continue
            replay = self._replay
            if replay and replay.get(raw):
                replay[raw] -= 1
                continue
            self._at_last.append(raw)
            out.append(item)
        return out


# ------------------------------------------------------------------ log files (process services)

#: an idle log file costs one `fstat` and one `stat` per this many seconds
FILE_POLL = 0.25
#: how often a missing log file is looked for
FILE_MISSING_POLL = 0.5
#: how often an unreadable one (permissions, not a regular file, I/O error) is retried
FILE_ERROR_POLL = 2.0
FILE_CHUNK = 64 * 1024
#: the initial tail scans back at most this far, so a file of giant lines cannot make the
#: first screen read gigabytes
TAIL_SCAN_MAX = 8 << 20


class NotRegularFile(OSError):
    """`log_file` names a directory, FIFO or device: reading it could block or never end."""


class FileLogSource:
    """The output file of a process service, read by offset (`pread`, no buffering).

    Only the follower thread reads. `close()` may come from any thread: a lock keeps it from
    closing the descriptor under a read (its number could be reused by then), and it gives
    up after a moment on a read stuck on a hung network mount instead of hanging the exit.
    """

    def __init__(self, path: Path | None, label: str = "") -> None:
        self.path = Path(path) if path is not None else None
        self.label = str(path) if path is not None else label
        #: offset of the next byte to read in the open file
        self.pos = 0
        #: (st_dev, st_ino) of the open file: a different one at `path` means rotation
        self.file_id: tuple[int, int] | None = None
        self._fd: int | None = None
        self._lock = threading.Lock()

    def open(self) -> os.stat_result:
        """Open what `path` names now, replacing the open file. Raises OSError
        (FileNotFoundError, PermissionError, NotRegularFile, ...)."""
        if self.path is None:
            raise FileNotFoundError(errno.ENOENT, "no log_file configured")
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below)
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
        fd = os.open(self.path, flags)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise NotRegularFile(errno.EINVAL, "not a regular file")
        except BaseException:
            os.close(fd)
            raise
        with self._lock:
            old, self._fd = self._fd, fd
        if old is not None:
            _close_fd(old)
        self.file_id = (st.st_dev, st.st_ino)
        self.pos = 0
        return st

    def _pread(self, size: int, offset: int) -> bytes:
        with self._lock:
            if self._fd is None:
                raise OSError(errno.EBADF, "log file closed")
            return os.pread(self._fd, size, offset)

    def read(self, limit: int = FILE_CHUNK) -> bytes:
        """Up to `limit` bytes from `pos` on (b"" at the end of the file)."""
        data = self._pread(limit, self.pos)
        self.pos += len(data)
        return data

    def tail_start(self, lines: int, size: int) -> int:
        """Offset where the last `lines` complete lines of the first `size` bytes begin.

        An unterminated last line is not counted (it is still being written: it is read
        with the rest). Scans back at most TAIL_SCAN_MAX bytes, then starts at the first
        line boundary it saw."""
        if lines < 0:
            return 0
        need = lines + 1  # the `\n` that ends the line before the first one we want
        pos = size
        floor = max(0, size - TAIL_SCAN_MAX)
        earliest = -1
        while pos > floor:
            n = min(FILE_CHUNK, pos - floor)
            pos -= n
            block = self._pread(n, pos)
            end = len(block)
            while True:
                i = block.rfind(b"\n", 0, end)
                if i < 0:
                    break
                need -= 1
                earliest = pos + i
                if need == 0:
                    return earliest + 1
                end = i
        if floor == 0:
            return 0
        return earliest + 1 if earliest >= 0 else floor

    def check(self) -> str:
        """What happened since the last read reached the end of the file: "grown",
        "same", "truncated", "rotated" (`path` names another file now) or "removed"."""
        with self._lock:
            if self._fd is None:
                raise OSError(errno.EBADF, "log file closed")
            st = os.fstat(self._fd)
        if st.st_size > self.pos:
            return "grown"
        if st.st_size < self.pos:
            return "truncated"
        try:
            now = os.stat(self.path) if self.path is not None else None
        except FileNotFoundError:
            return "removed"
        except OSError:
            return "same"  # e.g. its folder became unreadable: the open file still is
        if now is not None and (now.st_dev, now.st_ino) != self.file_id:
            return "rotated"
        return "same"

    def close(self) -> None:
        if not self._lock.acquire(timeout=0.5):
            return  # a read is stuck (hung mount): the descriptor goes with the process
        try:
            fd, self._fd = self._fd, None
        finally:
            self._lock.release()
        if fd is not None:
            _close_fd(fd)


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _os_reason(exc: OSError) -> str:
    """"permission denied", "not a regular file"... (printable, short, no traceback)."""
    text = exc.strerror or type(exc).__name__
    text = "".join(ch for ch in text if ch.isprintable())[:120]
    return text[:1].lower() + text[1:]


class FileLogFollower(LogFollower):
    """Follows a process service's `log_file` like `tail -F`: the last `tail` lines, then
    whatever is appended, through the same cleaning, redaction and diagnosis as container
    lines, into the same ring buffer the panel reads.

    - idle, it costs one `fstat` of the open file and one `stat` of the path per
      `file_poll`; data is read in 64 KiB chunks and split on `\\n` (partial lines wait);
    - truncated (size below our offset, e.g. logrotate's copytruncate): read again from
      the start after a "log file truncated" line. A file truncated and refilled beyond our
      offset within one poll looks like growth, as it does to `tail -F`;
    - rotated (`path` names another file, e.g. rename + create): the old file is read to
      its end, then the new one from its start, after a "log file rotated" line;
    - removed: the open file is still read (the process may keep writing to it) until a
      new one appears; missing: "log file not found", then read from its start once it
      appears; unreadable: said so, retried every `error_poll`.

    Files carry no timestamps. A line's time is when it was read (within `file_poll` of
    its writing), except the lines already in the file when following starts: they get
    the file's modification time, the latest they can have been written, so the merged
    view puts that history before what follows instead of all at "now".
    """

    DEDUPE = False
    read_times = True

    def __init__(self, service: str, source: FileLogSource, *, file_poll: float = FILE_POLL,
                 missing_poll: float = FILE_MISSING_POLL, error_poll: float = FILE_ERROR_POLL,
                 **kwargs: Any) -> None:
        super().__init__(service, source, **kwargs)  # type: ignore[arg-type]
        self.file = source
        self.file_poll = file_poll
        self.missing_poll = missing_poll
        self.error_poll = error_poll
        self._asm = LineAssembler(framed=False, timestamped=False)
        self._fresh = False  # the next file opened is new: read it from its start
        self._resume: tuple[tuple[int, int], int] | None = None  # (file id, offset)

    @property
    def status_text(self) -> str:
        path = self.file.label
        if self.state == "following":
            return f"log file {path}" + (f" ({self.detail})" if self.detail else "")
        return {
            "starting": "opening the log file…",
            "missing": f"log file not found: {path}",
            "unreadable": f"cannot read log file {path}: {self.detail}",
            "unconfigured": f"no log_file configured for {self.service}",
            "closed": "closed",
        }.get(self.state, self.state)

    def _loop(self) -> None:
        f = self.file
        if f.path is None:
            self.state = "unconfigured"
            while not self._stop.is_set():
                self._wait(3600.0)
            return
        initial = self.tail if self.tail >= 0 else self.buffer_lines
        initial = min(initial, self.buffer_lines)
        while not self._stop.is_set():
            try:
                st = f.open()
            except FileNotFoundError:
                self.state, self.detail = "missing", ""
                self._fresh = True  # whatever appears later is all new
                self._wait(self.missing_poll)
                continue
            except OSError as exc:
                self.state, self.detail = "unreadable", _os_reason(exc)
                self._wait(self.error_poll)
                continue
            fid = (st.st_dev, st.st_ino)
            backlog_ts = 0
            try:
                resume, self._resume = self._resume, None
                if resume is not None and resume[0] == fid:  # the same file after an error
                    if st.st_size >= resume[1]:
                        start = resume[1]
                    else:
                        self._flush_partial()
                        self._meta("log file truncated")
                        start = 0
                elif resume is not None or self._fresh:  # rotated, recreated or appeared
                    if resume is not None:
                        self._flush_partial()
                        self._meta("log file rotated")
                    start = f.tail_start(self.buffer_lines, st.st_size)
                else:  # the first look: the last `tail` lines, as for a container
                    start = f.tail_start(initial, st.st_size)
                    backlog_ts = max(1, min(st.st_mtime_ns, time.time_ns()))
                self._fresh = False
                f.pos = start
                self.target = Target(id=f"{fid[0]}:{fid[1]}", name=f.label, running=True,
                                     tty=True)
                self.state, self.detail = "following", ""
                outcome = self._follow_file(st.st_size if backlog_ts else 0, backlog_ts)
            except OSError as exc:
                if self._stop.is_set():
                    return
                self._resume = (fid, f.pos)
                self.state, self.detail = "unreadable", _os_reason(exc)
                self._wait(self.error_poll)
                continue
            if outcome == "rotated":
                self._flush_partial()
                self._meta("log file rotated")
                self._fresh = True

    def _follow_file(self, backlog_end: int, backlog_ts: int) -> str:
        """Read until the file is rotated ("rotated") or we are closed ("stopped")."""
        f = self.file
        while not self._stop.is_set():
            if f.pos < backlog_end:  # what was there at start: stamped with its mtime
                data, now = f.read(min(FILE_CHUNK, backlog_end - f.pos)), backlog_ts
            else:
                data, now = f.read(FILE_CHUNK), time.time_ns()
            if data:
                lines = self._asm.feed(data, now)
                if lines:
                    self._ingest(lines)
                continue
            backlog_end = 0
            while not self._stop.is_set():
                change = f.check()
                if change == "grown":
                    break
                if change == "truncated":
                    self._flush_partial()
                    self._meta("log file truncated")
                    f.pos = 0
                    break
                if change == "rotated":
                    while not self._stop.is_set():  # what was written before the switch
                        data = f.read(FILE_CHUNK)
                        if not data:
                            break
                        lines = self._asm.feed(data, time.time_ns())
                        if lines:
                            self._ingest(lines)
                    return "rotated"
                removed = change == "removed"
                self.detail = "removed; still reading the open file" if removed else ""
                self._wait(self.file_poll)
        return "stopped"

    def _flush_partial(self) -> None:
        """The unterminated last line of a file we leave (rotated, truncated) is a line."""
        rest = self._asm.flush()
        if rest:
            self._ingest(rest)


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
    def read_times(self) -> bool:
        """Some lines are stamped with the time they were read (log files)."""
        return any(f.read_times for f in self.followers)

    @property
    def status_text(self) -> str:
        if not self.followers:
            return "no services configured"
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
                 source_factory: Callable[[ServiceConfig], LogSource | FileLogSource]
                 | None = None,
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
        source: LogSource | FileLogSource
        if self._source_factory is not None:
            source = self._source_factory(svc)
        elif svc.runtime == "process":
            source = FileLogSource(svc.log_file, label=svc.name)
        else:
            source = DockerLogSource(svc.container_name, self._make_client, service=svc)
        opts: dict[str, Any] = dict(tail=logs.tail, buffer_lines=logs.buffer_lines,
                                    max_line_bytes=logs.max_line_bytes,
                                    redactor=self.redactor, prepare=self.ensure_secrets)
        if isinstance(source, FileLogSource):
            return FileLogFollower(svc.name, source, **opts)
        return LogFollower(svc.name, source, **opts)

    def merged(self, services: Iterable[str] | None = None) -> MergedLogs:
        """Every service of the stack (containers and log files of process services)."""
        names = list(services) if services is not None else [
            s.name for s in self.config.services]
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
