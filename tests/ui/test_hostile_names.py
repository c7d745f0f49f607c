"""Hostile text from the config, Docker, HTTP and files on the dashboard (issue 19, item
10): no escape sequence, C1 control, bidi or zero-width character reaches the bytes that
would be written to the terminal, no markup in a name is interpreted, and each row shows
the cleaned name.

The app runs headless with Pilot; "what reaches the terminal" is the compositor's full
update rendered to the escape sequences Textual would write (`render_segments`), so the
check covers every widget, border title, modal and notification at once.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from textual.widgets import DataTable

from genai_tui.config import Config, load_file
from genai_tui.model import (
    MISSING,
    ContainerInfo,
    DiskUsage,
    DockerStatus,
    GpuInfo,
    GpuProcess,
    GpuReport,
    HostInfo,
    PortBinding,
    ProbeResult,
    ServerTokenStatus,
    TokenLocationStatus,
    TokensReport,
)
from genai_tui.safety import is_clean
from genai_tui.sources.logs import LogLine
from genai_tui.ui.app import GenaiTui
from genai_tui.ui.gpu import GpuPanel
from genai_tui.ui.host import HostPanel
from genai_tui.ui.logs import LogPanel
from genai_tui.ui.probes import ProbesPanel
from genai_tui.ui.screens.confirm import ConfirmScreen
from genai_tui.ui.tokens import TokensPanel
from tests.ui.helpers import screen_text, until_derived, wait_until

OSC = "\x1b]0;pwned\x07"
#: (raw service name as the config holds it, what the dashboard must show)
SERVICES = [
    ("evil" + OSC, "evil"),
    ("csi\x1b[2Jclear\x9b31m", "csiclear"),
    ("bi\u202edi\u200b\u2066zw\ufeff", "bidizw"),
    ("[bold red]x[/]", "[bold red]x[/]"),
    ("[@click=app.quit]clk[/]", "[@click=app.quit]clk[/]"),
    ("[link=https://evil.example]L[/link]", "[link=https://evil.example]L[/link]"),
]
#: what a rendered frame may hold besides text: Textual's own cursor moves and colours
TEXTUAL_SEQUENCES = re.compile(r"\x1b\[[0-9;]*[Hm]|\n")


def _toml(s: str) -> str:
    """A TOML basic string with every non-printable character as a \\uXXXX escape."""
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable() and ch.isascii():
            out.append(ch)
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def hostile_config(tmp_path: Path) -> Config:
    """Loaded from a real config file, escapes written as TOML `\\u001b` and so on."""
    lines = []
    for i, (raw, _) in enumerate(SERVICES):
        lines += ["[[services]]", f"name = {_toml(raw)}",
                  f"url = {_toml(f'http://127.0.0.1:{9 + i}/[@click=app.quit]u')}",
                  'kind = "comfyui"' if i % 2 == 0 else 'kind = "http"',
                  f"container = {_toml(f'ctr{i}' + OSC + '[b]c[/b]')}", ""]
    lines += ["[tokens]", f"canonical = {_toml('loc' + OSC)}",
              "[[tokens.locations]]", f"name = {_toml('loc' + OSC)}",
              'path = "secrets/a.token"', 'format = "hash_file"',
              "[[tokens.locations]]", f"name = {_toml('[red]loc2[/]' + chr(0x202e))}",
              'path = "secrets/b.token"', 'format = "hash_file"']
    path = tmp_path / "genai-tui.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_file(path, env={})


def feed_hostile(app: GenaiTui) -> None:
    """Every source's worst: Docker, probes, tokens, NVML, host and logs."""
    cfg = app.config
    now = datetime.now(UTC)
    names = [s.name for s in cfg.services]
    infos = []
    for i, svc in enumerate(cfg.services):
        infos.append(ContainerInfo(
            svc.name, svc.container_name, id=f"{i:x}" * 64,
            state=MISSING if i == 0 else ("running" + OSC if i % 2 else "exited\x9b2J"),
            health="unhealthy\u202e" if i == 1 else None, failing_streak=3,
            started_at=now - timedelta(hours=1), restart_count=i,
            ports=[PortBinding(8188, "tcp", "127.0.0.1\x1b[5m[blink]", 8100 + i)],
            image="img" + OSC + "[@click=app.quit]i[/]", exit_code=1 if i % 2 == 0 else None,
            action=("restarting" + OSC) if i == 3 else None))
    app.containers.apply(DockerStatus(False, error="Docker engine unreachable: " + OSC
                                      + "[@click=app.quit]d[/]"), infos)
    probes = [ProbeResult(n, "http://127.0.0.1:1/[@click=app.quit]" + OSC,
                          "http_error" if i % 2 else "ok", "rejected" if i % 2 == 0 else None,
                          500, 3.0, detail="det" + OSC + "[bold red]ail[/]\u202e",
                          backends={"b" + OSC: "down\x1b[2J"} if i == 1 else {},
                          health="sick" + OSC if i == 1 else None)
              for i, n in enumerate(names)]
    app.query_one(ProbesPanel).apply(probes)
    locs = [loc.name for loc in cfg.tokens.locations]
    tokens = TokensReport(
        locations=[TokenLocationStatus(locs[0], "secrets/a.token", "hash_file", state="ok",
                                       fingerprint="fp:aaaa" + OSC, canonical=True,
                                       problems=["weird" + OSC]),
                   TokenLocationStatus(locs[1], "secrets/b.token", "hash_file",
                                       state="mismatch", fingerprint="fp:bbbb[b]x[/b]")],
        canonical=locs[0], consistent=False,
        fingerprints={"fp:aaaa" + OSC: [locs[0]], "fp:bbbb[b]x[/b]": [locs[1]]},
        servers=[ServerTokenStatus(names[0], None), ServerTokenStatus(names[3], False)],
        error="cannot read" + OSC + "[@click=app.quit]e[/]")
    app.query_one(TokensPanel).apply(tokens)
    gpu = GpuReport(gpus=[
        GpuInfo(0, "NVIDIA " + OSC + "[bold]RTX[/bold]\u202e", memory_used_mb=15000,
                memory_total_mb=16000, processes=[
                    GpuProcess(42, 1000, "py" + OSC + "[b]", container="ctr0" + OSC,
                               service=names[0]),
                    GpuProcess(43, 100, "\x9b2Jhost")]),
        GpuInfo(1, "lost" + OSC, error="GPU is lost" + OSC + "[@click=app.quit]g[/]"),
        GpuInfo(2, "cuda:0 " + OSC, memory_used_mb=1, memory_total_mb=2,
                source="system_stats:" + names[1]),
    ], driver_version="[@click=app.quit]581" + OSC)
    app.query_one(GpuPanel).show(gpu)
    host = HostInfo(cpu_pct=3.0, memory_used_mb=1, memory_total_mb=2, disks=[
        DiskUsage("/models/m" + OSC + "[b]", used_mb=1, total_mb=2),
        DiskUsage("/out\u202e[bold]o", error="not mounted" + OSC)])
    app.query_one(HostPanel).show(host)
    for part, value in (("probes", probes), ("tokens", tokens), ("gpu", gpu), ("host", host)):
        app.stack.publish(part, value)
    base = 1_795_600_000_000_000_000
    app.query_one(LogPanel).show_lines(
        [LogLine(base + i, n, f"line {i}" + OSC, None) for i, n in enumerate(names)],
        "all" + OSC, merged=True)


def terminal_bytes(app: GenaiTui) -> str:
    """The full frame exactly as Textual would write it to the terminal."""
    update = app.screen._compositor.render_update(full=True,
                                                  screen_stack=app._background_screens)
    assert update is not None
    return update.render_segments(app.console)


def assert_terminal_safe(app: GenaiTui) -> None:
    raw = terminal_bytes(app)
    rest = TEXTUAL_SEQUENCES.sub("", raw)
    bad = sorted({f"U+{ord(c):04X}" for c in rest if not is_clean(c)})
    assert not bad, f"reached the terminal: {bad}"
    assert "pwned" not in rest and "]0;" not in rest and "[2J" not in rest


def assert_no_markup_interpreted(app: GenaiTui) -> None:
    """Markup in a name would give a segment a link or an `@click` action (Textual's own
    scrollbars carry `@mouse.*` metadata, the dashboard itself no `@click`)."""
    for strips in app.screen._compositor.render_update(
            full=True, screen_stack=app._background_screens).strips:
        for strip in strips:
            for seg in strip:
                style = seg.style
                if style is None:
                    continue
                assert not style.link, f"a link from markup: {seg.text!r}"
                assert "@click" not in (style.meta or {}), \
                    f"an action from markup: {seg.text!r}"


async def test_hostile_names_never_reach_the_terminal(tmp_path: Path) -> None:
    cfg = hostile_config(tmp_path)
    assert cfg.services[0].name == "evil" + OSC  # the config really holds the escapes
    app = GenaiTui(cfg, start_sources=False)
    async with app.run_test(size=(170, 50), notifications=True) as pilot:
        before = app.stack.diagnosed
        feed_hostile(app)
        await until_derived(pilot, before)
        assert_terminal_safe(app)
        assert_no_markup_interpreted(app)

        # each row shows the cleaned name, as text, in the containers and probes tables
        for table_id in ("#containers-table", "#probes-table"):
            table = app.query_one(table_id, DataTable)
            shown = [table.get_cell(raw, "service").plain for raw, _ in SERVICES]
            assert shown == [clean for _, clean in SERVICES], table_id
        text = screen_text(app)
        for _, clean in SERVICES[3:]:
            assert clean in text, f"markup name not shown literally: {clean}"
        assert "driver [@click=app.quit]581" in text
        assert "Docker engine unreachable: [@click=app.quit]d[/]" in text

        # a notification naming a missing container (service 0 is missing)
        app.query_one("#containers-table", DataTable).move_cursor(row=0)
        app.action_restart()
        await pilot.pause(0.1)
        assert app._notifications, "expected a notification"
        assert_terminal_safe(app)
        assert_no_markup_interpreted(app)
        assert "evil: no container" in screen_text(app)

        # the confirmation modal quoting a running container's names
        app.query_one("#containers-table", DataTable).move_cursor(row=4)
        app.action_restart()
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.1)
        assert_terminal_safe(app)
        assert_no_markup_interpreted(app)
        assert "Restart [@click=app.quit]clk[/]" in screen_text(app)
        await pilot.press("n")
        await pilot.pause(0.05)

        # the restart-all modal lists every name
        app.action_restart_all()
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.1)
        assert_terminal_safe(app)
        assert_no_markup_interpreted(app)
        await pilot.press("n")


async def test_compact_views_of_hostile_names_are_clean_too(tmp_path: Path) -> None:
    """80×24: the compact layout shows other columns and one lower panel at a time."""
    app = GenaiTui(hostile_config(tmp_path), start_sources=False)
    async with app.run_test(size=(80, 24)) as pilot:
        before = app.stack.diagnosed
        feed_hostile(app)
        await until_derived(pilot, before)
        for view in "12345":
            await pilot.press(view)
            await pilot.pause(0.05)
            assert_terminal_safe(app)
            assert_no_markup_interpreted(app)


def test_unify_modal_texts_are_clean_and_literal() -> None:
    """The unify modal's choices and probe lines quote location and service names."""
    from rich.console import Console

    from genai_tui.ui.screens.unify import probe_text, source_options

    report = TokensReport(
        locations=[TokenLocationStatus("loc" + OSC + "[b]1[/b]", "a", "hash_file", state="ok",
                                       fingerprint="fp:1" + OSC)],
        fingerprints={"fp:1" + OSC: ["loc" + OSC + "[b]1[/b]"]})
    texts = [label for _, label in source_options(report, None)]
    texts += [probe_text(ProbeResult("evil" + OSC, "u", "http_error", detail="d" + OSC)),
              probe_text(ProbeResult("[red]x[/]\u202e", "u", "ok", "unknown", detail="\x9b2J"))]
    console = Console(width=200, force_terminal=True, color_system="truecolor")
    for text in texts:
        with console.capture() as cap:
            console.print(text)
        rest = TEXTUAL_SEQUENCES.sub("", cap.get())
        assert is_clean(rest) and "pwned" not in rest, repr(rest)
    assert "loc[b]1[/b]" in texts[0].plain
    assert texts[-1].plain.startswith("[red]x[/]: unknown")
