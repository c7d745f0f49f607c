"""`genai-tui restart|unpause|jobs …`: the stack's actions as subcommands.

The fleet view runs these on a remote host over SSH, so each prints one clean document
(`--json`) or one line per service, and says how it went in its exit status:

  0  every action worked (and `jobs status` read every queue)
  1  an action failed (the reason on one line)
  3  a service that is not configured (the line names the configured ones)
  4  refused by `--readonly`, before anything is done (2 is argparse's usage error, so
     the refusal cannot reuse cli_tokens' EXIT_FAILURE without being mistaken for one)

Service names and everything a server answers are untrusted: every line goes through
`genai_tui.safety` (cleaned, hashes redacted). The ComfyUI-Login hash used for the
Bearer header stays inside `genai_tui.engine.actions`; no output holds it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from genai_tui.config import Config, ServiceConfig
from genai_tui.model import ServiceJobs
from genai_tui.safety import shown

EXIT_OK, EXIT_FAILED, EXIT_UNKNOWN_SERVICE, EXIT_READONLY = 0, 1, 3, 4
#: the `action` word of each command's JSON document
ACTIONS = {"status": "jobs_status", "interrupt": "interrupt", "cancel": "cancel",
           "clear": "clear", "free": "free_vram"}


def add_parser(sub: Any, *, parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Register `restart`, `unpause` and `jobs` on the main parser's subparsers."""
    epilog = ("Exit status: 0 done, 1 an action failed, 3 unknown service, 4 refused "
              "(--readonly).")
    for name, what in (("restart", "restart services (containers by their engine ID, "
                                   "process services by restart_command)"),
                       ("unpause", "unpause paused Docker services (their jobs go on)")):
        p = sub.add_parser(name, help=what, parents=list(parents), epilog=epilog)
        p.add_argument("services", nargs="+", metavar="SERVICE")
        p.add_argument("--json", action="store_true", help="print one JSON document")
    jobs = sub.add_parser("jobs", help="a ComfyUI's queue: status, interrupt, cancel, "
                          "clear, free VRAM", parents=list(parents), epilog=epilog)
    jsub = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)

    def action(word: str, text: str) -> argparse.ArgumentParser:
        p = jsub.add_parser(word, help=text, parents=list(parents), epilog=epilog)
        p.add_argument("--json", action="store_true", help="print one JSON document")
        return p

    action("status", "one read of the queues (every ComfyUI, or SERVICE)").add_argument(
        "service", nargs="?", metavar="SERVICE")
    p = action("interrupt", "stop the running job (only that one)")
    p.add_argument("service", metavar="SERVICE")
    p.add_argument("--prompt", metavar="ID", help="interrupt only if this job runs "
                   "(default: the job running now)")
    p = action("cancel", "take pending jobs off the queue")
    p.add_argument("service", metavar="SERVICE")
    p.add_argument("prompt_ids", nargs="+", metavar="PROMPT_ID")
    action("clear", "empty the pending queue (the running job goes on)").add_argument(
        "service", metavar="SERVICE")
    action("free", "unload models and free VRAM").add_argument("service", metavar="SERVICE")


def run(args: argparse.Namespace, cfg: Config, readonly: bool = False) -> int:
    """Dispatch `restart`, `unpause` or `jobs ACTION`; refusals come before anything is
    asked of the stack."""
    command = args.command
    as_json = bool(getattr(args, "json", False))
    if command == "jobs":
        word = args.jobs_command
        action = ACTIONS[word]
        label = f"jobs {word}"
        names = [args.service] if getattr(args, "service", None) else []
    else:
        word = action = label = command
        names = list(args.services)
    if readonly and word != "status":  # reading the queue changes nothing
        return _refuse(action, f"read-only mode: {label} is disabled", EXIT_READONLY,
                       as_json)
    unknown = [n for n in names if cfg.service(n) is None]
    if unknown:
        configured = ", ".join(shown(s.name, 64) for s in cfg.services) or "none"
        return _refuse(action, f"unknown service {shown(unknown[0], 64)!r} (configured: "
                       f"{configured})", EXIT_UNKNOWN_SERVICE, as_json)
    if command == "restart":
        results = _restart(cfg, names)
    elif command == "unpause":
        results = _unpause(cfg, names)
    elif word == "status":
        results = _status(cfg, names)
    else:
        results = [_job(cfg, word, args)]
    ok = bool(results) and all(r["ok"] for r in results)
    if as_json:
        print(json.dumps({"action": action, "ok": ok, "results": results}, indent=2))
    else:
        for r in results:
            line = r["detail"] if command == "jobs" else (
                f"{r['service']}: {'ok' if r['ok'] else 'failed'}"
                + (f" ({r['detail']})" if r["detail"] else ""))
            print(line, file=sys.stdout if r["ok"] else sys.stderr)
        if not results:
            print("no ComfyUI service configured", file=sys.stderr)
    return EXIT_OK if ok else EXIT_FAILED


def _refuse(action: str, message: str, code: int, as_json: bool) -> int:
    """One line on stderr (and the document with --json); nothing was done."""
    message = shown(message, 600)
    print(f"genai-tui: {message}", file=sys.stderr)
    if as_json:
        print(json.dumps({"action": action, "ok": False, "error": message, "results": []},
                         indent=2))
    return code


def _result(service: str, ok: bool, detail: str, **more: Any) -> dict[str, Any]:
    return {"service": shown(service, 64), "ok": ok, "detail": shown(detail, 300), **more}


def _restart(cfg: Config, names: list[str]) -> list[dict[str, Any]]:
    from genai_tui.engine import actions

    return [_result(r.service, r.ok, r.detail) for r in actions.restart(cfg, names)]


def _unpause(cfg: Config, names: list[str]) -> list[dict[str, Any]]:
    from genai_tui.engine import actions

    return [_result(r.service, r.ok, r.detail) for r in actions.unpause(cfg, names)]


def read_queues(cfg: Config, services: Sequence[ServiceConfig]) -> list[ServiceJobs]:
    """One HTTP read of each ComfyUI's queue (no websocket), as `check` does; never
    raises (an unreadable queue comes back with `api="none"` and its error)."""
    from genai_tui.sources import tokens as tk
    from genai_tui.sources.jobs import JobsSource

    token = tk.canonical_hash(cfg.tokens)
    out = []
    for svc in services:
        source = JobsSource(svc, lambda: token, cfg.jobs, cfg.probes, websocket=False)
        try:
            out.append(source.refresh_once())
        except Exception as exc:  # a source bug must not become a traceback
            out.append(ServiceJobs(svc.name, error=shown(type(exc).__name__, 80)))
        finally:
            source.close()
    return out


def _status(cfg: Config, names: list[str]) -> list[dict[str, Any]]:
    from genai_tui.sources.jobs import summary

    if names:
        svc = cfg.service(names[0])
        assert svc is not None
        if svc.kind != "comfyui":
            return [_result(svc.name, False, f"{svc.name}: not a ComfyUI service")]
        services = [svc]
    else:
        services = [s for s in cfg.services if s.kind == "comfyui"]
    results = []
    for sj in read_queues(cfg, services):
        ok = sj.api != "none"
        results.append(_result(sj.service, ok, summary(sj), jobs=_clean_jobs(sj)))
    return results


def _clean_jobs(sj: ServiceJobs) -> dict[str, Any]:
    """The queue's JSON with every remote string cleaned (ids, messages, model names)."""

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return shown(value, 300)
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return value

    return dict(clean(sj.to_json()))


def _job(cfg: Config, word: str, args: argparse.Namespace) -> dict[str, Any]:
    """One queue action on one ComfyUI; the queue is read first for the API it speaks
    (and, for interrupt without --prompt, the job running now)."""
    from genai_tui.engine import actions

    name = args.service
    svc = cfg.service(name)
    assert svc is not None
    if svc.kind != "comfyui":
        return _result(name, False, f"{name}: not a ComfyUI service")
    if word == "clear":
        out = actions.clear_queue(cfg, name)
    elif word == "free":
        out = actions.free_vram(cfg, name)
    else:
        sj = read_queues(cfg, [svc])[0]
        api = sj.api if sj.api in ("jobs", "queue") else "queue"
        if word == "cancel":
            out = actions.cancel_jobs(cfg, name, list(args.prompt_ids), api=api)
        else:
            pid = args.prompt or (sj.running.prompt_id if sj.running else None)
            if not pid:
                why = f"; the queue could not be read: {sj.error}" if sj.api == "none" and \
                    sj.error else ""
                return _result(name, False, f"{name}: no job running to interrupt{why}")
            out = actions.interrupt_job(cfg, name, pid, api=api)
    extra: dict[str, Any] = {"freed": out.freed} if word == "free" else {}
    return _result(name, out.ok, out.message, **extra)
