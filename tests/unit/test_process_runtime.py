"""Services outside Docker (`runtime = "process"`): found by listening port or command
pattern, shown like containers, restarted with their restart_command — with real local
processes (the simulator)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genai_tui import config as configmod
from genai_tui.sources.process import ProcessMonitor, ProcessSource
from tests.conftest import free_port, wait_for, wait_port

ROOT = Path(__file__).resolve().parents[2]


def sim_line(port: int, pidfile: Path, logfile: Path) -> str:
    cmd = [sys.executable, "-m", "genai_tui.sim", "--kind", "orchestrator", "--host",
           "127.0.0.1", "--port", str(port)]
    return (f"if [ -f {pidfile} ]; then kill $(cat {pidfile}) 2>/dev/null; sleep 0.3; fi; "
            f"PYTHONPATH={shlex.quote(str(ROOT))} nohup {' '.join(map(shlex.quote, cmd))} "
            f">> {logfile} 2>&1 < /dev/null & echo $! > {pidfile}")


@pytest.fixture
def stack(tmp_path):
    port, other = free_port(), free_port()
    pidfile, logfile = tmp_path / "orch.pid", tmp_path / "orch.log"
    line = sim_line(port, pidfile, logfile)
    toml = tmp_path / "genai-tui.toml"
    toml.write_text(f"""
[[services]]
name = "orch"
url = "http://127.0.0.1:{port}"
kind = "orchestrator"
runtime = "process"
restart_command = {json.dumps(line)}
log_file = "orch.log"

[[services]]
name = "by-pattern"
url = "http://127.0.0.1:{other}"
kind = "http"
runtime = "process"
process_pattern = "sleep 4242[0-9]"

[[services]]
name = "absent"
url = "http://127.0.0.1:{free_port()}"
kind = "http"
runtime = "process"
""")
    subprocess.run(["sh", "-c", line], check=True)
    sleeper = subprocess.Popen(["sleep", "42421"])
    wait_port(port)
    cfg = configmod.load_file(toml, env={})
    yield cfg, port, pidfile
    sleeper.kill()
    sleeper.wait()
    try:
        os.kill(int(pidfile.read_text()), signal.SIGTERM)
    except (OSError, ValueError):
        pass


def test_found_by_port_and_by_pattern(stack):
    cfg, port, pidfile = stack
    infos = {i.service: i for i in ProcessSource(cfg).list_stack()}
    orch = infos["orch"]
    assert orch.state == "running" and orch.runtime == "process"
    assert orch.pid == int(pidfile.read_text())
    assert [p.host_port for p in orch.ports] == [port]
    assert "genai_tui.sim" in orch.image and orch.started_at is not None
    assert orch.memory_mb and orch.memory_mb > 1
    assert infos["by-pattern"].state == "running"
    assert "sleep" in infos["by-pattern"].container
    assert infos["absent"].missing


def test_restart_command_restarts_and_monitor_reports_it(stack):
    cfg, port, pidfile = stack
    seen = []
    monitor = ProcessMonitor(cfg, lambda status, infos: seen.append(
        {i.service: i for i in infos}), interval=0.2)
    monitor.start()
    try:
        first = wait_for(lambda: seen and seen[-1]["orch"].pid)
        ok, detail = monitor.source.restart(cfg.service("orch"))
        assert ok, detail
        wait_port(port)
        monitor.poke()
        second = wait_for(lambda: (p := seen[-1]["orch"].pid) and p != first and p)
        assert second == int(pidfile.read_text())
        os.kill(second, signal.SIGKILL)
        wait_for(lambda: seen[-1]["orch"].missing)
    finally:
        t0 = time.monotonic()
        monitor.close()
        assert time.monotonic() - t0 < 2


def test_failing_restart_command_says_why(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text(f"""
[[services]]
name = "x"
url = "http://127.0.0.1:{free_port()}"
runtime = "process"
restart_command = "echo 'unit x.service not found' >&2; exit 5"
""")
    cfg = configmod.load_file(toml, env={})
    ok, detail = ProcessSource(cfg).restart(cfg.services[0])
    assert not ok and detail == "restart_command exited 5: unit x.service not found"
    cfg2 = configmod.load_file(toml, env={})
    svc = cfg2.services[0]
    from dataclasses import replace

    ok, detail = ProcessSource(cfg2).restart(replace(svc, restart_command=None))
    assert not ok and "no restart_command" in detail


def test_demo_local_runs_without_docker(tmp_path):
    """`genai-tui demo --local`: four simulated services as local processes, a config that
    points at them, and everything stopped afterwards."""
    from genai_tui import demo

    d = demo.LocalDemo(tmp_path / "demo")
    path = d.start()
    try:
        cfg = configmod.load_file(path, env={})
        assert {s.runtime for s in cfg.services} == {"process"}
        for svc in cfg.services:
            wait_port(svc.host_port[1])
        infos = {i.service: i for i in ProcessSource(cfg).list_stack()}
        assert all(i.state == "running" for i in infos.values()), infos
        pids = d.pids()
        assert len(pids) == 4
    finally:
        d.close()
    wait_for(lambda: all(not _alive(p) for p in pids), timeout=10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of an exited child counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
