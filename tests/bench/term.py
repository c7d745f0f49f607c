"""A real terminal for the tools under test: one tmux session on a private tmux server.

The screen is read with `capture-pane` (what tmux's own virtual terminal shows, i.e. what a
user would see), keys are typed with `send-keys`. A private socket (`tmux -L`) keeps the
bench away from anybody else's tmux sessions and lets cleanup kill exactly what it started.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

Predicate = Callable[[str], object]


def ensure_tmux() -> str:
    """The tmux binary; installed from the distribution when missing (the bench needs it)."""
    path = shutil.which("tmux")
    if path:
        return path
    if shutil.which("apt-get") and os.geteuid() == 0:
        print("bench: tmux missing: installing it with apt-get …", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=False, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "tmux"], check=True,
                       stdout=subprocess.DEVNULL, env={**os.environ,
                                                       "DEBIAN_FRONTEND": "noninteractive"})
        path = shutil.which("tmux")
        if path:
            return path
    raise SystemExit("bench: tmux is required (apt-get install tmux) and could not be "
                     "installed automatically")


@dataclass
class Seen:
    """The outcome of waiting for something to appear on the screen."""

    ok: bool
    at: float  # time.time() of the capture that satisfied the predicate (or gave up)
    screen: str
    captures: int


class Terminal:
    """One tmux session of a fixed size running one command."""

    def __init__(self, socket: str, name: str, cols: int = 120, rows: int = 40) -> None:
        self.tmux = ensure_tmux()
        self.socket = socket
        self.name = name
        self.cols = cols
        self.rows = rows
        self.started_at = 0.0

    def _run(self, *args: str, check: bool = True, timeout: float = 10.0
             ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.tmux, "-L", self.socket, *args], capture_output=True,
                              text=True, check=check, timeout=timeout)

    def start(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None
              ) -> float:
        """Start `argv` in a new session; returns time.time() just before tmux was asked."""
        command = "exec " + " ".join(shlex.quote(a) for a in argv)
        # no status line (the pane gets all rows); keep a pane whose tool exited early so
        # its last words can be read
        args = ["start-server", ";", "set-option", "-g", "status", "off", ";",
                "set-option", "-g", "remain-on-exit", "on", ";",
                "new-session", "-d", "-s", self.name, "-x", str(self.cols), "-y",
                str(self.rows), "-c", str(cwd)]
        for key, value in (env or {}).items():
            args += ["-e", f"{key}={value}"]
        self.started_at = time.time()
        self._run(*args, command)
        return self.started_at

    def pane_pid(self) -> int | None:
        out = self._run("display-message", "-p", "-t", self.name, "#{pane_pid}", check=False)
        try:
            return int(out.stdout.strip())
        except ValueError:
            return None

    def dead(self) -> bool:
        out = self._run("display-message", "-p", "-t", self.name, "#{pane_dead}",
                        check=False)
        return out.returncode != 0 or out.stdout.strip() == "1"

    def capture(self) -> str:
        out = self._run("capture-pane", "-p", "-t", self.name, check=False)
        return out.stdout

    def keys(self, *keys: str, literal: bool = False) -> float:
        """Type keys; returns time.time() just before they were sent."""
        t = time.time()
        self._run("send-keys", "-t", self.name, *(("-l",) if literal else ()), *keys)
        return t

    def wait_for(self, predicate: Predicate, timeout: float = 10.0,
                 interval: float = 0.01) -> Seen:
        """Poll the screen until `predicate(screen)` is true."""
        deadline = time.monotonic() + timeout
        n = 0
        screen = ""
        while True:
            screen = self.capture()
            at = time.time()
            n += 1
            if predicate(screen):
                return Seen(True, at, screen, n)
            if time.monotonic() >= deadline:
                return Seen(False, at, screen, n)
            time.sleep(interval)

    def kill(self) -> None:
        self._run("kill-session", "-t", self.name, check=False)

    def kill_server(self) -> None:
        self._run("kill-server", check=False)
