"""The log panel through Pilot: what reaches the widget and the saved file is clean and
redacted; filter, jumps, pause counting, toggles and save behave; a real container too.

Most tests feed raw bytes through a `FeedSource` (the real follower pipeline: line
assembly, sanitising, redaction) so hostile input can be exact; one test follows a real
simulator container. The panel is given the engine's log hub (`Stack(parts={"logs"})`),
and the engine collects the log events (token lines, OOMs) from it."""

from __future__ import annotations

import asyncio
import os
import queue
import stat
import threading
import time
from pathlib import Path

import pytest
from textual.app import App, ComposeResult

from genai_tui.config import Config, LogConfig, ServiceConfig, TokensConfig
from genai_tui.engine.live import Stack
from genai_tui.secret import fingerprint
from genai_tui.sources.logs import LogHub, Target
from genai_tui.sources.logtext import is_clean
from genai_tui.ui.app import GenaiTui
from genai_tui.ui.logs import LogPanel
from tests.conftest import make_hash
from tests.ui.helpers import screen_text, wait_until

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


@pytest.fixture(autouse=True)
def _state_home(tmp_path, monkeypatch) -> None:
    """Saved views go to $XDG_STATE_HOME/genai-tui/logs: the test's own, not the user's."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def ts(i: int, ms: int = 0) -> bytes:
    t = time.gmtime(T0 + i)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t).encode() + b".%03d000000Z " % ms


class FeedStream:
    framed = False  # TTY-style "TS text\n" bytes, split by the follower itself

    def __init__(self, q: queue.Queue) -> None:
        self.q = q
        self.closed = threading.Event()

    def __iter__(self):
        while not self.closed.is_set():
            try:
                item = self.q.get(timeout=0.02)
            except queue.Empty:
                continue
            yield item

    def close(self) -> None:
        self.closed.set()


class FeedSource:
    """A LogSource whose bytes the test writes (no Docker involved)."""

    def __init__(self, name: str) -> None:
        self.label = name
        self.q: queue.Queue = queue.Queue()

    def locate(self) -> Target:
        return Target(id=f"{self.label}-0000000000", name=self.label, running=True, tty=True)

    def inspect(self, target_id: str) -> Target:
        return self.locate()

    def open(self, target: Target, tail: int, since_ns: int | None,
             follow: bool = True) -> FeedStream:
        return FeedStream(self.q)

    def close(self) -> None:
        pass

    def put(self, data: bytes) -> None:
        self.q.put(data)

    def lines(self, texts: list[str], start: int = 0) -> None:
        self.put(b"".join(ts(start + i) + t.encode() + b"\n" for i, t in enumerate(texts)))


def make_config(tmp_path: Path, *names: str, buffer_lines: int = 5000) -> Config:
    services = tuple(ServiceConfig(n, f"http://127.0.0.1:{10 + i}", container=f"c-{n}")
                     for i, n in enumerate(names))
    return Config(services=services, tokens=TokensConfig(), base_dir=tmp_path,
                  logs=LogConfig(buffer_lines=buffer_lines, flush_interval=0.05))


class PanelApp(App):
    """The log panel alone, on the engine's log hub; the engine runs as the dashboard runs
    it (an App worker, closed at unmount) and collects the log events."""

    def __init__(self, stack: Stack, initial: str | None) -> None:
        super().__init__()
        self.stack = stack
        self.initial = initial

    @property
    def hub(self) -> LogHub:
        return self.stack.logs

    def compose(self) -> ComposeResult:
        yield LogPanel(self.stack.config, id="logs", hub=self.stack.logs,
                       initial=self.initial)

    def on_mount(self) -> None:
        self.query_one("#log-view").focus()
        self.run_worker(self.stack.run(), name="engine", exit_on_error=False)

    async def on_unmount(self) -> None:
        await self.stack.aclose()


def feed_hub(cfg: Config, secrets=()) -> tuple[LogHub, dict[str, FeedSource]]:
    """A log hub whose sources are `FeedSource`s (one per service, made on first use)."""
    sources: dict[str, FeedSource] = {}

    def factory(svc: ServiceConfig) -> FeedSource:
        sources[svc.name] = FeedSource(svc.name)
        return sources[svc.name]

    return LogHub(cfg, source_factory=factory, secrets=lambda: list(secrets)), sources


def feed_app(tmp_path: Path, *names: str, initial: str | None = None, secrets=(),
             buffer_lines: int = 5000) -> tuple[PanelApp, dict[str, FeedSource]]:
    cfg = make_config(tmp_path, *names, buffer_lines=buffer_lines)
    hub, sources = feed_hub(cfg, secrets)
    app = PanelApp(Stack(cfg, parts={"logs"}, hub=hub), initial or names[0])
    return app, sources




def widget_rows(panel: LogPanel) -> list[str]:
    """The text of every strip the view hands to Textual for the visible rows."""
    view = panel.view
    return ["".join(seg.text for seg in view.render_line(y))
            for y in range(view.scrollable_content_region.height)]


def all_rows(panel: LogPanel) -> list[str]:
    """Every row of the view, scrolled through from top to bottom."""
    view = panel.view
    out = []
    view.scroll_to(y=0, animate=False, immediate=True)
    height = view.scrollable_content_region.height
    for top in range(0, max(1, view.virtual_size.height), height):
        view.scroll_to(y=top, animate=False, immediate=True)
        rows = widget_rows(panel)
        out.extend(rows[: max(0, view.virtual_size.height - top)])
    return out


HASH = make_hash("panel-secret")
RAW = "panel-raw-password-19"
HOSTILE = [
    b"\x1b[2J\x1b[H\x1b[?1049hclear screen attempt",
    b"\x1b]52;c;ZXZpbCBjb21tYW5kCg==\x07clipboard write",
    b"\x1b]8;;https://evil.example/\x1b\\hyperlink\x1b]8;;\x1b\\ text",
    b"\x1b]0;title\x1b\\ \x1bP+q544e\x1b\\ \x1b_APC\x1b\\ \x1b^PM\x1b\\ \x1bXSOS\x1b\\ strings",
    b"\xc2\x9b31mc1 csi\xc2\x9d0;t\xc2\x9c \x9b raw 8-bit",
    b"bell\x07 backspace\x08\x08 del\x7f nul\x00 vt\x0b ff\x0c",
    b"invalid \xff\xfe\xc3\x28 utf8",
    b"bidi \xe2\x80\xae\xe2\x81\xa6evil\xe2\x81\xa9\xe2\x80\xac end",
    b"".join(b"\r%5d%%|" % i + b"#" * (i % 50) for i in range(100_000)),
    b"Z" * (1 << 20),
    f"For direct API calls, use token={HASH}".encode(),
    f"Authorization: Bearer {HASH}".encode(),
    f"GET /prompt?token={HASH[7:40]} 200".encode(),
    f"logging in with {RAW}".encode(),
    b"HF_TOKEN=hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567",
    b"tab\tseparated\tvalues",
    b"last line",
]
SECRETS = (HASH, HASH[7:], HASH[7:40], RAW, "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567")


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        frags = [secret[i:i + 8] for i in range(len(secret) - 7)]
        assert not any(f in text for f in frags), "a secret fragment reached the output"


def assert_terminal_safe(text: str) -> None:
    bad = [hex(ord(c)) for c in text if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F
           or c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"]
    assert not bad, f"control characters reached the output: {bad[:5]}"


async def test_hostile_lines_reach_widget_and_saved_file_clean(tmp_path):
    app, sources = feed_app(tmp_path, "qwen", secrets=[HASH, RAW])
    async with app.run_test(size=(120, 40)) as pilot:
        panel = app.query_one(LogPanel)
        sources["qwen"].put(b"".join(ts(i) + line + b"\n" for i, line in enumerate(HOSTILE)))
        await wait_until(pilot, lambda: panel.view.line_count == len(HOSTILE))
        stored = [ln.text for ln in panel.view.lines()]
        assert all(is_clean(t) for t in stored)
        assert stored[-1] == "last line"
        assert stored[8].startswith("99999%|") and stored[9].endswith("bytes]")
        assert f"[redacted {fingerprint(HASH)}]" in stored[10]
        rows = "\n".join(all_rows(panel))
        assert "clear screen attempt" in rows and "hyperlink text" in rows
        assert_terminal_safe(rows)
        assert_no_secret(rows)
        screen = screen_text(app)
        assert_terminal_safe(screen)
        assert_no_secret(screen)
        await pilot.press("t", "w")  # other render paths: timestamps and wrapped rows
        await pilot.pause(0.05)
        rows = "\n".join(all_rows(panel))
        assert_terminal_safe(rows)
        assert_no_secret(rows)
        await pilot.press("s")
        await wait_until(pilot, lambda: panel.saved_path is not None)
        saved = panel.saved_path.read_text(encoding="utf-8")
        assert_terminal_safe(saved)
        assert_no_secret(saved)
        assert saved.count("\n") == len(HOSTILE)
        assert "2026-01-01T00:00:16.000000000Z last line" in saved


async def test_filter_jump_and_clear(tmp_path):
    app, sources = feed_app(tmp_path, "qwen")
    async with app.run_test(size=(100, 20)) as pilot:
        panel = app.query_one(LogPanel)
        texts = [f"line {i} {'ERROR boom' if i % 10 == 3 else 'ok'}" for i in range(200)]
        sources["qwen"].lines(texts)
        await wait_until(pilot, lambda: panel.view.line_count == 200)
        await pilot.press("slash")
        assert panel.filter_input.has_focus
        await pilot.press(*"boom", "enter")
        await pilot.pause(0.05)
        assert panel.view.match_count == 20
        assert "filter /boom/ 20 matches" in panel.status_text
        assert [ln.text for ln in panel.view.lines()] == [t for t in texts if "boom" in t]
        assert panel.view.has_focus
        visible = widget_rows(panel)
        assert all("boom" in r for r in visible if r.strip())
        top = widget_rows(panel)[0].strip()  # the first `n` starts at the top of the screen
        k = int(top.split()[1]) // 10
        await pilot.press("n")
        assert panel.view.line(panel.view.current).text == top
        await pilot.press("n", "n")
        assert panel.view.line(panel.view.current).text == f"line {(k + 2) % 20}3 ERROR boom"
        await pilot.press("N")
        expected = f"line {(k + 1) % 20}3 ERROR boom"
        assert panel.view.line(panel.view.current).text == expected
        assert "paused" in panel.status_text  # a jump stops the view from moving on
        assert any(expected in r for r in widget_rows(panel))  # and shows the match
        await pilot.press("N", "N", "N")  # wraps around from the first to the last
        assert panel.view.line(panel.view.current).text == (
            "line 193 ERROR boom" if k == 0 else f"line {(k - 2) % 20}3 ERROR boom")
        await pilot.press("escape")
        await pilot.pause(0.05)
        assert panel.view.filter is None
        assert panel.view.line_count == 200 and len(panel.view.lines()) == 200
        assert "filter" not in panel.status_text


async def test_smart_case_and_invalid_regex(tmp_path):
    app, sources = feed_app(tmp_path, "qwen")
    async with app.run_test(size=(100, 20)) as pilot:
        panel = app.query_one(LogPanel)
        sources["qwen"].lines(["Error A", "error b", "ERROR c"])
        await wait_until(pilot, lambda: panel.view.line_count == 3)
        assert panel.apply_filter("error") and panel.view.match_count == 3
        assert panel.apply_filter("Error") and panel.view.match_count == 1
        await pilot.press("slash", "ctrl+a", *"([unclosed", "enter")
        await pilot.pause(0.05)
        assert "invalid regex" in panel.status_text
        assert panel.view.filter is not None and panel.view.filter.pattern == "Error"
        await pilot.press("escape")  # leaves the input and clears the filter
        await pilot.pause(0.05)
        assert panel.view.filter is None and not panel.has_class("-filtering")


async def test_pause_counts_new_lines_and_resume_shows_them(tmp_path):
    app, sources = feed_app(tmp_path, "qwen")
    async with app.run_test(size=(100, 20)) as pilot:
        panel = app.query_one(LogPanel)
        sources["qwen"].lines([f"before {i}" for i in range(30)])
        await wait_until(pilot, lambda: panel.view.line_count == 30)
        await pilot.press("f")
        assert "paused · 0 new lines below" in panel.status_text
        rows_before = widget_rows(panel)
        sources["qwen"].lines([f"during {i}" for i in range(57)], start=30)
        await wait_until(pilot, lambda: "paused · 57 new lines below" in panel.status_text)
        assert panel.view.line_count == 30
        assert widget_rows(panel) == rows_before
        await pilot.press("f")
        assert panel.view.line_count == 87
        assert panel.status_text.startswith("qwen · following")
        assert any("during 56" in r for r in widget_rows(panel))  # back at the bottom


async def test_view_is_bounded_by_the_ring_buffer(tmp_path):
    app, sources = feed_app(tmp_path, "qwen", buffer_lines=100)
    async with app.run_test(size=(100, 20)) as pilot:
        panel = app.query_one(LogPanel)
        for chunk in range(10):
            sources["qwen"].lines([f"n {chunk * 100 + i}" for i in range(100)],
                                  start=chunk * 100)
        await wait_until(pilot, lambda: any("n 999" in r for r in widget_rows(panel)))
        assert panel.view.line_count == 100
        assert panel.view.lines()[0].text == "n 900"
        assert "100/100 lines" in panel.status_text


async def test_timestamps_and_wrap_toggles(tmp_path):
    app, sources = feed_app(tmp_path, "qwen")
    async with app.run_test(size=(60, 12)) as pilot:
        panel = app.query_one(LogPanel)
        sources["qwen"].lines(["short", "x" * 150])
        await wait_until(pilot, lambda: panel.view.line_count == 2)
        rows = [r.rstrip() for r in widget_rows(panel) if r.strip()]
        assert rows[0] == "short" and len(rows) == 2
        await pilot.press("t")
        rows = [r.rstrip() for r in widget_rows(panel) if r.strip()]
        assert rows[0] == "00:00:00.000 short"
        assert rows[1].startswith("00:00:01.000 xxx")
        await pilot.press("w")
        rows = [r.rstrip() for r in widget_rows(panel) if r.strip()]
        width = panel.view.scrollable_content_region.width
        # wrapped at the view width, continued under the message (past the 13-cell time)
        assert len(rows) == 1 + 1 + -(-(13 + 150 - width) // (width - 13))
        assert all(len(r) <= width for r in rows)
        assert all(r.startswith(" " * 13 + "x") for r in rows[2:])
        assert "".join(r.strip() for r in rows[1:]).replace("00:00:01.000 ", "") == "x" * 150
        assert "wrap" in panel.status_text and "times UTC" in panel.status_text
        await pilot.press("w", "t")
        rows = [r.rstrip() for r in widget_rows(panel) if r.strip()]
        assert rows[0] == "short" and len(rows) == 2


async def test_merged_view_prefixes_services_in_time_order(tmp_path):
    app, sources = feed_app(tmp_path, "qwen", "orch", initial="all")
    async with app.run_test(size=(100, 20)) as pilot:
        panel = app.query_one(LogPanel)
        await wait_until(pilot, lambda: set(sources) == {"qwen", "orch"})
        sources["qwen"].put(ts(0, 100) + b"q first\n" + ts(0, 300) + b"q third\n")
        sources["orch"].put(ts(0, 200) + b"o second\n")
        await wait_until(pilot, lambda: panel.view.line_count == 3)
        rows = [r.rstrip() for r in widget_rows(panel) if r.strip()]
        assert rows == ["qwen │ q first", "orch │ o second", "qwen │ q third"]
        await pilot.press("s")
        await wait_until(pilot, lambda: panel.saved_path is not None)
        assert panel.saved_path.name.startswith("all-")
        assert panel.saved_path.read_text().splitlines() == [
            "2026-01-01T00:00:00.100000000Z qwen | q first",
            "2026-01-01T00:00:00.200000000Z orch | o second",
            "2026-01-01T00:00:00.300000000Z qwen | q third",
        ]


async def test_save_writes_the_filtered_view_privately(tmp_path):
    app, sources = feed_app(tmp_path, "qwen")
    async with app.run_test(size=(100, 20)) as pilot:
        panel = app.query_one(LogPanel)
        sources["qwen"].lines(["got prompt", "noise", "Prompt executed in 1.00 seconds",
                               f"use token={HASH}"])
        await wait_until(pilot, lambda: panel.view.line_count == 4)
        panel.apply_filter("prompt|token")
        await pilot.press("s")
        await wait_until(pilot, lambda: panel.saved_path is not None)
        path = panel.saved_path
        assert path.parent == tmp_path / "state" / "genai-tui" / "logs"
        assert path.name.startswith("qwen-") and path.suffix == ".log"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        lines = path.read_text().splitlines()
        assert [ln.split(" ", 1)[1] for ln in lines] == [
            "got prompt", "Prompt executed in 1.00 seconds",
            f"use token=[redacted {fingerprint(HASH)}]"]
        assert str(path) in panel.status_text
        assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]
        await pilot.press("s")  # a second save never overwrites the first
        await wait_until(pilot, lambda: panel.saved_path != path)
        assert path.exists() and panel.saved_path.exists()


async def test_log_events_are_published(tmp_path):
    """The dashboard with only the engine's log streams live: the lines reach its log
    panel, and the engine publishes the events found in them (for the findings)."""
    cfg = make_config(tmp_path, "qwen")
    hub, sources = feed_hub(cfg)
    stack = Stack(cfg, parts={"logs"}, hub=hub)
    published: list = []
    stack.subscribe(lambda change: published.append(
        (change.part, len(stack.snapshot.log_events))))
    app = GenaiTui(cfg, stack=stack)
    async with app.run_test(size=(120, 40)) as pilot:
        panel = app.query_one(LogPanel)
        assert panel.hub is stack.logs  # the dashboard's panel reads the engine's hub
        await wait_until(pilot, lambda: "qwen" in sources)
        sources["qwen"].lines([f"For direct API calls, use token={HASH}",
                               "Got an OOM, unloading all loaded models.",
                               "Prompt executed in 2.00 seconds"])
        await wait_until(pilot, lambda: len(app.stack.snapshot.log_events) == 3)
        await wait_until(pilot, lambda: panel.view.line_count == 3)
        kinds = [e.kind for e in app.stack.snapshot.log_events]
        assert kinds == ["token", "oom", "job_done"]
        assert app.stack.snapshot.log_events[0].fingerprint == fingerprint(HASH)
        assert published and published[-1] == ("log_events", 3)


def test_snapshot_log_panel(snap_compare, tmp_path):
    app, sources = feed_app(tmp_path, "comfyui-qwen", "orchestrator", initial="all")
    h = make_hash("snapshot")

    async def run_before(pilot) -> None:
        panel = app.query_one(LogPanel)
        await wait_until(pilot, lambda: set(sources) == {"comfyui-qwen", "orchestrator"})
        q, o = sources["comfyui-qwen"], sources["orchestrator"]
        q.put(b"".join(ts(i) + t.encode() + b"\n" for i, t in enumerate([
            "Total VRAM 24564 MB, total RAM 64221 MB",
            f"For direct API calls, use token={h}",
            "Import times for custom nodes:",
            "   0.0 seconds (IMPORT FAILED): /root/ComfyUI/custom_nodes/ComfyUI-Login",
            "Starting server",
            "got prompt",
            "!!! Exception during processing !!! Allocation on device",
            "Traceback (most recent call last):",
            '  File "/workspace/ComfyUI/execution.py", line 496, in execute',
            "torch.OutOfMemoryError: Allocation on device",
            "Got an OOM, unloading all loaded models.",
            "Prompt executed in 12.34 seconds",
            "WARNING: request with non matching host and origin",
        ])))
        o.put(ts(3, 500) + b"backend comfyui-qwen: healthy\n"
              + ts(9, 500) + b"\x1b[31mbackend comfyui-qwen: error 500\x1b[0m\n")
        await wait_until(pilot, lambda: panel.view.line_count == 15)
        await pilot.press("t")
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(100, 20), run_before=run_before)


@pytest.mark.usefixtures("docker_client")
async def test_panel_follows_a_real_container(sim_container, login_dir, tmp_path):
    h = make_hash()
    c = sim_container(login_dir=login_dir(h))
    cfg = Config(services=(ServiceConfig("qwen", "http://127.0.0.1:1", container=c.name),),
                 tokens=TokensConfig(), base_dir=tmp_path,
                 logs=LogConfig(flush_interval=0.05))
    stack = Stack(cfg, parts={"logs"}, hub=LogHub(cfg, secrets=lambda: []))
    app = PanelApp(stack, initial=None)
    async with app.run_test(size=(120, 30)) as pilot:
        panel = app.query_one(LogPanel)
        panel.follow_service("qwen")
        await wait_until(pilot, lambda: any("To see the GUI" in ln.text
                                            for ln in panel.view.lines()), timeout=20)
        text = screen_text(app)
        assert "To see the GUI go to" in text
        assert h[7:20] not in text
        await wait_until(pilot, lambda: any(
            e.kind == "token" and e.fingerprint == fingerprint(h)
            for e in stack.snapshot.log_events))
        started = time.monotonic()
        await asyncio.to_thread(c.restart, timeout=1)
        await wait_until(pilot, lambda: sum("For direct API calls" in ln.text
                                            for ln in panel.view.lines()) == 2, timeout=30)
        assert time.monotonic() - started < 30
        assert "qwen · following" in panel.status_text
    assert all(not f.alive for f in app.hub.followers.values()) or not app.hub.followers


def test_saved_file_modes_survive_a_restrictive_umask(tmp_path):
    from genai_tui.ui.logs import save_text

    old = os.umask(0)
    try:
        path = save_text(tmp_path, "../../etc/passwd", "x\n")
    finally:
        os.umask(old)
    assert path.parent == tmp_path
    assert path.name.startswith("etc_passwd-")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_not_live_panel_starts_nothing_and_show_lines_is_still_clean(tmp_path):
    from genai_tui.sources.logs import LogLine

    cfg = make_config(tmp_path, "qwen", "evil\x1b]0;x\x07name")

    class Plain(App):
        def compose(self) -> ComposeResult:
            yield LogPanel(cfg, id="logs")  # no hub: not live

    app = Plain()
    async with app.run_test(size=(100, 20)) as pilot:
        panel = app.query_one(LogPanel)
        assert panel.source is None and panel._hub is None  # no Docker stream started
        panel.follow_all()
        panel.show_lines([
            LogLine(T0 * 10**9, "qwen", f"\x1b[2Jtoken={HASH}", None),
            LogLine(T0 * 10**9 + 1, "evil\x1b]0;x\x07name", "bell\x07", None),
        ], "demo", merged=True)
        await pilot.pause(0.05)
        assert panel._hub is None
        rows = "\n".join(widget_rows(panel))
        assert_terminal_safe(rows)
        assert_no_secret(rows)
        assert "evilname │ bell" in rows


async def test_panel_follows_a_process_service_log_file(tmp_path):
    """A live panel whose only service runs outside Docker (`runtime = "process"`): its
    `log_file` is followed like a container — the lines a real process appends show up,
    cleaned and redacted, and the status says where they come from."""
    import shlex
    import subprocess
    import sys

    h = make_hash("process-panel")
    (tmp_path / "api.token").write_text(h + "\n")
    log = tmp_path / "logs" / "orch.log"
    log.parent.mkdir()
    log.write_bytes(b"".join(b"old %d\n" % i for i in range(30)))
    toml = tmp_path / "genai-tui.toml"
    toml.write_text("""
[logs]
tail = 5
flush_interval = 0.05

[[services]]
name = "orch"
url = "http://127.0.0.1:1"
kind = "orchestrator"
runtime = "process"
log_file = "logs/orch.log"

[[tokens.locations]]
name = "secrets"
path = "api.token"
format = "hash_file"
""")
    from genai_tui import config as configmod

    cfg = configmod.load_file(toml, env={})
    stack = Stack(cfg, parts={"logs"})  # no hub given: the engine makes its own, real one
    assert stack.live
    app = PanelApp(stack, initial="orch")
    script = ("import os\nfor i in range(40):\n"
              "    os.write(1, f'new {i}\\n'.encode())\n"
              f"os.write(1, b'\\x1b[31mFor direct API calls, use token={h}\\x1b[0m\\n')\n")
    async with app.run_test(size=(100, 24)) as pilot:
        panel = app.query_one(LogPanel)
        await wait_until(pilot, lambda: panel.view.line_count == 5)
        assert [ln.text for ln in panel.view.lines()] == [f"old {i}" for i in range(25, 30)]
        assert panel.status_text.startswith("orch · following")
        assert f"log file {log}" in panel.status_text
        assert "not followed" not in panel.status_text
        cmd = f"{shlex.quote(sys.executable)} -c {shlex.quote(script)} >> {shlex.quote(str(log))}"
        await asyncio.to_thread(subprocess.run, ["sh", "-c", cmd], check=True, timeout=30)
        await wait_until(pilot, lambda: panel.view.line_count == 46)
        texts = [ln.text for ln in panel.view.lines()]
        assert texts[5:45] == [f"new {i}" for i in range(40)]
        assert texts[45] == f"For direct API calls, use token=[redacted {fingerprint(h)}]"
        rows = "\n".join(widget_rows(panel))
        assert "new 39" in rows and "[redacted fp:" in rows
        assert_terminal_safe(rows)
        assert h[7:20] not in screen_text(app)
        await wait_until(pilot, lambda: any(e.kind == "token"
                                            for e in stack.snapshot.log_events))
        assert stack.snapshot.log_events[-1].fingerprint == fingerprint(h)
        await pilot.press("t")
        assert "times UTC, log files: time read" in panel.status_text
        panel.follow_all()  # the merged view has it too (the only service of the stack)
        await pilot.pause(0.05)
        assert panel.view.line_count == 46
        assert any("orch │ For direct API calls, use token=[redacted" in r
                   for r in widget_rows(panel))
        assert panel.hub is stack.logs
        followers = list(panel.hub.followers.values())
    assert followers and all(not f.alive for f in followers)


async def test_an_idle_follow_is_not_polled_and_a_new_line_still_shows_at_once(tmp_path):
    """Left open all day on a quiet service, the panel does not look at its source ten
    times a second (each look is a wake-up of the whole app): the follower says when
    lines come. One status look a second remains, and a line written then still shows."""
    log = tmp_path / "quiet.log"
    log.write_bytes(b"first\n")
    toml = tmp_path / "genai-tui.toml"
    toml.write_text("""
[logs]
flush_interval = 0.05

[[services]]
name = "quiet"
url = "http://127.0.0.1:1"
kind = "orchestrator"
runtime = "process"
log_file = "quiet.log"
""")
    from genai_tui import config as configmod

    cfg = configmod.load_file(toml, env={})
    app = PanelApp(Stack(cfg, parts={"logs"}), initial="quiet")
    async with app.run_test(size=(100, 24)) as pilot:
        panel = app.query_one(LogPanel)
        await wait_until(pilot, lambda: panel.view.line_count == 1)
        before = panel.flushes
        await pilot.pause(2.0)
        # polled at flush_interval this would be about 40
        assert panel.flushes - before <= 3, panel.flushes - before
        with log.open("ab") as f:
            f.write(b"second\n")
        await wait_until(pilot, lambda: panel.view.line_count == 2)
        assert [ln.text for ln in panel.view.lines()] == ["first", "second"]
