"""The jobs panel and the jobs view (issue #14) in the real dashboard (Pilot), drawn from
JobsReports built here: a running job's progress, the pending count and the oldest wait,
the last finished jobs (ok / error OOM / interrupted), resident models, VRAM and the queue
sparkline; hostile prompt ids, model names and error texts cleaned; the keys of the view,
refused and hidden under --readonly; the restart confirm counting the jobs; snapshots at
120×40 and 80×24."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from textual.widgets import DataTable, Static

from genai_tui.model import JobInfo, JobsReport, ServiceJobs
from genai_tui.ui.app import GenaiTui
from genai_tui.ui.jobs import JobsPanel, fmt_duration, sparkline
from genai_tui.ui.screens.confirm import ConfirmScreen
from genai_tui.ui.screens.jobs import JobsScreen, jobs_lost
from tests.ui.helpers import plain_frames, record_terminal, screen_text, wait_until
from tests.ui.test_dashboard import deliver, settle, snapshot_app

#: "now" for every age on screen: the app's clock is fixed to it; the findings the engine
#: derives from a report use the real clock, so each test's app sets it (`jobs_app`) and
#: its reports are built around it (an import-time value went stale in a long session)
NOW = datetime.now(UTC).replace(microsecond=0)
GIB = 1024 ** 3
RUN_ID = "3f2a9c1e-7b44-4d1a-9a0e-2b6f1c8d9e01"
PENDING_IDS = ["5e6f7a8b-0000-4000-8000-000000000001", "9c0d1e2f-0000-4000-8000-000000000002",
               "77aa88bb-0000-4000-8000-000000000003"]


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def flux_jobs(**kw) -> ServiceJobs:
    """flux-1-dev at work: one job at step 7/20, three waiting (the oldest 4 min), and the
    last three finished: ok, OOM, interrupted."""
    base = dict(
        service="flux-1-dev",
        running=JobInfo(RUN_ID, 41, "running", queued_at=ago(130), started_at=ago(102),
                        nodes_done=3, nodes_total=7, step=7, steps=20, it_per_s=2.31),
        pending=[JobInfo(pid, 42 + i, "pending", queued_at=ago(240 - 60 * i))
                 for i, pid in enumerate(PENDING_IDS)],
        recent=[
            JobInfo("a1b2c3d4-1", 40, "success", started_at=ago(160), finished_at=ago(148)),
            JobInfo("b2c3d4e5-2", 39, "error", started_at=ago(200), finished_at=ago(197),
                    error_type="OOM", error_message="Allocation on device 0 would exceed "
                    "allowed memory. (out of memory)"),
            JobInfo("c3d4e5f6-3", 38, "interrupted", started_at=ago(300), finished_at=ago(260)),
        ],
        oldest_wait_s=240.0,
        resident_models=["Flux", "FluxClipModel_"],
        vram_used=int(18.1 * GIB), vram_total=24 * GIB, vram_source="system_stats",
        api="queue", queue_depth_history=[0, 0, 1, 2, 2, 3, 4, 4, 4],
        checked_at=NOW)
    base.update(kw)
    return ServiceJobs(**base)


def qwen_idle() -> ServiceJobs:
    return ServiceJobs("comfyui-qwen", recent=[
        JobInfo("d4e5f6a7-4", 12, "success", started_at=ago(330), finished_at=ago(300))],
        resident_models=["SDXL"], vram_used=int(5.5 * GIB), vram_total=24 * GIB,
        vram_source="nvml", api="queue", queue_depth_history=[0, 0, 0], checked_at=NOW)


def report() -> JobsReport:
    return JobsReport([qwen_idle(), flux_jobs()])


def jobs_app(**kw) -> GenaiTui:
    global NOW
    NOW = datetime.now(UTC).replace(microsecond=0)
    app = snapshot_app(**kw)
    app.clock = lambda: NOW
    return app


async def show_jobs(pilot, rep: JobsReport | None = None) -> JobsPanel:
    await settle(pilot)
    panel = pilot.app.query_one(JobsPanel)
    seen, diagnosed = panel.shown, pilot.app.stack.diagnosed
    deliver(pilot.app, "jobs", rep or report())
    # drawn, and the findings re-derived from it (the bar names the job findings)
    await wait_until(pilot, lambda: panel.shown > seen
                     and pilot.app.stack.diagnosed > diagnosed)
    await pilot.pause(0.05)
    return panel


def panel_text(panel: JobsPanel) -> str:
    body = panel.query_one("#jobs-body", Static)
    return str(body.render())


# ---------------------------------------------------------------- the panel


async def test_panel_shows_running_pending_recent_models_vram_and_sparkline():
    app = jobs_app()
    async with app.run_test(size=(120, 40)) as pilot:
        panel = await show_jobs(pilot)
        assert panel.display and not panel.has_class("-empty")
        text = panel_text(panel)
        # the running job: id short, age, node k/n, step k/n, it/s
        assert "▶ 3f2a9c1e 1 min 42 s · node 3/7 · step 7/20 · 2.31 it/s" in text
        assert RUN_ID not in text  # only the short id
        # the pending count with the oldest wait
        assert "3 pending, oldest 4 min" in text
        # the last finished jobs: ok / error with its type / interrupted, and durations
        assert "✓ ok 12 s, ✖ error OOM 3 s, ⊘ interrupted 40 s" in text
        # resident models and the VRAM held, with where the figure came from
        assert "models Flux, FluxClipModel_" in text
        assert "VRAM used 18.1/24.0 GiB (device)" in text
        # the queue depth's sparkline (rising to the top block)
        assert "queue " + sparkline([0, 0, 1, 2, 2, 3, 4, 4, 4]).plain in text
        assert sparkline([0, 0, 1, 2, 2, 3, 4, 4, 4]).plain.endswith("███")
        # the idle service reads idle, nothing pending
        assert "comfyui-qwen · idle · none pending" in text
        # on screen too, in the wide layout, with the border naming the view's key
        screen = screen_text(app)
        assert "3 pending, oldest 4 min" in screen
        assert "1 running · 3 pending · j: jobs view" in screen


async def test_panel_is_hidden_until_a_report_names_a_service():
    app = jobs_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        panel = app.query_one(JobsPanel)
        assert not panel.display_visible if hasattr(panel, "display_visible") else True
        assert panel.has_class("-empty") and panel.region.height == 0
        panel = await show_jobs(pilot)
        assert panel.region.height > 0
        deliver(app, "jobs", JobsReport([]))
        await pilot.pause(0.1)
        assert panel.region.height == 0


async def test_ages_move_on_with_the_clock_without_news():
    app = jobs_app()
    clock = {"now": NOW}
    app.clock = lambda: clock["now"]
    async with app.run_test(size=(120, 40)) as pilot:
        panel = await show_jobs(pilot)
        assert "oldest 4 min" in panel_text(panel)
        clock["now"] = NOW + timedelta(minutes=3)  # the report stays the same
        await wait_until(pilot, lambda: "3f2a9c1e 4 min 42 s" in panel_text(panel))


async def test_a_ticking_age_repaints_its_line_only():
    """Each second a running job's age moves on: that line goes to the terminal again, the
    panel's other lines and borders do not (every line of it did, once a second)."""
    app = jobs_app()
    clock = {"now": NOW}
    app.clock = lambda: clock["now"]
    async with app.run_test(size=(120, 40)) as pilot:
        panel = await show_jobs(pilot)
        before = panel_text(panel)
        frames = record_terminal(app)
        clock["now"] = NOW + timedelta(seconds=1)
        await wait_until(pilot, lambda: panel_text(panel) != before)
        await pilot.pause(0.1)
        written = plain_frames(frames)
        assert "3f2a9c1e 1 min 43 s" in written  # 102 s became 103 s
        running = next(line for line in before.splitlines() if "3f2a9c1e" in line)
        for line in before.splitlines():
            if line != running:  # comfyui-qwen's block, flux's last jobs, models, VRAM
                assert line.strip() not in written, line
        assert "Jobs" not in written and "running · " not in written
        assert "3f2a9c1e 1 min 43 s" in screen_text(app)


async def test_unknown_queue_says_why_in_one_line():
    rep = JobsReport([ServiceJobs("flux-1-dev", api="none",
                                  error="/queue: refused")])
    app = jobs_app()
    async with app.run_test(size=(120, 40)) as pilot:
        panel = await show_jobs(pilot, rep)
        assert "flux-1-dev · unknown: /queue: refused" in panel_text(panel)


async def test_hostile_ids_models_and_errors_are_cleaned_and_never_markup():
    evil_id = "[@click=app.quit]\x1b]0;pwned\x07\x1b[2J"
    app = jobs_app()
    sj = flux_jobs(
        running=JobInfo(evil_id, 1, "running", started_at=ago(5), step=1, steps=20),
        pending=[JobInfo("[bold red]x\nforged line", 2, "pending", queued_at=ago(9))],
        recent=[JobInfo("e1", 0, "error", started_at=ago(20), finished_at=ago(19),
                        error_type="[red]Boom\x1b[31m\r\nfake: row",
                        error_message="token=$2b$12$" + "a" * 53)],
        resident_models=["[link=http://evil]m[/link]\x1b[5m"],
        error="/history: \x1b[31mHTTP 500\x1b[0m\nsecond line")
    async with app.run_test(size=(120, 40)) as pilot:
        panel = await show_jobs(pilot, JobsReport([sj]))
        assert app.is_running  # [@click=app.quit] was not run
        text = panel_text(panel)
        assert "\x1b" not in text and "\x07" not in text and "\r" not in text
        assert "[@click=" in text  # shown as it is, not parsed as markup
        assert "[link=http://evil]m[/link]" in text
        lines = text.split("\n")
        assert not any(line.startswith(("forged", "fake", "second")) for line in lines)
        assert "✖ error [red]Boom" in text
        # the view lists the pending id and the error, cleaned as well
        await pilot.press("j")
        await wait_until(pilot, lambda: isinstance(app.screen, JobsScreen))
        table = app.screen.query_one(DataTable)
        cells = [str(c) for row in range(table.row_count) for c in table.get_row_at(row)]
        assert all("\x1b" not in c and "\n" not in c and "\r" not in c for c in cells)
        shown = screen_text(app)
        assert "$2b$" not in shown and "a" * 20 not in shown


def test_fmt_duration_reads_in_whole_units():
    assert [fmt_duration(s) for s in (0.2, 42, 102, 600, 1500, 7500)] == [
        "0 s", "42 s", "1 min 42 s", "10 min", "25 min", "2 h 5 min"]


# ---------------------------------------------------------------- the view and its keys


async def test_view_lists_the_services_jobs_and_switches_service():
    app = jobs_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await show_jobs(pilot)
        await pilot.press("j")
        await wait_until(pilot, lambda: isinstance(app.screen, JobsScreen))
        view = app.screen
        # the selected container row is comfyui-qwen: its queue first
        assert view.service == "comfyui-qwen"
        await pilot.press("s")
        assert view.service == "flux-1-dev"
        table = view.query_one(DataTable)
        states = [table.get_row_at(r)[0].plain for r in range(table.row_count)]
        assert states == ["▶ running", "… pending", "… pending", "… pending", "✓ ok",
                          "✖ error", "⊘ interrupted"]
        first_pending = table.get_row_at(1)
        assert first_pending[1].plain == "5e6f7a8b" and first_pending[3].plain == "4 min"
        shown = screen_text(app)
        assert "OOM Allocation on device 0 would exceed" in shown
        # news from the engine: the running job moved on; the rows stay, the cell changes,
        # the selection stays on the job it was on
        table.move_cursor(row=2)
        later = flux_jobs()
        later.running.step = 12
        deliver(app, "jobs", JobsReport([qwen_idle(), later]))
        await wait_until(pilot, lambda: table.get_row_at(0)[4].plain.startswith("step 12/20"))
        assert view.selected.prompt_id == PENDING_IDS[1]
        # a job gone from the queue: rebuilt, still on the same job
        fewer = flux_jobs(pending=flux_jobs().pending[1:])
        deliver(app, "jobs", JobsReport([qwen_idle(), fewer]))
        await wait_until(pilot, lambda: table.row_count == 6)
        assert view.selected.prompt_id == PENDING_IDS[1]
        for words in ("i interrupt", "x cancel", "X clear queue", "v free VRAM"):
            assert words in shown, words
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, JobsScreen))


async def test_each_action_asks_first_naming_service_and_job():
    app = jobs_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await show_jobs(pilot)
        await pilot.press("j", "s")
        await wait_until(pilot, lambda: isinstance(app.screen, JobsScreen))
        questions = {}
        for key, down in (("i", 0), ("x", 1), ("X", 0), ("v", 0)):
            view = app.screen
            view.query_one(DataTable).move_cursor(row=down)
            await pilot.press(key)
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            questions[key] = app.screen.question
            await pilot.press("n")  # nothing is sent
            await wait_until(pilot, lambda: isinstance(app.screen, JobsScreen))
        assert questions["i"].startswith("Interrupt job 3f2a9c1e on flux-1-dev?")
        assert "step 7/20" in questions["i"]
        assert questions["x"].startswith("Cancel pending job 5e6f7a8b on flux-1-dev?")
        assert "waited 4 min" in questions["x"]
        assert questions["X"].startswith("Clear the queue of flux-1-dev?")
        assert "3 pending jobs are removed" in questions["X"]
        assert "the running job 3f2a9c1e goes on" in questions["X"]
        assert questions["v"].startswith("Free VRAM on flux-1-dev (VRAM used 18.1/24.0 GiB")
        assert "is not interrupted" in questions["v"]
        # x on a row that is not pending says so instead of asking
        app.screen.query_one(DataTable).move_cursor(row=0)
        await pilot.press("x")
        await pilot.pause(0.1)
        assert isinstance(app.screen, JobsScreen)
        assert any("select a pending job" in n.message for n in app._notifications)


async def test_readonly_refuses_every_action_and_hides_its_keys():
    app = jobs_app(readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await show_jobs(pilot)
        await pilot.press("j", "s")
        await wait_until(pilot, lambda: isinstance(app.screen, JobsScreen))
        shown = screen_text(app)
        assert "read-only: the queue actions are off" in shown
        footer_keys = {key for key, b in app.screen.active_bindings.items()
                       if b.binding.show}
        assert not {"i", "x", "X", "v"} & footer_keys
        app.screen.query_one(DataTable).move_cursor(row=1)
        for key in ("i", "x", "X", "v"):
            await pilot.press(key)
            await pilot.pause(0.05)
            assert isinstance(app.screen, JobsScreen), key  # no confirm
        refusals = [n.message for n in app._notifications if "read-only" in n.message]
        assert len(refusals) == 4
        # nor in the palette or the help
        await pilot.press("escape")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert not [t for t in titles if t.startswith("Jobs: ")]
        assert "i" not in [k for k, _w in dict(app.key_help())["Jobs view (j)"]]


async def test_palette_offers_the_queue_actions_per_service():
    app = jobs_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await show_jobs(pilot)
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        assert "Jobs: interrupt on flux-1-dev" in commands
        assert "Jobs: clear the queue of flux-1-dev" in commands
        assert "Jobs: free VRAM on comfyui-qwen" in commands
        assert "Jobs: interrupt on comfyui-qwen" not in commands  # nothing runs there
        assert commands["Jobs"].help.startswith("j · the jobs view")
        commands["Jobs: interrupt on flux-1-dev"].callback()
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.1)
        assert app.screen.question.startswith("Interrupt job 3f2a9c1e on flux-1-dev?")


async def test_restart_confirm_counts_the_jobs_it_loses():
    app = jobs_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await show_jobs(pilot)
        app.confirm_restart("flux-1-dev")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "1 running, 3 pending jobs on flux-1-dev will be lost" in app.screen.question
        await pilot.press("n")
        app.confirm_restart("comfyui-qwen")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "no job running or pending on comfyui-qwen" in app.screen.question
        await pilot.press("n")
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "1 running, 3 pending jobs on flux-1-dev will be lost" in app.screen.question


def test_jobs_lost_words():
    assert jobs_lost(None, ["flux-1-dev"]) is None
    assert jobs_lost(report(), ["orchestrator"]) is None
    unknown = JobsReport([ServiceJobs("flux-1-dev", api="none", error="/queue: timeout")])
    assert "could not be read" in jobs_lost(unknown, ["flux-1-dev"])


# ---------------------------------------------------------------- compact and snapshots


async def test_compact_view_key_shows_the_jobs_panel():
    app = jobs_app()
    async with app.run_test(size=(80, 24)) as pilot:
        panel = await show_jobs(pilot)
        assert panel.region.height == 0  # compact: the logs are below by default
        await pilot.press("6")
        await pilot.pause(0.1)
        assert app.view == "jobs" and panel.region.height > 0
        assert not app.query_one("#bottom").display
        assert "3 pending, oldest 4 min" in screen_text(app)


async def _wide(pilot) -> None:
    await show_jobs(pilot)


async def _compact(pilot) -> None:
    await show_jobs(pilot)
    await pilot.press("6")
    await pilot.pause(0.1)


def test_snapshot_jobs_panel_120x40(snap_compare):
    assert snap_compare(jobs_app(), terminal_size=(120, 40), run_before=_wide)


def test_snapshot_jobs_panel_80x24(snap_compare):
    assert snap_compare(jobs_app(), terminal_size=(80, 24), run_before=_compact)


def test_snapshot_jobs_view_80x24(snap_compare):
    async def run(pilot) -> None:
        await show_jobs(pilot)
        await pilot.press("j", "s")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, JobsScreen))
        await pilot.pause(0.1)

    assert snap_compare(jobs_app(), terminal_size=(80, 24), run_before=run)
