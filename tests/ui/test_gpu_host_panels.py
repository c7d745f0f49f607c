"""The GPU and host panels in a real Textual app (Pilot), with NVML faked at the pynvml
function boundary, the real no-driver path of this machine, and a snapshot."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pynvml
from textual.app import App, ComposeResult
from textual.containers import Vertical

from genai_tui.config import Config, DockerConfig, GpuConfig, HostConfig
from genai_tui.model import ContainerInfo, DiskUsage, HostInfo, ProbeResult
from genai_tui.sources.gpu import NvmlSource
from genai_tui.sources.host import HostSource
from genai_tui.ui.context import AppContext
from genai_tui.ui.gpu import GpuCard, GpuPanel, MemorySparkline
from genai_tui.ui.host import HostPanel
from tests.ui.helpers import wait_until
from tests.unit.fake_nvml import FakeNvml, FakeProc, fake_procfs

QWEN_ID = "3ab9d4a4968c2db8cb2b146a9b52e5978bcfbee53180c93cd503cb5766d8ce52"
FLUX_ID = "e3c3a3f1b8d4f5a61c7e20a8b9d1f2e3c4b5a6978877665544332211ffeeddcc"


class FixedHost:
    """Deterministic host readings (the real HostSource is tested in tests/unit)."""

    def __init__(self, info: HostInfo) -> None:
        self.info = info
        self.reads = 0

    def read(self) -> HostInfo:
        self.reads += 1
        return dataclasses.replace(self.info)


def host_info(**kw) -> HostInfo:
    base = dict(cpu_pct=23.0, load=(1.2, 0.9, 0.7), cpu_count=16,
                memory_used_mb=41_062.0, memory_total_mb=64_216.0,
                swap_used_mb=0.0, swap_total_mb=8_192.0,
                disks=[DiskUsage("/srv/genai/models", used_mb=1_310_720.0,
                                 total_mb=1_887_437.0),
                       DiskUsage("/srv/genai/outputs", error="not found")])
    base.update(kw)
    return HostInfo(**base)


class PanelsApp(App):
    CSS = "Screen { layout: vertical; } #col { width: 50; height: auto; }"

    def __init__(self, ctx: AppContext, gpu_source=None, host_source=None) -> None:
        super().__init__()
        self.ctx = ctx
        self.published: list[str] = []
        ctx.on_publish = lambda part, value: self.published.append(part)
        self._gpu_source = gpu_source
        self._host_source = host_source

    def compose(self) -> ComposeResult:
        with Vertical(id="col"):
            yield GpuPanel(self.ctx, source=self._gpu_source, id="gpu")
            yield HostPanel(self.ctx, source=self._host_source, id="host")


def make_ctx(interval: float = 3600.0, gpu_warn: float = 90.0, host_warn: float = 90.0,
             docker_host: str | None = None) -> AppContext:
    config = Config(services=(), gpu=GpuConfig(interval=interval, memory_warn_pct=gpu_warn),
                    host=HostConfig(interval=interval, memory_warn_pct=host_warn),
                    docker=DockerConfig(host=docker_host))
    ctx = AppContext(config=config)
    ctx.snapshot.containers = [
        ContainerInfo(service="comfyui-qwen", container="comfyui-qwen", id=QWEN_ID,
                      state="running"),
        ContainerInfo(service="flux-1-dev", container="coursia-flux-1-dev", id=FLUX_ID,
                      state="running"),
    ]
    return ctx


def make_procfs(tmp_path: Path) -> Path:
    return fake_procfs(tmp_path / "proc", {
        4242: ("python", f"0::/system.slice/docker-{QWEN_ID}.scope\n"),
        5151: ("python3", f"0::/docker/{FLUX_ID}\n"),
        1234: ("Xorg", "0::/system.slice/display-manager.service\n"),
    })


def stack_gpus(fake: FakeNvml) -> None:
    fake.gpus[1].compute = [FakeProc(4242, 17_920.0), FakeProc(5151, 4_700.0)]
    fake.gpus[0].graphics = [FakeProc(1234, 96.0)]


def screen_text(app: App) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def line_with(app: App, needle: str) -> str:
    """The screen line holding `needle`, without the panel border."""
    line = next(ln for ln in screen_text(app).splitlines() if needle in ln)
    return line.strip().strip("│").strip()




async def test_gpu_panel_shows_gpus_processes_and_owners(monkeypatch, tmp_path) -> None:
    fake = FakeNvml.install(monkeypatch)
    stack_gpus(fake)
    ctx = make_ctx()
    app = PanelsApp(ctx, NvmlSource(procfs=make_procfs(tmp_path)), FixedHost(host_info()))
    async with app.run_test(size=(60, 30)) as pilot:
        gpu = app.query_one(GpuPanel)
        await wait_until(pilot, lambda: gpu.polls >= 1)
        await pilot.pause()
        text = screen_text(app)
        assert "RTX 3080 Laptop" in text and "RTX 3090" in text
        assert "18.1/24.0G" in text  # 18535 MiB of 24576
        assert " 75%" in text
        assert "97%" in text and "71°C" in text and "312/350W" in text
        assert "driver 581.29" in text
        # each GPU process with its owner: stack service (container), or the host
        assert "4242 python" in text and "comfyui-qwen" in text
        assert "flux-1-dev (coursia-" in text  # long owners end in an ellipsis
        assert "1234 Xorg" in text and "host" in text
        assert gpu.message == ""
        # published for the app (snapshot + findings), `check --json` shape included
        assert "gpu" in app.published and ctx.snapshot.gpu is gpu.report
        procs = ctx.snapshot.to_json()["gpus"][1]["processes"]
        assert [p["service"] for p in procs] == ["comfyui-qwen", "flux-1-dev"]
    # NVML initialised once and shut down when the panel went away
    assert fake.count("nvmlInit") == 1
    assert fake.shutdowns == 1 and fake.initialised == 0


async def test_gpu_above_threshold_is_highlighted(monkeypatch, tmp_path) -> None:
    fake = FakeNvml.install(monkeypatch)
    ctx = make_ctx(gpu_warn=90.0)
    app = PanelsApp(ctx, NvmlSource(procfs=make_procfs(tmp_path)), FixedHost(host_info()))
    async with app.run_test(size=(60, 30)) as pilot:
        gpu = app.query_one(GpuPanel)
        await wait_until(pilot, lambda: gpu.polls >= 1)
        laptop, rtx3090 = gpu.query(GpuCard)
        assert not gpu.has_class("-warn") and not rtx3090.has_class("-warn")
        fake.gpus[1].used_mib = 23_200.0  # 94 %
        gpu.action_refresh()
        await wait_until(pilot, lambda: gpu.polls >= 2)
        await pilot.pause()
        assert rtx3090.has_class("-warn") and gpu.has_class("-warn")
        assert not laptop.has_class("-warn")
        assert "94%!" in screen_text(app)
        # the highlight is visible: the card's memory line takes the error colour
        assert rtx3090.mem.styles.color != laptop.mem.styles.color


async def test_sparkline_keeps_a_bounded_memory_history(monkeypatch, tmp_path) -> None:
    fake = FakeNvml.install(monkeypatch)
    ctx = make_ctx()
    app = PanelsApp(ctx, NvmlSource(procfs=make_procfs(tmp_path)), FixedHost(host_info()))
    async with app.run_test(size=(60, 30)) as pilot:
        gpu = app.query_one(GpuPanel)
        await wait_until(pilot, lambda: gpu.polls >= 1)
        for i, used in enumerate([2_000.0, 8_000.0, 16_000.0, 24_000.0], start=2):
            fake.gpus[1].used_mib = used
            gpu.action_refresh()
            await wait_until(pilot, lambda i=i: gpu.polls >= i)
        spark = gpu.query(GpuCard)[1].query_one(MemorySparkline)
        assert list(spark.data)[-4:] == [2_000.0, 8_000.0, 16_000.0, 24_000.0]
        assert spark.ceiling == 24_576
        await pilot.pause()
        line = str(spark.render())
        # scaled to the 24 GiB total (8 levels), newest last: 8%, 33%, 65%, 98%
        assert line.rstrip().endswith("▁▃▆█")
    # history is a bounded deque
    assert MemorySparkline.columns(list(range(1000)), 10)[-1] == 999
    assert len(MemorySparkline.columns(list(range(1000)), 10)) == 10


async def test_mig_memory_not_available_shows_na(monkeypatch, tmp_path) -> None:
    fake = FakeNvml.install(monkeypatch)
    fake.gpus[1].compute = [FakeProc(4242, None)]
    app = PanelsApp(make_ctx(), NvmlSource(procfs=make_procfs(tmp_path)),
                    FixedHost(host_info()))
    async with app.run_test(size=(60, 30)) as pilot:
        gpu = app.query_one(GpuPanel)
        await wait_until(pilot, lambda: gpu.polls >= 1)
        await pilot.pause()
        line = next(ln for ln in screen_text(app).splitlines() if "4242" in ln)
        assert "n/a" in line and "comfyui-qwen" in line


async def test_no_nvml_says_why_in_one_line_and_the_rest_runs(tmp_path) -> None:
    """The real library on this driverless machine: LibraryNotFound, nothing faked."""
    ctx = make_ctx()
    app = PanelsApp(ctx, None, FixedHost(host_info()))
    async with app.run_test(size=(60, 30)) as pilot:
        gpu = app.query_one(GpuPanel)
        host = app.query_one(HostPanel)
        await wait_until(pilot, lambda: gpu.polls >= 1 and host.polls >= 1)
        await pilot.pause()
        assert gpu.message.startswith("NVML unavailable: LibraryNotFound")
        assert "\n" not in gpu.message
        assert not gpu.query(GpuCard)
        lines = [ln for ln in screen_text(app).splitlines() if "LibraryNotFound" in ln]
        assert len(lines) == 1
        assert line_with(app, "CPU").split()[1] == "23%"  # the host panel is unaffected
        assert ctx.snapshot.to_json()["gpu_error"].startswith("NVML unavailable")
        assert ctx.snapshot.to_json()["gpus"] == []


async def test_no_nvml_falls_back_to_each_comfyui_view(tmp_path) -> None:
    ctx = make_ctx()
    ctx.snapshot.probes = [
        ProbeResult("comfyui-qwen", "http://127.0.0.1:8188", "ok", vram_total_mb=24_576.0,
                    vram_free_mb=6_041.0,
                    device_name="cuda:0 NVIDIA GeForce RTX 3090 : cudaMallocAsync"),
        ProbeResult("flux-1-dev", "http://127.0.0.1:8189", "refused"),
    ]
    app = PanelsApp(ctx, None, FixedHost(host_info()))
    async with app.run_test(size=(60, 30)) as pilot:
        gpu = app.query_one(GpuPanel)
        await wait_until(pilot, lambda: gpu.polls >= 1)
        await pilot.pause()
        text = screen_text(app)
        assert "LibraryNotFound" in gpu.message and "as each ComfyUI reports it" in gpu.message
        assert "comfyui-qwen RTX 3090" in text
        assert "18.1/24.0G" in text
        assert "flux-1-dev" not in text


async def test_remote_docker_host_uses_system_stats_only(monkeypatch) -> None:
    fake = FakeNvml.install(monkeypatch)
    ctx = make_ctx(docker_host="ssh://admin@gpu-box")
    ctx.snapshot.probes = [ProbeResult("comfyui-qwen", "u", "ok", vram_total_mb=16_384.0,
                                       vram_free_mb=12_000.0, device_name="cuda:0 X")]
    app = PanelsApp(ctx, None, FixedHost(host_info()))
    async with app.run_test(size=(60, 30)) as pilot:
        gpu = app.query_one(GpuPanel)
        await wait_until(pilot, lambda: gpu.polls >= 1)
        assert "remote Docker host" in gpu.message
        assert [g.source for g in gpu.report.gpus] == ["system_stats:comfyui-qwen"]
        assert fake.count("nvmlInit") == 0


async def test_gpu_lost_then_driver_gone_never_crashes(monkeypatch, tmp_path) -> None:
    fake = FakeNvml.install(monkeypatch)
    app = PanelsApp(make_ctx(), NvmlSource(procfs=make_procfs(tmp_path)),
                    FixedHost(host_info()))
    async with app.run_test(size=(60, 30)) as pilot:
        gpu = app.query_one(GpuPanel)
        await wait_until(pilot, lambda: gpu.polls >= 1)
        fake.errors[("nvmlDeviceGetMemoryInfo", 1)] = pynvml.NVMLError_GpuIsLost()
        gpu.action_refresh()
        await wait_until(pilot, lambda: gpu.polls >= 2)
        await pilot.pause()
        text = screen_text(app)
        assert "GpuIsLost" in text and "RTX 3080 Laptop" in text
        assert gpu.query(GpuCard)[1].has_class("-lost")
        fake.errors["nvmlDeviceGetUtilizationRates"] = pynvml.NVMLError_DriverNotLoaded()
        gpu.action_refresh()
        await wait_until(pilot, lambda: gpu.polls >= 3)
        await pilot.pause()
        assert gpu.message.startswith("NVML stopped: DriverNotLoaded")
        assert not gpu.query(GpuCard)
        assert app.is_running


async def test_host_panel_values_highlight_and_first_reading(tmp_path) -> None:
    source = FixedHost(host_info(cpu_pct=None, memory_used_mb=60_000.0))
    ctx = make_ctx(host_warn=90.0)
    app = PanelsApp(ctx, None, source)
    async with app.run_test(size=(60, 30)) as pilot:
        host = app.query_one(HostPanel)
        await wait_until(pilot, lambda: host.polls >= 1)
        await pilot.pause()
        text = screen_text(app)
        assert line_with(app, "CPU").split()[1] == "…"  # no baseline yet: no fake 0 %
        assert "load 1.20 0.90 0.70 /16" in text
        assert "58.6/62.7G" in text and "93%!" in text
        assert host.has_class("-warn") and host.mem.has_class("-warn")
        assert "Swap" in text and "0.0/8.0G" in text
        assert "models" in text and "1.2/1.8T" in text
        assert "not found: /srv/genai/outputs" in text
        assert ctx.snapshot.host is host.info and "host" in app.published
        source.info = host_info(memory_used_mb=20_000.0)
        host.action_refresh()
        await wait_until(pilot, lambda: host.polls >= 2)
        assert not host.has_class("-warn")


async def test_host_panel_polls_on_its_own(tmp_path) -> None:
    source = HostSource([tmp_path])
    ctx = make_ctx(interval=0.5)
    app = PanelsApp(ctx, None, source)
    async with app.run_test(size=(60, 30)) as pilot:
        host = app.query_one(HostPanel)
        await wait_until(pilot, lambda: host.polls >= 2, timeout=10)
        assert host.info is not None and host.info.memory_total_mb
        assert host.info.cpu_pct is not None  # the second real reading has a baseline


# ---------------------------------------------------------------- snapshot


def test_snapshot_gpu_and_host_panels(snap_compare, monkeypatch, tmp_path) -> None:
    fake = FakeNvml.install(monkeypatch)
    stack_gpus(fake)
    ctx = make_ctx(gpu_warn=90.0)
    app = PanelsApp(ctx, NvmlSource(procfs=make_procfs(tmp_path)), FixedHost(host_info()))

    async def run_before(pilot) -> None:
        gpu = app.query_one(GpuPanel)
        host = app.query_one(HostPanel)
        await wait_until(pilot, lambda: gpu.polls >= 1 and host.polls >= 1)
        # a job loads a model on the 3090: memory climbs past the threshold
        for i, used in enumerate([19_000.0, 21_000.0, 22_500.0, 22_950.0], start=2):
            fake.gpus[1].used_mib = used
            gpu.action_refresh()
            await wait_until(pilot, lambda i=i: gpu.polls >= i)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(50, 20), run_before=run_before)
