"""Command line: the dashboard (default), `check`, `tokens`, `demo`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genai_tui import __version__
from genai_tui import config as configmod
from genai_tui.model import Severity, Snapshot

if TYPE_CHECKING:
    from genai_tui.demo import DockerDemo, LocalDemo

EXIT_OK, EXIT_WARNING, EXIT_CRITICAL, EXIT_UNKNOWN = 0, 1, 2, 3


def global_options(*, subcommand: bool) -> argparse.ArgumentParser:
    """`--config` and `--readonly`, accepted before or after the subcommand (`genai-tui
    check --config FILE` is the natural cron line). On a subcommand they default to
    SUPPRESS, so a value given before the subcommand is not overwritten; given on both
    sides, the one after wins."""
    unset: dict[str, Any] = {"default": argparse.SUPPRESS} if subcommand else {}
    opts = argparse.ArgumentParser(add_help=False)
    opts.add_argument("--config", metavar="PATH", **unset,
                      help="stack config (TOML); default: $GENAI_TUI_CONFIG, "
                      "./genai-tui.toml, ~/.config/genai-tui/config.toml, else the "
                      "reference stack")
    opts.add_argument("--readonly", action="store_true", **unset,
                      help="monitor only: restart and unify are disabled")
    return opts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genai-tui",
        description="Terminal dashboard for a self-hosted GenAI image stack: containers, "
        "GPUs, logs, ComfyUI-Login tokens and probes on one screen.",
        epilog="Exit status of `check`: 0 OK, 1 warning, 2 critical, 3 unknown "
        "(bad config, Docker engine unreachable or a usage error). --config and "
        "--readonly may also follow the command.",
        parents=[global_options(subcommand=False)],
    )
    parser.add_argument("--version", action="version", version=f"genai-tui {__version__}")
    common = [global_options(subcommand=True)]
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("dashboard", help="open the dashboard (the default)", parents=common)
    check = sub.add_parser(
        "check", help="one-shot snapshot for scripts, cron and monitoring", parents=common,
        epilog="Exit status: 0 OK, 1 warning, 2 critical, 3 unknown (bad config, Docker "
        "engine unreachable or a usage error).")
    check.add_argument("--json", action="store_true", help="print one JSON document")
    demo = sub.add_parser("demo", help="run the simulated four-service stack and open the "
                          "dashboard on it (removed on exit)", parents=common)
    demo.add_argument("--dir", type=Path, help="where the demo's config and token files go")
    demo.add_argument("--local", action="store_true",
                      help="run the stack as local processes even when Docker is reachable")
    from genai_tui import cli_tokens

    cli_tokens.add_parser(sub, parents=common)
    return parser


def command_word(argv: Sequence[str]) -> str | None:
    """The subcommand argparse will see in `argv` (the first word that is neither a
    top-level option nor its value), without parsing: usage errors need it."""
    words = iter(argv)
    for word in words:
        if word == "--":
            return next(words, None)
        if word.startswith("-"):
            if "=" not in word and len(word) > 2 and "--config".startswith(word):
                next(words, None)  # --config PATH (or an unambiguous prefix of it)
            continue
        return word
    return None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """argparse, except that any usage error of `check` exits 3 (UNKNOWN) rather than 2,
    which a monitoring system would read as CRITICAL. Other commands keep argparse's 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:
        if exc.code == 2 and command_word(argv) == "check":
            raise SystemExit(EXIT_UNKNOWN) from None
        raise


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = args.command or "dashboard"
    if command == "demo":
        return run_demo(args)
    try:
        cfg = configmod.load(args.config)
    except configmod.ConfigError as exc:
        print(f"genai-tui: bad config: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    use_fingerprint_key(cfg)
    if command == "dashboard":
        return run_dashboard(cfg, readonly=args.readonly)
    if command == "check":
        return run_check(cfg, as_json=args.json)
    if command == "tokens":
        from genai_tui import cli_tokens

        return cli_tokens.run(args, cfg, readonly=args.readonly)
    print(f"genai-tui: unknown command {command!r}", file=sys.stderr)
    return EXIT_UNKNOWN


def use_fingerprint_key(cfg: configmod.Config) -> None:
    """Fingerprints keyed per install, so every face and run of this stack agrees (see
    genai_tui.secret); without a usable key file they are valid for this run only."""
    from genai_tui import secret

    secret.use_key_file(cfg.tokens.state_dir)


def ssh_frame_rate() -> None:
    """Over SSH every frame costs bandwidth: ask for fewer of them. Textual reads this when
    it is first imported, so it must run before any UI import."""
    import os

    if os.environ.get("SSH_CONNECTION"):
        os.environ.setdefault("TEXTUAL_FPS", "15")


def run_dashboard(cfg: configmod.Config, *, readonly: bool) -> int:
    ssh_frame_rate()
    from genai_tui.ui.app import GenaiTui

    app = GenaiTui(cfg, readonly=readonly)
    result = app.run()
    return int(result or 0)


# ------------------------------------------------------------------ check


def exit_status(snap: Snapshot, cfg: configmod.Config) -> int:
    """The monitoring-plugin convention: 0 OK, 1 warning, 2 critical, 3 unknown."""
    if not snap.docker.reachable and any(s.runtime == "docker" for s in cfg.services):
        return EXIT_UNKNOWN
    worst = min((f.severity.rank for f in snap.findings), default=Severity.INFO.rank)
    return {0: EXIT_CRITICAL, 1: EXIT_WARNING}.get(worst, EXIT_OK)


def run_check(cfg: configmod.Config, *, as_json: bool) -> int:
    from genai_tui.engine.collect import collect_once

    snap = collect_once(cfg)
    status = exit_status(snap, cfg)
    if as_json:
        doc = snap.to_json()
        doc["status"] = {0: "ok", 1: "warning", 2: "critical", 3: "unknown"}[status]
        doc["config"] = cfg.source
        print(json.dumps(doc, indent=2))
    else:
        print(render_check(snap, cfg, status))
    return status


def render_check(snap: Snapshot, cfg: configmod.Config, status: int) -> str:
    from genai_tui.safety import one_line
    from genai_tui.textout import table

    out = [f"genai-tui check — {one_line(cfg.source)}"]
    if not snap.docker.reachable:
        out.append(one_line(snap.docker.error or "Docker engine unreachable"))
    out.append("")
    out.append(table(["SERVICE", "CONTAINER", "STATE", "HEALTH", "RESTARTS", "EXIT", "PORTS"], [
        [c.service, c.container, "looping" if c.looping else c.state, c.health or "-",
         str(c.restart_count),
         ("-" if c.exit_code is None else str(c.exit_code)) + (" OOM" if c.oom_killed else ""),
         ", ".join(p.label() for p in c.ports) or "-"] for c in snap.containers]))
    out.append("")
    out.append(table(["SERVICE", "URL", "OUTCOME", "AUTH", "STATUS", "LATENCY"], [
        [p.service, p.url, p.outcome, p.auth or "-", str(p.status or "-"),
         "-" if p.latency_ms is None else f"{p.latency_ms:.0f} ms"] for p in snap.probes]))
    if snap.tokens is not None:
        out.append("")
        state = "consistent" if snap.tokens.consistent else "NOT consistent"
        out.append(f"tokens: {state}, {len(snap.tokens.fingerprints)} distinct value(s)")
    if snap.gpu is not None:
        if snap.gpu.error:
            out.append(f"gpu: {one_line(snap.gpu.error)}")
        for g in snap.gpu.gpus:
            used = "-" if g.memory_used_mb is None else f"{g.memory_used_mb:.0f}"
            total = "-" if g.memory_total_mb is None else f"{g.memory_total_mb:.0f}"
            out.append(f"gpu {g.index}: {one_line(g.name)} {used}/{total} MiB ({g.source})")
    if snap.host is not None and snap.host.memory_total_mb:
        out.append(f"host: memory {snap.host.memory_used_mb:.0f}/"
                   f"{snap.host.memory_total_mb:.0f} MiB")
    out.append("")
    if snap.findings:
        out.append(table(["SEVERITY", "CODE", "SERVICE", "MESSAGE"], [
            [f.severity.value, f.code, f.service or "-", f.message] for f in snap.findings]))
    else:
        out.append("all good: no findings")
    out.append("")
    out.append("status: " + {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}[status])
    return "\n".join(out)


# ------------------------------------------------------------------ demo


def say(text: str, *, err: bool = False) -> None:
    """Print, unless the terminal is gone (a closed terminal answers EIO): the demo's
    cleanup must go on regardless."""
    stream = sys.stderr if err else sys.stdout
    try:
        print(text, file=stream, flush=True)
    except (OSError, ValueError):
        import os

        try:  # nothing more can be shown: keep the exit from failing on a flush too
            devnull = open(os.devnull, "w")
            sys.stdout = sys.stderr = devnull
        except OSError:
            pass


def run_demo(args: argparse.Namespace) -> int:
    """The demo stack and the dashboard on it. One demo per folder (and per set of
    containers) at a time; the stack goes however the demo ends: quit, SIGHUP (closed
    terminal, tmux kill-session, dropped SSH link), SIGTERM, or an abrupt death (a reaper
    process cleans up then)."""
    from genai_tui import demo

    root = (args.dir or demo.default_dir()).resolve()
    lock = demo.DemoLock(root)
    try:
        lock.acquire(notify=lambda text: say(f"genai-tui demo: {text}"))
    except demo.DemoBusy as exc:
        say(f"genai-tui demo: {exc}", err=True)
        return 1
    except OSError as exc:
        say(f"genai-tui demo: cannot use {root}: {exc}", err=True)
        return 1
    stack: DockerDemo | LocalDemo | None = None
    reaper: demo.Reaper | None = None
    with demo.signals_end_the_demo():
        try:
            stack = choose_demo_stack(args, root)
            reaper = demo.Reaper(stack, lock)
            why = reaper.start()
            if why:
                say(f"genai-tui demo: no cleanup helper ({why}): the stack is removed "
                    "on quit, not if this process is killed", err=True)
            config_path = stack.start()
            cfg = configmod.load_file(config_path)
            use_fingerprint_key(cfg)
            return run_dashboard(cfg, readonly=args.readonly)
        except demo.DemoError as exc:
            say(f"genai-tui demo: {exc}", err=True)
            return 1
        except KeyboardInterrupt:
            return 130
        except demo.DemoSignal as exc:
            return 128 + exc.signum
        finally:
            demo.ignore_end_signals()  # a second SIGHUP/SIGTERM must not cut this short
            try:
                if stack is not None:
                    if stack.started:
                        say("genai-tui demo: stopping the demo stack …")
                    stack.close()
            finally:
                if reaper is not None:
                    reaper.finish()
                lock.release()


def choose_demo_stack(args: argparse.Namespace, root: Path) -> DockerDemo | LocalDemo:
    from genai_tui import demo

    if args.local:
        say("genai-tui demo: --local given: running the simulated stack as local "
            f"processes in {root} …")
        return demo.LocalDemo(root)
    ok, reason = demo.docker_available()
    if ok:
        project = demo.demo_project()
        say("genai-tui demo: Docker engine reachable: starting the simulated stack as "
            f"real containers {project}-* (files in {root}) …")
        return demo.DockerDemo(root, project)
    say(f"genai-tui demo: no Docker engine reachable ({reason}): running the "
        f"simulated stack as local processes in {root} …")
    return demo.LocalDemo(root)


if __name__ == "__main__":
    sys.exit(main())
