"""Issue #18 for real: the dashboard (the real app, its real engine and recorder) on real
simulator containers. `docker kill`, a `--memory` limit that ends in exit 137 with
OOMKilled, a restart loop, a token drift and a unify each land in the store, in the
timeline and in `genai-tui history --json` (run as its own process beside the dashboard),
in order and at the times Docker gives; findings close when fixed; Enter on a die in the
timeline shows that container's log at that moment."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from textual.widgets import DataTable

from genai_tui import simdocker
from genai_tui.engine import actions, history
from genai_tui.engine.history import Event
from genai_tui.ui.app import GenaiTui
from genai_tui.ui.logs import LogPanel
from genai_tui.ui.screens.timeline import TimelineScreen
from tests.conftest import free_port, make_hash
from tests.integration.test_scenarios import Stack as Scenario
from tests.integration.test_scenarios import start_sim, write_secret
from tests.ui.helpers import wait_until

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]


def docker_time(value: str) -> float:
    """Docker's RFC 3339 with nanoseconds -> seconds since the epoch."""
    head, _, frac = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (frac or "0"))


def events(app: GenaiTui, **kw) -> list[Event]:
    return app.history.store.events(newest_first=False, limit=None, **kw)


def has(app: GenaiTui, kind: str, service: str | None = None, code: str | None = None):
    return next((e for e in events(app) if e.kind == kind and e.service == service
                 and (code is None or e.code == code)), None)


@pytest.fixture(autouse=True)
def _no_leftover_observers():
    yield
    history.OBSERVERS.clear()


async def test_real_containers_end_up_in_store_timeline_and_history(sim_container, tmp_path,
                                                                    docker_client):
    a, b = make_hash(), make_hash()
    sc = Scenario(tmp_path, a)
    drifted = sc.hash_file("docker-secrets", "docker-configurations/.secrets/t.token", a)
    sc.sections["history"] = {"path": str(tmp_path / "state" / "history.sqlite3")}
    sc.docker = {"restart_loop_count": 3, "restart_loop_window": 60}
    qwen = start_sim(sim_container, sc, "qwen", hash_=a)
    flux = start_sim(sim_container, sc, "flux", hash_=a)
    crashy = start_sim(sim_container, sc, "crashy", login=False, scenario="crash",
                       wait=False, extra_args=["--delay", "0.3"],
                       restart_policy={"Name": "always"})
    hungry_name = simdocker.unique("gtt")
    sc.service("hungry", free_port(), hungry_name)  # created later, under the dashboard
    config = sc.config()
    assert qwen and crashy

    app = GenaiTui(config)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: getattr(app, "history", None) is not None
                         and app.history.ready.is_set() and app.stack.settled(), 60)
        assert app.history.store.mode == "write", app.history.store.reason

        # a restart loop: the engine restarting a crashing container
        await wait_until(pilot, lambda: has(app, "finding_open", "crashy", "restart_loop"),
                         90)
        restarts = [e for e in events(app, service="crashy") if e.kind == "restart"]
        assert restarts and restarts[0].text.startswith("restarted by the engine")

        # a --memory limit that ends in exit 137 with OOMKilled
        hungry = await asyncio.to_thread(sim_container, name=hungry_name, scenario="oom",
                                         mem_limit="48m")
        await wait_until(pilot, lambda: has(app, "oom", "hungry"), 90)

        # docker kill
        await asyncio.to_thread(flux.kill)
        await wait_until(pilot, lambda: has(app, "die", "flux")
                         and has(app, "finding_open", "flux", "container_exited"), 30)

        # a token drift, then a unify from the dashboard's own code path
        await asyncio.to_thread(write_secret, drifted, b + "\n")
        await wait_until(pilot, lambda: has(app, "token_drift")
                         and has(app, "finding_open", None, "token_drift"), 30)
        plan = await asyncio.to_thread(actions.plan, config, "secrets")
        await asyncio.to_thread(actions.apply_unify, config, plan)
        await wait_until(pilot, lambda: has(app, "unify") and has(app, "token_consistent")
                         and has(app, "finding_close", None, "token_drift"), 30)

        # the killed container started again: its finding closes
        await asyncio.to_thread(flux.start)
        await wait_until(pilot, lambda: has(app, "start", "flux")
                         and has(app, "finding_close", "flux", "container_exited"), 30)

        # ---- the times are Docker's, and the store holds it all
        await asyncio.to_thread(flux.reload)
        await asyncio.to_thread(hungry.reload)
        die, oom = has(app, "die", "flux"), has(app, "oom", "hungry")
        assert die.text == "killed by SIGKILL (exit 137)"
        assert oom.text == "OOM killed (exit 137)" and oom.data["oom_killed"] is True
        assert hungry.attrs["State"]["OOMKilled"] and hungry.attrs["State"]["ExitCode"] == 137
        assert abs(oom.ts - docker_time(hungry.attrs["State"]["FinishedAt"])) < 2.0
        start = has(app, "start", "flux")
        assert start.ts == pytest.approx(docker_time(flux.attrs["State"]["StartedAt"]),
                                         abs=0.01)
        assert die.ts < start.ts
        unify = has(app, "unify")
        assert unify.data["face"] == "dashboard" and unify.data["who"] == history.who()
        assert unify.data["target"].startswith("fp:")

        # ---- `genai-tui history --json`, its own process beside the running dashboard
        res = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "genai_tui", "history", "--config",
                             str(config.path), "--json"], capture_output=True, text=True,
            timeout=60, cwd=ROOT)
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        assert doc["history"] == "read"
        listed = [(e["kind"], e["service"], e["code"]) for e in doc["events"]]
        stamps = [e["ts"] for e in doc["events"]]
        assert stamps == sorted(stamps)  # in the order it happened
        want = [("die", "flux", None), ("finding_open", "flux", "container_exited"),
                ("token_drift", None, None), ("unify", None, None),
                ("finding_close", None, "token_drift"), ("start", "flux", None),
                ("finding_close", "flux", "container_exited")]
        positions = [listed.index(w) for w in want]
        assert positions == sorted(positions), listed
        assert ("oom", "hungry", None) in listed
        assert ("finding_open", "crashy", "restart_loop") in listed
        got = next(e for e in doc["events"] if e["kind"] == "die" and e["service"] == "flux")
        assert got["ts"] == pytest.approx(die.ts, abs=0.001)
        assert a not in res.stdout and b not in res.stdout and "$2b$" not in res.stdout

        # ---- the timeline: the same events, newest first; Enter on the kill shows the log
        await pilot.press("h")
        await wait_until(pilot, lambda: isinstance(app.screen, TimelineScreen)
                         and app.screen.loads > 0)
        screen = app.screen
        shown = [(e.kind, e.service) for e in screen.events]
        assert shown.index(("finding_close", "flux")) < shown.index(("die", "flux")) \
            < shown.index(("oom", "hungry"))
        index = next(i for i, e in enumerate(screen.events)
                     if e.kind == "die" and e.service == "flux")
        screen.query_one(DataTable).move_cursor(row=index)
        await pilot.press("enter")
        panel = app.query_one(LogPanel)
        await wait_until(pilot, lambda: panel.label == "flux"
                         and getattr(panel, "jumped_to", None) is not None, 30)
        line = panel.view.line(panel.jumped_to)
        assert line.ts >= (die.ts - 1) * 1e9  # the first line logged around the kill
        assert not panel.follow and panel.view.show_ts  # paused there, times shown
    assert not app.history._thread.is_alive()
