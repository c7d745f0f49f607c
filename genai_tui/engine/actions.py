"""What the faces can do to the stack: restart services and unify the credential.

Each returns plain outcome objects; the CLI and the dashboard's dialogs only ask and
print. One policy for "who needs a restart after unify" lives here: only the services
whose running server does not already use the hash now on disk (a restart kills the jobs
of a ComfyUI and reloads its models, so a needless one is expensive).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from genai_tui.config import Config
from genai_tui.model import ProbeResult, TokensReport
from genai_tui.sources import tokens as tk

if TYPE_CHECKING:
    from genai_tui.engine.live import Stack
    from genai_tui.sources.process import ProcessSource


@dataclass
class RestartOutcome:
    service: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "ok": self.ok, "detail": self.detail}


@dataclass
class RestartNeed:
    """A service that must restart to load the credential now on disk, and why."""

    service: str
    why: str


@dataclass
class UnifyOutcome:
    """What a unify did: the file result, who needed a restart, what happened to them."""

    result: tk.UnifyResult | None = None
    needs: list[RestartNeed] = field(default_factory=list)
    restarts: list[RestartOutcome] = field(default_factory=list)
    probes: list[ProbeResult] = field(default_factory=list)
    #: an env file Docker Compose reads changed: `docker compose up -d` is what applies it
    compose_env_changed: bool = False

    @property
    def loaded(self) -> bool:
        """Every restarted server proved it loaded the new hash (a 200 with it)."""
        return bool(self.restarts) and all(r.ok for r in self.restarts) and all(
            p.auth == "enforced" for p in self.probes)


def restart(config: Config, names: Sequence[str], *,
            processes: ProcessSource | None = None) -> list[RestartOutcome]:
    """Restart these services: containers by full ID from the engine's own listing (never
    a guess), process services by their `restart_command`. Never raises."""
    by_name = {n: config.service(n) for n in names}
    procs = {n for n, svc in by_name.items() if svc is not None and svc.runtime == "process"}
    docker = [n for n in names if n not in procs]
    out = {n: RestartOutcome(n, ok, detail)
           for n, ok, detail in (tk.restart_services(config, docker) if docker else [])}
    if procs:
        from genai_tui.sources.process import ProcessSource

        source = processes or ProcessSource(config)
        for n in procs:
            svc = by_name[n]
            assert svc is not None
            ok, detail = source.restart(svc)
            out[n] = RestartOutcome(n, ok, detail)
    from genai_tui.engine import history

    for r in out.values():  # who asked, from which face, and how it went: in the history
        history.record_action(config, "restart_asked", r.service, "restart asked" + (
            "" if r.ok else f", failed: {r.detail}"), ok=r.ok)
    return [out[n] for n in names]


def unpause(config: Config, names: Sequence[str]) -> list[RestartOutcome]:
    """Unpause these docker services (a paused container needs only that: a restart
    would kill its jobs). Resolved like `restart`, never a guess; never raises."""
    from genai_tui.sources.docker import DockerSource

    source = DockerSource(config)
    try:
        out = []
        for n in names:
            svc = config.service(n)
            if svc is None or svc.runtime != "docker":
                out.append(RestartOutcome(n, False, "not a docker service"))
                continue
            ok, detail = source.unpause(svc)
            out.append(RestartOutcome(n, ok, detail))
        return out
    finally:
        source.close()


def needs_restart(config: Config, plan: tk.UnifyPlan | None = None,
                  probes: Sequence[ProbeResult] | None = None) -> list[RestartNeed]:
    """The `restart_after_unify` services whose server does not use the hash on disk.

    A ComfyUI is asked with a Bearer probe of that hash: `enforced` means it already uses
    it (no restart), `rejected` or `no_password` means it must restart. When the probe
    cannot tell (down, timeout), a restart is needed only if the plan changed a PASSWORD
    file's value. A service that is not a ComfyUI cannot be asked: it restarts only when
    the plan changed the credential's value.
    """
    names = list(config.tokens.restart_after_unify)
    if not names:
        return []
    if probes is None:
        probes = probe_servers(config, names)
    by_name = {p.service: p for p in probes}
    password_changed = bool(plan and any(c.format == "password_file"
                                         for c in plan.value_changes))
    value_changed = bool(plan and plan.value_changes)
    out = []
    for name in names:
        svc = config.service(name)
        if svc is None:
            continue
        p = by_name.get(name)
        if svc.kind == "comfyui" and p is not None and p.outcome == "ok" and p.auth:
            if p.auth == "rejected":
                out.append(RestartNeed(name, "the server still uses another hash (401 with "
                                             "the one on disk)"))
            elif p.auth == "no_password":
                out.append(RestartNeed(name, "the server has no PASSWORD loaded"))
            continue
        if svc.kind == "comfyui" and password_changed:
            why = "PASSWORD changed; the server could not be asked"
            out.append(RestartNeed(name, why + (f" ({p.outcome})" if p else "")))
        elif svc.kind != "comfyui" and value_changed:
            out.append(RestartNeed(name, "the credential changed"))
    return out


def probe_servers(config: Config, names: Sequence[str]) -> list[ProbeResult]:
    """A Bearer probe of the hash on disk for each named ComfyUI (bounded; never raises)."""
    from genai_tui.sources import probes

    services = tuple(s for s in config.services if s.name in names and s.kind == "comfyui")
    if not services:
        return []
    try:
        return probes.probe_once(config.with_services(services),
                                 tk.canonical_hash(config.tokens))
    except Exception:
        return []


def compose_env_changed(config: Config, plan: tk.UnifyPlan | None) -> bool:
    """Whether the plan rewrote a value in an env file Docker Compose reads."""
    if plan is None:
        return False
    compose = {loc.name for loc in config.tokens.locations
               if loc.format in ("env", "raw_env") and loc.compose}
    return any(c.location in compose for c in plan.value_changes)


def plan(config: Config, source: str | None = None, *, rotate: bool = False) -> tk.UnifyPlan:
    """What unify would change (raises tk.UnifyError for an unusable source)."""
    return tk.plan_unify(config.tokens, source, rotate=rotate)


def token_report(stack: Stack) -> TokensReport:
    """A fresh token report joined with what the live stack knows of the servers."""
    from genai_tui.engine import derive

    report = tk.read_report(stack.config.tokens)
    snap = stack.snapshot
    report.servers = derive.servers(report, list(snap.probes), list(snap.log_events))
    return report


def apply_unify(config: Config, plan: tk.UnifyPlan) -> UnifyOutcome:
    """Write the plan (locked, verified, backed up; raises tk.UnifyError) and work out who
    now needs a restart."""
    result = tk.apply_plan(config.tokens, plan, base_dir=config.base_dir)
    from genai_tui.engine import history

    history.record_unify(config, plan, result)
    return UnifyOutcome(result=result, needs=needs_restart(config, plan),
                        compose_env_changed=compose_env_changed(config, plan))


def restart_and_verify(config: Config, outcome: UnifyOutcome, names: Sequence[str] | None = None,
                       *, wait: float = 60.0, stop: threading.Event | None = None
                       ) -> UnifyOutcome:
    """Restart the services that need it (or `names`), then probe each until it gives a
    clear verdict: `enforced` proves it loaded the new hash."""
    names = list(names if names is not None else [n.service for n in outcome.needs])
    outcome.restarts = restart(config, names)
    ok = [r.service for r in outcome.restarts if r.ok]
    outcome.probes = tk.probe_after_restart(config, ok, wait=wait, stop=stop) if ok else []
    return outcome


# ------------------------------------------------------------ ComfyUI queue (issue #14)


@dataclass
class JobActionOutcome:
    """What one queue action did, in one line a face shows as it is (no token in it)."""

    service: str
    action: str  # interrupt | cancel | clear | free_vram
    ok: bool
    message: str
    #: free_vram: the device before the call and after the re-read (bytes)
    before: Any = None
    after: Any = None

    @property
    def freed(self) -> int | None:
        """Bytes of VRAM the free gave back (free_vram, when both reads worked)."""
        if self.before is None or self.after is None:
            return None
        return max(0, self.before.used - self.after.used)

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "action": self.action, "ok": self.ok,
                "message": self.message, "freed": self.freed}


def _short_id(prompt_id: str) -> str:
    """A prompt id as every face shows it: its first 8 characters, cleaned (no hash)."""
    from genai_tui.safety import shown

    return shown(prompt_id, 200)[:8] or "?"


def _job_control(config: Config, service: str) -> Any:
    from genai_tui.sources.jobs_control import JobControl

    svc = config.service(service)
    if svc is None or svc.kind != "comfyui":
        return None
    return JobControl(svc, tk.canonical_hash(config.tokens), config.probes)


def _job_action(config: Config, service: str, action: str, done: str,
                work: Any) -> JobActionOutcome:
    """Run one queue request; the outcome's message says what happened or why not; the
    history records who asked. Never raises."""
    from genai_tui.engine import history
    from genai_tui.safety import one_line
    from genai_tui.sources.jobs_control import ControlError

    name = one_line(service, 64)
    control = _job_control(config, service)
    if control is None:
        out = JobActionOutcome(service, action, False, f"{name}: not a ComfyUI service")
    else:
        try:
            work(control)
            out = JobActionOutcome(service, action, True, f"{name}: {done}")
        except ControlError as exc:
            out = JobActionOutcome(service, action, False, f"{name}: {action} failed: {exc}")
    history.record_action(config, "job_action", service, out.message, ok=out.ok)
    return out


def interrupt_job(config: Config, service: str, prompt_id: str, *,
                  api: str = "queue") -> JobActionOutcome:
    """Interrupt the running job `prompt_id` on a ComfyUI (`POST /interrupt` with its id,
    or the jobs API's cancel): a job that started meanwhile is not touched."""
    return _job_action(config, service, "interrupt",
                       f"interrupt sent for job {_short_id(prompt_id)}",
                       lambda c: c.interrupt(prompt_id, api))


def cancel_jobs(config: Config, service: str, prompt_ids: Sequence[str], *,
                api: str = "queue") -> JobActionOutcome:
    """Take pending jobs off a ComfyUI's queue (`POST /queue {"delete": [...]}`)."""
    ids = list(prompt_ids)
    what = f"job {_short_id(ids[0])}" if len(ids) == 1 else f"{len(ids)} jobs"
    return _job_action(config, service, "cancel", f"{what} taken off the queue",
                       lambda c: c.cancel(ids, api))


def clear_queue(config: Config, service: str) -> JobActionOutcome:
    """Empty a ComfyUI's pending queue (`POST /queue {"clear": true}`); the running job
    goes on."""
    return _job_action(config, service, "clear", "pending queue cleared",
                       lambda c: c.clear())


def free_vram(config: Config, service: str, *, wait: float = 5.0,
              stop: threading.Event | None = None) -> JobActionOutcome:
    """`POST /free` (unload models, free memory), then re-read `/system_stats` until the
    memory drops or `wait` seconds pass, and say what was freed. ComfyUI acts on it when
    its queue worker next runs, so with a job running nothing is freed before it ends."""
    import time

    from genai_tui.engine import history
    from genai_tui.safety import one_line
    from genai_tui.sources.jobs_control import ControlError

    name = one_line(service, 64)
    control = _job_control(config, service)
    if control is None:
        out = JobActionOutcome(service, "free_vram", False, f"{name}: not a ComfyUI service")
        history.record_action(config, "job_action", service, out.message, ok=False)
        return out
    gib = 1024 ** 3
    before = after = None
    try:
        try:
            before = control.stats()
        except ControlError:
            before = None  # the free is still worth asking; only the figure is lost
        control.free()
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            try:
                after = control.stats()
            except ControlError:
                after = None
            dropped = (before is not None and after is not None
                       and (after.torch_total == 0 or before.used - after.used >= 64 << 20))
            if dropped or time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                break
            time.sleep(0.2)
    except ControlError as exc:
        out = JobActionOutcome(service, "free_vram", False,
                               f"{name}: free VRAM failed: {exc}", before, after)
        history.record_action(config, "job_action", service, out.message, ok=False)
        return out
    out = JobActionOutcome(service, "free_vram", True, "", before, after)
    if before is None or after is None:
        out.message = f"{name}: free VRAM asked (memory could not be re-read)"
    elif out.freed and out.freed >= 64 << 20:
        out.message = (f"{name}: freed {out.freed / gib:.1f} GiB of VRAM (used "
                       f"{before.used / gib:.1f} → {after.used / gib:.1f} GiB)")
    else:
        out.message = (f"{name}: free VRAM asked; nothing freed yet (used "
                       f"{after.used / gib:.1f} GiB; a running job keeps its models "
                       "until it ends)")
    history.record_action(config, "job_action", service, out.message, ok=True)
    return out
