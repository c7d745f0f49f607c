"""The GPU panel: per GPU memory (bar + history), utilisation, temperature, power, and the
processes holding VRAM with the container and stack service that own them.

The engine reads NVML off the UI thread and joins GPU PIDs with the containers; this panel
renders. Without NVML it says why in one line and, when it can, shows each ComfyUI's own
VRAM view from its `/system_stats`.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Sequence
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static

from genai_tui.config import Config
from genai_tui.model import GpuInfo, GpuProcess, GpuReport
from genai_tui.safety import one_line
from genai_tui.ui import stylesheets
from genai_tui.ui.render import plain, set_subtitle, update_if_changed

#: memory samples kept per GPU for the sparkline (at 2 s: the last 5 minutes)
HISTORY = 150
#: GPU processes listed per GPU before "+N more"
MAX_PROCS = 4
BAR_WIDTH = 12


# ---------------------------------------------------------------- formatting helpers


def fmt_mib(mib: float | None, *, unit: bool = True) -> str:
    """MiB as a short human size: 512M, 18.1G, 1.8T."""
    if mib is None:
        return "n/a"
    if mib >= 1024 * 1024 * 0.95:
        value, suffix = mib / (1024 * 1024), "T"
    elif mib >= 1000:
        value, suffix = mib / 1024, "G"
    else:
        return f"{mib:.0f}M" if unit else f"{mib / 1024:.1f}"
    return f"{value:.1f}{suffix}" if unit else f"{value:.1f}"


def fmt_size(mib: float | None) -> str:
    """`14.8 GiB`, `512 MiB`: a size with its unit spelled out."""
    short = fmt_mib(mib)
    if short == "n/a":
        return short
    return f"{short[:-1]} {short[-1]}iB"


def fmt_pair(used: float | None, total: float | None) -> str:
    """`18.1/24.0 GiB` (used/total): one unit for both, taken from the total, and
    spelled out (a bare `G` next to another panel's numbers was read as GB free)."""
    if total is None:
        return fmt_mib(used)
    total_s = fmt_mib(total)
    suffix = total_s[-1]
    div = {"T": 1024 * 1024, "G": 1024, "M": 1}[suffix]
    unit = {"T": "TiB", "G": "GiB", "M": "MiB"}[suffix]
    if used is None:
        return f"n/a/{total_s[:-1]} {unit}"
    if suffix == "M":
        return f"{used:.0f}/{total_s[:-1]} {unit}"
    return f"{used / div:.1f}/{total_s[:-1]} {unit}"


def bar(pct: float | None, width: int = BAR_WIDTH) -> Text:
    """A text meter; the empty part dimmed so the colour (from CSS) shows the fill."""
    if pct is None:
        return Text("·" * width, style="dim")
    filled = max(0, min(width, round(width * pct / 100.0)))
    text = Text("█" * filled)
    text.append("░" * (width - filled), style="dim")
    return text


def fmt_pct(pct: float | None) -> str:
    return "  … " if pct is None else f"{pct:3.0f}%"


def short_gpu_name(name: str) -> str:
    """`NVIDIA GeForce RTX 3080 Laptop GPU` -> `RTX 3080 Laptop` (NVML's or an HTTP
    answer's text: cleaned first)."""
    name = one_line(name, 80)
    for prefix in ("NVIDIA ", "GeForce "):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name.removesuffix(" GPU") or "GPU"


def owner_label(proc: GpuProcess) -> str:
    """Who owns a GPU process: the stack service, else the container, else the host
    (names from the config and Docker: cleaned)."""
    service = one_line(proc.service or "", 64)
    container = one_line(proc.container or "", 64)
    if service and container and proc.container != proc.service:
        return f"{service} ({container})"
    if service:
        return service
    if container:
        return f"container {container}"
    return "host"


def comfyui_reporter(gpu: GpuInfo) -> str | None:
    """The ComfyUI service whose `/system_stats` gave this GPU's numbers (None: NVML)."""
    if not gpu.source.startswith("system_stats:"):
        return None
    return gpu.source.split(":", 1)[1]


def merge_reported(gpus: Sequence[GpuInfo]) -> list[tuple[GpuInfo, list[str]]]:
    """Each GPU once, with the ComfyUIs that report it (none for NVML's): ComfyUIs
    sharing a device each report it (same name, same total), so it is shown once, naming
    every reporter, with the highest use any of them saw."""
    out: list[tuple[GpuInfo, list[str]]] = []
    seen: dict[tuple[str, float | None], tuple[GpuInfo, list[str]]] = {}
    for gpu in gpus:
        name = comfyui_reporter(gpu)
        if name is None:
            out.append((gpu, []))
            continue
        key = (gpu.name, gpu.memory_total_mb)
        if key not in seen:
            seen[key] = (dataclasses.replace(gpu), [name])
            out.append(seen[key])
            continue
        first, names = seen[key]
        names.append(name)
        if gpu.memory_used_mb is not None and (first.memory_used_mb is None
                                               or gpu.memory_used_mb > first.memory_used_mb):
            first.memory_used_mb = gpu.memory_used_mb
    return out


# ---------------------------------------------------------------- widgets


class MemorySparkline(Sparkline):
    """A Sparkline of memory used, scaled from 0 to the GPU's total, newest on the right.

    The stock renderer scales between the window's min and max, which turns 17.9→18.0 GB
    jitter into a full-height swing; VRAM history only makes sense against the total.
    With more samples than columns, each column shows the peak of its share of samples
    (a peak is what an OOM is made of).
    """

    BARS = "▁▂▃▄▅▆▇█"

    def __init__(self, *, ceiling: float | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__([], id=id, classes=classes)
        self.ceiling = ceiling

    @staticmethod
    def columns(data: Sequence[float], width: int) -> list[float]:
        """One value per column: samples as they are, or bucket peaks when too many."""
        if width <= 0:
            return []
        if len(data) <= width:
            return list(data)
        step = len(data) / width
        return [max(data[int(i * step):max(int(i * step) + 1, int((i + 1) * step))])
                for i in range(width)]

    def render(self) -> Any:
        width = self.size.width
        values = self.columns(list(self.data or []), width)
        top = self.ceiling or max(values, default=0.0) or 1.0
        _, base = self.background_colors
        low = base + self.get_component_styles("sparkline--min-color").color
        high = base + self.get_component_styles("sparkline--max-color").color
        text = Text(" " * (width - len(values)))
        for value in values:
            ratio = max(0.0, min(1.0, value / top))
            glyph = self.BARS[min(len(self.BARS) - 1, int(ratio * len(self.BARS)))]
            text.append(glyph, style=Style(color=low.blend(high, ratio).rich_color))
        return text


class GpuCard(Vertical):
    """One GPU: a header line, a memory meter, a history line and its processes."""

    def __init__(self, key: str, warn_pct: float) -> None:
        super().__init__(classes="gpu-card")
        self.key = key
        self.warn_pct = warn_pct
        self.head = Static(classes="gpu-head")
        self.mem = Static(classes="gpu-mem")
        self.spark = MemorySparkline(classes="gpu-spark")
        self.procs = Static(classes="gpu-procs")
        self.source = Static(classes="gpu-source")

    def compose(self) -> ComposeResult:
        yield self.head
        yield self.source
        with Horizontal(classes="gpu-memrow"):
            yield self.mem
            yield self.spark
        yield self.procs

    def show(self, gpu: GpuInfo, history: Sequence[float],
             reporters: Sequence[str] = ()) -> None:
        """One GPU; `reporters`: the ComfyUIs whose own view these numbers are."""
        pct = gpu.memory_pct
        warn = pct is not None and pct >= self.warn_pct
        self.set_class(warn, "-warn")
        self.set_class(gpu.error is not None, "-lost")

        head = Text()
        if reporters:
            head.append(short_gpu_name(gpu.name), style="bold")
        else:
            head.append(f"{gpu.index} ", style="bold")
            head.append(f"{short_gpu_name(gpu.name)[:18]:<18}")
            if gpu.utilization_pct is not None:
                head.append(f" {gpu.utilization_pct:3.0f}%")
            if gpu.temperature_c is not None:
                head.append(f" {gpu.temperature_c:.0f}°C")
            if gpu.power_w is not None:
                limit = f"/{gpu.power_limit_w:.0f}" if gpu.power_limit_w else ""
                head.append(f" {gpu.power_w:.0f}{limit}W")
        update_if_changed(self.head, head)
        # where the numbers come from, when not from NVML: each ComfyUI's own view
        source = Text()
        if reporters:
            source.append("as ComfyUI reports: ", style="dim")
            source.append(", ".join(one_line(r, 64) for r in reporters))
        update_if_changed(self.source, source)
        self.source.display = bool(reporters)

        if gpu.error:
            update_if_changed(self.mem, Text("  " + one_line(gpu.error, 200)))
            self.spark.display = False
        else:
            mem = Text("  VRAM used ")
            if gpu.memory_total_mb is None and gpu.memory_used_mb is None:
                mem.append("n/a", style="dim")
            else:
                mem.append(fmt_pair(gpu.memory_used_mb, gpu.memory_total_mb))
                mem.append(f" {fmt_pct(pct)}")
                if warn:
                    mem.append("!", style="bold")
            mem.append(" ")
            update_if_changed(self.mem, mem)
            self.spark.display = True
            self.spark.ceiling = gpu.memory_total_mb
            self.spark.data = list(history)

        lines: list[Text] = []
        shown = gpu.processes[:MAX_PROCS]
        pid_width = max((len(str(p.pid)) for p in shown), default=0)
        # columns as wide as what they hold: the owner (often a long container name)
        # gets the rest of the 44-cell side column
        names = [one_line(p.name or "?", 10) for p in shown]
        name_width = max((len(n) for n in names), default=0)
        sizes = [fmt_size(p.memory_mb) for p in shown]
        size_width = max((len(x) for x in sizes), default=0)
        for proc, name, size in zip(shown, names, sizes, strict=True):
            line = Text(f"  {proc.pid:>{pid_width}} ")
            line.append(f"{name:<{name_width}}")
            line.append(f" {size:>{size_width}} ")
            owner = owner_label(proc)
            line.append(owner, style="bold" if proc.service else ("dim" if owner == "host"
                                                                   else ""))
            lines.append(line)
        extra = len(gpu.processes) - MAX_PROCS
        if extra > 0:
            lines.append(Text(f"  … +{extra} more", style="dim"))
        if gpu.hidden_processes:
            lines.append(Text(f"  +{gpu.hidden_processes} not visible in /proc "
                              "(run with --pid=host)", style="dim"))
        update_if_changed(self.procs, Text("\n").join(lines))
        self.procs.display = bool(lines)


class GpuPanel(Vertical):
    """The engine's GPU reports: memory, utilisation and which container holds each
    process (NVML), else the VRAM each ComfyUI reports."""

    DEFAULT_CSS = stylesheets.read("gpu.tcss")

    def __init__(self, config: Config, *, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.warn_pct = config.gpu.memory_warn_pct
        self.report: GpuReport | None = None
        #: the one-line status above the GPUs ("" when all is well)
        self.message = ""
        self.polls = 0
        self._history: dict[str, deque[float]] = {}
        self._cards: dict[str, GpuCard] = {}
        self._message = Static(id="gpu-message")

    def compose(self) -> ComposeResult:
        yield self._message

    def on_mount(self) -> None:
        self.border_title = "GPU"
        update_if_changed(self._message, "reading GPUs…")

    # ------------------------------------------------------------ rendering

    def show(self, report: GpuReport) -> None:
        """Render a report (public so tests and the app can feed one directly)."""
        self.report = report
        self.polls += 1
        merged = merge_reported(report.gpus)
        gpus = [gpu for gpu, _ in merged]
        keys = [f"{g.source}#{g.index}" for g in gpus]

        nvml_gpus = [g for g in gpus if g.source == "nvml"]
        # a border title given as a str is parsed as markup: hand it a Text
        set_subtitle(self, plain(f"driver {report.driver_version}", 40)
                     if report.driver_version and nvml_gpus else "")
        message = self._message_for(report)
        self.message = message
        update_if_changed(self._message, plain(message, 300))
        self._message.display = bool(message)
        self._message.set_class(bool(report.error) and not report.gpus, "-error")

        if keys != list(self._cards):
            for card in self._cards.values():
                card.remove()
            self._cards = {k: GpuCard(k, self.warn_pct) for k in keys}
            if self._cards:
                self.mount(*self._cards.values())
            self._history = {k: self._history.get(k, deque(maxlen=HISTORY)) for k in keys}

        warn = False
        for key, (gpu, reporters) in zip(keys, merged, strict=True):
            hist = self._history[key]
            if gpu.memory_used_mb is not None and not gpu.error:
                hist.append(gpu.memory_used_mb)
            self._cards[key].show(gpu, hist, reporters)
            pct = gpu.memory_pct
            warn = warn or (pct is not None and pct >= self.warn_pct)
        self.set_class(warn, "-warn")

    @staticmethod
    def _message_for(report: GpuReport) -> str:
        if report.error:
            return report.error
        if not report.gpus:
            return "NVML: no NVIDIA GPU found"
        return ""
