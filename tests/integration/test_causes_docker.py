"""Issue #13 items 5 and 9 on real containers: each cause is built on the engine, then
`collect_once()` (what `genai-tui check` runs) or the live container monitor must name it
as it is — never started, port not published, paused, OOM-killed then restarted, two
look-alike compose containers, a port still starting — and the fix it offers must be the
one that works."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import docker
import pytest

from genai_tui import simdocker
from genai_tui.config import Config, DockerConfig, ProbeConfig, ServiceConfig
from genai_tui.diagnose import diagnose
from genai_tui.engine import actions
from genai_tui.engine.collect import collect_once
from genai_tui.model import Finding, Severity, Snapshot
from genai_tui.sources import probes
from tests.conftest import TEST_OWNER, free_port, host_port, wait_for, wait_port

pytestmark = pytest.mark.docker
SECOND = 1_000_000_000


def config(*services: ServiceConfig, **docker_kw) -> Config:
    """Quick probes; the test host's own memory is not under test."""
    from genai_tui.config import HostConfig

    return Config(services=services, docker=DockerConfig(**docker_kw),
                  probes=ProbeConfig(connect_timeout=1.0, read_timeout=1.5),
                  host=HostConfig(memory_warn_pct=100.0))


def of(snap: Snapshot, service: str) -> list[Finding]:
    return [f for f in snap.findings if f.service == service]


def started(container) -> str:
    container.reload()
    return container.attrs["State"]["StartedAt"]


@pytest.fixture
def bad_entrypoint(docker_client) -> Iterator[docker.models.containers.Container]:
    """A container whose entrypoint does not exist: created, never started."""
    name = simdocker.unique("gtc-noentry")
    with pytest.raises(docker.errors.APIError):
        docker_client.containers.run(simdocker.SIM_IMAGE, ["/entrypoint.sh"], name=name,
                                     detach=True,
                                     labels={simdocker.OWNER_LABEL: TEST_OWNER})
    c = docker_client.containers.get(name)
    yield c
    c.remove(force=True)


def test_a_bad_entrypoint_is_never_started_with_dockers_error(bad_entrypoint):
    svc = ServiceConfig("qwen", f"http://127.0.0.1:{free_port()}", "http",
                        container=bad_entrypoint.name)
    snap = collect_once(config(svc))
    assert snap.containers[0].exit_code == 127  # what the old finding quoted
    got = of(snap, "qwen")
    assert [f.code for f in got] == ["never_started"]
    f = got[0]
    assert f.severity is Severity.CRITICAL and f.fix != "restart"
    assert "never started: " in f.message and "/entrypoint.sh" in f.message
    assert "no such file or directory" in f.message
    assert "exited with code 127" not in f.message
    doc = next(x for x in snap.to_json()["findings"] if x["service"] == "qwen")
    assert doc["code"] == "never_started" and doc["fix"] != "restart"


def test_a_container_publishing_no_port_is_not_called_nothing_listens(sim_container):
    c = sim_container(publish=False)
    wait_for(lambda: "To see the GUI go to" in c.logs().decode(errors="replace"), 20, 0.1)
    port = free_port()
    svc = ServiceConfig("qwen", f"http://127.0.0.1:{port}", "comfyui", container=c.name)
    snap = collect_once(config(svc))
    assert next(p for p in snap.probes if p.service == "qwen").outcome == "refused"
    got = [f for f in of(snap, "qwen") if f.severity is not Severity.INFO]
    assert [f.code for f in got] == ["port_not_published"]
    assert f"does not publish port {port}" in got[0].message
    assert "nothing listens" not in got[0].message and got[0].fix != "restart"


def test_paused_offers_unpause_and_unpause_fixes_it(sim_container):
    c = sim_container()
    port = host_port(c)
    wait_port(port)
    svc = ServiceConfig("qwen", f"http://127.0.0.1:{port}", "comfyui", container=c.name)
    cfg = config(svc)
    c.pause()
    try:
        snap = collect_once(cfg)
        got = of(snap, "qwen")
        assert [(f.code, f.fix) for f in got] == [("paused", "unpause")]
        before = started(c)
        [outcome] = actions.unpause(cfg, ["qwen"])
        assert outcome.ok, outcome.detail
    finally:
        c.reload()
        if c.attrs["State"]["Paused"]:
            c.unpause()
    assert started(c) == before  # unpaused, not restarted: its jobs live on
    after = collect_once(cfg)
    assert next(p for p in after.probes if p.service == "qwen").outcome == "ok"
    assert not {"paused", "port_unreachable"} & {f.code for f in of(after, "qwen")}


def test_two_lookalikes_are_a_finding_and_restart_refuses_until_a_project_is_set(
        sim_container):
    tag = secrets.token_hex(3)
    label = f"comfyui-qwen-{tag}"
    demo_p, staging_p = f"genai-demo-{tag}", f"xp-staging-{tag}"
    demo = sim_container(name=f"{demo_p}-comfyui-qwen-1", compose_project=demo_p,
                         compose_service=label)
    staging = sim_container(name=f"{staging_p}-comfyui-qwen-1", compose_project=staging_p,
                            compose_service=label)
    wait_port(host_port(demo))
    svc = ServiceConfig(label, f"http://127.0.0.1:{host_port(demo)}", "comfyui")
    snap = collect_once(config(svc))
    got = of(snap, label)
    assert [f.code for f in got] == ["lookalike_containers"]
    assert got[0].message.startswith(
        f"2 containers match {label} (projects {demo_p}, {staging_p}): set `container`")
    assert got[0].fix == "set_container"
    assert snap.containers[0].state == "ambiguous" and snap.containers[0].id is None

    before = started(demo), started(staging)
    [outcome] = actions.restart(config(svc), [label])
    assert not outcome.ok and "ambiguous" in outcome.detail
    assert (started(demo), started(staging)) == before  # never acts on a guess

    chosen = config(svc, project=demo_p)
    snap = collect_once(chosen)
    assert snap.containers[0].id == demo.id
    assert not [f for f in of(snap, label) if f.code == "lookalike_containers"]
    [outcome] = actions.restart(chosen, [label])
    assert outcome.ok, outcome.detail
    assert started(demo) != before[0] and started(staging) == before[1]


def test_the_live_monitor_is_not_taken_over_by_a_staging_copy(sim_container, monitor_for):
    tag = secrets.token_hex(3)
    label = f"comfyui-qwen-{tag}"
    demo = sim_container(name=f"genai-demo-{tag}-qwen-1", compose_project=f"genai-demo-{tag}",
                         compose_service=label)
    svc = ServiceConfig(label, "http://127.0.0.1:1", "comfyui")
    _, rec = monitor_for(config(svc, project=f"genai-demo-{tag}"))
    rec.wait_state(label, lambda i: i.running and i.id == demo.id)
    staging = sim_container(name=f"xp-staging-{tag}-qwen-1",
                            compose_project=f"xp-staging-{tag}", compose_service=label)
    staging.restart(timeout=1)
    # events are handled in order: once the demo's own restart shows, staging's are done
    demo.restart(timeout=1)
    new_start = started(demo)
    rec.wait_state(label, lambda i: i.id == demo.id and i.started_at is not None
                   and i.started_at.isoformat()[:19] == new_start[:19])
    with rec.lock:
        shown = {infos[label].id for _, _, infos in rec.updates if label in infos}
    assert staging.id not in shown and demo.id in shown


def test_a_port_silent_just_after_start_is_starting_then_an_alarm_after_the_grace(
        sim_container):
    c = sim_container(scenario="no_listen")  # docker-proxy accepts; nothing inside listens
    wait_for(lambda: "Starting server" in c.logs().decode(errors="replace"), 20, 0.1)
    port = host_port(c)
    svc = ServiceConfig("qwen", f"http://127.0.0.1:{port}", "comfyui", container=c.name)
    snap = collect_once(config(svc))  # well within the default 30 s of its start
    got = of(snap, "qwen")
    assert [(f.code, f.severity, f.fix) for f in got] == [("starting", Severity.INFO, None)]
    assert "does not answer yet" in got[0].message
    late = collect_once(config(svc, start_grace=0.0))
    assert [(f.code, f.severity) for f in of(late, "qwen")] == [
        ("port_unreachable", Severity.CRITICAL)]


def test_restarted_after_an_oom_kill_is_a_warning_not_a_standing_critical(sim_container):
    c = sim_container(scenario="oom", mem_limit="48m", extra_args=["--oom-cap-mb", "96"])
    wait_for(lambda: (c.reload(), c.attrs["State"]["Status"] == "exited")[1], 60, 0.2)
    assert c.attrs["State"]["OOMKilled"]
    c.update(mem_limit="256m", memswap_limit="256m")  # the admin's fix, then a start
    c.start()
    port = host_port(c)
    wait_port(port)
    c.reload()
    assert c.attrs["State"]["OOMKilled"]  # Docker keeps the flag while it runs again
    # auth is not under test here: the service is probed as plain HTTP on /login
    svc = ServiceConfig("qwen", f"http://127.0.0.1:{port}", "http", container=c.name,
                        health_path="/login")
    snap = collect_once(config(svc))
    info = snap.containers[0]
    assert info.running and info.finished_at is not None
    got = [f for f in of(snap, "qwen") if f.severity is not Severity.INFO]
    assert [(f.code, f.severity) for f in got] == [("oom_killed", Severity.WARNING)]
    assert (f"was OOM-killed at {info.finished_at.astimezone():%H:%M}, restarted"
            in got[0].message)


def test_health_left_stale_by_a_pause_waits_for_the_next_check(sim_container, monitor_for):
    check = {"test": simdocker.health_cmd("/login"), "interval": 3 * SECOND,
             "timeout": 2 * SECOND, "retries": 1}
    c = sim_container(healthcheck=check)
    port = host_port(c)
    svc = ServiceConfig("qwen", f"http://127.0.0.1:{port}", "comfyui", container=c.name)
    cfg = config(svc)
    _, rec = monitor_for(cfg)
    rec.wait_state("qwen", lambda i: i.health == "healthy", timeout=30)
    c.pause()
    try:
        wait_for(lambda: (c.reload(), c.attrs["State"]["Health"]["Status"]
                          == "unhealthy")[1], 20, 0.2)
    finally:
        c.unpause()
    # what the monitor showed right after the unpause: Docker's verdict from the pause
    info = rec.wait_state("qwen", lambda i: i.unpaused_at is not None and i.running)
    assert info.health == "unhealthy"
    assert info.health_checked_at is not None and info.health_checked_at <= info.unpaused_at
    snap = Snapshot(containers=[info], probes=probes.probe_once(cfg, None))
    now = datetime.now(UTC)
    assert info.unpaused_at > now - timedelta(seconds=30)
    found = [f.code for f in diagnose(snap, cfg, now=now) if f.service == "qwen"]
    assert "unhealthy" not in found and "healthcheck_hits_auth" not in found
