"""A fake NVML at the pynvml function boundary (there is no GPU on the test machines).

It replaces the `pynvml.nvml*` functions with ones that return what the real library
returns - the real ctypes structs and `nvmlFriendlyObject`s, values in bytes and mW - and
raises the real pynvml exception classes. The default machine is the reference host:
GPU 0 an RTX 3080 Laptop (16384 MiB), GPU 1 an RTX 3090 (24576 MiB).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pynvml

MIB = 1024 * 1024


@dataclass
class FakeProc:
    pid: int
    used_mib: float | None  # None = NVML_VALUE_NOT_AVAILABLE (MIG / WDDM)


@dataclass
class FakeGpu:
    name: str
    total_mib: int
    used_mib: float
    reserved_mib: float = 250.0
    util: int = 0
    temp: int = 40
    power_mw: int = 20_000
    limit_mw: int = 350_000
    uuid: str = ""
    compute: list[FakeProc] = field(default_factory=list)
    graphics: list[FakeProc] = field(default_factory=list)


def reference_gpus() -> list[FakeGpu]:
    return [
        FakeGpu("NVIDIA GeForce RTX 3080 Laptop GPU", 16384, 1210.0, util=3, temp=46,
                power_mw=18_500, limit_mw=115_000,
                uuid="GPU-5b1c6c1e-3d6f-0a43-9c1a-0d3f3a7e2b10"),
        FakeGpu("NVIDIA GeForce RTX 3090", 24576, 18535.0, util=97, temp=71,
                power_mw=312_400, limit_mw=350_000,
                uuid="GPU-1f2e3d4c-5b6a-7988-a1b2-c3d4e5f60718"),
    ]


class FakeHandle:
    def __init__(self, index: int) -> None:
        self.index = index

    def __repr__(self) -> str:
        return f"<FakeHandle {self.index}>"


class FakeNvml:
    """Install with `FakeNvml.install(monkeypatch)`; mutate `.gpus`, `.errors` between polls.

    errors: {function name: exception} or {(function name, gpu index): exception}; an
    exception instance is raised on every call until removed.
    calls: Counter of (function name, gpu index or None).
    """

    def __init__(self, gpus: list[FakeGpu] | None = None, driver: str = "581.29") -> None:
        self.gpus = reference_gpus() if gpus is None else gpus
        self.driver = driver
        self.errors: dict[Any, BaseException] = {}
        self.calls: Counter[tuple[str, int | None]] = Counter()
        self.initialised = 0
        self.shutdowns = 0
        #: simulate an old driver that lacks the _v3 process calls
        self.lacks_v3 = False
        #: simulate an old driver that lacks nvmlDeviceGetMemoryInfo_v2
        self.lacks_memory_v2 = False

    @classmethod
    def install(cls, monkeypatch: Any, **kwargs: Any) -> FakeNvml:
        fake = cls(**kwargs)
        names = [
            "nvmlInit", "nvmlShutdown", "nvmlSystemGetDriverVersion", "nvmlDeviceGetCount",
            "nvmlDeviceGetHandleByIndex", "nvmlDeviceGetName", "nvmlDeviceGetUUID",
            "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetUtilizationRates",
            "nvmlDeviceGetTemperature", "nvmlDeviceGetTemperatureV",
            "nvmlDeviceGetPowerUsage", "nvmlDeviceGetEnforcedPowerLimit",
            "nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetComputeRunningProcesses_v2",
            "nvmlDeviceGetGraphicsRunningProcesses",
            "nvmlDeviceGetGraphicsRunningProcesses_v2",
        ]
        for name in names:
            monkeypatch.setattr(pynvml, name, getattr(fake, name))
        return fake

    # ------------------------------------------------------------ plumbing

    def _enter(self, name: str, handle: FakeHandle | None = None) -> FakeGpu | None:
        index = handle.index if handle is not None else None
        self.calls[(name, index)] += 1
        for key in ((name, index), name):
            exc = self.errors.get(key)
            if exc is not None:
                raise exc
        if name != "nvmlInit" and not self.initialised:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        if handle is None:
            return None
        return self.gpus[handle.index]

    def count(self, name: str, index: int | None = None) -> int:
        return self.calls[(name, index)]

    # ------------------------------------------------------------ the API

    def nvmlInit(self) -> None:
        self._enter("nvmlInit")
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.initialised = max(0, self.initialised - 1)
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return FakeHandle(index)

    def nvmlDeviceGetName(self, handle: FakeHandle) -> str:
        return self._enter("nvmlDeviceGetName", handle).name  # type: ignore[union-attr]

    def nvmlDeviceGetUUID(self, handle: FakeHandle) -> str:
        return self._enter("nvmlDeviceGetUUID", handle).uuid  # type: ignore[union-attr]

    def nvmlDeviceGetMemoryInfo(self, handle: FakeHandle, version: int | None = None) -> Any:
        gpu = self._enter("nvmlDeviceGetMemoryInfo", handle)
        assert gpu is not None
        total = gpu.total_mib * MIB
        used = int(gpu.used_mib * MIB)
        if version:
            if self.lacks_memory_v2:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
            reserved = int(gpu.reserved_mib * MIB)
            return pynvml.c_nvmlMemory_v2_t(version=version, total=total, reserved=reserved,
                                            free=total - used - reserved, used=used)
        # v1: `used` includes the driver-reserved memory
        used += int(gpu.reserved_mib * MIB)
        return pynvml.c_nvmlMemory_t(total=total, free=total - used, used=used)

    def nvmlDeviceGetUtilizationRates(self, handle: FakeHandle) -> Any:
        gpu = self._enter("nvmlDeviceGetUtilizationRates", handle)
        assert gpu is not None
        return pynvml.c_nvmlUtilization_t(gpu=gpu.util, memory=gpu.util // 2)

    def nvmlDeviceGetTemperatureV(self, handle: FakeHandle, sensor: int,
                                  version: int | None = None) -> int:
        gpu = self._enter("nvmlDeviceGetTemperatureV", handle)
        assert gpu is not None and sensor == pynvml.NVML_TEMPERATURE_GPU
        return gpu.temp

    def nvmlDeviceGetTemperature(self, handle: FakeHandle, sensor: int) -> int:
        gpu = self._enter("nvmlDeviceGetTemperature", handle)
        assert gpu is not None and sensor == pynvml.NVML_TEMPERATURE_GPU
        return gpu.temp

    def nvmlDeviceGetPowerUsage(self, handle: FakeHandle) -> int:
        return self._enter("nvmlDeviceGetPowerUsage", handle).power_mw  # type: ignore

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: FakeHandle) -> int:
        return self._enter("nvmlDeviceGetEnforcedPowerLimit", handle).limit_mw  # type: ignore

    @staticmethod
    def _entries(procs: list[FakeProc]) -> list[Any]:
        out = []
        for p in procs:
            out.append(pynvml.nvmlFriendlyObject({
                "pid": p.pid,
                "usedGpuMemory": None if p.used_mib is None else int(p.used_mib * MIB),
                "gpuInstanceId": 0xFFFFFFFF,
                "computeInstanceId": 0xFFFFFFFF,
            }))
        return out

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeHandle) -> list[Any]:
        gpu = self._enter("nvmlDeviceGetComputeRunningProcesses", handle)
        assert gpu is not None
        if self.lacks_v3:  # what pynvml's throwOnVersionMismatch wrapper raises
            raise pynvml.NVMLLibraryMismatchError(
                "Unversioned function called and the pyNVML version does not match the "
                "NVML lib version. Either use matching pyNVML and NVML lib versions or use "
                "a versioned function such as nvmlDeviceGetComputeRunningProcesses_v2")
        return self._entries(gpu.compute)

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle: FakeHandle) -> list[Any]:
        gpu = self._enter("nvmlDeviceGetComputeRunningProcesses_v2", handle)
        assert gpu is not None
        return self._entries(gpu.compute)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: FakeHandle) -> list[Any]:
        gpu = self._enter("nvmlDeviceGetGraphicsRunningProcesses", handle)
        assert gpu is not None
        if self.lacks_v3:
            raise pynvml.NVMLLibraryMismatchError(
                "Unversioned function called ... use a versioned function such as "
                "nvmlDeviceGetGraphicsRunningProcesses_v2")
        return self._entries(gpu.graphics)

    def nvmlDeviceGetGraphicsRunningProcesses_v2(self, handle: FakeHandle) -> list[Any]:
        gpu = self._enter("nvmlDeviceGetGraphicsRunningProcesses_v2", handle)
        assert gpu is not None
        return self._entries(gpu.graphics)


def nvml_error(code: int) -> BaseException:
    """The exception the real library raises for a return code (a subclass per code)."""
    return pynvml.NVMLError(code)


def fake_procfs(root: Any, procs: dict[int, tuple]) -> Any:
    """Write `<root>/<pid>/{comm,cgroup,stat}` for {pid: (comm, cgroup text[, ppid])}."""
    root.mkdir(parents=True, exist_ok=True)
    for pid, spec in procs.items():
        comm, cgroup = spec[0], spec[1]
        ppid = spec[2] if len(spec) > 2 else 1
        d = root / str(pid)
        d.mkdir(exist_ok=True)
        (d / "comm").write_text(comm + "\n")
        (d / "cgroup").write_text(cgroup)
        (d / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 0 0\n")
    return root
