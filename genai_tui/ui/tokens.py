"""The tokens panel: every copy of the ComfyUI-Login credential by fingerprint, whether
they agree, and whether each running ComfyUI still uses the hash on disk.

The status is read off the UI thread on a chained timer (a read, then `set_timer` for the
next, so reads never overlap); bcrypt checks are cached in the source, so an idle poll is
a handful of tiny file reads. `u` (`action_unify`) opens the unify modal unless the
dashboard is read-only. Status changes go to the audit log, not every poll.
"""

from __future__ import annotations

import logging
from datetime import datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from genai_tui.model import TokenLocationStatus, TokensReport
from genai_tui.safety import one_line
from genai_tui.sources import tokens as tk
from genai_tui.ui.context import AppContext
from genai_tui.ui.polling import Poller, in_thread
from genai_tui.ui.render import notify_plain, plain, set_cell, update_if_changed

log = logging.getLogger(__name__)

#: seconds between two status reads
POLL_INTERVAL = 5.0

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


def safe(text: object, limit: int = 200) -> str:
    """A name, path or message for the screen: a bcrypt hash in it becomes its fingerprint,
    then one clean line (`safety.one_line`). Scrubbed again after cleaning, for a hash
    that an escape sequence had split. Still a `str`: hand it to a `Text`."""
    raw = tk.scrub(text) if isinstance(text, str) else one_line(text, limit * 4)
    return one_line(tk.scrub(one_line(raw, limit * 4)), limit)


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
        text.append(f" · {tk.value_counts(report)} · u: unify")
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

    DEFAULT_CSS = """
    TokensPanel {
        height: auto;
        max-height: 14;
        min-width: 50;
        border: round $primary;
    }
    TokensPanel > DataTable {
        height: auto;
        max-height: 9;
        scrollbar-size-vertical: 1;
    }
    TokensPanel > #tokens-summary {
        height: auto;
        max-height: 4;
        padding: 0 1;
    }
    """

    def __init__(self, ctx: AppContext, *, id: str | None = "tokens",
                 classes: str | None = None, interval: float = POLL_INTERVAL) -> None:
        super().__init__(id=id, classes=classes)
        self.ctx = ctx
        self.interval = interval
        self.report: TokensReport | None = None
        self.polls = 0
        self._auditor = tk.StatusAuditor(ctx.config.tokens.audit_log)
        self.poller = Poller(self, "tokens", in_thread(self._collect), self._delivered,
                             interval, on_error=self._failed)
        self.border_title = "Tokens"

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield DataTable(id="tokens-table", cursor_type="row", zebra_stripes=False)
        yield Static(summary_text(None), id="tokens-summary")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label, width in COLUMNS:
            table.add_column(label, width=width, key=key)
        for loc in self.ctx.config.tokens.locations:
            table.add_row(self._name_cell(loc.name), state_cell(None), Text("…", no_wrap=True),
                          problems_cell(None), Text("–", no_wrap=True), key=loc.name)
        self.border_subtitle = "u: unify" if not self.ctx.readonly else "read-only"
        if self.ctx.live:
            self.refresh_now()

    def on_unmount(self) -> None:
        self.poller.close()

    def _name_cell(self, name: str) -> Text:
        canonical = name == self.ctx.config.tokens.canonical
        return Text(safe(name, 40) + ("*" if canonical else ""),
                    style="bold" if canonical else "")

    # ------------------------------------------------------------------ polling

    def refresh_now(self) -> None:
        """Read the status now (or right after the read in progress)."""
        self.poller.now()

    def _collect(self) -> TokensReport:
        """Runs in a worker thread: file reads, cached bcrypt checks, the audit line."""
        report = tk.read_report(self.ctx.config.tokens)
        snap = self.ctx.snapshot
        report.servers = tk.server_status(report, list(snap.probes), list(snap.log_events))
        try:
            self._auditor.observe(report)
        except Exception as exc:  # the audit must never stop the panel
            log.warning("audit failed: %s", type(exc).__name__)
        return report

    def _delivered(self, report: TokensReport) -> None:
        self.apply(report)
        self.ctx.publish("tokens", report)

    def _failed(self, exc: Exception) -> None:
        self.border_subtitle = f"status failed ({type(exc).__name__})"

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

    # ------------------------------------------------------------------ actions

    def action_unify(self) -> None:
        """Open the unify modal (refused in read-only mode)."""
        if self.ctx.readonly:
            notify_plain(self.app, "read-only: unify disabled", title="Read-only",
                         severity="warning")
            return
        from genai_tui.ui.screens.unify import UnifyScreen

        def done(_: object) -> None:
            self.refresh_now()

        self.app.push_screen(UnifyScreen(self.ctx, self.report, on_change=self.refresh_now),
                             done)
