"""The fleet screen: one row per host in words, Enter opens a reachable host's dashboard
(its own panels, the host's data), Esc comes back. Hosts are fed the frames a real
`genai-tui stream` sends (tests/integration/test_fleet_ssh.py runs them over a real sshd)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from genai_tui import config as configmod
from genai_tui.config import HostEntry
from genai_tui.engine import wire
from genai_tui.engine.fleet import Fleet
from genai_tui.model import (
    ContainerInfo,
    Finding,
    GpuInfo,
    GpuReport,
    JobInfo,
    JobsReport,
    ServiceJobs,
    Severity,
)
from genai_tui.ui.fleet import BACK, OPEN, FleetApp, _remote_app_class
from tests.ui.helpers import screen_text, stack_config, wait_until


def said(app, words: str) -> bool:
    return any(words in n.message for n in app._notifications)


def feed(host, cfg, *, containers, findings=(), gpu=None, jobs=None, version=None,
         readonly=False, age=0.0) -> None:
    """What a host's stream says: its hello, then a full frame."""
    pipe = SimpleNamespace(stdin=None)
    hello = {"type": "hello", "protocol": wire.PROTOCOL, "readonly": readonly,
             "version": version or __import__("genai_tui").__version__,
             "config": wire.public_config(cfg)}
    assert host._apply(wire.loads(wire.dumps(hello)), pipe) is None
    parts = {"containers": wire.encode(list(containers)),
             "findings": wire.encode(list(findings)), "gpu": wire.encode(gpu),
             "jobs": wire.encode(jobs)}
    assert host._apply(wire.loads(wire.dumps({"type": "full", "parts": parts})), pipe) is None
    host.last_at = time.monotonic() - age


def fleet_of_four() -> Fleet:
    local = configmod.load(None)
    fleet = Fleet(local, [HostEntry("gpu-a", "admin@gpu-a"), HostEntry("gpu-b", "gpu-b"),
                          HostEntry("gpu-c", "gpu-c"), HostEntry("old-box", "old-box")],
                  local=False)
    a, b, c, old = fleet.hosts
    cfg = stack_config("comfyui-qwen", "flux", names=("comfyui-qwen", "flux-1-dev"))
    running = [ContainerInfo("comfyui-qwen", "comfyui-qwen", state="running"),
               ContainerInfo("flux-1-dev", "flux", state="running")]
    feed(a, cfg, containers=running,
         gpu=GpuReport([GpuInfo(0, "H200", memory_used_mb=40_960, memory_total_mb=143_360)]),
         jobs=JobsReport([ServiceJobs("comfyui-qwen", running=JobInfo("p1", state="running"),
                                      pending=[JobInfo("p2"), JobInfo("p3")])]))
    feed(b, cfg, containers=[running[0], ContainerInfo("flux-1-dev", "flux", state="exited",
                                                       exit_code=137)],
         findings=[Finding("exited", Severity.CRITICAL, "flux-1-dev",
                           "flux-1-dev exited with code 137 (killed)"),
                   Finding("token_drift", Severity.WARNING, None, "2 values")],
         age=200.0)
    c.error = ("host key unknown for gpu-c: refused (check its fingerprint, then accept it "
               "once with `ssh gpu-c` or add it to known_hosts)")
    feed(old, cfg, containers=running, version="0.0.9")
    return fleet


async def test_each_host_in_words_and_enter_opens_only_a_reachable_one():
    fleet = fleet_of_four()
    app = FleetApp(fleet)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        text = screen_text(app)
        assert "gpu-a" in text and "live" in text and "2/2 up" in text
        assert "40/140" in text and "1/2" in text
        assert "stale 3 min" in text and "flux-1-dev exited with code 137" in text
        assert "(+1)" in text
        assert "unreachable" in text and "host key unknown for gpu-c" in text
        assert "0.0.9" in text
        await pilot.press("down", "down")  # gpu-c: no snapshot, Enter says why
        await pilot.press("enter")
        await wait_until(pilot, lambda: said(app, "gpu-c: no snapshot yet (host key unknown"))
        assert app.is_running
        await pilot.press("up", "up", "enter")
    assert app.return_value == OPEN + "gpu-a"


async def test_the_detail_line_says_what_the_row_cuts():
    fleet = fleet_of_four()
    app = FleetApp(fleet)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("down", "down", "down")
        await wait_until(pilot, lambda: "there, " in screen_text(app))
        text = screen_text(app)
        assert "genai-tui 0.0.9 there" in text  # a version mismatch is reported
        await pilot.press("up")
        await wait_until(pilot, lambda: "accept it" in screen_text(app))


async def test_a_hosts_dashboard_draws_its_data_and_esc_goes_back():
    fleet = fleet_of_four()
    from genai_tui.engine.fleet import RemoteStack

    host = fleet.get("gpu-b")
    app = _remote_app_class()(RemoteStack(host))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: "exited" in screen_text(app))
        text = screen_text(app)
        assert "gpu-b" in text and "STALE" in text
        assert "flux-1-dev exited with code 137" in text
        await pilot.press("escape")
    assert app.return_value == BACK


async def test_readonly_refuses_a_remote_restart_before_anything_is_sent():
    fleet = fleet_of_four()
    from genai_tui.engine.fleet import RemoteStack

    host = fleet.get("gpu-a")
    sent = []
    host.run = lambda args, timeout=0: sent.append(args)  # would reach the host
    app = _remote_app_class()(RemoteStack(host, readonly=True), readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: "comfyui-qwen" in screen_text(app))
        await pilot.press("r")
        await wait_until(pilot, lambda: said(app, "read-only mode: restart is disabled"))
        await pilot.press("u")
        await pilot.pause(0.2)
    assert sent == []


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_snapshot_fleet(snap_compare, size):
    # the stale host selected: its detail line says "3 min ago", which a slow run keeps
    app = FleetApp(fleet_of_four(), select="gpu-b")
    assert snap_compare(app, terminal_size=size)
