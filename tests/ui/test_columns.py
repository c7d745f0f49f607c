"""The panels never mislead, at 80×24, 120×40 and 200×50: columns share the width by
priority (numbers and verdicts are never cut, names give way and end in …), units are
spelled out, probes say the verdict and the URL really requested, the tokens verdict is
in sight, and the uptime ticks between snapshots."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from rich.color import ColorSystem
from textual.color import Color

from genai_tui.model import (
    ContainerInfo,
    GpuInfo,
    GpuReport,
    PortBinding,
    ServerTokenStatus,
    TokenLocationStatus,
    TokensReport,
)
from genai_tui.ui.containers import ContainersPanel
from genai_tui.ui.gpu import GpuCard, GpuPanel
from genai_tui.ui.probes import ProbesPanel
from genai_tui.ui.tokens import TokensPanel
from tests.ui.helpers import screen_text, wait_until
from tests.ui.test_dashboard import deliver, settle, snapshot_app

SIZES = [(80, 24), (120, 40), (200, 50)]
#: a real-looking 40-character container name (compose project + service + replica)
NAME40 = "coursia-comfyui-workflows-gpu1-productio"
FP_A, FP_B = "fp:3f9c0a1b7e", "fp:77d01c9e42"


def compact(size: tuple[int, int]) -> bool:
    return size[0] < 110 or size[1] < 32


def rows(app, widget) -> list[str]:
    """What the terminal shows of a widget, one string per row (the part of it on
    screen: a panel in the side column may reach below its bottom)."""
    strips = app.screen._compositor.render_strips()
    r = widget.region
    return [strips[y].crop(r.x, r.x + r.width).text
            for y in range(r.y, min(r.y + r.height, len(strips)))]


def flat(lines: list[str]) -> str:
    """Panel rows as one text, borders dropped and wrapped lines joined."""
    return " ".join(" ".join(ln.strip("│ ").split()) for ln in lines)


def containers_with(app, **by_service) -> list[ContainerInfo]:
    """The fed containers, with some fields of some services changed."""
    return [replace(c, **by_service.get(c.service, {})) for c in app.stack.snapshot.containers]


async def show(pilot, view: str | None, size: tuple[int, int]) -> None:
    """In the compact layout, bring a lower panel on screen (keys 1-5)."""
    if view is not None and compact(size):
        await pilot.press(view)
    await pilot.pause(0.1)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_ports_and_vram_are_whole_at_every_size(size):
    """`127.0.0.1:18300->818` was really 8188, and `VRAM 18.1/24.0 G` was GiB free:
    every port mapping is whole, and VRAM reads `VRAM used x/y GiB` in every panel."""
    app = snapshot_app()
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        port = [PortBinding(8188, "tcp", "127.0.0.1", 18300)]
        deliver(app, "containers", containers_with(app, **{"comfyui-qwen": {"ports": port}}))
        await show(pilot, "4", size)  # the GPU panel
        text = screen_text(app)
        assert "127.0.0.1:18300->8188" in text, text
        assert "127.0.0.1:8189->8188" in text
        assert "VRAM used 15.4/16.0 GiB" in text and "VRAM used 1.2/24.0 GiB" in text, text
        # no number is cut in the containers or probes tables (a part that does not fit
        # is left out whole: `queue 2 …`, never `21.…`)
        for widget in (app.query_one(ContainersPanel), app.query_one(ProbesPanel)):
            if widget.display:
                for line in rows(app, widget):
                    assert not re.search(r"\d…", line), line


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_long_container_name_is_whole_when_there_is_room(size):
    """Container names were cut at 22 characters even at 200 columns. Now a name is cut
    only when the panel must, with …, and the selected row's cut cells are in the
    panel's bottom border in full."""
    assert len(NAME40) == 40
    app = snapshot_app()
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        deliver(app, "containers", containers_with(app, **{"flux-1-dev": {"container": NAME40}}))
        await pilot.pause(0.1)
        panel = app.query_one(ContainersPanel)
        text = "\n".join(rows(app, panel))
        if size[0] >= 200:
            assert NAME40 in text, text
            assert panel.border_subtitle == ""
        elif "container" in [str(k.value) for k in
                             app.query_one("#containers-table").columns]:
            assert NAME40 not in text and NAME40[:10] in text and "…" in text, text
            await pilot.press("down")  # select flux-1-dev
            await pilot.pause(0.1)
            assert NAME40 in str(panel.border_subtitle)
        # the service names and ports are whole at every size
        for name in ("comfyui-qwen", "flux-1-dev", "orchestrator"):
            assert name in text
        assert "127.0.0.1:8193->8090" in text


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_token_location_names_are_whole(size):
    """Location names were cut at 10 (`docker-sec`)."""
    app = snapshot_app()
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        report = TokensReport(
            locations=[
                TokenLocationStatus("docker-secrets", "/run/secrets/comfyui", "hash_file",
                                    state="ok", fingerprint=FP_A, canonical=True),
                TokenLocationStatus("login-password", "login/PASSWORD", "password_file",
                                    state="mismatch", fingerprint=FP_B),
            ],
            canonical="docker-secrets", consistent=False,
            fingerprints={FP_A: ["docker-secrets"], FP_B: ["login-password"]})
        deliver(app, "tokens", report)
        await show(pilot, "3", size)
        text = "\n".join(rows(app, app.query_one(TokensPanel)))
        assert "docker-secrets" in text and "login-password" in text, text
        assert FP_A in text and FP_B in text


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_probe_rows_say_the_verdict_and_the_url_requested(size):
    """`outcome ok` beside `auth rejected` read as fine. Each row now starts with the
    verdict, then the URL probed (a curl of it gives the HTTP column), in one latency
    format."""
    app = snapshot_app()
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await show(pilot, "2", size)
        lines = rows(app, app.query_one(ProbesPanel))
        expect = {
            "comfyui-qwen": ("rejected", "http://127.0.0.1:8188/prompt", "401→401", "8 ms"),
            "flux-1-dev": ("enforced", "http://127.0.0.1:8189/prompt", "401→200", "9 ms"),
            "stable-diffusion": ("down", "http://127.0.0.1:8190/health", "–", "1 ms"),
            "orchestrator": ("up", "http://127.0.0.1:8193/health", "200", "4 ms"),
        }
        for service, words in expect.items():
            line = next(ln for ln in lines if service in ln)
            at = [line.index(w) for w in words]
            assert at == sorted(at), (line, words)  # in this order
        assert not any(re.search(r"\d\.\d ms", ln) for ln in lines)
        assert not any(" ok " in ln for ln in lines)


async def test_focus_border_is_not_alarm_red_on_16_colours():
    """On TERM=xterm (16 colours) the focus border's orange ($accent) became bright red,
    the colour of a GPU or host warning border. What such a terminal receives is the
    colour downgraded to the 16-colour palette."""
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        focused = app.query_one(ContainersPanel)
        assert focused.has_focus_within

        def border_colour(widget) -> int:
            strip = app.screen._compositor.render_strips()[widget.region.y]
            corner = next(iter(strip.crop(widget.region.x, widget.region.x + 1)))
            assert corner.text == "╭"
            return corner.style.color.downgrade(ColorSystem.STANDARD).number

        red = (1, 9)
        assert border_colour(focused) not in red
        # the warning border (the GPU above its threshold) is red there, and differs
        gpu = app.query_one(GpuPanel)
        assert gpu.has_class("-warn")
        assert border_colour(gpu) in red
        error = Color.parse(app.get_css_variables()["error"])
        assert error.rich_color.downgrade(ColorSystem.STANDARD).number in red


def servers_report(servers: list[ServerTokenStatus], *, consistent: bool = False,
                   locations: list[TokenLocationStatus] | None = None,
                   fingerprints: dict[str, list[str]] | None = None) -> TokensReport:
    locations = locations or [
        TokenLocationStatus("secrets", ".secrets/qwen-api-user.token", "hash_file",
                            state="ok", fingerprint=FP_A, canonical=True),
        TokenLocationStatus("password", "workspace/login/PASSWORD", "password_file",
                            state="ok" if consistent else "mismatch",
                            fingerprint=FP_A if consistent else FP_B),
    ]
    fingerprints = fingerprints or ({FP_A: ["secrets", "password"]} if consistent
                                    else {FP_A: ["secrets"], FP_B: ["password"]})
    return TokensReport(locations=locations, canonical="secrets", consistent=consistent,
                        fingerprints=fingerprints, servers=servers)


async def test_tokens_verdict_and_servers_are_in_sight_at_120x40():
    """The verdict and the per-server lines were below the fold of the side column."""
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        deliver(app, "tokens", servers_report([
            ServerTokenStatus("comfyui-qwen", False, "probe"),
            ServerTokenStatus("flux-1-dev", True, "probe")]))
        await pilot.pause(0.1)
        panel = app.query_one(TokensPanel)
        side = app.query_one("#side")
        visible = side.region
        text = "\n".join(rows(app, side))
        assert "✗ NOT consistent · 2 values · u: unify" in text, text
        assert "✗ comfyui-qwen: old hash loaded: restart" in text
        assert "✓ flux-1-dev: uses the hash on disk" in text
        summary = panel.query_one("#tokens-summary")
        assert summary.region.y + summary.region.height <= visible.y + visible.height


async def test_a_removed_container_never_uses_the_hash_on_disk():
    """An old log line said the server started with the hash on disk; its container is
    gone since: the panel says so instead of `✓ uses the hash on disk`."""
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        gone = containers_with(app, **{"comfyui-qwen": {"state": "missing", "id": None,
                                                         "started_at": None}})
        deliver(app, "containers", gone)
        deliver(app, "tokens", servers_report(
            [ServerTokenStatus("comfyui-qwen", True, "log", log_fingerprint=FP_A),
             ServerTokenStatus("flux-1-dev", True, "probe")], consistent=True))
        await pilot.pause(0.1)
        text = "\n".join(rows(app, app.query_one(TokensPanel)))
        assert "uses the hash on disk" in text  # flux-1-dev, running
        assert "comfyui-qwen: uses the hash on disk" not in text, text
        assert "– comfyui-qwen: container removed" in text, text


async def test_a_container_removed_after_the_token_round_shows_at_once():
    """The container goes away after the last token round: the tokens panel says so with
    the container event, not at the next token round."""
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        deliver(app, "tokens", servers_report(
            [ServerTokenStatus("comfyui-qwen", True, "log", log_fingerprint=FP_A),
             ServerTokenStatus("flux-1-dev", True, "probe")], consistent=True))
        await pilot.pause(0.1)
        deliver(app, "containers", containers_with(
            app, **{"comfyui-qwen": {"state": "missing", "id": None, "started_at": None}}))
        await pilot.pause(0.1)
        text = "\n".join(rows(app, app.query_one(TokensPanel)))
        assert "– comfyui-qwen: container removed" in text, text


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_a_raw_token_is_named_by_the_hash_it_verifies(size):
    """A consistent stack showed `✓ consistent · raw→fp:…`, which reads like a second
    value: the verdict names the canonical hash, the raw copy says what it verifies
    (`raw → verifies fp:…`; in the 48-wide side column `raw ok` · `verifies fp:…`)."""
    raw = f"raw→{FP_A}"
    app = snapshot_app()
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        deliver(app, "tokens", servers_report([], consistent=True, locations=[
            TokenLocationStatus("env-raw", ".env", "raw_env", key="COMFYUI_RAW",
                                state="ok", fingerprint=raw),
            TokenLocationStatus("secrets", ".secrets/t", "hash_file", state="ok",
                                fingerprint=FP_A, canonical=True),
        ], fingerprints={raw: ["env-raw"], FP_A: ["secrets"]}))
        await show(pilot, "3", size)
        lines = rows(app, app.query_one(TokensPanel))
        text = "\n".join(lines)
        assert f"✓ consistent · {FP_A}" in text, text
        assert "consistent · raw" not in text and raw not in text
        row = " ".join(next(ln for ln in lines if "env-raw" in ln).split())
        assert f"raw → verifies {FP_A}" in row or f"raw ok verifies {FP_A}" in row, row


async def test_the_panel_counts_token_values_like_the_finding():
    """A raw copy that verifies no hash: the drift finding (and `check`, which prints
    it) counts 2 values; the panel said `1 hash value, 1 raw token`."""
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        deliver(app, "tokens", servers_report([], locations=[
            TokenLocationStatus("secrets", ".secrets/t", "hash_file", state="ok",
                                fingerprint=FP_A, canonical=True),
            TokenLocationStatus("env-raw", ".env", "raw_env", key="COMFYUI_RAW",
                                state="raw_mismatch", fingerprint="raw→none"),
        ], fingerprints={FP_A: ["secrets"], "raw→none": ["env-raw"]}))
        await wait_until(pilot, lambda: any(f.code == "token_drift"
                                            for f in app.stack.snapshot.findings))
        drift = next(f for f in app.stack.snapshot.findings if f.code == "token_drift")
        counted = re.search(r"\((\d+) values", drift.message)
        assert counted is not None, drift.message
        text = "\n".join(rows(app, app.query_one(TokensPanel)))
        shown = re.search(r"NOT consistent · (\d+) values?", text)
        assert shown is not None, text
        assert shown.group(1) == counted.group(1)


async def test_uptime_ticks_between_snapshots():
    """The uptime changed only when a Docker event brought a new snapshot (or every
    10 s); it now ticks once a second, touching only the uptime cells."""
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        start = datetime.now(UTC) - timedelta(seconds=3)
        deliver(app, "containers", containers_with(app, orchestrator={"started_at": start}))
        await pilot.pause(0.1)
        published: list[str] = []
        app.stack.subscribe(lambda change: published.append(change.part))
        table = app.query_one("#containers-table")
        first = str(table.get_cell("orchestrator", "uptime"))
        assert re.fullmatch(r"\d+s", first), first
        await wait_until(pilot, lambda: str(table.get_cell("orchestrator", "uptime")) != first,
                         timeout=4.0)
        assert "containers" not in published  # no new snapshot was needed
        # the other cells were not rewritten: a stopped container shows no uptime
        assert str(table.get_cell("stable-diffusion-35", "uptime")) == "-"


async def test_a_stop_under_way_says_stopping_and_counts():
    """`docker stop` on a process that ignores SIGTERM waits the whole grace period: the
    row said `running` all that time; it says `stopping · N s`, counting each second."""
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        since = datetime.now(UTC) - timedelta(seconds=4)
        deliver(app, "containers", containers_with(
            app, orchestrator={"started_at": since - timedelta(minutes=5),
                               "stopping_since": since}))
        await pilot.pause(0.1)
        table = app.query_one("#containers-table")
        first = str(table.get_cell("orchestrator", "state"))
        assert re.fullmatch(r"stopping · [45] s", first), first
        await wait_until(pilot, lambda: str(table.get_cell("orchestrator", "state")) != first,
                         timeout=4.0)
        assert str(table.get_cell("orchestrator", "state")).startswith("stopping · ")


async def test_one_gpu_reported_by_two_comfyuis_shows_once_saying_so():
    """Without NVML each ComfyUI's `/system_stats` stands in: one GPU showed twice, and
    nothing said those rows came from ComfyUI and not NVML."""
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        report = GpuReport(gpus=[
            GpuInfo(0, "RTX 3090", memory_used_mb=18_535.0, memory_total_mb=24_576.0,
                    source="system_stats:comfyui-qwen"),
            GpuInfo(0, "RTX 3090", memory_used_mb=18_000.0, memory_total_mb=24_576.0,
                    source="system_stats:flux-1-dev"),
        ], error="NVML unavailable: LibraryNotFound")
        deliver(app, "gpu", report)
        await pilot.pause(0.2)
        gpu = app.query_one(GpuPanel)
        assert len(gpu.query(GpuCard)) == 1
        text = flat(rows(app, gpu))
        assert "as ComfyUI reports: comfyui-qwen, flux-1-dev" in text, text
        assert "VRAM used 18.1/24.0 GiB" in text  # the highest either saw
        assert "NVML unavailable: LibraryNotFound" in text


def test_snapshot_dashboard_200x50(snap_compare):
    assert snap_compare(snapshot_app(), terminal_size=(200, 50), run_before=settle)


def test_snapshot_compact_probes_view_80x24(snap_compare):
    async def run(pilot) -> None:
        await settle(pilot)
        await pilot.press("2")
        await pilot.pause(0.1)

    assert snap_compare(snapshot_app(), terminal_size=(80, 24), run_before=run)



async def test_a_probe_refused_while_its_container_starts_reads_starting():
    """`down` is for a service that should answer; one whose container is still in its
    healthcheck's start period is `starting`."""
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        deliver(app, "containers", containers_with(app, **{"stable-diffusion-35": {
            "state": "running", "health": "starting", "exit_code": None,
            "oom_killed": False, "started_at": datetime.now(UTC)}}))
        deliver(app, "probes", list(app.stack.snapshot.probes))  # the next round
        await pilot.pause(0.1)
        line = next(ln for ln in rows(app, app.query_one(ProbesPanel))
                    if "stable-diffusion-35" in ln)
        assert " starting " in line and " down " not in line, line


async def test_a_container_that_starts_reads_starting_before_the_next_round():
    """The start event alone re-words the row (no wait for the next probe round), and
    adds no point to the trend."""
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        panel = app.query_one(ProbesPanel)
        trend = len(panel.history["stable-diffusion-35"])
        deliver(app, "containers", containers_with(app, **{"stable-diffusion-35": {
            "state": "running", "health": "starting", "exit_code": None,
            "oom_killed": False, "started_at": datetime.now(UTC)}}))
        await pilot.pause(0.1)
        line = next(ln for ln in rows(app, panel) if "stable-diffusion-35" in ln)
        assert " starting " in line and " down " not in line, line
        assert len(panel.history["stable-diffusion-35"]) == trend


async def test_a_cut_probe_detail_is_reachable_in_full():
    """At 120 columns the info column is cut (whole parts only); the selected row's cut
    cells are in the panel's bottom border when the table has the focus."""
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        panel = app.query_one(ProbesPanel)
        line = next(ln for ln in rows(app, panel) if "flux-1-dev" in ln)
        assert "queue 2" not in line  # cut away at this width
        app.query_one("#probes-table").focus()
        await pilot.press("down")  # flux-1-dev
        await pilot.pause(0.1)
        assert "VRAM used 21.9/24.0 GiB · queue 2" in str(panel.border_subtitle)
        assert "p: probe now" in str(panel.border_subtitle)


async def test_a_restart_loop_says_since_when_from_the_history(monkeypatch):
    """The store knows when the loop began (earlier runs included): the row says so, in
    full in the bottom border when the State column is too narrow for it."""
    monkeypatch.setenv("TZ", "UTC")
    import time as _time

    _time.tzset()
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        began = datetime(2026, 12, 2, 2, 51, tzinfo=UTC)
        app.containers.since = lambda code, service: began if (
            code, service) == ("restart_loop", "orchestrator") else None
        deliver(app, "containers", containers_with(app, orchestrator={
            "looping": True, "state": "restarting"}))
        await pilot.pause(0.1)
        assert app.containers._full["orchestrator"]["state"].plain == "looping since 02:51"
    monkeypatch.undo()
    _time.tzset()
