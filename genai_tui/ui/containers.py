"""The containers panel: one row per configured service, live from the events stream."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from genai_tui.model import ContainerInfo, DockerStatus
from genai_tui.sources.docker import ContainerMonitor
from genai_tui.sources.process import ProcessMonitor
from genai_tui.ui.context import AppContext
from genai_tui.ui.render import add_row, forget_cells, notify_plain, plain, set_cell

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


class ContainersChanged(Message):
    """Posted from a monitor's thread; only the newest queued one per monitor matters.
    `status` is None for process-runtime updates (they say nothing about Docker)."""

    def __init__(self, status: DockerStatus | None, infos: list[ContainerInfo],
                 origin: str = "docker") -> None:
        super().__init__()
        self.status = status
        self.infos = infos
        self.origin = origin

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ContainersChanged) and message.origin == self.origin


class ContainersPanel(Vertical):
    DEFAULT_CSS = """
    ContainersPanel { height: auto; max-height: 50%; }
    ContainersPanel > #docker-banner { display: none; color: $error; text-style: bold;
        padding: 0 1; }
    ContainersPanel.-unreachable > #docker-banner { display: block; }
    ContainersPanel > DataTable { height: auto; max-height: 20; }
    """

    def __init__(self, ctx: AppContext, *, monitor: bool = True, id: str | None = None) -> None:
        super().__init__(id=id)
        self.ctx = ctx
        self.border_title = "Containers"
        self.monitor: ContainerMonitor | None = None
        self.processes: ProcessMonitor | None = None
        self._start_monitor = monitor
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
        for svc in self.ctx.config.services:
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
        runtimes = {s.runtime for s in self.ctx.config.services}
        if self._start_monitor and "docker" in runtimes:
            self.monitor = ContainerMonitor(self.ctx.config, self._from_docker)
            self.monitor.start()
        if self._start_monitor and "process" in runtimes:
            self.processes = ProcessMonitor(self.ctx.config, self._from_processes)
            self.processes.start()

    def on_unmount(self) -> None:
        for monitor in (self.monitor, self.processes):
            if monitor is not None:
                monitor.close(timeout=1.0)

    def _from_docker(self, status: DockerStatus, infos: list[ContainerInfo]) -> None:
        self.post_message(ContainersChanged(status, infos))

    def _from_processes(self, _status: DockerStatus, infos: list[ContainerInfo]) -> None:
        self.post_message(ContainersChanged(None, infos, origin="process"))

    # -- rendering
    def on_containers_changed(self, message: ContainersChanged) -> None:
        self.apply(message.status, message.infos)

    def apply(self, status: DockerStatus | None, infos: list[ContainerInfo]) -> None:
        """Show a new state; only cells whose text changed are touched."""
        if status is not None:
            banner = self.query_one("#docker-banner", Static)
            if status.reachable:
                self.remove_class("-unreachable")
            else:
                retry = ""
                if self.monitor is not None and self.monitor.backoff:
                    retry = f" — retrying in {self.monitor.backoff:g}s"
                banner.update(plain(f"{status.error or 'Docker engine unreachable'}{retry}",
                                    300))
                self.add_class("-unreachable")
            self.ctx.publish("docker", status)
        for info in infos:
            self._infos[info.service] = info
            self._update_row(info)
        self.ctx.publish("containers", list(self._infos.values()))

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

    def _monitor_for(self, name: str) -> ContainerMonitor | ProcessMonitor | None:
        svc = self.ctx.config.service(name)
        if svc is None:
            return None
        return self.processes if svc.runtime == "process" else self.monitor

    def restart_services(self, services: list[str]) -> None:
        for name in services:
            monitor = self._monitor_for(name)
            if monitor is not None:
                monitor.set_action(name, "restarting")
        self._restart(services)

    @work(thread=True, group="docker-actions", exit_on_error=False)
    def _restart(self, services: list[str]) -> None:
        for name in services:
            svc = self.ctx.config.service(name)
            monitor = self._monitor_for(name)
            if svc is None or monitor is None:
                continue
            ok, detail = monitor.source.restart(svc)
            monitor.set_action(name, None if ok else f"restart failed: {detail}")
            if ok:
                try:
                    if isinstance(monitor, ProcessMonitor):
                        monitor.poke()
                    else:
                        monitor.refresh_service(svc)
                except Exception:  # the events stream will catch up
                    pass
                self.app.call_from_thread(
                    notify_plain, self.app, f"{name}: restarted", title="Restart")
            else:
                self.app.call_from_thread(
                    notify_plain, self.app, f"{name}: restart failed: {detail}",
                    title="Restart", severity="error")
