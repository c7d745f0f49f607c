"""`genai-tui tokens status|unify`: the token copies from a shell, for admins and scripts.

Exit codes: 0 consistent / done, 1 inconsistent or a warning (changes pending in a dry
run, locations left blocked, a server still on the old hash), 2 failure or refusal,
3 configuration problem or unknown location. Secrets never reach the output: locations
are shown by fingerprint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from genai_tui.config import Config
from genai_tui.model import Finding, ProbeResult, TokensReport
from genai_tui.safety import one_line
from genai_tui.sources import tokens as tk

EXIT_OK, EXIT_WARNING, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2, 3


def add_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser] = ()
               ) -> argparse.ArgumentParser:
    """Register `tokens status` and `tokens unify` on the main parser's subparsers;
    `parents` (the global options) are accepted at every level."""
    parents = list(parents)
    p = subparsers.add_parser(
        "tokens", help="ComfyUI-Login token copies: status, and safe one-step unify",
        description="Show where the ComfyUI-Login credential lives and whether the copies "
        "agree; unify them from one source of truth (atomic writes, backups, audit log).",
        parents=parents)
    sub = p.add_subparsers(dest="tokens_command", metavar="ACTION")
    st = sub.add_parser("status", help="state of every configured token location",
                        parents=parents)
    st.add_argument("--json", action="store_true", help="print one JSON document")
    st.add_argument("--no-server", action="store_true",
                    help="skip the probe and log check of the running ComfyUI servers")
    un = sub.add_parser(
        "unify", help="make every location hold the same credential",
        description="Rewrite the token locations from one source of truth (the canonical "
        "location unless --from is given). Shows the plan first; asks before writing.",
        parents=parents)
    un.add_argument("--from", dest="source", metavar="NAME",
                    help="location to take the credential from (default: the canonical one)")
    un.add_argument("--rotate", action="store_true",
                    help="make a NEW random token and hash (cost 12) instead of copying one")
    un.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    un.add_argument("--yes", action="store_true", help="apply without asking")
    un.add_argument("--json", action="store_true", help="print one JSON document")
    rs = un.add_mutually_exclusive_group()
    rs.add_argument("--restart", dest="restart", action="store_true", default=None,
                    help="restart the [tokens] restart_after_unify services without asking")
    rs.add_argument("--no-restart", dest="restart", action="store_false",
                    help="never restart (print what to restart instead)")
    return p


def run(args: argparse.Namespace, config: Config, readonly: bool = False) -> int:
    action = getattr(args, "tokens_command", None) or "status"
    if not config.tokens.locations:
        _err("no token locations configured ([[tokens.locations]] in the config)")
        return EXIT_CONFIG
    if action == "status":
        return _status(args, config)
    if action == "unify":
        if readonly:
            return _fail(args, "read-only mode: unify is disabled", EXIT_FAILURE)
        return _unify(args, config)
    _err(f"unknown tokens action {action!r}")
    return EXIT_CONFIG


# ---------------------------------------------------------------- status


def _status(args: argparse.Namespace, config: Config) -> int:
    """Exit like `check` does for the same findings: 0 none, 1 warning, 2 critical (3 for
    a configuration error), so the two faces never disagree about the credential."""
    from genai_tui.engine.collect import collect_tokens

    snap = collect_tokens(config, servers=not getattr(args, "no_server", False))
    report = snap.tokens
    assert report is not None
    tk.StatusAuditor(config.tokens.audit_log).observe(report)
    worst = min((f.severity.rank for f in snap.findings), default=None)
    code = EXIT_OK if worst is None else {0: EXIT_FAILURE, 1: EXIT_WARNING}.get(worst, EXIT_OK)
    if report.error:
        code = EXIT_CONFIG
    if getattr(args, "json", False):
        doc = report.to_json()
        doc["findings"] = [f.to_json() for f in snap.findings]
        doc["config"] = config.source
        _out(json.dumps(doc, indent=2))
    else:
        _out(render_status(report, config, snap.findings))
    return code


def render_status(report: TokensReport, config: Config,
                  findings: Sequence[Finding] = ()) -> str:
    from genai_tui.textout import table

    base = config.base_dir
    out = [f"tokens — {_safe(config.source)} (canonical: {_safe(report.canonical or '-')})"]
    rows = []
    for s in report.locations:
        rows.append([
            _safe(s.name) + ("*" if s.canonical else ""), s.format, s.state,
            s.fingerprint or "-",
            s.mtime.strftime("%Y-%m-%d %H:%M") if s.mtime else "-",
            ",".join(s.problems) or "-",
            _safe(tk.display_path(s.path, base)) + (f" [{_safe(s.key)}]" if s.key else ""),
        ])
    out.append(table(["NAME", "FORMAT", "STATE", "FINGERPRINT", "MODIFIED", "PROBLEMS",
                      "PATH"], rows))
    details = [f"  {_safe(s.name)}: {_safe(s.detail)}" for s in report.locations if s.detail]
    if details:
        out.append("")
        out.extend(details)
    out.append("")
    if report.error:
        out.append(f"error: {_safe(report.error)}")
    out.append(("consistent: yes" if report.consistent else "consistent: NO")
               + f" — {tk.value_counts(report)}")
    for fp, names in report.fingerprints.items():
        out.append(f"  {fp}  {', '.join(_safe(x) for x in names)}")
    for srv in report.servers:
        verdict = {True: "uses the hash on disk", False: "does NOT use the hash on disk",
                   None: "unknown"}[srv.uses_disk_hash]
        out.append(f"server {_safe(srv.service)}: {verdict}"
                   + (f" — {_safe(srv.detail)}" if srv.detail else ""))
    prefix = f"{base}{os.sep}" if base is not None else None
    for f in findings:
        if f.severity.rank <= 1:  # info repeats the PROBLEMS column
            msg = f.message.replace(prefix, "") if prefix else f.message
            out.append(f"{f.severity.value}: {_safe(msg)}")
    if not report.consistent:
        out.append("fix: genai-tui tokens unify (see --dry-run first)")
    return "\n".join(out)


# ---------------------------------------------------------------- unify


def _unify(args: argparse.Namespace, config: Config) -> int:
    as_json = bool(getattr(args, "json", False))
    doc: dict[str, Any] = {"applied": False}
    try:
        plan = tk.plan_unify(config.tokens, getattr(args, "source", None),
                             rotate=bool(getattr(args, "rotate", False)))
    except tk.UnifyError as exc:
        return _fail(args, str(exc), exc.code)
    doc["plan"] = plan.to_json()
    if not as_json:
        _out(render_plan(plan, config))
    if plan.empty:
        doc["message"] = "nothing to change"
        tk.apply_plan(config.tokens, plan, base_dir=config.base_dir)  # audits the no-op
        code = EXIT_WARNING if plan.blocked else EXIT_OK
        return _finish(args, config, doc, code, plan=None)
    if getattr(args, "dry_run", False):
        doc["message"] = "dry run: nothing written"
        if not as_json:
            _out("dry run: nothing written")
        return _finish(args, config, doc, EXIT_WARNING, plan=None, restart=False)
    if not getattr(args, "yes", False):
        if not sys.stdin or not sys.stdin.isatty():
            return _fail(args, "refusing to change files without --yes (no terminal to ask "
                         "for confirmation)", EXIT_FAILURE, doc)
        if not _confirm(f"Apply these {len(plan.changes)} change(s)? [y/N] "):
            doc["message"] = "cancelled: nothing written"
            if not as_json:
                _out("cancelled: nothing written")
            return _emit(args, doc, EXIT_FAILURE)
    try:
        result = tk.apply_plan(config.tokens, plan, base_dir=config.base_dir)
    except tk.UnifyError as exc:
        return _fail(args, str(exc), exc.code, doc)
    from genai_tui.engine import history

    history.record_unify(config, plan, result)  # the timeline: who unified, from the CLI
    doc["applied"] = True
    doc["result"] = result.to_json()
    doc["message"] = result.message
    if not as_json:
        _out(f"done: {result.message}")
        for b in result.backups:
            _out(f"  backup: {_safe(tk.display_path(b, config.base_dir))}")
        if result.pruned:
            _out(f"  pruned {len(result.pruned)} old backup(s) (keep_backups = "
                 f"{config.tokens.keep_backups})")
        for w in result.warnings:
            _out(f"  warning: {_safe(w)}")
    code = EXIT_WARNING if plan.blocked else EXIT_OK
    return _finish(args, config, doc, code, plan=plan)


def _finish(args: argparse.Namespace, config: Config, doc: dict[str, Any], code: int, *,
            plan: tk.UnifyPlan | None, restart: bool = True) -> int:
    """Offer the restart ComfyUI-Login needs to load a changed PASSWORD, only to the
    servers that do not use the hash now on disk, then re-probe them."""
    from genai_tui.engine import actions

    as_json = bool(getattr(args, "json", False))
    if not restart or not config.tokens.restart_after_unify:
        return _emit(args, doc, code)
    needs = actions.needs_restart(config, plan)
    if actions.compose_env_changed(config, plan):
        doc["compose_env_changed"] = True
        if not as_json:
            _out("a compose env file changed: `docker compose up -d` applies it to the "
                 "services that read it")
    if not needs:
        return _emit(args, doc, code)
    names = [n.service for n in needs]
    why = "; ".join(f"{_safe(n.service)}: {_safe(n.why)}" for n in needs)
    wanted = getattr(args, "restart", None)
    if wanted is None and not getattr(args, "yes", False) and sys.stdin and sys.stdin.isatty():
        wanted = _confirm(f"{why}. ComfyUI-Login reads PASSWORD only at start-up. Restart "
                          f"{', '.join(names)} now? [y/N] ")
    if not wanted:
        doc["restart_needed"] = names
        if not as_json:
            _out(f"restart needed ({why}): docker restart "
                 + " ".join(_container(config, n) for n in names)
                 + " — or run again with --restart")
        return _emit(args, doc, max(code, EXIT_WARNING))
    outcome = actions.restart_and_verify(config, actions.UnifyOutcome(needs=needs))
    doc["restart"] = [r.to_json() for r in outcome.restarts]
    doc["probes"] = [r.to_json() for r in outcome.probes]
    if not as_json:
        for r in outcome.restarts:
            _out(f"restart {_safe(r.service)}: "
                 + ("ok" if r.ok else f"FAILED — {_safe(r.detail)}"))
        for p in outcome.probes:
            _out(f"probe {_safe(p.service)}: {_probe_words(p)}")
    if not outcome.loaded:
        code = max(code, EXIT_WARNING)
    return _emit(args, doc, code)


def _probe_words(r: ProbeResult) -> str:
    if r.outcome != "ok":
        return f"{r.outcome} ({_safe(r.detail)})"
    words = {"enforced": "the hash on disk is accepted (200): new credential in force",
             "rejected": "the hash on disk is refused (401): the server did not reload it",
             "disabled": "auth is not enforced", "no_password": "no PASSWORD: first-login"}
    return words.get(r.auth or "", f"{r.auth} ({_safe(r.detail)})")


def _container(config: Config, name: str) -> str:
    svc = config.service(name)
    return svc.container_name if svc else name


def _plan_path(c: tk.PlannedChange, base: Path | None) -> str:
    """The configured path, and the file really written when a symlink is on the way."""
    shown = tk.display_path(c.path, base)
    if c.target and os.path.abspath(c.path) != c.target:
        shown += f" → {tk.display_path(c.target, base)}"
    return shown


def render_plan(plan: tk.UnifyPlan, config: Config) -> str:
    from genai_tui.textout import table

    base = config.base_dir
    head = ("rotate: a NEW credential" if plan.rotate else f"source: {_safe(plan.source)}")
    out = [f"unify plan — {head} → {plan.target}"
           + (f" (raw {plan.raw_target})" if plan.raw_target else "")]
    if plan.changes:
        out.append(table(["LOCATION", "ACTION", "FROM", "TO", "WHY", "PATH"], [
            [_safe(c.location), c.action, c.before or "-", c.after, _safe(c.reason),
             _safe(_plan_path(c, base))] for c in plan.changes]))
    else:
        out.append(f"nothing to change: {len(plan.unchanged)} location(s) already hold "
                   f"{plan.target}")
    for b in plan.blocked:
        out.append(f"  left unchanged {_safe(b.location)}: {_safe(b.reason)}")
    for w in plan.warnings:
        out.append(f"  warning: {_safe(w)}")
    return "\n".join(out)


# ---------------------------------------------------------------- helpers


def _confirm(question: str) -> bool:
    sys.stderr.write(question)
    sys.stderr.flush()
    try:
        answer = sys.stdin.readline()
    except (OSError, KeyboardInterrupt):
        return False
    return answer.strip().lower() in ("y", "yes")


def _fail(args: argparse.Namespace, message: str, code: int,
          doc: dict[str, Any] | None = None) -> int:
    message = tk.scrub(message)
    if getattr(args, "json", False):
        d = dict(doc or {})
        d.setdefault("applied", False)
        d["error"] = message
        _out(json.dumps(d, indent=2))
    else:
        _err(message)
    return code


def _emit(args: argparse.Namespace, doc: dict[str, Any], code: int) -> int:
    if getattr(args, "json", False):
        _out(json.dumps(doc, indent=2))
    return code


def _safe(text: object) -> str:
    return one_line(tk.scrub(str(text)))


def _out(text: str, stream: TextIO | None = None) -> None:
    print(text, file=stream or sys.stdout)


def _err(text: str) -> None:
    print(f"genai-tui tokens: {_safe(text)}", file=sys.stderr)
