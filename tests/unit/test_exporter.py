"""Metrics out (issue 15): a hand-built snapshot rendered as Prometheus text and as
OpenMetrics, parsed back with prometheus_client's own parsers; hostile label values
cleaned; no hash or fingerprint in any output; the HTTP server on a real loopback port
(content negotiation, /healthz, 404) whose scrapes only read the engine's snapshot; and
`genai-tui exporter` as a subprocess that exits 0 promptly on SIGTERM."""

from __future__ import annotations

import gzip
import http.client
import http.server
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from genai_tui import __version__, cli, exporter
from genai_tui import config as configmod
from genai_tui.engine.live import Stack
from genai_tui.model import (
    ContainerInfo,
    DiskUsage,
    DockerStatus,
    Finding,
    GpuInfo,
    GpuProcess,
    GpuReport,
    HostInfo,
    JobInfo,
    JobsReport,
    LogEvent,
    ProbeResult,
    ServerTokenStatus,
    ServiceJobs,
    Severity,
    Snapshot,
    TokenLocationStatus,
    TokensReport,
)
from genai_tui.secret import fingerprint

ROOT = Path(__file__).resolve().parents[2]
HASH = "$2b$12$" + "Q" * 22 + "abcdefghijklmnopqrstuvwxyzABCDE"
MIB = 1024 * 1024
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
HOSTILE = "evil\x1b]0;pwned\x07\x1b[2J\u202ename\nnext"

assert len(HASH) == 60

#: family -> {frozenset(labels) -> value}
Samples = dict[str, dict[frozenset[tuple[str, str]], float]]


def sample_map(families) -> Samples:
    out: Samples = {}
    for fam in families:
        for s in fam.samples:
            out.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return out


def labels_of(samples: Samples, name: str) -> set[tuple[str, ...]]:
    """The label values of a family's samples, in sorted label-name order."""
    return {tuple(v for _, v in sorted(key)) for key in samples.get(name, {})}


def value(samples: Samples, family: str, /, **labels: str) -> float:
    return samples[family][frozenset(labels.items())]


def snapshot(**over) -> Snapshot:
    now = datetime.now(UTC)
    snap = Snapshot(
        docker=DockerStatus(reachable=True, server_version="27.0"),
        containers=[
            ContainerInfo("qwen", "comfyui-qwen", id="a" * 64, state="running",
                          health="healthy", started_at=now - timedelta(seconds=100),
                          restart_count=2),
            ContainerInfo("flux", "flux-1-dev", state="exited", health="unhealthy",
                          exit_code=137, oom_killed=True, looping=True, restart_count=7),
            ContainerInfo("orch", "orchestrator", state="missing"),
        ],
        probes=[
            ProbeResult("qwen", "http://127.0.0.1:8188", "ok", auth="enforced", status=200,
                        latency_ms=12.0, queue_remaining=3),
            ProbeResult("flux", "http://127.0.0.1:8189", "refused", auth="unknown"),
            ProbeResult("orch", "http://127.0.0.1:8193", "ok", status=200, latency_ms=2.5),
        ],
        tokens=TokensReport(
            locations=[
                TokenLocationStatus("secrets", "/s/token", "hash_file", state="ok",
                                    canonical=True),
                TokenLocationStatus("qwen-password", "/s/PASSWORD", "password_file",
                                    state="ok", problems=["crlf"]),
                TokenLocationStatus("env", "/s/.env", "env", key="TOKEN", state="mismatch"),
            ],
            canonical="secrets", consistent=False,
            servers=[ServerTokenStatus("qwen", True, "probe"),
                     ServerTokenStatus("flux", None)]),
        gpu=GpuReport(gpus=[
            GpuInfo(0, "NVIDIA RTX 4090", memory_used_mb=6144, memory_total_mb=24576,
                    utilization_pct=55.0, temperature_c=61, power_w=180.5, processes=[
                        GpuProcess(10, 1024, service="qwen", container="comfyui-qwen"),
                        GpuProcess(11, 512, service="qwen", container="comfyui-qwen"),
                        GpuProcess(12, 256, container="stray"),
                        GpuProcess(13, 128),
                        GpuProcess(14, None, service="flux")]),
            GpuInfo(1, "NVIDIA RTX 4090", memory_used_mb=0, memory_total_mb=24576,
                    error=None),
        ]),
        host=HostInfo(cpu_pct=12.5, memory_used_mb=4096, memory_total_mb=16384,
                      swap_used_mb=0, swap_total_mb=2048,
                      disks=[DiskUsage("/srv", used_mb=10, total_mb=100),
                             DiskUsage("/gone", error="missing")]),
        findings=[
            Finding("token_drift", Severity.WARNING, None, "copies differ"),
            Finding("port_unreachable", Severity.WARNING, "flux", "refused"),
            Finding("port_unreachable", Severity.WARNING, "orch", "refused"),
            Finding("oom_killed", Severity.CRITICAL, "flux", "killed"),
            Finding("gpu_unavailable", Severity.INFO, None, "no NVML"),
        ],
        jobs=JobsReport(services=[
            ServiceJobs("qwen", running=JobInfo("p1", 4, "running"),
                        pending=[JobInfo("p2", 5), JobInfo("p3", 6)], oldest_wait_s=42.0,
                        recent=[JobInfo("p0", 3, "error", error_type="OOM"),
                                JobInfo("pz", 2, "error", error_type="OOM"),
                                JobInfo("py", 1, "success")],
                        last_progress_at=now - timedelta(seconds=30),
                        vram_used=3 * MIB, vram_source="nvml", api="queue"),
            ServiceJobs("flux", api="none", error="connection refused"),
        ]),
        taken_at=now - timedelta(seconds=5),
    )
    for key, val in over.items():
        setattr(snap, key, val)
    return snap


def both(snap: Snapshot) -> tuple[Samples, Samples, str, str]:
    text = exporter.render(snap).decode()
    om = exporter.render(snap, openmetrics=True).decode()
    return sample_map(parse_text(text)), sample_map(parse_openmetrics(om)), text, om


# ------------------------------------------------------------------ families


def test_every_family_with_its_labels_and_units():
    text_samples, om_samples, text, om = both(snapshot())
    assert om.endswith("# EOF\n") and "# EOF" not in text
    for s in (text_samples, om_samples):
        assert labels_of(s, "genai_tui_build_info") == {(__version__,)}
        assert value(s, "genai_tui_docker_up") == 1
        assert {k: v for k, v in s["genai_tui_container_up"].items()} == {
            frozenset({("service", "qwen"), ("container", "comfyui-qwen")}): 1,
            frozenset({("service", "flux"), ("container", "flux-1-dev")}): 0,
            frozenset({("service", "orch"), ("container", "orchestrator")}): 0}
        assert labels_of(s, "genai_tui_container_state") == {
            ("qwen", "running"), ("flux", "exited"), ("orch", "missing")}
        assert set(s["genai_tui_container_state"].values()) == {1}
        assert value(s, "genai_tui_container_healthy", service="qwen") == 1
        assert value(s, "genai_tui_container_healthy", service="flux") == 0
        assert labels_of(s, "genai_tui_container_healthy") == {("qwen",), ("flux",)}
        assert value(s, "genai_tui_container_restarts", service="flux") == 7
        assert 99 <= value(s, "genai_tui_container_uptime_seconds", service="qwen") < 200
        assert labels_of(s, "genai_tui_container_uptime_seconds") == {("qwen",)}
        assert s["genai_tui_container_exit_code"] == {frozenset({("service", "flux")}): 137}
        assert value(s, "genai_tui_container_oom_killed", service="flux") == 1
        assert value(s, "genai_tui_container_oom_killed", service="qwen") == 0
        assert value(s, "genai_tui_container_restart_loop", service="flux") == 1
        assert value(s, "genai_tui_probe_up", service="qwen") == 1
        assert value(s, "genai_tui_probe_up", service="flux") == 0
        assert labels_of(s, "genai_tui_probe_outcome") == {
            ("ok", "qwen"), ("refused", "flux"), ("ok", "orch")}
        assert labels_of(s, "genai_tui_probe_auth") == {("qwen", "enforced"),
                                                        ("flux", "unknown")}
        assert value(s, "genai_tui_probe_latency_seconds", service="qwen") == 0.012
        assert value(s, "genai_tui_probe_latency_seconds", service="orch") == 0.0025
        assert s["genai_tui_comfyui_queue_remaining"] == {frozenset({("service", "qwen")}): 3}
        assert value(s, "genai_tui_tokens_consistent") == 0
        assert s["genai_tui_token_location_ok"] == {
            frozenset({("location", "secrets"), ("format", "hash_file")}): 1,
            frozenset({("location", "qwen-password"), ("format", "password_file")}): 0,
            frozenset({("location", "env"), ("format", "env")}): 0}
        assert value(s, "genai_tui_token_locations_with_problems") == 2
        assert s["genai_tui_server_uses_disk_hash"] == {frozenset({("service", "qwen")}): 1}
        gpu0 = {"gpu": "0", "name": "NVIDIA RTX 4090"}
        assert value(s, "genai_tui_gpu_memory_used_bytes", **gpu0) == 6144 * MIB
        assert value(s, "genai_tui_gpu_memory_total_bytes", **gpu0) == 24576 * MIB
        assert value(s, "genai_tui_gpu_utilization_ratio", **gpu0) == 0.55
        assert value(s, "genai_tui_gpu_temperature_celsius", **gpu0) == 61
        assert value(s, "genai_tui_gpu_power_watts", **gpu0) == 180.5
        assert labels_of(s, "genai_tui_gpu_memory_used_bytes") == {
            ("0", "NVIDIA RTX 4090"), ("1", "NVIDIA RTX 4090")}
        assert labels_of(s, "genai_tui_gpu_power_watts") == {("0", "NVIDIA RTX 4090")}
        assert s["genai_tui_gpu_process_memory_bytes"] == {
            frozenset({("gpu", "0"), ("service", "qwen")}): 1536 * MIB,
            frozenset({("gpu", "0"), ("service", "stray")}): 256 * MIB,
            frozenset({("gpu", "0"), ("service", "host")}): 128 * MIB}
        assert value(s, "genai_tui_host_cpu_ratio") == 0.125
        assert value(s, "genai_tui_host_memory_used_bytes") == 4096 * MIB
        assert value(s, "genai_tui_host_memory_total_bytes") == 16384 * MIB
        assert value(s, "genai_tui_host_swap_used_bytes") == 0
        assert value(s, "genai_tui_host_swap_total_bytes") == 2048 * MIB
        assert s["genai_tui_host_disk_used_bytes"] == {frozenset({("path", "/srv")}): 10 * MIB}
        assert value(s, "genai_tui_host_disk_total_bytes", path="/srv") == 100 * MIB
        assert s["genai_tui_findings"] == {
            frozenset({("code", "token_drift"), ("severity", "warning")}): 1,
            frozenset({("code", "port_unreachable"), ("severity", "warning")}): 2,
            frozenset({("code", "oom_killed"), ("severity", "critical")}): 1,
            frozenset({("code", "gpu_unavailable"), ("severity", "info")}): 1}
        assert {k: v for k, v in s["genai_tui_findings_active"].items()} == {
            frozenset({("severity", "critical")}): 1,
            frozenset({("severity", "warning")}): 3,
            frozenset({("severity", "info")}): 1}
        assert 4 <= value(s, "genai_tui_snapshot_age_seconds") < 60
        assert value(s, "genai_tui_jobs_running", service="qwen") == 1
        assert value(s, "genai_tui_jobs_pending", service="qwen") == 2
        assert value(s, "genai_tui_jobs_oldest_wait_seconds", service="qwen") == 42
        assert 30 <= value(s, "genai_tui_jobs_seconds_since_progress", service="qwen") < 90
        assert value(s, "genai_tui_jobs_recent_failures", service="qwen",
                     error_type="OOM") == 2
        assert value(s, "genai_tui_jobs_vram_used_bytes", service="qwen",
                     source="nvml") == 3 * MIB
        # a server whose queue could not be read has no figures, not an idle zero
        assert all(("service", "flux") not in k for k in s["genai_tui_jobs_pending"])
    # every family of the public interface is there (the hand-built snapshot has them all)
    names = {n for n in text_samples}
    assert names == {"genai_tui_build_info",
                     *(exporter.PREFIX + n for n in exporter.FAMILIES)}
    assert names == set(om_samples)


def test_openmetrics_types_and_units():
    families = {f.name: f for f in parse_openmetrics(exporter.render(snapshot(),
                                                                     openmetrics=True).decode())}
    assert families["genai_tui_build"].type == "info"
    assert families["genai_tui_probe_latency_seconds"].unit == "seconds"
    assert families["genai_tui_gpu_memory_used_bytes"].unit == "bytes"
    assert families["genai_tui_gpu_utilization_ratio"].unit == "ratio"
    assert families["genai_tui_gpu_temperature_celsius"].unit == "celsius"
    assert {f.type for n, f in families.items() if n != "genai_tui_build"} == {"gauge"}
    for f in parse_text(exporter.render(snapshot()).decode()):
        assert f.type == "gauge", f.name
        assert f.documentation


def test_absent_parts_give_absent_families():
    snap = Snapshot(docker=DockerStatus(False, "Docker engine unreachable: refused"),
                    containers=[ContainerInfo("qwen", "comfyui-qwen", state="unknown")],
                    taken_at=datetime.now(UTC))
    s, _, _, _ = both(snap)
    assert value(s, "genai_tui_docker_up") == 0
    assert labels_of(s, "genai_tui_container_state") == {("qwen", "unknown")}
    for name in ("genai_tui_container_healthy", "genai_tui_container_exit_code",
                 "genai_tui_container_uptime_seconds", "genai_tui_probe_up",
                 "genai_tui_tokens_consistent", "genai_tui_gpu_memory_used_bytes",
                 "genai_tui_host_cpu_ratio", "genai_tui_findings"):
        assert name not in s
    assert set(s["genai_tui_findings_active"].values()) == {0}
    assert len(s["genai_tui_findings_active"]) == 3


def test_hostile_label_values_are_cleaned():
    snap = snapshot(containers=[ContainerInfo(HOSTILE, HOSTILE + '"\\', state="running")],
                    probes=[ProbeResult(HOSTILE, "http://x", "ok")],
                    gpu=GpuReport(gpus=[GpuInfo(0, HOSTILE, memory_used_mb=1)]),
                    host=HostInfo(disks=[DiskUsage("/srv/\x1b[31mred\u200b", 1, 2)]))
    s, om_s, text, om = both(snap)
    for out in (text, om):
        assert "\x1b" not in out and "\u202e" not in out and "\u200b" not in out
        assert "pwned" not in out and "[2J" not in out
    for samples in (s, om_s):
        assert labels_of(samples, "genai_tui_probe_up") == {("evilname next",)}
        assert labels_of(samples, "genai_tui_container_up") == {
            ('evilname next"\\', "evilname next")}
        assert labels_of(samples, "genai_tui_gpu_memory_used_bytes") == {
            ("0", "evilname next")}
        assert labels_of(samples, "genai_tui_host_disk_used_bytes") == {("/srv/red",)}


def test_label_values_are_capped():
    snap = snapshot(probes=[ProbeResult("x" * 5000, "http://x", "ok")])
    s, _, _, _ = both(snap)
    (svc,) = labels_of(s, "genai_tui_probe_up")
    assert len(svc[0]) == exporter.LABEL_MAX and svc[0].endswith("…")


def test_no_hash_nor_fingerprint_leaks():
    """A snapshot whose texts carry a bcrypt hash and its fingerprint: neither, nor any
    8-character piece of the hash, is in either output."""
    fp = fingerprint(HASH)
    snap = snapshot()
    snap.findings.append(Finding("token_stale", Severity.WARNING, "qwen",
                                 f"server uses {HASH} ({fp})", fix="unify",
                                 paths=(f"/srv/{HASH}",)))
    snap.probes[1].detail = f"401 with {HASH}"
    snap.containers[0].action = f"restart failed: {HASH}"
    snap.containers.append(ContainerInfo(f"svc-{HASH}", f"c-{fp}", state="running"))
    snap.tokens.locations[0].fingerprint = fp
    snap.tokens.locations[0].detail = f"holds {HASH}"
    snap.tokens.locations.append(TokenLocationStatus(f"loc{HASH}", "/p", "hash_file",
                                                     state="ok", fingerprint=fp))
    snap.tokens.fingerprints = {fp: ["secrets"]}
    snap.tokens.servers[0].log_fingerprint = fp
    snap.log_events = [LogEvent("qwen", "token", fingerprint=fp)]
    snap.docker.error = f"engine said {HASH}"
    snap.gpu.error = HASH
    text = exporter.render(snap).decode()
    om = exporter.render(snap, openmetrics=True).decode()
    for out in (text, om):
        pieces = [i for i in range(len(HASH) - 7) if HASH[i:i + 8] in out]
        assert not pieces, "a piece of the hash is in the output"
        assert fp not in out and fp[3:] not in out and "$2b$" not in out
    s = sample_map(parse_text(text))
    assert ("c-fp:[hidden]", "svc-[hash]") in labels_of(s, "genai_tui_container_up")


def test_not_ready_serves_build_info_only():
    body, ctype = exporter.Exporter(lambda: None).render()
    assert ctype.startswith("text/plain")
    assert [f.name for f in parse_text(body.decode())] == ["genai_tui_build_info"]


def test_textfile_is_replaced_atomically(tmp_path):
    left = tmp_path / f".{exporter.TEXTFILE_NAME}.dead1234.genai-tui.tmp"
    left.write_text("half")  # what a killed run leaves
    (tmp_path / "other.prom").write_text("x 1\n")
    path = exporter.write_textfile(tmp_path, snapshot())
    assert path == tmp_path / "genai-tui.prom"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["genai-tui.prom", "other.prom"]
    assert path.stat().st_mode & 0o777 == 0o644
    first = path.stat().st_ino
    s = sample_map(parse_text(path.read_text()))
    assert value(s, "genai_tui_docker_up") == 1
    exporter.write_textfile(tmp_path, snapshot(docker=DockerStatus(False)))
    assert path.stat().st_ino != first  # a new file renamed over, never rewritten in place
    assert value(sample_map(parse_text(path.read_text())), "genai_tui_docker_up") == 0


# ------------------------------------------------------------------ perfdata (check)

PERF_ITEM = r"'[A-Za-z0-9_.-]+'=-?\d+(\.\d+)?(s|%|B|KB|MB|GB|TB|c)?(;[-~@:\d.]*){0,4}"
PLUGIN_LINE = re.compile(rf"^GENAI-TUI (OK|WARNING|CRITICAL|UNKNOWN) - [^|]+"
                         rf"( \| {PERF_ITEM}( {PERF_ITEM})*)?$")


def test_plugin_line_and_perfdata():
    cfg = configmod.Config(services=())
    snap = snapshot()
    line = cli.plugin_line(snap, cfg, cli.EXIT_CRITICAL)
    assert PLUGIN_LINE.match(line), line
    head, _, perf = line.partition(" | ")
    assert head.startswith("GENAI-TUI CRITICAL - 1/3 running, 2/3 probes ok, "
                           "tokens NOT consistent, 1 critical, 3 warning: ")
    items = perf.split(" ")
    assert "'containers_running'=1;;;0;3" in items
    assert "'flux_restarts'=7c" in items
    assert "'probe_qwen_latency'=0.012s" in items
    assert "'probe_orch_latency'=0.0025s" in items
    assert "'gpu0_mem'=25%;90;;0;100" in items
    assert "'gpu1_mem'=0%;90;;0;100" in items
    assert "'host_mem'=25%;90;;0;100" in items
    assert "'findings_critical'=1;;0;0" in items
    assert "'findings_warning'=3;0;;0" in items
    table = cli.render_check(snap, cfg, cli.EXIT_CRITICAL).splitlines()
    assert table[0] == line and table[1].startswith("genai-tui check — ")


def test_plugin_line_survives_hostile_names():
    cfg = configmod.Config(services=())
    snap = snapshot(containers=[ContainerInfo("a'b=c |d\x1b[2J", "x", state="running",
                                              restart_count=1)],
                    probes=[], findings=[Finding("x|y", Severity.WARNING, None, "m")])
    line = cli.plugin_line(snap, cfg, cli.EXIT_WARNING)
    assert PLUGIN_LINE.match(line), line
    assert "'a_b_c_d_restarts'=1c" in line.split(" | ")[1]
    assert "x/y" in line.split(" | ")[0]


def test_unreachable_engine_summary():
    cfg = configmod.Config(services=(configmod.ServiceConfig("a", "http://127.0.0.1:9"),))
    snap = Snapshot(docker=DockerStatus(False, "Docker engine unreachable: refused"),
                    findings=[Finding("docker_unreachable", Severity.CRITICAL, None, "x")])
    line = cli.plugin_line(snap, cfg, cli.EXIT_UNKNOWN)
    assert line.startswith("GENAI-TUI UNKNOWN - Docker engine unreachable: refused, "
                           "1 critical, 0 warning: docker_unreachable | ")
    assert PLUGIN_LINE.match(line)


# ------------------------------------------------------------------ the HTTP server


def get(port: int, path: str, accept: str | None = None, method: str = "GET",
        encoding: str | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {}
        if accept:
            headers["Accept"] = accept
        if encoding:
            headers["Accept-Encoding"] = encoding
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.fixture
def served() -> Iterator:
    """Start a MetricsServer for an Exporter on a free loopback port; stopped after."""
    made: list[exporter.MetricsServer] = []

    def start(exp: exporter.Exporter) -> int:
        server = exporter.serve(exp, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        made.append(server)
        return int(server.server_address[1])

    yield start
    for server in made:
        server.shutdown()
        server.server_close()


def test_server_negotiates_formats_and_answers_healthz(served):
    snap = snapshot()
    health = {"value": (True, "ok")}
    port = served(exporter.Exporter(lambda: snap, health=lambda: health["value"]))
    status, headers, body = get(port, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    assert value(sample_map(parse_text(body.decode())), "genai_tui_docker_up") == 1
    status, headers, body = get(port, "/metrics", accept=OPENMETRICS + ", text/plain;q=0.5")
    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    assert value(sample_map(parse_openmetrics(body.decode())), "genai_tui_docker_up") == 1
    status, headers, body = get(port, "/metrics", encoding="gzip")
    assert headers.get("content-encoding") == "gzip"
    assert b"genai_tui_docker_up 1.0" in gzip.decompress(body)
    status, headers, body = get(port, "/metrics", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 100
    assert get(port, "/healthz")[::2] == (200, b"ok\n")
    health["value"] = (False, "stale: the snapshot last changed 99 s ago")
    assert get(port, "/healthz")[::2] == (503, b"stale: the snapshot last changed 99 s ago\n")
    for path in ("/", "/metricsx", "/favicon.ico", "/../etc/passwd"):
        assert get(port, path)[0] == 404


def test_keep_alive_connection_serves_several_scrapes_quickly(served):
    """One connection, many scrapes (as Prometheus does), none held back by Nagle's
    algorithm against the client's delayed ACK (40 ms each)."""
    port = served(exporter.Exporter(snapshot))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("HEAD", "/metrics")
        assert conn.getresponse().read() == b""
        t0 = time.perf_counter()
        for _ in range(20):
            conn.request("GET", "/metrics")
            assert b"genai_tui_docker_up" in conn.getresponse().read()
        assert time.perf_counter() - t0 < 0.6
    finally:
        conn.close()


class CountingService:
    """A loopback HTTP service that counts the requests it gets (the stack's probes)."""

    def __init__(self) -> None:
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.hits += 1
                body = b'{"status": "healthy"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_scrapes_only_read_the_snapshot(served, tmp_path):
    """N scrapes read the live stack's snapshot N times and cause no probe round: the
    probed service sees no request and the engine's round count does not move."""
    service = CountingService()
    cfg = configmod.Config(
        services=(configmod.ServiceConfig("web", f"http://127.0.0.1:{service.port}", "http",
                                          runtime="process"),),
        probes=configmod.ProbeConfig(interval=3600.0),
        tokens=configmod.TokensConfig(state_dir=tmp_path, audit_log=tmp_path / "a.jsonl"),
        base_dir=tmp_path)
    stack = Stack(cfg, parts=("probes",))
    source = exporter.StackSource(stack, stale_after=3600)
    reads = {"n": 0}

    def counted() -> Snapshot | None:
        reads["n"] += 1
        return source()

    port = served(exporter.Exporter(counted, age=source.age, health=source.health))
    assert get(port, "/healthz")[0] == 503  # not started yet
    stack.start()
    try:
        assert stack.wait_settled(20)
        deadline = time.monotonic() + 10
        while get(port, "/healthz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert get(port, "/healthz")[::2] == (200, b"ok\n")
        rounds, hits, reads["n"] = stack.rounds("probes"), service.hits, 0
        assert rounds >= 1 and hits >= 1
        n = 50
        for _ in range(n):
            status, _, body = get(port, "/metrics")
            assert status == 200
        s = sample_map(parse_text(body.decode()))
        assert value(s, "genai_tui_probe_up", service="web") == 1
        assert reads["n"] == n  # one snapshot read per scrape
        assert (stack.rounds("probes"), service.hits) == (rounds, hits)
    finally:
        stack.close()
        service.close()
    assert get(port, "/healthz")[::2] == (503, b"engine stopped\n")


def test_parse_listen_and_loopback():
    assert exporter.parse_listen("127.0.0.1:9188") == ("127.0.0.1", 9188)
    assert exporter.parse_listen("[::1]:0") == ("::1", 0)
    assert exporter.parse_listen("0.0.0.0:9188") == ("0.0.0.0", 9188)
    for bad in ("9188", ":9188", "127.0.0.1:", "127.0.0.1:99999", "h:p"):
        with pytest.raises(ValueError):
            exporter.parse_listen(bad)
    assert exporter.is_loopback("127.0.0.1") and exporter.is_loopback("::1")
    assert not exporter.is_loopback("0.0.0.0") and not exporter.is_loopback("10.0.0.1")


def test_server_on_ipv6_loopback():
    try:
        server = exporter.serve(exporter.Exporter(snapshot), "::1", 0)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        assert server.url.startswith("http://[::1]:")
        conn = http.client.HTTPConnection("::1", int(server.server_address[1]), timeout=10)
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() == b"ok\n"
        conn.close()
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------ the subprocess

EXPORTER_CONFIG = (
    "[[services]]\n"
    'name = "svc"\nurl = "http://127.0.0.1:9"\nkind = "http"\nruntime = "process"\n'
    'process_pattern = "no-such-process-genai-tui"\n'
    "[probes]\ninterval = 0.5\n[host]\ninterval = 0.5\n[gpu]\ninterval = 0.5\n"
)


def cli_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GENAI_TUI_CONFIG"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["HOME"] = str(home)
    env["XDG_CONFIG_HOME"] = str(home / ".config")
    return env


def start_exporter(config: Path, cwd: Path, *args: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "genai_tui", "exporter", "--config", str(config),
         "--listen", "127.0.0.1:0", *args],
        cwd=cwd, env=cli_env(cwd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    m = re.search(r"serving http://127\.0\.0\.1:(\d+)/metrics", line)
    if not m:
        proc.kill()
        raise AssertionError(f"no serving line: {line!r} {proc.stderr.read()!r}")
    return proc, int(m.group(1))


def test_exporter_subprocess_serves_and_exits_0_on_sigterm(tmp_path):
    config = tmp_path / "genai-tui.toml"
    config.write_text(EXPORTER_CONFIG)
    proc, port = start_exporter(config, tmp_path)
    try:
        deadline = time.monotonic() + 30
        while get(port, "/healthz")[0] != 200:
            assert time.monotonic() < deadline, "the exporter never became healthy"
            time.sleep(0.1)
        status, _, body = get(port, "/metrics")
        s = sample_map(parse_text(body.decode()))
        assert value(s, "genai_tui_container_up", service="svc",
                     container="no-such-process-genai-tui") == 0
        assert value(s, "genai_tui_probe_outcome", service="svc", outcome="refused") == 1
        assert value(s, "genai_tui_findings_active", severity="critical") >= 1
        assert "genai_tui_docker_up" not in s  # process services only: no engine involved
        assert value(s, "genai_tui_snapshot_age_seconds") < 10
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert time.monotonic() - t0 < 5
        err = proc.stderr.read()  # type: ignore[union-attr]
        assert "Traceback" not in err and "listening on" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_exporter_warns_on_a_non_loopback_address_and_stops_on_sigint(tmp_path):
    config = tmp_path / "genai-tui.toml"
    config.write_text(EXPORTER_CONFIG)
    proc = subprocess.Popen(
        [sys.executable, "-m", "genai_tui", "exporter", "--config", str(config),
         "--listen", "0.0.0.0:0"],
        cwd=tmp_path, env=cli_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        warning = proc.stderr.readline()  # type: ignore[union-attr]
        assert warning.startswith("genai-tui exporter: warning: listening on http://0.0.0.0:")
        assert "serving http://0.0.0.0:" in proc.stdout.readline()  # type: ignore[union-attr]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("listen", ["nonsense", "127.0.0.1:99999"])
def test_exporter_bad_listen_exits_2(tmp_path, listen):
    config = tmp_path / "genai-tui.toml"
    config.write_text(EXPORTER_CONFIG)
    proc = subprocess.run([sys.executable, "-m", "genai_tui", "exporter", "--config",
                           str(config), "--listen", listen], cwd=tmp_path,
                          env=cli_env(tmp_path), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and proc.stderr.startswith("genai-tui exporter: bad --listen")


def test_exporter_busy_port_exits_1(tmp_path, served):
    port = served(exporter.Exporter(snapshot))
    config = tmp_path / "genai-tui.toml"
    config.write_text(EXPORTER_CONFIG)
    proc = subprocess.run([sys.executable, "-m", "genai_tui", "--config", str(config),
                           "exporter", "--listen", f"127.0.0.1:{port}"], cwd=tmp_path,
                          env=cli_env(tmp_path), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "cannot listen on" in proc.stderr


# ------------------------------------------------------------------ check's one-shot forms


def run_check(config: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "genai_tui", "check", "--config",
                           str(config), *args], cwd=cwd, env=cli_env(cwd),
                          capture_output=True, text=True, timeout=60)


def test_check_openmetrics_and_textfile(tmp_path):
    config = tmp_path / "genai-tui.toml"
    config.write_text(EXPORTER_CONFIG)
    proc = run_check(config, tmp_path, "--format", "openmetrics")
    assert proc.returncode == 2, proc.stderr  # the process is missing: critical
    assert proc.stdout.endswith("# EOF\n")
    s = sample_map(parse_openmetrics(proc.stdout))
    assert value(s, "genai_tui_container_state", service="svc", state="missing") == 1
    out = tmp_path / "textfile"
    out.mkdir()
    proc = run_check(config, tmp_path, "--textfile", str(out))
    assert proc.returncode == 2
    first = proc.stdout.splitlines()[0]
    assert PLUGIN_LINE.match(first) and first.startswith("GENAI-TUI CRITICAL - 0/1 running")
    assert proc.stdout.rstrip().endswith("status: CRITICAL")
    assert [p.name for p in out.iterdir()] == ["genai-tui.prom"]
    s = sample_map(parse_text((out / "genai-tui.prom").read_text()))
    assert value(s, "genai_tui_probe_up", service="svc") == 0
    proc = run_check(config, tmp_path, "--textfile", str(tmp_path / "missing"))
    assert proc.returncode == 3 and "not a folder" in proc.stderr
    proc = run_check(config, tmp_path, "--json", "--format", "openmetrics")
    assert proc.returncode == 3 and "not allowed with" in proc.stderr


def test_check_textfile_write_failure_is_unknown_unless_critical(tmp_path, monkeypatch,
                                                                 capsys):
    from genai_tui.engine import collect

    def refuse(directory, snap):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(exporter, "write_textfile", refuse)
    cfg = configmod.Config(services=())
    healthy = Snapshot(taken_at=datetime.now(UTC))
    monkeypatch.setattr(collect, "collect_once", lambda config: healthy)
    assert cli.run_check(cfg, textfile=tmp_path) == cli.EXIT_UNKNOWN
    out, err = capsys.readouterr()
    assert out.startswith("GENAI-TUI OK - ")  # the check's own output is still printed
    assert err.strip() == f"genai-tui: cannot write {tmp_path}/genai-tui.prom: permission denied"
    monkeypatch.setattr(collect, "collect_once", lambda config: snapshot())
    assert cli.run_check(cfg, textfile=tmp_path) == cli.EXIT_CRITICAL
