"""`genai-tui check` and `check --json` as a real subprocess against real containers: the
JSON shape scripts rely on, the exit status (0 OK, 1 warning, 2 critical, 3 unknown), a
bounded run time when a service hangs, and no secret (nor any 8-character piece of one) in
what it prints.

The warning stack is the demo's: `demo.write_stack_files` (one drifted token copy,
world-readable PASSWORD files) with the four simulated services started as containers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from genai_tui import demo, simdocker
from tests.conftest import TEST_OWNER, free_port, make_hash, wait_port
from tests.integration.test_scenarios import Stack, start_sim, wait_log

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
TOP_KEYS = {"containers", "probes", "tokens", "gpus", "host", "findings"}
PROBE_KEYS = {"service", "url", "outcome", "auth", "status", "latency_ms"}
CONTAINER_KEYS = {"service", "container", "state", "health", "restart_count", "exit_code",
                  "oom_killed", "ports"}


def run_check(config: Path, *args: str, cwd: Path) -> tuple[int, str, str, float]:
    """`python -m genai_tui --config X check [args]`; (exit status, stdout, stderr, seconds)."""
    env = {k: v for k, v in os.environ.items() if k != "GENAI_TUI_CONFIG"}
    env["PYTHONPATH"] = str(REPO)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "genai_tui", "--config", str(config), "check",
                           *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=90)
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start


def check_json(config: Path, cwd: Path) -> tuple[int, dict, str]:
    code, out, err, _ = run_check(config, "--json", cwd=cwd)
    assert "Traceback" not in err, err
    return code, json.loads(out), err


class Secrets:
    """The stack's secret values, kept out of pytest's failure output (no repr)."""

    def __init__(self, values: list[str]) -> None:
        self._values = values

    def __repr__(self) -> str:
        return f"<{len(self._values)} secrets>"

    def leaks(self, text: str) -> list[str]:
        """Which secrets (by index) have an 8-character piece in `text`; never the piece."""
        return [f"secret #{n} at offset {i}" for n, v in enumerate(self._values)
                for i in range(len(v) - 7) if v[i:i + 8] in text]


def nvml_missing() -> bool:
    from genai_tui.sources import gpu

    return not gpu.collect().gpus


@pytest.fixture(scope="module")
def demo_stack(docker_client, tmp_path_factory) -> Iterator[tuple[Path, Secrets]]:
    """The demo's files and its four services as containers; yields (config, secrets)."""
    root = tmp_path_factory.mktemp("demo-stack")
    prefix = simdocker.unique("gtcli") + "-"
    ports = {s.name: free_port() for s in demo.SERVICES}
    config = demo.write_stack_files(root, ports, container_prefix=prefix)
    made = []
    try:
        for svc in demo.SERVICES:
            made.append(simdocker.run_sim(
                docker_client, name=prefix + svc.name, kind=svc.kind, owner=TEST_OWNER,
                host_port=ports[svc.name], container_port=svc.container_port,
                login_dir=root / "login" / svc.name if svc.kind == "comfyui" else None,
                extra_args=["--name", svc.name]))
        for svc in demo.SERVICES:
            wait_port(ports[svc.name])
        good = (root / ".secrets" / "qwen-api-user.token").read_text().strip()
        stale = (root / "docker-configurations" / ".secrets" / "qwen-api-user.token"
                 ).read_text().strip()
        raw = re.search(r"^COMFYUI_RAW_TOKEN=(\S+)$", (root / ".env").read_text(),
                        re.M).group(1)  # type: ignore[union-attr]
        yield config, Secrets([good, stale, raw])
    finally:
        for c in made:
            try:
                c.remove(force=True)
            except Exception:
                pass


def test_json_shape_and_warning_status(demo_stack, tmp_path):
    config, _ = demo_stack
    code, doc, _ = check_json(config, tmp_path)
    assert TOP_KEYS <= set(doc)
    assert ("gpu_error" in doc) == nvml_missing()
    assert {c["service"] for c in doc["containers"]} == {s.name for s in demo.SERVICES}
    for c in doc["containers"]:
        assert CONTAINER_KEYS <= set(c)
        assert (c["state"], c["restart_count"], c["oom_killed"]) == ("running", 0, False)
        assert c["ports"] and "->" in c["ports"][0]
    assert {p["service"] for p in doc["probes"]} == {s.name for s in demo.SERVICES}
    for p in doc["probes"]:
        assert PROBE_KEYS <= set(p)
        assert p["outcome"] == "ok" and p["status"] == 200 and p["latency_ms"] >= 0
    assert {p["service"]: p["auth"] for p in doc["probes"]} == {
        "comfyui-qwen": "enforced", "flux-1-dev": "enforced", "stable-diffusion-35": None,
        "orchestrator": None}
    # the demo's files are not spotless on purpose: one token copy has drifted
    worse = [(f["code"], f["severity"]) for f in doc["findings"] if f["severity"] != "info"]
    assert ("token_drift", "warning") in worse
    assert {sev for _, sev in worse} == {"warning"}
    assert (code, doc["status"]) == (1, "warning")


def test_table_output_and_warning_status(demo_stack, tmp_path):
    config, _ = demo_stack
    code, out, err, _ = run_check(config, cwd=tmp_path)
    assert code == 1 and err == ""
    for svc in demo.SERVICES:
        assert svc.name in out
    assert "token_drift" in out and "tokens: NOT consistent" in out
    assert out.rstrip().endswith("status: WARNING")


def test_no_secret_in_check_output(demo_stack, tmp_path):
    """Neither a hash, nor the raw token, nor any 8-character piece of one, in stdout or
    stderr of the table or the JSON."""
    config, secrets_ = demo_stack
    for args in ((), ("--json",)):
        _, out, err, _ = run_check(config, *args, cwd=tmp_path)
        assert "fp:" in out  # fingerprints are how values are told apart
        leaks = secrets_.leaks(out + err)  # not inline: a failure must not echo the text
        assert not leaks, f"`check {' '.join(args)}`"


def test_healthy_stack_exits_0(sim_container, tmp_path):
    a = make_hash()
    stack = Stack(tmp_path, a)
    start_sim(sim_container, stack, "comfyui-qwen", hash_=a)
    start_sim(sim_container, stack, "orchestrator", kind="orchestrator")
    config = stack.write()
    code, out, err, _ = run_check(config, cwd=tmp_path)
    assert (code, err) == (0, ""), out
    assert out.rstrip().endswith("status: OK")
    code, doc, _ = check_json(config, tmp_path)
    assert (code, doc["status"]) == (0, "ok")
    assert all(f["severity"] == "info" for f in doc["findings"])


def test_critical_exits_2(sim_container, tmp_path):
    a = make_hash()
    stack = Stack(tmp_path, a)
    start_sim(sim_container, stack, "comfyui-qwen", hash_=a, scenario="login_missing")
    code, doc, _ = check_json(stack.write(), tmp_path)
    assert (code, doc["status"]) == (2, "critical")
    assert [(f["code"], f["service"]) for f in doc["findings"]
            if f["severity"] == "critical"] == [("login_not_loaded", "comfyui-qwen")]


def test_unreachable_engine_exits_3(tmp_path):
    stack = Stack(tmp_path, make_hash())
    stack.docker = {"host": f"unix://{tmp_path}/no-engine.sock", "timeout": 2}
    stack.service("comfyui-qwen", free_port(), "gt-never-created")
    config = stack.write()
    code, doc, _ = check_json(config, tmp_path)
    assert (code, doc["status"]) == (3, "unknown")
    assert doc["docker"]["reachable"] is False
    assert [(c["service"], c["state"]) for c in doc["containers"]] == [
        ("comfyui-qwen", "unknown")]
    assert [f["code"] for f in doc["findings"] if f["severity"] != "info"] == [
        "docker_unreachable"]
    code, out, err, _ = run_check(config, cwd=tmp_path)
    assert code == 3 and "Docker engine unreachable" in out and "Traceback" not in err


@pytest.mark.parametrize("text", [
    "[[services]]\nname = \"x\"\nurl = \"http://127.0.0.1:1\"\nkind = \"comfyui\n",
    "[probes]\nread_timeout = \"fast\"\n",
])
def test_bad_config_exits_3_with_a_message(tmp_path, text):
    config = tmp_path / "genai-tui.toml"
    config.write_text(text)
    for args in ((), ("--json",)):
        code, out, err, _ = run_check(config, *args, cwd=tmp_path)
        assert code == 3 and out == ""
        assert err.startswith("genai-tui: bad config: ") and str(config) in err
        assert "Traceback" not in err and len(err.splitlines()) == 1


def test_hanging_service_bounded_by_probe_timeouts(sim_container, tmp_path):
    a = make_hash()
    stack = Stack(tmp_path, a)
    stack.sections["probes"] = {"connect_timeout": 1.0, "read_timeout": 2.0}
    # past the start grace at once: a port that never answers is an alarm, not "starting"
    stack.sections["docker"] = {"start_grace": 0.01}
    start_sim(sim_container, stack, "comfyui-qwen", hash_=a)
    c = start_sim(sim_container, stack, "flux-1-dev", hash_=a, scenario="hang", wait=False)
    wait_log(c, "To see the GUI go to")
    code, out, err, seconds = run_check(stack.write(), "--json", cwd=tmp_path)
    bound = 1.0 + 2.0 + 5.0
    print(f"\ncheck --json with one hanging service: {seconds:.2f} s "
          f"(probe deadline 3.0 s, bound {bound:.1f} s)")
    assert seconds < bound
    doc = json.loads(out)
    outcomes = {p["service"]: p["outcome"] for p in doc["probes"]}
    assert outcomes == {"comfyui-qwen": "ok", "flux-1-dev": "timeout"}
    assert code == 2 and "Traceback" not in err
