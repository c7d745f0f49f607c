"""The few read-only Engine API calls the container monitor and `check` make (list,
inspect, version, the events stream, a container's log), over the local unix socket with
the standard library only.

docker-py (with requests and urllib3) costs about 0.2 s of CPU to import and several MB:
`check`, run every minute by a monitoring plugin, and the dashboard's first listing do not
pay it, nor do the dashboard's log streams. Anything else — a TCP, TLS or SSH engine, a
non-default CLI context, actions — still goes through docker-py. The engine's answers are
untrusted: bounded in size, decoded defensively, and an error is one clean line.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from genai_tui.config import DockerConfig
from genai_tui.safety import one_line

DEFAULT_SOCKET = "/var/run/docker.sock"
#: the largest answer read (a listing of a few hundred containers is well under this)
MAX_BODY = 32 << 20
#: the longest events-stream line kept (an event is a few KB)
MAX_EVENT = 1 << 20


class EngineError(Exception):
    """The engine answered with an error, or something that is not its API."""

    status_code: int | None = None


class NotFound(EngineError):
    """404: no such container (gone since the listing)."""

    status_code = 404


def socket_path(cfg: DockerConfig, env: dict[str, str] | None = None) -> str | None:
    """The unix socket the engine of `cfg` listens on, or None when docker-py must be
    used: `[docker] host`, else DOCKER_HOST, else the CLI's current context (only the
    default one is a plain socket), else the default socket — the order docker-py uses."""
    env = os.environ if env is None else env
    host = cfg.host or env.get("DOCKER_HOST") or ""
    if not host:
        if env.get("DOCKER_CONTEXT", "default") not in ("", "default"):
            return None
        if _current_context(env) not in (None, "default"):
            return None
        return DEFAULT_SOCKET
    if host.startswith("unix://"):
        return host[len("unix://"):] or None
    return None


def _current_context(env: dict[str, str]) -> str | None:
    """`currentContext` of the CLI's config.json; "?" when it cannot be read (docker-py
    then decides), None when there is no config or it names none."""
    folder = env.get("DOCKER_CONFIG")
    path = Path(folder) / "config.json" if folder else Path.home() / ".docker" / "config.json"
    try:
        if not path.is_file():
            return None
        with path.open("rb") as f:
            data = json.loads(f.read(1 << 20))
    except (OSError, ValueError):
        return "?"
    name = data.get("currentContext") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name else None


def light_client(cfg: DockerConfig) -> LightClient | None:
    """A `LightClient` for the configured engine when it is a local unix socket."""
    path = socket_path(cfg)
    return LightClient(path, cfg.timeout) if path else None


def is_not_found(exc: BaseException) -> bool:
    """A 404 from either client (docker-py's `NotFound` without importing docker-py)."""
    if isinstance(exc, NotFound):
        return True
    errors = sys.modules.get("docker.errors")
    return errors is not None and isinstance(exc, errors.NotFound)


def engine_errors() -> tuple[type[BaseException], ...]:
    """What a failed call to either client raises: an engine problem, not a bug."""
    out: list[type[BaseException]] = [EngineError, OSError, http.client.HTTPException]
    errors = sys.modules.get("docker.errors")
    if errors is not None:
        out.append(errors.DockerException)
    requests_exc = sys.modules.get("requests.exceptions")
    if requests_exc is not None:
        out.append(requests_exc.RequestException)
    urllib3_exc = sys.modules.get("urllib3.exceptions")  # a docker-py stream's read
    if urllib3_exc is not None:
        out.append(urllib3_exc.HTTPError)
    return tuple(out)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class Events:
    """The events stream: iterate for decoded events; `close()` from another thread ends
    the iteration at once (the socket is shut down under the blocked read, and the
    reading thread closes the connection it owns)."""

    def __init__(self, conn: _UnixConnection, resp: http.client.HTTPResponse) -> None:
        self._conn = conn
        self._resp = resp
        self._closed = threading.Event()
        self._reading = False
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            if self._closed.is_set():
                return
            self._reading = True
        try:
            yield from self._events()
        finally:
            self._conn.close()

    def _events(self) -> Iterator[dict[str, Any]]:
        while not self._closed.is_set():
            try:
                line = self._resp.readline(MAX_EVENT)
                while line and not line.endswith(b"\n"):  # longer than any event: skipped
                    line = self._resp.readline(MAX_EVENT)
                    if line.endswith(b"\n"):
                        line = b"\n"
            except (OSError, ValueError, AttributeError, http.client.HTTPException):
                if self._closed.is_set():
                    return  # our own close() under the read
                raise
            if not line:
                return
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                yield event

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            reading = self._reading
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if not reading:
            self._conn.close()


class LogChunks:
    """Iterate for payload bytes; `close()` drops the connection."""

    def __init__(self, conn: _UnixConnection, resp: http.client.HTTPResponse, *,
                 framed: bool) -> None:
        self._conn, self._resp, self._framed = conn, resp, framed

    def __iter__(self) -> Iterator[bytes]:
        read = self._resp.read
        if not self._framed:
            while chunk := read(64 << 10):
                yield chunk
            return
        while len(header := read(8)) == 8:
            size = int.from_bytes(header[4:], "big")
            while size > 0:
                chunk = read(min(size, 64 << 10))
                if not chunk:
                    return
                size -= len(chunk)
                yield chunk

    def close(self) -> None:
        self._conn.close()


class LightClient:
    """The subset of `docker.DockerClient` (and its `.api`) the monitor reads with. One
    short connection per call, so threads never share one."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout

    @property
    def api(self) -> LightClient:
        return self

    def close(self) -> None:
        """Nothing is held between calls."""

    def version(self) -> dict[str, Any]:
        return self._json("/version", dict)

    def containers(self, all: bool = False) -> list[dict[str, Any]]:  # noqa: A002
        listing = self._json("/containers/json?all=1" if all else "/containers/json", list)
        return [c for c in listing if isinstance(c, dict)]

    def inspect_container(self, container: str) -> dict[str, Any]:
        return self._json(f"/containers/{quote(container, safe='')}/json", dict)

    def events(self, decode: bool = True, since: int | None = None,
               filters: dict[str, Any] | None = None) -> Events:
        query: dict[str, str] = {}
        if since is not None:
            query["since"] = str(int(since))
        if filters:
            # the engine wants a list of values per key (docker-py's convert_filters)
            query["filters"] = json.dumps({
                key: [str(v).lower() if isinstance(v, bool) else str(v)
                      for v in (value if isinstance(value, list | tuple) else [value])]
                for key, value in filters.items()})
        # an idle engine sends nothing for hours: no read timeout
        return Events(*self.stream("/events" + ("?" + urlencode(query) if query else ""),
                                   None))

    def logs(self, container: str, stdout: bool = True, stderr: bool = True,
             stream: bool = True, follow: bool = False, since: int | None = None
             ) -> LogChunks:
        """A container's log so far (never followed: `check` reads it once), as chunks of
        the payload: the 8-byte frame headers of a container without a TTY are taken
        off, as docker-py does."""
        if follow or not stream:
            raise ValueError("only a finished, streamed read of the log is supported")
        tty = bool((self.inspect_container(container).get("Config") or {}).get("Tty"))
        query = {"stdout": int(stdout), "stderr": int(stderr), "follow": 0}
        if since is not None:
            query["since"] = int(since)
        conn, resp = self._open(f"/containers/{quote(container, safe='')}/logs?"
                                + urlencode(query))
        return LogChunks(conn, resp, framed=not tty)

    def stream(self, path: str, read_timeout: float | None
               ) -> tuple[_UnixConnection, http.client.HTTPResponse]:
        """GET `path` for a long read (events, a followed log): the connection, whose
        reads then wait up to `read_timeout` (None: forever), and its 200 answer."""
        conn, resp = self._open(path)
        if conn.sock is not None:
            conn.sock.settimeout(read_timeout)
        return conn, resp

    # ------------------------------------------------------------ internals

    def _open(self, path: str) -> tuple[_UnixConnection, http.client.HTTPResponse]:
        """GET `path`: the open connection and its 200 answer, else the engine's error."""
        conn = _UnixConnection(self.path, self.timeout)
        try:
            conn.request("GET", path, headers={"Accept": "application/json"})
            resp = conn.getresponse()
            if resp.status != 200:
                self._fail(resp)
            return conn, resp
        except BaseException:
            conn.close()
            raise

    def _json(self, path: str, kind: type) -> Any:
        conn, resp = self._open(path)
        try:
            body = resp.read(MAX_BODY + 1)
        finally:
            conn.close()
        if len(body) > MAX_BODY:
            raise EngineError(f"the engine's answer is over {MAX_BODY >> 20} MB")
        try:
            data = json.loads(body)
        except ValueError:
            raise EngineError("the engine's answer is not JSON") from None
        if not isinstance(data, kind):
            raise EngineError("the engine's answer is not what the API gives")
        return data

    @staticmethod
    def _fail(resp: http.client.HTTPResponse) -> None:
        """Raise the engine's own words for an error answer, cleaned to one line."""
        message = ""
        with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
            data = json.loads(resp.read(64 << 10))
            if isinstance(data, dict) and isinstance(data.get("message"), str):
                message = data["message"]
        error = NotFound if resp.status == 404 else EngineError
        exc = error(one_line(message, 200) or f"the engine answered HTTP {resp.status}")
        exc.status_code = resp.status
        raise exc
