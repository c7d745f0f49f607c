"""Issue #13 items 5, 6 (engine) and 9: findings that name the true cause.

Each test builds the snapshot a real failure gives (the shapes were read off Docker 20.10:
`State.Error` with `Status: created` and `ExitCode: 127` for a bad entrypoint, `OOMKilled`
still true after the container started again, health `unhealthy` with its last check from
before a pause) and asserts what the admin reads: the code, the words, the `fix` a key or
a script acts on. tests/integration/test_causes_docker.py builds the same with real
containers.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from genai_tui import cli
from genai_tui import config as configmod
from genai_tui.config import Config, DockerConfig, ServiceConfig, TokensConfig
from genai_tui.diagnose import diagnose
from genai_tui.engine import derive
from genai_tui.model import (
    ContainerInfo,
    Finding,
    LogEvent,
    PortBinding,
    ProbeResult,
    ServerTokenStatus,
    Severity,
    Snapshot,
    TokenLocationStatus,
    TokensReport,
)
from genai_tui.sources.docker import (
    COMPOSE_ONEOFF,
    COMPOSE_PROJECT,
    COMPOSE_SERVICE,
    COMPOSE_WORKDIR,
    DockerSource,
    choose,
)
from tests.conftest import make_hash

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
QWEN = ServiceConfig("comfyui-qwen", "http://127.0.0.1:8188", "comfyui",
                     container="comfyui-qwen", auth=True)
ORCH = ServiceConfig("orch", "http://127.0.0.1:8193", "orchestrator", container="orch")
CFG = Config(services=(QWEN, ORCH), tokens=TokensConfig(canonical="secrets"))
BAD_ENTRYPOINT = ('failed to create shim task: OCI runtime create failed: runc create failed:'
                  ' unable to start container process: exec: "/entrypoint.sh": stat '
                  '/entrypoint.sh: no such file or directory: unknown')


def running(service: str = "comfyui-qwen", port: int = 8188, **kw) -> ContainerInfo:
    kw.setdefault("started_at", NOW - timedelta(hours=1))
    kw.setdefault("ports", [PortBinding(8188, "tcp", "127.0.0.1", port)])
    return ContainerInfo(service, service, id=service[:4] * 16, state="running", **kw)


def probe(service: str = "comfyui-qwen", outcome: str = "ok", **kw) -> ProbeResult:
    if service == "comfyui-qwen":
        kw.setdefault("auth", "enforced" if outcome == "ok" else None)
        kw.setdefault("login_loaded", True if outcome == "ok" else None)
    url = "http://127.0.0.1:8188" if service == "comfyui-qwen" else "http://127.0.0.1:8193"
    return ProbeResult(service, url, outcome, status=200 if outcome == "ok" else None, **kw)


def tokens(fp: str = "fp:aaaaaaaaaa") -> TokensReport:
    return TokensReport(
        locations=[TokenLocationStatus("secrets", "s", "hash_file", state="ok",
                                       fingerprint=fp, canonical=True)],
        canonical="secrets", consistent=True, fingerprints={fp: ["secrets"]})


def snap(qwen: ContainerInfo, qwen_probe: ProbeResult | None = None, **over) -> Snapshot:
    s = Snapshot(containers=[qwen, running("orch", 8193)],
                 probes=[qwen_probe or probe(), probe("orch")], tokens=tokens())
    for k, v in over.items():
        setattr(s, k, v)
    return s


def about(s: Snapshot, service: str = "comfyui-qwen", cfg: Config = CFG) -> list[Finding]:
    return [f for f in diagnose(s, cfg, now=NOW) if f.service == service]


# ------------------------------------------------------------------ never started


def test_a_container_that_never_started_says_so_with_dockers_error_not_exit_127():
    info = ContainerInfo("comfyui-qwen", "comfyui-qwen", id="c" * 64, state="created",
                         exit_code=127, state_error=BAD_ENTRYPOINT,
                         created_at=NOW - timedelta(minutes=3))
    got = about(snap(info, probe(outcome="refused")))
    assert [f.code for f in got] == ["never_started"]
    f = got[0]
    assert f.severity is Severity.CRITICAL
    assert "never started: " + BAD_ENTRYPOINT in f.message
    assert "exited with code 127" not in f.message
    assert f.fix != "restart"  # `r` cannot fix a missing entrypoint
    assert f.since == NOW - timedelta(minutes=3)


# ------------------------------------------------------------------ ports


def test_a_silent_url_whose_port_the_container_does_not_publish_says_so():
    info = running(ports=[])  # `docker run` without -p: nothing on the host's 8188
    got = about(snap(info, probe(outcome="refused")))
    assert [f.code for f in got] == ["port_not_published"]
    f = got[0]
    assert "does not publish port 8188" in f.message and "publishes: none" in f.message
    assert "nothing listens" not in f.message and f.fix != "restart"
    # published, and nobody answers behind it: that is still the port alarm (`r`)
    got = about(snap(running(), probe(outcome="refused")))
    assert [(f.code, f.severity, f.fix) for f in got] == [
        ("port_unreachable", Severity.CRITICAL, "restart")]
    assert "published but nothing listens" in got[0].message
    # a URL on another host is not judged by what this container publishes
    cfg = replace(CFG, services=(replace(QWEN, url="http://10.0.0.7:8188"), ORCH))
    got = about(snap(running(ports=[]), probe(outcome="refused")), cfg=cfg)
    assert [f.code for f in got] == ["port_unreachable"]


def test_another_published_port_is_named_and_host_networking_needs_none():
    other = running(ports=[PortBinding(8188, "tcp", "127.0.0.1", 8189)])
    f = about(snap(other, probe(outcome="refused")))[0]
    assert f.code == "port_not_published" and "127.0.0.1:8189->8188/tcp" in f.message
    host_net = running(ports=[], network_mode="host")
    assert [f.code for f in about(snap(host_net, probe(outcome="refused")))] \
        == ["port_unreachable"]


# ------------------------------------------------------------------ start grace


def test_a_port_silent_right_after_a_start_is_starting_not_critical():
    """What a real ComfyUI does for 12-15 s after every restart."""
    info = running(started_at=NOW - timedelta(seconds=12))
    got = about(snap(info, probe(outcome="refused")))
    assert [(f.code, f.severity, f.fix) for f in got] == [("starting", Severity.INFO, None)]
    assert "started 12 s ago" in got[0].message and got[0].since == info.started_at
    # past the grace: the alarm
    late = running(started_at=NOW - timedelta(seconds=31))
    assert [f.code for f in about(snap(late, probe(outcome="refused")))] \
        == ["port_unreachable"]


def test_the_grace_is_the_healthchecks_start_period_else_the_configured_one():
    info = running(started_at=NOW - timedelta(seconds=100), start_period=180.0)
    assert [f.code for f in about(snap(info, probe(outcome="empty_reply")))] == ["starting"]
    cfg = replace(CFG, docker=DockerConfig(start_grace=5.0))
    info = running(started_at=NOW - timedelta(seconds=12))
    assert [f.code for f in about(snap(info, probe(outcome="refused")), cfg=cfg)] \
        == ["port_unreachable"]


def test_start_grace_is_read_from_the_config(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text('[docker]\nstart_grace = 45\nproject = "genai-demo"\n\n[[services]]\n'
                    'name = "q"\nurl = "http://127.0.0.1:8188"\nproject = "other"\n')
    cfg = configmod.load_file(path, env={})
    assert cfg.docker.start_grace == 45 and cfg.docker.project == "genai-demo"
    assert cfg.services[0].project == "other"
    assert configmod.load_file(tmp_path / "g.toml", env={}).docker.start_grace == 45
    assert DockerConfig().start_grace == 30.0


# ------------------------------------------------------------------ restarts we asked for


def test_no_alarm_while_a_restart_asked_here_is_under_way():
    """Mid-restart the container is down, the port refuses and the server is not the one
    the token was checked against: none of it is an alarm."""
    info = ContainerInfo("comfyui-qwen", "comfyui-qwen", id="c" * 64, state="exited",
                         exit_code=0, action="restarting")
    s = snap(info, probe(outcome="refused"))
    got = about(s)
    assert [(f.code, f.severity) for f in got] == [("restarting", Severity.INFO)]
    stale = tokens("fp:newnewnewn")
    stale.servers = [ServerTokenStatus("comfyui-qwen", False, "probe+log",
                                       log_fingerprint="fp:oldoldoldo")]
    up = replace(running(), action="restarting")
    got = about(snap(up, probe(auth="rejected"), tokens=stale))
    assert [f.code for f in got] == ["restarting"]  # no token_stale until it is back


def test_a_failed_restart_brings_the_alarms_back():
    info = ContainerInfo("comfyui-qwen", "comfyui-qwen", id="c" * 64, state="exited",
                         exit_code=1, action="restart failed: 500 Server Error")
    codes = {f.code for f in about(snap(info, probe(outcome="refused")))}
    assert codes == {"restart_failed", "container_exited"}


# ------------------------------------------------------------------ paused, OOM, health


def test_paused_says_paused_and_offers_unpause_not_restart():
    info = replace(running(), state="paused")
    got = about(snap(info, probe(outcome="timeout")))
    assert [(f.code, f.fix) for f in got] == [("paused", "unpause")]
    assert "paused" in got[0].message


def test_restarted_after_an_oom_kill_is_a_warning_with_the_time_not_a_standing_critical():
    killed = NOW - timedelta(minutes=10)
    info = running(oom_killed=True, finished_at=killed, started_at=killed
                   + timedelta(seconds=1))
    got = about(snap(info))
    assert [(f.code, f.severity) for f in got] == [("oom_killed", Severity.WARNING)]
    assert f"was OOM-killed at {killed.astimezone():%H:%M}, restarted" in got[0].message
    assert got[0].since == killed
    # still down after the kill: critical, as before
    down = ContainerInfo("comfyui-qwen", "comfyui-qwen", state="exited", exit_code=137,
                         oom_killed=True, finished_at=killed)
    assert [(f.code, f.severity) for f in about(snap(down, probe(outcome="refused")))] \
        == [("oom_killed", Severity.CRITICAL)]


def test_health_only_stale_after_an_unpause_waits_for_the_next_check():
    unpaused = NOW - timedelta(seconds=2)
    stale = running(health="unhealthy", health_checked_at=unpaused - timedelta(seconds=5),
                    unpaused_at=unpaused)
    orch = replace(running("orch", 8193), health="unhealthy",
                   health_checked_at=unpaused - timedelta(seconds=5), unpaused_at=unpaused)
    s = snap(stale, containers=[stale, orch])
    assert about(s) == [] and about(s, "orch") == []
    fresh = replace(orch, health_checked_at=unpaused + timedelta(seconds=1))
    assert [f.code for f in about(snap(stale, containers=[stale, fresh]), "orch")] \
        == ["unhealthy"]


# ------------------------------------------------------------------ look-alikes


def test_two_lookalike_containers_are_a_finding_naming_both_projects():
    info = ContainerInfo("comfyui-qwen", "comfyui-qwen", state="ambiguous",
                         lookalikes=("genai-demo/genai-demo-comfyui-qwen-1",
                                     "xp-staging/xp-staging-comfyui-qwen-1"))
    got = about(snap(info, probe(outcome="ok")))
    assert [f.code for f in got] == ["lookalike_containers"]
    f = got[0]
    assert f.message.startswith("2 containers match comfyui-qwen (projects genai-demo, "
                                "xp-staging): set `container`")
    assert f.fix == "set_container" and f.paths == info.lookalikes
    assert f.severity is Severity.CRITICAL


def _item(name: str, project: str, *, service: str = "comfyui-qwen",
          workdir: str = "/srv/x") -> dict:
    import secrets

    return {"Id": secrets.token_hex(32), "Names": [f"/{name}"],
            "Labels": {COMPOSE_SERVICE: service, COMPOSE_ONEOFF: "False",
                       COMPOSE_PROJECT: project, COMPOSE_WORKDIR: workdir}}


def test_the_configured_project_or_folder_wins_and_nothing_is_guessed():
    svc = ServiceConfig("comfyui-qwen", "http://127.0.0.1:8188", container="comfyui-qwen")
    demo = _item("genai-demo-comfyui-qwen-1", "genai-demo", workdir="/srv/genai")
    staging = _item("xp-staging-comfyui-qwen-1", "xp-staging", workdir="/srv/staging")
    for listing in ([demo, staging], [staging, demo]):
        r = choose([svc], svc, listing)
        assert r.cid is None and r.ambiguous
        assert r.lookalikes == ("genai-demo/genai-demo-comfyui-qwen-1",
                                "xp-staging/xp-staging-comfyui-qwen-1")
        assert choose([svc], svc, listing, project="genai-demo").cid == demo["Id"]
        assert choose([svc], svc, listing, project="xp-staging").cid == staging["Id"]
        picked = choose([svc], svc, listing, folder="/srv/genai")
        assert picked.cid == demo["Id"]
        assert picked.lookalikes == ("xp-staging/xp-staging-comfyui-qwen-1",)
    # a configured project with none of its own: look-alikes elsewhere are never taken
    r = choose([svc], svc, [staging], project="genai-demo")
    assert r.cid is None and "xp-staging" in r.reason
    # and with nothing to prefer, a restart has no target (the reason says what to set)
    r = choose([svc], svc, [demo, staging])
    assert r.cid is None and "set `container`" in r.reason


# ------------------------------------------------------------------ order, since, JSON


def test_security_findings_come_first_among_the_critical_ones():
    """"API open to anyone" before a stopped orchestrator, though "orch" < "comfyui..."
    would not sort it so (nor the other way round for another name)."""
    stopped = ContainerInfo("orch", "orch", state="exited", exit_code=1)
    s = Snapshot(containers=[running(), stopped],
                 probes=[probe(auth="disabled", login_loaded=True),
                         probe("orch", "refused")], tokens=tokens())
    cfg = replace(CFG, services=(replace(QWEN, name="zz-qwen"), ORCH))
    for name in ("comfyui-qwen", "zz-qwen"):
        s.containers[0] = replace(running(), service=name)
        s.probes[0] = replace(s.probes[0], service=name)
        c = CFG if name == "comfyui-qwen" else cfg
        got = [f.code for f in diagnose(s, c, now=NOW) if f.severity is Severity.CRITICAL]
        assert got == ["auth_disabled", "container_exited"], name


def test_nine_world_readable_copies_are_one_finding_listing_nine_paths():
    locs = [TokenLocationStatus(f"copy{i}", f"/srv/stack/t{i}", "hash_file", state="ok",
                                fingerprint="fp:a", problems=["world_readable"])
            for i in range(9)]
    locs[0].canonical = True
    locs[3].problems.append("crlf")
    report = TokensReport(locations=locs, canonical="copy0", consistent=True,
                          fingerprints={"fp:a": [loc.name for loc in locs]})
    got = [f for f in diagnose(snap(running(), tokens=report), CFG, now=NOW)
           if f.service is None and f.severity is not Severity.INFO]
    readable = [f for f in got if f.code == "world_readable"]
    assert len(readable) == 1
    assert readable[0].paths == tuple(f"/srv/stack/t{i}" for i in range(9))
    assert readable[0].fix == "chmod" and readable[0].message.startswith("9 token files")
    # the other problem of one copy stays its own finding, without repeating this one
    others = [f for f in got if f.code == "token_file_problem"]
    assert len(others) == 1 and "crlf" in others[0].message
    assert "world_readable" not in others[0].message
    assert "world_readable" in derive.TOKEN_CODES


def test_since_comes_from_the_snapshot_where_it_knows():
    finished = NOW - timedelta(minutes=42)
    info = ContainerInfo("comfyui-qwen", "comfyui-qwen", state="exited", exit_code=1,
                         finished_at=finished)
    f = about(snap(info, probe(outcome="refused")))[0]
    assert (f.code, f.since) == ("container_exited", finished)
    assert f.to_json()["since"] == finished.isoformat()


def test_the_live_engine_keeps_when_each_finding_was_first_seen():
    history = derive.FindingHistory()
    s = snap(running(), probe(outcome="refused"))  # undated: port_unreachable
    t1, t2, t3 = NOW, NOW + timedelta(seconds=5), NOW + timedelta(seconds=10)
    first = derive.findings(s, CFG, t1, history=history)
    again = derive.findings(s, CFG, t2, history=history)
    port = [f for f in again if f.code == "port_unreachable"]
    assert [f.since for f in port] == [t1]
    assert [f.since for f in first if f.code == "port_unreachable"] == [t1]
    derive.findings(snap(running()), CFG, t2, history=history)  # fixed: forgotten
    back = derive.findings(s, CFG, t3, history=history)
    assert [f.since for f in back if f.code == "port_unreachable"] == [t3]


def test_the_last_error_line_of_the_services_log_is_attached_redacted():
    secret = make_hash()
    events = [LogEvent("comfyui-qwen", "error", NOW - timedelta(minutes=2),
                       text="!!! Exception during processing !!! old one"),
              LogEvent("orch", "error", NOW, text="not this service"),
              LogEvent("comfyui-qwen", "error", NOW - timedelta(minutes=1),
                       text=f"RuntimeError: bad token {secret}\x1b[2J")]
    info = ContainerInfo("comfyui-qwen", "comfyui-qwen", state="exited", exit_code=1)
    f = about(snap(info, probe(outcome="refused"), log_events=events))[0]
    assert f.log_line.startswith("RuntimeError: bad token ")
    assert secret not in f.log_line and "\x1b" not in f.log_line
    assert f.to_json()["log_line"] == f.log_line


def test_json_carries_the_machine_fix():
    info = replace(running(), state="paused")
    doc = snap(info, probe(outcome="timeout"))
    doc.findings = diagnose(doc, CFG, now=NOW)
    f = next(x for x in doc.to_json()["findings"] if x["service"] == "comfyui-qwen")
    assert f["fix"] == "unpause" and f["code"] == "paused"
    assert set(f) >= {"code", "severity", "service", "message", "fix", "since", "paths"}


# ------------------------------------------------------------------ engine and config


def test_docker_unreachable_names_the_configured_host(tmp_path):
    where = f"unix://{tmp_path}/no-engine.sock"
    src = DockerSource(Config(services=(QWEN,), docker=DockerConfig(host=where, timeout=2)))
    try:
        status = src.status()
    finally:
        src.close()
    assert not status.reachable
    assert status.error is not None and status.error.startswith("Docker engine unreachable: ")
    assert status.error.endswith(f"(at {where})")


def test_docker_unreachable_names_docker_host_from_the_environment(tmp_path, monkeypatch):
    where = f"unix://{tmp_path}/env-engine.sock"
    monkeypatch.setenv("DOCKER_HOST", where)
    src = DockerSource(Config(services=(QWEN,), docker=DockerConfig(timeout=2)))
    try:
        status = src.status()
    finally:
        src.close()
    assert status.error is not None and status.error.endswith(f"(at {where})")


@pytest.mark.parametrize("keys", ['restart = "x"\nprobe = "x"\n',
                                  'restart = "ctrl+r"\nrefresh = "f5,Ctrl+R"\n'])
def test_a_key_bound_twice_is_a_config_error_exit_3(tmp_path, capsys, keys):
    path = tmp_path / "k.toml"
    path.write_text('[[services]]\nname = "q"\nurl = "http://127.0.0.1:8188"\n\n[keys]\n'
                    + keys)
    with pytest.raises(configmod.ConfigError, match="already bound to restart"):
        configmod.load_file(path, env={})
    assert cli.main(["--config", str(path), "check"]) == cli.EXIT_UNKNOWN
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "already bound to restart" in err


def test_a_letter_and_its_capital_are_two_keys(tmp_path):
    """`r` restarts one service, `R` all of them: that is no clash."""
    path = tmp_path / "k.toml"
    path.write_text('[[services]]\nname = "q"\nurl = "http://127.0.0.1:8188"\n\n[keys]\n'
                    'restart = "x"\nrestart_all = "X"\n')
    cfg = configmod.load_file(path, env={})
    assert cfg.keys == {"restart": "x", "restart_all": "X"}
