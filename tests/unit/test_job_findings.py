"""Job findings (issue #14) from a snapshot: job_stuck, job_failed (OOM named as OOM),
queue_backlog, vram_idle_hold and stop_ignores_sigterm — each fires on the situation that
causes it, with the fix a face maps onto its key, and stays quiet on a healthy queue."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from genai_tui.config import Config, JobsConfig, ServiceConfig, TokensConfig
from genai_tui.diagnose import diagnose
from genai_tui.model import (
    ContainerInfo,
    JobInfo,
    JobsReport,
    ServiceJobs,
    Severity,
    Snapshot,
)
from tests.unit.test_diagnose import NOW, healthy, running

GIB = 1024 ** 3
JOBS = JobsConfig(stuck_after=120, backlog_after=300, idle_hold_after=600, idle_hold_gib=4)
CFG = Config(services=(
    ServiceConfig("qwen", "http://127.0.0.1:8188", "comfyui", container="qwen", auth=True),
    ServiceConfig("orch", "http://127.0.0.1:8193", "orchestrator", container="orch"),
), tokens=TokensConfig(canonical="secrets"), jobs=JOBS)


def ago(seconds: float):
    return NOW - timedelta(seconds=seconds)


def with_jobs(sj: ServiceJobs, **over) -> Snapshot:
    return healthy(jobs=JobsReport([sj]), **over)


def found(snap: Snapshot, cfg: Config = CFG) -> dict[str, object]:
    return {f.code: f for f in diagnose(snap, cfg, now=NOW) if f.service == "qwen"}


def busy(last_progress: float, **kw) -> ServiceJobs:
    run = JobInfo("0f3c9a1e-aaaa-bbbb-cccc-000000000001", 7, "running", started_at=ago(900),
                  step=3, steps=20)
    return ServiceJobs("qwen", running=run, last_progress_at=ago(last_progress), api="queue",
                       **kw)


def test_healthy_queue_gives_no_job_finding() -> None:
    sj = ServiceJobs("qwen", running=busy(5).running, last_progress_at=ago(5),
                     pending=[JobInfo("p1", 8, "pending", queued_at=ago(20))], oldest_wait_s=20,
                     recent=[JobInfo("d1", 6, "success", finished_at=ago(30))],
                     vram_used=6 * GIB, vram_source="system_stats", api="jobs")
    codes = set(found(with_jobs(sj)))
    assert not codes & {"job_stuck", "job_failed", "queue_backlog", "vram_idle_hold"}


def test_job_stuck_after_the_configured_time_while_the_server_answers() -> None:
    assert "job_stuck" not in found(with_jobs(busy(119)))
    f = found(with_jobs(busy(121)))["job_stuck"]
    assert f.severity is Severity.WARNING and f.fix == "interrupt"
    assert "#7" in f.message and "step 3/20" in f.message and "2 min" in f.message
    assert f.since == ago(121)
    # a server that does not answer is not a stuck job (the probes say it is down)
    assert "job_stuck" not in found(with_jobs(busy(500, error="/queue: timeout")))
    # the threshold is the config's
    longer = Config(services=CFG.services, tokens=CFG.tokens,
                    jobs=JobsConfig(stuck_after=600))
    assert "job_stuck" not in found(with_jobs(busy(500)), longer)


def test_job_failed_names_oom_and_its_fix() -> None:
    oom = JobInfo("9a8b7c6d-0000", 12, "error", finished_at=ago(60), error_type="OOM",
                  error_message="Allocation on device 0 would exceed allowed memory.")
    other = JobInfo("1b2c3d4e-0000", 11, "error", finished_at=ago(120),
                    error_type="RuntimeError", error_message="mat1 and mat2 shapes")
    f = found(with_jobs(ServiceJobs("qwen", recent=[oom, other], api="jobs")))["job_failed"]
    assert "2 jobs failed" in f.message and "out of memory (OOM)" in f.message
    assert f.fix == "free_vram" and f.since == ago(60)
    f = found(with_jobs(ServiceJobs("qwen", recent=[other], api="queue")))["job_failed"]
    assert "RuntimeError: mat1 and mat2 shapes" in f.message and f.fix == "read_logs"
    old = JobInfo("x", 1, "error", finished_at=ago(7200), error_type="OOM")
    assert "job_failed" not in found(with_jobs(ServiceJobs("qwen", recent=[old])))
    interrupted = JobInfo("y", 2, "interrupted", finished_at=ago(10))
    assert "job_failed" not in found(with_jobs(ServiceJobs("qwen", recent=[interrupted])))


def test_queue_backlog_over_the_threshold() -> None:
    pending = [JobInfo(f"p{i}", i, "pending", queued_at=ago(400 - i)) for i in range(3)]
    quiet = ServiceJobs("qwen", running=busy(5).running, last_progress_at=ago(5),
                        pending=pending, oldest_wait_s=299)
    assert "queue_backlog" not in found(with_jobs(quiet))
    quiet.oldest_wait_s = 400
    f = found(with_jobs(quiet))["queue_backlog"]
    assert "3 jobs waiting" in f.message and "7 min" in f.message


def test_vram_idle_hold_names_the_models_and_frees() -> None:
    done = JobInfo("d", 3, "success", finished_at=ago(1200))
    sj = ServiceJobs("qwen", recent=[done], last_progress_at=ago(1200), vram_used=9 * GIB,
                     vram_source="nvml", resident_models=["Flux", "AutoencodingEngine"])
    f = found(with_jobs(sj))["vram_idle_hold"]
    assert f.fix == "free_vram" and "9.0 GiB" in f.message and "Flux" in f.message
    assert "20 min" in f.message and f.since == ago(1200)
    sj.vram_used = 3 * GIB  # under idle_hold_gib
    assert "vram_idle_hold" not in found(with_jobs(sj))
    sj.vram_used = 9 * GIB
    sj.last_progress_at = ago(100)  # idle, but not for idle_hold_after yet
    assert "vram_idle_hold" not in found(with_jobs(sj))


def test_stop_that_waited_for_sigkill_suggests_init() -> None:
    stopped = ContainerInfo("qwen", "qwen", state="exited", exit_code=137,
                            finished_at=ago(30))
    snap = healthy(containers=[stopped, running("orch")])
    got = found(snap)
    f = got["stop_ignores_sigterm"]
    assert f.fix == "set_init" and "init: true" in f.message
    assert "container_exited" in got  # the exit itself is still reported
    oom = ContainerInfo("qwen", "qwen", state="exited", exit_code=137, oom_killed=True)
    assert "stop_ignores_sigterm" not in found(healthy(containers=[oom, running("orch")]))
    crash = ContainerInfo("qwen", "qwen", state="exited", exit_code=1)
    assert "stop_ignores_sigterm" not in found(healthy(containers=[crash, running("orch")]))


def test_check_json_carries_jobs_per_service() -> None:
    sj = busy(5, pending=[JobInfo("p1", 8, "pending", queued_at=ago(20))], oldest_wait_s=20.0)
    doc = json.loads(json.dumps(with_jobs(sj).to_json()))
    (qwen,) = doc["jobs"]
    assert qwen["service"] == "qwen" and qwen["running"]["number"] == 7
    assert qwen["pending_count"] == 1 and qwen["oldest_wait_s"] == 20.0
    assert qwen["recent_failures"] == 0 and qwen["api"] == "queue"
    assert "jobs" not in Snapshot().to_json()


def test_jobs_config_table_is_validated(tmp_path) -> None:
    from genai_tui import config as configmod

    path = tmp_path / "genai-tui.toml"
    path.write_text("[jobs]\nstuck_after = 90\nidle_hold_gib = 2.5\nrecent = 5\n")
    jobs = configmod.load_file(path).jobs
    assert (jobs.stuck_after, jobs.idle_hold_gib, jobs.recent) == (90.0, 2.5, 5)
    assert jobs.safety_poll == JobsConfig.safety_poll and jobs.enabled
    for bad, why in (("stuck_after = -1", "jobs.stuck_after"),
                     ("recent = 0", "jobs.recent"), ("enabled = 'yes'", "jobs.enabled"),
                     ("stuck = 5", "unknown key")):
        path.write_text(f"[jobs]\n{bad}\n")
        with pytest.raises(configmod.ConfigError, match=why):
            configmod.load_file(path)
