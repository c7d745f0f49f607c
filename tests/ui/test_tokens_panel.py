"""The tokens panel and the unify modal through Textual's Pilot, in the real dashboard
driven by the engine's token reads (`Stack(parts={"tokens"})`), on real token files."""

from __future__ import annotations

from genai_tui.config import Config, ServiceConfig
from genai_tui.engine.live import Stack
from genai_tui.secret import fingerprint
from genai_tui.sources import tokens as tk
from genai_tui.ui.app import GenaiTui
from genai_tui.ui.screens.unify import UnifyScreen
from genai_tui.ui.tokens import TokensPanel
from tests.tokens_helpers import leaks, make_stack, new_pair
from tests.ui.helpers import screen_text, wait_until


def tokens_app(config: Config, readonly: bool = False) -> GenaiTui:
    """The dashboard with only the engine's token reads live (`u` is `action_unify`)."""
    return GenaiTui(config, readonly=readonly, stack=Stack(config, parts={"tokens"}))


#: the name tests/unit/test_tokens_secrets.py imports (it drives the same app)
TokensApp = tokens_app

#: the full layout: the tokens panel in the side column
SIZE = (120, 40)


def config_for(st, restart: tuple[str, ...] = ()) -> Config:
    st.restart_after_unify = restart
    svc = ServiceConfig("qwen", "http://127.0.0.1:9", "comfyui", container="gtt-none",
                        auth=True)
    return Config(services=(svc,), tokens=st.tokens, base_dir=st.root)




def cell(app, row: str, column: str) -> str:
    return str(app.query_one("#tokens-table").get_cell(row, column))


async def test_panel_shows_states_and_consistency(tmp_path):
    st = make_stack(tmp_path)
    _, other = new_pair()
    st.path("password").write_text(f"{other}\r\nadmin")
    app = tokens_app(config_for(st))
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(TokensPanel)
        await wait_until(pilot, lambda: panel.report is not None)
        assert cell(app, "secrets", "state") == "ok"
        assert cell(app, "password", "state") == "mismatch"
        assert cell(app, "password", "fp") == fingerprint(other)
        text = screen_text(app)
        # the problems column gives way to the whole names and fingerprints in the 48-wide
        # side column: its content moves under the verdict, not off the screen
        assert "password CRLF" in text
        assert "NOT consistent" in text and "secrets*" in text
        assert app.stack.snapshot.tokens is panel.report  # published by the engine
        assert not leaks(text, [st.hash, st.raw, other])
        # the engine polls the files: a fix on disk shows up without a key press (asked
        # for now rather than at the next 5 s round)
        rounds = app.stack.rounds("tokens")
        st.path("password").write_text(f"{st.hash}\nadmin")
        app.stack.refresh("tokens")
        await wait_until(pilot, lambda: app.stack.rounds("tokens") > rounds)
        await wait_until(pilot, lambda: cell(app, "password", "state") == "ok")
        await wait_until(pilot, lambda: "✓ consistent" in screen_text(app))


async def test_u_in_readonly_only_notifies(tmp_path):
    st = make_stack(tmp_path)
    app = tokens_app(config_for(st), readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(TokensPanel)
        await wait_until(pilot, lambda: panel.report is not None)
        assert panel.border_subtitle == "read-only"
        await pilot.press("u")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, UnifyScreen)
        app.action_unify()  # the action itself refuses too, not only the key
        await pilot.pause(0.2)
        assert not isinstance(app.screen, UnifyScreen)
        shown = [n.message for n in app._notifications]
        assert shown.count("read-only mode: unify is disabled") == 2


async def test_unify_modal_flow(tmp_path):
    st = make_stack(tmp_path)
    _, other = new_pair()
    st.path("password").write_text(f"{other}\nadmin")
    app = tokens_app(config_for(st, restart=("qwen",)))
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(TokensPanel)
        await wait_until(pilot, lambda: panel.report is not None)
        await pilot.press("u")
        await wait_until(pilot, lambda: isinstance(app.screen, UnifyScreen)
                         and app.screen.step == "choose")
        screen = app.screen
        text = screen_text(app)
        # both distinct values are offered with their locations; canonical first
        assert fingerprint(st.hash) in text and fingerprint(other) in text
        assert "New credential (rotate)" in text
        await pilot.press("enter")  # the canonical value
        await wait_until(pilot, lambda: screen.step == "plan")
        text = screen_text(app)
        assert f"{fingerprint(other)} → {fingerprint(st.hash)}" in text
        assert "Apply 1 change(s)" in text
        await pilot.press("a")
        await wait_until(pilot, lambda: screen.step == "offer_restart")
        assert st.path("password").read_text() == f"{st.hash}\nadmin"
        # the restart is offered to qwen, saying why it needs one (its PASSWORD changed and
        # the server, down here, could not be asked which hash it uses)
        text = screen_text(app)
        assert "Restart now?" in text
        assert "qwen: PASSWORD changed; the server could not be asked" in text
        await pilot.press("n")
        await wait_until(pilot, lambda: screen.step == "done")
        assert "docker restart gtt-none" in screen_text(app)
        await pilot.press("c")
        await wait_until(pilot, lambda: not isinstance(app.screen, UnifyScreen))
        await wait_until(pilot, lambda: panel.report is not None and panel.report.consistent)
        assert not leaks(screen_text(app), [st.hash, st.raw, other])
        assert tk.read_audit(st.tokens.audit_log)[-1]["what"] in ("unify", "status_change")


async def test_modal_choose_other_source_and_back(tmp_path):
    st = make_stack(tmp_path)
    _, other = new_pair()
    st.path("password").write_text(f"{other}\nadmin")
    app = tokens_app(config_for(st))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("u")
        await wait_until(pilot, lambda: isinstance(app.screen, UnifyScreen)
                         and app.screen.step == "choose")
        screen = app.screen
        await pilot.press("down", "enter")  # the password's value
        await wait_until(pilot, lambda: screen.step == "plan")
        assert screen.plan is not None and screen.plan.source == "password"
        await pilot.press("b")
        await wait_until(pilot, lambda: screen.step == "choose")
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, UnifyScreen))
        assert st.path("password").read_text() == f"{other}\nadmin"  # nothing applied
