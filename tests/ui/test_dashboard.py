"""The whole dashboard: layout at 120×40 and 80×24 (compact), below the minimum size, the
findings bar, configurable keys, the command palette, and a clean exit on SIGHUP/SIGTERM."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from genai_tui.config import Config, ServiceConfig, TokensConfig
from genai_tui.model import (
    ContainerInfo,
    DockerStatus,
    GpuInfo,
    GpuProcess,
    GpuReport,
    HostInfo,
    PortBinding,
    ProbeResult,
    TokenLocationStatus,
    TokensReport,
)
from genai_tui.sources.logs import LogLine
from genai_tui.ui.app import GenaiTui
from genai_tui.ui.findings import FIX_KEYS, FindingsBar
from genai_tui.ui.gpu import GpuPanel
from genai_tui.ui.logs import LogPanel
from genai_tui.ui.probes import ProbesPanel
from genai_tui.ui.screens.confirm import ConfirmScreen
from genai_tui.ui.screens.help import HelpScreen
from genai_tui.ui.tokens import TokensPanel
from tests.ui.helpers import screen_text, until_derived, wait_until

NAMES = ("comfyui-qwen", "flux-1-dev", "stable-diffusion-35", "orchestrator")
KINDS = ("comfyui", "comfyui", "http", "orchestrator")


def reference_config(**kw) -> Config:
    services = tuple(
        ServiceConfig(n, f"http://127.0.0.1:{8188 + i if i < 3 else 8193}", KINDS[i],
                      container=n, auth=KINDS[i] == "comfyui")
        for i, n in enumerate(NAMES))
    return Config(services=services, tokens=TokensConfig(canonical="secrets"),
                  base_dir=Path("/srv/genai"), **kw)


def feed(app: GenaiTui, *, broken: bool = True) -> None:
    """A fixed picture of a stack (the reference stack's bad day when `broken`)."""
    now = datetime.now(UTC)
    infos = [
        ContainerInfo("comfyui-qwen", "comfyui-qwen", id="a" * 64, state="running",
                      health="healthy", started_at=now - timedelta(hours=2),
                      ports=[PortBinding(8188, "tcp", "127.0.0.1", 8188)], image="python:3.11"),
        ContainerInfo("flux-1-dev", "flux-1-dev", id="b" * 64, state="running",
                      health="unhealthy" if broken else "healthy", failing_streak=12,
                      started_at=now - timedelta(minutes=40),
                      ports=[PortBinding(8188, "tcp", "127.0.0.1", 8189)], image="python:3.11"),
        ContainerInfo("stable-diffusion-35", "stable-diffusion-35", id="c" * 64,
                      state="exited" if broken else "running", exit_code=137 if broken else None,
                      oom_killed=broken, restart_count=3 if broken else 0,
                      started_at=None if broken else now - timedelta(hours=1),
                      image="python:3.11"),
        ContainerInfo("orchestrator", "orchestrator", id="d" * 64, state="running",
                      started_at=now - timedelta(days=1, hours=2),
                      ports=[PortBinding(8090, "tcp", "127.0.0.1", 8193)], image="python:3.11"),
    ]
    probes = [
        ProbeResult("comfyui-qwen", "http://127.0.0.1:8188", "ok",
                    "rejected" if broken else "enforced", 401 if broken else 200, 8.2,
                    login_loaded=True, password_set=True, queue_remaining=0),
        ProbeResult("flux-1-dev", "http://127.0.0.1:8189", "ok", "enforced", 200, 9.1,
                    login_loaded=True, password_set=True, queue_remaining=2,
                    vram_total_mb=24576, vram_free_mb=2100),
        ProbeResult("stable-diffusion-35", "http://127.0.0.1:8190",
                    "refused" if broken else "ok", None, None if broken else 200,
                    1.0),
        ProbeResult("orchestrator", "http://127.0.0.1:8193", "ok", None, 200, 4.0,
                    health="healthy",
                    backends={"comfyui-qwen": "healthy",
                              "stable-diffusion-35": "unhealthy" if broken else "healthy"}),
    ]
    fp_a, fp_b = "fp:3f9c0a1b7e", "fp:77d01c9e42"
    locations = [
        TokenLocationStatus("secrets", ".secrets/qwen-api-user.token", "hash_file", state="ok",
                            fingerprint=fp_a, canonical=True),
        TokenLocationStatus("password", "workspace/login/PASSWORD", "password_file",
                            state="mismatch" if broken else "ok",
                            fingerprint=fp_b if broken else fp_a),
        TokenLocationStatus("env-main", ".env", "env", key="COMFYUI_API_TOKEN",
                            state="ok", fingerprint=fp_a,
                            problems=["compose_interpolation"] if broken else []),
    ]
    fps = {fp_a: ["secrets", "env-main"]}
    if broken:
        fps[fp_b] = ["password"]
    else:
        fps[fp_a].append("password")
    tokens = TokensReport(locations=locations, canonical="secrets", consistent=not broken,
                          fingerprints=fps)
    gpu = GpuReport(gpus=[
        GpuInfo(0, "NVIDIA GeForce RTX 3080 Laptop GPU", memory_used_mb=15800,
                memory_total_mb=16384, utilization_pct=97, temperature_c=81, power_w=142,
                power_limit_w=150, processes=[GpuProcess(4242, 15200, "python3",
                                                         container="flux-1-dev",
                                                         service="flux-1-dev")]),
        GpuInfo(1, "NVIDIA GeForce RTX 3090", memory_used_mb=1200, memory_total_mb=24576,
                utilization_pct=0, temperature_c=41, power_w=31, power_limit_w=350,
                processes=[GpuProcess(777, 1100, "python3", container="comfyui-qwen",
                                      service="comfyui-qwen")]),
    ], driver_version="581.29")
    host = HostInfo(cpu_pct=37.0, load=(1.2, 0.9, 0.8), cpu_count=16, memory_used_mb=40000,
                    memory_total_mb=64000, swap_used_mb=0, swap_total_mb=8192)
    deliver(app, "containers", infos)
    for part, value in (("probes", probes), ("tokens", tokens), ("gpu", gpu), ("host", host)):
        deliver(app, part, value)
    base = 1_795_600_000_000_000_000
    lines = [
        ("comfyui-qwen", "Starting server"),
        ("comfyui-qwen", "To see the GUI go to: http://0.0.0.0:8188"),
        ("flux-1-dev", "got prompt"),
        ("flux-1-dev", "torch.OutOfMemoryError: Allocation on device"),
        ("flux-1-dev", "Got an OOM, unloading all loaded models."),
        ("flux-1-dev", "Prompt executed in 12.41 seconds"),
        ("comfyui-qwen", "For direct API calls, use token=$2b$12$" + "a" * 53),
    ]
    app.query_one(LogPanel).show_lines(
        [LogLine(base + i * 1_000_000, svc, text) for i, (svc, text) in enumerate(lines)],
        "all services", merged=True)


def deliver(app: GenaiTui, part: str, value) -> None:
    """Hand one part of the picture to the app the way its sources do: through the engine
    (`app.stack`), which tells the panels and re-derives the findings."""
    if part == "containers":
        app.stack.apply_containers(DockerStatus(True), value)
    else:
        app.stack.publish(part, value)


def rows(app: GenaiTui, widget) -> list[str]:
    """What the terminal shows in a widget's region, one string per row."""
    strips = app.screen._compositor.render_strips()
    r = widget.region
    return [strips[y].crop(r.x, r.x + r.width).text for y in range(r.y, r.y + r.height)]


def snapshot_app(**kw) -> GenaiTui:
    return GenaiTui(reference_config(), start_sources=False, **kw)


async def settle(pilot) -> None:
    """Feed the picture and wait (not a fixed pause: CI's engine may be busy) until the
    findings derived from it are on the bar and laid out."""
    app = pilot.app
    feed(app)
    bar = app.query_one(FindingsBar)
    stack = app.stack

    def derived() -> bool:  # findings are derived 0.2 s after the last update
        return (stack.diagnosed > 0 and stack._diagnose_handle is None
                and len(bar.findings) == len(stack.snapshot.findings))

    await wait_until(pilot, derived)
    await pilot.pause(0.1)  # the bar's new height: one layout away


def test_snapshot_dashboard_120x40(snap_compare):
    assert snap_compare(snapshot_app(), terminal_size=(120, 40), run_before=settle)


def test_snapshot_compact_80x24(snap_compare):
    assert snap_compare(snapshot_app(), terminal_size=(80, 24), run_before=settle)


def test_snapshot_compact_tokens_view(snap_compare):
    async def run(pilot) -> None:
        await settle(pilot)
        await pilot.press("3")
        await pilot.pause(0.1)

    assert snap_compare(snapshot_app(), terminal_size=(80, 24), run_before=run)


async def test_findings_bar_names_causes_and_keys():
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        bar = app.query_one(FindingsBar)
        codes = {(f.code, f.service) for f in bar.findings}
        assert ("oom_killed", "stable-diffusion-35") in codes
        # one finding per cause: comfyui-qwen's PASSWORD holds another hash than the
        # canonical token (fp_b vs fp_a) and nothing says the running server kept an older
        # one (no logged hash, no PASSWORD rewritten after its start), so diagnose's
        # `_stale()` is False: the token is refused -> `token_rejected` (fix: [u] unify),
        # never also `token_stale` (which would ask for [r] restart)
        assert ("token_rejected", "comfyui-qwen") in codes
        assert not any(code == "token_stale" for code, _ in codes)
        assert ("healthcheck_hits_auth", "flux-1-dev") in codes
        assert ("token_drift", None) in codes
        assert ("gpu_memory_high", None) in codes
        # what the bar shows: one line per finding, most severe first, each naming its fix
        # key and its message (cut with … at the bar's width), then the ones left out
        # the bar grows to its lines at the next layout (later on a busy machine)
        await wait_until(pilot, lambda: len(rows(app, bar)) == 5)
        shown = [line.strip() for line in rows(app, bar)]
        assert len(shown) == 5
        for line, f in zip(shown, bar.findings[:4], strict=False):
            icon = "✖" if f.severity.name == "CRITICAL" else "▲"
            hint = f"[{FIX_KEYS[f.fix]}] " if f.fix in FIX_KEYS else ""
            assert line.startswith(f"{hint}{icon} "), line
            message = line.removeprefix(f"{hint}{icon} ")
            assert f.message.startswith(message.removesuffix("…")), (line, f.message)
        assert shown[0] == ("[u] ✖ comfyui-qwen: the token on disk is refused (401): the "
                            "server's PASSWORD holds another hash")
        assert shown[1].startswith("[r] ✖ stable-diffusion-35: killed by the kernel OOM "
                                   "killer (exit 137, OOMKilled)")
        assert shown[4].startswith("+3 more: ")
        text = screen_text(app)
        # no secret on screen: the token line is redacted
        assert "a" * 20 not in text


async def test_healthy_stack_shows_calm_line():
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        before = app.stack.diagnosed
        feed(app, broken=False)
        report = GpuReport(error="NVML unavailable: LibraryNotFound")
        deliver(app, "gpu", report)
        await until_derived(pilot, before)
        bar = app.query_one(FindingsBar)
        assert bar.has_class("-calm")
        assert not [f for f in bar.findings if f.severity.name != "INFO"]
        # what the bar shows: the calm line, no fix key, and the first note (if any)
        line = rows(app, bar)[0].strip()
        assert line.startswith("✔ all good — 4 services answering as expected"), line
        assert "[" not in line
        if bar.findings:
            assert bar.findings[0].message[:40] in line


async def test_compact_layout_and_view_keys():
    app = snapshot_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.screen.has_class("-compact")
        assert app.query_one(LogPanel).display
        assert not app.query_one("#side").display
        table = app.query_one("#containers-table")
        assert [c.label.plain for c in table.columns.values()] == [
            "Service", "State", "Health", "Rst", "Exit", "Ports"]
        assert not app.query_one(ProbesPanel).display
        await pilot.press("2")
        await pilot.pause(0.05)
        assert app.query_one(ProbesPanel).display and not app.query_one("#bottom").display
        await pilot.press("3")
        await pilot.pause(0.05)
        assert app.query_one(TokensPanel).display and app.query_one("#side").display
        assert not app.query_one(LogPanel).display and not app.query_one(ProbesPanel).display
        await pilot.press("4")
        await pilot.pause(0.05)
        assert app.query_one(GpuPanel).display and not app.query_one(TokensPanel).display
        await pilot.press("1")
        await pilot.pause(0.05)
        assert app.query_one(LogPanel).display and not app.query_one("#side").display
        await pilot.resize_terminal(120, 40)
        await wait_until(pilot, lambda: not app.screen.has_class("-compact"))
        assert app.query_one("#side").display and app.query_one(LogPanel).display


async def test_footer_follows_focus_and_survives_the_help_screen():
    app = snapshot_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)

        def footer() -> str:
            return " ".join(screen_text(app).splitlines()[-1:])

        # the footer recomposes its bindings after a focus change: waited for, not paused
        app.query_one("#log-view").focus()
        await wait_until(pilot, lambda: "Filter" in footer() and "Help" in footer())
        for _ in range(2):
            await pilot.press("question_mark")
            await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
            await pilot.press("escape")
            await wait_until(pilot, lambda: not isinstance(app.screen, HelpScreen)
                             and "Filter" in footer() and "Help" in footer())
        app.query_one("#containers-table").focus()
        await wait_until(pilot, lambda: "Filter" not in footer() and "Help" in footer())
        app.query_one("#log-view").focus()
        await wait_until(pilot, lambda: "Filter" in footer())


async def test_below_minimum_size_says_so():
    app = snapshot_app()
    async with app.run_test(size=(50, 12)) as pilot:
        await wait_until(pilot, lambda: "Terminal too small: 50×12" in screen_text(app))
        assert "Containers" not in screen_text(app)
        await pilot.resize_terminal(100, 30)
        await wait_until(pilot, lambda: "Terminal too small" not in (text := screen_text(app))
                         and "Containers" in text)


async def test_keys_are_configurable_and_help_follows():
    cfg = replace(reference_config(), keys={"restart": "x", "unify": "U"})
    app = GenaiTui(cfg, start_sources=False)
    async with app.run_test(size=(120, 40)) as pilot:
        feed(app)
        await pilot.pause(0.1)
        await pilot.press("r")
        await pilot.pause(0.1)
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("x")
        await pilot.pause(0.1)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause(0.1)
        sections = dict(app.key_help())
        dashboard = dict((desc, keys) for keys, desc in sections["Dashboard"])
        assert dashboard["restart the selected container (asks first)"] == "x"
        assert dashboard["unify the token copies (choose the source, see the plan, "
                         "confirm)"] == "U"
        assert "Log panel (when focused)" in sections


async def test_every_action_is_in_the_command_palette():
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.1)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        for title in ("Restart", "Restart all", "Logs", "All logs", "Probe now",
                      "Unify tokens", "Logs: Follow/pause", "Logs: Save view"):
            assert title in titles, title


async def test_readonly_hides_mutating_commands_from_the_palette():
    app = snapshot_app(readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.1)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert "Restart" not in titles and "Unify tokens" not in titles
        assert "Probe now" in titles


def _write_config(tmp_path: Path) -> Path:
    toml = tmp_path / "genai-tui.toml"
    toml.write_text('[docker]\nhost = "unix:///nonexistent/docker.sock"\n'
                    '[[services]]\nname = "x"\nurl = "http://127.0.0.1:9"\n')
    return toml


def _run_in_pty(tmp_path: Path, extra_env: dict[str, str] | None = None):
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="100", LINES="30",
               **(extra_env or {}))
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.execvpe(sys.executable, [sys.executable, "-m", "genai_tui", "--config",
                                    str(_write_config(tmp_path))], env)
    return pid, fd


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and needle not in seen:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
    return seen


def _wait_exit(pid: int, fd: int, timeout: float) -> tuple[int | None, bytes, float]:
    t0 = time.monotonic()
    out = b""
    while time.monotonic() - t0 < timeout:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                out += os.read(fd, 65536)
            except OSError:
                pass
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status, out, time.monotonic() - t0
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None, out, time.monotonic() - t0


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_signal_ends_the_real_app_promptly_without_traceback(tmp_path, sig):
    pid, fd = _run_in_pty(tmp_path)
    try:
        screen = _read_until(fd, b"Containers", 30)
        assert b"Containers" in screen, screen[-500:]
        os.kill(pid, sig)
        status, out, took = _wait_exit(pid, fd, 10)
        assert status is not None, "the app did not exit within 10 s"
        print(f"exit after {sig.name} took {took:.2f}s")
        assert took < 3
        assert b"Traceback" not in out
    finally:
        os.close(fd)


def test_q_exits_the_real_app_and_closed_terminal_too(tmp_path):
    pid, fd = _run_in_pty(tmp_path)
    assert b"Containers" in _read_until(fd, b"Containers", 30)
    os.write(fd, b"q")
    status, out, took = _wait_exit(pid, fd, 10)
    os.close(fd)
    assert status is not None and took < 3 and b"Traceback" not in out
    # a dropped SSH link: the terminal goes away (master closed) -> SIGHUP to the session
    pid, fd = _run_in_pty(tmp_path)
    assert b"Containers" in _read_until(fd, b"Containers", 30)
    os.close(fd)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the app outlived its terminal by 10 s")
    took = time.monotonic() - t0
    print(f"exit after the terminal closed took {took:.2f}s")
    assert took < 3  # a clean shutdown, not the 5 s last-resort watchdog


def test_ssh_session_lowers_frame_rate_and_disables_animation():
    code = ("import genai_tui.cli as c\n"
            "c.ssh_frame_rate()\n"
            "import textual.constants as tc\n"
            "from genai_tui.ui.app import GenaiTui\n"
            "from tests.ui.test_dashboard import reference_config\n"
            "app = GenaiTui(reference_config(), start_sources=False)\n"
            "print('fps', tc.MAX_FPS, 'anim', app.animation_level, 'ssh', app.ssh)\n")
    env = {k: v for k, v in os.environ.items() if k != "TEXTUAL_FPS"}
    for ssh, expected in (("10.0.0.1 5 10.0.0.2 22", "fps 15 anim none ssh True"),
                          (None, "fps 60 anim full ssh False")):
        run_env = dict(env)
        run_env.pop("SSH_CONNECTION", None)
        if ssh:
            run_env["SSH_CONNECTION"] = ssh
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60, env=run_env, cwd=Path(__file__).parents[2])
        assert proc.returncode == 0, proc.stderr
        assert expected in proc.stdout


#: the bad states on the reference stack's bad day, as the panels and the bar draw them
#: (a refused probe reads "down": the verdict first, how it failed in the info column)
BAD_STATES = ("exited", "unhealthy", "137 OOM", "✖", "down", "rejected", "mismatch")


async def _no_color_screen(monkeypatch) -> list[list]:
    """The reference stack's bad day drawn with NO_COLOR set: the screen's segments, row by
    row, after the app's line filters (what the terminal receives)."""
    monkeypatch.setenv("NO_COLOR", "1")
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        return [list(strip) for strip in app.screen._compositor.render_strips()]


def _is_grey(color) -> bool:
    if color is None or color.is_default:
        return True
    rgb = color.get_truecolor()
    return rgb.red == rgb.green == rgb.blue


async def test_no_color_leaves_no_hue_and_bad_states_keep_bold(monkeypatch):
    """What genai-tui guarantees under NO_COLOR: not one segment keeps a hue (every colour
    is a grey), and every bad state (a stopped or unhealthy container, an OOM exit, the
    findings bar's ✖, a refused probe or token, a token copy that disagrees) is still bold
    or reversed, while the same good states in plain rows (`running`, `ok`) are not."""
    screen = await _no_color_screen(monkeypatch)
    hues = [(y, seg.text, str(seg.style.color), str(seg.style.bgcolor))
            for y, row in enumerate(screen) for seg in row
            if seg.style is not None
            and not (_is_grey(seg.style.color) and _is_grey(seg.style.bgcolor))]
    assert not hues, hues[:5]
    found: dict[str, list[bool]] = {}
    for row in screen:
        for seg in row:
            word = seg.text.strip()
            if seg.style is not None and word in BAD_STATES + ("running", "ok"):
                found.setdefault(word, []).append(bool(seg.style.bold or seg.style.reverse))
    for word in BAD_STATES:
        assert found.get(word) and all(found[word]), (word, found.get(word))
    # the cursor row is bold whatever it shows: the other rows' good states are not
    for word in ("running", "ok"):
        assert not all(found[word]), (word, found[word])


def _contrast(fg, bg) -> float:
    def lum(color) -> float:
        def channel(v: int) -> float:
            c = v / 255
            return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
        rgb = color.get_truecolor()
        return 0.2126 * channel(rgb.red) + 0.7152 * channel(rgb.green) + \
            0.0722 * channel(rgb.blue)
    hi, lo = sorted((lum(fg), lum(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


async def test_no_color_bad_states_stay_readable(monkeypatch):
    """Under NO_COLOR Textual's Monochrome filter used to turn `bold red` into dark grey
    (#3b3b3b) on a dark panel (#1c1c1c-#272727): bold, but the dimmest text on screen.
    The NO_COLOR ANSI palette (render.no_color_ansi_themes) makes red the brightest grey;
    alarm badges keep a dark grey behind white text."""
    screen = await _no_color_screen(monkeypatch)
    low = [(seg.text.strip(), round(_contrast(seg.style.color, seg.style.bgcolor), 2))
           for row in screen for seg in row
           if seg.style is not None and seg.text.strip() in BAD_STATES
           and seg.style.color is not None and seg.style.bgcolor is not None
           and _contrast(seg.style.color, seg.style.bgcolor) < 3.0]
    assert not low, low


def test_ctrl_c_quits_the_real_app(tmp_path):
    pid, fd = _run_in_pty(tmp_path)
    assert b"Containers" in _read_until(fd, b"Containers", 30)
    os.write(fd, b"\x03")
    status, out, took = _wait_exit(pid, fd, 10)
    os.close(fd)
    assert status is not None and took < 3 and b"Traceback" not in out


async def test_process_service_row_shows_pid_cpu_memory_and_restarts(tmp_path):
    """A `runtime = "process"` service in the containers panel, live, with no Docker."""
    import json
    import shlex

    from tests.conftest import free_port, wait_port

    port = free_port()
    pidfile = tmp_path / "sim.pid"
    root = Path(__file__).resolve().parents[2]
    line = (f"if [ -f {pidfile} ]; then kill $(cat {pidfile}); sleep 0.3; fi; "
            f"PYTHONPATH={shlex.quote(str(root))} nohup {shlex.quote(sys.executable)} -m "
            f"genai_tui.sim --kind orchestrator --host 127.0.0.1 --port {port} "
            f">> {tmp_path}/sim.log 2>&1 < /dev/null & echo $! > {pidfile}")
    toml = tmp_path / "genai-tui.toml"
    toml.write_text(f'[[services]]\nname = "orch"\nurl = "http://127.0.0.1:{port}"\n'
                    f'kind = "orchestrator"\nruntime = "process"\n'
                    f'restart_command = {json.dumps(line)}\nlog_file = "sim.log"\n')
    subprocess.run(["sh", "-c", line], check=True)
    wait_port(port)
    from genai_tui import config as configmod

    app = GenaiTui(configmod.load_file(toml, env={}))
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.query_one("#containers-table")

            async def until(pred, timeout=20.0):
                t0 = time.monotonic()
                while time.monotonic() - t0 < timeout:
                    if pred():
                        return
                    await pilot.pause(0.1)
                raise AssertionError("timed out")

            first = int(pidfile.read_text())
            await until(lambda: str(table.get_cell("orch", "state")) == "running")
            assert str(table.get_cell("orch", "container")).startswith(f"pid {first} ")
            await pilot.press("r")
            await until(lambda: isinstance(app.screen, ConfirmScreen))
            assert "process" in screen_text(app)
            await pilot.press("y")
            await until(lambda: int(pidfile.read_text()) != first)
            second = int(pidfile.read_text())
            await until(lambda: str(table.get_cell("orch", "container")).startswith(
                f"pid {second} "))
            await until(lambda: "Orchestrator listening" in "\n".join(
                ln.text for ln in app.query_one(LogPanel).view.lines()))
    finally:
        try:
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
        except (OSError, ValueError):
            pass


async def test_panels_keep_up_while_a_modal_is_open():
    """A probe round that lands while the help (or any modal) is open reaches the panel
    underneath: closing the modal shows the current state, not the one before it."""
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        table = app.query_one("#probes-table")
        assert "down" not in str(table.get_cell("comfyui-qwen", "verdict"))
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        probes = [p for p in app.stack.snapshot.probes if p.service != "comfyui-qwen"]
        app.stack.publish("probes", [*probes, ProbeResult(
            "comfyui-qwen", "http://127.0.0.1:8188", "refused", None)])
        await pilot.pause(0.2)
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, HelpScreen))
        assert "down" in str(table.get_cell("comfyui-qwen", "verdict"))
