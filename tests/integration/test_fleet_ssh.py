"""The fleet for real: a real sshd on loopback, a second Docker engine as "host b" with
its own simulated stack, and the installed genai-tui running there over ssh. Nothing of
SSH or Docker is mocked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genai_tui import config as configmod
from genai_tui.config import HostEntry
from genai_tui.engine.fleet import Fleet, RemoteStack
from tests.integration.fleet_infra import genai_tui_path

pytestmark = pytest.mark.docker


def wait_for(what: str, predicate, timeout: float = 60.0, describe=lambda: ""):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s; {describe()}")
        time.sleep(0.2)


def local_config(tmp_path: Path) -> configmod.Config:
    """This machine's config: one service that does not run here (it is not host b's)."""
    path = tmp_path / "local.toml"
    path.write_text('[[services]]\nname = "local-only"\nurl = "http://127.0.0.1:9"\n'
                    'kind = "http"\ncontainer = "gtfleet-not-here"\n')
    return configmod.load(path)


def host_b(server, stack, **changes) -> HostEntry:
    entry = HostEntry(name="hostb", ssh=server.alias, ssh_config=server.config_path,
                      command=(str(genai_tui_path()),), config=str(stack.config_path))
    return HostEntry(**{**entry.__dict__, **changes})


def summary(fleet: Fleet, name: str):
    host = fleet.get(name)
    assert host is not None
    return host.summary()


@pytest.fixture
def fleet_of(tmp_path):
    made: list[Fleet] = []

    def make(*entries: HostEntry, local: bool = True) -> Fleet:
        fleet = Fleet(local_config(tmp_path), list(entries), local=local)
        made.append(fleet)
        fleet.start()
        return fleet

    yield make
    for fleet in made:
        fleet.close()


def test_two_hosts_live_and_a_stop_on_host_b_changes_its_row(ssh_server, remote_stack,
                                                             fleet_of):
    fleet = fleet_of(host_b(ssh_server, remote_stack))
    wait_for("both hosts live", lambda: all(h.state == "live" for h in fleet.hosts),
             describe=lambda: str([h.summary() for h in fleet.hosts]))
    b = wait_for("host b's two services up", lambda: (
        s := summary(fleet, "hostb")).services_up == 2 and s, describe=lambda: str(
            summary(fleet, "hostb")))
    assert b.services_total == 2 and b.version_note is None
    local = summary(fleet, "local")
    assert local.services_total == 1 and local.services_up == 0  # not host b's containers
    host = fleet.get("hostb")
    assert {c.container for c in host.snapshot.containers} == set(remote_stack.containers)

    remote_stack.client.containers.get(remote_stack.services["comfyui"]).stop(timeout=2)
    b = wait_for("the stop seen on host b's row", lambda: (
        s := summary(fleet, "hostb")).services_up == 1 and s.worst and s,
        describe=lambda: str(summary(fleet, "hostb")))
    assert "comfyui" in b.worst
    assert b.worst_severity is not None and b.worst_severity.rank == 0  # critical
    remote_stack.client.containers.get(remote_stack.services["comfyui"]).start()
    wait_for("back up", lambda: summary(fleet, "hostb").services_up == 2)


async def test_the_fleet_screen_and_a_hosts_dashboard_over_ssh(ssh_server, remote_stack,
                                                                fleet_of):
    from genai_tui.ui.fleet import OPEN, FleetApp, _remote_app_class
    from tests.ui.helpers import screen_text

    fleet = fleet_of(host_b(ssh_server, remote_stack))
    wait_for("host b live", lambda: summary(fleet, "hostb").services_up == 2)
    app = FleetApp(fleet, select="hostb")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(1.2)
        text = screen_text(app)
        assert "hostb" in text and "2/2 up" in text
        await pilot.press("enter")
    assert app.return_value == OPEN + "hostb"
    dash = _remote_app_class()(RemoteStack(fleet.get("hostb")))
    async with dash.run_test(size=(120, 40)) as pilot:
        deadline = time.monotonic() + 20
        while remote_stack.services["orchestrator"] not in screen_text(dash):
            assert time.monotonic() < deadline, screen_text(dash)
            await pilot.pause(0.1)
        assert "hostb" in screen_text(dash)
        await pilot.press("escape")


def test_a_restart_over_ssh_and_readonly_on_either_side(ssh_server, remote_stack, fleet_of):
    name = remote_stack.services["orchestrator"]

    def started() -> str:
        return remote_stack.client.containers.get(name).attrs["State"]["StartedAt"]

    before = started()
    readonly_there = host_b(ssh_server, remote_stack,
                            command=(str(genai_tui_path()), "--readonly"))
    fleet = fleet_of(readonly_there, local=False)
    host = wait_for("live", lambda: fleet.get("hostb").config is not None
                    and fleet.get("hostb"))
    outcomes: list[tuple[str, bool, str]] = []
    stack = RemoteStack(host)
    stack.restart(["orchestrator"], done=lambda *a: outcomes.append(a))
    wait_for("an answer", lambda: outcomes, timeout=60)
    assert outcomes[0][1] is False and "read-only" in outcomes[0][2], outcomes
    assert started() == before

    fleet2 = fleet_of(host_b(ssh_server, remote_stack), local=False)
    host2 = wait_for("live", lambda: fleet2.get("hostb").config is not None
                     and fleet2.get("hostb"))
    ours = RemoteStack(host2, readonly=True)  # our own --readonly: nothing is sent
    ran: list[object] = []
    real_run = host2.run
    host2.run = lambda *a, **k: ran.append(a) or real_run(*a, **k)
    outcomes.clear()
    ours.restart(["orchestrator"], done=lambda *a: outcomes.append(a))
    wait_for("an answer", lambda: outcomes)
    assert outcomes[0][1] is False and "read-only" in outcomes[0][2] and ran == []
    host2.run = real_run

    outcomes.clear()
    RemoteStack(host2).restart(["orchestrator"], done=lambda *a: outcomes.append(a))
    wait_for("an answer", lambda: outcomes, timeout=90)
    assert outcomes[0][1] is True, outcomes
    assert started() != before


def test_sshd_killed_is_unreachable_with_the_reason_then_back(ssh_server, remote_stack,
                                                               fleet_of):
    fleet = fleet_of(host_b(ssh_server, remote_stack), local=False)
    wait_for("live", lambda: summary(fleet, "hostb").state == "live")
    ssh_server.stop()
    s = wait_for("unreachable", lambda: (s := summary(fleet, "hostb")).state
                 == "unreachable" and s, timeout=60,
                 describe=lambda: str(summary(fleet, "hostb")))
    wait_for("refused, in words", lambda: "connection refused" in (
        summary(fleet, "hostb").error or ""), timeout=60,
        describe=lambda: str(summary(fleet, "hostb")))
    assert s.services_up == 2 or s.services_up == 0  # the last picture is kept or empty
    ssh_server.start()
    fleet.get("hostb").reconnect_now()
    wait_for("live again", lambda: summary(fleet, "hostb").state == "live", timeout=90,
             describe=lambda: str(summary(fleet, "hostb")))


@pytest.mark.parametrize("case, words", [
    ("wrong_key", "host key changed"),
    ("unknown_key", "host key unknown"),
    ("no_genai_tui", "genai-tui not installed there"),
])
def test_refused_hosts_say_why(ssh_server, remote_stack, fleet_of, case, words):
    entry = host_b(ssh_server, remote_stack)
    if case == "wrong_key":
        ssh_server.write_wrong_host_key()
    elif case == "unknown_key":
        ssh_server.write_unknown_host_key()
    else:
        entry = host_b(ssh_server, remote_stack, command=("/opt/nowhere/genai-tui",))
    fleet = fleet_of(entry, local=False)
    s = wait_for(words, lambda: (s := summary(fleet, "hostb")).error and s, timeout=60)
    assert words in s.error and s.state == "unreachable", s.error
    assert "\x1b" not in s.error and "\n" not in s.error


def test_a_different_version_there_is_said(ssh_server, remote_stack, fleet_of, tmp_path):
    wrapper = ssh_server.tmp / "genai-tui-0.0.1"
    wrapper.write_text("#!/bin/sh\n" + f'"{genai_tui_path()}" "$@" | '
                       "sed -u '1s/\"version\":\"[^\"]*\"/\"version\":\"0.0.1\"/'\n")
    wrapper.chmod(0o755)
    fleet = fleet_of(host_b(ssh_server, remote_stack, command=(str(wrapper),)), local=False)
    s = wait_for("live", lambda: (s := summary(fleet, "hostb")).state == "live" and s)
    assert s.version == "0.0.1" and "0.0.1 there" in (s.version_note or "")


def test_check_json_per_host_with_the_worst_status(ssh_server, remote_stack, tmp_path):
    cfg = tmp_path / "local.toml"
    cfg.write_text(
        '[[services]]\nname = "local-only"\nurl = "http://127.0.0.1:9"\nkind = "http"\n'
        'container = "gtfleet-not-here"\n\n'
        f'[[hosts]]\nname = "hostb"\nssh = "{ssh_server.alias}"\n'
        f'ssh_config = "{ssh_server.config_path}"\nconfig = "{remote_stack.config_path}"\n'
        f'command = ["{genai_tui_path()}"]\n\n'
        f'[[hosts]]\nname = "gone"\nssh = "{ssh_server.alias}"\n'
        f'ssh_config = "{ssh_server.config_path}"\ncommand = ["/opt/nowhere/genai-tui"]\n')
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    proc = subprocess.run([sys.executable, "-m", "genai_tui", "--config", str(cfg), "check",
                           "--json", "--host", "hostb", "--host", "gone", "--no-local"],
                          capture_output=True, text=True, timeout=120, env=env)
    docs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [d["host"] for d in docs] == ["hostb", "gone"]
    assert {c["container"] for c in docs[0]["check"]["containers"]} == set(
        remote_stack.containers)
    assert docs[0]["status"] in ("ok", "warning") and docs[0]["error"] is None
    assert docs[1]["status"] == "unknown" and "not installed there" in docs[1]["error"]
    assert proc.returncode == 3  # unknown is worse than a warning


def test_a_slow_host_holds_up_neither_the_others_nor_the_exit(ssh_server, remote_stack,
                                                             tmp_path):
    slow = ssh_server.tmp / "genai-tui-slow"
    slow.write_text(f'#!/bin/sh\nsleep 120\nexec "{genai_tui_path()}" "$@"\n')
    slow.chmod(0o755)
    fleet = Fleet(local_config(tmp_path), [
        host_b(ssh_server, remote_stack, name="slow", command=(str(slow),)),
        host_b(ssh_server, remote_stack)], local=False)
    fleet.start()
    try:
        wait_for("host b live beside the slow one",
                 lambda: summary(fleet, "hostb").state == "live")
        assert summary(fleet, "slow").state == "connecting"
    finally:
        started = time.monotonic()
        fleet.close()
        closed_in = time.monotonic() - started
    assert closed_in < 15, f"closing the fleet took {closed_in:.1f} s"


def test_a_host_that_goes_quiet_is_stale_then_live_again(ssh_server, remote_stack, tmp_path):
    import dataclasses
    import signal

    import psutil

    cfg = local_config(tmp_path)
    cfg = dataclasses.replace(cfg, fleet=dataclasses.replace(cfg.fleet, stale_after=4.0))
    fleet = Fleet(cfg, [host_b(ssh_server, remote_stack)], local=False)
    fleet.start()
    try:
        wait_for("live", lambda: summary(fleet, "hostb").state == "live")
        streams = wait_for("the stream on host b", lambda: [
            p for p in psutil.process_iter(["cmdline"])
            if "stream" in (p.info["cmdline"] or [])
            and str(remote_stack.config_path) in (p.info["cmdline"] or [])])
        for p in streams:
            p.send_signal(signal.SIGSTOP)  # it holds its link but says nothing
        try:
            s = wait_for("stale", lambda: (s := summary(fleet, "hostb")).state == "stale"
                         and s, timeout=30)
            assert s.age_s is not None and s.age_s >= 4 and s.services_total == 2
        finally:
            for p in streams:
                p.send_signal(signal.SIGCONT)
        wait_for("live again", lambda: summary(fleet, "hostb").state == "live", timeout=30)
    finally:
        fleet.close()
