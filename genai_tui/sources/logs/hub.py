"""All of a stack's log followers: one per service, created on first use, read merged.

`LogHub` picks the source of each service (a container through `LightLogSource` on a
local socket, else `DockerLogSource`, or a process service's `log_file`), gives every
follower the shared `Redactor` loaded with the secret values of the configured token
locations (read by the tokens package's own reader), and routes Docker `start` events to
the follower concerned. `MergedLogs` is the all-services view, in timestamp order.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from genai_tui.config import Config, LogConfig, ServiceConfig, TokensConfig
from genai_tui.model import LogEvent

# The one Docker client factory, under the name this module has always exported: the hub
# makes a client of its own per stream (each open stream pins a pooled connection).
from genai_tui.sources.docker import make_client as make_docker_client
from genai_tui.sources.docker_light import light_client
from genai_tui.sources.logs.docker_stream import DockerLogSource, LightLogSource, LogSource
from genai_tui.sources.logs.files import FileLogFollower, FileLogSource
from genai_tui.sources.logs.follower import LogFollower
from genai_tui.sources.logs.line import LogLine
from genai_tui.sources.logtext import Redactor

if TYPE_CHECKING:  # docker-py loads with the first stream, not the first frame
    import docker
from genai_tui.sources.tokens.read import secret_values

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

    def listen(self, fn: Callable[[], None]) -> Callable[[], None]:
        """`LogFollower.listen` on every follower; returns one unsubscribe for all."""
        stops = [f.listen(fn) for f in self.followers]

        def stop_all() -> None:
            for stop in stops:
                stop()
        return stop_all

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
        # a local socket is read with the standard library; docker-py only for the rest
        self._light = light_client(config.docker) if make_client is None else None
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
        elif self._light is not None:
            source = LightLogSource(svc.container_name, self._light, service=svc)
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


# ------------------------------------------------------------------ configured secrets


def configured_secrets(tokens: TokensConfig, max_bytes: int = 1 << 20) -> list[str]:
    """The secret values held in the configured token locations, for the Redactor.

    Read by the tokens package's reader (`genai_tui.sources.tokens.read.secret_values`):
    each location's value and the hash it was meant to hold, every duplicate of an .env
    key, and every bcrypt-shaped value in the first `max_bytes` of each file. Any error
    just skips that location."""
    return secret_values(tokens, max_bytes)
