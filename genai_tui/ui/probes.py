"""The probes panel: per service the outcome, auth verdict, status, latency and a sparkline.

It renders the engine's probe rounds (engine.live polls, chained, one probe in flight per
service; `p` asks the engine for a round now). Rows are keyed by service and updated in
place. The token hash never reaches the UI.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable

from genai_tui.config import Config, ServiceConfig
from genai_tui.model import ProbeResult
from genai_tui.sources.probes import display_url
from genai_tui.ui import stylesheets
from genai_tui.ui.render import plain, set_cell

SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 10
STAND_OUT = "bold white on red"
#: verdicts that need the admin's attention
ALARM_VERDICTS = ("disabled", "rejected", "no_password")

COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("service", "service", 19),
    ("url", "URL", 22),
    ("outcome", "outcome", 11),
    ("auth", "auth", 11),
    ("status", "HTTP", 4),
    ("latency", "latency", 8),
    ("trend", "trend", SPARK_WIDTH),
    ("info", "info", 26),
)


def sparkline(values: Iterable[float | None], width: int = SPARK_WIDTH) -> Text:
    """Unicode block sparkline of recent latencies, scaled 0..max; failed probes are a
    red `×` (their "latency" is a timeout, which would flatten the rest)."""
    vals = list(values)[-width:]
    hi = max((v for v in vals if v is not None), default=0.0)
    text = Text()
    for v in vals:
        if v is None:
            text.append("×", style="red")
        else:
            idx = 0 if hi <= 0 else min(len(SPARK_BLOCKS) - 1,
                                        int(v / hi * (len(SPARK_BLOCKS) - 1) + 0.5))
            text.append(SPARK_BLOCKS[idx], style="cyan")
    return text


def format_latency(ms: float | None) -> str:
    if ms is None:
        return "–"
    if ms < 10:
        return f"{ms:.1f} ms"
    return f"{ms:.0f} ms"


def url_cell(url: str) -> Text:
    """The URL without credentials (`display_url`), as text: a `[` in a path is not
    markup."""
    return plain(display_url(url), 200, no_wrap=True)


def outcome_cell(result: ProbeResult | None) -> Text:
    if result is None:
        return Text("…", style="dim")
    return plain(result.outcome, 20, style="green" if result.outcome == "ok" else "bold red")


def auth_cell(result: ProbeResult | None) -> Text:
    if result is None or result.auth is None:
        return Text("–", style="dim")
    if result.auth == "enforced":
        return Text(result.auth, style="green")
    if result.auth in ALARM_VERDICTS:
        return Text(result.auth, style=STAND_OUT)
    return plain(result.auth, 20, style="yellow")


def status_cell(result: ProbeResult | None) -> Text:
    if result is None or result.status is None:
        return Text("–", style="dim")
    s = result.status
    style = "green" if 200 <= s < 300 else "yellow" if s == 401 or 300 <= s < 500 else "red"
    return Text(str(s), style=style)


def info_text(result: ProbeResult | None) -> Text:
    """Queue and VRAM when the probe got them, else the detail (HTTP-derived: cleaned
    again here, whatever the prober did)."""
    if result is None:
        return Text("waiting for the first probe", style="dim")
    bits: list[str] = []
    if result.queue_remaining is not None:
        bits.append(f"queue {result.queue_remaining}")
    if result.vram_total_mb:
        free = result.vram_free_mb or 0.0
        bits.append(f"VRAM {free / 1024:.1f}/{result.vram_total_mb / 1024:.1f} GiB free")
    if result.backends:
        up = sum(1 for s in result.backends.values()
                 if s.lower() in ("healthy", "ok", "up", "running", "ready"))
        bits.append(f"backends {up}/{len(result.backends)} healthy")
    if bits and result.outcome == "ok" and result.auth not in ALARM_VERDICTS:
        return Text(" · ".join(bits))
    style = "" if result.outcome == "ok" and result.auth not in ALARM_VERDICTS else "red"
    return plain(result.detail, 160, style=style)


class ProbesPanel(Vertical):
    """Probe every configured service on an interval and on demand."""

    DEFAULT_CSS = stylesheets.read("probes.tcss")

    def __init__(self, config: Config, *, id: str | None = "probes",
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.config = config
        self.services: tuple[ServiceConfig, ...] = tuple(config.services)
        self.interval = config.probes.interval
        self.history: dict[str, deque[float | None]] = {
            s.name: deque(maxlen=SPARK_WIDTH) for s in self.services}
        self.results: dict[str, ProbeResult] = {}
        self.rounds = 0
        self.border_title = "Probes"

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield DataTable(id="probes-table", cursor_type="row", zebra_stripes=False,
                        show_cursor=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label, width in COLUMNS:
            table.add_column(label, width=width, key=key)
        for svc in self.services:
            table.add_row(plain(svc.name, 64, style="bold"),
                          url_cell(svc.url), outcome_cell(None), auth_cell(None),
                          status_cell(None), Text("–", no_wrap=True), Text(""), info_text(None),
                          key=svc.name)
        self.set_probing(False)

    def set_probing(self, probing: bool) -> None:
        state = "probing…" if probing else f"every {self.interval:g}s"
        self.border_subtitle = f"{state} · p: probe now"

    def apply(self, results: Iterable[ProbeResult]) -> None:
        """Update the rows in place (never cleared) from one round's results."""
        table = self.query_one(DataTable)
        self.rounds += 1
        for r in results:
            if r.service not in self.history:
                continue
            self.results[r.service] = r
            hist = self.history[r.service]
            hist.append(r.latency_ms if r.outcome == "ok" else None)
            cells: dict[str, Any] = {
                "url": url_cell(r.url),
                "outcome": outcome_cell(r),
                "auth": auth_cell(r),
                "status": status_cell(r),
                "latency": format_latency(r.latency_ms),
                "trend": sparkline(hist),
                "info": info_text(r),
            }
            for col, value in cells.items():
                set_cell(table, r.service, col, value)
