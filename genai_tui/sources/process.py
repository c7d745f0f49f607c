"""Services that do not run in Docker (`runtime = "process"`), monitored through psutil.

A service's process is the one listening on its URL's port, else the first whose command
line matches `process_pattern`. It is shown like a container (state, uptime, PID, CPU,
memory) and restarted with the configured `restart_command`. There is no events stream for
processes, so this polls — cheaply: one scan of listening sockets per round, and the
command-line scan only for services that no socket explains.
"""

from __future__ import annotations

import logging
import re
import shlex
import subprocess
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import psutil

from genai_tui.config import Config, ServiceConfig
from genai_tui.model import MISSING, ContainerInfo, DockerStatus, PortBinding
from genai_tui.sources.docker import RestartTracker

log = logging.getLogger(__name__)

Listener = Callable[[DockerStatus, list[ContainerInfo]], None]
STATE_MAP = {
    psutil.STATUS_RUNNING: "running",
    psutil.STATUS_SLEEPING: "running",
    psutil.STATUS_DISK_SLEEP: "running",
    psutil.STATUS_IDLE: "running",
    psutil.STATUS_WAKING: "running",
    psutil.STATUS_STOPPED: "paused",
    psutil.STATUS_TRACING_STOP: "paused",
    psutil.STATUS_ZOMBIE: "dead",
    psutil.STATUS_DEAD: "dead",
}


def listeners() -> dict[int, int]:
    """port -> PID of the process listening on it (TCP)."""
    found: dict[int, int] = {}
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return found
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.pid and c.laddr:
            found.setdefault(c.laddr.port, c.pid)
    return found


def find_by_pattern(pattern: str) -> psutil.Process | None:
    regex = re.compile(pattern)
    me = psutil.Process().pid
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = proc.info.get("cmdline") or []
        except (psutil.Error, KeyError):
            continue
        if proc.pid != me and cmdline and regex.search(" ".join(cmdline)):
            return proc
    return None


class ProcessSource:
    """Snapshots and restarts of process-runtime services (blocking; call from a thread)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._procs: dict[int, psutil.Process] = {}  # cached for cpu_percent's state

    @property
    def services(self) -> list[ServiceConfig]:
        return [s for s in self.config.services if s.runtime == "process"]

    def _process(self, pid: int) -> psutil.Process:
        proc = self._procs.get(pid)
        if proc is None or not proc.is_running():
            proc = psutil.Process(pid)
            proc.cpu_percent(None)  # first call primes the counter
            self._procs[pid] = proc
        return proc

    def find(self, svc: ServiceConfig, ports: dict[int, int] | None = None
             ) -> psutil.Process | None:
        ports = listeners() if ports is None else ports
        pid = ports.get(svc.host_port[1])
        if pid:
            try:
                return self._process(pid)
            except psutil.Error:
                pass
        if svc.process_pattern:
            proc = find_by_pattern(svc.process_pattern)
            if proc is not None:
                try:
                    return self._process(proc.pid)
                except psutil.Error:
                    return None
        return None

    def info(self, svc: ServiceConfig, ports: dict[int, int] | None = None) -> ContainerInfo:
        proc = self.find(svc, ports)
        base = ContainerInfo(service=svc.name, container=svc.process_pattern or "process",
                             state=MISSING, runtime="process")
        if proc is None:
            return base
        try:
            with proc.oneshot():
                status = proc.status()
                name = proc.name()
                cmdline = proc.cmdline()
                started = datetime.fromtimestamp(proc.create_time(), UTC)
                cpu = proc.cpu_percent(None)
                rss = proc.memory_info().rss / 2**20
                listening = sorted({c.laddr.port for c in proc.net_connections("tcp")
                                    if c.status == psutil.CONN_LISTEN and c.laddr})
        except psutil.NoSuchProcess:
            return base
        except psutil.Error as exc:
            base.state = "unknown"
            base.action = f"cannot read process: {type(exc).__name__}"
            return base
        return ContainerInfo(
            service=svc.name, container=f"{name}[{proc.pid}]", id=str(proc.pid),
            state=STATE_MAP.get(status, status), started_at=started, pid=proc.pid,
            image=" ".join(shlex.quote(a) for a in cmdline)[:200],
            ports=[PortBinding(p, "tcp", "", p) for p in listening],
            runtime="process", cmd_args=cmdline, cpu_pct=cpu, memory_mb=rss,
        )

    def list_stack(self) -> list[ContainerInfo]:
        ports = listeners()
        return [self.info(s, ports) for s in self.services]

    def restart(self, svc: ServiceConfig, timeout: float = 60.0) -> tuple[bool, str]:
        """Run the service's restart_command; (ok, what happened) — never raises."""
        if not svc.restart_command:
            return False, "no restart_command configured"
        try:
            proc = subprocess.run(svc.restart_command, shell=True, capture_output=True,
                                  text=True, timeout=timeout, cwd=self.config.base_dir,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
        except subprocess.TimeoutExpired:
            return False, f"restart_command still running after {timeout:g}s"
        except OSError as exc:
            return False, f"restart_command failed: {exc.strerror or exc}"
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
            detail = "".join(ch for ch in tail[0] if ch.isprintable())[:160]
            return False, f"restart_command exited {proc.returncode}" + (
                f": {detail}" if detail else "")
        return True, "restarted"


class ProcessMonitor:
    """Polls process-runtime services and reports them like the container monitor."""

    def __init__(self, config: Config, listener: Listener, interval: float = 2.0) -> None:
        self.config = config
        self.listener = listener
        self.interval = interval
        self.source = ProcessSource(config)
        self.tracker = RestartTracker(config.docker.restart_loop_count,
                                      config.docker.restart_loop_window)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: dict[str, ContainerInfo] = {}
        self._actions: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="process-monitor", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def poke(self) -> None:
        """Poll now (after a restart) instead of at the next interval."""
        self._wake.set()

    def set_action(self, service: str, action: str | None) -> None:
        with self._lock:
            self._actions[service] = action
            info = self._last.get(service)
            if info is not None:
                info.action = action
                infos = list(self._last.values())
            else:
                infos = []
        if infos:
            self.listener(DockerStatus(True), infos)

    def poll(self) -> list[ContainerInfo]:
        infos = self.source.list_stack()
        changed = False
        for info in infos:
            prev = self._last.get(info.service)
            if info.pid and (prev is None or prev.pid != info.pid) and prev is not None:
                self.tracker.record_start(info.service)
            info.looping = self.tracker.looping(info.service)
            with self._lock:
                info.action = self._actions.get(info.service)
            if prev is None or _visible(prev) != _visible(info):
                changed = True
            self._last[info.service] = info
        if changed:
            self.listener(DockerStatus(True), infos)
        return infos

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # psutil hiccups must not kill monitoring
                log.debug("process poll failed", exc_info=True)
            self._wake.wait(self.interval)
            self._wake.clear()


def _visible(info: ContainerInfo) -> tuple[object, ...]:
    return (info.state, info.pid, info.looping, info.action, tuple(info.ports),
            round(info.cpu_pct or 0), round(info.memory_mb or 0))

