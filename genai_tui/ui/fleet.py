"""The fleet screen: one row per host, each the summary of its engine's latest snapshot
(or why there is none), and Enter opens that host's full dashboard.

The rows are redrawn once a second from `Fleet` summaries (the age of a stale host ticks
by itself), touching only the cells whose text changed. Hosts stream on threads of
their own: a slow one never delays this screen or another host.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from genai_tui import __version__
from genai_tui.engine.fleet import Fleet, HostSummary
from genai_tui.model import Severity
from genai_tui.ui import stylesheets
from genai_tui.ui.render import (
    Col,
    fit_columns,
    natural_widths,
    notify_plain,
    plain,
    show_rows,
    table_width,
    update_if_changed,
)

COLUMNS = (
    Col("host", "Host", min=8, max=30, grow=0),
    Col("state", "State", fixed=11),
    Col("services", "Services", fixed=8),
    Col("worst", "Worst finding, or why not reachable", min=12, max=200, grow=1),
    Col("gpu", "GPU GiB", fixed=7),
    Col("jobs", "Run/wait", fixed=8),
    Col("version", "Version", fixed=7),
)
STATE_STYLES = {"live": "green", "stale": "bold yellow", "unreachable": "bold red",
                "connecting": "dim"}
SEVERITY_STYLES = {Severity.CRITICAL: "bold red", Severity.WARNING: "yellow",
                   Severity.INFO: ""}
#: what `FleetApp.run()` returns to say "open this host's dashboard"
OPEN = "open:"


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def gib(mb: float | None) -> str:
    """GiB, short: a whole number from 10 GiB on (a row has room for `40/140`)."""
    if mb is None:
        return "-"
    value = mb / 1024
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def row_cells(s: HostSummary) -> dict[str, Text]:
    """One host's cells: the state in words first (the SSH error when unreachable)."""
    if s.state == "live":
        state = Text("live", style=STATE_STYLES["live"])
    elif s.state == "stale":
        state = Text(f"stale {age_text(s.age_s)}", style=STATE_STYLES["stale"])
    elif s.state == "unreachable":
        state = Text("unreachable", style=STATE_STYLES["unreachable"])
    else:
        state = Text("connecting…", style="dim")
    has_data = s.version is not None
    services = Text(f"{s.services_up}/{s.services_total} up" if has_data else "-",
                    style="" if s.services_up == s.services_total else "yellow")
    if s.state == "unreachable":
        worst = plain(s.error or "?", 200, "red")
    elif s.worst is not None and s.worst_severity is not None:
        worst = Text.assemble(plain(s.worst, 200, SEVERITY_STYLES[s.worst_severity]))
        if s.findings > 1:
            worst.append(f" (+{s.findings - 1})", style="dim")
    else:
        worst = Text("none" if has_data else "-", style="green" if has_data else "dim")
    gpu = Text("-" if s.gpu_total_mb is None
               else f"{gib(s.gpu_used_mb)}/{gib(s.gpu_total_mb)}")
    jobs = Text(f"{s.jobs_running}/{s.jobs_pending}" if has_data else "-")
    version = plain(s.version or "-", 30, "yellow" if s.version_note else "dim")
    return {"host": plain(s.name, 60, "bold"), "state": state, "services": services,
            "worst": worst, "gpu": gpu, "jobs": jobs, "version": version}


def detail_text(s: HostSummary) -> Text:
    """The selected host in full: what the row had to cut, and what to do."""
    text = Text.assemble(plain(s.name, 60, "bold"), " · ")
    if s.version_note:
        text.append_text(plain(s.version_note, 120, "yellow"))
        text.append(" · ")
    if s.state == "unreachable":
        text.append_text(plain(s.error or "unreachable", 400, "red"))
        if s.retry_in_s is not None:
            text.append(f" · retry in {s.retry_in_s:.0f} s (c: now)", style="dim")
    elif s.state == "connecting":
        text.append("connecting…", style="dim")
    else:
        text.append(f"last snapshot {age_text(s.age_s)} ago", style="dim")
        if s.remote_readonly:
            text.append(" · read-only there", style="yellow")
        if s.worst:
            text.append(" · ")
            text.append_text(plain(s.worst, 400))
        text.append(" · Enter: its dashboard", style="dim")
    return text


class FleetTable(DataTable[Any]):
    """The hosts' table: Enter (its own key, so the footer says what it does) opens the
    selected host's dashboard."""

    BINDINGS = [Binding("enter", "select_cursor", "Open dashboard")]


class FleetApp(App[str | None]):
    """Every host on one screen; `run()` returns `OPEN + name` for Enter, None to quit."""

    TITLE = "genai-tui fleet"
    CSS_PATH = [str(stylesheets.path("fleet.tcss"))]
    BINDINGS = [
        Binding("c", "reconnect", "Reconnect now"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True, system=True),
    ]

    def __init__(self, fleet: Fleet, *, readonly: bool = False,
                 select: str | None = None) -> None:
        super().__init__()
        self.fleet = fleet
        self.readonly = readonly
        self._select = select
        self._widths: dict[str, int] | None = None
        self._order: list[str] = []

    def compose(self) -> ComposeResult:
        from genai_tui.ui.app import QuietFooter

        title = Text.assemble(("genai-tui fleet ", "bold"), (f"v{__version__}", "dim"),
                              f"  {len(self.fleet.hosts)} hosts")
        if self.readonly:
            title.append("  READ-ONLY", style="bold black on yellow")
        yield Static(title, id="fleet-title")
        table = FleetTable(id="fleet-table", cursor_type="row")
        yield table
        yield Static(id="fleet-detail")
        yield QuietFooter()

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.redraw()
        if self._select in self._order:
            self.query_one(DataTable).move_cursor(row=self._order.index(self._select))
        self.set_interval(1.0, self.redraw)

    def on_resize(self) -> None:
        self._widths = None
        self.redraw()

    def redraw(self) -> None:
        summaries = [h.summary() for h in self.fleet.hosts]
        rows = {s.name: row_cells(s) for s in summaries}
        table = self.query_one(DataTable)
        widths = fit_columns(COLUMNS, table_width(table), natural_widths(rows.values()))
        rebuild = widths != self._widths or list(rows) != self._order
        columns = [(c.key, c.label, widths[c.key]) for c in COLUMNS if c.key in widths]
        shown = {name: {k: v for k, v in cells.items() if k in widths}
                 for name, cells in rows.items()}
        show_rows(table, columns, shown, rebuild=rebuild)
        self._widths, self._order = widths, list(rows)
        self._show_detail(summaries)

    def _show_detail(self, summaries: list[HostSummary]) -> None:
        table = self.query_one(DataTable)
        if not summaries:
            update_if_changed(self.query_one("#fleet-detail", Static), Text(
                "no host: add [[hosts]] to the config or use --host", style="yellow"))
            return
        s = summaries[min(max(table.cursor_row, 0), len(summaries) - 1)]
        update_if_changed(self.query_one("#fleet-detail", Static), detail_text(s))

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._show_detail([h.summary() for h in self.fleet.hosts])

    def on_data_table_row_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_open()

    def _selected(self) -> Any:
        table = self.query_one(DataTable)
        if not self.fleet.hosts:
            return None
        return self.fleet.hosts[min(max(table.cursor_row, 0), len(self.fleet.hosts) - 1)]

    def action_open(self) -> None:
        host = self._selected()
        if host is None:
            return
        if host.config is None:
            s = host.summary()
            notify_plain(self, f"{host.name}: no snapshot yet"
                         + (f" ({s.error})" if s.error else ""), title="Fleet",
                         severity="warning")
            return
        self.exit(OPEN + host.name)

    def action_reconnect(self) -> None:
        host = self._selected()
        if host is not None:
            host.reconnect_now()
            notify_plain(self, f"{host.name}: reconnecting now", title="Fleet", timeout=3)


# ---------------------------------------------------------------- one host's dashboard

#: what `RemoteDashboard.run()` returns for Esc: back to the fleet screen
BACK = "back"


def _remote_app_class() -> type:
    """The dashboard for one host of the fleet (made on first use: importing the app
    costs what the fleet screen alone does not need)."""
    from genai_tui.ui.app import GenaiTui
    from genai_tui.ui.screens.confirm import ConfirmScreen

    class RemoteDashboard(GenaiTui):
        """The same panels over a RemoteStack: Esc goes back to the fleet; actions run
        on the host as genai-tui subcommands (its read-only mode and ours both refuse)."""

        BINDINGS = [*GenaiTui.BINDINGS,
                    Binding("escape", "back", "Fleet", id="genai.fleet_back")]

        def __init__(self, stack: Any, *, readonly: bool = False) -> None:
            super().__init__(stack.config, readonly=readonly or stack.readonly, stack=stack)
            self.host = stack.host
            self.sub_title = f"{stack.remote} · " + self.sub_title

        def _title_text(self) -> Text:
            text = Text.assemble(("genai-tui ", "bold"), (f"v{__version__}", "dim"), "  ",
                                 plain(self.stack.remote, 60, "bold"), "  ",
                                 plain(self.config.source, 160, "dim"))
            s = self.host.summary()
            if s.state != "live":
                style = STATE_STYLES.get(s.state, "")
                text.append(f"  {s.state.upper()}", style=style)
                if s.state == "stale":
                    text.append(f" · last snapshot {age_text(s.age_s)} ago", style=style)
                elif s.error:
                    text.append(": ")
                    text.append_text(plain(s.error, 160))
            if self.readonly:
                text.append("  READ-ONLY", style="bold black on yellow")
            text.append("  Esc: fleet", style="dim")
            return text

        def on_mount(self) -> None:
            super().on_mount()
            self.set_interval(1.0, self._retitle)

        def _retitle(self) -> None:
            from textual.css.query import NoMatches

            try:
                update_if_changed(self.screen_stack[0].query_one("#title", Static),
                                  self._title_text())
            except (NoMatches, IndexError):
                pass

        def action_back(self) -> None:
            self.exit(BACK)  # type: ignore[arg-type]

        def action_unify(self) -> None:
            if self._refuse_readonly("unify"):
                return
            restart = ", ".join(self.config.tokens.restart_after_unify) or "no service"
            question = (f"Unify the token copies on {self.stack.remote} from its "
                        f"canonical copy ({self.config.tokens.canonical or 'its default'})"
                        f", then restart {restart}?")

            def finished(ok: bool, detail: str) -> None:
                notify_plain(self, f"{self.stack.remote}: {detail}", title="Unify",
                             severity="information" if ok else "error", timeout=12)

            def done(yes: bool | None) -> None:
                if yes:
                    self.stack.unify(finished)

            self.push_screen(ConfirmScreen(question, yes="Unify"), done)

        def action_timeline(self) -> None:
            notify_plain(self, f"the history of {self.stack.remote} is kept there: "
                         f"`genai-tui history` on {self.stack.remote}", title="Timeline",
                         severity="warning")

        def _offer_discovery(self, containers: Any) -> None:
            pass  # the host's config is the host's business: `init` runs there

        def action_discover(self) -> None:
            notify_plain(self, f"run `genai-tui init` on {self.stack.remote} itself",
                         title="Discover", severity="warning")

    return RemoteDashboard


def run_fleet(fleet: Fleet, *, readonly: bool = False) -> int:
    """The fleet screen, and each host's dashboard it opens, until the admin quits."""
    from genai_tui.engine.fleet import RemoteStack

    select = None
    while True:
        choice = FleetApp(fleet, readonly=readonly, select=select).run()
        if not choice or not choice.startswith(OPEN):
            return 0
        select = choice[len(OPEN):]
        host = fleet.get(select)
        if host is None or host.config is None:
            continue
        app = _remote_app_class()(RemoteStack(host, readonly=readonly), readonly=readonly)
        if app.run() != BACK:
            return 0
