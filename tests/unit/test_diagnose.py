"""diagnose(): each code from the snapshot that causes it, one finding per root cause, and
a calm result for a healthy stack. (tests/integration/test_scenarios.py builds the same
failures for real.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from genai_tui.config import Config, ServiceConfig, TokensConfig
from genai_tui.diagnose import diagnose
from genai_tui.model import (
    ContainerInfo,
    DockerStatus,
    GpuInfo,
    GpuProcess,
    GpuReport,
    HostInfo,
    LogEvent,
    PortBinding,
    ProbeResult,
    ServerTokenStatus,
    Severity,
    Snapshot,
    TokenLocationStatus,
    TokensReport,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CFG = Config(services=(
    ServiceConfig("qwen", "http://127.0.0.1:8188", "comfyui", container="qwen", auth=True),
    ServiceConfig("orch", "http://127.0.0.1:8193", "orchestrator", container="orch"),
), tokens=TokensConfig(canonical="secrets"))


PUBLISHED = {"qwen": 8188, "orch": 8193}  # the host ports CFG's URLs point at


def running(service: str, **kw) -> ContainerInfo:
    """A running container that publishes its service URL's port, as a real one does."""
    kw.setdefault("started_at", NOW - timedelta(hours=1))
    kw.setdefault("ports", [PortBinding(8188, "tcp", "127.0.0.1", PUBLISHED.get(service))])
    return ContainerInfo(service, service, id=service * 8, state="running", **kw)


def ok_probe(service: str, **kw) -> ProbeResult:
    auth = "enforced" if service == "qwen" else None
    kw.setdefault("auth", auth)
    kw.setdefault("login_loaded", True if service == "qwen" else None)
    kw.setdefault("status", 200)
    return ProbeResult(service, f"http://x/{service}", kw.pop("outcome", "ok"), latency_ms=3,
                       **kw)


def tokens_ok(fp: str = "fp:aaaaaaaaaa", **kw) -> TokensReport:
    locs = [TokenLocationStatus("secrets", "s", "hash_file", state="ok", fingerprint=fp,
                                canonical=True)]
    return TokensReport(locations=locs, canonical="secrets", consistent=True,
                        fingerprints={fp: ["secrets"]}, **kw)


def healthy(**over) -> Snapshot:
    snap = Snapshot(containers=[running("qwen", health="healthy"), running("orch")],
                    probes=[ok_probe("qwen"), ok_probe("orch", backends={"qwen": "healthy"})],
                    tokens=tokens_ok(), gpu=GpuReport(error="NVML unavailable: LibraryNotFound"),
                    host=HostInfo(memory_used_mb=1000, memory_total_mb=16000))
    for k, v in over.items():
        setattr(snap, k, v)
    return snap


def codes(snap: Snapshot) -> list[tuple[str, str | None]]:
    return [(f.code, f.service) for f in diagnose(snap, CFG, now=NOW)]


def test_healthy_stack_has_no_warning_or_critical():
    findings = diagnose(healthy(), CFG, now=NOW)
    assert all(f.severity is Severity.INFO for f in findings)
    assert [f.code for f in findings] == ["gpu_unavailable"]


def test_docker_unreachable_hides_container_consequences():
    snap = healthy(docker=DockerStatus(False, "Docker engine unreachable: refused"),
                   containers=[])
    assert codes(snap)[0] == ("docker_unreachable", None)
    assert not [c for c, _ in codes(snap) if c.startswith("container") or c == "port_unreachable"]


@pytest.mark.parametrize("info,code", [
    (ContainerInfo("qwen", "qwen", state="missing"), "container_missing"),
    (ContainerInfo("qwen", "qwen", state="exited", exit_code=1), "container_exited"),
    (ContainerInfo("qwen", "qwen", state="exited", exit_code=137, oom_killed=True),
     "oom_killed"),
    (ContainerInfo("qwen", "qwen", state="restarting", restart_count=5, looping=True),
     "restart_loop"),
])
def test_a_down_container_is_one_finding_not_also_port_unreachable(info, code):
    snap = healthy(containers=[info, running("orch")],
                   probes=[ok_probe("qwen", outcome="refused", auth="unknown"),
                           ok_probe("orch")])
    got = codes(snap)
    assert (code, "qwen") in got
    assert [c for c, s in got if s == "qwen"] == [code]


def test_exit_137_without_oom_flag_is_not_called_an_oom():
    snap = healthy(containers=[ContainerInfo("qwen", "qwen", state="exited", exit_code=137),
                               running("orch")])
    f = next(f for f in diagnose(snap, CFG, now=NOW) if f.service == "qwen")
    assert f.code == "container_exited" and "not an OOM kill" in f.message


@pytest.mark.parametrize("outcome", ["refused", "timeout", "empty_reply"])
def test_running_but_port_unreachable(outcome):
    snap = healthy(probes=[ok_probe("qwen", outcome=outcome, auth="unknown"), ok_probe("orch")])
    assert codes(snap)[:1] == [("port_unreachable", "qwen")]
    f = diagnose(snap, CFG, now=NOW)[0]
    assert f.severity is Severity.CRITICAL and f.fix == "restart"


def test_port_unreachable_while_health_starting_is_a_warning():
    snap = healthy(containers=[running("qwen", health="starting",
                                       started_at=NOW - timedelta(seconds=30)), running("orch")],
                   probes=[ok_probe("qwen", outcome="empty_reply", auth="unknown"),
                           ok_probe("orch")])
    f = diagnose(snap, CFG, now=NOW)[0]
    assert (f.code, f.severity) == ("port_unreachable", Severity.WARNING)


def test_health_starting_long():
    snap = healthy(containers=[running("qwen", health="starting",
                                       started_at=NOW - timedelta(minutes=20)), running("orch")])
    assert ("health_starting_long", "qwen") in codes(snap)


def test_unhealthy_while_answering_with_token_is_healthcheck_hitting_auth():
    snap = healthy(containers=[running("qwen", health="unhealthy", failing_streak=9),
                               running("orch")])
    assert [c for c, s in codes(snap) if s == "qwen"] == ["healthcheck_hits_auth"]


def test_unhealthy_and_failing_probe_is_unhealthy():
    snap = healthy(containers=[running("qwen"), running("orch", health="unhealthy")],
                   probes=[ok_probe("qwen"), ok_probe("orch", outcome="http_error", status=503)])
    assert ("unhealthy", "orch") in codes(snap)


@pytest.mark.parametrize("probe,events,code", [
    (dict(auth="disabled", login_loaded=True), [], "auth_disabled"),
    (dict(auth="disabled", login_loaded=False), [], "login_not_loaded"),
    (dict(auth="disabled", login_loaded=None), [LogEvent("qwen", "import_failed")],
     "login_not_loaded"),
    (dict(auth="no_password"), [], "password_missing"),
    (dict(auth="rejected"), [], "token_rejected"),
])
def test_auth_verdicts(probe, events, code):
    snap = healthy(probes=[ok_probe("qwen", **probe), ok_probe("orch")], log_events=events)
    assert [c for c, s in codes(snap) if s == "qwen"] == [code]


def test_rejected_because_server_kept_an_older_hash_is_token_stale():
    tokens = tokens_ok("fp:newnewnewn")
    tokens.servers = [ServerTokenStatus("qwen", False, "probe+log",
                                        log_fingerprint="fp:oldoldoldo")]
    snap = healthy(probes=[ok_probe("qwen", auth="rejected"), ok_probe("orch")], tokens=tokens)
    got = [f for f in diagnose(snap, CFG, now=NOW) if f.service == "qwen"]
    assert [(f.code, f.fix) for f in got] == [("token_stale", "restart")]


def test_password_file_changed_after_start_is_token_stale():
    tokens = tokens_ok("fp:newnewnewn")
    tokens.locations.append(TokenLocationStatus(
        "password", "p", "password_file", state="ok", fingerprint="fp:newnewnewn",
        mtime=NOW - timedelta(minutes=5)))
    snap = healthy(probes=[ok_probe("qwen", auth="rejected"), ok_probe("orch")], tokens=tokens)
    assert [c for c, s in codes(snap) if s == "qwen"] == ["token_stale"]


def test_token_drift_and_file_problems():
    tokens = TokensReport(
        locations=[
            TokenLocationStatus("secrets", "s", "hash_file", state="ok", fingerprint="fp:a",
                                canonical=True),
            TokenLocationStatus("env", ".env", "env", state="mismatch", fingerprint="fp:b",
                                problems=["key_in_value", "compose_interpolation"]),
            TokenLocationStatus("conf", "c.json", "json", state="unreadable"),
        ],
        canonical="secrets", consistent=False,
        fingerprints={"fp:a": ["secrets"], "fp:b": ["env"]})
    findings = diagnose(healthy(tokens=tokens), CFG, now=NOW)
    drift = next(f for f in findings if f.code == "token_drift")
    assert drift.fix == "unify" and "env" in drift.message
    problems = [f for f in findings if f.code == "token_file_problem"]
    assert len(problems) == 2
    assert "key_in_value, compose_interpolation" in problems[0].message
    assert "unreadable" in problems[1].message


def test_gpu_and_host_memory_high_name_the_owner():
    gpu = GpuReport(gpus=[GpuInfo(0, "RTX 3090", memory_used_mb=23000, memory_total_mb=24576,
                                  processes=[GpuProcess(1, 22000, service="qwen")])])
    snap = healthy(gpu=gpu, host=HostInfo(memory_used_mb=15500, memory_total_mb=16000))
    findings = {f.code: f for f in diagnose(snap, CFG, now=NOW)}
    assert "qwen" in findings["gpu_memory_high"].message
    assert "137" in findings["host_memory_high"].message
    assert "gpu_unavailable" not in findings


def test_orchestrator_backend_down():
    snap = healthy(probes=[ok_probe("qwen"),
                           ok_probe("orch", backends={"qwen": "healthy", "flux": "unhealthy"})])
    got = diagnose(snap, CFG, now=NOW)
    down = [f for f in got if f.code == "orchestrator_backend_down"]
    assert len(down) == 1 and "flux" in down[0].message


def test_sorted_most_severe_first():
    snap = healthy(containers=[ContainerInfo("qwen", "qwen", state="missing"), running("orch")],
                   host=HostInfo(memory_used_mb=15900, memory_total_mb=16000))
    sev = [f.severity.rank for f in diagnose(snap, CFG, now=NOW)]
    assert sev == sorted(sev)


# ---- correlations found by the real scenarios (tests/integration/test_scenarios.py)


def test_restart_loop_seen_in_one_look_without_event_history():
    """`check` sees one inspect, no start events: many policy restarts, the last exit and
    start within the window, or Docker waiting to restart it, is a loop."""
    looping = ContainerInfo("qwen", "qwen", id="x", state="running", restart_count=4,
                            exit_code=1, started_at=NOW - timedelta(seconds=2),
                            finished_at=NOW - timedelta(seconds=3))
    waiting = ContainerInfo("qwen", "qwen", id="x", state="restarting", restart_count=1,
                            exit_code=1, started_at=NOW - timedelta(seconds=5),
                            finished_at=NOW - timedelta(seconds=1))
    for info in (looping, waiting):
        snap = healthy(containers=[info, running("orch")],
                       probes=[ok_probe("qwen", outcome="refused", auth="unknown"),
                               ok_probe("orch")])
        assert [c for c, s in codes(snap) if s == "qwen"] == ["restart_loop"]
    # restarts long ago, running quietly since: not a loop (and nothing to report)
    calm = running("qwen", restart_count=7, finished_at=NOW - timedelta(days=2),
                   started_at=NOW - timedelta(days=2))
    assert [c for c, s in codes(healthy(containers=[calm, running("orch")])) if s == "qwen"] \
        == []


def test_rejected_while_its_password_still_holds_the_logged_hash_is_token_rejected():
    """The server loaded B, and a PASSWORD file still holds B: a restart loads B again, so
    unify (token_rejected), not restart (token_stale)."""
    tokens = tokens_ok("fp:aaaaaaaaaa")
    tokens.locations.append(TokenLocationStatus(
        "qwen-password", "p", "password_file", state="mismatch", fingerprint="fp:bbbbbbbbbb",
        mtime=NOW - timedelta(hours=2)))
    tokens.servers = [ServerTokenStatus("qwen", False, "probe+log",
                                        log_fingerprint="fp:bbbbbbbbbb")]
    snap = healthy(probes=[ok_probe("qwen", auth="rejected"), ok_probe("orch")], tokens=tokens)
    got = {f.code: f for f in diagnose(snap, CFG, now=NOW) if f.service == "qwen"}
    assert list(got) == ["token_rejected"] and got["token_rejected"].fix == "unify"


def test_rewritten_password_wins_over_a_stale_copy_elsewhere():
    """Rotated PASSWORD after start while an old copy of the loaded hash lingers in another
    file: still token_stale (the PASSWORD rewrite is the evidence)."""
    tokens = tokens_ok("fp:newnewnewn")
    tokens.locations += [
        TokenLocationStatus("qwen-password", "p", "password_file", state="ok",
                            fingerprint="fp:newnewnewn", mtime=NOW - timedelta(minutes=1)),
        TokenLocationStatus("docker-secrets", "d", "hash_file", state="mismatch",
                            fingerprint="fp:oldoldoldo"),
    ]
    tokens.servers = [ServerTokenStatus("qwen", False, "probe+log",
                                        log_fingerprint="fp:oldoldoldo")]
    snap = healthy(probes=[ok_probe("qwen", auth="rejected"), ok_probe("orch")], tokens=tokens)
    assert [c for c, s in codes(snap) if s == "qwen"] == ["token_stale"]


def test_health_starting_long_and_silent_port_is_one_finding():
    snap = healthy(containers=[running("qwen", health="starting",
                                       started_at=NOW - timedelta(minutes=20)), running("orch")],
                   probes=[ok_probe("qwen", outcome="empty_reply", auth="unknown"),
                           ok_probe("orch")])
    got = [f for f in diagnose(snap, CFG, now=NOW) if f.service == "qwen"]
    assert [f.code for f in got] == ["health_starting_long"]
    assert "does not answer" in got[0].message and "20 min" in got[0].message


def test_a_corrupted_copy_of_the_same_hash_is_a_file_problem_not_drift():
    """`KEY=KEY=<hash>` holds the canonical hash, spoiled: one token_file_problem; the
    copies do not hold different values, so no token_drift ("1 values")."""
    tokens = TokensReport(
        locations=[
            TokenLocationStatus("secrets", "s", "hash_file", state="ok", fingerprint="fp:a",
                                canonical=True),
            TokenLocationStatus("env", ".env", "env", state="invalid", fingerprint="fp:a",
                                problems=["key_in_value", "compose_interpolation"]),
        ],
        canonical="secrets", consistent=False, fingerprints={"fp:a": ["secrets", "env"]})
    got = [(f.code, f.service) for f in diagnose(healthy(tokens=tokens), CFG, now=NOW)
           if f.severity is not Severity.INFO]
    assert got == [("token_file_problem", None)]


def test_drift_message_counts_hash_values_not_a_verifying_raw_token():
    tokens = TokensReport(
        locations=[
            TokenLocationStatus("secrets", "s", "hash_file", state="ok", fingerprint="fp:a",
                                canonical=True),
            TokenLocationStatus("old", "o", "hash_file", state="mismatch", fingerprint="fp:b"),
            TokenLocationStatus("raw", ".env", "raw_env", state="ok", fingerprint="fp:r"),
        ],
        canonical="secrets", consistent=False,
        fingerprints={"fp:a": ["secrets"], "fp:b": ["old"], "fp:r": ["raw"]})
    drift = next(f for f in diagnose(healthy(tokens=tokens), CFG, now=NOW)
                 if f.code == "token_drift")
    assert drift.message.startswith("token copies disagree (2 values; differing: old)")
    assert "fp:r" not in drift.message
