"""Bytes a tool writes to its terminal while idle: the tool runs on a pty of its own
(120×40, no tmux in between, so every byte it emits is counted once) and a thread drains
the pty, timestamping what arrives. Over a slow SSH link these bytes are the lag."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

#: what an SSH login sets (genai-tui reads SSH_CONNECTION: no animations over SSH)
SSH_ENV = {"SSH_CONNECTION": "192.0.2.10 50022 192.0.2.20 22",
           "SSH_CLIENT": "192.0.2.10 50022 22"}


class PtyRun:
    """One tool on a fresh pty; `bytes_between(t0, t1)` counts what it wrote then."""

    def __init__(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str],
                 cols: int = 120, rows: int = 40) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        full = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(cols),
                "LINES": str(rows), **env}
        for key in ("TMUX", "TMUX_PANE"):
            full.pop(key, None)
        if "SSH_CONNECTION" not in env:
            for key in ("SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY"):
                full.pop(key, None)
        self.started = time.time()
        self.proc = subprocess.Popen(list(argv), cwd=cwd, env=full, stdin=slave,
                                     stdout=slave, stderr=slave, start_new_session=True,
                                     preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.master = master
        self.chunks: list[tuple[float, int]] = []
        #: set `keep` to also keep the bytes (to see what a tool redraws)
        self.keep = False
        self.raw: list[tuple[float, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="bench-pty", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(self.master, 1 << 16)
            except OSError:  # the tool exited: EIO on Linux
                return
            if not data:
                return
            self.chunks.append((time.time(), len(data)))
            if self.keep:
                self.raw.append((time.time(), data))

    def bytes_between(self, t0: float, t1: float) -> int:
        return sum(n for t, n in list(self.chunks) if t0 <= t < t1)

    def total(self) -> int:
        return sum(n for _t, n in list(self.chunks))

    def close(self, quit_key: str = "q") -> None:
        """The quit key, then SIGTERM / SIGKILL to the session if it does not exit."""
        try:
            os.write(self.master, quit_key.encode())
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, sig)
                    self.proc.wait(timeout=5)
                    break
                except (OSError, subprocess.TimeoutExpired):
                    continue
        self._stop.set()
        self._thread.join(2)
        try:
            os.close(self.master)
        except OSError:
            pass


def idle_bytes(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], settle_s: float,
               window_s: float, quit_key: str = "q") -> dict[str, float]:
    """Start the tool, let it settle (first screen, first data), then count the bytes it
    writes in `window_s` untouched; per 60 s."""
    run = PtyRun(argv, cwd=cwd, env=env)
    try:
        time.sleep(settle_s)
        t0 = time.time()
        time.sleep(window_s)
        t1 = time.time()
        n = run.bytes_between(t0, t1)
        frames = sum(1 for t, _n in list(run.chunks) if t0 <= t < t1)
        startup = run.bytes_between(0, t0)
        alive = run.proc.poll() is None
    finally:
        run.close(quit_key)
    return {"seconds": round(t1 - t0, 2), "bytes": n, "per_60s": n * 60.0 / (t1 - t0),
            "writes": frames, "startup_bytes": startup, "alive": alive}
