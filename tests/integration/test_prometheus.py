"""Issue 15, with the real programs: Debian's `prometheus`, `promtool` and
`prometheus-node-exporter` (.ci/run installs them; without them these tests are skipped
with the reason, and fail under GENAI_TUI_REQUIRE_DOCKER=1).

- docs/alerts.yml passes `promtool check rules`, and its unit tests (docs/alerts_test.yml:
  each alert fires on its series with its exact labels and annotations, and stays quiet
  where a more precise one names the cause) pass `promtool test rules`;
- `genai-tui exporter`, as a subprocess on a simulated stack in real containers, is
  scraped by a real Prometheus (1 s interval, the alert rules loaded): the values read
  back through Prometheus's HTTP API are the stack's; every rule evaluates without error
  and none fires on the healthy stack; once the container is stopped, Prometheus reads it
  down within a bounded wait, the "container down" rule's own expression selects it, its
  alert is pending and it is the only one (the refused port is not a second alert); the
  exporter exits promptly and cleanly on SIGTERM;
- what the exporter serves passes `promtool check metrics`;
- `check --textfile DIR` writes a file that passes `promtool check metrics`, and a real
  node_exporter's textfile collector serves every one of its samples with the same value.

Every server listens on 127.0.0.1 only, every wait has a deadline, and every process and
temporary folder is gone after each test.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.conftest import REQUIRE_DOCKER, free_port, make_hash
from tests.integration.test_check_cli import run_check
from tests.integration.test_scenarios import Stack, start_sim, wait_state

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "docs" / "alerts.yml"
ALERTS_TEST = REPO / "docs" / "alerts_test.yml"
LOOPBACK = "127.0.0.1"
#: the Debian package that provides each program
PACKAGES = {"prometheus": "prometheus", "promtool": "prometheus",
            "prometheus-node-exporter": "prometheus-node-exporter"}
#: what the stop test measured, printed at the end of the test (see the report in -rP)
FIGURES: dict[str, float] = {}


def tool(name: str) -> str:
    """The program's path; a skip with the reason when it is missing (a failure under
    GENAI_TUI_REQUIRE_DOCKER=1: CI installs it)."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed (Debian package {PACKAGES[name]})"
        if REQUIRE_DOCKER:
            pytest.fail(f"{msg} and GENAI_TUI_REQUIRE_DOCKER=1: .ci/run installs it")
        pytest.skip(msg)
    return path


# ------------------------------------------------------------------ HTTP and text format


def get(port: int, path: str, *, timeout: float = 5.0) -> tuple[int, str]:
    """GET http://127.0.0.1:port/path (no proxy, loopback only)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def answers(port: int, path: str, want: Callable[[int, str], bool]) -> bool:
    try:
        return want(*get(port, path, timeout=2.0))
    except (OSError, http.client.HTTPException):
        return False


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')

Key = tuple[str, frozenset[tuple[str, str]]]


def parse_samples(text: str) -> dict[Key, float]:
    """The samples of a Prometheus text-format body: (name, labels) -> value."""
    out: dict[Key, float] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, raw, value = m.groups()
        labels = frozenset(_LABEL.findall(raw or ""))
        out[(name, labels)] = float(value)
    return out


def parse_types(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2)
            for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M)}


def value(samples: dict[Key, float], name: str, **labels: str) -> float | None:
    """The one sample of `name` whose labels include `labels` (None when there is none)."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    assert len(found) <= 1, f"{len(found)} samples of {name} with {labels}"
    return found[0] if found else None


def promtool_check_metrics(text: str) -> None:
    proc = subprocess.run([tool("promtool"), "check", "metrics"], input=text,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"promtool check metrics: {proc.stdout}{proc.stderr}"


# ------------------------------------------------------------------ processes


class Process:
    """A program started with its output in `logdir`; `stop()` is terminate, then kill."""

    def __init__(self, args: list[str], logdir: Path, name: str, *,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.log = logdir / f"{name}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=env, cwd=cwd)

    def output(self, tail: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def wait_http(self, port: int, path: str, want: Callable[[int, str], bool],
                  timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.alive(), (f"{self.name} exited ({self.proc.returncode}):\n"
                                  + self.output())
            if answers(port, path, want):
                return
            time.sleep(0.2)
        raise AssertionError(f"{self.name} did not answer {path} within {timeout}s:\n"
                             + self.output())


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    """Every Process a test starts, stopped after it (even when it fails)."""
    made: list[Process] = []
    yield made
    for p in reversed(made):
        p.stop()


class Exporter:
    def __init__(self, proc: Process, port: int) -> None:
        self.proc, self.port = proc, port

    def metrics(self) -> str:
        status, body = get(self.port, "/metrics")
        assert status == 200, body
        return body


@pytest.fixture
def exporter(processes, tmp_path) -> Callable[[Path], Exporter]:
    """`python -m genai_tui.cli exporter --listen 127.0.0.1:<free> --config CFG`, once its
    /metrics carries the stack (the engine settled)."""

    def start(config: Path) -> Exporter:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "GENAI_TUI_CONFIG"}
        env["PYTHONPATH"] = str(REPO)
        proc = Process([sys.executable, "-m", "genai_tui.cli", "exporter",
                        "--listen", f"{LOOPBACK}:{port}", "--config", str(config)],
                       tmp_path, "exporter", env=env, cwd=tmp_path)
        processes.append(proc)
        proc.wait_http(port, "/metrics",
                       lambda s, body: s == 200 and "genai_tui_container_up{" in body, 45)
        return Exporter(proc, port)

    return start


class Prometheus:
    """A real Prometheus on 127.0.0.1, read through its HTTP API."""

    def __init__(self, proc: Process, port: int) -> None:
        self.proc, self.port = proc, port

    def api(self, path: str, **params: str) -> Any:
        status, body = get(self.port, f"/api/v1/{path}?{urlencode(params)}")
        doc = json.loads(body)
        assert status == 200 and doc.get("status") == "success", body
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return data["result"]

    def values(self, expr: str) -> list[float]:
        return [float(s["value"][1]) for s in self.query(expr)]

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 30.0,
             interval: float = 0.2) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"Prometheus: {what} not within {timeout}s (last: {last!r})\n"
                             + self.proc.output())

    def wait_value(self, expr: str, want: float, timeout: float = 30.0) -> None:
        self.wait(f"{expr} == {want}", lambda: self.values(expr) == [want], timeout)

    def rules(self) -> dict[str, dict[str, Any]]:
        return {r["name"]: r for g in self.api("rules")["groups"] for r in g["rules"]}

    def alerts(self) -> set[tuple[str, str, str]]:
        """(alertname, alertstate, service) of every pending or firing alert."""
        return {(s["metric"]["alertname"], s["metric"]["alertstate"],
                 s["metric"].get("service", "")) for s in self.query("ALERTS")}


@pytest.fixture
def prometheus(processes) -> Iterator[Callable[..., Prometheus]]:
    """Start a Prometheus scraping `targets` ({job: ["127.0.0.1:port"]}) every second,
    with `rules` loaded (evaluated every second), its storage in a temporary folder that
    is removed afterwards; returned once /-/ready answers."""
    binary = tool("prometheus")
    dirs: list[Path] = []

    def start(targets: dict[str, list[str]], rules: Sequence[Path] = ()) -> Prometheus:
        root = Path(tempfile.mkdtemp(prefix="gt-prometheus-"))
        dirs.append(root)
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": [str(r) for r in rules],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": addrs}]}
                               for job, addrs in targets.items()],
        }
        (root / "prometheus.yml").write_text(json.dumps(config, indent=2))  # JSON is YAML
        port = free_port()
        proc = Process([binary, f"--config.file={root / 'prometheus.yml'}",
                        f"--storage.tsdb.path={root / 'data'}",
                        f"--web.listen-address={LOOPBACK}:{port}",
                        "--storage.tsdb.retention.time=1h", "--log.level=warn"],
                       root, "prometheus", cwd=root)
        processes.append(proc)
        proc.wait_http(port, "/-/ready", lambda s, _: s == 200, 30)
        return Prometheus(proc, port)

    yield start
    for p in processes:
        p.stop()  # before its folder goes
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def healthy_stack(sim_container, root: Path) -> tuple[Stack, Any, Path]:
    """One ComfyUI behind ComfyUI-Login in a container, its PASSWORD and the canonical
    copy agreeing: (stack, container, config file)."""
    a = make_hash()
    stack = Stack(root, a)
    c = start_sim(sim_container, stack, "qwen", hash_=a)
    return stack, c, stack.write()


# ------------------------------------------------------------------ the rule file


def test_alert_rules_pass_promtool_check_rules():
    proc = subprocess.run([tool("promtool"), "check", "rules", str(ALERTS)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout and "rules found" in proc.stdout


def test_alert_rules_unit_tests_pass_promtool_test_rules():
    proc = subprocess.run([tool("promtool"), "test", "rules", str(ALERTS_TEST)],
                          capture_output=True, text=True, timeout=60, cwd=ALERTS.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_rule_is_unit_tested_and_quotes_no_secret_label():
    """Each alert in alerts.yml has a case in alerts_test.yml, and its annotations read
    only labels that name things (never a value a hash or token could hide in)."""
    rules = re.findall(r"^\s*- alert: (\S+)$", ALERTS.read_text(), re.M)
    assert len(rules) >= 10
    tested = set(re.findall(r"alertname: (\S+?)[,}\s]", ALERTS_TEST.read_text()))
    assert set(rules) <= tested, set(rules) - tested
    used = set(re.findall(r"\$labels\.(\w+)", ALERTS.read_text()))
    assert used <= {"service", "container", "verdict", "code", "gpu", "name", "instance",
                    "file"}, used


# ------------------------------------------------------------------ the live exporter


def test_prometheus_reads_the_exporter_and_sees_a_container_stop(
        prometheus, exporter, sim_container, tmp_path):
    _, container, config = healthy_stack(sim_container, tmp_path)
    exp = exporter(config)
    prom = prometheus({"genai-tui": [f"{LOOPBACK}:{exp.port}"]}, rules=[ALERTS])

    # the stack as Prometheus stored it (it negotiated OpenMetrics with the exporter)
    prom.wait_value('up{job="genai-tui"}', 1)
    prom.wait_value('genai_tui_container_up{service="qwen"}', 1)
    prom.wait_value('genai_tui_probe_auth{service="qwen",verdict="enforced"}', 1)
    prom.wait_value("genai_tui_tokens_consistent", 1)
    prom.wait_value('genai_tui_server_uses_disk_hash{service="qwen"}', 1)
    prom.wait_value("genai_tui_docker_up", 1)
    assert prom.values('genai_tui_probe_auth{service="qwen",verdict!="enforced"}') == []
    assert prom.query('genai_tui_build_info{version!=""}')
    # it was OpenMetrics: only that format has an info type (the text format says gauge)
    meta = prom.api("metadata")
    assert [m["type"] for m in meta.get("genai_tui_build", [])] == ["info"], meta.keys()

    # every rule evaluates on the live series without an error, and none fires
    rules = prom.wait("every rule evaluated",
                      lambda: (r := prom.rules()) and all(x["health"] != "unknown"
                                                          for x in r.values()) and r)
    broken = {n: r.get("lastError") for n, r in rules.items() if r["health"] != "ok"}
    assert not broken, broken
    assert "GenaiTuiContainerDown" in rules
    prom.wait("no alert on the healthy stack", lambda: prom.alerts() == set() or None, 20)

    # stop the container: the exporter says so, then Prometheus
    begin = time.monotonic()
    container.stop(timeout=5)
    wait_state(container, lambda s: s["Status"] == "exited", timeout=15)
    stopped = time.monotonic()
    seen: dict[str, float] = {}
    deadline = stopped + 30
    while len(seen) < 2 and time.monotonic() < deadline:
        now = time.monotonic()
        if "exporter" not in seen and value(parse_samples(exp.metrics()),
                                            "genai_tui_container_up", service="qwen") == 0:
            seen["exporter"] = now
        if "prometheus" not in seen and prom.values(
                'genai_tui_container_up{service="qwen"}') == [0]:
            seen["prometheus"] = now
        time.sleep(0.1)
    assert "prometheus" in seen, (f"Prometheus never read qwen down within 30 s "
                                  f"(exporter: {'exporter' in seen})")
    FIGURES.update(stop_call_s=stopped - begin,
                   exporter_saw_stop_s=seen.get("exporter", math.nan) - stopped,
                   prometheus_saw_stop_s=seen["prometheus"] - stopped)

    # the rule's own expression selects it, and the rule engine holds its alert pending
    expr = rules["GenaiTuiContainerDown"]["query"]
    down = prom.wait("the container-down expression selects qwen",
                     lambda: [s for s in prom.query(expr)
                              if s["metric"].get("service") == "qwen"], 10)
    assert down[0]["metric"]["container"] == container.name
    prom.wait("the container-down alert pending",
              lambda: ("GenaiTuiContainerDown", "pending", "qwen") in prom.alerts(), 10)
    FIGURES["alert_pending_s"] = time.monotonic() - stopped
    # one cause, one alert: the refused port is not also "service unreachable"
    prom.wait_value('genai_tui_probe_up{service="qwen"}', 0, timeout=30)
    time.sleep(3)  # a few more evaluations with the probe down too
    assert prom.alerts() == {("GenaiTuiContainerDown", "pending", "qwen")}

    # SIGTERM: a prompt, clean exit
    start = time.monotonic()
    exp.proc.proc.send_signal(signal.SIGTERM)
    try:
        code = exp.proc.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("the exporter did not exit within 10 s of SIGTERM")
    FIGURES["exporter_exit_s"] = time.monotonic() - start
    assert code == 0, exp.proc.output()
    assert "Traceback" not in exp.proc.output(), exp.proc.output()
    assert FIGURES["exporter_exit_s"] < 5, FIGURES
    print("figures: " + ", ".join(f"{k}={v:.2f}" for k, v in FIGURES.items()))


def test_exporter_metrics_pass_promtool_check_metrics(exporter, sim_container, tmp_path):
    tool("promtool")
    _, _, config = healthy_stack(sim_container, tmp_path)
    body = exporter(config).metrics()
    samples = parse_samples(body)
    assert value(samples, "genai_tui_probe_auth", service="qwen", verdict="enforced") == 1
    promtool_check_metrics(body)


# ------------------------------------------------------------------ check --textfile


def test_check_textfile_passes_promtool_and_node_exporter_serves_it(
        processes, sim_container, tmp_path):
    node_exporter = tool("prometheus-node-exporter")
    tool("promtool")
    _, _, config = healthy_stack(sim_container, tmp_path)
    textdir = tmp_path / "textfile"
    textdir.mkdir()
    code, _, err, _ = run_check(config, "--textfile", str(textdir), cwd=tmp_path)
    assert code == 0 and "Traceback" not in err, err
    assert [p.name for p in textdir.iterdir()] == ["genai-tui.prom"]  # no temporary left
    text = (textdir / "genai-tui.prom").read_text()
    promtool_check_metrics(text)
    ours = parse_samples(text)
    assert value(ours, "genai_tui_container_up", service="qwen") == 1
    assert value(ours, "genai_tui_probe_auth", service="qwen", verdict="enforced") == 1
    assert value(ours, "genai_tui_tokens_consistent") == 1

    port = free_port()
    proc = Process([node_exporter, "--collector.disable-defaults", "--collector.textfile",
                    f"--collector.textfile.directory={textdir}",
                    f"--web.listen-address={LOOPBACK}:{port}",
                    "--web.disable-exporter-metrics"], tmp_path, "node-exporter")
    processes.append(proc)
    proc.wait_http(port, "/metrics", lambda s, body: s == 200 and "genai_tui_" in body, 20)
    _, body = get(port, "/metrics")
    served = parse_samples(body)
    missing = {k: v for k, v in ours.items() if k not in served}
    assert not missing, f"{len(missing)} samples not served, e.g. {next(iter(missing))}"
    differ = {k: (v, served[k]) for k, v in ours.items()
              if not (v == served[k] or math.isnan(v) and math.isnan(served[k]))}
    assert not differ, differ
    file_types, served_types = parse_types(text), parse_types(body)
    assert {n: served_types.get(n) for n in file_types} == file_types
    assert value(served, "node_textfile_scrape_error") == 0
    # the stale-textfile alert's selector matches this node_exporter's `file` label
    files = [dict(ls)["file"] for (n, ls) in served if n == "node_textfile_mtime_seconds"]
    assert len(files) == 1 and re.fullmatch(r"(.*/)?genai-tui\.prom", files[0]), files
    assert "level=error" not in proc.output(), proc.output()
