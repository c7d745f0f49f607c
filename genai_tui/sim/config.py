"""Command line and environment parsing for ``python -m genai_tui.sim``.

Every flag has a ``SIM_*`` environment fallback so a compose file can switch scenario
without changing the command; an explicit flag always wins.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

KINDS = ("comfyui", "orchestrator", "stub")
SCENARIOS = (
    "healthy",
    "slow_start",
    "no_listen",
    "empty_reply",
    "hang",
    "login_missing",
    "no_password",
    "crash",
    "oom",
    "log_flood",
    "not_http",
    "wrong_port",
    "open_api",
)
JOB_MODES = ("normal", "oom", "error", "stuck", "hang")
DEFAULT_PORTS = {"comfyui": 8188, "orchestrator": 8090, "stub": 8000}
DEFAULT_DELAYS = {"slow_start": 10.0, "crash": 5.0}
DEFAULT_NAMES = {"comfyui": "comfyui-qwen", "orchestrator": "GenAI-Orchestrator", "stub": "stub"}
# The deployed orchestrator's built-in service table (it probes localhost inside its own
# container, which is exactly why it reports everything unhealthy in the reference stack).
DEFAULT_BACKENDS = (
    ("comfyui-qwen", "http://localhost:8188/"),
    ("flux-1-dev", "http://localhost:8189/"),
    ("stable-diffusion-35", "http://localhost:8190/"),
    ("comfyui-workflows", "http://localhost:8191/"),
)


@dataclass
class SimConfig:
    """Resolved settings for one simulator process."""

    kind: str = "comfyui"
    port: int = 8188
    host: str = "0.0.0.0"
    password_file: str = os.path.join(".", "login", "PASSWORD")
    scenario: str = "healthy"
    delay: float = 0.0
    lines_per_second: float = 1000.0
    duration: float | None = None
    name: str = "comfyui-qwen"
    backends: list[tuple[str, str]] = field(default_factory=list)
    backends_explicit: bool = False
    jobs_every: float | None = None
    check_interval: float = 5.0
    cors: str | None = None
    verbose: str = "INFO"
    stderr: bool = False
    comfy_root: str = "/workspace/ComfyUI"
    oom_cap_mb: int = 4096
    oom_step_mb: int = 16
    #: comfyui queue: a newer server with /api/jobs; how generated jobs behave; job length
    jobs_api: bool = False
    job_mode: str = "normal"
    job_seconds: float | None = None

    @property
    def listen_port(self) -> int:
        """The port really bound: ``wrong_port`` listens one above the advertised one."""
        return self.port + 1 if self.scenario == "wrong_port" else self.port


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else None


def parse_backends(spec: str) -> list[tuple[str, str]]:
    """Parse ``name=URL,URL,...``; unnamed URLs are named after their host:port."""
    backends: list[tuple[str, str]] = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, url = item.partition("=")
        if not sep or "://" in name:
            name, url = "", item
        if "://" not in url:
            url = "http://" + url
        if not name:
            name = url.split("://", 1)[1].split("/", 1)[0]
        backends.append((name.strip(), url.strip()))
    return backends


def build_parser() -> argparse.ArgumentParser:
    """Argument parser; defaults are ``None`` so env fallbacks can be applied after."""
    p = argparse.ArgumentParser(
        prog="python -m genai_tui.sim",
        description="Stdlib-only simulator of ComfyUI(+ComfyUI-Login), the GenAI "
        "orchestrator and model stubs, with failure scenarios for genai-tui tests.",
    )
    p.add_argument("--kind", choices=KINDS, help="what to simulate (SIM_KIND)")
    p.add_argument("--port", type=int, help="advertised port (SIM_PORT)")
    p.add_argument("--host", help="bind address, default 0.0.0.0 (SIM_HOST)")
    p.add_argument("--password-file", help="ComfyUI-Login PASSWORD file, default ./login/PASSWORD")
    p.add_argument("--scenario", choices=SCENARIOS, help="behaviour (SIM_SCENARIO)")
    p.add_argument("--delay", type=float, help="slow_start/crash delay in seconds (SIM_DELAY)")
    p.add_argument("--lines-per-second", type=float, help="log_flood rate, default 1000")
    p.add_argument("--duration", type=float, help="log_flood duration, default forever")
    p.add_argument("--name", help="service name (orchestrator/stub replies)")
    p.add_argument("--backends", help="orchestrator: name=http://host:port,... to probe")
    p.add_argument("--jobs-every", type=float, help="comfyui: run a fake job every N s")
    p.add_argument("--check-interval", type=float, help="orchestrator probe interval, 5 s")
    p.add_argument(
        "--enable-cors-header",
        nargs="?",
        const="*",
        dest="cors",
        help="like ComfyUI's flag: tokens only count for this Origin",
    )
    p.add_argument("--verbose", help="log level like ComfyUI's --verbose (INFO)")
    p.add_argument("--stderr", action="store_true", default=None, help="log to stderr")
    p.add_argument("--comfy-root", help="ComfyUI root shown in logs, /workspace/ComfyUI")
    p.add_argument("--oom-cap-mb", type=int, help="oom: stop allocating at this many MiB")
    p.add_argument("--oom-step-mb", type=int, help="oom: MiB allocated every 100 ms (16)")
    p.add_argument("--jobs-api", action="store_true", default=None,
                   help="comfyui: serve /api/jobs like ComfyUI after 0.3.64 (SIM_JOBS_API)")
    p.add_argument("--job-mode", choices=JOB_MODES,
                   help="comfyui: how --jobs-every jobs behave (SIM_JOB_MODE)")
    p.add_argument("--job-seconds", type=float, help="comfyui: seconds a job runs (1.2)")
    return p


def parse_args(argv: Sequence[str] | None = None) -> SimConfig:
    """Merge CLI flags, ``SIM_*`` env vars and per-kind defaults into a :class:`SimConfig`."""
    ns = build_parser().parse_args(argv)

    def pick(attr: str, env: str, conv=str, default=None):
        value = getattr(ns, attr)
        if value is not None:
            return value
        raw = _env(env)
        if raw is not None:
            try:
                return conv(raw)
            except ValueError as exc:
                raise SystemExit(f"invalid {env}={raw!r}: {exc}") from exc
        return default

    kind = pick("kind", "SIM_KIND", default="comfyui")
    if kind not in KINDS:
        raise SystemExit(f"invalid SIM_KIND {kind!r}; choose from {', '.join(KINDS)}")
    scenario = pick("scenario", "SIM_SCENARIO", default="healthy")
    if scenario not in SCENARIOS:
        raise SystemExit(f"invalid SIM_SCENARIO {scenario!r}; choose from {', '.join(SCENARIOS)}")
    backends_spec = pick("backends", "SIM_BACKENDS")
    cfg = SimConfig(
        kind=kind,
        port=pick("port", "SIM_PORT", int, DEFAULT_PORTS[kind]),
        host=pick("host", "SIM_HOST", default="0.0.0.0"),
        password_file=pick(
            "password_file", "SIM_PASSWORD_FILE", default=os.path.join(".", "login", "PASSWORD")
        ),
        scenario=scenario,
        delay=pick("delay", "SIM_DELAY", float, DEFAULT_DELAYS.get(scenario, 0.0)),
        lines_per_second=pick("lines_per_second", "SIM_LINES_PER_SECOND", float, 1000.0),
        duration=pick("duration", "SIM_DURATION", float),
        name=pick("name", "SIM_NAME", default=DEFAULT_NAMES[kind]),
        backends=parse_backends(backends_spec) if backends_spec else list(DEFAULT_BACKENDS),
        backends_explicit=backends_spec is not None,
        jobs_every=pick("jobs_every", "SIM_JOBS_EVERY", float),
        check_interval=pick("check_interval", "SIM_CHECK_INTERVAL", float, 5.0),
        cors=pick("cors", "SIM_ENABLE_CORS_HEADER"),
        verbose=str(pick("verbose", "SIM_VERBOSE", default="INFO")).upper(),
        stderr=bool(pick("stderr", "SIM_LOG_STDERR", lambda s: s.lower() in ("1", "true", "yes"))),
        comfy_root=pick("comfy_root", "SIM_COMFY_ROOT", default="/workspace/ComfyUI").rstrip("/"),
        oom_cap_mb=pick("oom_cap_mb", "SIM_OOM_CAP_MB", int, 4096),
        oom_step_mb=pick("oom_step_mb", "SIM_OOM_STEP_MB", int, 16),
        jobs_api=bool(pick("jobs_api", "SIM_JOBS_API",
                           lambda s: s.lower() in ("1", "true", "yes"))),
        job_mode=pick("job_mode", "SIM_JOB_MODE", default="normal"),
        job_seconds=pick("job_seconds", "SIM_JOB_SECONDS", float),
    )
    if cfg.job_mode not in JOB_MODES:
        raise SystemExit(f"invalid SIM_JOB_MODE {cfg.job_mode!r}; choose from "
                         + ", ".join(JOB_MODES))
    if cfg.job_seconds is not None and cfg.job_seconds < 0:
        raise SystemExit("--job-seconds must be >= 0")
    if cfg.lines_per_second <= 0:
        raise SystemExit("--lines-per-second must be > 0")
    if cfg.check_interval <= 0:
        raise SystemExit("--check-interval must be > 0")
    return cfg
