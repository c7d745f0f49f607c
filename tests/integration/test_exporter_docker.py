"""Metrics out against a live simulated stack in real containers: `genai-tui exporter` as
a subprocess on the stack's config (every family's labels match the services and
containers, auth enforced, tokens consistent, no hash anywhere), its scrape cost, and the
one-shot forms `check --format openmetrics`, `check --textfile` and the plugin line."""

from __future__ import annotations

import http.client
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from genai_tui import simdocker
from genai_tui.secret import fingerprint
from tests.conftest import TEST_OWNER, free_port, make_hash, wait_port
from tests.integration.test_scenarios import Stack, health, wait_health
from tests.unit.test_exporter import PLUGIN_LINE, labels_of, sample_map, value

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
COMFY = ("comfyui-qwen", "flux-1-dev")
SCRAPES = 100
IDLE_WINDOW = 3.0


class Live:
    """The stack under test: its config, services -> container names, and its hash (kept
    out of pytest's output: no repr of it)."""

    def __init__(self, config: Path, containers: dict[str, str], hash_: str) -> None:
        self.config = config
        self.containers = containers
        self._hash = hash_

    def __repr__(self) -> str:
        return f"<Live {sorted(self.containers)}>"

    def leaks(self, text: str) -> list[str]:
        """Where an 8-character piece of the hash, or its fingerprint, is in `text`."""
        h = self._hash
        out = [f"hash piece at {i}" for i in range(len(h) - 7) if h[i:i + 8] in text]
        if fingerprint(h) in text or fingerprint(h)[3:] in text:
            out.append("fingerprint")
        return out


@pytest.fixture(scope="module")
def live(docker_client, tmp_path_factory) -> Iterator[Live]:
    """Two ComfyUI behind Login (healthchecks on /login), an SD stub and the orchestrator;
    one hash in a hash file and both PASSWORD files."""
    root = tmp_path_factory.mktemp("exporter-stack")
    a = make_hash()
    stack = Stack(root, a)
    prefix = simdocker.unique("gtexp") + "-"
    plan = [("comfyui-qwen", "comfyui", 8188), ("flux-1-dev", "comfyui", 8188),
            ("stable-diffusion-35", "stub", 8000), ("orchestrator", "orchestrator", 8090)]
    made = []
    try:
        for name, kind, cport in plan:
            port = free_port()
            login = stack.login_dir(name, a) if kind == "comfyui" else None
            c = simdocker.run_sim(
                docker_client, name=prefix + name, kind=kind, owner=TEST_OWNER,
                host_port=port, container_port=cport, login_dir=login,
                extra_args=["--name", name],
                healthcheck=health("/login", interval=1) if kind == "comfyui" else None)
            made.append(c)
            stack.service(name, port, c.name, kind={"stub": "http"}.get(kind, kind))
        for svc in stack.services:
            wait_port(int(svc["url"].rsplit(":", 1)[1]))
        for c in made[:2]:
            wait_health(c, "healthy")
        config = stack.write()
        yield Live(config, {s["name"]: s["container"] for s in stack.services}, a)
    finally:
        for c in made:
            try:
                c.remove(force=True)
            except Exception:
                pass


def env_for(cwd: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GENAI_TUI_CONFIG"}
    env["PYTHONPATH"] = str(REPO)
    env["HOME"] = str(cwd)
    return env


def get(port: int, path: str, accept: str | None = None,
        conn: http.client.HTTPConnection | None = None) -> tuple[int, str]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Accept": accept} if accept else {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        if own:
            conn.close()


@pytest.fixture
def exporter_proc(live, tmp_path) -> Iterator[tuple[subprocess.Popen, int]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "genai_tui", "exporter", "--config", str(live.config),
         "--listen", "127.0.0.1:0"], cwd=tmp_path, env=env_for(tmp_path),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        m = re.search(r"serving http://127\.0\.0\.1:(\d+)/metrics", line)
        assert m, f"no serving line: {line!r}"
        yield proc, int(m.group(1))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_metrics(port: int, ready, timeout: float = 40.0) -> str:
    """Scrape until the exporter is healthy and `ready(samples)` holds; the last text."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        if get(port, "/healthz")[0] == 200:
            status, text = get(port, "/metrics")
            if status == 200 and ready(sample_map(parse_text(text))):
                return text
        time.sleep(0.2)
    raise AssertionError("the exporter never showed the settled stack:\n" + text[-3000:])


def settled(s) -> bool:
    return (len(s.get("genai_tui_probe_up", {})) == 4
            and set(s["genai_tui_probe_up"].values()) == {1}
            and len(s.get("genai_tui_server_uses_disk_hash", {})) == 2
            and len(s.get("genai_tui_container_healthy", {})) == 2
            and set(s["genai_tui_container_healthy"].values()) == {1})


def assert_stack_families(s, live: Live) -> None:
    services = set(live.containers)
    assert value(s, "genai_tui_docker_up") == 1
    assert labels_of(s, "genai_tui_container_up") == {
        (container, svc) for svc, container in live.containers.items()}
    assert set(s["genai_tui_container_up"].values()) == {1}
    assert labels_of(s, "genai_tui_container_state") == {(svc, "running") for svc in services}
    assert labels_of(s, "genai_tui_container_healthy") == {(svc,) for svc in COMFY}
    for name in ("genai_tui_container_restarts", "genai_tui_container_oom_killed",
                 "genai_tui_container_restart_loop"):
        assert labels_of(s, name) == {(svc,) for svc in services}, name
        assert set(s[name].values()) == {0}, name
    assert labels_of(s, "genai_tui_container_uptime_seconds") == {(svc,) for svc in services}
    assert all(0 <= v < 3600 for v in s["genai_tui_container_uptime_seconds"].values())
    assert "genai_tui_container_exit_code" not in s
    assert labels_of(s, "genai_tui_probe_up") == {(svc,) for svc in services}
    assert labels_of(s, "genai_tui_probe_outcome") == {("ok", svc) for svc in services}
    assert labels_of(s, "genai_tui_probe_auth") == {(svc, "enforced") for svc in COMFY}
    assert labels_of(s, "genai_tui_probe_latency_seconds") == {(svc,) for svc in services}
    assert all(0 <= v < 5 for v in s["genai_tui_probe_latency_seconds"].values())
    assert labels_of(s, "genai_tui_comfyui_queue_remaining") <= {(svc,) for svc in COMFY}
    assert value(s, "genai_tui_tokens_consistent") == 1
    assert labels_of(s, "genai_tui_token_location_ok") == {
        ("hash_file", "secrets"), ("password_file", "comfyui-qwen-password"),
        ("password_file", "flux-1-dev-password")}
    assert set(s["genai_tui_token_location_ok"].values()) == {1}
    assert value(s, "genai_tui_token_locations_with_problems") == 0
    assert s["genai_tui_server_uses_disk_hash"] == {
        frozenset({("service", svc)}): 1 for svc in COMFY}
    assert labels_of(s, "genai_tui_findings_active") == {
        ("critical",), ("warning",), ("info",)}
    assert value(s, "genai_tui_findings_active", severity="critical") == 0
    assert value(s, "genai_tui_findings_active", severity="warning") == 0
    assert {sev for _, sev in labels_of(s, "genai_tui_findings")} <= {"info"}
    for gpu_family in ("genai_tui_gpu_memory_used_bytes", "genai_tui_gpu_utilization_ratio"):
        for gpu, _name in labels_of(s, gpu_family):
            assert gpu.isdigit()
    assert value(s, "genai_tui_host_memory_total_bytes") > 0
    assert 0 <= value(s, "genai_tui_host_cpu_ratio") <= 1
    assert 0 <= value(s, "genai_tui_snapshot_age_seconds") < 30


def test_exporter_on_the_live_stack(live, exporter_proc):
    proc, port = exporter_proc
    text = wait_metrics(port, settled)
    s = sample_map(parse_text(text))
    assert_stack_families(s, live)
    status, om = get(port, "/metrics", accept=OPENMETRICS)
    assert status == 200 and om.endswith("# EOF\n")
    assert_stack_families(sample_map(parse_openmetrics(om)), live)
    for out in (text, om):
        leaks = live.leaks(out)  # not inline: a failure must not echo the output
        assert not leaks, "the stack's hash is in the exporter's output"
        assert "fp:" not in out

    # the cost of a scrape: wall time per scrape and the exporter's CPU for them
    ps = psutil.Process(proc.pid)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    before_cpu = ps.cpu_times()
    before_self = resource.getrusage(resource.RUSAGE_SELF)
    times = []
    try:
        for _ in range(SCRAPES):
            t0 = time.perf_counter()
            status, _ = get(port, "/metrics", conn=conn)
            times.append(time.perf_counter() - t0)
            assert status == 200
    finally:
        conn.close()
    after_cpu = ps.cpu_times()
    after_self = resource.getrusage(resource.RUSAGE_SELF)
    exporter_cpu = (after_cpu.user + after_cpu.system) - (before_cpu.user + before_cpu.system)
    client_cpu = (after_self.ru_utime + after_self.ru_stime) - (before_self.ru_utime
                                                                 + before_self.ru_stime)
    wall = sum(times)
    idle_before = ps.cpu_times()
    time.sleep(IDLE_WINDOW)  # the engine's own polls, without scrapes, for a baseline rate
    idle_after = ps.cpu_times()
    idle_cpu = ((idle_after.user + idle_after.system) - (idle_before.user + idle_before.system)
                ) * wall / IDLE_WINDOW
    times.sort()
    mean = wall / len(times)
    print(f"\n{SCRAPES} scrapes of the exporter (keep-alive, {len(text)} bytes each): "
          f"mean {mean * 1000:.2f} ms, median {times[len(times) // 2] * 1000:.2f} ms, "
          f"p95 {times[int(len(times) * 0.95)] * 1000:.2f} ms, "
          f"max {times[-1] * 1000:.2f} ms; exporter CPU {exporter_cpu * 1000:.0f} ms "
          f"(its idle engine over as long: {idle_cpu * 1000:.1f} ms, so about "
          f"{max(0.0, exporter_cpu - idle_cpu) / SCRAPES * 1000:.2f} ms per scrape), "
          f"client CPU {client_cpu * 1000:.0f} ms")
    assert mean < 0.03  # a Nagle/delayed-ACK stall alone is 40 ms

    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    print(f"exit on SIGTERM: {time.monotonic() - t0:.2f} s")
    assert time.monotonic() - t0 < 5
    err = proc.stderr.read()  # type: ignore[union-attr]
    assert "Traceback" not in err
    assert not live.leaks(err)
    # RUSAGE_CHILDREN counts the exporter once it has been waited for
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"children CPU so far (exporter included): "
          f"{(children.ru_utime + children.ru_stime):.2f} s")


def run_check(live: Live, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "genai_tui", "--config", str(live.config),
                           "check", *args], cwd=cwd, env=env_for(cwd), capture_output=True,
                          text=True, timeout=90)


def test_check_openmetrics_textfile_and_plugin_line(live, tmp_path):
    proc = run_check(live, tmp_path, "--format", "openmetrics")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("# EOF\n")
    s = sample_map(parse_openmetrics(proc.stdout))
    assert labels_of(s, "genai_tui_container_up") == {
        (container, svc) for svc, container in live.containers.items()}
    assert labels_of(s, "genai_tui_probe_auth") == {(svc, "enforced") for svc in COMFY}
    assert value(s, "genai_tui_tokens_consistent") == 1
    assert not live.leaks(proc.stdout + proc.stderr)

    folder = tmp_path / "textfile"
    folder.mkdir()
    proc = run_check(live, tmp_path, "--textfile", str(folder))
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in folder.iterdir()] == ["genai-tui.prom"]  # no temp file left
    prom = (folder / "genai-tui.prom").read_text()
    s = sample_map(parse_text(prom))
    assert labels_of(s, "genai_tui_probe_up") == {(svc,) for svc in live.containers}
    assert value(s, "genai_tui_tokens_consistent") == 1
    assert not live.leaks(prom)
    first = proc.stdout.splitlines()[0]
    assert PLUGIN_LINE.match(first), first
    assert first.startswith("GENAI-TUI OK - 4/4 running, 4/4 probes ok, ")
    perf = first.split(" | ", 1)[1].split(" ")
    assert "'containers_running'=4;;;0;4" in perf
    for svc in live.containers:
        assert any(re.fullmatch(rf"'probe_{svc}_latency'=\d+(\.\d+)?s", p) for p in perf)
    assert "'findings_critical'=0;;0;0" in perf and "'findings_warning'=0;0;;0" in perf
    assert proc.stdout.rstrip().endswith("status: OK")
