"""The jobs engine against the simulator in real containers (issue #14): the live Stack
(Docker monitor, log followers, one jobs source per ComfyUI) shows a running job's
progress, turns a stuck job into `job_stuck` within the configured time and an OOM into
`job_failed` naming OOM, on both server kinds; `check --json` carries the queue; no piece
of the token in any of it."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from genai_tui import cli, simdocker
from genai_tui.config import Config
from genai_tui.engine.live import Stack as LiveStack
from genai_tui.model import Finding, ServiceJobs
from tests.conftest import TEST_OWNER, free_port, make_hash, wait_for, wait_port
from tests.integration.test_scenarios import Stack

pytestmark = pytest.mark.docker

STUCK_AFTER = 3.0
GRAPH = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {}},
         "3": {"class_type": "KSampler", "inputs": {"steps": 20}},
         "9": {"class_type": "SaveImage", "inputs": {}}}


class Comfy:
    """One simulated ComfyUI container, its config and its hash (no repr of the hash)."""

    def __init__(self, config: Config, path: Path, port: int, hash_: str) -> None:
        self.config = config
        self.path = path
        self.port = port
        self._hash = hash_

    def __repr__(self) -> str:
        return f"<Comfy :{self.port}>"

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("POST", path, json.dumps(body).encode(),
                         {"Authorization": f"Bearer {self._hash}"})
            raw = conn.getresponse().read()
        finally:
            conn.close()
        return json.loads(raw) if raw else None

    def submit(self, sim: dict[str, Any] | None = None) -> str:
        doc = self.post("/prompt", {"prompt": GRAPH, "extra_data": {"sim": sim or {}}})
        assert doc is not None
        return doc["prompt_id"]

    def leaks(self, text: str) -> bool:
        h = self._hash
        return any(h[i:i + 8] in text for i in range(7, len(h) - 7))


@pytest.fixture
def comfy(docker_client, tmp_path: Path) -> Iterator[Callable[..., Comfy]]:
    made: list[Any] = []

    def start(*, jobs_api: bool = False) -> Comfy:
        hash_ = make_hash()
        stack = Stack(tmp_path / simdocker.unique("jobs"), hash_)
        port = free_port()
        login = stack.login_dir("comfy", hash_)
        args = ["--name", "comfy", "--job-seconds", "6"] + (["--jobs-api"] if jobs_api else [])
        c = simdocker.run_sim(docker_client, name=simdocker.unique("gtjobs"), owner=TEST_OWNER,
                              host_port=port, login_dir=login, extra_args=args)
        made.append(c)
        wait_port(port)
        stack.service("comfy", port, c.name)
        stack.sections["jobs"] = {"stuck_after": STUCK_AFTER, "safety_poll": 30.0}
        path = stack.write()
        return Comfy(stack.config(), path, port, hash_)

    yield start
    for c in made:
        try:
            c.remove(force=True)
        except Exception:
            pass


@pytest.fixture
def live() -> Iterator[Callable[..., LiveStack]]:
    stacks: list[LiveStack] = []

    def start(config: Config, parts: tuple[str, ...] = ("containers", "logs", "jobs",
                                                         "probes")) -> LiveStack:
        s = LiveStack(config, parts=parts)
        s.start()
        stacks.append(s)
        return s

    yield start
    for s in stacks:
        s.close()


def jobs_of(stack: LiveStack) -> ServiceJobs | None:
    report = stack.snapshot.jobs
    return report.get("comfy") if report is not None else None


def finding(stack: LiveStack, code: str) -> Finding | None:
    return next((f for f in stack.snapshot.findings if f.code == code), None)


@pytest.mark.parametrize("jobs_api", [False, True], ids=["queue+history", "jobs-api"])
def test_running_job_progress_and_models_are_in_the_snapshot(comfy, live, jobs_api) -> None:
    c = comfy(jobs_api=jobs_api)
    stack = live(c.config)
    wait_for(lambda: (j := jobs_of(stack)) is not None and j.websocket and j.checked_at, 30)
    pid = c.submit()
    sj = wait_for(lambda: (j := jobs_of(stack)) is not None and j.running is not None
                  and j.running.prompt_id == pid and (j.running.step or 0) >= 3 and j, 20)
    assert sj.running.steps == 20 and sj.running.it_per_s
    assert sj.api == ("jobs" if jobs_api else "queue")
    assert sj.vram_used and sj.vram_source in ("torch", "system_stats", "nvml")
    # the model line came through `docker logs` and the log hub
    wait_for(lambda: jobs_of(stack).resident_models == ["SDXL"], 20)
    done = wait_for(lambda: (j := jobs_of(stack)).running is None and j.recent and j, 20)
    assert done.recent[0].prompt_id == pid and done.recent[0].state == "success"
    assert not c.leaks(json.dumps(stack.snapshot.to_json()))


def test_stuck_job_becomes_job_stuck_within_the_configured_time(comfy, live) -> None:
    c = comfy()
    stack = live(c.config, ("containers", "jobs"))  # no probe round to re-derive findings
    wait_for(lambda: (j := jobs_of(stack)) is not None and j.websocket, 30)
    pid = c.submit({"stuck": True})
    wait_for(lambda: (j := jobs_of(stack)).running is not None and j.running.prompt_id == pid,
             10)
    seen_running = time.monotonic()
    assert finding(stack, "job_stuck") is None
    # a job that stops moving changes no part: the engine re-derives at the threshold
    f = wait_for(lambda: finding(stack, "job_stuck"), STUCK_AFTER + 3)
    assert time.monotonic() - seen_running >= STUCK_AFTER - 0.5
    assert f.service == "comfy" and f.fix == "interrupt" and not c.leaks(f.message)
    c.post("/interrupt", {"prompt_id": pid})
    wait_for(lambda: finding(stack, "job_stuck") is None, 15)
    assert jobs_of(stack).recent[0].state == "interrupted"


def test_oom_becomes_job_failed_naming_oom_and_check_json_carries_it(
        comfy, live, capsys) -> None:
    c = comfy(jobs_api=True)
    stack = live(c.config)
    wait_for(lambda: (j := jobs_of(stack)) is not None and j.websocket, 30)
    pid = c.submit({"fail": "oom", "seconds": 1.0})
    f = wait_for(lambda: finding(stack, "job_failed"), 20)
    assert "OOM" in f.message and f.fix == "free_vram"
    failed = jobs_of(stack).recent[0]
    assert (failed.prompt_id, failed.state, failed.error_type) == (pid, "error", "OOM")

    assert cli.main(["check", "--json", "--config", str(c.path)]) in (1, 2)
    out = capsys.readouterr().out
    doc = json.loads(out)
    (sj,) = doc["jobs"]
    assert sj["service"] == "comfy" and sj["recent_failures"] == 1
    assert sj["recent"][0]["error_type"] == "OOM" and sj["api"] == "jobs"
    assert any(x["code"] == "job_failed" for x in doc["findings"])
    assert cli.main(["check", "--config", str(c.path)]) in (1, 2)
    text = capsys.readouterr().out
    line = next(x for x in text.splitlines() if x.startswith("jobs comfy:"))
    assert "1 failed (OOM)" in line and "via jobs" in line
    assert not c.leaks(out) and not c.leaks(text)
