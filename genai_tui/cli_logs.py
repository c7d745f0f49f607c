"""`genai-tui logs [SERVICE]`: a service's log (or every service's, merged) on stdout,
cleaned and redacted exactly as the dashboard's log panel shows it.

It reads through the same `LogHub` as the panel (containers through Docker, process
services through their `log_file`), so no escape sequence reaches the terminal and no
secret value of the configured token locations is printed. The last `--tail` lines
(default 200), then with `--follow` whatever comes, until the reader goes: stdin at EOF
when it is a pipe or socket (an SSH channel closed), a broken pipe, SIGHUP, SIGTERM or
Ctrl+C. The hub is always closed, within about a second.

`--json`: one object per line, `{"ts": NS|null, "service": ..., "text": ...}` (`"meta":
true` on the lines the follower writes itself, like "container restarted"); with
--follow also `{"service": ..., "state": ..., "status": ...}` for each service after the
backlog and whenever its status changes, so a reader can say what state a stream is in
(`state`: follower.STATES or a file state; `status`: the panel's words). The fleet view
reads this over SSH (engine/remote_logs.py). Exit status: 0, or 3 for an unknown
service or when no log could be read.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import stat
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, Any

from genai_tui.config import Config
from genai_tui.safety import one_line

EXIT_OK, EXIT_UNKNOWN = 0, 3
DEFAULT_TAIL = 200
MAX_TAIL = 100_000
#: how long the streams may take to open, then to deliver their backlog (seconds)
OPEN_WAIT, BACKLOG_WAIT = 10.0, 5.0
#: the backlog is in once no line came for this long (longer for a container stream that
#: has sent nothing yet: its request may still be on its way)
QUIET, QUIET_EMPTY = 0.3, 1.5
#: how often --follow prints what came
FLUSH_EVERY = 0.1
#: token locations are re-read this often while following (they change on unify)
SECRETS_EVERY = 60.0
#: states in which a source delivers lines
READABLE = ("following", "stopped")


def add_parser(sub: Any, *, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Register `logs` on the main parser's subparsers."""
    p = sub.add_parser(
        "logs", help="print a service's log (every service's, merged, without SERVICE), "
        "cleaned and redacted as the dashboard shows it", parents=list(parents),
        epilog="Exit status 3 for an unknown service or when no log could be read. "
        "--follow ends when stdin (a pipe) closes, on a broken pipe, SIGHUP, SIGTERM or "
        "Ctrl+C.")
    p.add_argument("service", nargs="?", metavar="SERVICE",
                   help="a configured service (default: every service, merged)")
    p.add_argument("-f", "--follow", action="store_true",
                   help="keep printing new lines until stopped")
    p.add_argument("-n", "--tail", type=_tail, default=DEFAULT_TAIL, metavar="N",
                   help=f"the last N lines first (default {DEFAULT_TAIL})")
    p.add_argument("--json", action="store_true",
                   help='one JSON object per line: {"ts", "service", "text"}')


def _tail(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {one_line(text, 40)!r}") \
            from None
    if not 0 <= value <= MAX_TAIL:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_TAIL}")
    return value


def run(args: argparse.Namespace, config: Config, *, out: IO[str] | None = None,
        stop: threading.Event | None = None) -> int:
    """Print the tail (and with --follow what follows); the exit status."""
    from genai_tui.sources.logs import LogHub

    out = out or sys.stdout
    with contextlib.suppress(AttributeError, ValueError):
        out.reconfigure(errors="replace")  # type: ignore[attr-defined]
    names = [s.name for s in config.services]
    service: str | None = getattr(args, "service", None)
    if service is not None and service not in names:
        known = ", ".join(one_line(n, 64) for n in names) or "none"
        print(f"genai-tui logs: no service named {one_line(service, 64)!r} "
              f"(configured: {known})", file=sys.stderr)
        return EXIT_UNKNOWN
    tail: int = args.tail
    logs = dataclasses.replace(config.logs, tail=tail,
                               buffer_lines=max(config.logs.buffer_lines, tail, 1))
    hub = LogHub(dataclasses.replace(config, logs=logs))
    stop = stop or threading.Event()
    from genai_tui.cli_stream import stop_on_signals

    restore = stop_on_signals(stop)
    printer = _Printer(out, stop, as_json=bool(args.json), merged=service is None,
                       records=bool(args.json and args.follow),
                       width=max((len(one_line(n, 64)) for n in names), default=0))
    try:
        source: Any = hub.merged() if service is None else hub.follower(service)
        followers = list(source.followers) if service is None else [source]
        _settle(followers, stop)
        lines = source.snapshot()
        printer.lines(lines[-tail:] if tail else [])
        statuses = printer.statuses(followers, {})
        if not args.follow:
            return EXIT_OK if any(f.state in READABLE for f in followers) or lines \
                else EXIT_UNKNOWN
        _watch_stdin(stop)
        secrets_at = time.monotonic()
        while not stop.wait(FLUSH_EVERY):
            printer.lines(source.drain())
            statuses = printer.statuses(followers, statuses)
            if time.monotonic() - secrets_at >= SECRETS_EVERY:
                hub.refresh_secrets()
                secrets_at = time.monotonic()
        return EXIT_OK
    finally:
        restore()
        hub.close()


def _settle(followers: Sequence[Any], stop: threading.Event) -> None:
    """Wait until every stream is open and its backlog read (no line for a moment and
    each log file read to its end), within OPEN_WAIT + BACKLOG_WAIT."""
    end = time.monotonic() + OPEN_WAIT
    while not stop.is_set() and time.monotonic() < end \
            and any(f.state == "starting" for f in followers):
        stop.wait(0.02)
    end = time.monotonic() + BACKLOG_WAIT
    last, since = -1, time.monotonic()
    while not stop.is_set() and time.monotonic() < end:
        total = sum(f.total for f in followers)
        now = time.monotonic()
        if total != last:
            last, since = total, now
        elif all(_caught_up(f, now - since) for f in followers):
            return
        stop.wait(0.02)


def _caught_up(follower: Any, quiet: float) -> bool:
    if follower.state not in READABLE:
        return True  # missing, unreadable, engine down: nothing more is coming now
    file = getattr(follower, "file", None)
    if file is not None:  # a log file: read up to its size, then a quiet moment
        try:
            size = os.stat(file.path).st_size if file.path is not None else 0
        except OSError:
            size = 0
        return file.pos >= size and quiet >= QUIET
    return quiet >= (QUIET if follower.total else QUIET_EMPTY)


class _Printer:
    """Lines to the reader, in text or JSON; a reader gone (broken pipe) stops quietly."""

    def __init__(self, out: IO[str], stop: threading.Event, *, as_json: bool,
                 merged: bool, records: bool, width: int) -> None:
        self.out = out
        self.records = records
        self.stop = stop
        self.as_json = as_json
        self.merged = merged
        self.width = width

    def lines(self, lines: Sequence[Any]) -> None:
        if not lines or self.stop.is_set():
            return
        from genai_tui.sources.logs import META

        if self.as_json:
            rows = []
            for ln in lines:
                doc: dict[str, Any] = {"ts": ln.ts or None, "service": ln.service,
                                       "text": ln.text}
                if ln.kind == META:
                    doc["meta"] = True
                rows.append(json.dumps(doc))
        elif self.merged:
            rows = [f"{one_line(ln.service, 64):<{self.width}} | {ln.text}" for ln in lines]
        else:
            rows = [ln.text for ln in lines]
        self._write("\n".join(rows) + "\n")

    def statuses(self, followers: Sequence[Any], said: dict[str, str]) -> dict[str, str]:
        """Say each service's status once, and again when it changes (--follow --json:
        every status as a record, for the reader's status line; else what is not plain
        following, to stderr)."""
        now = dict(said)
        for f in followers:
            words = one_line(f.status_text, 300)
            if said.get(f.service) == words:
                continue
            now[f.service] = words
            if self.records:
                self._write(json.dumps({"service": f.service, "state": f.state,
                                        "status": words}) + "\n")
            elif f.state != "following" or f.service in said:
                print(f"genai-tui logs: {one_line(f.service, 64)}: {words}",
                      file=sys.stderr, flush=True)
        return now

    def _write(self, text: str) -> None:
        from genai_tui.cli_stream import write_or_stop

        write_or_stop(self.out, text, self.stop)


def _watch_stdin(stop: threading.Event, fd: int = 0) -> None:
    """Stop when stdin closes, if it is a pipe or socket (how an SSH channel or a reading
    process says it went). A terminal, /dev/null or a file is left alone: the first would
    lose its keystrokes, the others are at their end from the start."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return

    def read() -> None:
        # raw reads of the descriptor: a buffered reader's lock, held by this blocked
        # thread, would abort the interpreter's exit
        with contextlib.suppress(OSError):
            while not stop.is_set() and os.read(fd, 4096):
                pass
        stop.set()

    threading.Thread(target=read, name="logs-stdin", daemon=True).start()
