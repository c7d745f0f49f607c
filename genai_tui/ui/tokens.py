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
from genai_tui.model import TokenLocationStatus, TokensReport
from genai_tui.safety import shown
from genai_tui.sources.tokens import value_counts
from genai_tui.ui import stylesheets
from genai_tui.ui.render import plain, set_cell, update_if_changed

COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("name", "location", 10),
    ("state", "state", 10),
    ("fp", "fingerprint", 17),  # "raw→fp:" + 10 hex: a raw token by the hash it verifies
    ("problems", "problems", 10),
    ("mtime", "mtime", 5),
)

STATE_STYLES = {
    "ok": "green",
    "missing": "yellow",
    "unreadable": "bold red",
    "invalid": "bold red",
    "mismatch": "bold white on red",
    "raw_mismatch": "bold white on red",
}
PROBLEM_SHORT = {
    "crlf": "CRLF", "bom": "BOM", "quoted": "quoted", "whitespace": "blanks",
    "duplicate_key": "dup", "key_in_value": "KEY=KEY=", "compose_interpolation": "$",
    "world_readable": "o+r",
}


#: a name, path or message for the screen (one clean line, hashes redacted)
safe = shown


def state_cell(s: TokenLocationStatus | None) -> Text:
    if s is None:
        return Text("…", style="dim")
    label = s.state if s.state != "raw_mismatch" else "raw≠"
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


def summary_text(report: TokensReport | None) -> Text:
    """The consistency line and one line per ComfyUI server."""
    if report is None:
        return Text("reading token locations…", style="dim")
    text = Text()
    if report.error:
        text.append(safe(report.error, 120) + "\n", style="bold red")
    if report.consistent:
        text.append("✓ consistent", style="bold green")
        fp = next(iter(report.fingerprints), None)
        if fp:
            text.append(f" · {safe(fp, 40)}")
    else:
        text.append("✗ NOT consistent", style="bold white on red")
        text.append(f" · {value_counts(report)} · u: unify")
    for srv in report.servers:
        text.append("\n")
        mark, style = {True: ("✓", "green"), False: ("✗", "bold red"),
                       None: ("?", "yellow")}[srv.uses_disk_hash]
        text.append(f"{mark} {safe(srv.service, 20)}: ", style=style)
        words = {True: "uses the hash on disk",
                 False: "restart needed (old hash loaded)",
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

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield DataTable(id="tokens-table", cursor_type="row", zebra_stripes=False)
        yield Static(summary_text(None), id="tokens-summary")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label, width in COLUMNS:
            table.add_column(label, width=width, key=key)
        for loc in self.config.tokens.locations:
            table.add_row(self._name_cell(loc.name), state_cell(None), Text("…", no_wrap=True),
                          problems_cell(None), Text("–", no_wrap=True), key=loc.name)
        self.border_subtitle = "u: unify" if not self.readonly else "read-only"

    def _name_cell(self, name: str) -> Text:
        canonical = name == self.config.tokens.canonical
        return Text(safe(name, 40) + ("*" if canonical else ""),
                    style="bold" if canonical else "")

    # ------------------------------------------------------------------ rendering

    def apply(self, report: TokensReport) -> None:
        """Update rows in place from one status read."""
        table = self.query_one(DataTable)
        self.polls += 1
        self.report = report
        for s in report.locations:
            if s.name not in table.rows:
                table.add_row(self._name_cell(s.name), state_cell(None), Text("…", no_wrap=True),
                              problems_cell(None), Text("–", no_wrap=True), key=s.name)
            set_cell(table, s.name, "state", state_cell(s))
            set_cell(table, s.name, "fp", plain(safe(s.fingerprint or "–", 40), no_wrap=True))
            set_cell(table, s.name, "problems", problems_cell(s))
            set_cell(table, s.name, "mtime", mtime_cell(s))
        update_if_changed(self.query_one("#tokens-summary", Static), summary_text(report))

    def selected_location(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:
            return None
        return str(key.value) if key is not None else None
