"""CPU and memory accounting with psutil: a tool's process tree, the Docker engine, the host.

CPU is counted per process as user + system time (children that were reaped are *not*
added: that would count them twice, and for containerd-shim it would add the containers'
own healthcheck processes, which no tool causes). A `Sampler` thread re-reads the process
sets at a fixed interval, so processes that appear during a window are counted from their
start and processes that die keep their last reading.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

#: the processes whose CPU a client of the Docker API makes the engine spend
ENGINE_NAMES = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2",
                "docker-proxy")


def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def tree(root: int) -> list[psutil.Process]:
    """The root process and all its descendants (empty when the root is gone)."""
    try:
        proc = psutil.Process(root)
        return [proc, *proc.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


def engine_processes() -> list[psutil.Process]:
    """dockerd, containerd, every live containerd-shim and docker-proxy."""
    found = []
    for p in psutil.process_iter(["name", "status"]):
        name = p.info.get("name") or ""
        if p.info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        if name in ENGINE_NAMES or name.startswith("containerd-shim"):
            found.append(p)
    return found


def host_busy(seconds: float = 2.0) -> float:
    """The host's CPU use in percent over the next `seconds` (all CPUs)."""
    return float(psutil.cpu_percent(interval=seconds))


def engine_group(p: psutil.Process) -> str:
    try:
        name = p.name()
    except psutil.Error:
        return "other"
    if name.startswith("containerd-shim"):
        return "containerd-shim"
    return name


@dataclass
class CpuAccount:
    """CPU seconds of a changing set of processes since `begin()`."""

    first: dict[tuple[int, float], float] = field(default_factory=dict)
    last: dict[tuple[int, float], float] = field(default_factory=dict)
    group: dict[tuple[int, float], str] = field(default_factory=dict)
    started: float = 0.0

    def begin(self, procs: list[psutil.Process], group: Callable[[psutil.Process], str]
              ) -> None:
        self.first.clear()
        self.last.clear()
        self.started = time.time()
        self.update(procs, group, initial=True)

    def update(self, procs: list[psutil.Process], group: Callable[[psutil.Process], str],
               initial: bool = False) -> None:
        for p in procs:
            try:
                with p.oneshot():
                    key = (p.pid, p.create_time())
                    cpu = _cpu(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            if key not in self.first:
                # a process born inside the window counts from zero
                self.first[key] = cpu if initial or key[1] < self.started else 0.0
                self.group[key] = group(p)
            self.last[key] = cpu

    def total(self) -> float:
        return sum(self.last[k] - self.first[k] for k in self.last)

    def by_group(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for k in self.last:
            g = self.group.get(k, "other")
            out[g] = out.get(g, 0.0) + self.last[k] - self.first[k]
        return {g: round(v, 3) for g, v in sorted(out.items())}


@dataclass
class Window:
    """What one measurement window found."""

    seconds: float
    tool_cpu: float | None
    tool_peak_rss_mb: float | None
    engine_cpu: float
    engine_by_group: dict[str, float]
    host_busy_pct: float
    other_cpu_pct: float  # host CPU used by neither the tool, the engine nor the bench
    bench_cpu: float
    rss_series: list[tuple[float, float]]  # (seconds since start, tree RSS MB)

    def to_json(self) -> dict:
        return {
            "seconds": round(self.seconds, 2),
            "tool_cpu_s": None if self.tool_cpu is None else round(self.tool_cpu, 3),
            "tool_peak_rss_mb": None if self.tool_peak_rss_mb is None
            else round(self.tool_peak_rss_mb, 1),
            "engine_cpu_s": round(self.engine_cpu, 3),
            "engine_cpu_by_process": self.engine_by_group,
            "host_busy_pct": round(self.host_busy_pct, 1),
            "other_cpu_pct": round(self.other_cpu_pct, 1),
            "bench_cpu_s": round(self.bench_cpu, 3),
            "rss_series_mb": [(round(t, 2), round(r, 1)) for t, r in self.rss_series],
        }


class Sampler:
    """Measures one window: the tool's tree (if any), the engine and the host, in a thread.

    The tool is sampled every `tool_interval` seconds (RSS peak and series), the engine
    every `engine_interval` (listing every process costs a few ms, more with 200 shims).
    """

    def __init__(self, tool_pid: int | None, *, tool_interval: float = 0.25,
                 engine_interval: float = 2.0) -> None:
        self.tool_pid = tool_pid
        self.tool_interval = tool_interval
        self.engine_interval = engine_interval
        self.tool = CpuAccount()
        self.engine = CpuAccount()
        self.peak_rss = 0.0
        self.series: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._host0: psutil._common.scputimes | None = None  # type: ignore[name-defined]
        self._bench0 = 0.0

    def _sample_tool(self) -> None:
        if self.tool_pid is None:
            return
        procs = tree(self.tool_pid)
        self.tool.update(procs, lambda p: "tool")
        rss = 0
        for p in procs:
            try:
                rss += p.memory_info().rss
            except psutil.Error:
                continue
        mb = rss / 2**20
        if procs:
            self.peak_rss = max(self.peak_rss, mb)
            self.series.append((time.time() - self._t0, mb))

    def start(self) -> Sampler:
        self._t0 = time.time()
        self._host0 = psutil.cpu_times()
        self._bench0 = _cpu(psutil.Process())
        if self.tool_pid is not None:
            self.tool.begin(tree(self.tool_pid), lambda p: "tool")
        self.engine.begin(engine_processes(), engine_group)
        self._sample_tool()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        next_engine = time.monotonic() + self.engine_interval
        while not self._stop.wait(self.tool_interval):
            self._sample_tool()
            if time.monotonic() >= next_engine:
                self.engine.update(engine_processes(), engine_group)
                next_engine = time.monotonic() + self.engine_interval

    def stop(self) -> Window:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample_tool()
        self.engine.update(engine_processes(), engine_group)
        seconds = time.time() - self._t0
        host1 = psutil.cpu_times()
        busy = other = 0.0
        tool_cpu = self.tool.total() if self.tool_pid is not None else None
        engine_cpu = self.engine.total()
        bench_cpu = _cpu(psutil.Process()) - self._bench0
        if self._host0 is not None:
            d_total = sum(host1) - sum(self._host0)
            d_idle = (host1.idle + getattr(host1, "iowait", 0.0)) - (
                self._host0.idle + getattr(self._host0, "iowait", 0.0))
            if d_total > 0:
                busy = 100.0 * (1 - d_idle / d_total)
                others = (d_total - d_idle) - (tool_cpu or 0.0) - engine_cpu - bench_cpu
                other = max(0.0, 100.0 * others / d_total)
        return Window(
            seconds=seconds,
            tool_cpu=tool_cpu,
            tool_peak_rss_mb=self.peak_rss if self.tool_pid is not None else None,
            engine_cpu=engine_cpu,
            engine_by_group=self.engine.by_group(),
            host_busy_pct=busy,
            other_cpu_pct=other,
            bench_cpu=bench_cpu,
            rss_series=self.series,
        )
