"""The findings view (`!`, or Enter/click on the findings bar): every finding in full,
grouped by kind with security first, since when, the paths, Docker's own error and the
last error line of the service's log; its keys act on the finding chosen there.

The findings are published to the engine as fixed values (the engine's wording is
diagnose.py's business and tested there): these tests are about what the view does."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from genai_tui.config import Config, ServiceConfig, TokensConfig
from genai_tui.engine.live import Stack
from genai_tui.model import ContainerInfo, DockerStatus, Finding, Severity
from genai_tui.ui.app import GenaiTui
from genai_tui.ui.findings import FindingsBar, render_findings
from genai_tui.ui.logs import LogPanel
from genai_tui.ui.screens.confirm import ConfirmScreen
from genai_tui.ui.screens.findings import FindingsScreen
from tests.ui.helpers import screen_text, until_derived, wait_until
from tests.ui.test_dashboard import feed, rows, snapshot_app

C, W = Severity.CRITICAL, Severity.WARNING
NOW = datetime(2026, 12, 2, 3, 16, 30, tzinfo=UTC)
NEVER_STARTED = ('OCI runtime create failed: exec: "/opt/flux/run.sh": stat '
                 "/opt/flux/run.sh: no such file or directory")
#: nine world-readable copies, in full (long on purpose: no "…" in the view)
PATHS = tuple(f"/srv/genai/workspace/comfyui-node-{i}/custom_nodes/ComfyUI-Login/PASSWORD"
              for i in range(9))


def failing() -> list[Finding]:
    """Two containers down and the rest of a bad day, in an order that puts the port
    problem first (the view must still put security first)."""
    return [
        Finding("port_unreachable", C, "orchestrator",
                "orchestrator: http://127.0.0.1:8193 published but nothing listens",
                "restart", since=NOW - timedelta(minutes=4)),
        Finding("never_started", C, "flux-1-dev",
                f"flux-1-dev: never started: {NEVER_STARTED}", "read_logs",
                since=NOW - timedelta(minutes=12)),
        Finding("oom_killed", C, "stable-diffusion-35",
                "stable-diffusion-35: killed by the kernel OOM killer (exit 137, OOMKilled):"
                " raise its memory limit or free host RAM", "restart",
                since=NOW - timedelta(minutes=3, seconds=10)),
        Finding("password_missing", C, "comfyui-qwen",
                "comfyui-qwen: ComfyUI-Login has no PASSWORD (first-login state): the first"
                " visitor picks the credentials", "unify",
                since=NOW - timedelta(hours=2)),
        Finding("token_file_problem", W, None,
                "9 token files are world-readable (mode 0644): anyone on the host can read"
                " the credential", "chmod", since=NOW - timedelta(days=3), paths=PATHS),
        Finding("gpu_memory_high", W, None,
                "GPU 0 NVIDIA GeForce RTX 3080 Laptop GPU memory at 96% (held by "
                "flux-1-dev): the next job may OOM"),
    ]


@pytest.fixture(autouse=True)
def _utc(monkeypatch):
    """"since 03:12" is local time: pin it for the snapshots."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def bad_day(pilot) -> None:
    """The reference stack fed through the engine, flux-1-dev never started (Docker's
    State.Error), then the fixed findings above."""
    app = pilot.app
    app.clock = lambda: NOW
    feed(app)
    flux = ContainerInfo("flux-1-dev", "flux-1-dev", id="b" * 64, state="exited",
                         exit_code=127, state_error=NEVER_STARTED, image="python:3.11")
    before = app.stack.diagnosed
    app.stack.apply_containers(DockerStatus(True), [flux])
    await until_derived(pilot, before)  # the engine's own findings come and go first
    app.stack.publish("findings", failing())
    await pilot.pause(0.1)


async def open_view(pilot) -> FindingsScreen:
    await bad_day(pilot)
    await pilot.press("exclamation_mark")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, FindingsScreen))
    await pilot.pause(0.1)
    return pilot.app.screen


async def choose(pilot, screen: FindingsScreen, service: str) -> None:
    for _ in range(20):
        if screen.selected is not None and screen.selected.service == service:
            return
        await pilot.press("down")
    raise AssertionError(f"no finding about {service}")


def view_text(app) -> str:
    return " ".join(screen_text(app).replace("█", " ").split())


def test_snapshot_findings_view_120x40(snap_compare):
    assert snap_compare(snapshot_app(), terminal_size=(120, 40), run_before=open_view)


def test_snapshot_findings_view_80x24(snap_compare):
    assert snap_compare(snapshot_app(), terminal_size=(80, 24), run_before=open_view)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
async def test_r_in_the_view_restarts_that_findings_service(size):
    """The containers table has comfyui-qwen selected; `r` on stable-diffusion-35's
    finding asks about stable-diffusion-35, and `n` goes back to the view."""
    app = snapshot_app()
    async with app.run_test(size=size) as pilot:
        screen = await open_view(pilot)
        assert app.containers.selected_service == "comfyui-qwen"
        await choose(pilot, screen, "stable-diffusion-35")
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        question = app.screen.question
        assert "stable-diffusion-35" in question and "comfyui-qwen" not in question
        await pilot.press("n")
        await wait_until(pilot, lambda: app.screen is screen)
        # Enter does the finding's own fix: the same question
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "stable-diffusion-35" in app.screen.question
        await pilot.press("n")
        # `l` on flux-1-dev's finding: the view closes on flux-1-dev's log
        await wait_until(pilot, lambda: app.screen is screen)
        await choose(pilot, screen, "flux-1-dev")
        await pilot.press("l")
        await wait_until(pilot, lambda: not isinstance(app.screen, FindingsScreen))
        panel = app.query_one(LogPanel)
        assert panel.label == "flux-1-dev" and app.focused is panel.view


async def test_view_groups_by_kind_security_first_with_since_and_fix_words():
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_view(pilot)
        order = [(f.code, f.service) for f in screen.findings]
        assert order == [
            ("password_missing", "comfyui-qwen"),
            ("token_file_problem", None),
            ("never_started", "flux-1-dev"),
            ("oom_killed", "stable-diffusion-35"),
            ("port_unreachable", "orchestrator"),
            ("gpu_memory_high", None),
        ]
        text = view_text(app)
        assert text.index("Security") < text.index("Credentials") < \
            text.index("Containers") < text.index("Ports and probes")
        assert "comfyui-qwen · since 01:16, 2 h" in text
        assert "stable-diffusion-35 · since 03:13, 3 min" in text
        assert "r restart stable-diffusion-35" in text
        assert "u unify the token copies" in text
        # Docker's own reason, in full, beside the finding it explains
        assert f"Docker: {NEVER_STARTED}" in text


async def test_paths_listed_in_full_and_the_bar_says_more_in_words():
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await bad_day(pilot)
        bar = app.query_one(FindingsBar)
        last = rows(app, bar)[-1].strip()
        assert last == ("+2 more: token file problem, GPU memory high  (! or Enter here: "
                        "all findings)"), last
        await pilot.press("exclamation_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, FindingsScreen))
        screen = app.screen
        await choose(pilot, screen, None)  # the token-file finding
        await pilot.pause(0.1)
        text = view_text(app)
        for path in PATHS:
            assert path in text, path


def test_more_line_counts_titles_not_codes():
    findings = [Finding("oom_killed", C, "a", "a: OOM", "restart")] + [
        Finding("unhealthy", W, f"s{i}", f"s{i}: unhealthy", "read_logs") for i in range(2)
    ] + [Finding("token_drift", W, None, "drift", "unify"),
         Finding("some_new_code", W, None, "new", None)]
    text = render_findings(findings, max_lines=2, services=4, view_key="!").plain
    assert text.splitlines()[-1] == ("+4 more: 2 unhealthy, token drift, some new code  "
                                     "(! or Enter here: all findings)")


async def test_readonly_hides_the_mutating_keys_and_refuses_them():
    app = snapshot_app(readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await bad_day(pilot)
        bar_text = "\n".join(rows(app, app.query_one(FindingsBar)))
        assert "[r]" not in bar_text and "[u]" not in bar_text
        assert "[l] ✖ flux-1-dev" in bar_text  # reading a log changes nothing
        await pilot.press("exclamation_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, FindingsScreen))
        screen = app.screen
        # the footer recomposes with the screen's bindings: waited for, not paused
        await wait_until(pilot, lambda: "Its logs" in screen_text(app).splitlines()[-1])
        text = view_text(app)
        footer = screen_text(app).splitlines()[-1]
        assert "Restart" not in footer and "Unify" not in footer and "Its logs" in footer
        assert "r restart" not in text and "u unify" not in text
        assert "fix: restart stable-diffusion-35 (read-only: not from here)" in text
        await choose(pilot, screen, "stable-diffusion-35")
        for key in ("r", "enter", "u"):
            await pilot.press(key)
            await pilot.pause(0.1)
            assert app.screen is screen, key
        said = [n.message for n in app._notifications]
        assert said.count("read-only mode: restart is disabled") == 2
        assert said.count("read-only mode: unify is disabled") == 1


async def test_enter_and_click_on_the_bar_open_the_view():
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await bad_day(pilot)
        bar = app.query_one(FindingsBar)
        bar.focus()
        await pilot.pause(0.05)
        assert app.focused is bar
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, FindingsScreen))
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, FindingsScreen))
        await pilot.click(FindingsBar)
        await wait_until(pilot, lambda: isinstance(app.screen, FindingsScreen))


async def test_the_view_follows_new_findings_and_keeps_the_choice():
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_view(pilot)
        await choose(pilot, screen, "stable-diffusion-35")
        fixed = [f for f in failing() if f.service != "orchestrator"]
        app.stack.publish("findings", fixed)
        await wait_until(pilot, lambda: len(screen.findings) == len(fixed))
        assert screen.selected is not None and screen.selected.service == \
            "stable-diffusion-35"
        assert "orchestrator:" not in view_text(app)


async def test_last_error_line_of_the_services_log(tmp_path):
    """A process service whose log file the engine follows: the view quotes its newest
    error line, redacted like every log line."""
    log = tmp_path / "worker.log"
    secret_hash = "$2b$12$" + "Q" * 53
    log.write_text("worker starting\n"
                   "RuntimeError: CUDA error: an illegal memory access was encountered\n"
                   f"login ok, token={secret_hash}\n"
                   "ValueError: bad prompt shape (1, 77, 768)\n"
                   "worker idle\n")
    svc = ServiceConfig("worker", "http://127.0.0.1:9", "http", runtime="process",
                        log_file=log)
    cfg = Config(services=(svc,), tokens=TokensConfig(), base_dir=tmp_path)
    app = GenaiTui(cfg, stack=Stack(cfg, parts={"logs"}))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: "worker" in app.stack.logs.followers and len(
            app.stack.logs.followers["worker"].snapshot()) >= 5)
        app.stack.publish("findings", [Finding(
            "unhealthy", W, "worker", "worker: answers but not as expected", "read_logs")])
        await pilot.pause(0.1)
        await pilot.press("exclamation_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, FindingsScreen))
        await pilot.pause(0.1)
        text = view_text(app)
        assert "last error in its log: ValueError: bad prompt shape (1, 77, 768)" in text
        assert "Q" * 20 not in text


async def test_keys_in_the_view_follow_the_keymap():
    from tests.ui.test_dashboard import reference_config

    app = GenaiTui(replace(reference_config(), keys={"restart": "x", "findings": "F"}),
                   start_sources=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await bad_day(pilot)
        await pilot.press("F")
        await wait_until(pilot, lambda: isinstance(app.screen, FindingsScreen))
        screen = app.screen
        await pilot.pause(0.1)
        assert "x restart stable-diffusion-35" in view_text(app)
        await choose(pilot, screen, "stable-diffusion-35")
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "stable-diffusion-35" in app.screen.question


async def test_enter_on_a_paused_finding_offers_unpause_not_restart(monkeypatch):
    """A paused container answers nothing; a restart would lose its jobs and models.
    Enter on the finding asks to unpause it, and yes unpauses that service."""
    app = snapshot_app()
    asked: list[list[str]] = []
    async with app.run_test(size=(120, 40)) as pilot:
        await bad_day(pilot)
        monkeypatch.setattr(app.stack, "unpause", lambda names, done=None: asked.append(names))
        app.stack.publish("findings", [Finding(
            "paused", C, "flux-1-dev", "flux-1-dev: container is paused: it answers nothing",
            "unpause")])
        await pilot.pause(0.1)
        await pilot.press("exclamation_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, FindingsScreen))
        await pilot.pause(0.1)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "Unpause flux-1-dev" in app.screen.question
        assert "Restart" not in app.screen.question
        await pilot.press("y")
        await wait_until(pilot, lambda: asked == [["flux-1-dev"]])


async def test_readonly_refuses_unpause_from_the_view():
    app = snapshot_app(readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await bad_day(pilot)
        app.stack.publish("findings", [Finding(
            "paused", C, "flux-1-dev", "flux-1-dev: container is paused", "unpause")])
        await pilot.pause(0.1)
        await pilot.press("exclamation_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, FindingsScreen))
        await pilot.pause(0.1)
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert isinstance(app.screen, FindingsScreen)  # no confirm: refused with a toast
