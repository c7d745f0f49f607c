"""The jobs source (issue #14) against the simulator running in-process on a loopback
port: both server kinds (jobs API and /queue + /history only), websocket-triggered
refresh with no polling while idle, fallback to polling when /ws is refused, reconnect,
close() within a second, progress and models from log lines, and the token kept out of
every URL shown, error, state and log record."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from genai_tui.config import JobsConfig, ProbeConfig, ServiceConfig
from genai_tui.model import ServiceJobs
from genai_tui.sim.inproc import InProcessComfy
from genai_tui.sim.web import text_response
from genai_tui.sources import logtext
from genai_tui.sources.jobs import JobsSource, error_type, redact_url, summary
from tests.unit.test_sim_jobs import HASH, call, password_file, submit, wait_until

WRONG = "$2b$12$" + "ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvutsrqponmlkjihgfedcba9"


class Feed:
    """The sim's log, line by line, into the source as logtext events (the log hub's
    path: follower → logtext.log_event → JobsWatcher.observe)."""

    def __init__(self) -> None:
        self.source: JobsSource | None = None

    def __call__(self, text: str) -> None:
        ev = logtext.log_event("comfy", text.strip())
        if ev is not None and self.source is not None:
            self.source.observe([ev])


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., tuple[InProcessComfy, JobsSource]]]:
    sims: list[InProcessComfy] = []
    sources: list[JobsSource] = []

    def start(*, jobs_api: bool = False, token: str = HASH, safety_poll: float = 30.0,
              job_seconds: float = 1.0, begin: bool = True,
              prepare: Callable[[InProcessComfy], None] | None = None,
              ) -> tuple[InProcessComfy, JobsSource]:
        feed = Feed()
        sim = InProcessComfy(password_file(tmp_path), jobs_api=jobs_api,
                             job_seconds=job_seconds, on_line=feed)
        sims.append(sim)
        if prepare is not None:
            prepare(sim)
        src = JobsSource(ServiceConfig("comfy", sim.url), lambda: token,
                         JobsConfig(safety_poll=safety_poll, recent=10),
                         ProbeConfig(connect_timeout=0.5, read_timeout=1.0))
        feed.source = src
        sources.append(src)
        if begin:
            src.start()
        return sim, src

    yield start
    for s in sources:
        s.close()
    for sim in sims:
        sim.close()


def snap_when(src: JobsSource, predicate: Callable[[ServiceJobs], object],
              timeout: float = 10.0) -> ServiceJobs:
    return wait_until(lambda: (lambda s: s if predicate(s) else None)(src.snapshot()),
                      timeout)


@pytest.mark.parametrize("jobs_api", [False, True], ids=["queue+history", "jobs-api"])
def test_running_progress_pending_and_oom_failure(make, jobs_api: bool) -> None:
    sim, src = make(jobs_api=jobs_api, job_seconds=2.0)
    snap_when(src, lambda s: s.websocket and s.checked_at)
    first = submit(sim)  # no client_id: the server broadcasts its progress frames
    oom = submit(sim, {"fail": "oom", "seconds": 0.4})
    s = snap_when(src, lambda s: s.running and s.running.prompt_id == first
                  and s.running.step and s.running.step >= 3)
    assert s.api == ("jobs" if jobs_api else "queue")
    assert s.running.steps == 20 and s.running.state == "running"
    assert s.running.it_per_s and s.running.it_per_s > 1
    assert [j.prompt_id for j in s.pending] == [oom]
    assert s.oldest_wait_s is not None and s.oldest_wait_s >= 0
    assert s.vram_used and s.vram_total and s.vram_source == "torch"  # its reservation
    s = snap_when(src, lambda s: s.running is None and len(s.recent) == 2)
    failed, ok = s.recent
    assert (failed.prompt_id, failed.state, failed.error_type) == (oom, "error", "OOM")
    assert failed.error_message and "\n" not in failed.error_message
    assert failed.finished_at and failed.started_at and failed.finished_at >= failed.started_at
    assert (ok.prompt_id, ok.state) == (first, "success")
    assert s.queue_depth_history[-1] == 0 and max(s.queue_depth_history) >= 2
    doc = json.dumps(s.to_json())
    assert '"state": "error"' in doc and '"error_type": "OOM"' in doc
    line = summary(s)
    assert "1 failed (OOM)" in line and ("via jobs" if jobs_api else "via queue") in line


def test_websocket_status_frame_triggers_the_detail_and_idle_costs_nothing(make) -> None:
    sim, src = make(safety_poll=60.0)
    snap_when(src, lambda s: s.websocket and s.checked_at)
    rounds, requests = src.rounds, src.requests
    time.sleep(2.0)  # idle: one open websocket, not one request
    assert (src.rounds, src.requests, src.ws_opens) == (rounds, requests, 1)
    assert len(sim.app.ws_clients()) == 1
    pid = submit(sim)
    s = snap_when(src, lambda s: s.running and s.running.prompt_id == pid, timeout=5.0)
    assert src.rounds > rounds  # the status frame, not a 60 s poll, brought it
    assert s.websocket
    # our own client id, never another client's
    assert src.client_id and list(sim.app.sockets) == [src.client_id]


def test_no_websocket_falls_back_to_polling(make) -> None:
    def refuse_ws(sim: InProcessComfy) -> None:  # an old server or a proxy: no upgrade
        sim.app.get_routes["/ws"] = lambda req: text_response("404: Not Found", 404)

    sim, src = make(safety_poll=0.5, prepare=refuse_ws)
    s = snap_when(src, lambda s: s.checked_at)
    assert not s.websocket and src.ws_note and "404" in src.ws_note
    pid = submit(sim)
    s = snap_when(src, lambda s: any(j.prompt_id == pid for j in s.recent))
    assert not s.websocket and s.recent[0].state == "success"
    assert src.ws_opens == 0 and src.rounds >= 3


def test_proxy_that_drops_the_upgrade_header_gets_the_token_in_the_query(make) -> None:
    seen: list[str] = []

    def strip_auth_on_ws(sim: InProcessComfy) -> None:
        login = sim.app._login_middleware

        def proxied(req):
            if req.path == "/ws":
                seen.append("token=" in req.target)
                del req.headers["Authorization"]
            return login(req)

        sim.app._login_middleware = proxied

    sim, src = make(prepare=strip_auth_on_ws)
    s = snap_when(src, lambda s: s.websocket and s.checked_at)
    assert seen[:2] == [False, True]  # Bearer first, then the browser way
    assert src.ws_note is None and HASH not in json.dumps(s.to_json()) + repr(src)


def test_dropped_websocket_is_reopened(make) -> None:
    sim, src = make()
    snap_when(src, lambda s: s.websocket)
    assert sim.drop_websockets() == 1
    wait_until(lambda: src.ws_opens == 2 and src.snapshot().websocket, timeout=10)
    pid = submit(sim)
    snap_when(src, lambda s: any(j.prompt_id == pid for j in s.recent))


def test_close_is_fast_even_while_the_server_hangs(make) -> None:
    sim, src = make()
    snap_when(src, lambda s: s.websocket)
    submit(sim, {"hang": 5.0, "seconds": 6.0})
    wait_until(lambda: sim.app.hang_until > time.time())
    src.poke()  # a detail request that the hung server will not answer
    time.sleep(0.3)
    t0 = time.monotonic()
    src.close()
    assert time.monotonic() - t0 < 1.5
    assert not src.alive
    names = {t.name for t in threading.enumerate()}
    assert "jobs-comfy" not in names


def test_hung_server_is_an_error_not_a_stuck_job(make) -> None:
    sim, src = make()
    snap_when(src, lambda s: s.websocket)
    submit(sim, {"hang": 4.0, "seconds": 5.0})
    wait_until(lambda: sim.app.hang_until > time.time())
    src.poke()
    s = snap_when(src, lambda s: s.error, timeout=6)
    assert "timeout" in s.error


def test_progress_and_models_from_the_log(make) -> None:
    sim, src = make(job_seconds=2.0)
    snap_when(src, lambda s: s.websocket)
    pid = submit(sim, client_id="a-browser-tab")  # its frames go to that tab only
    s = snap_when(src, lambda s: s.running and s.running.prompt_id == pid
                  and (s.running.step or 0) >= 3)
    assert s.running.steps == 20 and s.running.it_per_s  # from the tqdm bar
    assert s.resident_models == ["SDXL"]  # Requested to load + loaded completely
    snap_when(src, lambda s: s.running is None)
    assert call(sim, "/free", {"unload_models": True})[0] == 200
    snap_when(src, lambda s: s.resident_models == [])  # "1 models unloaded."


def test_token_never_shows(make, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    sim, src = make(token=WRONG)
    s = snap_when(src, lambda s: s.error)
    assert "401" in s.error
    src.close()
    texts = [repr(src), str(src.ws_note), json.dumps(s.to_json()), summary(s),
             caplog.text]
    for text in texts:
        assert WRONG not in text and WRONG[7:29] not in text and HASH not in text
    url = f"ws://127.0.0.1:1/ws?clientId=x&token={WRONG}"
    assert WRONG not in redact_url(url) and "token=[redacted]" in redact_url(url)
    assert WRONG not in redact_url(f"http://u:{WRONG}@h/x")


def test_error_types_name_oom() -> None:
    assert error_type("torch.OutOfMemoryError", "Allocation on device") == "OOM"
    assert error_type("RuntimeError", "CUDA out of memory. Tried to allocate 2 GiB") == "OOM"
    assert error_type("torch.cuda.OutOfMemoryError") == "OOM"
    assert error_type("RuntimeError", "mat1 and mat2 shapes cannot be multiplied") == \
        "RuntimeError"
    assert error_type("\x1b]0;pwned\x07ValueError") == "ValueError"
    assert error_type(None) is None
