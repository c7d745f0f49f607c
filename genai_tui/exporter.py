"""Metrics out: the engine's snapshot as Prometheus / OpenMetrics families.

A face like the dashboard: it reads the latest `Snapshot` (from a live `Stack`, or one
`collect_once` for `check`) and never runs a Docker, NVML or probe call of its own. A
scrape only reads the snapshot the engine already holds.

- `SnapshotCollector`: a `prometheus_client` collector over a snapshot source (a callable
  returning the latest snapshot, or None while the engine has no first picture yet);
- `Exporter`: that collector in a private `CollectorRegistry`, rendered in the format a
  scraper's Accept header asks for (`choose_encoder`, as prometheus_client does);
- `render` / `write_textfile`: the one-shot forms of `check`;
- `serve` / `run`: `genai-tui exporter`, a small `ThreadingHTTPServer` over a live Stack
  serving `/metrics` and `/healthz`.

The family names and labels in `FAMILIES` are a public interface (dashboards and alert
rules depend on them). Values are numbers; label values come from the config, Docker and
NVML and are cleaned by `safety.one_line`, with any bcrypt hash or fingerprint removed:
no secret, nor the fingerprint of one, is ever exported.
"""

from __future__ import annotations

import contextlib
import gzip
import ipaddress
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import Collector, CollectorRegistry

from genai_tui import __version__
from genai_tui.model import (
    ContainerInfo,
    GpuReport,
    HostInfo,
    JobsReport,
    Severity,
    Snapshot,
    TokensReport,
)
from genai_tui.safety import one_line
from genai_tui.secret import BCRYPT_ANYWHERE

if TYPE_CHECKING:
    from genai_tui.config import Config
    from genai_tui.engine.live import Change, Stack

#: the latest snapshot, or None while there is none worth exporting yet
SnapshotSource = Callable[[], Snapshot | None]

PREFIX = "genai_tui_"
MIB = 1024 * 1024
DEFAULT_LISTEN = "127.0.0.1:9188"
TEXTFILE_NAME = "genai-tui.prom"
#: the longest label value exported (names and paths; longer ones end with "…")
LABEL_MAX = 128
#: units OpenMetrics is told about (the family name ends with one of them)
UNITS = ("seconds", "bytes", "ratio", "celsius", "watts")

#: name (without the prefix) -> (help, label names): the public interface
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "docker_up": ("1 when the Docker engine answers, else 0 (absent for a stack of "
                  "process services only)", ()),
    "container_up": ("1 when the service's container (or process) is running, else 0",
                     ("service", "container")),
    "container_state": ("1 for the container's current state (running, exited, "
                        "restarting, paused, created, dead, missing, unknown...)",
                        ("service", "state")),
    "container_healthy": ("1 healthy, 0 unhealthy or starting (absent without a "
                          "healthcheck)", ("service",)),
    "container_restarts": ("restart count Docker reports for the container", ("service",)),
    "container_uptime_seconds": ("seconds since the running container started",
                                 ("service",)),
    "container_exit_code": ("last exit code (absent when there is none)", ("service",)),
    "container_oom_killed": ("1 when the container's last exit was an OOM kill",
                             ("service",)),
    "container_restart_loop": ("1 when the container restarts in a loop", ("service",)),
    "probe_up": ("1 when the service's HTTP probe outcome is ok", ("service",)),
    "probe_outcome": ("1 for the probe's outcome (ok, refused, timeout, empty_reply, "
                      "not_http, dns_error, http_error)", ("service", "outcome")),
    "probe_auth": ("1 for a ComfyUI service's login verdict (enforced, disabled, "
                   "rejected, no_password, unknown)", ("service", "verdict")),
    "probe_latency_seconds": ("latency of the last probe", ("service",)),
    "comfyui_queue_remaining": ("prompts left in a ComfyUI queue", ("service",)),
    "jobs_running": ("1 when a ComfyUI job is running on the service, else 0", ("service",)),
    "jobs_pending": ("jobs waiting in the service's queue", ("service",)),
    "jobs_oldest_wait_seconds": ("how long the oldest pending job has waited (absent with "
                                 "none pending)", ("service",)),
    "jobs_seconds_since_progress": ("seconds since the running job last progressed (a "
                                    "step, a node, a queue change; absent when idle)",
                                    ("service",)),
    "jobs_recent_failures": ("recently finished jobs that failed, by error type (OOM for "
                             "any out-of-memory)", ("service", "error_type")),
    "jobs_vram_used_bytes": ("VRAM the service holds, as its jobs source sees it",
                             ("service", "source")),
    "tokens_consistent": ("1 when every copy of the credential agrees", ()),
    "token_location_ok": ("1 when the copy holds the canonical value with no problem "
                          "(format, permissions)", ("location", "format")),
    "token_locations_with_problems": ("copies of the credential that are not ok", ()),
    "server_uses_disk_hash": ("1 when the running ComfyUI uses the hash on disk, 0 when "
                              "it does not (absent when unknown)", ("service",)),
    "gpu_memory_used_bytes": ("GPU memory in use", ("gpu", "name")),
    "gpu_memory_total_bytes": ("GPU memory in all", ("gpu", "name")),
    "gpu_utilization_ratio": ("GPU utilisation, 0-1", ("gpu", "name")),
    "gpu_temperature_celsius": ("GPU temperature", ("gpu", "name")),
    "gpu_power_watts": ("GPU power draw", ("gpu", "name")),
    "gpu_process_memory_bytes": ("GPU memory of the processes of one service (\"host\": "
                                 "not in a stack container)", ("gpu", "service")),
    "host_cpu_ratio": ("host CPU use, 0-1", ()),
    "host_memory_used_bytes": ("host memory in use", ()),
    "host_memory_total_bytes": ("host memory in all", ()),
    "host_swap_used_bytes": ("host swap in use", ()),
    "host_swap_total_bytes": ("host swap in all", ()),
    "host_disk_used_bytes": ("space used on a watched disk", ("path",)),
    "host_disk_total_bytes": ("size of a watched disk", ("path",)),
    "findings": ("active findings by code and severity", ("code", "severity")),
    "findings_active": ("active findings of each severity (always present)", ("severity",)),
    "snapshot_age_seconds": ("seconds since the engine's snapshot last changed", ()),
}
#: the info family: genai_tui_build_info{version} 1
BUILD_INFO = "build"

_FINGERPRINT = re.compile(r"fp:[0-9a-f]{6,}", re.I)


def label(value: object) -> str:
    """A label value: one clean line, at most `LABEL_MAX` characters, with any bcrypt
    hash or fingerprint replaced (a config or container name must not carry one out)."""
    text = one_line(value, LABEL_MAX * 4)
    text = _FINGERPRINT.sub("fp:[hidden]", BCRYPT_ANYWHERE.sub("[hash]", text))
    return one_line(text, LABEL_MAX)


class _Scrape:
    """The samples of one scrape, by family; a label set repeated keeps its first value."""

    def __init__(self) -> None:
        self._samples: dict[str, dict[tuple[str, ...], float]] = {}

    def add(self, name: str, value: float | bool | None, *labels: object) -> None:
        if value is None:
            return
        self._samples.setdefault(name, {}).setdefault(self._key(name, labels), float(value))

    def count(self, name: str, *labels: object) -> None:
        """One more of `labels` (a family that counts things, e.g. findings)."""
        samples = self._samples.setdefault(name, {})
        key = self._key(name, labels)
        samples[key] = samples.get(key, 0.0) + 1

    @staticmethod
    def _key(name: str, labels: Sequence[object]) -> tuple[str, ...]:
        names = FAMILIES[name][1]
        if len(labels) != len(names):
            raise ValueError(f"{name} takes labels {names}")
        return tuple(label(v) for v in labels)

    def families(self) -> Iterator[Metric]:
        for name, (doc, labels) in FAMILIES.items():
            samples = self._samples.get(name)
            if not samples:
                continue
            unit = next((u for u in UNITS if name.endswith("_" + u)), "")
            family = GaugeMetricFamily(PREFIX + name, doc, labels=list(labels), unit=unit)
            for key, value in samples.items():
                family.add_metric(list(key), value)
            yield family


def _age_from_taken_at(snap: Snapshot) -> float | None:
    if snap.taken_at is None:
        return None
    return max(0.0, (datetime.now(UTC) - snap.taken_at).total_seconds())


class SnapshotCollector(Collector):
    """Every family from the source's latest snapshot. `collect` reads one snapshot per
    scrape and does no I/O; `age(snapshot)` gives `snapshot_age_seconds` (default: since
    `taken_at`)."""

    def __init__(self, source: SnapshotSource, *,
                 age: Callable[[Snapshot], float | None] | None = None) -> None:
        self._source = source
        self._age = age or _age_from_taken_at

    def describe(self) -> Iterable[Metric]:
        return []  # registering must not read a snapshot

    def collect(self) -> Iterable[Metric]:
        yield InfoMetricFamily(PREFIX + BUILD_INFO, "genai-tui version",
                               value={"version": label(__version__)})
        snap = self._source()
        if snap is None:
            return
        scrape = _Scrape()
        _fill(scrape, snap, age=self._age(snap))
        yield from scrape.families()


def _fill(scrape: _Scrape, snap: Snapshot, *, age: float | None) -> None:
    """Every family's samples from one snapshot (each part read once, so a part the
    engine replaces meanwhile is seen whole, old or new)."""
    docker, containers, probes = snap.docker, list(snap.containers), list(snap.probes)
    tokens, gpu, host, findings = snap.tokens, snap.gpu, snap.host, list(snap.findings)
    if not docker.reachable or any(c.runtime == "docker" for c in containers):
        scrape.add("docker_up", docker.reachable)  # a process-only stack has no engine
    now = datetime.now(UTC)
    for c in containers:
        _container(scrape, c, now)
    for p in probes:
        scrape.add("probe_up", p.outcome == "ok", p.service)
        scrape.add("probe_outcome", 1, p.service, p.outcome)
        if p.auth is not None:
            scrape.add("probe_auth", 1, p.service, p.auth)
        if p.latency_ms is not None:
            scrape.add("probe_latency_seconds", p.latency_ms / 1000.0, p.service)
        scrape.add("comfyui_queue_remaining", p.queue_remaining, p.service)
    if tokens is not None:
        _tokens(scrape, tokens)
    if gpu is not None:
        _gpus(scrape, gpu)
    if host is not None:
        _host(scrape, host)
    if snap.jobs is not None:
        _jobs(scrape, snap.jobs, now)
    for f in findings:
        scrape.count("findings", f.code, f.severity.value)
    for sev in Severity:
        scrape.add("findings_active", sum(f.severity is sev for f in findings), sev.value)
    scrape.add("snapshot_age_seconds", age)


def _container(scrape: _Scrape, c: ContainerInfo, now: datetime) -> None:
    scrape.add("container_up", c.running, c.service, c.container)
    scrape.add("container_state", 1, c.service, c.state)
    if c.health is not None:
        scrape.add("container_healthy", c.health == "healthy", c.service)
    scrape.add("container_restarts", c.restart_count, c.service)
    if c.running and c.started_at is not None:
        started = c.started_at if c.started_at.tzinfo else c.started_at.replace(tzinfo=UTC)
        scrape.add("container_uptime_seconds",
                   max(0.0, (now - started).total_seconds()), c.service)
    scrape.add("container_exit_code", c.exit_code, c.service)
    scrape.add("container_oom_killed", c.oom_killed, c.service)
    scrape.add("container_restart_loop", c.looping, c.service)


def _jobs(scrape: _Scrape, report: JobsReport, now: datetime) -> None:
    for sj in report.services:
        if sj.api == "none" and sj.error:
            continue  # nothing read: no figure is better than a zero that reads as idle
        scrape.add("jobs_running", sj.running is not None, sj.service)
        scrape.add("jobs_pending", len(sj.pending), sj.service)
        scrape.add("jobs_oldest_wait_seconds", sj.oldest_wait_s, sj.service)
        if sj.running is not None and sj.last_progress_at is not None:
            at = sj.last_progress_at
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            scrape.add("jobs_seconds_since_progress", max(0.0, (now - at).total_seconds()),
                       sj.service)
        for job in sj.recent:
            if job.state == "error":
                scrape.count("jobs_recent_failures", sj.service, job.error_type or "error")
        if sj.vram_used is not None:
            scrape.add("jobs_vram_used_bytes", sj.vram_used, sj.service,
                       sj.vram_source or "unknown")


def _tokens(scrape: _Scrape, report: TokensReport) -> None:
    scrape.add("tokens_consistent", report.consistent)
    bad = 0
    for loc in report.locations:
        ok = loc.state == "ok" and not loc.problems
        bad += not ok
        scrape.add("token_location_ok", ok, loc.name, loc.format)
    scrape.add("token_locations_with_problems", bad)
    for server in report.servers:
        scrape.add("server_uses_disk_hash", server.uses_disk_hash, server.service)


def _mib(value: float | None) -> float | None:
    return None if value is None else value * MIB


def _ratio(pct: float | None) -> float | None:
    return None if pct is None else pct / 100.0


def _gpus(scrape: _Scrape, report: GpuReport) -> None:
    for g in report.gpus:
        gpu, name = str(g.index), g.name
        scrape.add("gpu_memory_used_bytes", _mib(g.memory_used_mb), gpu, name)
        scrape.add("gpu_memory_total_bytes", _mib(g.memory_total_mb), gpu, name)
        scrape.add("gpu_utilization_ratio", _ratio(g.utilization_pct), gpu, name)
        scrape.add("gpu_temperature_celsius", g.temperature_c, gpu, name)
        scrape.add("gpu_power_watts", g.power_w, gpu, name)
        owners: dict[str, float] = {}
        for p in g.processes:
            if p.memory_mb is not None:
                owner = p.service or p.container or "host"
                owners[owner] = owners.get(owner, 0.0) + p.memory_mb
        for owner, mb in owners.items():
            scrape.add("gpu_process_memory_bytes", mb * MIB, gpu, owner)


def _host(scrape: _Scrape, host: HostInfo) -> None:
    scrape.add("host_cpu_ratio", _ratio(host.cpu_pct))
    scrape.add("host_memory_used_bytes", _mib(host.memory_used_mb))
    scrape.add("host_memory_total_bytes", _mib(host.memory_total_mb))
    scrape.add("host_swap_used_bytes", _mib(host.swap_used_mb))
    scrape.add("host_swap_total_bytes", _mib(host.swap_total_mb))
    for d in host.disks:
        scrape.add("host_disk_used_bytes", _mib(d.used_mb), d.path)
        scrape.add("host_disk_total_bytes", _mib(d.total_mb), d.path)


# ------------------------------------------------------------------ rendering


class Exporter:
    """A private registry holding one `SnapshotCollector`; `health()` says whether the
    engine behind it is alive and fresh (for `/healthz`)."""

    def __init__(self, source: SnapshotSource, *,
                 age: Callable[[Snapshot], float | None] | None = None,
                 health: Callable[[], tuple[bool, str]] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SnapshotCollector(source, age=age))
        self.health = health or (lambda: (True, "ok"))

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """(body, content type) in the format `accept` asks for: OpenMetrics when it
        names application/openmetrics-text, else the Prometheus text format."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


OPENMETRICS_ACCEPT = "application/openmetrics-text; version=1.0.0"


def render(snap: Snapshot, *, openmetrics: bool = False) -> bytes:
    """One snapshot in the text format (or OpenMetrics, ending with `# EOF`)."""
    body, _ = Exporter(lambda: snap).render(OPENMETRICS_ACCEPT if openmetrics else None)
    return body


def write_textfile(directory: Path, snap: Snapshot) -> Path:
    """`genai-tui.prom` for node_exporter's textfile collector, replaced atomically: a
    temporary file in `directory` (not named *.prom), fsync, rename, fsync the folder.
    Temporary files a killed run left there are removed first."""
    from genai_tui.sources.tokens import fsutil

    folder = directory.resolve()
    fsutil.clean_temps(folder, [TEXTFILE_NAME])
    target = folder / TEXTFILE_NAME
    fsutil.atomic_write(target, render(snap), mode=0o644)
    return target


# ------------------------------------------------------------------ the live exporter


class StackSource:
    """The snapshot of a live `Stack`, read by scrapes. It records when the engine last
    changed something (a subscriber that only notes the time), is None until the stack
    has settled (or `settle_timeout` passed with news), and is stale when nothing changed
    for `stale_after` seconds."""

    def __init__(self, stack: Stack, *, stale_after: float | None = None,
                 settle_timeout: float = 30.0) -> None:
        cfg = stack.config
        self.stack = stack
        self.stale_after = stale_after if stale_after is not None else max(
            30.0, 3 * max(cfg.probes.interval, cfg.gpu.interval, cfg.host.interval))
        self.settle_timeout = settle_timeout
        self.started = time.monotonic()
        self.last_change: float | None = None
        self.changes = 0
        self._ready = False
        stack.subscribe(self._heard)

    def _heard(self, _change: Change) -> None:
        self.last_change = time.monotonic()
        self.changes += 1

    @property
    def ready(self) -> bool:
        if not self._ready:
            waited = time.monotonic() - self.started
            self._ready = self.stack.settled() or (
                waited > self.settle_timeout and self.changes > 0)
        return self._ready

    def __call__(self) -> Snapshot | None:
        return self.stack.snapshot if self.ready else None

    def age(self, snap: Snapshot) -> float | None:
        """Seconds since the last change the engine published (or since `taken_at`)."""
        ages = [a for a in (_age_from_taken_at(snap),) if a is not None]
        if self.last_change is not None:
            ages.append(time.monotonic() - self.last_change)
        return min(ages) if ages else None

    def health(self) -> tuple[bool, str]:
        if not self.stack.alive:
            return False, "engine stopped"
        if not self.ready:
            return False, "starting: no complete snapshot yet"
        age = self.age(self.stack.snapshot)
        if age is None or age > self.stale_after:
            shown = "never" if age is None else f"{age:.0f} s ago"
            return False, f"stale: the snapshot last changed {shown}"
        return True, "ok"


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer
    server_version = f"genai-tui/{__version__}"
    protocol_version = "HTTP/1.1"
    timeout = 10  # a client that sends nothing does not hold a thread for ever
    _head = False

    def setup(self) -> None:
        super().setup()
        # headers and body are two writes: without this, Nagle's algorithm and the
        # client's delayed ACK hold the body ~40 ms on a keep-alive connection
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self._respond(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._respond(head=True)

    def _respond(self, *, head: bool) -> None:
        self._head = head
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            try:
                body, ctype = self.server.exporter.render(self.headers.get("Accept"))
            except Exception as exc:  # a bug in one family must not kill the server
                self._send(500, f"render failed: {type(exc).__name__}\n".encode())
                return
            gzipped = gzip_accepted(self.headers.get("Accept-Encoding") or "")
            self._send(200, gzip.compress(body) if gzipped else body, ctype,
                       {"Content-Encoding": "gzip"} if gzipped else None)
        elif path == "/healthz":
            ok, why = self.server.exporter.health()
            self._send(200 if ok else 503, (why + "\n").encode())
        else:
            self._send(404, b"not found: try /metrics or /healthz\n")

    def _send(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8",
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not self._head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """No access log (a scrape every 15 s would fill the journal)."""


class MetricsServer(ThreadingHTTPServer):
    """`/metrics` and `/healthz` of one `Exporter`; a thread per request."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], exporter: Exporter,
                 family: socket.AddressFamily = socket.AF_INET) -> None:
        self.address_family = family
        self.exporter = exporter
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else str(host)
        return f"http://{shown}:{port}"


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` -> (host, port). Raises ValueError."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT (e.g. {DEFAULT_LISTEN}), got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bad port in {text!r}")
    return host, int(port)


def resolve(host: str, port: int) -> tuple[socket.AddressFamily, str]:
    """(address family, numeric address) to bind. Raises OSError."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    return family, str(sockaddr[0])


def is_loopback(address: str) -> bool:
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(address).is_loopback
    return False


def serve(exporter: Exporter, host: str, port: int) -> MetricsServer:
    """Bind (without serving yet); the caller runs `serve_forever` where it wants."""
    family, address = resolve(host, port)
    return MetricsServer((address, port), exporter, family)


def run(config: Config, listen: str = DEFAULT_LISTEN, *, stale_after: float | None = None,
        stop: threading.Event | None = None, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    """`genai-tui exporter`: one live Stack and the HTTP server over its snapshot, until
    SIGTERM/SIGINT (or `stop`). 0 on a clean exit, 2 for a bad address, 1 when the
    address cannot be bound."""
    from genai_tui.engine.live import Stack

    out = out or sys.stdout
    err = err or sys.stderr
    try:
        host, port = parse_listen(listen)
        family, address = resolve(host, port)
    except (ValueError, OSError) as exc:
        print(f"genai-tui exporter: bad --listen: {one_line(exc)}", file=err)
        return 2
    stack = Stack(config)
    source = StackSource(stack, stale_after=stale_after)
    exporter = Exporter(source, age=source.age, health=source.health)
    try:
        server = MetricsServer((address, port), exporter, family)
    except OSError as exc:
        print(f"genai-tui exporter: cannot listen on {listen}: "
              f"{one_line(exc.strerror or exc)}", file=err)
        return 1
    if not is_loopback(address):
        print(f"genai-tui exporter: warning: listening on {server.url}, reachable from "
              "other machines (the metrics hold no secret but describe the stack); "
              "restrict it with a firewall", file=err, flush=True)
    stop = stop or threading.Event()
    restore = _stop_on_signals(stop)
    stack.start()
    from genai_tui.engine.history import Recorder

    # history and [[alerts]] for headless installs too (a dashboard opened beside it then
    # reads this store, and the hooks run here only)
    recorder = Recorder.attach(stack, face="exporter",
                               notify=lambda m: print(f"genai-tui exporter: {one_line(m)}",
                                                      file=err, flush=True))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="genai-tui-exporter", daemon=True)
    thread.start()
    print(f"genai-tui exporter: serving {server.url}/metrics "
          f"(config: {one_line(config.source)})", file=out, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
        recorder.close()
        stack.close()
        restore()
    return 0


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM and SIGINT set `stop` (a second one ends the process at once); returns
    what restores the previous handlers. Off the main thread: nothing to install."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    import os

    def handler(signum: int, _frame: object) -> None:
        if stop.is_set():
            os._exit(128 + signum)
        stop.set()

    saved = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for s, previous in saved.items():
            signal.signal(s, previous)

    return restore

