"""Exit 137 is not always the OOM killer: a process that ignores SIGTERM (ComfyUI run as
PID 1 with no init) makes `docker stop` wait the whole grace period and SIGKILL it. The
live engine watches the stop on the events stream: the row knows a stop is under way,
and the finding names the real cause only when the SIGKILL followed a SIGTERM."""

from __future__ import annotations

import threading

import pytest

from genai_tui.config import ServiceConfig
from genai_tui.diagnose import diagnose
from genai_tui.model import Severity, Snapshot
from tests.conftest import host_port, wait_port
from tests.integration.test_causes_docker import config

pytestmark = pytest.mark.docker


def findings(cfg, rec, service):
    info = rec.latest(service)
    snap = Snapshot(containers=[info])
    snap.docker.reachable = True
    return [f for f in diagnose(snap, cfg) if f.service == service]


def test_a_stop_that_ignores_sigterm_is_named_with_its_evidence(sim_container, monitor_for):
    c = sim_container(environment={"SIM_IGNORE_SIGTERM": "1"})
    wait_port(host_port(c))
    svc = ServiceConfig("qwen", f"http://127.0.0.1:{host_port(c)}", "comfyui",
                        container=c.name)
    cfg = config(svc)
    _, rec = monitor_for(cfg)
    rec.wait_state("qwen", lambda i: i.running)
    stopper = threading.Thread(target=c.stop, kwargs={"timeout": 3})
    stopper.start()
    try:
        # while docker stop waits: still running, and known to be stopping
        during = rec.wait_state("qwen", lambda i: i.stopping_since is not None, timeout=10)
        assert during.running
    finally:
        stopper.join(30)
    after = rec.wait_state("qwen", lambda i: i.state == "exited" and i.stop_took_s is not None)
    assert after.exit_code == 137 and not after.oom_killed
    assert after.stop_escalated and after.stop_took_s >= 2.5
    assert after.stopping_since is None
    got = [f for f in findings(cfg, rec, "qwen") if f.code == "stop_ignores_sigterm"]
    assert len(got) == 1 and got[0].severity is Severity.WARNING and got[0].fix == "set_init"
    assert "ignores SIGTERM" in got[0].message and "not an OOM kill" in got[0].message


def test_a_plain_docker_kill_is_not_blamed_on_sigterm(sim_container, monitor_for):
    c = sim_container()
    wait_port(host_port(c))
    svc = ServiceConfig("qwen", f"http://127.0.0.1:{host_port(c)}", "comfyui",
                        container=c.name)
    cfg = config(svc)
    _, rec = monitor_for(cfg)
    rec.wait_state("qwen", lambda i: i.running)
    # a SIGTERM this process obeys, so the stop is quick and never escalates
    c.stop(timeout=10)
    after = rec.wait_state("qwen", lambda i: i.state == "exited" and i.stop_took_s is not None)
    assert not after.stop_escalated
    c.start()
    rec.wait_state("qwen", lambda i: i.running and i.stop_took_s is None)
    c.kill()  # SIGKILL with no SIGTERM first: 137 on purpose
    killed = rec.wait_state("qwen", lambda i: i.state == "exited" and i.exit_code == 137)
    assert not killed.stop_escalated
    assert "stop_ignores_sigterm" not in {f.code for f in findings(cfg, rec, "qwen")}
