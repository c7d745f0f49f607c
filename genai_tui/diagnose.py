"""From one snapshot to findings that name the cause.

Pure functions, no I/O. One root cause gives one finding: a stopped container is
`container_exited`, not also `port_unreachable`; a server that kept an old hash is
`token_stale`, not also `token_rejected`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from genai_tui.config import Config, ServiceConfig
from genai_tui.model import (
    ContainerInfo,
    Finding,
    ProbeResult,
    Severity,
    Snapshot,
    TokensReport,
)

C, W, I = Severity.CRITICAL, Severity.WARNING, Severity.INFO  # noqa: E741
UNREACHABLE = ("refused", "timeout", "empty_reply")
BACKEND_OK = ("healthy", "ok", "up", "running", "ready")


def diagnose(snap: Snapshot, config: Config, now: datetime | None = None) -> list[Finding]:
    """All findings for the snapshot, most severe first."""
    now = now or datetime.now(UTC)
    findings: list[Finding] = []
    containers = {c.service: c for c in snap.containers}
    probes = {p.service: p for p in snap.probes}
    docker_services = [s for s in config.services if s.runtime == "docker"]

    if docker_services and not snap.docker.reachable:
        findings.append(Finding(
            "docker_unreachable", C, None,
            (snap.docker.error or "Docker engine unreachable")
            + " — check `systemctl status docker` and DOCKER_HOST", "check_docker"))

    for svc in config.services:
        info = containers.get(svc.name)
        probe = probes.get(svc.name)
        down = _container_findings(svc, info, probe, snap, config, now, findings)
        if not down:
            _probe_findings(svc, info, probe, snap, findings)

    _token_findings(snap.tokens, findings)

    if snap.gpu is not None:
        if snap.gpu.error and not snap.gpu.gpus:
            findings.append(Finding("gpu_unavailable", I, None,
                                    f"GPU stats unavailable: {snap.gpu.error}"))
        for g in snap.gpu.gpus:
            pct = g.memory_pct
            if pct is not None and pct >= config.gpu.memory_warn_pct:
                owners = sorted({p.service or p.container or "host" for p in g.processes})
                who = f" (held by {', '.join(owners)})" if owners else ""
                findings.append(Finding(
                    "gpu_memory_high", W, None,
                    f"GPU {g.index} {g.name} memory at {pct:.0f}%{who}: the next job may OOM"))
    if snap.host is not None:
        pct = snap.host.memory_pct
        if pct is not None and pct >= config.host.memory_warn_pct:
            findings.append(Finding(
                "host_memory_high", W, None,
                f"host memory at {pct:.0f}%: the kernel OOM killer (exit 137) is next"))

    findings.sort(key=lambda f: (f.severity.rank, f.service or ""))
    return findings


def _container_findings(svc: ServiceConfig, info: ContainerInfo | None,
                        probe: ProbeResult | None, snap: Snapshot, config: Config,
                        now: datetime, out: list[Finding]) -> bool:
    """Findings about the container itself; True when it is down (skip probe findings)."""
    if svc.runtime == "docker" and not snap.docker.reachable:
        return True  # docker_unreachable says it all
    if info is None:
        return False
    what = "process" if info.runtime == "process" else "container"
    if info.missing:
        out.append(Finding("container_missing", C, svc.name,
                           f"{svc.name}: no {what} {info.container!r}" + (
                               "" if info.runtime == "process" else
                               " exists (removed, renamed or never created)"),
                           "compose_up" if info.runtime == "docker" else None))
        return True
    if info.looping or is_looping(info, config, now):
        out.append(Finding("restart_loop", C, svc.name,
                           f"{svc.name}: restart loop ({info.restart_count} restarts"
                           + (f", last exit {info.exit_code}" if info.exit_code else "")
                           + "): it crashes right after start", "read_logs"))
        return True
    if info.oom_killed:
        out.append(Finding("oom_killed", C, svc.name,
                           f"{svc.name}: killed by the kernel OOM killer (exit 137, OOMKilled):"
                           " raise its memory limit or free host RAM", "restart"))
        return not info.running
    if info.state in ("exited", "dead", "created"):
        code = info.exit_code
        why = f"exited with code {code}" if code is not None else f"is {info.state}"
        if code == 137:
            why += " (SIGKILL, not an OOM kill)"
        out.append(Finding("container_exited", C, svc.name, f"{svc.name}: {what} {why}", "restart"))
        return True
    if info.state in ("restarting", "paused", "removing"):
        out.append(Finding("container_exited", C, svc.name,
                           f"{svc.name}: {what} is {info.state}", "restart"))
        return True
    if info.health == "starting" and info.started_at is not None:
        age = (now - info.started_at).total_seconds()
        if age > config.docker.health_starting_max:
            silent = probe is not None and probe.outcome in UNREACHABLE
            out.append(Finding("health_starting_long", W, svc.name,
                               f"{svc.name}: health still 'starting' after {_age(age)}"
                               + (f" and {probe.url} does not answer ({probe.outcome}): the "
                                  "service never came up" if silent and probe else
                                  ": start_period too short, or the service never comes up"),
                               "read_logs"))
            return silent  # the unanswered port is this same cause, not a second finding
    return False


def _age(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def is_looping(info: ContainerInfo, config: Config, now: datetime) -> bool:
    """A restart loop seen in one snapshot (`check` has no event history to count starts):
    Docker is waiting to restart it, or its restart policy restarted it
    `restart_loop_count` times or more and it last exited and started within the window."""
    if info.runtime != "docker":
        return False
    if info.state == "restarting":
        return True
    window = config.docker.restart_loop_window
    return (info.restart_count >= config.docker.restart_loop_count
            and info.started_at is not None and info.finished_at is not None
            and (now - info.started_at).total_seconds() <= window
            and (now - info.finished_at).total_seconds() <= window)


def _probe_findings(svc: ServiceConfig, info: ContainerInfo | None, probe: ProbeResult | None,
                    snap: Snapshot, out: list[Finding]) -> None:
    running = info is not None and info.running
    if probe is None:
        if info is not None and info.health == "unhealthy":
            out.append(Finding("unhealthy", W, svc.name,
                               f"{svc.name}: container unhealthy ({info.failing_streak} failed"
                               " checks)", "read_logs"))
        return
    if probe.outcome in UNREACHABLE and (running or info is None):
        starting = info is not None and info.health == "starting"
        sev = W if starting else C
        cause = {
            "refused": "published but nothing listens",
            "timeout": "accepts nothing or never answers (hung?)",
            "empty_reply": "the port is published but the process inside does not answer"
                           " (not listening yet, or on another port)",
        }[probe.outcome]
        out.append(Finding("port_unreachable", sev, svc.name,
                           f"{svc.name}: {probe.url} {cause}"
                           + (" — still starting" if starting else ""), "restart"))
        return
    if probe.outcome in UNREACHABLE:
        return
    if probe.outcome in ("not_http", "dns_error", "http_error"):
        health = " (container unhealthy)" if info is not None and info.health == "unhealthy" \
            else ""
        out.append(Finding("unhealthy", C, svc.name,
                           f"{svc.name}: {probe.url} answers but not as expected "
                           f"({probe.outcome}{f' {probe.status}' if probe.status else ''})"
                           + (f": {probe.detail}" if probe.detail else "") + health,
                           "read_logs"))
        return
    if info is not None and info.health == "unhealthy":
        if probe.auth == "enforced":
            out.append(Finding(
                "healthcheck_hits_auth", W, svc.name,
                f"{svc.name}: unhealthy, yet it answers correctly with the token: its "
                "healthcheck probes a protected path (use /login or accept 401)"))
        elif probe.auth is None:
            out.append(Finding("unhealthy", W, svc.name,
                               f"{svc.name}: container unhealthy, yet {probe.url} answers: "
                               "its healthcheck command tests something else",
                               "read_logs"))
        else:
            out.append(Finding("unhealthy", W, svc.name,
                               f"{svc.name}: container unhealthy ({info.failing_streak} failed"
                               f" checks), auth: {probe.auth}", "read_logs"))
    if svc.kind == "comfyui":
        _auth_findings(svc, info, probe, snap, out)
    for name, state in sorted(probe.backends.items()):
        if str(state).lower() not in BACKEND_OK:
            out.append(Finding("orchestrator_backend_down", W, svc.name,
                               f"{svc.name}: the orchestrator reports backend {name} as "
                               f"{state}"))


def _auth_findings(svc: ServiceConfig, info: ContainerInfo | None, probe: ProbeResult,
                   snap: Snapshot, out: list[Finding]) -> None:
    events = [e for e in snap.log_events if e.service == svc.name]
    if svc.auth and (probe.login_loaded is False
                     or any(e.kind == "import_failed" for e in events)
                     and probe.auth == "disabled"):
        out.append(Finding("login_not_loaded", C, svc.name,
                           f"{svc.name}: ComfyUI-Login is not loaded (import failed or node "
                           "disabled): the API is open to anyone", "read_logs"))
        return
    if probe.auth == "no_password" or (
            probe.auth != "enforced" and any(e.kind == "no_password" for e in events)):
        out.append(Finding("password_missing", C, svc.name,
                           f"{svc.name}: ComfyUI-Login has no PASSWORD (first-login state): "
                           "the first visitor picks the credentials", "unify"))
        return
    if svc.auth and probe.auth == "disabled":
        out.append(Finding("auth_disabled", C, svc.name,
                           f"{svc.name}: answers without any token: authentication is off"))
        return
    if probe.auth == "rejected":
        if _stale(svc, info, snap):
            out.append(Finding("token_stale", C, svc.name,
                               f"{svc.name}: the running server still uses an older hash than "
                               "the one on disk: restart it", "restart"))
        else:
            out.append(Finding("token_rejected", C, svc.name,
                               f"{svc.name}: the token on disk is refused (401): the server's "
                               "PASSWORD holds another hash", "unify"))
        return
    if probe.auth == "enforced" and _stale(svc, info, snap):
        # the probe's hash works but the server logged another one: not possible unless the
        # log is from a previous start; nothing to report
        return


def _stale(svc: ServiceConfig, info: ContainerInfo | None, snap: Snapshot) -> bool:
    """The server still runs with a hash its PASSWORD no longer holds (a restart fixes it),
    as opposed to a PASSWORD holding another hash (a restart would load it again)."""
    tokens = snap.tokens
    if tokens is None:
        return False
    canonical = _canonical_fp(tokens)
    if canonical is None:
        return False
    passwords = [loc for loc in tokens.locations if loc.format == "password_file"]
    # a PASSWORD now holding the canonical hash was rewritten after this server started
    if info is not None and info.started_at is not None and any(
            loc.fingerprint == canonical and loc.mtime is not None
            and loc.mtime > info.started_at for loc in passwords):
        return True
    logged = next((s.log_fingerprint for s in tokens.servers
                   if s.service == svc.name and s.log_fingerprint), None)
    if logged is None or logged == canonical:
        return False
    # the hash it loaded is still in a PASSWORD file: that is its PASSWORD, so a restart
    # would load it again (token_rejected); gone from every PASSWORD: rewritten (stale)
    return not any(loc.fingerprint == logged for loc in passwords)


def _canonical_fp(tokens: TokensReport) -> str | None:
    for loc in tokens.locations:
        if loc.name == tokens.canonical:
            return loc.fingerprint
    return None


def _missing_copies(tokens: TokensReport, out: list[Finding]) -> None:
    """A configured copy that is gone: a warning while another copy can restore it,
    critical when no copy of the credential is left (nothing to copy from)."""
    missing = [loc for loc in tokens.locations if loc.state == "missing"]
    if not missing:
        return
    usable = [loc for loc in tokens.locations if loc.fingerprint
              and loc.state in ("ok", "mismatch") and loc.format != "raw_env"]
    where = "; ".join(f"{loc.name} ({loc.path}: {loc.detail or 'missing'})" for loc in missing)
    if usable:
        out.append(Finding("token_file_missing", W, None,
                           f"{len(missing)} token cop{'y' if len(missing) == 1 else 'ies'} "
                           f"missing: {where}", "unify"))
    else:
        out.append(Finding("token_file_missing", C, None,
                           f"no copy of the credential is left, nothing to copy from: {where}"
                           " — `genai-tui tokens unify --rotate` makes a new one", "unify"))


def _token_findings(tokens: TokensReport | None, out: list[Finding]) -> None:
    if tokens is None:
        return
    bad = [loc.name for loc in tokens.locations if loc.state in ("mismatch", "raw_mismatch")]
    # a copy that is invalid, unreadable or only badly quoted is a token_file_problem (below);
    # drift is copies holding different values
    if not tokens.consistent and bad:
        # raw tokens are checked against the hash, not compared by value: name only the
        # hash values, and the raw copies that fail to verify
        raw_ok = {loc.name for loc in tokens.locations
                  if loc.format == "raw_env" and loc.state == "ok"}
        values = {fp: names for fp, names in tokens.fingerprints.items()
                  if not set(names) <= raw_ok}
        parts = [f"{fp} in {', '.join(names)}" for fp, names in values.items()]
        out.append(Finding(
            "token_drift", W, None,
            f"token copies disagree ({len(values)} values; differing: {', '.join(bad)}): "
            + "; ".join(parts), "unify"))
    _missing_copies(tokens, out)
    for loc in tokens.locations:
        problems = list(loc.problems)
        if loc.state in ("invalid", "unreadable"):
            problems.insert(0, loc.state)
        if problems:
            # CRLF in an env file is only untidy: Compose and python-dotenv read it alike
            sev = I if set(problems) <= {"crlf"} and loc.format in ("env", "raw_env") else W
            out.append(Finding("token_file_problem", sev, None,
                               f"token location {loc.name} ({loc.path}): "
                               + ", ".join(problems),
                               "unify" if loc.state != "unreadable" else None))
