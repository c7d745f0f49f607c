"""The probes panel: per service the verdict an admin acts on, the URL probed, its HTTP
status, the latency and a sparkline.

It renders the engine's probe rounds (engine.live polls, chained, one probe in flight per
service; `p` asks the engine for a round now). Rows are keyed by service and updated in
place. The token hash never reaches the UI.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import replace

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable

from genai_tui.config import Config, ServiceConfig
from genai_tui.model import ContainerInfo, ProbeResult
from genai_tui.sources.probes import display_url
from genai_tui.ui import stylesheets
from genai_tui.ui.render import (
    Col,
    RowTable,
    cut,
    cut_at,
    fit_columns,
    natural_widths,
    plain,
    set_subtitle,
    show_rows,
    snapshot_containers,
    table_width,
)

SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 10
#: an alarm badge; under NO_COLOR bright red stays a dark grey behind the white text
#: (plain red turns light there: render.no_color_ansi_themes)
STAND_OUT = "bold bright_white on bright_red"
#: verdicts that need the admin's attention
ALARM_VERDICTS = ("disabled", "rejected", "no_password")
#: what the admin cares about first, by the prober's auth verdict (the prober's words
#: stay in `check --json`): "disabled" means the API answers without any token
VERDICT_WORDS = {"enforced": "enforced", "rejected": "rejected", "disabled": "open",
                 "no_password": "no password", "unknown": "unchecked"}
#: outcomes that mean nothing useful answered
DOWN_OUTCOMES = ("refused", "timeout", "empty_reply", "not_http", "dns_error")

#: verdict first, then what was requested (a curl of it gives the HTTP column), then
#: latency; verdicts, codes and latencies are never cut, nor is the probed URL (its port);
#: the service name and the info take what is left, the info then the trend go first
COLUMNS: tuple[Col, ...] = (
    Col("service", "service", min=10, max=64, grow=0),
    Col("verdict", "verdict", fixed=8),
    Col("probed", "probed", min=12, max=200, grow=1),
    Col("status", "HTTP", fixed=4),
    Col("latency", "latency", fixed=5),
    Col("trend", "trend", fixed=SPARK_WIDTH, drop=1),
    Col("info", "info", min=16, max=300, drop=2, grow=2),
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
    """One format for every latency: whole milliseconds ("12 ms", "<1 ms")."""
    if ms is None:
        return "–"
    if ms < 1:
        return "<1 ms"
    return f"{ms:.0f} ms"


def probed_path(result: ProbeResult, service: ServiceConfig | None) -> str:
    """The URL path whose answer decided the verdict: a ComfyUI's `/prompt` (without,
    then with the token), its `/login` when that page failed first, else the service's
    health path."""
    comfy = result.auth is not None or (service is not None and service.kind == "comfyui")
    if comfy:
        return "/login" if result.detail.startswith("/login") else "/prompt"
    return service.health_path if service is not None else "/health"


def probed_cell(result: ProbeResult | None, service: ServiceConfig) -> Text:
    """The URL requested, credentials left out (`display_url`): a `[` in a path is not
    markup."""
    base = display_url(result.url if result is not None else service.url)
    path = probed_path(result, service) if result is not None else (
        "/prompt" if service.kind == "comfyui" else service.health_path)
    return plain(base + path, 300, no_wrap=True)


def verdict_cell(result: ProbeResult | None, container: ContainerInfo | None = None) -> Text:
    """open / enforced / rejected / no password / unchecked / up, or down / starting /
    error when nothing useful answered (how it failed is in the info column)."""
    if result is None:
        return Text("…", style="dim")
    if result.outcome == "ok":
        if result.auth is None:
            return Text("up", style="green")
        word = VERDICT_WORDS.get(result.auth, result.auth)
        if result.auth == "enforced":
            return Text(word, style="green")
        if result.auth in ALARM_VERDICTS:
            return Text(word, style=STAND_OUT)
        return plain(word, 20, style="yellow")
    if container is not None and (container.health == "starting"
                                  or container.state == "restarting"):
        return Text("starting", style="yellow")
    if result.outcome in DOWN_OUTCOMES:
        return Text("down", style="bold red")
    return Text("error", style="bold red")


def status_cell(result: ProbeResult | None) -> Text:
    """The HTTP status of the probed path; for a ComfyUI checked with the token, the
    answer without it, then with it (`401→200`: auth enforced)."""
    if result is None or result.status is None:
        return Text("–", style="dim")
    s = result.status
    style = "green" if 200 <= s < 300 else "yellow" if s == 401 or 300 <= s < 500 else "red"
    if result.outcome == "ok" and result.auth in ("enforced", "rejected"):
        return Text.assemble(("401", "yellow"), "→", (str(s), style))
    return Text(str(s), style=style)


def info_text(result: ProbeResult | None) -> Text:
    """VRAM (used/total, as that ComfyUI reports it) and queue when the probe got them,
    else the detail, else how it failed (HTTP-derived: cleaned again here, whatever the
    prober did)."""
    if result is None:
        return Text("waiting for the first probe", style="dim")
    bits: list[str] = []
    if result.vram_total_mb:
        used = result.vram_total_mb - (result.vram_free_mb or 0.0)
        bits.append(f"VRAM used {used / 1024:.1f}/{result.vram_total_mb / 1024:.1f} GiB")
    if result.queue_remaining is not None:
        bits.append(f"queue {result.queue_remaining}")
    if result.backends:
        up = sum(1 for s in result.backends.values()
                 if s.lower() in ("healthy", "ok", "up", "running", "ready"))
        bits.append(f"backends {up}/{len(result.backends)} healthy")
    if bits and result.outcome == "ok" and result.auth not in ALARM_VERDICTS:
        return Text(" · ".join(bits))
    style = "" if result.outcome == "ok" and result.auth not in ALARM_VERDICTS else "red"
    detail = result.detail or ("" if result.outcome == "ok" else result.outcome.replace("_", " "))
    return plain(detail, 160, style=style)


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
        self._state = ""
        self._widths: dict[str, int] = {}
        self._full: dict[str, dict[str, Text]] = {}

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield RowTable(id="probes-table", cursor_type="row", zebra_stripes=False,
                       show_cursor=True)

    def on_mount(self) -> None:
        for svc in self.services:
            self._full[svc.name] = self._cells(svc, None)
        self._relayout()
        self.set_probing(False)

    def on_resize(self) -> None:
        if self._full:
            self._relayout()

    def _cells(self, svc: ServiceConfig, r: ProbeResult | None,
               container: ContainerInfo | None = None) -> dict[str, Text]:
        return {
            "service": plain(svc.name, 64, style="bold"),
            "verdict": verdict_cell(r, container),
            "probed": probed_cell(r, svc),
            "status": status_cell(r),
            "latency": Text(format_latency(r.latency_ms if r is not None else None)),
            "trend": sparkline(self.history[svc.name]),
            "info": info_text(r),
        }

    def _relayout(self) -> None:
        """Widths by priority for the panel's width (render.fit_columns); the table is
        rebuilt only when they change, else only the changed cells are touched."""
        natural = natural_widths(self._full.values())
        probed = max((self._full[s.name]["probed"].cell_len for s in self.services),
                     default=0)
        cols = [replace(c, min=max(c.min, probed)) if c.key == "probed" else c
                for c in COLUMNS]
        widths = fit_columns(cols, table_width(self), natural)
        table = self.query_one(DataTable)
        rebuild = widths != self._widths or table.row_count != len(self.services)
        self._widths = widths
        labels = {c.key: c.label for c in COLUMNS}
        show_rows(table, [(k, labels[k], w) for k, w in widths.items()],
                  {s.name: self._shown(s.name) for s in self.services}, rebuild=rebuild)
        self._subtitle()

    def _shown(self, name: str) -> dict[str, Text]:
        full = self._full[name]
        return {key: (cut_at if key == "info" else cut)(full[key], width)
                for key, width in self._widths.items()}

    def set_probing(self, probing: bool) -> None:
        self._state = "probing…" if probing else f"every {self.interval:g}s"
        self._subtitle()

    def _subtitle(self) -> None:
        """The bottom border: the selected row's cut cells in full (nothing shown cut is
        out of reach) when the table has the focus, then the probe pace."""
        tail = f"{self._state} · p: probe now"
        table = self.query(DataTable)
        cut_text = ""
        if table and table.first().has_focus and table.first().row_count:
            try:
                row = str(table.first().coordinate_to_cell_key(
                    table.first().cursor_coordinate).row_key.value)
            except Exception:
                row = ""
            full = self._full.get(row, {})
            cut_text = " · ".join(full[k].plain for k, w in self._widths.items()
                                  if k in full and full[k].cell_len > w)
        set_subtitle(self, plain(f"{cut_text} · {tail}" if cut_text else tail, 300))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._subtitle()

    def on_descendant_focus(self) -> None:
        self._subtitle()

    def on_descendant_blur(self) -> None:
        self._subtitle()

    def containers_changed(self, containers: Iterable[ContainerInfo]) -> None:
        """Re-word the rows for containers that started or went away ("starting"), from
        the last round's results: no new round, no point added to the trend."""
        by_service = {c.service: c for c in containers}
        services = {s.name: s for s in self.services}
        for name, r in self.results.items():
            self._full[name] = self._cells(services[name], r, by_service.get(name))
        self._relayout()

    def apply(self, results: Iterable[ProbeResult],
              containers: Iterable[ContainerInfo] | None = None) -> None:
        """Update the rows in place (never cleared) from one round's results; a service
        whose container is starting reads "starting", not "down"."""
        if containers is None:
            containers = snapshot_containers(self)
        by_service = {c.service: c for c in containers}
        services = {s.name: s for s in self.services}
        self.rounds += 1
        for r in results:
            if r.service not in self.history:
                continue
            self.results[r.service] = r
            self.history[r.service].append(r.latency_ms if r.outcome == "ok" else None)
            self._full[r.service] = self._cells(services[r.service], r,
                                                by_service.get(r.service))
        self._relayout()
