"""Raw container log bytes from the Docker engine, and their assembly into lines.

Why a raw GET instead of `container.logs()`: it keeps stdout/stderr apart, lets us read
whole HTTP chunks (TTY streams otherwise arrive one byte per iteration), and gives us the
response to shut from another thread so closing never waits on the engine. This module
holds what a follower reads from: the `LogSource` / `RawStream` protocols and `Target`,
`DockerLogSource` (locate, inspect, open a `since`/`tail` stream), the chunked-transfer
reader, Docker's timestamps, and `LineAssembler`, which turns framed (or TTY, or plain
file) bytes into bounded `(ts_ns, raw_line)` pairs.
"""

from __future__ import annotations

import calendar
import contextlib
import http.client
import re
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlencode

from genai_tui.config import ServiceConfig

if TYPE_CHECKING:  # docker-py (and its requests stack) loads only for an engine the
    import docker  # standard-library client does not reach
    import requests

    from genai_tui.sources.docker_light import LightClient

#: a raw partial line longer than this (no `\n` yet) is compacted so a hostile container
#: cannot grow our memory without bound
RAW_LINE_CAP = 1 << 20
#: Docker's log copier splits lines longer than this into parts without `\n`
DOCKER_PART = 16 * 1024


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
    restart_policy: str = ""  # HostConfig.RestartPolicy.Name

    def after_stop(self) -> str:
        """What happens next to a stopped container, from its restart policy (never a
        "waiting for restart" Docker will not do)."""
        policy = self.restart_policy or "no"
        if policy == "no":
            return "restart policy: no — stays stopped"
        if policy == "on-failure":
            return ("restart policy: on-failure — Docker restarts it"
                    if self.exit_code not in (0, None)
                    else "restart policy: on-failure, exit 0 — stays stopped")
        return f"restart policy: {policy} — Docker restarts it unless it was stopped by hand"


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


class ContainerGone(Exception):
    """The container was removed between finding it and opening its log."""


class _LightStream:
    """A followed log on the standard-library client's connection."""

    def __init__(self, conn: Any, resp: http.client.HTTPResponse, framed: bool) -> None:
        self.framed = framed
        self._conn, self._resp = conn, resp
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        if self._resp.chunked and self._resp.fp is not None:
            return _dechunk(self._resp.fp)
        return iter(lambda: self._resp.read1(1 << 18), b"")

    def close(self) -> None:
        """Safe from any thread: shutting the socket wakes a reader blocked on it."""
        if self._closed:
            return
        self._closed = True
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._conn.close()


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
            from docker.types.daemon import CancellableStream

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


class _EngineLogSource:
    """Finding a container and opening its log, over either Engine API client."""

    def __init__(self, name: str, idle_timeout: float, connect_timeout: float,
                 service: ServiceConfig | None) -> None:
        self.label = name
        self.name = name
        self.service = service
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout

    def _api(self) -> Any:
        raise NotImplementedError

    def _reset(self) -> None:
        """Drop a client that failed (the next call makes a new one)."""

    def _target(self, attrs: dict[str, Any]) -> Target:
        state = attrs.get("State") or {}
        return Target(
            id=attrs.get("Id", ""),
            name=(attrs.get("Name") or self.name).lstrip("/"),
            running=bool(state.get("Running")) and not state.get("Restarting"),
            started_at=state.get("StartedAt") or "",
            tty=bool((attrs.get("Config") or {}).get("Tty")),
            exit_code=state.get("ExitCode"),
            restart_policy=str(((attrs.get("HostConfig") or {}).get("RestartPolicy") or {})
                               .get("Name") or "no"),
        )

    def _call(self, fn: Callable[[], Any]) -> Any:
        """`fn()`, None for a 404, `SourceUnavailable` for an engine problem."""
        from genai_tui.sources.docker_light import engine_errors, is_not_found

        try:
            return fn()
        except Exception as exc:
            if is_not_found(exc):
                return None
            if not isinstance(exc, engine_errors()):
                raise
            self._reset()
            raise SourceUnavailable(_describe(exc)) from exc

    def locate(self) -> Target | None:
        """The container by exact name or one compose service label, resolved to a full
        ID from the engine's listing: never an ID prefix (a hex-only name like `cafe`
        would otherwise show an unrelated container's log)."""
        from genai_tui.sources.docker import settle

        api = self._api()
        listing = self._call(lambda: api.containers(all=True)) or []
        service = self.service or ServiceConfig(self.name, "http://127.0.0.1",
                                                container=self.name)
        _, attrs = settle([service], service, listing,
                          lambda cid: self._call(lambda: api.inspect_container(cid)))
        return self._target(attrs) if attrs else None

    def inspect(self, target_id: str) -> Target | None:
        api = self._api()
        attrs = self._call(lambda: api.inspect_container(target_id))
        return self._target(attrs) if attrs else None

    def _params(self, tail: int, since_ns: int | None, follow: bool) -> dict[str, Any]:
        params: dict[str, Any] = {"stdout": 1, "stderr": 1, "follow": int(follow),
                                  "timestamps": 1,
                                  "tail": str(tail) if tail >= 0 else "all"}
        if since_ns:
            params["since"] = format_since(since_ns)
        return params

    def close(self) -> None:
        self._reset()


class LightLogSource(_EngineLogSource):
    """Logs of the container called `name` over the local socket, with the standard
    library (`docker_light`): the dashboard never imports docker-py to follow a log."""

    def __init__(self, name: str, client: LightClient, idle_timeout: float = 60.0,
                 service: ServiceConfig | None = None) -> None:
        super().__init__(name, idle_timeout, client.timeout, service)
        self._client = client

    def _api(self) -> LightClient:
        return self._client

    def open(self, target: Target, tail: int, since_ns: int | None,
             follow: bool = True) -> RawStream:
        path = f"/containers/{quote(target.id, safe='')}/logs?" \
            + urlencode(self._params(tail, since_ns, follow))
        # the read timeout is an idle watchdog: a quiet or hung stream is reopened from
        # the last timestamp, which costs nothing thanks to dedupe
        opened = self._call(lambda: self._client.stream(path, self.idle_timeout))
        if opened is None:
            raise ContainerGone(target.name)
        return _LightStream(*opened, framed=not target.tty)


class DockerLogSource(_EngineLogSource):
    """Logs of the container called `name` (or the compose service of that name) through
    docker-py: an engine over TCP, TLS or SSH, or a non-default CLI context."""

    def __init__(self, name: str, make_client: Callable[[], docker.DockerClient],
                 idle_timeout: float = 60.0, connect_timeout: float = 10.0,
                 service: ServiceConfig | None = None) -> None:
        super().__init__(name, idle_timeout, connect_timeout, service)
        self._make_client = make_client
        self._client: docker.DockerClient | None = None

    def _api(self) -> docker.APIClient:
        import docker.errors

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

    def open(self, target: Target, tail: int, since_ns: int | None,
             follow: bool = True) -> RawStream:
        api = self._api()
        params = self._params(tail, since_ns, follow)

        def get() -> requests.Response | None:
            # the read timeout is an idle watchdog: a quiet or hung stream (docker-py #3084)
            # is reopened from the last timestamp, which costs nothing thanks to dedupe
            resp = api._get(api._url("/containers/{0}/logs", target.id), params=params,
                            stream=True, timeout=(self.connect_timeout, self.idle_timeout))
            if resp.status_code == 404:
                resp.close()
                return None
            api._raise_for_status(resp)
            return resp

        resp = self._call(get)
        if resp is None:
            raise ContainerGone(target.name)
        return _DockerStream(resp, framed=not target.tty)


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
