"""The keys as a user meets them: the README's key table, the app's bindings and the help
screen say the same thing; the command palette lists our commands with their key and
target and no Textual duplicate; `1`–`5` only where they do something; Ctrl+R says when
every panel is current; the rotate plan's buttons stay on an 80×24 screen."""

from __future__ import annotations

import re
from pathlib import Path

from textual.binding import Binding
from textual.widgets import Button

from genai_tui.config import Config, ProbeConfig, ServiceConfig, TokenLocation
from genai_tui.engine.live import Stack
from genai_tui.ui.app import KEYS, GenaiTui, key_label
from genai_tui.ui.logs import LogPanel
from genai_tui.ui.probes import ProbesPanel
from genai_tui.ui.screens.help import HelpScreen
from genai_tui.ui.screens.unify import UnifyScreen
from tests.tokens_helpers import make_stack
from tests.ui.helpers import screen_text, wait_until
from tests.ui.test_dashboard import settle, snapshot_app
from tests.ui.test_tokens_panel import config_for, tokens_app

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_keys() -> list[tuple[str, list[tuple[str, str]]]]:
    """The README's "### Keys" section: (sub-heading, [(keys, what)]) per table, keys
    written as in the help ("`Esc` / `q`" -> "Esc / q")."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n### Keys\n", 1)[1].split("\n## ", 1)[0]
    section = re.split(r"\n### (?!#)", section, maxsplit=1)[0]
    out: list[tuple[str, list[tuple[str, str]]]] = []
    for block in section.split("\n#### ")[1:]:
        title, _, body = block.partition("\n")
        rows = []
        for line in body.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) != 2 or cells[0] in ("key", "---") or set(cells[0]) <= {"-"}:
                continue
            rows.append((cells[0].replace("`", ""), cells[1]))
        out.append((title.strip(), rows))
    return out


def flat_text(screen: str) -> str:
    """The screen's words in reading order: box and scrollbar glyphs out, wrapped cells
    joined (the key column never wraps, so a wrapped description reads on)."""
    return " ".join(re.sub(r"[\u2580-\u259f\u2500-\u257f]", " ", screen).split())


async def help_text(pilot) -> str:
    """Every word the open help screen shows, read page by page (it scrolls at 80×24)."""
    seen = ""
    scroller = pilot.app.screen.query_one("VerticalScroll")
    for _ in range(12):
        seen += screen_text(pilot.app)
        scroller.scroll_page_down(animate=False)
        await pilot.pause(0.05)
    return flat_text(seen)


async def test_readme_key_table_is_the_help_and_the_bindings():
    """At 80×24 (compact: every key is offered) the help lists, section by section and
    row by row, exactly the README's table; every binding with a description is in it
    under its key; and the help screen shows each row."""
    app = snapshot_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        help_sections = app.key_help()
        assert readme_keys() == help_sections
        dashboard = dict(help_sections)["Dashboard"]
        listed = {k for keys, _w in dashboard for k in keys.split(" / ")}
        for _bid, (keys, _action, description) in KEYS.items():
            assert description and key_label(keys) in listed, (keys, description)
        log_rows = dict(help_sections)["Log panel (when focused)"]
        log_keys = {k for keys, _w in log_rows for k in keys.split(" / ")}
        for b in LogPanel.BINDINGS:
            if isinstance(b, Binding) and b.description:
                assert key_label(b.key) in log_keys, b
        # what the screen shows: every row's words (in words, not "Compact: logs")
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        flat = await help_text(pilot)
        for _title, rows in help_sections:
            for keys, words in rows:
                assert f"{keys} {' '.join(words.split())}" in flat, (keys, words)
        assert "Compact:" not in flat
        for moving in ("Enter", "Tab / Shift+Tab", "PgUp / PgDn", "Home / End"):
            assert moving in flat


async def test_palette_lists_our_commands_with_key_and_target_and_no_duplicate():
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        commands = list(app.get_system_commands(app.screen))
        titles = [c.title for c in commands]
        assert len(titles) == len(set(titles)), titles
        # Textual's second help ("Keys") and its own "Quit" are gone: one each of ours
        assert "Keys" not in titles
        assert sum(t.lower() in ("quit", "help", "keys") for t in titles) == 2
        by_title = {c.title: c.help for c in commands}
        assert by_title["Quit"].startswith("q")
        assert by_title["Help"].startswith("? ")
        # the key in force and what it acts on: the selected row by name
        assert by_title["Restart"].startswith("r · restart comfyui-qwen")
        assert by_title["Logs"] == "l · follow the log of comfyui-qwen"
        assert by_title["Findings"].startswith("! · ")
        assert by_title["Refresh all"].startswith("Ctrl+R · ")
        assert by_title["Logs: Filter"].startswith("/ · log panel: ")


async def test_palette_follows_the_keymap():
    from dataclasses import replace

    from tests.ui.test_dashboard import reference_config

    app = GenaiTui(replace(reference_config(), keys={"restart": "x"}), start_sources=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        by_title = {c.title: c.help for c in app.get_system_commands(app.screen)}
        assert by_title["Restart"].startswith("x · restart comfyui-qwen")


async def test_digit_keys_only_in_the_compact_layout():
    """Wide: every panel is on screen, so 1–5 are not offered (not in the help or the
    palette) and do nothing; compact: they pick the panel below the containers."""
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        dashboard = dict(app.key_help())["Dashboard"]
        assert not [k for k, _w in dashboard if k in "12345"], dashboard
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert not {t for t in titles if t.startswith("Show ")}, titles
        def shown() -> list[tuple[str | None, object]]:  # what is on screen, and where
            return [(w.id, w.region) for w in app.screen.query("*") if w.display and w.id]

        before = shown()  # (not the text: the uptime cells tick each second)
        await pilot.press("2")
        await pilot.pause(0.1)
        assert app.view == "logs"
        assert app.query_one(ProbesPanel).display and app.query_one(LogPanel).display
        assert shown() == before
        # compact: offered, and pressing 2 shows the probes instead of the logs
        await pilot.resize_terminal(80, 24)
        await wait_until(pilot, lambda: [k for k, _w in dict(app.key_help())["Dashboard"]
                                         if k in "12345"] == ["1", "2", "3", "4", "5"])
        await pilot.press("2")
        await pilot.pause(0.1)
        assert app.query_one(ProbesPanel).display and not app.query_one("#bottom").display
        # the help, already built at 120×40, now lists them
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert "show the probes below the containers" in await help_text(pilot)


async def test_readonly_keeps_mutating_keys_out_of_footer_help_and_palette():
    app = snapshot_app(readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        # the footer is drawn once its keys are known (later on a busy machine)
        await wait_until(pilot, lambda: "Quit" in screen_text(app).splitlines()[-1])
        footer = screen_text(app).splitlines()[-1]
        assert "Restart" not in footer and "Unify" not in footer
        assert "Probe now" in footer and "Findings" in footer
        keys = {k for k, _w in dict(app.key_help())["Dashboard"]}
        assert not keys & {"r", "R", "u"}, keys
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert not titles & {"Restart", "Restart all", "Unify tokens"}
        await pilot.press("r")
        await pilot.pause(0.1)
        assert "read-only mode: restart is disabled" in [n.message for n in
                                                           app._notifications]


async def test_ctrl_r_says_so_and_every_live_part_polls_again():
    """A live engine (probes, tokens, host) with a 5-minute probe interval: Ctrl+R asks
    every part for a fresh round at once, says so, and says again when all are current."""
    services = (ServiceConfig("svc", "http://127.0.0.1:9", "http", container="gtt-none"),)
    cfg = Config(services=services, probes=ProbeConfig(interval=300.0))
    parts = ("probes", "tokens", "host")
    app = GenaiTui(cfg, stack=Stack(cfg, parts=set(parts)))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: all(app.stack.rounds(p) >= 1 for p in parts))
        await wait_until(pilot, lambda: not any(app.stack.in_flight(p) for p in parts))
        before = {p: app.stack.rounds(p) for p in parts}
        await pilot.press("ctrl+r")

        def messages() -> list[str]:
            return [n.message for n in app._notifications]

        await wait_until(pilot, lambda: "every panel is current" in messages())
        assert "refreshing every panel now" in messages()
        for p in parts:
            assert app.stack.rounds(p) > before[p], p


def _many_locations(st) -> None:
    """Eight more ComfyUI PASSWORD copies (one per service of a big stack)."""
    for i in range(8):
        d = st.root / f"login{i}"
        d.mkdir()
        (d / "PASSWORD").write_text(f"{st.hash}\nadmin")
        (d / "PASSWORD").chmod(0o600)
        st.locations.append(TokenLocation(f"password-{i}", d / "PASSWORD", "password_file"))


async def test_rotate_plan_buttons_stay_on_an_80x24_screen(tmp_path):
    st = make_stack(tmp_path)
    _many_locations(st)
    app = tokens_app(config_for(st))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.stack.snapshot.tokens is not None)
        await pilot.press("u")
        await wait_until(pilot, lambda: isinstance(app.screen, UnifyScreen)
                         and app.screen.step == "choose")
        screen = app.screen
        await pilot.press("end", "enter")  # the last choice: rotate
        await wait_until(pilot, lambda: screen.step == "plan", timeout=60)
        await pilot.pause(0.2)
        shown = [b for b in screen.query(Button) if b.display]
        assert [b.id for b in shown] == ["btn-apply", "btn-back", "btn-close"]
        for b in shown:
            region = b.region
            assert region.height == 3 and region.bottom <= 24, (b.id, region)
            assert app.screen.get_widget_at(region.x + 2, region.y + 1)[0] is b, b.id
        assert "Apply 13 change(s)" in screen_text(app)
        # the plan itself scrolls: its last line can be brought on screen
        body = screen.query_one("#unify-scroll")
        assert body.max_scroll_y > 0
        body.scroll_end(animate=False)
        await pilot.pause(0.1)
        assert "password-7" in screen_text(app)
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, UnifyScreen))
