"""Plain snapshots of the stack's worlds, shared by the sources, diagnosis, CLI and UI.

Nothing here does I/O or imports Textual: these are the values that flow one way from
sources to findings to the screen, and that `genai-tui check --json` prints.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"critical": 0, "warning": 1, "info": 2}[self.value]


# ---------------------------------------------------------------- containers

#: container states as Docker reports them, plus "missing" for a configured service
#: whose container does not exist.
MISSING = "missing"


@dataclass(frozen=True)
class PortBinding:
    container_port: int
    proto: str = "tcp"
    host_ip: str = ""
    host_port: int | None = None

    def label(self) -> str:
        if self.host_port is None:
            return f"{self.container_port}/{self.proto}"
        ip = self.host_ip if self.host_ip not in ("", "0.0.0.0", "::") else ""
        host = f"{ip}:{self.host_port}" if ip else str(self.host_port)
        return f"{host}->{self.container_port}/{self.proto}"


@dataclass
class ContainerInfo:
    """One configured service and the container (or process) that runs it."""

    service: str
    container: str
    id: str | None = None
    state: str = MISSING  # running|exited|restarting|paused|created|dead|removing|missing
    health: str | None = None  # healthy|unhealthy|starting|None (no healthcheck)
    failing_streak: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    created_at: datetime | None = None
    restart_count: int = 0
    exit_code: int | None = None
    oom_killed: bool = False
    ports: list[PortBinding] = field(default_factory=list)
    image: str = ""
    pid: int | None = None
    looping: bool = False
    #: what the dashboard is doing to it ("restarting…", "restarted", "restart failed: …")
    action: str | None = None
    runtime: str = "docker"  # docker | process
    cmd_args: list[str] = field(default_factory=list)
    # process runtime only (containers have no per-container stats stream, on purpose)
    cpu_pct: float | None = None
    memory_mb: float | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def missing(self) -> bool:
        return self.state == MISSING

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "container": self.container,
            "id": self.id[:12] if self.id else None,
            "runtime": self.runtime,
            "state": self.state,
            "health": self.health,
            "restart_count": self.restart_count,
            "exit_code": self.exit_code,
            "oom_killed": self.oom_killed,
            "looping": self.looping,
            "started_at": _iso(self.started_at),
            "ports": [p.label() for p in self.ports],
            "image": self.image,
            "pid": self.pid,
            "cpu_pct": self.cpu_pct,
            "memory_mb": None if self.memory_mb is None else round(self.memory_mb, 1),
        }


@dataclass
class DockerStatus:
    reachable: bool = True
    error: str | None = None  # "Docker engine unreachable: <reason>" when not reachable
    server_version: str | None = None


# ---------------------------------------------------------------- probes

OUTCOMES = ("ok", "refused", "timeout", "empty_reply", "not_http", "dns_error", "http_error")
AUTH_VERDICTS = ("enforced", "disabled", "rejected", "no_password", "unknown")


@dataclass
class ProbeResult:
    service: str
    url: str
    outcome: str  # one of OUTCOMES
    auth: str | None = None  # one of AUTH_VERDICTS for comfyui services, else None
    status: int | None = None
    latency_ms: float | None = None
    detail: str = ""  # human explanation ("connection refused", "401 with the token on disk")
    login_loaded: bool | None = None
    password_set: bool | None = None
    queue_remaining: int | None = None
    vram_total_mb: float | None = None
    vram_free_mb: float | None = None
    device_name: str | None = None
    backends: dict[str, str] = field(default_factory=dict)  # orchestrator backend -> state
    checked_at: datetime | None = None
    #: the overall status an orchestrator/http `/health` body reports ("healthy", ...)
    health: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "url": self.url,
            "outcome": self.outcome,
            "auth": self.auth,
            "status": self.status,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "detail": self.detail,
            "queue_remaining": self.queue_remaining,
            "vram_total_mb": self.vram_total_mb,
            "vram_free_mb": self.vram_free_mb,
            "backends": dict(self.backends),
            "health": self.health,
        }


# ---------------------------------------------------------------- tokens

TOKEN_STATES = ("ok", "missing", "unreadable", "invalid", "mismatch", "raw_mismatch")
TOKEN_PROBLEMS = (
    "crlf",
    "bom",
    "quoted",
    "whitespace",
    "duplicate_key",
    "key_in_value",
    "compose_interpolation",
    "world_readable",
)


@dataclass
class TokenLocationStatus:
    name: str
    path: str
    format: str
    key: str | None = None
    state: str = "missing"
    fingerprint: str | None = None
    mtime: datetime | None = None
    problems: list[str] = field(default_factory=list)
    detail: str = ""
    canonical: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "format": self.format,
            "key": self.key,
            "state": self.state,
            "fingerprint": self.fingerprint,
            "mtime": _iso(self.mtime),
            "problems": list(self.problems),
            "detail": self.detail,
            "canonical": self.canonical,
        }


@dataclass
class ServerTokenStatus:
    """Whether a running ComfyUI still uses the hash on disk."""

    service: str
    uses_disk_hash: bool | None  # None = cannot tell
    source: str = ""  # "probe", "log", "probe+log"
    log_fingerprint: str | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TokensReport:
    locations: list[TokenLocationStatus] = field(default_factory=list)
    canonical: str | None = None
    consistent: bool = True
    #: fingerprint -> names of the locations holding it
    fingerprints: dict[str, list[str]] = field(default_factory=dict)
    servers: list[ServerTokenStatus] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "canonical": self.canonical,
            "consistent": self.consistent,
            "locations": [loc.to_json() for loc in self.locations],
            "fingerprints": [
                {"fingerprint": fp, "locations": names} for fp, names in self.fingerprints.items()
            ],
            "servers": [s.to_json() for s in self.servers],
            "error": self.error,
        }


# ---------------------------------------------------------------- GPU and host


@dataclass
class GpuProcess:
    pid: int
    memory_mb: float | None  # None = not available (MIG / WDDM)
    name: str = ""
    kind: str = "compute"  # compute | graphics
    container: str | None = None
    container_id: str | None = None
    service: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "memory_mb": self.memory_mb,
            "name": self.name,
            "kind": self.kind,
            "container": self.container,
            "service": self.service,
        }


@dataclass
class GpuInfo:
    index: int
    name: str
    uuid: str = ""
    memory_used_mb: float | None = None
    memory_total_mb: float | None = None
    utilization_pct: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    processes: list[GpuProcess] = field(default_factory=list)
    source: str = "nvml"  # nvml | system_stats:<service>
    #: this GPU alone failed (e.g. "GPU is lost"); the others keep reporting
    error: str | None = None
    #: GPU processes whose PID is not visible in our /proc (genai-tui in a container
    #: without --pid=host): counted so the panel can say so rather than show nothing
    hidden_processes: int = 0

    @property
    def memory_pct(self) -> float | None:
        if self.memory_used_mb is None or not self.memory_total_mb:
            return None
        return 100.0 * self.memory_used_mb / self.memory_total_mb

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "uuid": self.uuid,
            "memory_used_mb": self.memory_used_mb,
            "memory_total_mb": self.memory_total_mb,
            "utilization_pct": self.utilization_pct,
            "temperature_c": self.temperature_c,
            "power_w": self.power_w,
            "power_limit_w": self.power_limit_w,
            "source": self.source,
            "error": self.error,
            "processes": [p.to_json() for p in self.processes],
        }


@dataclass
class GpuReport:
    gpus: list[GpuInfo] = field(default_factory=list)
    error: str | None = None  # why NVML is not available
    driver_version: str | None = None


@dataclass
class DiskUsage:
    path: str
    used_mb: float | None = None
    total_mb: float | None = None
    error: str | None = None

    @property
    def pct(self) -> float | None:
        if self.used_mb is None or not self.total_mb:
            return None
        return 100.0 * self.used_mb / self.total_mb


@dataclass
class HostInfo:
    cpu_pct: float | None = None
    load: tuple[float, float, float] | None = None
    cpu_count: int | None = None
    memory_used_mb: float | None = None
    memory_total_mb: float | None = None
    swap_used_mb: float | None = None
    swap_total_mb: float | None = None
    disks: list[DiskUsage] = field(default_factory=list)

    @property
    def memory_pct(self) -> float | None:
        if self.memory_used_mb is None or not self.memory_total_mb:
            return None
        return 100.0 * self.memory_used_mb / self.memory_total_mb

    def to_json(self) -> dict[str, Any]:
        return {
            "cpu_pct": self.cpu_pct,
            "load": list(self.load) if self.load else None,
            "memory_used_mb": self.memory_used_mb,
            "memory_total_mb": self.memory_total_mb,
            "swap_used_mb": self.swap_used_mb,
            "swap_total_mb": self.swap_total_mb,
            "disks": [dataclasses.asdict(d) for d in self.disks],
        }


# ---------------------------------------------------------------- logs and findings


@dataclass(frozen=True)
class LogEvent:
    """A log line that means something for diagnosis (token line, OOM, import failure)."""

    service: str
    kind: str  # token | no_password | import_failed | oom | error | job_done
    at: datetime | None = None
    fingerprint: str | None = None  # for kind == "token": fingerprint of the hash in force


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    service: str | None
    message: str
    # what fixes it, for machines and for every face to map onto its own keys or commands:
    # restart, unpause, unify, compose_up, read_logs, check_docker, set_container, chmod
    fix: str | None = None
    since: datetime | None = None  # when this finding started to hold, where known
    paths: tuple[str, ...] = ()  # every file or container it is about, in full

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "service": self.service,
            "message": self.message,
            "fix": self.fix,
            "since": self.since.isoformat() if self.since else None,
            "paths": list(self.paths),
        }


@dataclass
class Snapshot:
    """Everything the dashboard knows at one moment."""

    containers: list[ContainerInfo] = field(default_factory=list)
    docker: DockerStatus = field(default_factory=DockerStatus)
    probes: list[ProbeResult] = field(default_factory=list)
    tokens: TokensReport | None = None
    gpu: GpuReport | None = None
    host: HostInfo | None = None
    log_events: list[LogEvent] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    taken_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "containers": [c.to_json() for c in self.containers],
            "docker": {
                "reachable": self.docker.reachable,
                "error": self.docker.error,
                "server_version": self.docker.server_version,
            },
            "probes": [p.to_json() for p in self.probes],
            "tokens": self.tokens.to_json() if self.tokens else {},
            "gpus": [g.to_json() for g in self.gpu.gpus] if self.gpu else [],
            "host": self.host.to_json() if self.host else {},
            "findings": [f.to_json() for f in self.findings],
            "taken_at": _iso(self.taken_at),
        }
        if self.gpu and self.gpu.error:
            doc["gpu_error"] = self.gpu.error
        return doc


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
