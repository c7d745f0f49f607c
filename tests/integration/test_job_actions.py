"""The queue actions (issue #14) against the simulator in real containers: interrupt and
cancel change the server's queue (asserted over HTTP: `/queue`, `/history`), clear empties
it and leaves the running job alone, free VRAM is called (the server unloads its models)
and `/system_stats` is re-read to say what was freed; through the dashboard: the panel
shows a running job's progress, each key asks first and acts, `--readonly` refuses every
one and the server is unchanged, and the restart confirm counts the jobs it would lose.
No piece of the token in any message, toast, screen, error or log of ours."""

from __future__ import annotations

import http.client
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable

from genai_tui import simdocker
from genai_tui.config import Config
from genai_tui.engine import actions
from genai_tui.engine.live import Stack as LiveStack
from genai_tui.sources.jobs_control import ControlError, JobControl
from genai_tui.ui.app import GenaiTui
from genai_tui.ui.jobs import JobsPanel
from genai_tui.ui.screens.confirm import ConfirmScreen
from genai_tui.ui.screens.jobs import JobsScreen
from tests.conftest import TEST_OWNER, free_port, make_hash, wait_for, wait_port
from tests.integration.test_scenarios import Stack
from tests.ui.helpers import screen_text, wait_until

pytestmark = pytest.mark.docker

GRAPH = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {}},
         "3": {"class_type": "KSampler", "inputs": {"steps": 20}},
         "9": {"class_type": "SaveImage", "inputs": {}}}
GIB = 1024 ** 3


class Comfy:
    """One simulated ComfyUI(+Login) container: its config, and HTTP with its hash (which
    no repr shows)."""

    def __init__(self, container: Any, config: Config, port: int, hash_: str,
                 jobs_api: bool) -> None:
        self.container = container
        self.config = config
        self.port = port
        self.jobs_api = jobs_api
        self._hash = hash_

    def __repr__(self) -> str:
        return f"<Comfy :{self.port}>"

    def call(self, path: str, body: Any = None) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("POST" if body is not None else "GET", path,
                         None if body is None else json.dumps(body).encode(),
                         {"Authorization": f"Bearer {self._hash}"})
            resp = conn.getresponse()
            raw = resp.read()
            assert resp.status == 200, (path, resp.status)
        finally:
            conn.close()
        return json.loads(raw) if raw else None

    def submit(self, sim: dict[str, Any] | None = None) -> str:
        return self.call("/prompt", {"prompt": GRAPH, "extra_data": {"sim": sim or {}}})[
            "prompt_id"]

    def queue(self) -> tuple[list[str], list[str]]:
        doc = self.call("/queue")
        return ([i[1] for i in doc["queue_running"]], [i[1] for i in doc["queue_pending"]])

    def history(self, pid: str) -> dict[str, Any] | None:
        return self.call(f"/history/{pid}").get(pid)

    def vram(self) -> dict[str, Any]:
        return self.call("/system_stats")["devices"][0]

    def logs(self) -> str:
        return self.container.logs().decode("utf-8", "replace")

    def reset(self) -> None:
        """An idle server: nothing pending, nothing running."""
        self.call("/queue", {"clear": True})
        self.call("/interrupt", {})
        wait_for(lambda: self.queue() == ([], []), 15)

    def leaks(self, *texts: str) -> list[str]:
        """Texts holding any 8 characters of the hash (past its `$2b$12$` prefix)."""
        h = self._hash
        return [t for t in texts if any(h[i:i + 8] in t for i in range(7, len(h) - 7))]


def start_comfy(docker_client, root: Path, *, jobs_api: bool) -> Comfy:
    hash_ = make_hash()
    stack = Stack(root, hash_)
    port = free_port()
    login = stack.login_dir("flux-1-dev", hash_)
    args = ["--name", "flux-1-dev", "--job-seconds", "1.0"] + (
        ["--jobs-api"] if jobs_api else [])
    c = simdocker.run_sim(docker_client, name=simdocker.unique("gtjact"), owner=TEST_OWNER,
                          host_port=port, login_dir=login, extra_args=args)
    try:
        wait_port(port)
        stack.service("flux-1-dev", port, c.name)
        stack.sections["history"] = {"enabled": False}
        stack.write()
        return Comfy(c, stack.config(), port, hash_, jobs_api)
    except BaseException:
        c.remove(force=True)
        raise


@pytest.fixture(scope="module")
def servers(docker_client, tmp_path_factory) -> Iterator[dict[str, Comfy]]:
    """A 0.3.64-like server (`/queue` + `/history`) and a newer one (`/api/jobs`), shared
    by the module (each test starts from an idle queue)."""
    made: dict[str, Comfy] = {}
    try:
        for kind, jobs_api in (("queue", False), ("jobs", True)):
            made[kind] = start_comfy(docker_client, tmp_path_factory.mktemp(kind),
                                     jobs_api=jobs_api)
        yield made
    finally:
        for c in made.values():
            try:
                c.container.remove(force=True)
            except Exception:
                pass


@pytest.fixture(params=["queue", "jobs"], ids=["queue+history", "jobs-api"])
def comfy(request, servers) -> Comfy:
    c = servers[request.param]
    c.reset()
    return c


@pytest.fixture
def old_comfy(servers) -> Comfy:
    c = servers["queue"]
    c.reset()
    return c


def running(c: Comfy, pid: str) -> None:
    wait_for(lambda: c.queue()[0] == [pid], 15)


# ---------------------------------------------------------------- the engine's actions


def test_interrupt_stops_that_job_and_history_says_interrupted(comfy) -> None:
    stuck = comfy.submit({"stuck": True})
    waiting = comfy.submit({"seconds": 30})
    running(comfy, stuck)
    out = actions.interrupt_job(comfy.config, "flux-1-dev", stuck,
                                api="jobs" if comfy.jobs_api else "queue")
    assert out.ok, out.message
    assert out.message == "flux-1-dev: interrupt sent for job " + stuck[:8]
    # the server's queue changed: the stuck job is gone, the next one runs
    wait_for(lambda: comfy.queue()[0] == [waiting], 15)
    entry = wait_for(lambda: comfy.history(stuck), 15)
    assert [m[0] for m in entry["status"]["messages"]][-1] == "execution_interrupted"
    # an interrupt for a job that no longer runs touches nothing (only that job)
    again = actions.interrupt_job(comfy.config, "flux-1-dev", stuck,
                                  api="jobs" if comfy.jobs_api else "queue")
    assert again.ok
    assert comfy.queue()[0] == [waiting]


def test_cancel_takes_one_pending_job_off_the_queue(comfy) -> None:
    stuck = comfy.submit({"stuck": True})
    first, second = comfy.submit(), comfy.submit()
    running(comfy, stuck)
    out = actions.cancel_jobs(comfy.config, "flux-1-dev", [first],
                              api="jobs" if comfy.jobs_api else "queue")
    assert out.ok and out.message == f"flux-1-dev: job {first[:8]} taken off the queue"
    assert comfy.queue() == ([stuck], [second])


def test_clear_empties_the_queue_and_the_running_job_goes_on(old_comfy) -> None:
    c = old_comfy
    stuck = c.submit({"stuck": True})
    for _ in range(3):
        c.submit()
    running(c, stuck)
    out = actions.clear_queue(c.config, "flux-1-dev")
    assert out.ok and out.message == "flux-1-dev: pending queue cleared"
    assert c.queue() == ([stuck], [])


def test_free_vram_unloads_and_says_what_the_re_read_stats_show(old_comfy) -> None:
    c = old_comfy
    pid = c.submit({"seconds": 0.3})  # loads the model, then the server idles holding it
    wait_for(lambda: c.history(pid), 15)
    held = c.vram()["torch_vram_total"]
    assert held > 4 * GIB
    unloads = c.logs().count("models unloaded.")
    out = actions.free_vram(c.config, "flux-1-dev")
    assert out.ok, out.message
    # the server did it (its own log line), and the stats were read before and after
    wait_for(lambda: c.logs().count("models unloaded.") == unloads + 1, 10)
    assert out.before is not None and out.after is not None
    assert out.before.torch_total == held and out.after.torch_total == 0
    assert out.freed is not None and out.freed >= 4 * GIB
    assert out.message.startswith(f"flux-1-dev: freed {out.freed / GIB:.1f} GiB of VRAM (used ")
    assert c.vram()["torch_vram_total"] == 0


def test_free_vram_during_a_job_never_interrupts_it(old_comfy) -> None:
    c = old_comfy
    pid = c.submit({"seconds": 4})
    running(c, pid)
    unloads = c.logs().count("models unloaded.")
    out = actions.free_vram(c.config, "flux-1-dev", wait=0.5)
    assert out.ok and "nothing freed yet" in out.message and "running job" in out.message
    assert c.queue()[0] == [pid]  # still running: /free waits for it
    entry = wait_for(lambda: c.history(pid), 15)
    assert entry["status"]["status_str"] == "success"
    wait_for(lambda: c.logs().count("models unloaded.") == unloads + 1, 10)


def test_no_token_in_errors_urls_or_messages(old_comfy, caplog) -> None:
    """A refused token, a dead port and a URL carrying `?token=`: every message is one
    clean line without any piece of the hash."""
    c = old_comfy
    caplog.set_level(logging.DEBUG)
    svc = c.config.services[0]
    hash_ = c._hash
    texts = []
    wrong = JobControl(svc, make_hash())
    with pytest.raises(ControlError) as refused:
        wrong.clear()
    assert "401" in str(refused.value)
    texts.append(str(refused.value))
    leaky = replace(svc, url=f"http://u:{hash_}@127.0.0.1:{free_port()}/?token={hash_}")
    with pytest.raises(ControlError) as dead:
        JobControl(leaky, hash_).free()
    texts += [str(dead.value), repr(JobControl(leaky, hash_))]
    bad_cfg = replace(c.config, services=(leaky,))
    for out in (actions.interrupt_job(bad_cfg, "flux-1-dev", "x" * 36),
                actions.cancel_jobs(bad_cfg, "flux-1-dev", ["y" * 36]),
                actions.clear_queue(bad_cfg, "flux-1-dev"),
                actions.free_vram(bad_cfg, "flux-1-dev", wait=0.1)):
        assert not out.ok and "failed" in out.message
        texts.append(out.message)
    # an id we would put in a URL path is refused before any request
    hostile = actions.interrupt_job(c.config, "flux-1-dev", "../../free?x=" + hash_)
    assert not hostile.ok and "not a ComfyUI prompt id" in hostile.message
    texts.append(hostile.message)
    texts.append(caplog.text)
    assert not c.leaks(*texts), texts
    assert all("\n" not in t for t in texts[:-1])


# ---------------------------------------------------------------- through the dashboard


def live_app(c: Comfy, **kw) -> GenaiTui:
    """The dashboard on a live engine: the container monitor, its log and its queue."""
    config = replace(c.config, jobs=replace(c.config.jobs, safety_poll=2.0))
    stack = LiveStack(config, parts={"containers", "logs", "jobs"})
    return GenaiTui(config, stack=stack, **kw)


async def jobs_known(pilot, predicate=lambda sj: True) -> Any:
    app = pilot.app
    box: dict[str, Any] = {}

    def ready() -> bool:
        report = app.stack.snapshot.jobs
        sj = report.get("flux-1-dev") if report is not None else None
        if sj is not None and sj.checked_at is not None and predicate(sj):
            box["sj"] = sj
            return True
        return False

    await wait_until(pilot, ready, timeout=30)
    return box["sj"]


async def test_dashboard_shows_progress_and_interrupts_after_the_confirm(old_comfy) -> None:
    c = old_comfy
    app = live_app(c)
    async with app.run_test(size=(120, 40)) as pilot:
        await jobs_known(pilot, lambda sj: sj.websocket)
        pid = c.submit({"seconds": 40})
        await jobs_known(pilot, lambda sj: sj.running is not None
                         and (sj.running.step or 0) >= 2)
        panel = app.query_one(JobsPanel)
        await wait_until(pilot, lambda: f"▶ {pid[:8]}" in screen_text(app)
                         and "/20" in screen_text(app))
        assert panel.region.height > 0
        # j, then i: the confirm names the service and the job; y sends it
        await pilot.press("j")
        await wait_until(pilot, lambda: isinstance(app.screen, JobsScreen))
        await pilot.press("i")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        question = app.screen.question
        assert question.startswith(f"Interrupt job {pid[:8]} on flux-1-dev?")
        await pilot.pause(0.1)
        await pilot.press("y")
        sent = f"flux-1-dev: interrupt sent for job {pid[:8]}"
        await wait_until(pilot, lambda: any(n.message == sent for n in app._notifications),
                         timeout=15)
        await wait_until(pilot, lambda: c.queue() == ([], []))
        entry = c.history(pid)
        assert entry and entry["status"]["messages"][-1][0] == "execution_interrupted"
        # the view follows: the job is listed as interrupted
        view = app.screen
        assert isinstance(view, JobsScreen)
        table = view.query_one(DataTable)
        await wait_until(pilot, lambda: table.row_count and any(
            table.get_row_at(r)[0].plain == "⊘ interrupted" and table.get_row_at(r)[1].plain
            == pid[:8] for r in range(table.row_count)))
        shown = screen_text(app) + "".join(str(n.message) for n in app._notifications)
        assert not c.leaks(shown, question)


async def test_readonly_refuses_every_action_and_the_server_is_unchanged(old_comfy) -> None:
    c = old_comfy
    warm = c.submit({"seconds": 0.2})  # a model held: what a free would unload
    wait_for(lambda: c.history(warm), 15)
    unloads = c.logs().count("models unloaded.")
    app = live_app(c, readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        stuck = c.submit({"stuck": True})
        pending = [c.submit(), c.submit()]
        await jobs_known(pilot, lambda sj: sj.running is not None and len(sj.pending) == 2)
        await pilot.press("j")
        await wait_until(pilot, lambda: isinstance(app.screen, JobsScreen))
        app.screen.query_one(DataTable).move_cursor(row=1)  # a pending job
        for key in ("i", "x", "X", "v"):
            await pilot.press(key)
            await pilot.pause(0.2)
            assert isinstance(app.screen, JobsScreen), key  # no confirm, nothing sent
        refusals = [n.message for n in app._notifications if "read-only mode" in n.message]
        assert len(refusals) == 4
        # the palette offers none of them either
        titles = [cmd.title for cmd in app.get_system_commands(app.screen)]
        assert not [t for t in titles if t.startswith("Jobs: ")]
    assert c.queue() == ([stuck], pending)
    assert c.logs().count("models unloaded.") == unloads
    assert c.vram()["torch_vram_total"] > 0


async def test_restart_confirm_counts_the_jobs_it_would_lose(old_comfy) -> None:
    c = old_comfy
    app = live_app(c)
    async with app.run_test(size=(120, 40)) as pilot:
        stuck = c.submit({"stuck": True})
        pending = [c.submit() for _ in range(3)]
        await jobs_known(pilot, lambda sj: sj.running is not None and len(sj.pending) == 3)
        app.confirm_restart("flux-1-dev")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "1 running, 3 pending jobs on flux-1-dev will be lost" in app.screen.question
        await pilot.pause(0.1)
        await pilot.press("n")  # nothing restarted, nothing lost
        await pilot.pause(0.1)
    assert c.queue() == ([stuck], pending)
