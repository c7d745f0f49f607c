"""The simulator's real queue (issue #14), over real loopback sockets: `POST /prompt`,
the worker's log lines, `/queue`, `/history`, `/interrupt`, `/free`, the websocket's
frames (status to every socket, the job's own events to its client only) and the jobs
API of newer servers, in the shapes of ComfyUI's server.py / comfy_execution/jobs.py."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genai_tui.sim.config import parse_args
from genai_tui.sim.inproc import InProcessComfy
from genai_tui.sources.jobs import WebSocket

HASH = "$2b$12$" + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"
BEARER = {"Authorization": f"Bearer {HASH}"}
GRAPH = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {}},
         "3": {"class_type": "KSampler", "inputs": {"steps": 20}},
         "9": {"class_type": "SaveImage", "inputs": {}}}


def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "login" / "PASSWORD"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{HASH}\nadmin")
    return path


def call(sim: InProcessComfy, path: str, body: Any = None, *, method: str | None = None,
         headers: dict[str, str] | None = None, timeout: float = 5.0
         ) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method or ("POST" if body is not None else "GET"), path, body=data,
                     headers={**BEARER, **(headers or {})})
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(raw) if raw else None
    except ValueError:
        return resp.status, raw.decode("utf-8", "replace")


def submit(sim: InProcessComfy, sim_opts: dict[str, Any] | None = None,
           client_id: str | None = None) -> str:
    body: dict[str, Any] = {"prompt": GRAPH, "extra_data": {"sim": sim_opts or {}}}
    if client_id is not None:
        body["client_id"] = client_id
    status, doc = call(sim, "/prompt", body)
    assert status == 200, doc
    return doc["prompt_id"]


def ws_open(sim: InProcessComfy, client_id: str) -> WebSocket:
    return WebSocket.connect("127.0.0.1", sim.port, f"/ws?clientId={client_id}", BEARER,
                             timeout=3)


def frames(ws: WebSocket, until: str | None = None, timeout: float = 6.0) -> list[dict]:
    """Messages until one of type `until` (or until `timeout` s of silence)."""
    out: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = ws.recv(max(0.05, deadline - time.monotonic()))
        except TimeoutError:
            break
        if text is None:
            continue
        msg = json.loads(text)
        out.append(msg)
        if until is not None and msg["type"] == until:
            break
    return out


def wait_until(predicate, timeout: float = 8.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def history_entry(sim: InProcessComfy, prompt_id: str) -> dict[str, Any] | None:
    return call(sim, "/history?max_items=10")[1].get(prompt_id)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[InProcessComfy]:
    with InProcessComfy(password_file(tmp_path), job_seconds=0.6) as s:
        yield s


@pytest.fixture
def new_sim(tmp_path: Path) -> Iterator[InProcessComfy]:
    with InProcessComfy(password_file(tmp_path), jobs_api=True, job_seconds=0.6) as s:
        yield s


def test_status_frames_go_to_every_socket_and_job_events_only_to_its_client(sim) -> None:
    mine, other = ws_open(sim, "mine"), ws_open(sim, "other")
    try:
        for ws in (mine, other):
            first = frames(ws, until="status")[0]
            assert first["data"]["status"]["exec_info"]["queue_remaining"] == 0
        pid = submit(sim, client_id="mine")
        got_mine = frames(mine, until="execution_success")
        types = [m["type"] for m in got_mine]
        assert types[:1] == ["status"] and types[0] == "status"
        assert got_mine[0]["data"]["status"]["exec_info"]["queue_remaining"] == 1
        assert {"execution_start", "executing", "progress", "execution_success"} <= set(types)
        progress = [m["data"] for m in got_mine if m["type"] == "progress"]
        assert progress[-1] == {"value": 20, "max": 20, "prompt_id": pid, "node": "3"}
        got_other = frames(other, timeout=1.5)
        assert {m["type"] for m in got_other} == {"status"}  # the queue moved, nothing else
        assert got_other[-1]["data"]["status"]["exec_info"]["queue_remaining"] == 0
    finally:
        mine.close()
        other.close()


def test_a_job_without_client_id_broadcasts_its_progress(sim) -> None:
    ws = ws_open(sim, "observer")
    try:
        frames(ws, until="status")
        pid = submit(sim)
        got = frames(ws, until="execution_success")
        assert any(m["type"] == "progress" and m["data"]["prompt_id"] == pid for m in got)
    finally:
        ws.close()


def test_reused_client_id_takes_the_session_over(sim) -> None:
    old = ws_open(sim, "same")
    frames(old, until="status")
    new = ws_open(sim, "same")
    try:
        frames(new, until="status")
        submit(sim)
        assert any(m["type"] == "status" for m in frames(new, until="execution_success"))
        assert frames(old, timeout=1.0) == []  # the older socket hears nothing any more
    finally:
        old.close()
        new.close()


def test_normal_job_prints_tqdm_and_records_success(sim) -> None:
    pid = submit(sim)
    entry = wait_until(lambda: history_entry(sim, pid))
    assert entry["status"]["status_str"] == "success"
    names = [m[0] for m in entry["status"]["messages"]]
    assert names[0] == "execution_start" and names[-1] == "execution_success"
    text = sim.text()
    assert "got prompt" in text and "Requested to load SDXL" in text
    assert "\r100%|██████████| 20/20 [" in text and "it/s]" in text
    assert sim.wait_log("Prompt executed in")


def test_oom_job_fails_like_comfyui(sim) -> None:
    ws = ws_open(sim, "me")
    try:
        frames(ws, until="status")
        pid = submit(sim, {"fail": "oom"}, client_id="me")
        got = frames(ws, until="execution_error")
        error = got[-1]["data"]
        assert got[-1]["type"] == "execution_error" and error["prompt_id"] == pid
        assert error["exception_type"] == "torch.OutOfMemoryError"
    finally:
        ws.close()
    entry = wait_until(lambda: history_entry(sim, pid))
    assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
    last = entry["status"]["messages"][-1]
    assert last[0] == "execution_error"
    assert "out of memory" in last[1]["exception_message"]
    assert sim.wait_log("Got an OOM, unloading all loaded models.")
    text = sim.text()
    assert "!!! Exception during processing !!! Allocation on device" in text
    assert "torch.OutOfMemoryError: Allocation on device" in text
    assert sim.wait_log("Prompt executed in")  # an OOM'd job still prints it
    # the OOM unloaded the model: torch holds nothing now
    assert call(sim, "/system_stats")[1]["devices"][0]["torch_vram_total"] == 0


def test_stuck_job_never_progresses_until_interrupted(sim) -> None:
    pid = submit(sim, {"stuck": True})
    wait_until(lambda: [i[1] for i in call(sim, "/queue")[1]["queue_running"]] == [pid])
    ws = ws_open(sim, "watch")
    try:
        frames(ws, until="status")
        assert frames(ws, timeout=1.0) == []  # no progress frame, no queue change
        queue = call(sim, "/queue")[1]
        assert [i[1] for i in queue["queue_running"]] == [pid]
        # an interrupt for another prompt id leaves it alone
        assert call(sim, "/interrupt", {"prompt_id": "not-this-one"})[0] == 200
        time.sleep(0.3)
        assert history_entry(sim, pid) is None
        assert call(sim, "/interrupt", {"prompt_id": pid})[0] == 200
        entry = wait_until(lambda: history_entry(sim, pid))
    finally:
        ws.close()
    assert entry["status"]["status_str"] == "error"
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"
    assert sim.wait_log("Processing interrupted")
    assert "100%" not in sim.text()


def test_hang_job_blocks_every_http_answer(sim) -> None:
    pid = submit(sim, {"hang": 1.5, "seconds": 2.0})
    wait_until(lambda: sim.app.hang_until > time.time())
    with pytest.raises(TimeoutError):
        call(sim, "/prompt", timeout=0.5)
    entry = wait_until(lambda: history_entry(sim, pid))  # answers again once it ends
    assert entry["status"]["status_str"] == "success"


def test_free_waits_for_the_running_job(sim) -> None:
    pid = submit(sim, {"seconds": 1.0})
    wait_until(lambda: call(sim, "/queue")[1]["queue_running"])
    assert call(sim, "/free", {"unload_models": True, "free_memory": True})[0] == 200
    time.sleep(0.2)
    assert "models unloaded." not in sim.text()  # /free never interrupts a job
    wait_until(lambda: history_entry(sim, pid))
    assert sim.wait_log("1 models unloaded.")
    assert history_entry(sim, pid)["status"]["status_str"] == "success"


def test_queue_delete_broadcasts_status(sim) -> None:
    first = submit(sim, {"stuck": True})
    second = submit(sim)
    wait_until(lambda: call(sim, "/queue")[1]["queue_running"])  # the worker's own status
    ws = ws_open(sim, "w")
    try:
        assert frames(ws, until="status")[0]["data"]["status"]["exec_info"][
            "queue_remaining"] == 2
        assert call(sim, "/queue", {"delete": [second]})[0] == 200
        got = frames(ws, until="status")
        assert got[-1]["data"]["status"]["exec_info"]["queue_remaining"] == 1
        assert call(sim, "/interrupt", {"prompt_id": first})[0] == 200
    finally:
        ws.close()


def test_old_server_has_no_jobs_api(sim) -> None:
    assert call(sim, "/api/jobs?status=pending")[0] == 404
    pid = submit(sim, {"stuck": True})
    item = wait_until(lambda: call(sim, "/queue")[1]["queue_running"])[0]
    assert item[1] == pid and "create_time" not in item[3]  # 0.3.64 sets none
    call(sim, "/interrupt")


def test_new_server_jobs_api_shapes(new_sim) -> None:
    sim = new_sim
    stuck = submit(sim, {"stuck": True})
    waiting = submit(sim)
    wait_until(lambda: call(sim, "/queue")[1]["queue_running"])
    status, doc = call(sim, "/api/jobs?status=in_progress,pending&sort_order=asc")
    assert status == 200 and set(doc) == {"jobs", "pagination"}
    jobs = doc["jobs"]
    assert [(j["id"], j["status"]) for j in jobs] == [(stuck, "in_progress"),
                                                      (waiting, "pending")]
    assert isinstance(jobs[0]["create_time"], int) and jobs[0]["priority"] == 0
    assert "execution_start_time" not in jobs[0]  # pruned like prune_dict does
    assert doc["pagination"] == {"offset": 0, "limit": None, "total": 2, "has_more": False}
    assert call(sim, "/api/jobs?status=bogus")[0] == 400
    assert call(sim, "/api/jobs?limit=0")[0] == 400
    assert call(sim, "/jobs")[0] == 404  # only under /api/
    assert call(sim, f"/api/jobs/{waiting}")[1]["status"] == "pending"
    assert call(sim, f"/api/jobs/{waiting}/cancel", {})[1] == {"cancelled": True}
    assert call(sim, "/api/jobs/cancel", {"job_ids": [stuck]})[1] == {"cancelled": True}
    wait_until(lambda: history_entry(sim, stuck))
    failed = submit(sim, {"fail": "oom"})
    wait_until(lambda: history_entry(sim, failed))
    done = call(sim, "/api/jobs?status=completed,failed,cancelled&limit=1")[1]
    assert done["pagination"]["total"] == 2 and done["pagination"]["has_more"] is True
    newest = done["jobs"][0]
    assert newest["id"] == failed and newest["status"] == "failed"
    assert newest["execution_error"]["exception_type"] == "torch.OutOfMemoryError"
    assert newest["execution_end_time"] >= newest["execution_start_time"]
    everything = call(sim, "/api/jobs")[1]["jobs"]
    assert {j["id"]: j["status"] for j in everything} == {stuck: "cancelled",
                                                          failed: "failed"}
    assert call(sim, f"/api/jobs/{'0' * 8}")[0] == 404


def test_cli_flags_and_env_for_the_queue(monkeypatch) -> None:
    cfg = parse_args(["--jobs-api", "--job-mode", "oom", "--job-seconds", "3"])
    assert (cfg.jobs_api, cfg.job_mode, cfg.job_seconds) == (True, "oom", 3.0)
    monkeypatch.setenv("SIM_JOBS_API", "1")
    monkeypatch.setenv("SIM_JOB_MODE", "stuck")
    cfg = parse_args([])
    assert cfg.jobs_api is True and cfg.job_mode == "stuck"
    assert parse_args(["--kind", "comfyui"]).job_seconds is None
    with pytest.raises(SystemExit):
        parse_args(["--job-mode", "explode"])
