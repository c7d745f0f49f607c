"""Command line: the dashboard (default), `check`, `exporter`, `tokens`, `demo`."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genai_tui import __version__
from genai_tui import config as configmod
from genai_tui.model import Severity, Snapshot
from genai_tui.safety import one_line, redact

if TYPE_CHECKING:
    from genai_tui.demo import DockerDemo, LocalDemo

EXIT_OK, EXIT_WARNING, EXIT_CRITICAL, EXIT_UNKNOWN = 0, 1, 2, 3
STATUS_WORDS = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
#: the exporter's defaults (repeated here so `--help` needs no prometheus_client import)
DEFAULT_LISTEN = "127.0.0.1:9188"
TEXTFILE_NAME = "genai-tui.prom"


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


def fleet_options(*, subcommand: bool) -> argparse.ArgumentParser:
    """`--host` (repeatable) and `--no-local`: the fleet view, and `check` per host."""
    unset: dict[str, Any] = {"default": argparse.SUPPRESS} if subcommand else {}
    opts = argparse.ArgumentParser(add_help=False)
    opts.add_argument("--host", action="append", metavar="[USER@]HOST", dest="hosts",
                      **unset, help="a host of the fleet, reached with ssh (repeatable; "
                      "a [[hosts]] name of the config, or an ssh destination)")
    opts.add_argument("--no-local", action="store_true", dest="no_local", **unset,
                      help="leave this machine out of the fleet")
    return opts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genai-tui",
        description="Terminal dashboard for a self-hosted GenAI image stack: containers, "
        "GPUs, logs, ComfyUI-Login tokens and probes on one screen.",
        epilog="Exit status of `check`: 0 OK, 1 warning, 2 critical, 3 unknown "
        "(bad config, Docker engine unreachable or a usage error). --config and "
        "--readonly may also follow the command.",
        parents=[global_options(subcommand=False), fleet_options(subcommand=False)],
    )
    parser.add_argument("--version", action="version", version=f"genai-tui {__version__}")
    common = [global_options(subcommand=True)]
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    fleet = [*common, fleet_options(subcommand=True)]
    sub.add_parser("dashboard", help="open the dashboard (the default; the fleet view "
                   "with --host or [[hosts]])", parents=fleet)
    check = sub.add_parser(
        "check", help="one-shot snapshot for scripts, cron and monitoring", parents=fleet,
        epilog="Exit status: 0 OK, 1 warning, 2 critical, 3 unknown (bad config, Docker "
        "engine unreachable or a usage error).")
    shape = check.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print one JSON document")
    shape.add_argument("--format", choices=("table", "json", "openmetrics"),
                       help="what to print: the table with a plugin status line "
                       "(default), JSON, or the exporter's metric families as OpenMetrics")
    check.add_argument("--textfile", type=Path, metavar="DIR",
                       help=f"also write DIR/{TEXTFILE_NAME} (Prometheus text format, "
                       "replaced atomically) for node_exporter's textfile collector")
    exporter = sub.add_parser(
        "exporter", help="serve the live stack's metrics to Prometheus (/metrics, /healthz)",
        parents=common, epilog="A scrape only reads the engine's latest snapshot. Binding "
        "anything but a loopback address must be asked for and is warned about.")
    exporter.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                          help=f"address to serve on (default {DEFAULT_LISTEN}; "
                          "[::1]:PORT for IPv6; 0.0.0.0:PORT for every interface)")
    exporter.add_argument("--stale-after", type=positive_seconds, metavar="SECONDS",
                          help="/healthz answers 503 when the snapshot has not changed "
                          "for this long (default: 30, or 3 poll intervals if longer)")
    demo = sub.add_parser("demo", help="run the simulated four-service stack and open the "
                          "dashboard on it (removed on exit)", parents=common)
    demo.add_argument("--dir", type=Path, help="where the demo's config and token files go")
    demo.add_argument("--local", action="store_true",
                      help="run the stack as local processes even when Docker is reachable")
    from genai_tui import cli_tokens

    cli_tokens.add_parser(sub, parents=common)
    from genai_tui import cli_history

    cli_history.add_parser(sub, parents=common)
    from genai_tui import cli_init

    cli_init.add_parser(sub, parents=common)
    from genai_tui import cli_logs

    cli_logs.add_parser(sub, parents=common)
    from genai_tui import cli_stream

    cli_stream.add_parser(sub, parents=common)
    from genai_tui import cli_actions

    cli_actions.add_parser(sub, parents=common)
    return parser


def positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be above 0: {text!r}")
    return value


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
    if command == "init":  # before the config: init is how a host gets one
        from genai_tui import cli_init

        return cli_init.run(args, readonly=args.readonly)
    try:
        cfg = configmod.load(args.config)
    except configmod.ConfigError as exc:
        print(f"genai-tui: bad config: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    use_fingerprint_key(cfg)
    try:
        hosts = fleet_hosts(cfg, getattr(args, "hosts", None) or [])
    except ValueError as exc:
        print(f"genai-tui: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    local = not getattr(args, "no_local", False) and cfg.fleet.local
    if command == "dashboard":
        if hosts:
            return run_fleet(cfg, hosts, local=local, readonly=args.readonly)
        return run_dashboard(cfg, readonly=args.readonly)
    if command == "check":
        fmt = "json" if args.json else (args.format or "table")
        if getattr(args, "hosts", None):
            return run_check_hosts(cfg, hosts, local=local, fmt=fmt)
        return run_check(cfg, fmt=fmt, textfile=args.textfile)
    if command == "exporter":
        from genai_tui import exporter

        return exporter.run(cfg, args.listen, stale_after=args.stale_after)
    if command == "stream":
        from genai_tui import cli_stream

        return cli_stream.run(cfg, readonly=args.readonly, interval=args.interval)
    if command == "logs":
        from genai_tui import cli_logs

        return cli_logs.run(args, cfg)
    if command == "history":
        from genai_tui import cli_history

        return cli_history.run(args, cfg)
    if command == "tokens":
        from genai_tui import cli_tokens

        return cli_tokens.run(args, cfg, readonly=args.readonly)
    if command in ("restart", "unpause", "jobs"):
        from genai_tui import cli_actions

        return cli_actions.run(args, cfg, readonly=args.readonly)
    print(f"genai-tui: unknown command {command!r}", file=sys.stderr)
    return EXIT_UNKNOWN


def use_fingerprint_key(cfg: configmod.Config) -> None:
    """Fingerprints keyed per install, so every face and run of this stack agrees (see
    genai_tui.secret); without a usable key file they are valid for this run only."""
    from genai_tui import secret
    from genai_tui.sources.tokens import read

    if secret.use_key_file(cfg.tokens.state_dir) is None:
        read.use_verdict_cache(cfg.tokens.state_dir)


def ssh_frame_rate() -> None:
    """Over SSH every frame costs bandwidth: ask for fewer of them. Textual reads this when
    it is first imported, so it must run before any UI import."""
    import os

    if os.environ.get("SSH_CONNECTION"):
        os.environ.setdefault("TEXTUAL_FPS", "15")


def fleet_hosts(cfg: configmod.Config, given: Sequence[str]) -> list[configmod.HostEntry]:
    """The hosts asked for: each `--host` a [[hosts]] name or an ssh destination; none
    given, the config's [[hosts]]."""
    if not given:
        return list(cfg.fleet.hosts)
    out: list[configmod.HostEntry] = []
    for word in given:
        entry = next((h for h in cfg.fleet.hosts if h.name == word), None)
        if entry is None:
            why = configmod.check_destination(word)
            if why:
                raise ValueError(f"--host {one_line(word, 80)!r}: {why}")
            entry = configmod.HostEntry(name=word.rsplit("@", 1)[-1], ssh=word)
        if any(e.name == entry.name for e in out):
            raise ValueError(f"--host {one_line(word, 80)!r}: given twice")
        out.append(entry)
    return out


def run_fleet(cfg: configmod.Config, hosts: Sequence[configmod.HostEntry], *,
              local: bool, readonly: bool) -> int:
    """The fleet screen over every host (this machine too unless --no-local)."""
    ssh_frame_rate()
    from genai_tui.engine.fleet import Fleet
    from genai_tui.ui.fleet import run_fleet as run_screens

    fleet = Fleet(cfg, hosts, local=local)
    fleet.start()
    try:
        return run_screens(fleet, readonly=readonly)
    finally:
        fleet.close()


def run_check_hosts(cfg: configmod.Config, hosts: Sequence[configmod.HostEntry], *,
                    local: bool, fmt: str) -> int:
    """`check --host …`: every host at once; JSON: one document per host per line; the
    exit status is the worst host's (critical, then unknown, then warning)."""
    from genai_tui.engine.fleet import check_hosts, worst_exit

    if fmt == "openmetrics":
        print("genai-tui: --host takes --json or the table, not openmetrics",
              file=sys.stderr)
        return EXIT_UNKNOWN
    docs = check_hosts(cfg, hosts, local=local)
    for doc in docs:
        if fmt == "json":
            print(json.dumps(doc), flush=True)
            continue
        check = doc.get("check") or {}
        findings = check.get("findings") or []
        worst = findings[0]["message"] if findings else ""
        line = f"{one_line(doc['host'], 60)}: {doc['status'].upper()}"
        if doc.get("error"):
            line += f" — {one_line(doc['error'], 300)}"
        elif worst:
            line += f" — {one_line(worst, 300)}" + (
                f" (+{len(findings) - 1} more)" if len(findings) > 1 else "")
        print(line)
    return worst_exit([int(d["exit"]) for d in docs])


def run_dashboard(cfg: configmod.Config, *, readonly: bool) -> int:
    ssh_frame_rate()
    from genai_tui.engine.live import Stack

    stack = Stack(cfg)
    stack.start_early()  # the first container listing while Textual is imported
    try:
        from genai_tui.ui.app import GenaiTui

        app = GenaiTui(cfg, readonly=readonly, stack=stack)
        result = app.run()
    finally:
        stack.close()
    return int(result or 0)


# ------------------------------------------------------------------ check


def exit_status(snap: Snapshot, cfg: configmod.Config) -> int:
    """The monitoring-plugin convention: 0 OK, 1 warning, 2 critical, 3 unknown."""
    if not snap.docker.reachable and any(s.runtime == "docker" for s in cfg.services):
        return EXIT_UNKNOWN
    worst = min((f.severity.rank for f in snap.findings), default=Severity.INFO.rank)
    return {0: EXIT_CRITICAL, 1: EXIT_WARNING}.get(worst, EXIT_OK)


def run_check(cfg: configmod.Config, *, fmt: str = "table",
              textfile: Path | None = None) -> int:
    """One snapshot, printed as `fmt` (table, json, openmetrics) and, with `textfile`,
    written there for node_exporter; the exit status is the snapshot's (3 when the
    textfile cannot be written, unless the stack is critical)."""
    from genai_tui.engine.collect import collect_once

    if textfile is not None and not textfile.is_dir():
        print(f"genai-tui: --textfile {one_line(textfile)}: not a folder", file=sys.stderr)
        return EXIT_UNKNOWN
    snap = collect_once(cfg)
    status = exit_status(snap, cfg)
    if fmt == "json":
        doc = snap.to_json()
        doc["status"] = STATUS_WORDS[status].lower()
        doc["config"] = cfg.source
        print(json.dumps(doc, indent=2))
    elif fmt == "openmetrics":
        from genai_tui import exporter

        sys.stdout.write(exporter.render(snap, openmetrics=True).decode())
    else:
        print(render_check(snap, cfg, status))
    if textfile is not None:
        from genai_tui import exporter
        from genai_tui.sources.tokens.fsutil import reason

        try:
            exporter.write_textfile(textfile, snap)
        except OSError as exc:
            print(f"genai-tui: cannot write {one_line(textfile / TEXTFILE_NAME)}: "
                  f"{reason(exc)}", file=sys.stderr)
            return status if status == EXIT_CRITICAL else EXIT_UNKNOWN
    return status


def _since(at: datetime | None) -> str:
    """Since when a finding holds, in the admin's zone: the time today, else the date."""
    if at is None:
        return "-"
    local = at.astimezone()
    today = datetime.now(local.tzinfo).date()
    return local.strftime("%H:%M" if local.date() == today else "%Y-%m-%d %H:%M")


def render_check(snap: Snapshot, cfg: configmod.Config, status: int) -> str:
    from genai_tui.textout import table

    out = [plugin_line(snap, cfg, status), f"genai-tui check — {one_line(cfg.source)}"]
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
    if snap.jobs is not None:
        from genai_tui.sources.jobs import summary

        out.extend(summary(sj) for sj in snap.jobs.services)
    out.append("")
    if snap.findings:
        out.append(table(["SEVERITY", "CODE", "SERVICE", "SINCE", "MESSAGE"], [
            [f.severity.value, f.code, f.service or "-", _since(f.since), f.message]
            for f in snap.findings]))
        for f in snap.findings:  # the evidence: the service's own last error line
            if f.log_line:
                out.append(f"  {f.service or '-'} last error logged: "
                           f"{one_line(redact(f.log_line), 300)}")
    else:
        out.append("all good: no findings")
    out.append("")
    out.append("status: " + STATUS_WORDS[status])
    return "\n".join(out)


def plugin_line(snap: Snapshot, cfg: configmod.Config, status: int) -> str:
    """The monitoring-plugin first line: `GENAI-TUI STATUS - summary | perfdata`, the
    perfdata in the Nagios grammar (`'label'=value[UOM];warn;crit;min;max`)."""
    bad = [f for f in snap.findings if f.severity is not Severity.INFO]
    crit = sum(f.severity is Severity.CRITICAL for f in bad)
    warn = len(bad) - crit
    if not snap.docker.reachable and any(s.runtime == "docker" for s in cfg.services):
        summary = [snap.docker.error or "Docker engine unreachable"]
    else:
        running = sum(c.running for c in snap.containers)
        ok = sum(p.outcome == "ok" for p in snap.probes)
        summary = [f"{running}/{len(snap.containers)} running",
                   f"{ok}/{len(snap.probes)} probes ok"]
        if snap.tokens is not None and not snap.tokens.consistent:
            summary.append("tokens NOT consistent")
    if bad:
        codes = list(dict.fromkeys(f.code for f in bad))
        more = f" +{len(codes) - 4}" if len(codes) > 4 else ""
        summary.append(f"{crit} critical, {warn} warning: {' '.join(codes[:4])}{more}")
    else:
        summary.append("no findings")
    text = one_line(", ".join(summary), 300).replace("|", "/")
    perf = " ".join(perfdata(snap, cfg, crit=crit, warn=warn))
    return f"GENAI-TUI {STATUS_WORDS[status]} - {text}" + (f" | {perf}" if perf else "")


def perfdata(snap: Snapshot, cfg: configmod.Config, *, crit: int, warn: int) -> list[str]:
    """Performance data items: containers running, restarts, probe latencies, GPU and
    host memory use, finding counts (a threshold of 0 alerts on any)."""
    items = [_perf("containers_running", sum(c.running for c in snap.containers),
                   mn=0, mx=len(snap.containers))]
    items += [_perf(f"{c.service}_restarts", c.restart_count, "c") for c in snap.containers]
    items += [_perf(f"probe_{p.service}_latency", round(p.latency_ms / 1000.0, 4), "s")
              for p in snap.probes if p.latency_ms is not None]
    if snap.gpu is not None:
        items += [_perf(f"gpu{g.index}_mem", round(g.memory_pct, 1), "%",
                        warn=cfg.gpu.memory_warn_pct, mn=0, mx=100)
                  for g in snap.gpu.gpus if g.memory_pct is not None]
    if snap.host is not None and snap.host.memory_pct is not None:
        items.append(_perf("host_mem", round(snap.host.memory_pct, 1), "%",
                           warn=cfg.host.memory_warn_pct, mn=0, mx=100))
    items.append(_perf("findings_critical", crit, crit=0, mn=0))
    items.append(_perf("findings_warning", warn, warn=0, mn=0))
    return items


_PERF_LABEL = re.compile(r"[^A-Za-z0-9_.-]+")


def _perf(name: str, value: float, uom: str = "", *, warn: float | None = None,
          crit: float | None = None, mn: float | None = None,
          mx: float | None = None) -> str:
    """`'label'=value[UOM];warn;crit;min;max`, empty trailing fields dropped; the label
    reduced to letters, digits, `_`, `.` and `-` (no quote or `=` can break it)."""
    label = _PERF_LABEL.sub("_", one_line(name, 60)).strip("_") or "value"
    fields = [f"{_num(value)}{uom}"] + ["" if v is None else _num(v)
                                        for v in (warn, crit, mn, mx)]
    while len(fields) > 1 and not fields[-1]:
        fields.pop()
    return f"'{label}'=" + ";".join(fields)


def _num(value: float) -> str:
    """A plain decimal (no exponent, no trailing zeros)."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


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
