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
    return [out[n] for n in names]


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
