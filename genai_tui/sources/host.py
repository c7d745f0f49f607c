"""The host the stack runs on: CPU, load, memory, swap and the disks that hold models and
outputs (psutil; each reading costs well under a millisecond).

Memory matters most: when it runs out, the kernel's OOM killer ends a ComfyUI with exit
code 137, which the dashboard otherwise only sees after the fact.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from genai_tui.config import Config
from genai_tui.model import DiskUsage, HostInfo

MIB = 1024 * 1024


def _busy_and_total(times: Any) -> tuple[float, float]:
    """psutil's own definition: guest time is already in user/nice; iowait is idle."""
    total = float(sum(times))
    total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    busy = total - times.idle - getattr(times, "iowait", 0.0)
    return busy, total


def cpu_pct_between(before: Any, after: Any) -> float | None:
    """CPU use between two `psutil.cpu_times()` samples; None when no time passed."""
    b0, t0 = _busy_and_total(before)
    b1, t1 = _busy_and_total(after)
    dt = t1 - t0
    if dt <= 0:
        return None
    return round(max(0.0, min(100.0, 100.0 * (b1 - b0) / dt)), 1)


def disk_usage(path: str | os.PathLike[str]) -> DiskUsage:
    """Usage of the filesystem holding `path`; a missing path is an error, not a crash."""
    shown = str(path)
    try:
        usage = psutil.disk_usage(shown)
    except FileNotFoundError:
        return DiskUsage(path=shown, error="not found")
    except PermissionError:
        return DiskUsage(path=shown, error="permission denied")
    except ValueError:  # e.g. a NUL byte from a hand-edited config
        return DiskUsage(path=shown, error="invalid path")
    except OSError as exc:
        return DiskUsage(path=shown, error=exc.strerror or type(exc).__name__)
    return DiskUsage(path=shown, used_mb=usage.used / MIB, total_mb=usage.total / MIB)


class HostSource:
    """Polled host readings. Thread-safe; callable from any (worker) thread.

    CPU % is computed from `cpu_times()` deltas kept on this object, not with
    `psutil.cpu_percent(None)`, whose baseline is kept per calling thread: Textual thread
    workers are new threads, so every reading would be a meaningless first one. The first
    `read()` has no baseline and reports `cpu_pct=None` ("…" on screen), never a fake 0 %.
    """

    def __init__(self, disks: Sequence[str | os.PathLike[str]] = ()) -> None:
        self.disks = [str(d) for d in disks]
        self._lock = threading.Lock()
        self._last_times: Any = None

    def read(self) -> HostInfo:
        with self._lock:
            info = HostInfo()
            try:
                times = psutil.cpu_times()
                if self._last_times is not None:
                    info.cpu_pct = cpu_pct_between(self._last_times, times)
                self._last_times = times
            except (OSError, AttributeError):
                pass
            info.cpu_count = psutil.cpu_count() or None
            try:
                load = psutil.getloadavg()
                info.load = (round(load[0], 2), round(load[1], 2), round(load[2], 2))
            except (OSError, AttributeError):
                info.load = None
            try:
                vm = psutil.virtual_memory()
                # total - available: what is really taken (page cache can be reclaimed),
                # i.e. what pushes the kernel towards the OOM killer
                info.memory_total_mb = vm.total / MIB
                info.memory_used_mb = (vm.total - vm.available) / MIB
            except OSError:
                pass
            try:
                sw = psutil.swap_memory()
                info.swap_total_mb = sw.total / MIB
                info.swap_used_mb = sw.used / MIB
            except (OSError, RuntimeError):
                pass
            info.disks = [disk_usage(d) for d in self.disks]
            return info


def default_disks(config: Config) -> list[Path]:
    """The configured `[host] disks` without duplicates; with none, the filesystem of the
    stack's folder (where models and outputs usually live)."""
    seen: list[Path] = []
    for d in config.host.disks:
        if d not in seen:
            seen.append(d)
    return seen or [config.base_dir]


def collect(config: Config | None = None, *, interval: float = 0.2,
            disks: Sequence[str | os.PathLike[str]] | None = None) -> HostInfo:
    """One-shot reading for `genai-tui check`: CPU % measured over `interval` seconds."""
    if disks is None:
        disks = default_disks(config) if config is not None else []
    source = HostSource(disks)
    source.read()  # baseline for CPU %
    time.sleep(max(0.0, interval))
    return source.read()
