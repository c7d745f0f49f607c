"""From one snapshot to findings that name the cause.

Pure functions, no I/O. One root cause gives one finding: a stopped container is
`container_exited`, not also `port_unreachable`; a server that kept an old hash is
`token_stale`, not also `token_rejected`. And the *true* cause: a container that never
started is `never_started` (Docker's own error; a restart cannot fix it), a paused one is
`paused` (unpause, not restart), a silent port of a container that publishes no such port
is `port_not_published`, a port that does not answer yet right after a start is
`starting`, and nothing alarms while a restart asked for here is under way.

Order (`ORDER`): most severe first; within a severity, by kind — who can reach the API
(security), then the credential, the containers, the ports, the resources — then by
service. `since` is set where the snapshot knows it (a container's start or finish, a
file's mtime); `engine.derive` fills in the first time the others were seen.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import urlsplit

from genai_tui.config import Config, ServiceConfig
from genai_tui.model import (
    ContainerInfo,
    Finding,
    LogEvent,
    ProbeResult,
    Severity,
    Snapshot,
    TokensReport,
)
from genai_tui.safety import shown

C, W, I = Severity.CRITICAL, Severity.WARNING, Severity.INFO  # noqa: E741
UNREACHABLE = ("refused", "timeout", "empty_reply")
BACKEND_OK = ("healthy", "ok", "up", "running", "ready")

#: codes by kind, in the order findings of one severity are listed: security first (who
#: can reach the API), then the credential, the containers, the ports, the resources
ORDER = (
    "login_not_loaded", "auth_disabled", "password_missing",
    "token_rejected", "token_stale", "token_drift", "token_file_missing",
    "token_file_problem", "world_readable",
    "docker_unreachable", "lookalike_containers", "container_missing", "never_started",
    "restart_loop", "oom_killed", "container_exited", "paused", "restarting",
    "restart_failed", "stop_ignores_sigterm", "health_starting_long", "unhealthy",
    "healthcheck_hits_auth", "port_not_published", "port_unreachable", "starting",
    "orchestrator_backend_down", "job_failed", "job_stuck", "queue_backlog", "vram_idle_hold",
    "gpu_memory_high", "host_memory_high", "gpu_unavailable",
)
_RANK = {code: i for i, code in enumerate(ORDER)}
#: findings about a service's process that its last error line helps explain
LOG_EVIDENCE = frozenset({"never_started", "restart_loop", "oom_killed", "container_exited",
                          "port_unreachable", "unhealthy", "health_starting_long",
                          "login_not_loaded", "restart_failed", "job_failed"})
#: log event kinds whose line is worth showing as evidence
ERROR_EVENTS = frozenset({"error", "oom", "import_failed", "no_password", "traceback"})


def sort_key(f: Finding) -> tuple[int, int, str, tuple[str, ...]]:
    """Most severe first, then by kind (security first, see ORDER), then service."""
    return (f.severity.rank, _RANK.get(f.code, len(ORDER)), f.service or "", f.paths)


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
            _probe_findings(svc, info, probe, snap, config, now, findings)

    _token_findings(snap.tokens, findings)
    _job_findings(snap, config, now, findings)

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

    findings = _with_log_evidence(findings, snap.log_events)
    findings.sort(key=sort_key)
    return findings


def last_error_line(events: list[LogEvent], service: str) -> str:
    """The last error line the service logged (redacted, one line), or ""."""
    for e in reversed(events):
        if e.service == service and e.kind in ERROR_EVENTS and e.text:
            return shown(e.text, 300)
    return ""


def _with_log_evidence(findings: list[Finding], events: list[LogEvent]) -> list[Finding]:
    out = []
    for f in findings:
        if f.service and f.code in LOG_EVIDENCE and not f.log_line:
            line = last_error_line(events, f.service)
            if line:
                f = replace(f, log_line=line)
        out.append(f)
    return out


def _hhmm(at: datetime) -> str:
    """A time of day in the admin's own zone (the terminal's)."""
    return at.astimezone().strftime("%H:%M")


def _projects(lookalikes: tuple[str, ...]) -> list[str]:
    return sorted({t.split("/", 1)[0] for t in lookalikes if "/" in t})


def _container_findings(svc: ServiceConfig, info: ContainerInfo | None,
                        probe: ProbeResult | None, snap: Snapshot, config: Config,
                        now: datetime, out: list[Finding]) -> bool:
    """Findings about the container itself; True when it is down (skip probe findings)."""
    if svc.runtime == "docker" and not snap.docker.reachable:
        return True  # docker_unreachable says it all
    if info is None:
        return False
    what = "process" if info.runtime == "process" else "container"
    if info.state == "ambiguous":
        projects = _projects(info.lookalikes)
        where = f" (projects {', '.join(projects)})" if projects else ""
        names = ", ".join(info.lookalikes)
        out.append(Finding("lookalike_containers", C, svc.name,
                           f"{len(info.lookalikes)} containers match {svc.container_name}"
                           f"{where}: set `container` (or `project`) for {svc.name} — "
                           f"nothing is done to a guess ({names})",
                           "set_container", paths=info.lookalikes))
        return True
    if info.missing:
        elsewhere = (f"; only look-alikes in other compose projects: "
                     f"{', '.join(info.lookalikes)}" if info.lookalikes else "")
        out.append(Finding("container_missing", C, svc.name,
                           f"{svc.name}: no {what} {info.container!r}" + (
                               "" if info.runtime == "process" else
                               " exists (removed, renamed or never created)") + elsewhere,
                           "compose_up" if info.runtime == "docker" else None))
        return True
    if info.action and info.action.startswith("restarting"):
        # asked for here: its exit and the silent port are the restart, not an alarm
        out.append(Finding("restarting", I, svc.name,
                           f"{svc.name}: restarting (asked here); checks resume once it "
                           "is back"))
        return True
    if info.action and info.action.startswith("restart failed"):
        out.append(Finding("restart_failed", W, svc.name,
                           f"{svc.name}: {info.action}", "read_logs"))
    if info.state_error and not info.running:
        out.append(Finding("never_started", C, svc.name,
                           f"{svc.name}: never started: {info.state_error} — fix its "
                           "entrypoint, command or image; a restart cannot",
                           since=info.finished_at or info.created_at))
        return True
    if info.looping or is_looping(info, config, now):
        out.append(Finding("restart_loop", C, svc.name,
                           f"{svc.name}: restart loop ({info.restart_count} restarts"
                           + (f", last exit {info.exit_code}" if info.exit_code else "")
                           + "): it crashes right after start", "read_logs"))
        return True
    if info.oom_killed and info.running:
        # it was killed, then started again (its policy, or us): history, not an outage
        at = f" at {_hhmm(info.finished_at)}" if info.finished_at else ""
        out.append(Finding("oom_killed", W, svc.name,
                           f"{svc.name}: was OOM-killed{at}, restarted: raise its memory "
                           "limit or free host RAM before it happens again", "read_logs",
                           since=info.finished_at))
    elif info.oom_killed:
        out.append(Finding("oom_killed", C, svc.name,
                           f"{svc.name}: killed by the kernel OOM killer (exit 137, OOMKilled):"
                           " raise its memory limit or free host RAM", "restart",
                           since=info.finished_at))
        return True
    if info.state in ("exited", "dead", "created"):
        code = info.exit_code
        why = f"exited with code {code}" if code is not None else f"is {info.state}"
        if code == 137:
            why += " (SIGKILL, not an OOM kill)"
        out.append(Finding("container_exited", C, svc.name, f"{svc.name}: {what} {why}",
                           "restart", since=info.finished_at or (
                               info.created_at if info.state == "created" else None)))
        return True
    if info.state == "paused":
        out.append(Finding("paused", C, svc.name,
                           f"{svc.name}: {what} is paused: it answers nothing until "
                           "unpaused (its jobs are kept; a restart would lose them)",
                           "unpause"))
        return True
    if info.state in ("restarting", "removing"):
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
                               "read_logs", since=info.started_at))
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


def health_stale(info: ContainerInfo) -> bool:
    """Its health is from before it was unpaused (checks run while paused fail): wait for
    the next check rather than report it."""
    return info.unpaused_at is not None and (
        info.health_checked_at is None or info.health_checked_at <= info.unpaused_at)


def start_grace(info: ContainerInfo, config: Config) -> float:
    """How long a just-started container's port may stay silent: its healthcheck's start
    period, else `[docker] start_grace`."""
    return info.start_period if info.start_period else config.docker.start_grace


def _loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return addr.is_loopback or addr.is_unspecified


def unpublished_port(svc: ServiceConfig, info: ContainerInfo | None) -> int | None:
    """The URL's port when it reaches the container only through a published port (a
    loopback URL, not host networking) and the container publishes no such port."""
    if info is None or info.runtime != "docker" or not info.running \
            or info.network_mode == "host" or info.network_mode.startswith("container:"):
        return None
    try:
        parts = urlsplit(svc.url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    if not _loopback(host):
        return None
    if any(p.host_port == port for p in info.ports):
        return None
    return port


def _probe_findings(svc: ServiceConfig, info: ContainerInfo | None, probe: ProbeResult | None,
                    snap: Snapshot, config: Config, now: datetime,
                    out: list[Finding]) -> None:
    running = info is not None and info.running
    if info is not None and health_stale(info):
        info = replace(info, health=None)  # a verdict from before the unpause
    if probe is None:
        if info is not None and info.health == "unhealthy":
            out.append(Finding("unhealthy", W, svc.name,
                               f"{svc.name}: container unhealthy ({info.failing_streak} failed"
                               " checks)", "read_logs"))
        return
    if probe.outcome in UNREACHABLE and (running or info is None):
        port = unpublished_port(svc, info)
        if port is not None and info is not None:
            shown = ", ".join(p.label() for p in info.ports if p.host_port) or "none"
            out.append(Finding("port_not_published", C, svc.name,
                               f"{svc.name}: {probe.url} cannot answer: container "
                               f"{info.container} does not publish port {port} (it "
                               f"publishes: {shown}) — fix `ports:` or the URL",
                               "publish_port"))
            return
        age = None if info is None or info.started_at is None \
            else (now - info.started_at).total_seconds()
        if info is not None and age is not None and 0 <= age < start_grace(info, config):
            out.append(Finding("starting", I, svc.name,
                               f"{svc.name}: started {_age(age)} ago, {probe.url} does not "
                               f"answer yet ({probe.outcome}); starting for up to "
                               f"{_age(start_grace(info, config))}",
                               since=info.started_at))
            return
        starting = info is not None and info.health == "starting"
        sev = W if starting else C
        cause = {
            "refused": "is published but nothing listens behind it",
            "timeout": "accepts nothing or never answers (hung?)",
            "empty_reply": "the port is published but the process inside does not answer"
                           " (not listening yet, or on another port)",
        }[probe.outcome]
        if info is None:
            cause = {"refused": "refuses connections (nothing listens)"}.get(probe.outcome,
                                                                              cause)
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
                               "the one on disk: restart it", "restart",
                               since=_rewritten_at(snap.tokens, info)))
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


def _rewritten_at(tokens: TokensReport | None, info: ContainerInfo | None) -> datetime | None:
    """When a PASSWORD was rewritten after the server started (the stale hash's start)."""
    if tokens is None or info is None or info.started_at is None:
        return None
    started = info.started_at
    times = [loc.mtime for loc in tokens.locations if loc.format == "password_file"
             and loc.mtime is not None and loc.mtime > started]
    return min(times) if times else None


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
        values = tokens.value_groups()
        parts = [f"{fp} in {', '.join(names)}" for fp, names in values.items()]
        out.append(Finding(
            "token_drift", W, None,
            f"token copies disagree ({len(values)} values; differing: {', '.join(bad)}): "
            + "; ".join(parts), "unify"))
    _missing_copies(tokens, out)
    # one finding for every copy any user can read: one fix (chmod 600) lists them all
    readable = [loc for loc in tokens.locations if "world_readable" in loc.problems]
    paths = tuple(dict.fromkeys(str(loc.path) for loc in readable))
    if paths:
        names = ", ".join(dict.fromkeys(loc.name for loc in readable))
        out.append(Finding("world_readable", W, None,
                           f"{len(paths)} token file{'s are' if len(paths) > 1 else ' is'} "
                           f"readable by every user ({names}): chmod 600 "
                           + " ".join(paths), "chmod", paths=paths))
    for loc in tokens.locations:
        problems = [p for p in loc.problems if p != "world_readable"]
        if loc.state in ("invalid", "unreadable"):
            problems.insert(0, loc.state)
        if problems:
            # CRLF in an env file is only untidy: Compose and python-dotenv read it alike
            sev = I if set(problems) <= {"crlf"} and loc.format in ("env", "raw_env") else W
            out.append(Finding("token_file_problem", sev, None,
                               f"token location {loc.name} ({loc.path}): "
                               + ", ".join(problems),
                               "unify" if loc.state != "unreadable" else None,
                               since=loc.mtime, paths=(str(loc.path),)))


# ------------------------------------------------------------------ jobs (issue #14)

#: a failed job is "recent" (job_failed) for this long after it ended
JOB_FAILED_WINDOW = 3600.0
GIB = 1024 ** 3


def _job_findings(snap: Snapshot, config: Config, now: datetime, out: list[Finding]) -> None:
    """Findings about each ComfyUI queue: a job that stopped moving while the server
    still answers, recent failures (OOM named as such), a backlog, VRAM held by an idle
    server (the next job's OOM on a shared GPU), and a stop that waited for SIGKILL."""
    jc = config.jobs
    containers = {c.service: c for c in snap.containers}
    for svc in config.services:
        info = containers.get(svc.name)
        if info is not None and info.runtime == "docker" and info.state == "exited" \
                and info.exit_code == 137 and not info.oom_killed:
            _sigterm_finding(svc, info, out)
    if snap.jobs is None or not jc.enabled:
        return
    for sj in snap.jobs.services:
        name = sj.service
        info = containers.get(name)
        if info is not None and not info.running:
            continue  # the container findings say it
        run = sj.running
        if run is not None and sj.error is None and sj.last_progress_at is not None:
            idle = (now - sj.last_progress_at).total_seconds()
            if idle >= jc.stuck_after:
                step = f" at step {run.step}/{run.steps}" if run.steps else ""
                out.append(Finding(
                    "job_stuck", W, name,
                    f"{name}: job #{run.number if run.number is not None else '?'} "
                    f"({shown(run.prompt_id, 12)}) has shown no progress{step} and the queue "
                    f"has not moved for {_age(idle)} while the server answers: interrupt it",
                    "interrupt", since=sj.last_progress_at))
        failed = [j for j in sj.recent if j.state == "error" and (
            j.finished_at is None or (now - j.finished_at).total_seconds() <= JOB_FAILED_WINDOW)]
        if failed:
            last = failed[0]
            what = "out of memory (OOM)" if last.error_type == "OOM" else (
                shown(last.error_type, 60) if last.error_type else "an error")
            detail = f": {shown(last.error_message, 120)}" if last.error_message and \
                last.error_type != "OOM" else ""
            count = f"{len(failed)} jobs failed" if len(failed) > 1 else "a job failed"
            out.append(Finding(
                "job_failed", W, name,
                f"{name}: {count} in the last hour; the last "
                f"({shown(last.prompt_id, 12)}) with {what}{detail}"
                + (" — free VRAM held by idle models or lower the resolution/batch"
                   if last.error_type == "OOM" else ""),
                "free_vram" if last.error_type == "OOM" else "read_logs",
                since=last.finished_at))
        if sj.pending and sj.oldest_wait_s is not None and sj.oldest_wait_s >= jc.backlog_after:
            out.append(Finding(
                "queue_backlog", W, name,
                f"{name}: {len(sj.pending)} job{'s' if len(sj.pending) > 1 else ''} waiting, "
                f"the oldest for {_age(sj.oldest_wait_s)}"
                + (" behind a job that is not moving" if run is not None else ""),
                None))
        if run is None and not sj.pending and sj.error is None and sj.vram_used is not None \
                and sj.vram_used > jc.idle_hold_gib * GIB:
            last_end = max((j.finished_at for j in sj.recent if j.finished_at), default=None)
            quiet_since = max((t for t in (last_end, sj.last_progress_at) if t), default=None)
            if quiet_since is None or (now - quiet_since).total_seconds() >= jc.idle_hold_after:
                idle_for = f" for {_age((now - quiet_since).total_seconds())}" \
                    if quiet_since else ""
                out.append(Finding(
                    "vram_idle_hold", W, name,
                    f"{name}: idle{idle_for} with no job but still holds "
                    f"{sj.vram_used / GIB:.1f} GiB of VRAM ({sj.vram_source or '?'})"
                    + (f", models {', '.join(shown(m, 40) for m in sj.resident_models[:4])}"
                       if sj.resident_models else "")
                    + ": the next job on a shared GPU may OOM — free it",
                    "free_vram", since=quiet_since))


def _sigterm_finding(svc: ServiceConfig, info: ContainerInfo, out: list[Finding]) -> None:
    """Exit 137 with no OOM kill, which reports often call "the OOM killer". Where the live
    engine saw the stop, a SIGTERM followed by the SIGKILL of a grace period that ran out
    is a process ignoring SIGTERM (ComfyUI as PID 1); a SIGKILL alone (`docker kill`) was
    meant. Without that evidence (`check`), only a ComfyUI gets the hint, as likely."""
    fix = "add `init: true` to its compose service (or `docker run --init`)"
    if info.stop_took_s is not None:
        if not info.stop_escalated:
            return  # it ended on SIGTERM or was killed on purpose: container_exited says it
        out.append(Finding(
            "stop_ignores_sigterm", W, svc.name,
            f"{svc.name}: `docker stop` sent SIGTERM, waited the whole grace period "
            f"({info.stop_took_s:.1f} s) and then killed it (137, not an OOM kill): its main "
            f"process ignores SIGTERM; {fix}", "set_init", since=info.finished_at))
    elif svc.kind == "comfyui":
        out.append(Finding(
            "stop_ignores_sigterm", I, svc.name,
            f"{svc.name}: ended with 137 and no OOM kill: ComfyUI as PID 1 ignores "
            "SIGTERM, so `docker stop` waits the whole grace period and then kills it; "
            + fix, "set_init", since=info.finished_at))
