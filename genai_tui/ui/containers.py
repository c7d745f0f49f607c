"""The containers panel: one row per configured service, as the engine last saw it (live
from the Docker events stream); it renders, it never asks a source."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from genai_tui.config import Config
from genai_tui.model import ContainerInfo, DockerStatus
from genai_tui.ui import stylesheets
from genai_tui.ui.render import (
    Col,
    RowTable,
    cut,
    fit_columns,
    natural_widths,
    plain,
    set_cell,
    set_subtitle,
    show_rows,
    table_width,
)

#: every column, in order, and how it gives way (render.fit_columns): states, counts
#: and the exit code are never cut; the ports' first mapping never is either (a port cut
#: to `->818` reads as another port); names and the image take what is left, the
#: container name and the image go first when the panel is narrow, then the uptime
COLUMNS = (
    Col("service", "Service", min=10, max=64, grow=0),
    Col("container", "Container", min=12, max=128, drop=2, grow=2),
    Col("state", "State", fixed=7),
    Col("health", "Health", fixed=7),
    Col("uptime", "Up", fixed=6, drop=1),
    Col("restarts", "Rst", fixed=3),
    Col("exit", "Exit", fixed=4),
    Col("ports", "Ports", min=9, max=200, grow=1),
    Col("image", "Image", min=12, max=200, drop=3, grow=3),
)
#: the uptime is redrawn this often (only its cells, only when their text changes)
UPTIME_TICK = 1.0

STATE_STYLE = {
    "running": "green",
    "restarting": "bold yellow",
    "paused": "yellow",
    "created": "yellow",
    "exited": "bold red",
    "dead": "bold red",
    "removing": "yellow",
    "missing": "bold red",
}
HEALTH_STYLE = {"healthy": "green", "unhealthy": "bold red", "starting": "yellow"}


def human_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600}h"


def uptime_text(info: ContainerInfo, now: datetime | None = None) -> str:
    if not info.running or info.started_at is None:
        return "-"
    now = now or datetime.now(UTC)
    return human_duration((now - info.started_at).total_seconds())


def row_cells(info: ContainerInfo, now: datetime | None = None, *,
              looping_since: datetime | None = None) -> dict[str, Text | str]:
    """What each column shows for one service. Every text from the config or Docker goes
    through `plain` (one clean line, never markup)."""
    state = info.state
    if info.looping:
        since = f" since {looping_since.astimezone():%H:%M}" if looping_since else ""
        state_text = Text("looping" + since, style="bold red reverse")
    else:
        state_text = plain(state, 20, style=STATE_STYLE.get(state, ""))
    if info.running and info.stopping_since is not None:  # SIGTERM seen, no `die` yet
        waited = (now or datetime.now(UTC)) - info.stopping_since
        state_text = Text(f"stopping · {max(0, int(waited.total_seconds()))} s",
                          style="bold yellow")
    if info.action:
        failed = info.action.startswith("restart failed")
        state_text = Text("restart ✗", style="bold red") if failed else \
            plain(info.action, 20, style="bold cyan")
    health = plain(info.health or "-", 20, style=HEALTH_STYLE.get(info.health or "", "dim"))
    if info.health == "unhealthy" and info.failing_streak:
        health = Text.assemble(("unhealthy", "bold red"), (f"×{info.failing_streak}", "red"))
    if info.oom_killed:
        exit_text = Text(f"{info.exit_code if info.exit_code is not None else 137} OOM",
                         style="bold red")
    elif info.exit_code not in (None, 0) and not info.running:
        exit_text = Text(str(info.exit_code), style="red")
    elif info.exit_code is not None and not info.running:
        exit_text = Text(str(info.exit_code))
    else:
        exit_text = Text("-", style="dim")
    ports = plain(", ".join(p.label().removesuffix("/tcp") for p in info.ports) or "-", 200,
                  no_wrap=True)
    return {
        "service": plain(info.service, 64, style="bold"),
        "container": _container_cell(info),
        "state": state_text,
        "health": health,
        "uptime": uptime_text(info, now),
        "restarts": Text(str(info.restart_count),
                         style="bold red" if info.looping else ("yellow" if info.restart_count
                                                                else "")),
        "exit": exit_text,
        "ports": ports,
        "image": _image(info),
    }


def _container_cell(info: ContainerInfo) -> Text:
    if info.runtime == "process" and not info.missing:
        # no container: show the process and what it costs (PID, CPU, memory)
        return Text(f"pid {info.pid} {info.cpu_pct or 0:.0f}% {info.memory_mb or 0:.0f}M")
    return plain(info.container, 128, style="dim" if info.missing else "")


def _image(info: ContainerInfo) -> Text:
    if info.runtime != "process":
        return plain(info.image or "-", 200, no_wrap=True)
    return plain("process not found" if info.missing else info.image, 200, no_wrap=True)


class ContainersPanel(Vertical):
    DEFAULT_CSS = stylesheets.read("containers.tcss")

    def __init__(self, config: Config, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.config = config
        self.border_title = "Containers"
        self._infos: dict[str, ContainerInfo] = {}
        #: column key -> width, in order (what the table shows now)
        self._widths: dict[str, int] = {}
        #: the full text of every cell, before any cut (row -> column -> text)
        self._full: dict[str, dict[str, Text]] = {}
        #: (code, service) -> when that finding opened, from the history store (the app
        #: sets it when history is on): "looping since 02:51"
        self.since: Callable[[str, str], datetime | None] | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="docker-banner")
        table = RowTable(cursor_type="row", zebra_stripes=False, id="containers-table")
        yield table

    @property
    def columns(self) -> list[tuple[str, str, int]]:
        """(key, label, width) of the columns shown now."""
        labels = {c.key: c.label for c in COLUMNS}
        return [(k, labels[k], w) for k, w in self._widths.items()]

    def _info_for(self, name: str) -> ContainerInfo:
        info = self._infos.get(name)
        if info is None:
            svc = next(s for s in self.config.services if s.name == name)
            info = ContainerInfo(service=svc.name, container=svc.container_name,
                                 state="…", runtime=svc.runtime)
        return info

    def _cells(self, info: ContainerInfo) -> dict[str, Text]:
        since = self.since("restart_loop", info.service) if self.since and info.looping \
            else None
        cells = {k: v if isinstance(v, Text) else Text(v)
                 for k, v in row_cells(info, looping_since=since).items()}
        if info.state == "…":
            cells["state"] = Text("…", style="dim")
        return cells

    def _fit(self) -> dict[str, int]:
        """Column widths for the panel's width and what the rows hold now."""
        rows = [self._full[s.name] for s in self.config.services if s.name in self._full]
        natural = natural_widths(rows)
        first_port = max((len(_first_port(info)) for info in self._infos.values()),
                         default=0)
        cols = [replace(c, min=max(c.min, first_port)) if c.key == "ports" else c
                for c in COLUMNS]
        return fit_columns(cols, table_width(self), natural)

    def _relayout(self) -> None:
        """Rebuild the table when the widths changed (a resize, a longer value), else
        touch only the cells whose text changed."""
        for svc in self.config.services:
            self._full[svc.name] = self._cells(self._info_for(svc.name))
        widths = self._fit()
        table = self.query_one(DataTable)
        rebuild = widths != self._widths or table.row_count != len(self.config.services)
        self._widths = widths
        show_rows(table, self.columns, {s.name: self._shown(s.name)
                                        for s in self.config.services}, rebuild=rebuild)
        self._show_cut()

    def _shown(self, name: str) -> dict[str, Text]:
        full = self._full[name]
        return {key: cut(full[key], width) for key, width in self._widths.items()}

    def on_resize(self) -> None:
        """Share the new width by priority (render.fit_columns)."""
        if self._full:
            self._relayout()

    def on_mount(self) -> None:
        self._relayout()
        self.set_interval(UPTIME_TICK, self._tick_uptime)

    # -- rendering
    def apply(self, status: DockerStatus | None, infos: list[ContainerInfo], *,
              backoff: float = 0.0) -> None:
        """Show the engine's state; only cells whose text changed are touched."""
        if status is not None:
            banner = self.query_one("#docker-banner", Static)
            if status.reachable:
                self.remove_class("-unreachable")
            else:
                retry = f" — retrying in {backoff:g}s" if backoff else ""
                banner.update(plain(f"{status.error or 'Docker engine unreachable'}{retry}",
                                    300))
                self.add_class("-unreachable")
        known = {s.name for s in self.config.services}
        for info in infos:
            if info.service in known:
                self._infos[info.service] = info
        self._relayout()

    def _tick_uptime(self) -> None:
        """Once a second: the uptime cells only, and only those whose text changed (a
        running container's uptime must not wait for the next Docker event)."""
        table = self.query_one(DataTable)
        now = datetime.now(UTC)
        for name, info in self._infos.items():
            if not info.running or name not in self._full:
                continue
            ticking = {"uptime": Text(uptime_text(info, now))}
            if info.stopping_since is not None:  # "stopping · 4 s" counts too
                ticking["state"] = row_cells(info, now)["state"]
            for column, text in ticking.items():
                if column in self._widths:
                    self._full[name][column] = text
                    set_cell(table, name, column, cut(text, self._widths[column]))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_cut()

    def _show_cut(self) -> None:
        """The selected row's cut cells, in full, in the bottom border: nothing shown
        cut is out of reach."""
        name = self.selected_service
        full = self._full.get(name or "")
        if name is None or full is None:
            set_subtitle(self, "")
            return
        labels = {c.key: c.label for c in COLUMNS}
        parts = [f"{labels[k]} {full[k].plain}" for k, w in self._widths.items()
                 if full[k].cell_len > w]
        set_subtitle(self, plain(" · ".join(parts), 300) if parts else "")

    # -- selection and actions
    @property
    def selected_service(self) -> str | None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        try:
            row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        except Exception:
            return None
        return str(row_key.value) if row_key.value is not None else None

    def info(self, service: str) -> ContainerInfo | None:
        return self._infos.get(service)


def _first_port(info: ContainerInfo) -> str:
    return info.ports[0].label().removesuffix("/tcp") if info.ports else ""
