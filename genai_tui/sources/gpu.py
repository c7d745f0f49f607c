"""NVIDIA GPUs through NVML, and which container owns each GPU process.

NVML reports *host* PIDs (the driver knows no PID namespaces), so the owner of a GPU
process is found in `/proc/<pid>/cgroup` and joined with the containers the dashboard
already knows. No peer tool does this join; it answers "who holds the VRAM?".

NVML is optional: no driver, no library or a broken driver makes `read()` return a
`GpuReport` whose `error` says why in one line, and the rest of the dashboard runs on.
When NVML cannot see the stack's GPUs (no NVML here, or a remote Docker host), each
ComfyUI's own `/system_stats` VRAM view stands in (`fallback_from_probes`).

Blocking calls: poll `NvmlSource.read` from a worker thread, every 1-2 s.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from genai_tui.model import ContainerInfo, GpuInfo, GpuProcess, GpuReport, ProbeResult
from genai_tui.safety import one_line

try:  # the nvidia-ml-py distribution installs the `pynvml` module
    import pynvml as _pynvml
except ImportError:  # pragma: no cover - it is a declared dependency
    _pynvml = None

MIB = 1024 * 1024
#: Linux pid_max can be at most 2**22; anything above (e.g. 0xFFFFFFFF from a v2/v3
#: struct mismatch) is garbage
PID_MAX = 4_194_304
#: slow fields are read at most this often (seconds); nvitop uses 5 s
SLOW_TTL = 5.0
#: after NVML failed or went away, try to initialise it again this often (seconds)
RETRY_INTERVAL = 60.0

# NVML return codes (stable across releases; named here so a missing constant in an old
# nvidia-ml-py cannot break the import)
_UNINITIALIZED = 1
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_DRIVER_NOT_LOADED = 9
_LIBRARY_NOT_FOUND = 12
_FUNCTION_NOT_FOUND = 13
_GPU_IS_LOST = 15
_RESET_REQUIRED = 16
_LIB_RM_VERSION_MISMATCH = 18
_UNKNOWN = 999

#: the call will never work on this GPU/driver: do not call it again
_DISABLE_CODES = {_NOT_SUPPORTED, _NO_PERMISSION, _FUNCTION_NOT_FOUND}
#: this GPU is gone (fell off the bus, needs a reset); the others may still answer
_DEVICE_GONE_CODES = {_GPU_IS_LOST, _RESET_REQUIRED}
#: NVML as a whole stopped working (driver unloaded or upgraded under us)
_FATAL_CODES = {_UNINITIALIZED, _DRIVER_NOT_LOADED, _LIBRARY_NOT_FOUND,
                _LIB_RM_VERSION_MISMATCH, _UNKNOWN}

_HINTS = {
    _LIBRARY_NOT_FOUND: "libnvidia-ml.so.1 not found: no NVIDIA driver on this host",
    _DRIVER_NOT_LOADED: "the NVIDIA kernel driver is not loaded",
    _NO_PERMISSION: "no permission to open the GPU devices",
    _LIB_RM_VERSION_MISMATCH: "driver and library versions differ (reboot after a driver "
                              "upgrade)",
    _UNKNOWN: "unknown error (in a container: restart it after a host "
              "`systemctl daemon-reload`)",
    _GPU_IS_LOST: "the GPU fell off the bus",
    _UNINITIALIZED: "NVML is not initialised",
}


def _nvml_error_class() -> type[BaseException]:
    return getattr(_pynvml, "NVMLError", _NeverRaised) if _pynvml else _NeverRaised


def _mismatch_error_class() -> type[BaseException]:
    return getattr(_pynvml, "NVMLLibraryMismatchError", _NeverRaised) if _pynvml else \
        _NeverRaised


class _NeverRaised(Exception):
    """Stands in for pynvml's exception classes when the module is missing."""


def _code(exc: BaseException) -> int | None:
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def error_name(exc: BaseException) -> str:
    """`NVMLError_LibraryNotFound` -> `LibraryNotFound`; other classes by their name."""
    return type(exc).__name__.removeprefix("NVMLError_")


def describe_nvml_error(exc: BaseException, prefix: str = "NVML unavailable") -> str:
    """One line naming why NVML does not answer, for the panel and `check --json`."""
    code = _code(exc)
    hint = _HINTS.get(code) if code is not None else None
    if hint is None:
        try:
            hint = str(exc)
        except Exception:  # pynvml's __str__ may itself call into the library
            hint = ""
    hint = _printable(hint)[:160]
    name = error_name(exc)
    return f"{prefix}: {name} ({hint})" if hint and hint != name else f"{prefix}: {name}"


class _DeviceGone(Exception):
    def __init__(self, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.exc = exc


class _NvmlGone(Exception):
    def __init__(self, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.exc = exc


_MISSING = object()


class NvmlSource:
    """A thread-safe NVML adapter: initialise once, cache slow fields, never crash.

    `read()` blocks for as long as NVML does (tens of ms per GPU); call it from a worker
    thread. `close()` never waits for a read in progress: the reading thread shuts NVML
    down when it finishes.
    """

    def __init__(self, *, procfs: str | os.PathLike[str] = "/proc", nvml: Any = None,
                 slow_ttl: float = SLOW_TTL, retry_interval: float = RETRY_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._nv = nvml if nvml is not None else _pynvml
        self.procfs = Path(procfs)
        self._slow_ttl = slow_ttl
        self._retry_interval = retry_interval
        self._clock = clock
        self._lock = threading.Lock()  # serialises NVML use
        self._state_lock = threading.Lock()  # guards _closed and _busy; never held long
        self._busy = 0
        self._closed = False
        self._ready = False
        self._error: str | None = None
        self._retry_at = 0.0
        self._handles: list[Any] = []
        self._handle_errors: dict[int, str] = {}
        self._driver: str | None = None
        self._unsupported: set[tuple[str, int]] = set()
        self._static: dict[tuple[str, int], Any] = {}
        self._slow: dict[tuple[str, int], tuple[float, Any]] = {}
        #: process-list function actually used, per kind (falls back to _v2 once)
        self._proc_fn: dict[str, str] = {}
        self._memory_v2 = True

    # ------------------------------------------------------------------ lifecycle

    @property
    def available(self) -> bool:
        return self._ready

    def _init(self) -> None:
        nv = self._nv
        if nv is None:
            self._error = "NVML unavailable: the nvidia-ml-py package is not installed"
            self._retry_at = float("inf")
            return
        try:
            nv.nvmlInit()
        except _mismatch_error_class() as exc:
            self._fail(f"NVML unavailable: LibraryMismatch ({_printable(str(exc))[:120]})")
            return
        except _nvml_error_class() as exc:
            self._fail(describe_nvml_error(exc))
            return
        except OSError as exc:  # a broken libnvidia-ml.so found but not loadable
            self._fail(f"NVML unavailable: {type(exc).__name__} ({_printable(str(exc))[:120]})")
            return
        self._ready = True
        self._error = None
        self._unsupported.clear()
        self._static.clear()
        self._slow.clear()
        try:
            count = int(nv.nvmlDeviceGetCount())
        except _nvml_error_class() as exc:
            self._teardown(describe_nvml_error(exc, "NVML failed"))
            return
        self._handles = []
        self._handle_errors = {}
        for i in range(count):
            try:
                self._handles.append(nv.nvmlDeviceGetHandleByIndex(i))
            except _nvml_error_class() as exc:
                # nvidia-smi's "Unable to determine the device handle for GPU ...": this
                # GPU is unusable, the others are not
                self._handles.append(None)
                self._handle_errors[i] = describe_nvml_error(exc, "unavailable")
        try:
            driver = nv.nvmlSystemGetDriverVersion()
            self._driver = _printable(driver.decode() if isinstance(driver, bytes)
                                      else str(driver))
        except _nvml_error_class():
            self._driver = None

    def _fail(self, message: str) -> None:
        self._ready = False
        self._error = message
        self._retry_at = self._clock() + self._retry_interval

    def _teardown(self, message: str) -> None:
        """NVML stopped answering: shut it down and try again later."""
        if self._ready:
            try:
                self._nv.nvmlShutdown()
            except Exception:
                pass
        self._handles = []
        self._fail(message)

    def close(self) -> None:
        """Shut NVML down (now, or at the end of a read in progress); idempotent.

        Never waits for a read: the UI thread calls this on unmount, and an NVML call
        can block for a long time on a sick driver.
        """
        with self._state_lock:
            self._closed = True
            busy = self._busy > 0
        if not busy:
            with self._lock:
                self._shutdown_locked()

    def _shutdown_locked(self) -> None:
        if self._ready:
            self._ready = False
            self._handles = []
            try:
                self._nv.nvmlShutdown()
            except Exception:
                pass

    # ------------------------------------------------------------------ reading

    def read(self, containers: Sequence[ContainerInfo] = (), *,
             pid_containers: Mapping[int, str] | None = None) -> GpuReport:
        """One sample of every GPU, with GPU processes attributed to containers."""
        with self._state_lock:
            if self._closed:
                return GpuReport(error="NVML closed")
            self._busy += 1
        try:
            with self._lock:
                try:
                    report = self._read_locked()
                except Exception as exc:  # a library surprise must not kill the poller
                    self._teardown(f"NVML failed: {type(exc).__name__} "
                                   f"({_printable(str(exc))[:120]})")
                    report = GpuReport(error=self._error)
        finally:
            with self._state_lock:
                self._busy -= 1
                closed = self._closed
            if closed:  # close() came during the read and left the shutdown to us
                with self._lock:
                    self._shutdown_locked()
        for gpu in report.gpus:
            if gpu.processes:
                kept = attribute(gpu.processes, containers, procfs=self.procfs,
                                 pid_containers=pid_containers)
                gpu.hidden_processes = len(gpu.processes) - len(kept)
                gpu.processes = kept
        return report

    def _read_locked(self) -> GpuReport:
        if self._closed:
            return GpuReport(error="NVML closed")
        if not self._ready:
            if self._error is not None and self._clock() < self._retry_at:
                return GpuReport(error=self._error)
            self._init()
            if not self._ready:
                return GpuReport(error=self._error)
        gpus: list[GpuInfo] = []
        try:
            for index, handle in enumerate(self._handles):
                if handle is None:
                    gpus.append(GpuInfo(index=index, name=f"GPU {index}",
                                        error=self._handle_errors.get(index, "unavailable")))
                    continue
                try:
                    gpus.append(self._read_gpu(index, handle))
                except _DeviceGone as gone:
                    name = self._static.get(("nvmlDeviceGetName", index)) or f"GPU {index}"
                    gpus.append(GpuInfo(index=index, name=str(name), error=describe_nvml_error(
                        gone.exc, "unavailable")))
        except _NvmlGone as gone:
            self._teardown(describe_nvml_error(gone.exc, "NVML stopped"))
            return GpuReport(error=self._error, driver_version=self._driver)
        except _mismatch_error_class() as exc:
            self._teardown(f"NVML stopped: LibraryMismatch ({_printable(str(exc))[:120]})")
            return GpuReport(error=self._error, driver_version=self._driver)
        if gpus and all(g.error for g in gpus):
            # every GPU is lost: the driver is gone; start over later
            first = gpus[0].error or "GPU is lost"
            self._teardown(f"NVML stopped: every GPU is unavailable ({first})")
            return GpuReport(gpus=gpus, error=self._error, driver_version=self._driver)
        return GpuReport(gpus=gpus, driver_version=self._driver)

    def _call(self, name: str, index: int, *args: Any, **kwargs: Any) -> Any:
        """Call an NVML function; `_MISSING` when it cannot answer (now or ever)."""
        if (name, index) in self._unsupported:
            return _MISSING
        fn = getattr(self._nv, name, None)
        if fn is None:
            self._unsupported.add((name, index))
            return _MISSING
        try:
            return fn(*args, **kwargs)
        except _mismatch_error_class():
            raise
        except _nvml_error_class() as exc:
            code = _code(exc)
            if code in _DISABLE_CODES:
                self._unsupported.add((name, index))
                return _MISSING
            if code in _DEVICE_GONE_CODES:
                raise _DeviceGone(exc) from None
            if code in _FATAL_CODES:
                raise _NvmlGone(exc) from None
            return _MISSING  # transient (timeout, ...): try again next poll

    def _static_field(self, name: str, index: int, handle: Any) -> Any:
        key = (name, index)
        if key not in self._static:
            value = self._call(name, index, handle)
            if value is _MISSING:
                return _MISSING
            self._static[key] = value
        return self._static[key]

    def _slow_field(self, name: str, index: int, *args: Any) -> Any:
        key = (name, index)
        now = self._clock()
        hit = self._slow.get(key)
        if hit is not None and now - hit[0] < self._slow_ttl:
            return hit[1]
        value = self._call(name, index, *args)
        self._slow[key] = (now, value)
        return value

    def _read_gpu(self, index: int, handle: Any) -> GpuInfo:
        name = self._static_field("nvmlDeviceGetName", index, handle)
        uuid = self._static_field("nvmlDeviceGetUUID", index, handle)
        gpu = GpuInfo(index=index, name=_text(name) if name is not _MISSING else f"GPU {index}",
                      uuid=_text(uuid) if uuid is not _MISSING else "")

        mem = self._memory(index, handle)
        if mem is not None:
            gpu.memory_total_mb = mem.total / MIB
            gpu.memory_used_mb = mem.used / MIB

        util = self._call("nvmlDeviceGetUtilizationRates", index, handle)
        if util is not _MISSING:
            gpu.utilization_pct = float(util.gpu)

        temp = self._temperature(index, handle)
        if temp is not None:
            gpu.temperature_c = float(temp)

        power = self._call("nvmlDeviceGetPowerUsage", index, handle)
        if power is not _MISSING:
            gpu.power_w = power / 1000.0  # NVML reports mW
        limit = self._slow_field("nvmlDeviceGetEnforcedPowerLimit", index, handle)
        if limit is not _MISSING:
            gpu.power_limit_w = limit / 1000.0

        gpu.processes = self._processes(index, handle)
        return gpu

    def _memory(self, index: int, handle: Any) -> Any:
        """v2 first (its `used` excludes driver-reserved memory), else v1."""
        version = getattr(self._nv, "nvmlMemory_v2", None)
        if self._memory_v2 and version is not None:
            mem = self._call("nvmlDeviceGetMemoryInfo", index, handle, version=version)
            if mem is not _MISSING:
                return mem
            if ("nvmlDeviceGetMemoryInfo", index) in self._unsupported:
                # v2 unknown to this driver: retry as v1 below, and stop asking for v2
                self._unsupported.discard(("nvmlDeviceGetMemoryInfo", index))
                self._memory_v2 = False
            else:
                return None
        mem = self._call("nvmlDeviceGetMemoryInfo", index, handle)
        return None if mem is _MISSING else mem

    def _temperature(self, index: int, handle: Any) -> float | None:
        sensor = getattr(self._nv, "NVML_TEMPERATURE_GPU", 0)
        if ("nvmlDeviceGetTemperatureV", index) not in self._unsupported:
            value = self._slow_field("nvmlDeviceGetTemperatureV", index, handle, sensor)
            if value is not _MISSING:
                return value
            if ("nvmlDeviceGetTemperatureV", index) not in self._unsupported:
                return None
            self._slow.pop(("nvmlDeviceGetTemperatureV", index), None)
        value = self._slow_field("nvmlDeviceGetTemperature", index, handle, sensor)
        return None if value is _MISSING else value

    def _processes(self, index: int, handle: Any) -> list[GpuProcess]:
        merged: dict[int, GpuProcess] = {}
        for kind, base in (("compute", "nvmlDeviceGetComputeRunningProcesses"),
                           ("graphics", "nvmlDeviceGetGraphicsRunningProcesses")):
            name = self._proc_fn.get(base, base)
            try:
                entries = self._call(name, index, handle)
            except _mismatch_error_class():
                # nvidia-ml-py calls _v3, which this driver lacks: use _v2 from now on
                name = self._proc_fn[base] = base + "_v2"
                entries = self._call(name, index, handle)
            if entries is _MISSING or entries is None:
                continue
            for entry in entries:
                proc = _process_from_entry(entry, kind)
                if proc is None:
                    continue
                seen = merged.get(proc.pid)
                if seen is None:
                    merged[proc.pid] = proc
                else:  # both compute and graphics ("C+G")
                    seen.kind = "compute+graphics"
                    if proc.memory_mb is not None:
                        seen.memory_mb = max(seen.memory_mb or 0.0, proc.memory_mb)
        return sorted(merged.values(), key=lambda p: -(p.memory_mb or 0.0))


def _process_from_entry(entry: Any, kind: str) -> GpuProcess | None:
    try:
        pid = int(entry.pid)
    except (AttributeError, TypeError, ValueError):
        return None
    if pid <= 0 or pid > PID_MAX:  # 0 and 0xFFFFFFFF: garbage from a struct mismatch
        return None
    used = getattr(entry, "usedGpuMemory", None)
    memory = None
    if isinstance(used, int) and 0 <= used < 2**63:  # None = N/A (MIG, WDDM)
        memory = used / MIB
    return GpuProcess(pid=pid, memory_mb=memory, kind=kind)


# ---------------------------------------------------------------- attribution

#: a container id as the last part of a cgroup path component: `<id>` (cgroupfs),
#: `docker-<id>.scope` (systemd driver), podman, containerd, CRI-O
_ID_RE = re.compile(r"(?:docker-|libpod-|cri-containerd-|crio-|containerd-)?([0-9a-f]{64})"
                    r"(?:\.scope)?")


def container_ids(cgroup_text: str) -> list[str]:
    """Every container id in a `/proc/<pid>/cgroup` text, innermost first.

    Works for cgroup v1 (`<n>:<ctrl>:/docker/<id>`), v2 (`0::/...`), the cgroupfs and
    systemd drivers (`docker-<id>.scope`), a private cgroup namespace seen from outside
    (`0::/../<id>`, no `docker/`), and nested paths (`.../docker-<id>.scope/init.scope`,
    Docker-in-Docker).
    """
    found: list[str] = []
    for line in cgroup_text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        for component in reversed(parts[2].split("/")):
            m = _ID_RE.fullmatch(component.strip())
            if m and m.group(1) not in found:
                found.append(m.group(1))
    return found


def parse_container_id(cgroup_text: str) -> str | None:
    """The (innermost) container id of a process from its cgroup text; None = host."""
    ids = container_ids(cgroup_text)
    return ids[0] if ids else None


def _read_small(path: Path, limit: int = 65536) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def _parent_pid(procfs: Path, pid: int) -> int | None:
    stat = _read_small(procfs / str(pid) / "stat", 4096)
    if not stat:
        return None
    # "pid (comm) state ppid ...": comm may contain spaces and parentheses
    tail = stat.rpartition(")")[2].split()
    try:
        return int(tail[1])
    except (IndexError, ValueError):
        return None


def _match_container(ids: Sequence[str], containers: Sequence[ContainerInfo]
                     ) -> ContainerInfo | None:
    for cid in ids:
        for info in containers:
            if info.id and len(info.id) >= 12 and cid.startswith(info.id.lower()):
                return info
    return None


def attribute(processes: Iterable[GpuProcess], containers: Sequence[ContainerInfo], *,
              procfs: str | os.PathLike[str] = "/proc",
              pid_containers: Mapping[int, str] | None = None) -> list[GpuProcess]:
    """Fill each process's name, container and service; drop PIDs not in `procfs`.

    A PID absent from our /proc is stale or garbage - unless `pid_containers` (host PID
    -> container id, e.g. from `container.top()` when genai-tui runs in a container
    without `--pid=host`) vouches for it. Processes in no container are host processes
    (`container` None), or belong to a `runtime = "process"` service when that service's
    PID is the process or one of its ancestors.
    """
    root = Path(procfs)
    pid_containers = pid_containers or {}
    by_pid = {c.pid: c for c in containers if c.runtime == "process" and c.pid}
    kept: list[GpuProcess] = []
    for proc in processes:
        base = root / str(proc.pid)
        cgroup = _read_small(base / "cgroup")
        if cgroup is None and proc.pid not in pid_containers:
            continue
        comm = _read_small(base / "comm", 256)
        if comm is not None:
            proc.name = _printable(comm.strip())[:32]
        ids = container_ids(cgroup or "")
        if proc.pid in pid_containers:
            ids.insert(0, pid_containers[proc.pid].lower())
        owner = _match_container(ids, containers)
        if owner is not None:
            proc.container = owner.container
            proc.container_id = owner.id
            proc.service = owner.service
        elif ids:  # a container the dashboard does not manage
            proc.container_id = ids[0]
            proc.container = ids[0][:12]
            proc.service = None
        elif by_pid:
            pid: int | None = proc.pid
            for _ in range(8):  # the service's process or one of its descendants
                if pid is None or pid <= 1:
                    break
                if pid in by_pid:
                    proc.service = by_pid[pid].service
                    break
                pid = _parent_pid(root, pid)
        kept.append(proc)
    return kept


# ---------------------------------------------------------------- fallback and helpers

_CUDA_NAME = re.compile(r"^\s*cuda:(\d+)\s+(.*?)(?:\s+:\s+\S+)?\s*$")


def _device_label(raw: str | None) -> tuple[str, int | None]:
    """ComfyUI's `cuda:0 NVIDIA GeForce RTX 3090 : cudaMallocAsync` -> name, CUDA index."""
    text = _printable(raw or "").strip()
    m = _CUDA_NAME.match(text)
    if m:
        return m.group(2) or text, int(m.group(1))
    return text or "GPU", None


def fallback_from_probes(probes: Sequence[ProbeResult], reason: str | None) -> GpuReport:
    """Each ComfyUI's own VRAM view (from its `/system_stats`), when NVML cannot help.

    The values are device-wide (torch's `mem_get_info`), as seen from that container.
    """
    gpus: list[GpuInfo] = []
    for probe in probes:
        total = probe.vram_total_mb
        if total is None or not isinstance(total, int | float) or total <= 0:
            continue
        free = probe.vram_free_mb
        used = None
        if isinstance(free, int | float) and 0 <= free <= total:
            used = total - free
        name, cuda_index = _device_label(probe.device_name)
        gpus.append(GpuInfo(index=cuda_index if cuda_index is not None else len(gpus),
                            name=name, memory_total_mb=float(total),
                            memory_used_mb=None if used is None else float(used),
                            source=f"system_stats:{probe.service}"))
    return GpuReport(gpus=gpus, error=reason)


def is_remote_docker(host: str | None) -> bool:
    """Whether the stack's containers (and GPUs) live on another machine."""
    if not host:
        return False
    parts = urlsplit(host)
    if parts.scheme in ("unix", "npipe", ""):
        return False
    return (parts.hostname or "") not in ("localhost", "127.0.0.1", "::1")


REMOTE_NOTE = "remote Docker host: local NVML not used"


def collect(containers: Sequence[ContainerInfo] = (), probes: Sequence[ProbeResult] = (), *,
            remote: bool = False, procfs: str | os.PathLike[str] = "/proc") -> GpuReport:
    """One-shot GPU report for `genai-tui check`: NVML, else the /system_stats views."""
    if remote:
        return fallback_from_probes(probes, REMOTE_NOTE)
    source = NvmlSource(procfs=procfs)
    try:
        report = source.read(containers)
    finally:
        source.close()
    if report.error and not report.gpus:
        return fallback_from_probes(probes, report.error)
    return report


def gpu_report(source: NvmlSource | None, containers: Sequence[ContainerInfo],
               probes: Sequence[ProbeResult], *, remote: bool = False) -> GpuReport:
    """What the panel shows on each poll: NVML when it works, else the fallback."""
    if remote or source is None:
        return fallback_from_probes(probes, REMOTE_NOTE if remote else "NVML not used")
    report = source.read(containers)
    if report.error and not report.gpus:
        return fallback_from_probes(probes, report.error)
    return report


def _printable(text: str) -> str:
    """Process names, NVML strings and HTTP answers as one clean line: the one safety rule
    (whole escape sequences, C0/C1, bidi and zero-width characters removed)."""
    return one_line(text)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return _printable(str(value))
