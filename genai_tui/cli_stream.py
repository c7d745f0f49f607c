"""`genai-tui stream --json`: the live engine's snapshot as JSON lines on stdout, the
remote half of the fleet view (see genai_tui/engine/wire.py for the frames).

A face like the exporter: one live Stack, read only. Changes are coalesced to one frame
per `--interval`, a part is sent only when its encoding changed, and a beat says "alive"
after `wire.BEAT` seconds of silence, so an idle stack costs a few hundred bytes a
minute. It ends when its reader goes: stdin at EOF (the SSH channel closed), a broken
pipe, SIGHUP, SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import IO, Any

from genai_tui import __version__
from genai_tui.config import Config
from genai_tui.safety import one_line

#: what a reader may ask (anything else is ignored)
REFRESHABLE = (None, "containers", "probes", "tokens", "gpu", "host", "jobs")
#: the longest command line read from stdin
MAX_COMMAND = 4096


def add_parser(sub: Any, *, parents: Sequence[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "stream", help="print the live snapshot as JSON lines (the fleet view reads it "
        "over SSH)", parents=list(parents),
        description="A full snapshot first, then the parts that changed, as JSON lines; "
        "ends when stdin closes. Read only: actions are the other subcommands.")
    p.add_argument("--json", action="store_true", help="JSON lines (the only format)")
    p.add_argument("--interval", type=_interval, default=1.0, metavar="SECONDS",
                   help="at most one frame per this many seconds (default 1)")


def _interval(text: str) -> float:
    from genai_tui.cli import positive_seconds

    value = positive_seconds(text)
    if not 0.05 <= value <= 60:
        raise argparse.ArgumentTypeError("must be between 0.05 and 60 seconds")
    return value


def run(config: Config, *, readonly: bool, interval: float = 1.0,
        out: IO[str] | None = None, stdin_fd: int | None = None,
        stop: threading.Event | None = None) -> int:
    """Stream until the reader goes; 0 then (a reader leaving is no error)."""
    from genai_tui.engine import wire
    from genai_tui.engine.live import Change, Stack

    out = out or sys.stdout
    stop = stop or threading.Event()
    stack = Stack(config)
    lock = threading.Lock()
    pending: dict[str, str] = {}

    def on_change(change: Change) -> None:  # on the stack's loop: the part is whole here
        if change.part in wire.PART_TYPES:
            text = wire.dumps(wire.encode(getattr(stack.snapshot, change.part)))
            with lock:
                pending[change.part] = text

    writer = _Writer(out, stop)
    restore = stop_on_signals(stop)
    refresh: list[tuple[dict[str, int], float]] = []  # asked-for rounds, and until when
    fd = sys.stdin.fileno() if stdin_fd is None else stdin_fd
    threading.Thread(target=_read_commands, args=(fd, stop, stack, refresh, lock),
                     name="stream-commands", daemon=True).start()
    stack.subscribe(on_change)
    stack.start()
    try:
        writer.line(wire.dumps({
            "type": "hello", "protocol": wire.PROTOCOL, "version": __version__,
            "host": one_line(socket.gethostname(), 120), "readonly": readonly,
            "config": wire.public_config(config), "at": _now()}))
        # the first picture whole (or what there is after a few seconds)
        settle = time.monotonic() + 5.0
        while not stop.is_set() and not stack.settled() and time.monotonic() < settle:
            stop.wait(0.05)
        sent: dict[str, str] = {}
        kind = "full"
        last = time.monotonic()
        while not stop.is_set():
            with lock:
                batch = dict(pending)
                pending.clear()
                waiting = list(refresh)
            if kind == "full":  # every part, also those no change has named yet
                batch = {p: batch.get(p) or wire.dumps(wire.encode(getattr(stack.snapshot, p)))
                         for p in wire.STREAM_PARTS}
            changed = {p: t for p, t in batch.items() if sent.get(p) != t}
            if changed or kind == "full":
                body = ",".join(f"{json.dumps(p)}:{t}" for p, t in changed.items())
                writer.line(f'{{"type":"{kind}","at":"{_now()}","parts":{{{body}}}}}')
                sent.update(changed)
                kind, last = "delta", time.monotonic()
            done = [w for w in waiting if w[1] < time.monotonic()
                    or all(stack.rounds(p) >= n for p, n in w[0].items())]
            if done:
                with lock:
                    for w in done:
                        with contextlib.suppress(ValueError):
                            refresh.remove(w)
                writer.line(f'{{"type":"refreshed","at":"{_now()}"}}')
                last = time.monotonic()
            elif time.monotonic() - last >= wire.BEAT:
                writer.line(f'{{"type":"beat","at":"{_now()}"}}')
                last = time.monotonic()
            stop.wait(interval)
        writer.line(wire.dumps({"type": "bye", "reason": "stopped", "at": _now()}))
    finally:
        stack.close()
        restore()
    return 0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Writer:
    """Lines to the reader; a reader gone (broken pipe) stops the stream quietly."""

    def __init__(self, out: IO[str], stop: threading.Event) -> None:
        self.out = out
        self.stop = stop

    def line(self, text: str) -> None:
        if self.stop.is_set() and not text.startswith('{"type":"bye"'):
            return
        write_or_stop(self.out, text + "\n", self.stop)


def write_or_stop(out: IO[str], text: str, stop: threading.Event) -> None:
    """Write and flush; a reader gone (broken pipe) sets `stop` and points `out` at
    /dev/null, so Python's own flush at exit does not fail on the dead pipe again."""
    try:
        out.write(text)
        out.flush()
    except (BrokenPipeError, OSError, ValueError):
        stop.set()
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())


def _read_commands(fd: int, stop: threading.Event, stack: Any,
                   refresh: list[tuple[dict[str, int], float]], lock: threading.Lock
                   ) -> None:
    """Commands from the reader, one JSON object per line; EOF (the channel closed)
    ends the stream. Raw reads of the descriptor: a buffered reader's lock, held by this
    blocked thread, would abort the interpreter's exit."""
    buf = b""
    try:
        while not stop.is_set():
            chunk = os.read(fd, MAX_COMMAND)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            if len(buf) > MAX_COMMAND:
                buf = b""  # no command is that long: drop it
            for line in lines:
                _command(line, stack, refresh, lock)
    except OSError:
        pass
    stop.set()


def _command(line: bytes, stack: Any, refresh: list[tuple[dict[str, int], float]],
             lock: threading.Lock) -> None:
    try:
        cmd = json.loads(line)
    except ValueError:
        return
    if not isinstance(cmd, dict) or cmd.get("cmd") != "refresh" \
            or cmd.get("part") not in REFRESHABLE:
        return
    part = cmd.get("part")
    chains = ("probes", "tokens", "gpu", "host") if part is None else (part,)
    want = {p: stack.rounds(p) + (2 if stack.in_flight(p) else 1)
            for p in chains if p in ("probes", "tokens", "gpu", "host") and p in stack.parts}
    with lock:
        refresh.append((want, time.monotonic() + 15))
    stack._call_soon(stack.refresh, part)


def stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM, SIGINT and SIGHUP set `stop` (a headless face's reader went away);
    returns what puts the previous handlers back. Off the main thread: nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    saved = {}
    for name in ("SIGTERM", "SIGINT", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            saved[sig] = signal.signal(sig, lambda *_a: stop.set())

    def restore() -> None:
        for sig, handler in saved.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)

    return restore
