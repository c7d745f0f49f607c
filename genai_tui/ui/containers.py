"""The containers panel: one row per configured service, as the engine last saw it (live
from the Docker events stream); it renders, it never asks a source."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from genai_tui.config import Config
from genai_tui.model import ContainerInfo, DockerStatus
from genai_tui.ui import stylesheets
from genai_tui.ui.render import add_row, forget_cells, plain, set_cell

COLUMNS = (
    ("service", "Service", 19),
    ("container", "Container", 22),
    ("state", "State", 10),
    ("health", "Health", 12),
    ("uptime", "Up", 5),
    ("restarts", "Rst", 3),
    ("exit", "Exit", 7),
    ("ports", "Ports", 20),
    ("image", "Image", 18),
)
#: columns dropped when the panel is narrow: (min inner width, hidden columns)
LEVELS = ((128, ()), (100, ("image",)), (0, ("container", "image", "uptime")))

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


def row_cells(info: ContainerInfo, now: datetime | None = None) -> dict[str, Text | str]:
    """What each column shows for one service. Every text from the config or Docker goes
    through `plain` (one clean line, never markup)."""
    state = info.state
    if info.looping:
        state_text = Text("looping", style="bold red reverse")
    else:
        state_text = plain(state, 20, style=STATE_STYLE.get(state, ""))
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
        self._hidden: tuple[str, ...] = ()

    def compose(self) -> ComposeResult:
        yield Static("", id="docker-banner")
        table: DataTable[Text | str] = DataTable(cursor_type="row", zebra_stripes=False,
                                                 id="containers-table")
        yield table

    @property
    def columns(self) -> list[tuple[str, str, int]]:
        return [c for c in COLUMNS if c[0] not in self._hidden]

    def _build_table(self) -> None:
        table = self.query_one(DataTable)
        cursor = table.cursor_row
        table.clear(columns=True)
        forget_cells(table)
        for key, label, width in self.columns:
            table.add_column(label, key=key, width=width)
        for svc in self.config.services:
            info = self._infos.get(svc.name)
            if info is None:
                info = ContainerInfo(service=svc.name, container=svc.container_name,
                                     state="…", runtime=svc.runtime)
            cells = row_cells(info)
            if info.state == "…":
                cells["state"] = Text("…", style="dim")
            add_row(table, svc.name, {k: cells[k] for k, _, _ in self.columns})
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))

    def on_resize(self) -> None:
        """Drop the least useful columns rather than cut the useful ones."""
        width = self.content_size.width
        hidden = next(h for w, h in LEVELS if width >= w)
        if hidden != self._hidden:
            self._hidden = hidden
            self._build_table()

    def on_mount(self) -> None:
        self._build_table()
        self.set_interval(10.0, self._tick_uptime)

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
        for info in infos:
            self._infos[info.service] = info
            self._update_row(info)

    def _update_row(self, info: ContainerInfo) -> None:
        table = self.query_one(DataTable)
        cells = row_cells(info)
        for key, _, _ in self.columns:
            set_cell(table, info.service, key, cells[key])

    def _tick_uptime(self) -> None:
        for info in self._infos.values():
            if info.running:
                self._update_row(info)

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
