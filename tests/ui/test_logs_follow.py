"""Follow mode really follows (issue #13 item 1): on the dashboard, the newest log line is
on screen after every append and after every re-layout — wrap on and off, the filter input
opening, a filter typed and cleared, a resize, the compact view switch — and after `End`;
scrolling up (Up, PageUp, Home, the wheel) pauses it, and the new lines are then not
dragged into view until `End`. Also: wrapped lines hang under the message, saved views go
to `$XDG_STATE_HOME/genai-tui/logs/`, and the footer keeps the dashboard's keys while the
log panel has focus.

What is "on screen" is read from the compositor (the terminal's cells), cropped to the log
view's rows, never from the widget's own data. The lines come through the real follower
pipeline (`FeedSource`, see test_logs_panel.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from textual.events import MouseScrollUp

from genai_tui.engine.live import Stack
from genai_tui.ui.app import KEYS, SHOWN_IN_FOOTER, GenaiTui
from genai_tui.ui.logs import LogPanel, logs_dir
from tests.ui.helpers import screen_text, wait_until
from tests.ui.test_logs_panel import FeedSource, feed_app, feed_hub, make_config

SIZES = [(80, 24), (120, 40), (200, 50)]
#: wider than the log panel at every size: a horizontal scrollbar comes with it
LONG = "GET /api/prompt HTTP/1.1 200 " * 9


def on_screen(app, widget) -> list[str]:
    """The terminal's rows inside `widget`'s scrollable area (scrollbars excluded)."""
    strips = app.screen._compositor.render_strips()
    r = widget.scrollable_content_region
    return [strips[y].crop(r.x, r.x + r.width).text for y in range(r.y, r.y + r.height)]


def region_text(app, widget) -> str:
    """Everything `widget` shows inside its border, its rows joined and blanks dropped
    (a path wrapped over rows)."""
    strips = app.screen._compositor.render_strips()
    r = widget.content_region
    rows = [strips[y].crop(r.x, r.x + r.width).text for y in range(r.y, r.y + r.height)]
    return "".join(rows).replace(" ", "")


class Feed:
    """Numbered lines for one service; every third is long (like a request log line)."""

    def __init__(self, source: FeedSource) -> None:
        self.source = source
        self.n = 0

    def emit(self, k: int = 1) -> str:
        texts = []
        for _ in range(k):
            i = self.n
            self.n += 1
            texts.append(f"#{i:05d} " + (LONG if i % 3 == 0 else "probe ok"))
        self.source.lines(texts, start=self.n - k)
        return f"#{self.n - 1:05d} "  # the newest line's marker


def dashboard(tmp_path: Path) -> tuple[GenaiTui, dict[str, FeedSource]]:
    """The real dashboard with only the engine's log streams live (the merged view)."""
    cfg = make_config(tmp_path, "comfyui-qwen", "orchestrator")
    hub, sources = feed_hub(cfg)
    return GenaiTui(cfg, stack=Stack(cfg, parts={"logs"}, hub=hub)), sources


async def start(pilot, app, sources) -> tuple[LogPanel, Feed]:
    panel = app.query_one(LogPanel)
    await wait_until(pilot, lambda: set(sources) == {"comfyui-qwen", "orchestrator"})
    panel.view.focus()
    await pilot.pause()
    return panel, Feed(sources["comfyui-qwen"])


async def shown_after_append(pilot, app, panel: LogPanel, feed: Feed, step: str,
                             k: int = 1) -> None:
    """Append `k` lines; the newest must reach the screen (a bounded wait: 5 s is
    only there for a loaded CI host, the view gets there in a frame or two)."""
    marker = feed.emit(k)
    await wait_until(pilot, lambda: panel.view.line_count >= feed.n or not panel.follow)
    try:
        await wait_until(pilot, lambda: any(marker in r for r in on_screen(app, panel.view)),
                         timeout=5)
    except AssertionError as exc:
        raise AssertionError(f"after {step}: newest line {marker!r} not on screen "
                             f"(status: {panel.status_text})\n{exc}") from None
    assert "following" in panel.status_text, step


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_follow_keeps_the_newest_line_on_screen(tmp_path, size):
    width, height = size
    app, sources = dashboard(tmp_path)
    async with app.run_test(size=size) as pilot:
        panel, feed = await start(pilot, app, sources)
        await shown_after_append(pilot, app, panel, feed, "the first burst", k=60)
        await shown_after_append(pilot, app, panel, feed, "nothing")
        await shown_after_append(pilot, app, panel, feed, "another append", k=4)

        await pilot.press("w")
        assert panel.view.wrap
        await shown_after_append(pilot, app, panel, feed, "w (wrap on)")
        await pilot.press("w")
        assert not panel.view.wrap
        await shown_after_append(pilot, app, panel, feed, "w w (wrap off)")

        await pilot.press("slash")  # the filter input opens under the view
        await shown_after_append(pilot, app, panel, feed, "/ (filter input open)")
        await pilot.press(*"probe|GET", "enter")
        assert panel.view.filter is not None
        await shown_after_append(pilot, app, panel, feed, "a filter typed")
        await pilot.press("escape")
        assert panel.view.filter is None
        await shown_after_append(pilot, app, panel, feed, "the filter cleared")

        await pilot.resize_terminal(width + 11, height + 3)
        await shown_after_append(pilot, app, panel, feed, "a resize")
        await pilot.resize_terminal(width, height)
        await shown_after_append(pilot, app, panel, feed, "a resize back")

        # the compact layout's view switch: the log panel hidden, lines come, shown again
        wide = not app.screen.has_class("-compact")
        if wide:
            await pilot.resize_terminal(90, 28)
            assert app.screen.has_class("-compact")
            await shown_after_append(pilot, app, panel, feed, "wide -> compact")
        await pilot.press("3")
        assert not panel.display
        feed.emit(5)
        await wait_until(pilot, lambda: panel.view.line_count >= feed.n)
        await pilot.press("1")
        assert panel.display
        panel.view.focus()
        await shown_after_append(pilot, app, panel, feed, "the compact view switch 3, 1")
        if wide:
            await pilot.resize_terminal(width, height)
            assert not app.screen.has_class("-compact")
            await shown_after_append(pilot, app, panel, feed, "compact -> wide")

        # End after scrolling up: paused (the new line stays below), End shows it at once
        await pilot.press("pageup")
        await wait_until(pilot, lambda: "paused" in panel.status_text)
        before = on_screen(app, panel.view)
        marker = feed.emit()
        await wait_until(pilot, lambda: "paused · 1 new line below" in panel.status_text)
        await pilot.pause()
        assert on_screen(app, panel.view) == before  # not dragged into view
        assert not any(marker in r for r in before)
        await pilot.press("end")
        await wait_until(pilot, lambda: any(marker in r for r in on_screen(app, panel.view)),
                         timeout=5)
        assert "following" in panel.status_text
        await shown_after_append(pilot, app, panel, feed, "End after PageUp")


async def _wheel_up(pilot, view) -> None:
    await pilot._post_mouse_events([MouseScrollUp], view, offset=(5, 2))


@pytest.mark.parametrize("how", ["up", "pageup", "home", "wheel"])
async def test_scrolling_up_pauses_follow_until_end(tmp_path, how):
    app, sources = dashboard(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        panel, feed = await start(pilot, app, sources)
        await shown_after_append(pilot, app, panel, feed, "three lines", k=3)
        await (_wheel_up(pilot, panel.view) if how == "wheel" else pilot.press(how))
        assert panel.follow  # all lines on screen: nothing scrolled, nothing to pause
        await shown_after_append(pilot, app, panel, feed, f"{how} with nothing above")
        await shown_after_append(pilot, app, panel, feed, "a burst", k=80)
        if how == "wheel":
            await _wheel_up(pilot, panel.view)
        else:
            await pilot.press(how)
        assert not panel.follow
        await wait_until(pilot, lambda: panel.status_text.startswith(
            "all services · paused · 0 new lines below"))
        before = on_screen(app, panel.view)
        marker = feed.emit(3)
        await wait_until(pilot, lambda: "paused · 3 new lines below" in panel.status_text)
        await pilot.pause()
        assert on_screen(app, panel.view) == before  # the user's place is kept
        assert not any(marker in r for r in before)
        await pilot.press("end")
        await wait_until(pilot, lambda: any(marker in r for r in on_screen(app, panel.view)),
                         timeout=5)
        assert panel.follow and "following" in panel.status_text
        await shown_after_append(pilot, app, panel, feed, f"End after {how}")


async def test_wrapped_lines_hang_under_the_message(tmp_path):
    app, sources = feed_app(tmp_path, "qwen", "orch", initial="all")
    async with app.run_test(size=(60, 12)) as pilot:
        panel = app.query_one(LogPanel)
        await wait_until(pilot, lambda: set(sources) == {"qwen", "orch"})
        message = "".join(f"{i:03d}." for i in range(40))  # 160 cells, every one distinct
        sources["qwen"].lines(["short", message])
        await wait_until(pilot, lambda: panel.view.line_count == 2)
        await pilot.press("t", "w")
        await pilot.pause()
        rows = [r.rstrip() for r in on_screen(app, panel.view) if r.strip()]
        prefix = "00:00:01.000 qwen │ "  # time and service before the message
        assert rows[0] == "00:00:00.000 qwen │ short"
        assert rows[1].startswith(prefix + "000.")
        continuation = rows[2:]
        assert len(continuation) >= 2
        for row in continuation:  # each continuation row starts under the message
            assert row.startswith(" " * len(prefix)) and row[len(prefix)] != " ", row
        text = rows[1][len(prefix):] + "".join(r[len(prefix):] for r in continuation)
        assert text == message  # nothing lost or repeated at the row breaks


async def test_saved_view_goes_to_xdg_state_home_and_the_path_is_shown(tmp_path,
                                                                      monkeypatch):
    state = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    config_dir = tmp_path / "etc"  # the config's folder: nothing is written beside it
    config_dir.mkdir()
    app, sources = feed_app(config_dir, "qwen")
    async with app.run_test(size=(120, 30), notifications=True) as pilot:
        panel = app.query_one(LogPanel)
        sources["qwen"].lines(["got prompt", "Prompt executed in 1.00 seconds"])
        await wait_until(pilot, lambda: panel.view.line_count == 2)
        await pilot.press("s")
        await wait_until(pilot, lambda: panel.saved_path is not None)
        path = panel.saved_path
        assert path.parent == state / "genai-tui" / "logs"
        assert path.name.startswith("qwen-") and path.suffix == ".log"
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert [ln.split(" ", 1)[1] for ln in path.read_text().splitlines()] == [
            "got prompt", "Prompt executed in 1.00 seconds"]
        assert list(config_dir.iterdir()) == []
        assert f"saved 2 lines to {path}" in panel.status_text
        await pilot.pause()
        full = str(path).replace(" ", "")
        assert full in region_text(app, panel.status)  # the whole path, on screen
        await wait_until(pilot, lambda: app.screen.query("Toast"))  # the toast, too
        assert any(full in region_text(app, t) for t in app.screen.query("Toast"))


def test_logs_dir_follows_xdg_state_home():
    assert logs_dir({"XDG_STATE_HOME": "/var/state", "HOME": "/home/u"}) == Path(
        "/var/state/genai-tui/logs")
    assert logs_dir({"HOME": "/home/u"}) == Path("/home/u/.local/state/genai-tui/logs")
    # the XDG spec: a relative path is invalid and ignored
    assert logs_dir({"XDG_STATE_HOME": "state", "HOME": "/home/u"}) == Path(
        "/home/u/.local/state/genai-tui/logs")


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
async def test_footer_keeps_the_dashboard_keys_while_the_log_has_focus(tmp_path, size):
    """The dashboard's own keys come first: at 80 columns the log panel's keys are the
    ones cut (they are in its status line, the help and the palette), never r, l, p, u."""
    app, sources = dashboard(tmp_path)
    async with app.run_test(size=size) as pilot:
        panel, _feed = await start(pilot, app, sources)
        await wait_until(pilot, lambda: app.focused is panel.view)
        # the footer recomposes after the focus change: waited for, not paused
        await wait_until(pilot, lambda: " r Restart " in (f := screen_text(app).splitlines()[-1])
                         and (size[0] < 120 or "Filter" in f))
        footer = screen_text(app).splitlines()[-1]
        if size[0] >= 120:
            assert "Filter" in footer and "Follow" in footer  # the log panel's keys
            for bid in sorted(SHOWN_IN_FOOTER):  # all of them, as with any panel focused
                _keys, _action, description = KEYS[bid]
                assert f" {description} " in footer + " ", (bid, footer)
        for key in (" r Restart ", " l Logs ", " p Probe now ", " u Unify"):
            assert key in footer, (key, footer)
