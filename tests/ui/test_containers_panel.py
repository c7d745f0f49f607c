"""The containers panel and the dashboard's keys, through Textual's Pilot, against real
containers (state changes arrive from the Docker events stream)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from genai_tui.model import ContainerInfo, DockerStatus, PortBinding
from genai_tui.ui.app import HELP_WORDS, GenaiTui
from genai_tui.ui.screens.confirm import ConfirmScreen
from genai_tui.ui.screens.help import HelpScreen
from tests.conftest import host_port, wait_port
from tests.ui.helpers import screen_text, stack_config, until_derived, wait_until


def cell(app, service: str, column: str) -> str:
    table = app.query_one("#containers-table")
    return str(table.get_cell(service, column))


async def test_rows_follow_real_container_state(sim_container):
    c = sim_container()
    wait_port(host_port(c))
    cfg = stack_config(c.name, "gt-never-created", names=("qwen", "ghost"))
    app = GenaiTui(cfg)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: cell(app, "qwen", "state") == "running")
        assert cell(app, "ghost", "state") == "missing"
        assert cell(app, "qwen", "ports") == f"127.0.0.1:{host_port(c)}->8188"
        await asyncio.to_thread(c.kill)
        await wait_until(pilot, lambda: cell(app, "qwen", "state") == "exited")
        assert cell(app, "qwen", "exit") == "137"
        await asyncio.to_thread(c.start)
        await wait_until(pilot, lambda: cell(app, "qwen", "state") == "running")
        assert "running" in screen_text(app)


async def test_r_asks_then_restarts_the_selected_container(sim_container):
    c = sim_container()
    wait_port(host_port(c))
    c.reload()
    started = c.attrs["State"]["StartedAt"]
    app = GenaiTui(stack_config(c.name, names=("qwen",)))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: cell(app, "qwen", "state") == "running")
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5)
        assert c.name in screen_text(app)
        await pilot.press("n")  # cancel: nothing happens
        await pilot.pause(0.2)
        c.reload()
        assert c.attrs["State"]["StartedAt"] == started
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5)
        await pilot.press("y")
        await wait_until(pilot, lambda: "restarting" in cell(app, "qwen", "state"), 5)

        def restarted() -> bool:
            c.reload()
            return c.attrs["State"]["StartedAt"] != started

        await wait_until(pilot, restarted, 30)
        await wait_until(pilot, lambda: cell(app, "qwen", "state") == "running", 30)


async def test_R_restarts_all_after_confirmation(sim_container):
    a, b = sim_container(), sim_container()
    for c in (a, b):
        wait_port(host_port(c))
        c.reload()
    before = {c.name: c.attrs["State"]["StartedAt"] for c in (a, b)}
    app = GenaiTui(stack_config(a.name, b.name, names=("one", "two")))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: cell(app, "two", "state") == "running")
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5)
        text = screen_text(app)
        assert "one" in text and "two" in text
        await pilot.press("y")

        def all_restarted() -> bool:
            for c in (a, b):
                c.reload()
                if c.attrs["State"]["StartedAt"] == before[c.name]:
                    return False
            return True

        await wait_until(pilot, all_restarted, 40)


async def test_readonly_disables_restart_with_a_visible_notice(sim_container):
    c = sim_container()
    app = GenaiTui(stack_config(c.name, names=("qwen",)), readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: cell(app, "qwen", "state") == "running")
        assert "READ-ONLY" in screen_text(app)
        for key in ("r", "R"):
            await pilot.press(key)
            await pilot.pause(0.2)
            assert not isinstance(app.screen, ConfirmScreen)
        # the toast the admin sees (toasts are not part of Pilot's screenshot export)
        shown = [n.message for n in app._notifications]
        assert shown.count("read-only mode: restart is disabled") == 2


async def test_unreachable_engine_shows_reason_and_no_crash():
    from dataclasses import replace

    cfg = stack_config("x", names=("qwen",))
    cfg = replace(cfg, docker=replace(cfg.docker, host="unix:///nonexistent/docker.sock"))
    app = GenaiTui(cfg)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: "Docker engine unreachable" in screen_text(app))
        assert "No such file or directory" in screen_text(app)
        await pilot.press("r")  # nothing to restart; no crash
        await pilot.pause(0.2)


async def test_help_lists_every_key_from_the_bindings():
    app = GenaiTui(stack_config("x", names=("qwen",)), start_sources=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause(0.1)
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        for bid in ("quit", "restart", "restart_all", "logs", "logs_all"):
            words = HELP_WORDS[f"genai.{bid}"]
            assert words in text, words
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("question_mark")  # the same screen again, reused
        await pilot.pause(0.1)
        assert isinstance(app.screen, HelpScreen)
        assert HELP_WORDS["genai.restart_all"] in screen_text(app)
        await pilot.press("question_mark")
        await pilot.pause(0.1)
        assert not isinstance(app.screen, HelpScreen)


async def test_q_quits_promptly_with_sources_running(sim_container):
    c = sim_container()
    app = GenaiTui(stack_config(c.name, names=("qwen",)))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: cell(app, "qwen", "state") == "running")
        t0 = time.monotonic()
        await pilot.press("q")
    assert time.monotonic() - t0 < 3
    import threading

    assert not [t for t in threading.enumerate() if t.name.startswith("docker-")]


def fixed_infos(now: datetime) -> list[ContainerInfo]:
    return [
        ContainerInfo("comfyui-qwen", "comfyui-qwen", id="a" * 64, state="running",
                      health="healthy", started_at=now - timedelta(minutes=42),
                      restart_count=0, ports=[PortBinding(8188, "tcp", "0.0.0.0", 8188)],
                      image="python:3.11"),
        ContainerInfo("flux-1-dev", "coursia-flux-1-dev", id="b" * 64, state="running",
                      health="unhealthy", failing_streak=7,
                      started_at=now - timedelta(hours=3, minutes=5), restart_count=2,
                      ports=[PortBinding(8188, "tcp", "0.0.0.0", 8189)], image="python:3.11"),
        ContainerInfo("stable-diffusion-35", "coursia-sd35", id="c" * 64, state="exited",
                      exit_code=137, oom_killed=True, restart_count=3, image="python:3.11"),
        ContainerInfo("orchestrator", "coursia-orchestrator", state="missing"),
    ]


def test_snapshot_containers_panel(snap_compare):
    cfg = stack_config("comfyui-qwen", "coursia-flux-1-dev", "coursia-sd35",
                       "coursia-orchestrator",
                       names=("comfyui-qwen", "flux-1-dev", "stable-diffusion-35",
                              "orchestrator"))
    app = GenaiTui(cfg, start_sources=False)

    async def feed(pilot) -> None:
        # what the Docker monitor hands the engine; the panel renders what it publishes
        before = app.stack.diagnosed
        app.stack.apply_containers(DockerStatus(True), fixed_infos(datetime.now(UTC)))
        await until_derived(pilot, before)

    assert snap_compare(app, terminal_size=(120, 30), run_before=feed)
