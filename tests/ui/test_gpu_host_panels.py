"""The GPU and host panels in the real dashboard (Pilot) driven by the engine (`Stack`),
with NVML faked at the pynvml function boundary, the real no-driver path of this machine,
the engine's poll pace, and a snapshot."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pynvml
from textual.app import App, ComposeResult
from textual.containers import Vertical
from textual.widget import Widget

from genai_tui.config import Config, DockerConfig, GpuConfig, HostConfig
from genai_tui.engine.live import Stack
from genai_tui.model import ContainerInfo, DiskUsage, HostInfo, ProbeResult
from genai_tui.sources.gpu import NvmlSource
from genai_tui.sources.host import HostSource
from genai_tui.ui.app import GenaiTui
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


def make_config(interval: float = 3600.0, gpu_warn: float = 90.0, host_warn: float = 90.0,
                docker_host: str | None = None, probe_interval: float | None = None) -> Config:
    config = Config(services=(), gpu=GpuConfig(interval=interval, memory_warn_pct=gpu_warn),
                    host=HostConfig(interval=interval, memory_warn_pct=host_warn),
                    docker=DockerConfig(host=docker_host))
    if probe_interval is not None:
        config = dataclasses.replace(
            config, probes=dataclasses.replace(config.probes, interval=probe_interval))
    return config


def stack_containers() -> list[ContainerInfo]:
    """What the Docker monitor saw: the containers the GPU processes are joined with."""
    return [
        ContainerInfo(service="comfyui-qwen", container="comfyui-qwen", id=QWEN_ID,
                      state="running"),
        ContainerInfo(service="flux-1-dev", container="coursia-flux-1-dev", id=FLUX_ID,
                      state="running"),
    ]


def make_stack(config: Config, *, nvml: NvmlSource | None = None,
               host_reader=None, parts=("gpu", "host"),
               probes: list[ProbeResult] | None = None) -> Stack:
    """The engine with only the GPU and host polls live (fake NVML, fixed host values),
    fed the containers (and probes) the GPU attribution joins with."""
    stack = Stack(config, parts=set(parts), nvml=nvml,
                  host_reader=host_reader if host_reader is not None
                  else FixedHost(host_info()))
    stack.publish("containers", stack_containers())
    if probes is not None:
        stack.publish("probes", probes)
    return stack


def dashboard(stack: Stack) -> tuple[GenaiTui, list[str]]:
    """The real dashboard on that engine, and the parts it published (in order)."""
    seen: list[str] = []
    stack.subscribe(lambda change: seen.append(change.part))
    return GenaiTui(stack.config, stack=stack), seen


#: tall enough for the side column (GPU, host, tokens) to show whole
SIZE = (120, 50)


def panel_text(app: App, widget: Widget) -> str:
    """What the terminal shows inside one panel (its region, border included)."""
    strips = app.screen._compositor.render_strips()
    r = widget.region
    return "\n".join(strips[y].crop(r.x, r.x + r.width).text
                     for y in range(r.y, min(r.y + r.height, len(strips))))


def line_with(app: App, widget: Widget, needle: str) -> str:
    """The panel's line holding `needle`, without the panel border."""
    line = next(ln for ln in panel_text(app, widget).splitlines() if needle in ln)
    return line.strip().strip("│").strip()


async def gpu_round(pilot, app: GenaiTui, n: int) -> GpuPanel:
    """Wait for the engine's n-th GPU round and for the panel to show its report."""
    gpu = app.query_one(GpuPanel)
    await wait_until(pilot, lambda: app.stack.rounds("gpu") >= n
                     and app.stack.snapshot.gpu is not None
                     and gpu.report is app.stack.snapshot.gpu)
    await pilot.pause()
    return gpu


async def host_round(pilot, app: GenaiTui, n: int) -> HostPanel:
    host = app.query_one(HostPanel)
    await wait_until(pilot, lambda: app.stack.rounds("host") >= n
                     and app.stack.snapshot.host is not None
                     and host.info is app.stack.snapshot.host)
    await pilot.pause()
    return host


def make_procfs(tmp_path: Path) -> Path:
    return fake_procfs(tmp_path / "proc", {
        4242: ("python", f"0::/system.slice/docker-{QWEN_ID}.scope\n"),
        5151: ("python3", f"0::/docker/{FLUX_ID}\n"),
        1234: ("Xorg", "0::/system.slice/display-manager.service\n"),
    })


def stack_gpus(fake: FakeNvml) -> None:
    fake.gpus[1].compute = [FakeProc(4242, 17_920.0), FakeProc(5151, 4_700.0)]
    fake.gpus[0].graphics = [FakeProc(1234, 96.0)]


async def test_gpu_panel_shows_gpus_processes_and_owners(monkeypatch, tmp_path) -> None:
    fake = FakeNvml.install(monkeypatch)
    stack_gpus(fake)
    stack = make_stack(make_config(), nvml=NvmlSource(procfs=make_procfs(tmp_path)))
    app, seen = dashboard(stack)
    async with app.run_test(size=SIZE) as pilot:
        gpu = await gpu_round(pilot, app, 1)
        text = panel_text(app, gpu)
        assert "RTX 3080 Laptop" in text and "RTX 3090" in text
        assert "VRAM used 18.1/24.0 GiB" in text  # 18535 MiB of 24576
        assert " 75%" in text
        assert "97%" in text and "71°C" in text and "312/350W" in text
        assert "driver 581.29" in text
        # each GPU process with its owner: stack service (container), or the host
        assert "4242 python" in text and "comfyui-qwen" in text
        # long owners end in an ellipsis (the dashboard's side column is 48 wide)
        owner = line_with(app, gpu, "5151 python3")
        assert "flux-1-dev (cours" in owner and owner.endswith("…"), owner
        assert "1234 Xorg" in text and "host" in text
        assert gpu.message == ""
        # published by the engine (snapshot + findings), `check --json` shape included
        assert "gpu" in seen and stack.snapshot.gpu is gpu.report
        procs = stack.snapshot.to_json()["gpus"][1]["processes"]
        assert [p["service"] for p in procs] == ["comfyui-qwen", "flux-1-dev"]
    # NVML initialised once for every round (the injected source is the caller's to close:
    # the engine's own is shut down at exit, see the next test)
    assert fake.count("nvmlInit") == 1


async def test_the_engines_own_nvml_is_shut_down_when_the_dashboard_exits(
        monkeypatch) -> None:
    fake = FakeNvml.install(monkeypatch)
    stack = make_stack(make_config(), parts=("gpu",))  # no nvml given: the engine makes one
    app, _seen = dashboard(stack)
    async with app.run_test(size=SIZE) as pilot:
        gpu = await gpu_round(pilot, app, 1)
        assert "RTX 3090" in panel_text(app, gpu)
        app.stack.refresh("gpu")
        await gpu_round(pilot, app, 2)
    assert fake.count("nvmlInit") == 1
    assert fake.shutdowns == 1 and fake.initialised == 0


async def test_gpu_above_threshold_is_highlighted(monkeypatch, tmp_path) -> None:
    fake = FakeNvml.install(monkeypatch)
    stack = make_stack(make_config(gpu_warn=90.0),
                       nvml=NvmlSource(procfs=make_procfs(tmp_path)))
    app, _seen = dashboard(stack)
    async with app.run_test(size=SIZE) as pilot:
        gpu = await gpu_round(pilot, app, 1)
        laptop, rtx3090 = gpu.query(GpuCard)
        assert not gpu.has_class("-warn") and not rtx3090.has_class("-warn")
        fake.gpus[1].used_mib = 23_200.0  # 94 %
        app.stack.refresh("gpu")
        await gpu_round(pilot, app, 2)
        assert rtx3090.has_class("-warn") and gpu.has_class("-warn")
        assert not laptop.has_class("-warn")
        assert "94%!" in panel_text(app, gpu)
        # the highlight is visible: the card's memory line takes the error colour
        assert rtx3090.mem.styles.color != laptop.mem.styles.color


async def test_sparkline_keeps_a_bounded_memory_history(monkeypatch, tmp_path) -> None:
    fake = FakeNvml.install(monkeypatch)
    stack = make_stack(make_config(), nvml=NvmlSource(procfs=make_procfs(tmp_path)))
    app, _seen = dashboard(stack)
    async with app.run_test(size=SIZE) as pilot:
        gpu = await gpu_round(pilot, app, 1)
        for i, used in enumerate([2_000.0, 8_000.0, 16_000.0, 24_000.0], start=2):
            fake.gpus[1].used_mib = used
            app.stack.refresh("gpu")
            await gpu_round(pilot, app, i)
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
    stack = make_stack(make_config(), nvml=NvmlSource(procfs=make_procfs(tmp_path)))
    app, _seen = dashboard(stack)
    async with app.run_test(size=SIZE) as pilot:
        gpu = await gpu_round(pilot, app, 1)
        line = next(ln for ln in panel_text(app, gpu).splitlines() if "4242" in ln)
        assert "n/a" in line and "comfyui-qwen" in line


async def test_no_nvml_says_why_in_one_line_and_the_rest_runs(tmp_path) -> None:
    """The real library on this driverless machine: LibraryNotFound, nothing faked."""
    stack = make_stack(make_config())  # no nvml given: the engine's own, real NVML
    app, _seen = dashboard(stack)
    async with app.run_test(size=SIZE) as pilot:
        gpu = await gpu_round(pilot, app, 1)
        host = await host_round(pilot, app, 1)
        assert gpu.message.startswith("NVML unavailable: LibraryNotFound")
        assert "\n" not in gpu.message
        assert not gpu.query(GpuCard)
        # one line in the panel (the findings bar may name it too: a note of its own)
        lines = [ln for ln in panel_text(app, gpu).splitlines() if "LibraryNotFound" in ln]
        assert len(lines) == 1
        await wait_until(pilot, lambda: any(f.code == "gpu_unavailable"
                                            for f in stack.snapshot.findings))
        # the host panel is unaffected
        assert line_with(app, host, "CPU").split()[1] == "23%"
        assert stack.snapshot.to_json()["gpu_error"].startswith("NVML unavailable")
        assert stack.snapshot.to_json()["gpus"] == []


async def test_no_nvml_falls_back_to_each_comfyui_view(tmp_path) -> None:
    probes = [
        ProbeResult("comfyui-qwen", "http://127.0.0.1:8188", "ok", vram_total_mb=24_576.0,
                    vram_free_mb=6_041.0,
                    device_name="cuda:0 NVIDIA GeForce RTX 3090 : cudaMallocAsync"),
        ProbeResult("flux-1-dev", "http://127.0.0.1:8189", "refused"),
    ]
    stack = make_stack(make_config(), probes=probes)
    app, _seen = dashboard(stack)
    async with app.run_test(size=SIZE) as pilot:
        gpu = await gpu_round(pilot, app, 1)
        text = panel_text(app, gpu)
        assert "LibraryNotFound" in gpu.message
        # the rows say where the numbers come from: that ComfyUI, not NVML
        assert "RTX 3090" in text and "as ComfyUI reports: comfyui-qwen" in text
        assert "VRAM used 18.1/24.0 GiB" in text
        assert "flux-1-dev" not in text


async def test_probes_published_after_mount_reach_the_next_gpu_round(tmp_path) -> None:
    """The GPU round reads the engine's snapshot as it is then: probes that arrive later
    show at the next round."""
    stack = make_stack(make_config())
    app, _seen = dashboard(stack)
    async with app.run_test(size=SIZE) as pilot:
        gpu = await gpu_round(pilot, app, 1)
        assert not gpu.query(GpuCard)
        app.stack.publish("probes", [ProbeResult(
            "comfyui-qwen", "u", "ok", vram_total_mb=24_576.0, vram_free_mb=6_041.0,
            device_name="cuda:0 NVIDIA GeForce RTX 3090 : cudaMallocAsync")])
        app.stack.refresh("gpu")
        await gpu_round(pilot, app, 2)
        assert "as ComfyUI reports: comfyui-qwen" in panel_text(app, gpu)


async def test_remote_docker_host_uses_system_stats_only(monkeypatch) -> None:
    fake = FakeNvml.install(monkeypatch)
    probes = [ProbeResult("comfyui-qwen", "u", "ok", vram_total_mb=16_384.0,
                          vram_free_mb=12_000.0, device_name="cuda:0 X")]
    stack = make_stack(make_config(docker_host="ssh://admin@gpu-box"), probes=probes)
    app, _seen = dashboard(stack)
    async with app.run_test(size=SIZE) as pilot:
        gpu = await gpu_round(pilot, app, 1)
        assert "remote Docker host" in gpu.message
        assert [g.source for g in gpu.report.gpus] == ["system_stats:comfyui-qwen"]
    assert fake.count("nvmlInit") == 0


async def test_gpu_lost_then_driver_gone_never_crashes(monkeypatch, tmp_path) -> None:
    fake = FakeNvml.install(monkeypatch)
    stack = make_stack(make_config(), nvml=NvmlSource(procfs=make_procfs(tmp_path)))
    app, _seen = dashboard(stack)
    async with app.run_test(size=SIZE) as pilot:
        gpu = await gpu_round(pilot, app, 1)
        fake.errors[("nvmlDeviceGetMemoryInfo", 1)] = pynvml.NVMLError_GpuIsLost()
        app.stack.refresh("gpu")
        await gpu_round(pilot, app, 2)
        text = panel_text(app, gpu)
        assert "GpuIsLost" in text and "RTX 3080 Laptop" in text
        assert gpu.query(GpuCard)[1].has_class("-lost")
        fake.errors["nvmlDeviceGetUtilizationRates"] = pynvml.NVMLError_DriverNotLoaded()
        app.stack.refresh("gpu")
        await gpu_round(pilot, app, 3)
        assert gpu.message.startswith("NVML stopped: DriverNotLoaded")
        assert not gpu.query(GpuCard)
        assert app.is_running


async def test_host_panel_values_highlight_and_first_reading(tmp_path) -> None:
    source = FixedHost(host_info(cpu_pct=None, memory_used_mb=60_000.0))
    stack = make_stack(make_config(host_warn=90.0), host_reader=source, parts=("host",))
    app, seen = dashboard(stack)
    async with app.run_test(size=SIZE) as pilot:
        host = await host_round(pilot, app, 1)
        text = panel_text(app, host)
        assert line_with(app, host, "CPU").split()[1] == "…"  # no baseline yet: no fake 0 %
        assert "load 1.20 0.90 0.70 /16" in text
        assert "58.6/62.7 GiB" in text and "93%!" in text
        assert host.has_class("-warn") and host.mem.has_class("-warn")
        assert "Swap" in text and "0.0/8.0 GiB" in text
        assert "models" in text and "1.2/1.8 TiB" in text
        assert "not found: /srv/genai/outputs" in text
        assert stack.snapshot.host is host.info and "host" in seen
        source.info = host_info(memory_used_mb=20_000.0)
        app.stack.refresh("host")
        await wait_until(pilot, lambda: host.info is not None
                         and host.info.memory_used_mb == 20_000.0)
        assert not host.has_class("-warn")


async def test_host_is_polled_by_the_engine_on_its_own(tmp_path) -> None:
    stack = make_stack(make_config(interval=0.5), host_reader=HostSource([tmp_path]),
                       parts=("host",))
    app, _seen = dashboard(stack)
    async with app.run_test(size=SIZE) as pilot:
        host = await host_round(pilot, app, 2)
        assert host.info is not None and host.info.memory_total_mb
        assert host.info.cpu_pct is not None  # the second real reading has a baseline


# ---------------------------------------------------------------- the engine's pace


async def test_the_first_host_reading_is_followed_quickly_by_a_second() -> None:
    """The first reading has no CPU baseline: the engine takes the second within a second,
    then keeps `[host] interval` (an hour here)."""
    source = FixedHost(host_info())
    stack = make_stack(make_config(interval=3600.0), host_reader=source, parts=("host",))
    app, _seen = dashboard(stack)
    async with app.run_test(size=SIZE) as pilot:
        await host_round(pilot, app, 1)
        t0 = time.monotonic()
        await host_round(pilot, app, 2)
        assert time.monotonic() - t0 < 2.5
        await pilot.pause(1.5)
        assert stack.rounds("host") == 2 and source.reads == 2


async def test_without_nvml_the_gpu_is_read_at_the_probe_pace(monkeypatch) -> None:
    """Without NVML the GPU report is the probes' /system_stats: nothing new between two
    probe rounds, so the engine reads it at the probe pace, not every `[gpu] interval`."""
    cfg = make_config(interval=0.5, probe_interval=3600.0)
    stack = make_stack(cfg, parts=("gpu",))  # the real, driverless NVML
    app, _seen = dashboard(stack)
    async with app.run_test(size=SIZE) as pilot:
        await gpu_round(pilot, app, 1)
        assert stack.snapshot.gpu.error.startswith("NVML unavailable")
        await pilot.pause(1.5)
        assert stack.rounds("gpu") == 1
        assert stack._gpu_delay() == 3600.0
        app.stack.refresh("gpu")  # asked for: read at once all the same
        await gpu_round(pilot, app, 2)


async def test_with_nvml_the_gpu_is_read_every_gpu_interval(monkeypatch, tmp_path) -> None:
    FakeNvml.install(monkeypatch)
    cfg = make_config(interval=0.5, probe_interval=3600.0)
    stack = make_stack(cfg, nvml=NvmlSource(procfs=make_procfs(tmp_path)), parts=("gpu",))
    app, _seen = dashboard(stack)
    async with app.run_test(size=SIZE) as pilot:
        await gpu_round(pilot, app, 1)
        assert stack.snapshot.gpu.error is None
        assert stack._gpu_delay() == 0.5
        await gpu_round(pilot, app, 3)  # ~1 s: two more rounds on their own


# ---------------------------------------------------------------- snapshot


class PanelsApp(App):
    """The two panels alone (50 columns, as in a narrow side column), rendering what the
    engine publishes the way the dashboard does."""

    CSS = "Screen { layout: vertical; } #col { width: 50; height: auto; }"

    def __init__(self, stack: Stack) -> None:
        super().__init__()
        self.stack = stack

    def compose(self) -> ComposeResult:
        with Vertical(id="col"):
            yield GpuPanel(self.stack.config, id="gpu")
            yield HostPanel(self.stack.config, id="host")

    def on_mount(self) -> None:
        self.stack.subscribe(lambda change: self.call_later(self._render, change.part))
        self.run_worker(self.stack.run(), name="engine", exit_on_error=False)

    def _render(self, part: str) -> None:
        snap = self.stack.snapshot
        if part == "gpu" and snap.gpu is not None:
            self.query_one(GpuPanel).show(snap.gpu)
        elif part == "host" and snap.host is not None:
            self.query_one(HostPanel).show(snap.host)

    async def on_unmount(self) -> None:
        await self.stack.aclose()


def test_snapshot_gpu_and_host_panels(snap_compare, monkeypatch, tmp_path) -> None:
    fake = FakeNvml.install(monkeypatch)
    stack_gpus(fake)
    stack = make_stack(make_config(gpu_warn=90.0),
                       nvml=NvmlSource(procfs=make_procfs(tmp_path)))
    app = PanelsApp(stack)

    async def run_before(pilot) -> None:
        gpu = app.query_one(GpuPanel)
        host = app.query_one(HostPanel)
        await wait_until(pilot, lambda: gpu.polls >= 1 and host.polls >= 1)
        # a job loads a model on the 3090: memory climbs past the threshold
        for i, used in enumerate([19_000.0, 21_000.0, 22_500.0, 22_950.0], start=2):
            fake.gpus[1].used_mib = used
            stack.refresh("gpu")
            await wait_until(pilot, lambda i=i: gpu.polls >= i)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(50, 20), run_before=run_before)
