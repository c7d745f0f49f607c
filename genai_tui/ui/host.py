"""The host panel: CPU, load, memory, swap and the disks holding models and outputs.

Memory is highlighted above `[host] memory_warn_pct`, because running out of it is what
makes the kernel's OOM killer end a ComfyUI with exit code 137.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from genai_tui.config import Config
from genai_tui.model import DiskUsage, HostInfo
from genai_tui.safety import one_line
from genai_tui.ui import stylesheets
from genai_tui.ui.gpu import bar, fmt_pair, fmt_pct
from genai_tui.ui.render import update_if_changed

#: a disk this full is highlighted too (ComfyUI fails mid-job when outputs cannot be saved)
DISK_WARN_PCT = 95.0
#: label column width (a disk's folder name is cut to LABEL - 1)
LABEL = 8


def disk_label(path: str) -> str:
    """The folder's own name, cleaned (a path from the config), cut to the label column
    with … (the full path is in `check --json`, and on the line when the disk fails)."""
    name = one_line(Path(path).name or path)
    return name if len(name) <= LABEL - 1 else name[:LABEL - 2] + "…"


class HostPanel(Vertical):
    """The engine's host readings (CPU, memory, swap, disks)."""

    DEFAULT_CSS = stylesheets.read("host.tcss")

    def __init__(self, config: Config, *, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.warn_pct = config.host.memory_warn_pct
        self.info: HostInfo | None = None
        self.polls = 0
        self.cpu = Static(id="host-cpu")
        self.mem = Static(id="host-mem")
        self.swap = Static(id="host-swap")
        self._disk_lines: list[Static] = []

    def compose(self) -> ComposeResult:
        yield self.cpu
        yield self.mem
        yield self.swap

    def on_mount(self) -> None:
        self.border_title = "Host"
        update_if_changed(self.cpu, "reading…")

    # ------------------------------------------------------------ rendering

    def show(self, info: HostInfo) -> None:
        """Render one reading (public so tests and the app can feed one directly)."""
        self.info = info
        self.polls += 1

        cpu = Text(f"{'CPU':<{LABEL}}")
        cpu.append("  … " if info.cpu_pct is None else f"{info.cpu_pct:3.0f}%",
                   style="bold")
        if info.load is not None:
            cpu.append(f"  load {info.load[0]:.2f} {info.load[1]:.2f} {info.load[2]:.2f}")
        if info.cpu_count:
            cpu.append(f" /{info.cpu_count}", style="dim")
        update_if_changed(self.cpu, cpu)

        pct = info.memory_pct
        warn = pct is not None and pct >= self.warn_pct
        update_if_changed(self.mem, self._meter("Mem", info.memory_used_mb, info.memory_total_mb,
                                    warn))
        self.mem.set_class(warn, "-warn")
        if not info.swap_total_mb:
            update_if_changed(self.swap, Text("Swap none", style="dim"))
        else:
            update_if_changed(self.swap, self._meter("Swap", info.swap_used_mb, info.swap_total_mb,
                                         False))

        if len(self._disk_lines) != len(info.disks):
            for line in self._disk_lines:
                line.remove()
            self._disk_lines = [Static(classes="host-disk") for _ in info.disks]
            if self._disk_lines:
                self.mount(*self._disk_lines)
        for line, disk in zip(self._disk_lines, info.disks, strict=True):
            self._show_disk(line, disk)
        self.set_class(warn, "-warn")

    @staticmethod
    def _meter(label: str, used: float | None, total: float | None, warn: bool) -> Text:
        pct = None if used is None or not total else 100.0 * used / total
        text = Text(f"{label:<{LABEL}}")
        if total is None:
            text.append("n/a", style="dim")
            return text
        text.append_text(bar(pct, 16))
        text.append(f" {fmt_pair(used, total):>13} {fmt_pct(pct)}")
        if warn:
            text.append("!", style="bold")
        return text

    def _show_disk(self, line: Static, disk: DiskUsage) -> None:
        label = disk_label(disk.path)
        if disk.error:
            update_if_changed(line, Text(f"{label:<{LABEL}}"
                                         + one_line(f"{disk.error}: {disk.path}", 300)))
            line.set_class(True, "-error")
            line.set_class(False, "-warn")
            return
        pct = disk.pct
        full = pct is not None and pct >= DISK_WARN_PCT
        update_if_changed(line, self._meter(label, disk.used_mb, disk.total_mb, False))
        line.set_class(False, "-error")
        line.set_class(full, "-warn")
