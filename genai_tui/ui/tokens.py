"""The tokens panel: every copy of the ComfyUI-Login credential by fingerprint, whether
they agree, and whether each running ComfyUI still uses the hash on disk.

It renders the engine's token reports (engine.live reads them off the UI thread, joins
them with the probes and log lines, and audits status changes); `u` is the app's.
"""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from genai_tui.config import Config
from genai_tui.model import ContainerInfo, TokenLocationStatus, TokensReport
from genai_tui.safety import shown
from genai_tui.ui import stylesheets
from genai_tui.ui.render import (
    Col,
    cut,
    fit_columns,
    natural_widths,
    plain,
    show_rows,
    snapshot_containers,
    table_width,
    update_if_changed,
)

#: states and fingerprints are never cut (a fingerprint cut short reads as another);
#: the location's name takes what is left; problems, then mtime, go first when narrow
COLUMNS: tuple[Col, ...] = (
    Col("name", "location", min=8, max=64, grow=0),
    Col("state", "state", fixed=5),
    Col("fp", "fingerprint", fixed=13),
    Col("problems", "issues", min=6, max=80, drop=1, grow=1),
    Col("mtime", "mtime", fixed=5, drop=2),
)

#: an alarm badge; under NO_COLOR bright red stays a dark grey behind the white text
#: (plain red turns light there: render.no_color_ansi_themes)
STAND_OUT = "bold bright_white on bright_red"
STATE_STYLES = {
    "ok": "green",
    "missing": "yellow",
    "unreadable": "bold red",
    "invalid": "bold red",
    "mismatch": STAND_OUT,
    "raw_mismatch": STAND_OUT,
}
PROBLEM_SHORT = {
    "crlf": "CRLF", "bom": "BOM", "quoted": "quoted", "whitespace": "blanks",
    "duplicate_key": "dup", "key_in_value": "KEY=KEY=", "compose_interpolation": "$",
    "world_readable": "o+r",
}


#: a name, path or message for the screen (one clean line, hashes redacted)
safe = shown


def state_cell(s: TokenLocationStatus | None, *, long: bool = True) -> Text:
    """The state; a raw copy says it is raw here when its fingerprint cell is too narrow
    to say so (`raw ok` beside `verifies fp:…`)."""
    if s is None:
        return Text("…", style="dim")
    label = s.state if s.state != "raw_mismatch" else "raw≠"
    if not long and s.state == "ok" and (s.fingerprint or "").startswith("raw→"):
        label = "raw ok"
    return Text(safe(label, 20), style=STATE_STYLES.get(s.state, ""))


def problems_cell(s: TokenLocationStatus | None) -> Text:
    if s is None or not s.problems:
        return Text("–", style="dim")
    return Text(safe(" ".join(PROBLEM_SHORT.get(p, p) for p in s.problems), 80),
                style="yellow")


def mtime_cell(s: TokenLocationStatus | None) -> str:
    """HH:MM today, MM-DD before (the CLI and the unify modal show the full time)."""
    if s is None or s.mtime is None:
        return "–"
    local = s.mtime.astimezone()
    return local.strftime("%H:%M" if local.date() == datetime.now().date() else "%m-%d")


def fp_cell(s: TokenLocationStatus | None, *, long: bool = True) -> Text:
    """A hash by its fingerprint; a raw password by the hash it verifies, said so
    (`raw → verifies fp:…`, or `verifies fp:…` beside a `raw ok` state when narrow):
    a raw token's `raw→fp:…` label read as a second value."""
    if s is None:
        return Text("…", no_wrap=True)
    fp = s.fingerprint or "–"
    if fp.startswith("raw→"):
        target = fp.removeprefix("raw→")
        text = f"raw → verifies {target}" if long else f"verifies {target}"
        return plain(safe(text, 60), no_wrap=True,
                     style="" if s.state == "ok" else STATE_STYLES.get(s.state, ""))
    return plain(safe(fp, 40), no_wrap=True)


def _canonical_fp(report: TokensReport) -> str | None:
    canon = next((s for s in report.locations if s.canonical
                  or s.name == report.canonical), None)
    if canon is not None and canon.fingerprint and not canon.fingerprint.startswith("raw"):
        return canon.fingerprint
    return next((fp for fp in report.fingerprints if not fp.startswith("raw")), None)


def summary_text(report: TokensReport | None,
                 containers: dict[str, ContainerInfo] | None = None) -> Text:
    """The consistency verdict and one line per ComfyUI server (shown above the table:
    the first thing to read). A server whose container is gone or stopped is said to be
    so, never "uses the hash on disk" from an old log line."""
    if report is None:
        return Text("reading token locations…", style="dim")
    containers = containers or {}
    text = Text()
    if report.error:
        text.append(safe(report.error, 120) + "\n", style="bold red")
    if report.consistent:
        text.append("✓ consistent", style="bold green")
        fp = _canonical_fp(report)
        if fp:  # the hash itself: a raw copy's row says which hash it verifies
            text.append(f" · {safe(fp, 40)}")
    else:
        text.append("✗ NOT consistent", style=STAND_OUT)
        n = len(report.value_groups())
        text.append(f" · {n} value{'s' if n != 1 else ''} · u: unify")
    for srv in report.servers:
        text.append("\n")
        info = containers.get(srv.service)
        if info is not None and not info.running:
            state = "removed" if info.missing else safe(info.state, 20)
            text.append(f"– {safe(srv.service, 20)}: ", style="yellow")
            text.append(f"container {state}")
            continue
        mark, style = {True: ("✓", "green"), False: ("✗", "bold red"),
                       None: ("?", "yellow")}[srv.uses_disk_hash]
        text.append(f"{mark} {safe(srv.service, 20)}: ", style=style)
        words = {True: "uses the hash on disk",
                 False: "old hash loaded: restart",
                 None: "server hash unknown"}[srv.uses_disk_hash]
        text.append(words)
    return text


class TokensPanel(Vertical):
    """Token locations, their agreement, and the servers' view; `u` unifies."""

    DEFAULT_CSS = stylesheets.read("tokens.tcss")

    def __init__(self, config: Config, *, readonly: bool = False,
                 id: str | None = "tokens", classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.config = config
        self.readonly = readonly
        self.report: TokensReport | None = None
        self.polls = 0
        self.border_title = "Tokens"
        self._widths: dict[str, int] = {}
        self._rows: list[str] = [loc.name for loc in config.tokens.locations]
        self._status: dict[str, TokenLocationStatus] = {}

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Static(summary_text(None), id="tokens-summary")
        yield DataTable(id="tokens-table", cursor_type="row", zebra_stripes=False)

    def on_mount(self) -> None:
        self.border_subtitle = "u: unify" if not self.readonly else "read-only"
        self._relayout()

    def on_resize(self) -> None:
        self._relayout()

    def _name_cell(self, name: str) -> Text:
        canonical = name == self.config.tokens.canonical
        return Text(safe(name, 40) + ("*" if canonical else ""),
                    style="bold" if canonical else "")

    def _cells(self, name: str, *, long: bool) -> dict[str, Text]:
        s = self._status.get(name)
        mtime = mtime_cell(s)
        return {"name": self._name_cell(name), "state": state_cell(s, long=long),
                "fp": fp_cell(s, long=long), "problems": problems_cell(s),
                "mtime": Text(mtime, no_wrap=True)}

    def _relayout(self) -> None:
        """Widths by priority (render.fit_columns); a raw token's fingerprint is said in
        full ("raw → verifies fp:…") when that leaves every name whole."""
        width = table_width(self, 46)
        for long in (True, False):
            rows = {name: self._cells(name, long=long) for name in self._rows}
            natural = natural_widths(rows.values())
            widths = fit_columns(COLUMNS, width, natural)
            if widths.get("name", 0) >= natural.get("name", 0) and \
                    sum(w + 2 for w in widths.values()) <= width:
                break
        table = self.query_one(DataTable)
        rebuild = widths != self._widths or [str(k.value) for k in table.rows] != self._rows
        self._widths = widths
        labels = {c.key: c.label for c in COLUMNS}
        show_rows(table, [(k, labels[k], w) for k, w in widths.items()],
                  {name: {k: cut(rows[name][k], w) for k, w in widths.items()}
                   for name in self._rows}, rebuild=rebuild)

    # ------------------------------------------------------------------ rendering

    def apply(self, report: TokensReport,
              containers: list[ContainerInfo] | None = None) -> None:
        """Update rows in place from one status read."""
        self.polls += 1
        self.report = report
        # the configured locations, then any other the report names (never a stale one)
        names = [loc.name for loc in self.config.tokens.locations]
        self._rows = names + [s.name for s in report.locations if s.name not in names]
        self._status = {s.name: s for s in report.locations}
        self._relayout()
        if containers is None:
            containers = snapshot_containers(self)
        summary = summary_text(report, {c.service: c for c in containers})
        if "problems" not in self._widths:  # no room for the column: said below instead
            issues = [f"{safe(s.name, 40)} {problems_cell(s).plain}"
                      for s in report.locations if s.problems]
            if issues:
                summary.append("\n▲ issues: ", style="yellow")
                summary.append(" · ".join(issues))
        update_if_changed(self.query_one("#tokens-summary", Static), summary)

    def selected_location(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:
            return None
        return str(key.value) if key is not None else None
