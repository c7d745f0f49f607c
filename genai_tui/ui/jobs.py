"""The jobs panel: per ComfyUI service the running job (id, age, node and step progress,
it/s), the pending count with the oldest wait, the last finished jobs (ok / error with its
type / interrupted, and how long each took), the models it holds, its VRAM and a
sparkline of the queue depth.

It renders the engine's `JobsReport` (genai_tui.sources.jobs reads the queues) and
nothing else. Prompt ids, model names and error texts come from HTTP answers and logs:
each is cleaned (`safety.shown`: one line, any hash redacted) and shown as rich `Text`,
never markup. The panel stays hidden until a report names a service (no ComfyUI, or
`[jobs] enabled = false`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from genai_tui.config import Config
from genai_tui.model import JobInfo, JobsReport, ServiceJobs
from genai_tui.safety import shown
from genai_tui.ui import stylesheets
from genai_tui.ui.render import LineStatic, set_subtitle, update_if_changed

SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
#: queue depths shown in the sparkline (the report keeps up to QUEUE_HISTORY_LEN)
SPARK_WIDTH = 16
#: finished jobs the panel lists per service (the jobs view lists every one it has)
RECENT_SHOWN = 3
#: resident models named before "+N"
MODELS_SHOWN = 3
SEP = " · "
#: how each finished state reads (a word as well as a mark: NO_COLOR keeps the word)
STATE_MARKS = {"success": ("✓ ok", "green"), "error": ("✖ error", "bold red"),
               "interrupted": ("⊘ interrupted", "yellow")}
GIB = 1024 ** 3


# ---------------------------------------------------------------- formatting helpers


def short_id(prompt_id: str | None) -> str:
    """The first 8 characters of a prompt id, cleaned (an id comes from HTTP)."""
    return shown(prompt_id or "?", 200)[:8] or "?"


def fmt_duration(seconds: float | None) -> str:
    """`42 s`, `4 min 12 s`, `25 min`, `2 h 5 min`: whole units a reader compares."""
    if seconds is None:
        return "–"
    s = max(0, int(seconds + 0.5))
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 10:
        return f"{m} min {s} s" if s else f"{m} min"
    if m < 60:
        return f"{m} min"
    h, m = divmod(m, 60)
    return f"{h} h {m} min" if m else f"{h} h"


def fmt_gib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / GIB:.1f}"


def sparkline(values: Sequence[int], width: int = SPARK_WIDTH) -> Text:
    """Queue depth over the last rounds, scaled 0..max (an empty queue is the lowest
    block, so a flat line reads "idle")."""
    vals = list(values)[-width:]
    hi = max(vals, default=0)
    text = Text()
    for v in vals:
        idx = 0 if hi <= 0 else min(len(SPARK_BLOCKS) - 1,
                                    round(v / hi * (len(SPARK_BLOCKS) - 1)))
        text.append(SPARK_BLOCKS[idx], style="cyan" if v else "dim cyan")
    return text


def running_text(job: JobInfo, now: datetime) -> Text:
    """`▶ 3f2a9c1e 1 min 42 s · node 3/7 · step 7/20 · 2.31 it/s`."""
    text = Text("▶ ", style="bold green")
    text.append(short_id(job.prompt_id), style="bold")
    if job.started_at is not None:
        text.append(" " + fmt_duration((now - job.started_at).total_seconds()))
    if job.nodes_total:
        text.append(f"{SEP}node {job.nodes_done or 0}/{job.nodes_total}")
    if job.steps:
        text.append(f"{SEP}step {job.step or 0}/{job.steps}")
    if job.it_per_s:
        text.append(f"{SEP}{job.it_per_s:.2f} it/s")
    return text


def pending_text(sj: ServiceJobs) -> Text:
    """`3 pending, oldest 4 min` (yellow when any wait), or `none pending`."""
    n = len(sj.pending)
    if not n:
        return Text("none pending", style="dim")
    text = Text(f"{n} pending", style="yellow")
    if sj.oldest_wait_s is not None:
        text.append(f", oldest {fmt_duration(sj.oldest_wait_s)}")
    return text


def finished_text(job: JobInfo) -> Text:
    """`✓ ok 12 s`, `✖ error OOM 3 s`, `⊘ interrupted 40 s` (error types are cleaned)."""
    word, style = STATE_MARKS.get(job.state, (shown(job.state, 20), ""))
    text = Text(word, style=style)
    if job.state == "error" and job.error_type:
        text.append(" " + shown(job.error_type, 40), style="bold red")
    if job.started_at is not None and job.finished_at is not None:
        text.append(" " + fmt_duration((job.finished_at - job.started_at).total_seconds()))
    return text


def models_text(models: Sequence[str]) -> Text | None:
    if not models:
        return None
    names = [shown(m, 40) for m in models[-MODELS_SHOWN:]]
    more = len(models) - len(names)
    return Text("models " + ", ".join(names) + (f" +{more}" if more > 0 else ""))


def vram_text(sj: ServiceJobs) -> Text | None:
    if sj.vram_used is None:
        return None
    total = f"/{fmt_gib(sj.vram_total)}" if sj.vram_total else ""
    # what the figure is: its own share (held) where known, else the whole device's
    # "used", as in the GPU and probes panels
    what = "used" if sj.vram_source == "system_stats" else "held"
    text = Text(f"VRAM {what} {fmt_gib(sj.vram_used)}{total} GiB")
    if sj.vram_source:
        text.append(" (" + VRAM_SOURCES.get(sj.vram_source, shown(sj.vram_source, 20)) + ")",
                    style="dim")
    return text


#: where the figure comes from, in a word or two
VRAM_SOURCES = {"torch": "torch", "nvml": "NVML", "system_stats": "device"}


def pack(parts: Iterable[Text], width: int, indent: str = "") -> list[Text]:
    """Parts joined by ` · ` into lines of at most `width` cells: a part never splits
    (a number is never cut in half); one longer than a line ends in …."""
    lines: list[Text] = []
    line: Text | None = None
    for part in parts:
        if line is not None and line.cell_len + len(SEP) + part.cell_len <= width:
            line.append(SEP, style="dim")
            line.append_text(part)
            continue
        if line is not None:
            lines.append(line)
        line = Text(indent) + part if lines or indent else part.copy()
        if line.cell_len > width:
            line.truncate(max(1, width), overflow="ellipsis")
    if line is not None:
        lines.append(line)
    return lines


def service_lines(sj: ServiceJobs, now: datetime, width: int) -> list[Text]:
    """One service's block: what runs and waits (and the queue's trend), then what
    finished, the models and the VRAM."""
    head: list[Text] = [Text(shown(sj.service, 64), style="bold")]
    if sj.api == "none" and sj.error:
        head.append(Text("unknown: " + shown(sj.error, 160), style="yellow"))
        return pack(head, width)
    head.append(running_text(sj.running, now) if sj.running is not None
                else Text("idle", style="dim"))
    head.append(pending_text(sj))
    if sj.queue_depth_history:
        head.append(Text("queue ").append_text(sparkline(sj.queue_depth_history)))
    detail: list[Text] = []
    if sj.recent:
        last = Text("last ", style="dim")
        for i, job in enumerate(sj.recent[:RECENT_SHOWN]):
            if i:
                last.append(", ", style="dim")
            last.append_text(finished_text(job))
        detail.append(last)
    for extra in (models_text(sj.resident_models), vram_text(sj)):
        if extra is not None:
            detail.append(extra)
    if sj.error:
        detail.append(Text("⚠ " + shown(sj.error, 160), style="yellow"))
    return pack(head, width) + pack(detail, width, indent="  ")


def render_report(report: JobsReport, now: datetime, width: int) -> Text:
    """The whole panel as one Text (one block per service)."""
    lines: list[Text] = []
    for sj in report.services:
        lines.extend(service_lines(sj, now, width))
    if not lines:
        return Text("no ComfyUI queue to show", style="dim")
    return Text("\n").join(lines)


class JobsPanel(Vertical):
    """The ComfyUI queues, rendered from the engine's JobsReport."""

    DEFAULT_CSS = stylesheets.read("jobs.tcss")

    def __init__(self, config: Config, *, id: str | None = "jobs",
                 classes: str | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.config = config
        self.report: JobsReport | None = None
        self.border_title = "Jobs"
        self._clock = clock
        self.shown = 0  # reports rendered (tests wait on it)
        self.add_class("-empty")  # hidden from the first frame until a report names one

    def compose(self) -> ComposeResult:
        yield LineStatic(Text("waiting for the first queue read", style="dim"), id="jobs-body")

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick)  # ages and waits move on without news

    def now(self) -> datetime:
        clock = self._clock or getattr(self.app, "clock", None)
        return clock() if callable(clock) else datetime.now(UTC)

    def show(self, report: JobsReport) -> None:
        """Draw a report (hidden while it names no service)."""
        self.report = report
        self.shown += 1
        self.set_class(not report.services, "-empty")
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _tick(self) -> None:
        if self.report is not None and any(s.running or s.pending
                                           for s in self.report.services):
            self._draw()

    def _draw(self) -> None:
        if self.report is None:
            return
        width = max(20, (self.content_size.width or 118))
        update_if_changed(self.query_one("#jobs-body", Static),
                          render_report(self.report, self.now(), width))
        busy = sum(1 for s in self.report.services if s.running)
        waiting = sum(len(s.pending) for s in self.report.services)
        key = None
        key_of = getattr(self.app, "key_of", None)
        if callable(key_of):
            key = key_of("genai.jobs")
        tail = f"{key}: jobs view" if key else ""
        head = f"{busy} running · {waiting} pending"
        set_subtitle(self, Text(f"{head} · {tail}" if tail else head))
