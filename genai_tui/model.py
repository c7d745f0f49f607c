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
    #: Docker's own `State.Error` ("exec: \"/nope\": no such file…"): it never started
    state_error: str = ""
    #: the healthcheck's start period in seconds (None: no healthcheck or none set)
    start_period: float | None = None
    #: when the last healthcheck ended (`State.Health.Log[-1].End`)
    health_checked_at: datetime | None = None
    #: when the events stream saw it unpaused (the live monitor only)
    unpaused_at: datetime | None = None
    network_mode: str = ""
    #: its compose project (`com.docker.compose.project`), if any
    project: str | None = None
    #: other containers carrying its compose service label, as "project/name"; with
    #: state "ambiguous" none was chosen (two or more match and none is preferred)
    lookalikes: tuple[str, ...] = ()
    #: its restart policy (HostConfig.RestartPolicy.Name: no, always, unless-stopped…)
    restart_policy: str = ""
    #: a SIGTERM seen on the events stream and no `die` yet: a stop under way (live only)
    stopping_since: datetime | None = None
    #: its last stop, as the events stream saw it (live only): seconds from the SIGTERM to
    #: the `die`, and whether a SIGKILL had to follow (the grace ran out: SIGTERM ignored)
    stop_took_s: float | None = None
    stop_escalated: bool = False

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
            "state_error": self.state_error or None,
            "project": self.project,
            "lookalikes": list(self.lookalikes),
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

    def value_groups(self) -> dict[str, list[str]]:
        """The different credentials the copies hold, as every face counts them (the
        token_drift finding, the panel, `tokens status`): a raw password that verifies a
        hash is that hash, not a value of its own."""
        raw_ok = {s.name for s in self.locations if s.format == "raw_env" and s.state == "ok"}
        return {fp: names for fp, names in self.fingerprints.items()
                if not set(names) <= raw_ok}

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


# ---------------------------------------------------------------- jobs (ComfyUI queue)

#: states of a ComfyUI job as genai-tui reports them
JOB_STATES = ("running", "pending", "success", "error", "interrupted")
#: how many queue depths ServiceJobs.queue_depth_history keeps (oldest first)
QUEUE_HISTORY_LEN = 60


@dataclass
class JobInfo:
    """One ComfyUI prompt: ids and numbers only, never the graph (it can hold secrets)."""

    prompt_id: str
    number: int | None = None
    state: str = "pending"  # one of JOB_STATES
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    nodes_done: int | None = None
    nodes_total: int | None = None
    step: int | None = None  # sampler step from the tqdm line / progress frame
    steps: int | None = None
    it_per_s: float | None = None
    error_type: str | None = None  # "OOM" for any CUDA/torch out-of-memory, else the exception
    error_message: str | None = None  # redacted, one line

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt_id": self.prompt_id,
            "number": self.number,
            "state": self.state,
            "queued_at": _iso(self.queued_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "nodes_done": self.nodes_done,
            "nodes_total": self.nodes_total,
            "step": self.step,
            "steps": self.steps,
            "it_per_s": self.it_per_s,
            "error_type": self.error_type,
            "error_message": self.error_message,
        }


@dataclass
class ServiceJobs:
    """The queue of one ComfyUI service, as its jobs source last saw it."""

    service: str
    running: JobInfo | None = None
    pending: list[JobInfo] = field(default_factory=list)
    recent: list[JobInfo] = field(default_factory=list)  # finished, newest first
    oldest_wait_s: float | None = None  # how long the oldest pending job has waited
    resident_models: list[str] = field(default_factory=list)  # from the log, load order
    vram_used: int | None = None  # bytes
    vram_total: int | None = None  # bytes
    vram_source: str | None = None  # "nvml" | "system_stats" | "torch"
    last_progress_at: datetime | None = None  # last progress line/frame or queue change
    api: str = "none"  # "jobs" (/api/jobs) | "queue" (/queue + /history) | "none"
    error: str | None = None  # why the detail could not be read (redacted, one line)
    queue_depth_history: list[int] = field(default_factory=list)  # bounded, oldest first
    websocket: bool = False  # whether a websocket is connected (else polling)
    checked_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "running": self.running.to_json() if self.running else None,
            "pending": [j.to_json() for j in self.pending],
            "pending_count": len(self.pending),
            "recent": [j.to_json() for j in self.recent],
            "recent_failures": sum(1 for j in self.recent if j.state == "error"),
            "oldest_wait_s": self.oldest_wait_s,
            "resident_models": list(self.resident_models),
            "vram_used": self.vram_used,
            "vram_total": self.vram_total,
            "vram_source": self.vram_source,
            "last_progress_at": _iso(self.last_progress_at),
            "api": self.api,
            "error": self.error,
            "queue_depth_history": list(self.queue_depth_history),
            "websocket": self.websocket,
            "checked_at": _iso(self.checked_at),
        }


@dataclass
class JobsReport:
    services: list[ServiceJobs] = field(default_factory=list)

    def get(self, service: str) -> ServiceJobs | None:
        return next((s for s in self.services if s.service == service), None)

    def to_json(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.services]


# ---------------------------------------------------------------- logs and findings


@dataclass(frozen=True)
class LogEvent:
    """A log line that means something for diagnosis (token line, OOM, import failure)."""

    service: str
    kind: str  # token | no_password | import_failed | oom | error | job_done, and for the
    # jobs source: job_start | job_progress | job_interrupted | model_load | model_loaded |
    # models_unloaded
    at: datetime | None = None
    fingerprint: str | None = None  # for kind == "token": fingerprint of the hash in force
    #: parsed numbers or a name, never the line: job_progress "7/20 2.31" (step/steps it/s),
    #: model_load "SDXL", models_unloaded "2", error/oom the exception's class
    detail: str | None = None
    #: the line itself, redacted and on one line (empty where the source keeps none)
    text: str = ""


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    service: str | None
    message: str
    # what fixes it, for machines and for every face to map onto its own keys or commands:
    # restart, unpause, unify, compose_up, read_logs, check_docker, set_container, chmod,
    # publish_port (recreate the container with the URL's port published)
    fix: str | None = None
    since: datetime | None = None  # when this finding started to hold, where known
    paths: tuple[str, ...] = ()  # every file or container it is about, in full
    #: evidence: the last error line of the service's log (redacted, one line)
    log_line: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "service": self.service,
            "message": self.message,
            "fix": self.fix,
            "since": self.since.isoformat() if self.since else None,
            "paths": list(self.paths),
            "log_line": self.log_line or None,
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
    jobs: JobsReport | None = None

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
        if self.jobs is not None:
            doc["jobs"] = self.jobs.to_json()
        if self.gpu and self.gpu.error:
            doc["gpu_error"] = self.gpu.error
        return doc


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
