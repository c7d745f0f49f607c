"""`genai-tui history`: the event history for scripts and post-mortems.

Reads the config's history file read-only (a dashboard may be writing it meanwhile: WAL
readers never wait for it). Oldest first, as a post-mortem reads; `--json` prints one
document, `--export FILE` writes JSON lines (one event each, atomically) to attach to an
incident. Exit status: 0, or 3 when there is no usable history (with the reason).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from genai_tui.config import Config
from genai_tui.safety import one_line

EXIT_OK, EXIT_UNKNOWN = 0, 3
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str) -> float:
    """argparse type: `90`, `90s`, `15m`, `2h`, `7d`, `1w` -> seconds."""
    m = _DURATION.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration (like 90s, 15m, 2h, 7d): {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def add_parser(sub: Any, *, parents: list[argparse.ArgumentParser]) -> None:
    """Register `history` on the main parser's subparsers."""
    from genai_tui.engine.history import GROUPS, SEVERITIES

    p = sub.add_parser(
        "history", help="the event history: what happened to the stack, for scripts and "
        "post-mortems", parents=parents,
        epilog="Times are UTC in JSON, local in the table. Exit status 3 when there is no "
        "usable history (the reason is printed).")
    p.add_argument("--since", type=duration, metavar="AGO",
                   help="only events newer than this (90s, 15m, 2h, 7d)")
    p.add_argument("--service", metavar="NAME", help="only this service's events")
    p.add_argument("--kind", metavar="KIND",
                   help=f"a kind (die, oom, finding_open…) or a group: {', '.join(GROUPS)}")
    p.add_argument("--severity", choices=SEVERITIES, help="this severity or worse")
    p.add_argument("--limit", type=int, default=10000, metavar="N",
                   help="at most N events, the newest (default 10000)")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print one JSON document")
    shape.add_argument("--export", type=Path, metavar="FILE",
                       help="write the events as JSON lines to FILE (replaced atomically), "
                       "to attach to an incident")


def run(args: argparse.Namespace, config: Config) -> int:
    from genai_tui.engine.history import EventStore

    store = EventStore.for_config(config, writer=False)
    try:
        if store.mode == "off":
            doc = {"history": "off", "reason": store.reason, "events": []}
            if getattr(args, "json", False):
                print(json.dumps(doc, indent=2))
            else:
                print(f"genai-tui history: {one_line(store.status, 300)}", file=sys.stderr)
            return EXIT_UNKNOWN
        since = time.time() - args.since if args.since else None
        events = store.events(since=since, service=args.service, kind=args.kind,
                              severity=args.severity, limit=max(1, args.limit),
                              newest_first=True)
        events.reverse()  # oldest first: the order things happened in
        if args.export is not None:
            return _export(args.export, [e.to_json() for e in events])
        if args.json:
            print(json.dumps({"history": store.mode, "path": str(store.path),
                              "events": [e.to_json() for e in events]}, indent=2,
                             ensure_ascii=False))
            return EXIT_OK
        print(render(events))
        return EXIT_OK
    finally:
        store.close()


def render(events: list[Any]) -> str:
    from genai_tui.textout import table

    return table(["TIME", "SERVICE", "KIND", "SEVERITY", "WHAT"], [
        [local_time(e.ts), e.service or "-", e.kind, e.severity, e.text] for e in events]
    ) if events else "no events"


def local_time(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _export(path: Path, docs: list[dict[str, Any]]) -> int:
    """JSON lines, written to a temp file beside `path`, fsynced, then renamed over it."""
    from genai_tui.sources.tokens.fsutil import reason

    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    except OSError as exc:
        print(f"genai-tui history: cannot write {one_line(path)}: {reason(exc)}",
              file=sys.stderr)
        return EXIT_UNKNOWN
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for d in docs:
                fh.write(json.dumps(d, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        with _suppress():
            os.unlink(tmp)
        print(f"genai-tui history: cannot write {one_line(path)}: {reason(exc)}",
              file=sys.stderr)
        return EXIT_UNKNOWN
    print(f"{len(docs)} event(s) written to {one_line(path)}", file=sys.stderr)
    return EXIT_OK


def _suppress() -> Any:
    import contextlib

    return contextlib.suppress(OSError)
