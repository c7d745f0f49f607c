"""The NVML adapter against a fake at the pynvml function boundary (realistic values and
every failure the real library produces), plus the real no-driver path of this machine."""

from __future__ import annotations

import threading

import pynvml
import pytest

from genai_tui.model import ContainerInfo, ProbeResult, Snapshot
from genai_tui.sources import gpu
from genai_tui.sources.gpu import NvmlSource, fallback_from_probes, is_remote_docker
from tests.unit.fake_nvml import FakeNvml, FakeProc, fake_procfs, nvml_error

QWEN_ID = "3ab9d4a4968c2db8cb2b146a9b52e5978bcfbee53180c93cd503cb5766d8ce52"
FLUX_ID = "e3c3a3f1b8d4f5a61c7e20a8b9d1f2e3c4b5a6978877665544332211ffeeddcc"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake(monkeypatch) -> FakeNvml:
    return FakeNvml.install(monkeypatch)


@pytest.fixture
def procfs(tmp_path):
    return fake_procfs(tmp_path / "proc", {
        4242: ("python", f"0::/system.slice/docker-{QWEN_ID}.scope\n"),
        5151: ("python3", f"0::/docker/{FLUX_ID}\n"),
        1234: ("Xorg", "0::/system.slice/display-manager.service\n"),
    })


@pytest.fixture
def containers() -> list[ContainerInfo]:
    return [
        ContainerInfo(service="comfyui-qwen", container="comfyui-qwen", id=QWEN_ID,
                      state="running"),
        ContainerInfo(service="flux-1-dev", container="coursia-flux-1-dev", id=FLUX_ID,
                      state="running"),
    ]


def _source(procfs, clock=None, **kw) -> NvmlSource:
    return NvmlSource(procfs=procfs, clock=clock or Clock(), **kw)


def test_reference_host_is_read_with_real_units(fake, procfs) -> None:
    src = _source(procfs)
    report = src.read()
    assert report.error is None
    assert report.driver_version == "581.29"
    laptop, rtx3090 = report.gpus
    assert laptop.name == "NVIDIA GeForce RTX 3080 Laptop GPU"
    assert laptop.memory_total_mb == 16384
    assert rtx3090.name == "NVIDIA GeForce RTX 3090"
    assert rtx3090.uuid.startswith("GPU-1f2e")
    assert rtx3090.memory_total_mb == 24576
    # v2 memory info: `used` without the driver-reserved part
    assert rtx3090.memory_used_mb == pytest.approx(18535.0, abs=0.01)
    assert rtx3090.utilization_pct == 97
    assert rtx3090.temperature_c == 71
    assert rtx3090.power_w == pytest.approx(312.4)  # from mW
    assert rtx3090.power_limit_w == pytest.approx(350.0)
    assert rtx3090.memory_pct == pytest.approx(75.4, abs=0.1)
    src.close()
    assert fake.shutdowns == 1


def test_processes_are_attributed_and_garbage_pids_dropped(fake, procfs, containers) -> None:
    fake.gpus[1].compute = [
        FakeProc(4242, 17_920.0), FakeProc(5151, 512.0),
        FakeProc(0, 100.0), FakeProc(0xFFFFFFFF, 100.0),   # v2/v3 struct-mismatch garbage
        FakeProc(2_000_000, 64.0),                          # plausible PID, not in /proc
    ]
    fake.gpus[0].graphics = [FakeProc(1234, 96.0)]
    report = _source(procfs).read(containers)
    laptop, rtx3090 = report.gpus

    procs = {p.pid: p for p in rtx3090.processes}
    assert set(procs) == {4242, 5151}
    assert procs[4242].service == "comfyui-qwen" and procs[4242].container == "comfyui-qwen"
    assert procs[4242].memory_mb == pytest.approx(17_920.0)
    assert procs[4242].name == "python"
    assert procs[5151].service == "flux-1-dev"
    assert [p.pid for p in rtx3090.processes] == [4242, 5151]  # biggest first
    assert rtx3090.hidden_processes == 1  # 2_000_000: counted, not shown

    (xorg,) = laptop.processes
    assert xorg.kind == "graphics" and xorg.service is None and xorg.container is None


def test_compute_and_graphics_process_is_merged(fake, procfs) -> None:
    fake.gpus[0].compute = [FakeProc(4242, 300.0)]
    fake.gpus[0].graphics = [FakeProc(4242, 300.0), FakeProc(1234, 50.0)]
    laptop = _source(procfs).read().gpus[0]
    kinds = {p.pid: p.kind for p in laptop.processes}
    assert kinds == {4242: "compute+graphics", 1234: "graphics"}


def test_mig_memory_not_available_is_none(fake, procfs, containers) -> None:
    fake.gpus[1].compute = [FakeProc(4242, None)]
    (proc,) = _source(procfs).read(containers).gpus[1].processes
    assert proc.memory_mb is None
    assert proc.to_json()["memory_mb"] is None
    assert proc.service == "comfyui-qwen"


def test_not_supported_call_is_never_repeated(fake, procfs) -> None:
    # a laptop GPU without power readings and an old board without TemperatureV
    fake.errors[("nvmlDeviceGetPowerUsage", 0)] = pynvml.NVMLError_NotSupported()
    fake.errors[("nvmlDeviceGetEnforcedPowerLimit", 0)] = nvml_error(
        pynvml.NVML_ERROR_NOT_SUPPORTED)
    fake.errors[("nvmlDeviceGetTemperatureV", 0)] = nvml_error(
        pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
    clock = Clock()
    src = _source(procfs, clock)
    for _ in range(5):
        report = src.read()
        clock.now += 10  # beyond the slow-field TTL every time
    laptop, rtx3090 = report.gpus
    assert laptop.power_w is None and laptop.power_limit_w is None
    assert laptop.temperature_c == 46  # from the deprecated call instead
    assert rtx3090.power_w == pytest.approx(312.4)
    assert fake.count("nvmlDeviceGetPowerUsage", 0) == 1
    assert fake.count("nvmlDeviceGetEnforcedPowerLimit", 0) == 1
    assert fake.count("nvmlDeviceGetTemperatureV", 0) == 1
    assert fake.count("nvmlDeviceGetTemperature", 0) == 5
    assert fake.count("nvmlDeviceGetPowerUsage", 1) == 5


def test_transient_error_is_retried_next_poll(fake, procfs) -> None:
    fake.errors[("nvmlDeviceGetUtilizationRates", 1)] = nvml_error(pynvml.NVML_ERROR_TIMEOUT)
    src = _source(procfs)
    assert src.read().gpus[1].utilization_pct is None
    del fake.errors[("nvmlDeviceGetUtilizationRates", 1)]
    assert src.read().gpus[1].utilization_pct == 97


def test_slow_fields_are_cached(fake, procfs) -> None:
    clock = Clock()
    src = _source(procfs, clock)
    for _ in range(4):
        src.read()
        clock.now += 1.0
    assert fake.count("nvmlDeviceGetTemperatureV", 1) == 1
    assert fake.count("nvmlDeviceGetEnforcedPowerLimit", 1) == 1
    assert fake.count("nvmlDeviceGetName", 1) == 1
    assert fake.count("nvmlDeviceGetUtilizationRates", 1) == 4  # fast fields every poll
    fake.gpus[1].temp = 83
    clock.now += 5.0
    assert src.read().gpus[1].temperature_c == 83
    assert fake.count("nvmlDeviceGetName", 1) == 1  # static for the life of NVML


def test_library_mismatch_falls_back_to_v2_process_calls(fake, procfs, containers) -> None:
    assert not issubclass(pynvml.NVMLLibraryMismatchError, pynvml.NVMLError)
    fake.lacks_v3 = True
    fake.gpus[1].compute = [FakeProc(4242, 17_920.0)]
    fake.gpus[0].graphics = [FakeProc(1234, 96.0)]
    src = _source(procfs)
    for _ in range(3):
        report = src.read(containers)
    assert report.error is None
    assert [p.service for p in report.gpus[1].processes] == ["comfyui-qwen"]
    assert [p.name for p in report.gpus[0].processes] == ["Xorg"]
    # the unversioned (_v3) call was tried once, then _v2 used for good
    assert fake.count("nvmlDeviceGetComputeRunningProcesses", 0) == 1
    assert fake.count("nvmlDeviceGetComputeRunningProcesses_v2", 1) == 3


def test_memory_v2_missing_falls_back_to_v1(fake, procfs) -> None:
    fake.lacks_memory_v2 = True
    src = _source(procfs)
    src.read()
    rtx3090 = src.read().gpus[1]
    # v1 `used` includes the reserved 250 MiB
    assert rtx3090.memory_used_mb == pytest.approx(18535.0 + 250.0, abs=0.01)
    assert rtx3090.memory_total_mb == 24576


def test_gpu_lost_mid_run_marks_that_gpu_only(fake, procfs) -> None:
    src = _source(procfs)
    assert src.read().error is None
    fake.errors[("nvmlDeviceGetMemoryInfo", 1)] = pynvml.NVMLError_GpuIsLost()
    report = src.read()
    assert report.error is None
    laptop, rtx3090 = report.gpus
    assert laptop.error is None and laptop.memory_total_mb == 16384
    assert rtx3090.name == "NVIDIA GeForce RTX 3090"
    assert "GpuIsLost" in (rtx3090.error or "")
    del fake.errors[("nvmlDeviceGetMemoryInfo", 1)]
    assert src.read().gpus[1].error is None  # back when the GPU is


def test_driver_gone_mid_run_disables_then_recovers(fake, procfs) -> None:
    clock = Clock()
    src = _source(procfs, clock, retry_interval=30.0)
    assert src.read().error is None
    # driver unloaded under us: every call now fails
    fake.errors["nvmlDeviceGetMemoryInfo"] = nvml_error(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    report = src.read()
    assert report.gpus == []
    assert report.error is not None and "DriverNotLoaded" in report.error
    assert "\n" not in report.error
    assert fake.shutdowns == 1
    inits = fake.count("nvmlInit")
    # stays disabled (no hammering) until the retry interval
    clock.now += 10
    assert src.read().error == report.error
    assert fake.count("nvmlInit") == inits
    # driver back: NVML is initialised again and readings resume
    del fake.errors["nvmlDeviceGetMemoryInfo"]
    clock.now += 30
    report = src.read()
    assert report.error is None and len(report.gpus) == 2
    assert fake.count("nvmlInit") == inits + 1


def test_gpu_without_a_handle_at_start_is_shown_as_unavailable(fake, procfs) -> None:
    """nvidia-smi: "Unable to determine the device handle for GPU1: Unknown Error"."""
    real = fake.nvmlDeviceGetHandleByIndex

    def handle(index):
        if index == 1:
            raise pynvml.NVMLError_GpuIsLost()
        return real(index)

    pynvml.nvmlDeviceGetHandleByIndex = handle  # restored by monkeypatch at teardown
    report = _source(procfs).read()
    laptop, broken = report.gpus
    assert report.error is None
    assert laptop.memory_total_mb == 16384
    assert broken.name == "GPU 1" and "GpuIsLost" in (broken.error or "")


def test_every_gpu_lost_counts_as_nvml_gone(fake, procfs) -> None:
    src = _source(procfs)
    src.read()
    fake.errors["nvmlDeviceGetMemoryInfo"] = pynvml.NVMLError_GpuIsLost()
    report = src.read()
    assert report.error and "every GPU is unavailable" in report.error
    assert all(g.error for g in report.gpus)


@pytest.mark.parametrize("code,name", [
    (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "DriverNotLoaded"),
    (pynvml.NVML_ERROR_NO_PERMISSION, "NoPermission"),
    (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, "LibRmVersionMismatch"),
    (pynvml.NVML_ERROR_UNKNOWN, "Unknown"),
    (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "LibraryNotFound"),
])
def test_init_failure_says_why_in_one_line(fake, procfs, code, name) -> None:
    fake.errors["nvmlInit"] = nvml_error(code)
    clock = Clock()
    src = _source(procfs, clock)
    for _ in range(3):
        report = src.read()
    assert report.gpus == []
    assert report.error is not None and report.error.startswith("NVML unavailable: " + name)
    assert "\n" not in report.error
    assert fake.count("nvmlInit") == 1  # initialised once, not on every poll
    assert fake.count("nvmlDeviceGetCount") == 0


def test_init_mismatch_error_is_caught(fake, procfs) -> None:
    fake.errors["nvmlInit"] = pynvml.NVMLLibraryMismatchError("pyNVML does not match")
    report = _source(procfs).read()
    assert report.error and "LibraryMismatch" in report.error


def test_close_during_a_read_does_not_wait_and_shuts_down_after(fake, procfs) -> None:
    src = _source(procfs)
    src.read()
    entered, release = threading.Event(), threading.Event()
    real = fake.nvmlDeviceGetUtilizationRates

    def slow(handle):
        entered.set()
        release.wait(10)
        return real(handle)

    fake.nvmlDeviceGetUtilizationRates = slow
    pynvml.nvmlDeviceGetUtilizationRates = slow  # restored by monkeypatch at teardown
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", src.read()))
    t.start()
    assert entered.wait(5)
    src.close()  # returns at once although a read holds NVML
    assert fake.shutdowns == 0
    release.set()
    t.join(5)
    assert not t.is_alive()
    assert fake.shutdowns == 1
    assert result["r"].gpus  # the read in progress still completed
    assert src.read().error == "NVML closed"
    src.close()
    assert fake.shutdowns == 1


def test_unexpected_fields_never_crash(fake, procfs) -> None:
    fake.gpus[0].name = b"NVIDIA \x1b[31mA100"  # type: ignore[assignment]
    report = _source(procfs).read()
    assert "\x1b" not in report.gpus[0].name
    assert "A100" in report.gpus[0].name


def test_unexpected_exception_type_becomes_an_error_line(fake, procfs) -> None:
    fake.errors["nvmlDeviceGetUtilizationRates"] = ValueError("ctypes said no")
    src = _source(procfs)
    report = src.read()
    assert report.gpus == []
    assert report.error == "NVML failed: ValueError (ctypes said no)"


# ---------------------------------------------------------------- the real library


def test_real_library_without_driver_reports_library_not_found() -> None:
    """This machine has no NVIDIA driver: the real pynvml raises LibraryNotFound."""
    src = NvmlSource()
    report = src.read()
    src.close()
    assert report.gpus == []
    assert report.error is not None
    assert report.error.startswith("NVML unavailable: LibraryNotFound")
    assert "\n" not in report.error
    doc = Snapshot(gpu=report).to_json()
    assert doc["gpus"] == []
    assert "LibraryNotFound" in doc["gpu_error"]


def test_real_collect_falls_back_to_system_stats() -> None:
    probes = [ProbeResult(service="comfyui-qwen", url="http://127.0.0.1:8188", outcome="ok",
                          vram_total_mb=24576.0, vram_free_mb=6041.0,
                          device_name="cuda:0 NVIDIA GeForce RTX 3090 : cudaMallocAsync")]
    report = gpu.collect([], probes)
    assert "LibraryNotFound" in (report.error or "")
    (view,) = report.gpus
    assert view.source == "system_stats:comfyui-qwen"
    assert view.name == "NVIDIA GeForce RTX 3090"
    assert view.memory_used_mb == pytest.approx(24576 - 6041)


# ---------------------------------------------------------------- fallback and JSON


def test_fallback_skips_probes_without_or_with_nonsense_vram() -> None:
    probes = [
        ProbeResult("comfyui-qwen", "u", "ok", vram_total_mb=16384.0, vram_free_mb=15000.0,
                    device_name="cuda:1 NVIDIA GeForce RTX 3080 Laptop GPU : native"),
        ProbeResult("flux-1-dev", "u", "ok", vram_total_mb=12288.0, vram_free_mb=99999.0,
                    device_name="\x1b]0;pwned\x07weird"),
        ProbeResult("sd35", "u", "refused"),
        ProbeResult("bad", "u", "ok", vram_total_mb=-5.0, vram_free_mb=1.0),
    ]
    report = fallback_from_probes(probes, "NVML unavailable: LibraryNotFound")
    qwen, flux = report.gpus
    assert qwen.index == 1 and qwen.name == "NVIDIA GeForce RTX 3080 Laptop GPU"
    assert qwen.memory_used_mb == pytest.approx(1384.0)
    assert flux.memory_used_mb is None  # free > total: not believed
    assert "\x1b" not in flux.name and "\x07" not in flux.name


def test_remote_docker_uses_only_system_stats(fake) -> None:
    probes = [ProbeResult("comfyui-qwen", "u", "ok", vram_total_mb=24576.0,
                          vram_free_mb=24000.0, device_name="cuda:0 NVIDIA GeForce RTX 3090")]
    report = gpu.collect([], probes, remote=True)
    assert [g.source for g in report.gpus] == ["system_stats:comfyui-qwen"]
    assert "remote" in (report.error or "")
    assert fake.count("nvmlInit") == 0  # local GPUs are not the stack's


@pytest.mark.parametrize("host,remote", [
    (None, False), ("", False), ("unix:///var/run/docker.sock", False),
    ("npipe:////./pipe/docker_engine", False), ("tcp://127.0.0.1:2375", False),
    ("tcp://localhost:2376", False), ("tcp://10.0.0.5:2376", True),
    ("ssh://admin@gpu-box", True),
])
def test_is_remote_docker(host, remote) -> None:
    assert is_remote_docker(host) is remote


def test_check_json_shape(fake, procfs, containers) -> None:
    fake.gpus[1].compute = [FakeProc(4242, 17_920.0)]
    report = _source(procfs).read(containers)
    doc = Snapshot(gpu=report).to_json()
    assert "gpu_error" not in doc
    g = doc["gpus"][1]
    for key in ("index", "name", "memory_used_mb", "memory_total_mb", "utilization_pct",
                "temperature_c", "processes"):
        assert key in g
    assert g["processes"] == [{"pid": 4242, "memory_mb": pytest.approx(17920.0),
                               "name": "python", "kind": "compute",
                               "container": "comfyui-qwen", "service": "comfyui-qwen"}]
