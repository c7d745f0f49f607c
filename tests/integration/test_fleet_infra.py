"""The fleet fixtures themselves, against the real parts: an OpenSSH server on 127.0.0.1
("host b" over ssh) and a second dockerd. What the fleet view relies on: the remote
genai-tui runs and answers, a host that goes away is "Connection refused", a changed or
unknown host key is refused without a prompt, the second engine sees only its own
containers, and `genai-tui check --json` over ssh reports host b's containers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import genai_tui
from genai_tui import simdocker
from tests.conftest import TEST_OWNER
from tests.integration.fleet_infra import (
    SIM_PORTS,
    SSHD,
    RemoteStack,
    SecondEngine,
    SshServer,
    genai_tui_path,
    need,
    need_sshd,
    pick_port,
    processes_mentioning,
    reap_stale,
)

GENAI_TUI = str(genai_tui_path())


def test_remote_genai_tui_answers_through_real_sshd(ssh_server: SshServer) -> None:
    r = ssh_server.run(GENAI_TUI, "--version", timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"genai-tui {genai_tui.__version__}"


def test_set_env_reaches_the_remote_command(make_ssh_server) -> None:
    server = make_ssh_server(alias="gpu-b", set_env={"GTFLEET_MARK": "host b"})
    r = server.run("sh", "-c", 'echo "$XDG_STATE_HOME|$NO_COLOR|$GTFLEET_MARK"')
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{server.state_home}|1|host b"


def test_host_gone_is_connection_refused_then_back_on_same_port(ssh_server: SshServer
                                                                 ) -> None:
    port = ssh_server.port
    ssh_server.stop()
    r = ssh_server.run("true", timeout=30)
    assert r.returncode == 255
    assert "Connection refused" in r.stderr
    ssh_server.start()
    assert ssh_server.port == port
    assert ssh_server.run("true", timeout=30).returncode == 0


def test_changed_or_unknown_host_key_is_refused_without_prompt(ssh_server: SshServer
                                                                ) -> None:
    # stdin is /dev/null and the wait bounded: a prompt would show as a timeout here
    ssh_server.write_wrong_host_key()
    r = ssh_server.run("true", timeout=30)
    assert r.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in r.stderr
    assert "Host key verification failed" in r.stderr

    ssh_server.write_unknown_host_key()
    r = ssh_server.run("true", timeout=30)
    assert r.returncode == 255
    assert "Host key verification failed" in r.stderr
    assert "(yes/no" not in r.stderr

    ssh_server.restore_host_key()
    assert ssh_server.run("true", timeout=30).returncode == 0


def test_close_ends_sshd_and_control_masters() -> None:
    need_sshd()
    with SshServer() as server:
        server.start()
        sshd_pid = server.pid
        master = server.run("true", timeout=30, options={
            "ControlMaster": "yes", "ControlPath": f"{server.tmp}/cm-%C",
            "ControlPersist": "yes"})
        assert master.returncode == 0, master.stderr
        assert list(server.tmp.glob("cm-*")), "no ControlMaster socket was made"
        tmp = server.tmp
    assert not tmp.exists()
    assert processes_mentioning(tmp) == []
    assert sshd_pid is not None and not Path(f"/proc/{sshd_pid}").exists()


def test_second_engine_lists_only_its_own_containers(second_engine: SecondEngine,
                                                      docker_client) -> None:
    b = second_engine.client()
    simdocker.ensure_image(b)
    on_b = simdocker.unique("gtfleet-onb")
    on_main = simdocker.unique("gtfleet-onmain")
    try:
        simdocker.run_sim(b, name=on_b, kind="stub", container_port=pick_port(SIM_PORTS),
                          publish=False, network="host", owner="gtfleet-iso")
        simdocker.run_sim(docker_client, name=on_main, kind="stub", publish=False,
                          owner=TEST_OWNER)
        b_names = {c.name for c in b.containers.list(all=True)}
        main_names = {c.name for c in docker_client.containers.list(all=True)}
        assert on_b in b_names and on_b not in main_names
        assert on_main in main_names and on_main not in b_names
    finally:
        simdocker.remove_owned(b, "gtfleet-iso")
        simdocker.remove_owned(docker_client, TEST_OWNER)


def _remote_check(server: SshServer, stack: RemoteStack) -> tuple[int, dict]:
    r = server.run(GENAI_TUI, "check", "--json", "--config", str(stack.config_path),
                   timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads(r.stdout)


def test_remote_check_over_ssh_reports_host_b_containers(
        ssh_server: SshServer, remote_stack: RemoteStack, docker_client) -> None:
    code, doc = _remote_check(ssh_server, remote_stack)
    assert code in (0, 1), doc.get("findings")
    seen = {c["container"]: c for c in doc["containers"]}
    assert set(seen) == set(remote_stack.containers)
    assert all(c["state"] == "running" for c in seen.values())
    main_names = {c.name for c in docker_client.containers.list(all=True)}
    assert not main_names & set(seen)

    # host b's orchestrator stops: the remote check says so
    b = remote_stack.client
    name = remote_stack.services["orchestrator"]
    b.containers.get(name).stop(timeout=10)
    try:
        code, doc = _remote_check(ssh_server, remote_stack)
        state = {c["container"]: c["state"] for c in doc["containers"]}
        assert state[name] == "exited"
        assert code == 2
    finally:
        b.containers.get(name).start()


def test_second_engine_close_leaves_nothing_and_main_engine_untouched(docker_client
                                                                       ) -> None:
    need("dockerd")
    engine = SecondEngine()
    try:
        try:
            engine.start()
        except RuntimeError as exc:
            pytest.fail(str(exc))
        c = engine.client()
        simdocker.ensure_image(c)
        simdocker.run_sim(c, name=simdocker.unique("gtfleet-left"), kind="stub",
                          container_port=pick_port(SIM_PORTS), publish=False, network="host",
                          owner="gtfleet-left")
        assert engine.leftovers(), "a running engine names its folder"
    finally:
        engine.close()
    assert engine.leftovers() == []
    assert not engine.tmp.exists()
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(engine.tmp) not in ps
    assert docker_client.ping()


_KILLED_RUN = """
import os, signal, sys
from tests.integration.fleet_infra import SecondEngine, SshServer, pick_port, SIM_PORTS
from genai_tui import simdocker
engine = SecondEngine()
engine.start()
c = engine.client()
simdocker.ensure_image(c)
simdocker.run_sim(c, name=simdocker.unique("gtfleet-killed"), kind="stub",
                  container_port=pick_port(SIM_PORTS), publish=False, network="host",
                  owner="gtfleet-killed")
server = SshServer()
server.start()
print(engine.tmp, engine.bridge, server.tmp, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_run_killed_outright_is_reaped_at_the_next_start(docker_client) -> None:
    need("dockerd")
    need(SSHD)
    proc = subprocess.run([sys.executable, "-c", _KILLED_RUN], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == -9, proc.stderr
    engine_tmp, bridge, ssh_tmp = (Path(w) if w.startswith("/") else w
                                   for w in proc.stdout.split())
    assert processes_mentioning(engine_tmp) and processes_mentioning(ssh_tmp)
    reaped = reap_stale()
    assert {engine_tmp, ssh_tmp} <= set(reaped)
    assert processes_mentioning(engine_tmp) == processes_mentioning(ssh_tmp) == []
    assert not engine_tmp.exists() and not ssh_tmp.exists()
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    assert bridge not in links
    assert str(engine_tmp) not in Path("/proc/self/mountinfo").read_text()
    assert docker_client.ping()
