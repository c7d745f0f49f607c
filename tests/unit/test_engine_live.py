"""The live Stack, headless (no Pilot, no Textual): a real ComfyUI + Login simulator as a
local process, a fake NVML at the library boundary, fixed host values. It settles into
the same findings `collect_once` gives, hears changes, and closes without hanging."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest

from genai_tui import config as configmod
from genai_tui.engine.collect import collect_once
from genai_tui.engine.live import Change, Stack
from genai_tui.model import DiskUsage, HostInfo
from genai_tui.sources.gpu import NvmlSource
from tests.unit.fake_nvml import FakeNvml
from tests.unit.test_sim import Sim, free_port, write_password

OTHER = "$2b$12$" + "0" * 53


class FixedHost:
    def read(self) -> HostInfo:
        return HostInfo(cpu_pct=5.0, cpu_count=2, memory_used_mb=1000, memory_total_mb=8000,
                        swap_used_mb=0, swap_total_mb=0,
                        disks=[DiskUsage("/srv", used_mb=10, total_mb=100)])


@pytest.fixture
def comfy_stack(tmp_path: Path):
    """A simulator on loopback run as a `runtime = "process"` service, and its config."""
    write_password(tmp_path)
    port = free_port()
    sim = Sim(["--port", str(port), "--host", "127.0.0.1"], tmp_path)
    sim.wait_listening(port)
    cfg_path = tmp_path / "genai-tui.toml"
    cfg_path.write_text(
        "[[services]]\n"
        'name = "qwen"\n'
        f'url = "http://127.0.0.1:{port}"\n'
        'kind = "comfyui"\nauth = true\nruntime = "process"\n'
        f'process_pattern = "genai_tui.sim .*--port {port}"\n'
        "[tokens]\n"
        'canonical = "password"\n'
        "restart_after_unify = []\n"
        "[[tokens.locations]]\n"
        'name = "password"\npath = "login/PASSWORD"\nformat = "password_file"\n'
        "[probes]\ninterval = 0.5\n[gpu]\ninterval = 0.5\n[host]\ninterval = 0.5\n")
    try:
        yield configmod.load_file(cfg_path, env={}), tmp_path
    finally:
        sim.stop()


def codes(findings) -> list[tuple[str, str | None]]:
    return sorted((f.code, f.service) for f in findings)


def wait(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_stack_settles_to_the_findings_collect_once_gives(comfy_stack, monkeypatch):
    config, root = comfy_stack
    fake = FakeNvml.install(monkeypatch)
    heard: list[str] = []
    stack = Stack(config, nvml=NvmlSource(), host_reader=FixedHost())
    stack.subscribe(lambda change: heard.append(change.part))
    stack.start()
    try:
        assert stack.wait_settled(30), "the stack never settled"
        snap = stack.snapshot
        assert [p.auth for p in snap.probes] == ["enforced"]
        assert snap.tokens is not None and snap.tokens.consistent
        assert [g.name for g in snap.gpu.gpus] == [g.name for g in fake.gpus]
        assert snap.host.disks[0].path == "/srv"
        assert [c.state for c in snap.containers] == ["running"]
        for part in ("containers", "probes", "tokens", "gpu", "host", "findings"):
            assert part in heard
        once = collect_once(config)
        assert codes(stack.snapshot.findings) == codes(once.findings)

        # PASSWORD rewritten after the server started: it still runs with the old hash
        # (stale, restart needed), which the next tokens + probes rounds name
        (root / "login" / "PASSWORD").write_text(f"{OTHER}\nadmin")
        stack.refresh()
        wait(lambda: "token_stale" in [f.code for f in stack.snapshot.findings])
        assert "token_rejected" not in [f.code for f in stack.snapshot.findings]
    finally:
        t0 = time.monotonic()
        stack.close()
        assert time.monotonic() - t0 < 5
    assert not any(t.name == "genai-tui-stack" and t.is_alive() for t in threading.enumerate())


def test_an_early_listing_waits_for_the_loop_then_comes_first(comfy_stack):
    """The dashboard starts the monitors before it imports Textual: their first listing is
    held (no subscriber is ever called off the loop) until the loop takes it at mount, is
    published there at once, and the engine's run() keeps those monitors."""
    config, _root = comfy_stack
    stack = Stack(config, parts={"containers"})
    heard: list[tuple[str, threading.Thread]] = []
    stack.subscribe(lambda change: heard.append((change.part, threading.current_thread())))
    stack.start_early()
    monitor = stack.processes
    assert monitor is not None
    try:
        wait(lambda: stack._early)  # the monitor's listing is in, held
        assert heard == [] and stack.snapshot.containers == []

        async def until(predicate) -> None:
            while not predicate():
                await asyncio.sleep(0.005)

        async def main() -> None:
            stack.deliver_early()  # the mount: no engine run() yet
            await asyncio.wait_for(until(lambda: stack.snapshot.containers), 10)
            engine = asyncio.create_task(stack.run())
            await asyncio.wait_for(until(lambda: stack._stop_event is not None), 10)
            assert stack.processes is monitor  # not a second monitor
            await stack.aclose()
            await engine

        asyncio.run(main())
        assert [c.state for c in stack.snapshot.containers] == ["running"]
        assert "containers" in [part for part, _ in heard]
        assert {thread for _, thread in heard} == {threading.current_thread()}
    finally:
        stack.close()


def test_publish_without_a_loop_notifies_and_derives(tmp_path):
    """Tests and the demo feed parts by hand; findings follow from what was fed."""
    cfg = configmod.Config(services=(configmod.ServiceConfig("a", "http://127.0.0.1:9",
                                                             "http"),),
                           tokens=configmod.TokensConfig())
    stack = Stack(cfg, monitors=False)
    heard: list[Change] = []
    stack.subscribe(heard.append)
    from genai_tui.model import ProbeResult

    stack.publish("probes", [ProbeResult("a", "http://127.0.0.1:9", "refused")])
    assert [c.part for c in heard][:1] == ["probes"]
    assert "findings" in [c.part for c in heard]
    assert any(f.code == "port_unreachable" for f in stack.snapshot.findings)
    with pytest.raises(ValueError):
        stack.publish("nonsense", 1)
    json.dumps(stack.snapshot.to_json())  # what a face would serialise
