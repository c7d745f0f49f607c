"""The probes panel in the real dashboard (Pilot), the engine (`Stack`) probing local
simulator processes."""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import subprocess
from pathlib import Path

import pytest
from rich.text import Text
from textual.app import App
from textual.widgets import DataTable

from genai_tui.config import Config, ProbeConfig, ServiceConfig, TokenLocation, TokensConfig
from genai_tui.engine.live import Stack
from genai_tui.ui.app import GenaiTui
from genai_tui.ui.probes import ProbesPanel, sparkline
from tests.conftest import free_port, make_hash
from tests.ui.helpers import plain_frames, record_terminal
from tests.ui.helpers import wait_until as until
from tests.unit.test_probes import LocalSim, start_local_sim


def probe_app(config: Config) -> tuple[GenaiTui, list[str]]:
    """The dashboard with only the engine's probe rounds live, and the parts it published
    (in order)."""
    stack = Stack(config, parts={"probes"})
    seen: list[str] = []
    stack.subscribe(lambda change: seen.append(change.part))
    return GenaiTui(config, stack=stack), seen


#: wide and tall enough for the full layout (the compact one hides the probes panel)
SIZE = (150, 40)


@pytest.fixture
def sims(tmp_path: Path):
    made: list[LocalSim] = []

    def start(**kw) -> LocalSim:
        s = start_local_sim(tmp_path, **kw)
        made.append(s)
        return s

    yield start
    for s in made:
        s.proc.terminate()
        try:
            s.proc.wait(5)
        except subprocess.TimeoutExpired:
            s.proc.kill()


def token_config(tmp_path: Path, hash_: str) -> TokensConfig:
    f = tmp_path / "qwen-api-user.token"
    f.write_text(hash_ + "\n")
    return TokensConfig(canonical="secrets",
                        locations=(TokenLocation("secrets", f, "hash_file"),))




def cell(table: DataTable, row: str, col: str) -> Text:
    value = table.get_cell(row, col)
    return value if isinstance(value, Text) else Text(str(value))


def screen_text(app: App) -> str:
    svg = app.export_screenshot()
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


def assert_no_secret(secret: str, *blobs: str) -> None:
    for blob in blobs:
        for i in range(len(secret) - 8 + 1):
            assert secret[i:i + 8] not in blob, "a piece of the token hash leaked"


async def test_panel_shows_outcomes_verdicts_and_never_the_token(tmp_path, sims, caplog):
    caplog.set_level(logging.DEBUG)
    h = make_hash()
    good = sims(hash_=h)
    wrong = sims(hash_=make_hash())
    open_ = sims(scenario="login_missing", hash_=h)
    orch = sims(kind="orchestrator")
    dead = free_port()
    services = (
        ServiceConfig("comfyui-qwen", good.url, "comfyui", auth=True),
        ServiceConfig("flux-1-dev", f"http://user:{h}@127.0.0.1:{wrong.port}/?token={h}",
                      "comfyui", auth=True),
        ServiceConfig("comfy-open", open_.url, "comfyui", auth=True),
        ServiceConfig("orchestrator", orch.url, "orchestrator"),
        ServiceConfig("gone", f"http://127.0.0.1:{dead}", "comfyui", auth=True),
    )
    config = Config(services=services, tokens=token_config(tmp_path, h),
                    probes=ProbeConfig(interval=60, connect_timeout=0.5, read_timeout=1.0))
    app, seen = probe_app(config)
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(ProbesPanel)
        table = panel.query_one(DataTable)
        assert table.row_count == 5  # rows exist before the first answer
        await until(pilot, lambda: panel.rounds >= 1)
        # the verdict an admin acts on first, then the URL really requested, whose answer
        # is the HTTP column (for a ComfyUI: without the token, then with it)
        expect = {
            "comfyui-qwen": ("enforced", "/prompt", "401→200"),
            "flux-1-dev": ("rejected", "/prompt", "401→401"),
            "comfy-open": ("open", "/prompt", "200"),
            "orchestrator": ("up", "/health", "200"),
            "gone": ("down", "/prompt", "–"),
        }
        urls = {s.name: s.url for s in services}
        for name, (verdict, path, status) in expect.items():
            assert cell(table, name, "verdict").plain == verdict, name
            base = urls[name] if name != "flux-1-dev" else f"http://127.0.0.1:{wrong.port}"
            assert cell(table, name, "probed").plain == base + path, name
            assert cell(table, name, "status").plain == status, name
        for name in ("flux-1-dev", "comfy-open"):  # the alarming verdicts stand out
            style = str(cell(table, name, "verdict").style)
            assert "on bright_red" in style and "bold" in style
        assert "on bright_red" not in str(cell(table, "comfyui-qwen", "verdict").style)
        assert "red" in str(cell(table, "gone", "verdict").style)
        # how it failed is in the info column; one latency format ("12 ms", whole ms)
        assert "refused" in cell(table, "gone", "info").plain
        for name in expect:
            assert re.fullmatch(r"(<1|\d+) ms", cell(table, name, "latency").plain), name
        assert "queue 0" in cell(table, "comfyui-qwen", "info").plain

        # `p` runs another round at once (the interval is 60 s); rows are updated in place
        await pilot.press("p")
        await until(pilot, lambda: panel.rounds >= 2)
        assert table.row_count == 5
        assert len(cell(table, "comfyui-qwen", "trend").plain) == 2
        assert cell(table, "gone", "trend").plain == "××"

        assert seen.count("probes") == 2  # one publication per round
        assert app.stack.rounds("probes") == 2
        assert [r.service for r in app.stack.snapshot.probes] == [s.name for s in services]

        shown = screen_text(app)
        assert "enforced" in shown and "rejected" in shown and "open" in shown
        cells = " ".join(cell(table, s.name, c).plain for s in services
                         for c in ("service", "verdict", "probed", "status", "latency",
                                   "trend", "info"))
        dump = json.dumps(app.stack.snapshot.to_json())
        assert_no_secret(h, shown, cells, dump, caplog.text, str(panel.border_subtitle),
                         repr(app.stack.snapshot.probes))


async def test_rounds_never_overlap_and_p_during_a_round_queues_one_more():
    """A slow service keeps a round in flight; pressing `p` three times meanwhile queues a
    single extra round, and no two requests to the service are ever open together."""
    active = 0
    peak = 0
    connections = 0

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal active, peak, connections
        connections += 1
        active += 1
        peak = max(peak, active)
        try:
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(1.0)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            await writer.drain()
        finally:
            active -= 1
            writer.close()

    server = await asyncio.start_server(slow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = Config(services=(ServiceConfig("slow", f"http://127.0.0.1:{port}", "http"),),
                    probes=ProbeConfig(interval=60, connect_timeout=1.0, read_timeout=3.0))
    app, _seen = probe_app(config)
    try:
        async with app.run_test(size=SIZE) as pilot:
            panel = app.query_one(ProbesPanel)
            await until(pilot, lambda: connections == 1)
            for _ in range(3):
                await pilot.press("p")
            assert "probing" in str(panel.border_subtitle)
            await until(pilot, lambda: panel.rounds >= 2)
            await pilot.pause(0.6)
            assert panel.rounds == 2 and connections == 2
            assert app.stack.rounds("probes") == 2
            assert peak == 1
            assert "every 60s" in str(panel.border_subtitle)
    finally:
        server.close()


def refused_every_fifth_second() -> Config:
    """One service on a port nobody listens on, probed every 0.2 s."""
    return Config(services=(ServiceConfig("x", f"http://127.0.0.1:{free_port()}", "http"),),
                  probes=ProbeConfig(interval=0.2, connect_timeout=0.5, read_timeout=0.5))


async def test_interval_chains_rounds():
    app, _seen = probe_app(refused_every_fifth_second())
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(ProbesPanel)
        await until(pilot, lambda: panel.rounds >= 3)
        assert app.stack.rounds("probes") >= 3
        table = panel.query_one(DataTable)
        assert cell(table, "x", "verdict").plain == "down"
        prober = app.stack.prober
        assert prober is not None and not prober.closed
    # unmount closed the engine's client: nothing left running
    assert prober.closed and app.stack.prober is None


async def test_a_round_repaints_the_changed_rows_not_the_panel():
    """Each round's new sparkline point repaints its row; the panel's borders, its header
    and the pace in its bottom border stay as they were (they went to the terminal again
    every round: a whole repaint, over SSH, every few seconds)."""
    app, _seen = probe_app(refused_every_fifth_second())
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(ProbesPanel)
        await until(pilot, lambda: panel.rounds >= 2)
        await pilot.pause(0.1)
        frames = record_terminal(app)
        start = panel.rounds
        await until(pilot, lambda: panel.rounds >= start + 3)
        await pilot.pause(0.1)
        written = plain_frames(frames)
        assert "×" in written  # the row with its longer trend went out
        assert "probe now" not in written and "Probes" not in written
        assert "verdict" not in written  # the header row
        assert "every 0.2s · p: probe now" in screen_text(app)


def test_sparkline_scales_and_marks_failures():
    assert sparkline([]).plain == ""
    assert sparkline([1.0, 2.0, 4.0, 8.0]).plain == "▂▃▅█"
    assert sparkline([5.0, None, 5.0]).plain == "█×█"
    assert len(sparkline([1.0] * 50).plain) == 10
