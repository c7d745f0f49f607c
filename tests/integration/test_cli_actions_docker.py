"""`genai-tui restart|unpause|jobs` (issue #16) as the fleet runs them over SSH: a real
subprocess of the CLI against a simulator container on the real engine. A restart gives
the container a new StartedAt, `--readonly` before or after the subcommand leaves it
alone, an unpause resumes a paused container, `jobs interrupt` stops the running job of
the server in the container; `--json` is one document, and no piece of the hash shows."""

from __future__ import annotations

import http.client
import json
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from genai_tui import simdocker
from tests.conftest import TEST_OWNER, wait_for, wait_port
from tests.unit.test_cli_actions import config_for
from tests.unit.test_sim_jobs import GRAPH, HASH

pytestmark = pytest.mark.docker


def task_port() -> int:
    """A free port of this task's range (25000-25999)."""
    for port in random.sample(range(25000, 26000), 1000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 25000-25999")


class Sim:
    def __init__(self, container: Any, port: int, config: Path) -> None:
        self.container = container
        self.port = port
        self.config = config

    def started_at(self) -> str:
        self.container.reload()
        return str(self.container.attrs["State"]["StartedAt"])

    def status(self) -> str:
        self.container.reload()
        return str(self.container.status)

    def call(self, path: str, body: Any = None) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("POST" if body is not None else "GET", path,
                         None if body is None else json.dumps(body).encode(),
                         {"Authorization": f"Bearer {HASH}"})
            resp = conn.getresponse()
            raw = resp.read()
            assert resp.status == 200, (path, resp.status)
        finally:
            conn.close()
        return json.loads(raw) if raw else None

    def queue(self) -> tuple[list[str], list[str]]:
        doc = self.call("/queue")
        return ([i[1] for i in doc["queue_running"]], [i[1] for i in doc["queue_pending"]])

    def submit(self, sim: dict[str, Any]) -> str:
        return str(self.call("/prompt", {"prompt": GRAPH, "extra_data": {"sim": sim}})[
            "prompt_id"])

    def cli(self, *args: str) -> tuple[int, str, str]:
        """The CLI as a real process, as `ssh host genai-tui …` runs it."""
        proc = subprocess.run([sys.executable, "-m", "genai_tui", *args], text=True,
                              capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
        both = proc.stdout + proc.stderr
        assert not any(HASH[i:i + 8] in both for i in range(7, len(HASH) - 7))
        assert "Traceback" not in both
        return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def sim(docker_client, tmp_path_factory) -> Iterator[Sim]:
    root = tmp_path_factory.mktemp("gtact")
    login = root / "login"
    login.mkdir()
    login.chmod(0o777)
    (login / "PASSWORD").write_text(f"{HASH}\nadmin")
    port = task_port()
    name = simdocker.unique("gtact")
    args = ["--name", "flux", "--job-seconds", "1.0"]
    try:
        c = simdocker.run_sim(docker_client, name=name, owner=TEST_OWNER, host_port=port,
                              login_dir=login, extra_args=args)
    except docker.errors.APIError as exc:
        # an engine whose default bridge is unusable (no docker0): the host's network,
        # the sim bound to loopback on the same port, is as real for these tests
        try:  # created but not started: ours, by its exact name
            docker_client.containers.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass
        if "bridge" not in str(exc):
            raise
        c = simdocker.run_sim(docker_client, name=name, owner=TEST_OWNER, publish=False,
                              network="host", container_port=port, login_dir=login,
                              extra_args=[*args, "--host", "127.0.0.1"])
    try:
        wait_port(port)
        yield Sim(c, port, config_for(root, f"http://127.0.0.1:{port}", container=name))
    finally:
        try:
            c.remove(force=True)
        except Exception:
            pass


def test_restart_gives_the_container_a_new_start(sim) -> None:
    before = sim.started_at()
    code, out, err = sim.cli("--config", str(sim.config), "restart", "flux", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["action"] == "restart" and doc["ok"] is True
    assert [(r["service"], r["ok"]) for r in doc["results"]] == [("flux", True)]
    assert set(doc["results"][0]) == {"service", "ok", "detail"}
    assert sim.started_at() != before and sim.status() == "running"
    wait_port(sim.port)


@pytest.mark.parametrize("where", ["before", "after"])
def test_readonly_restart_refuses_and_the_container_is_untouched(sim, where) -> None:
    before = sim.started_at()
    args = (["--readonly", "--config", str(sim.config), "restart", "flux"]
            if where == "before" else ["restart", "flux", "--config", str(sim.config),
                                       "--readonly"])
    code, out, err = sim.cli(*args)
    assert code == 4 and out == ""
    assert err == "genai-tui: read-only mode: restart is disabled\n"
    assert sim.started_at() == before


def test_unknown_service_names_the_configured_ones(sim) -> None:
    before = sim.started_at()
    code, out, err = sim.cli("--config", str(sim.config), "restart", "flux", "fluxx")
    assert code == 3 and out == ""
    assert err == "genai-tui: unknown service 'fluxx' (configured: flux, qwen)\n"
    assert sim.started_at() == before  # not even the known one was restarted


def test_unpause_resumes_a_paused_container(sim) -> None:
    sim.container.pause()
    try:
        assert sim.status() == "paused"
        code, out, err = sim.cli("--config", str(sim.config), "unpause", "flux")
        assert code == 0, err
        assert out.strip() == "flux: ok (unpaused)"
        assert sim.status() == "running"
    finally:
        if sim.status() == "paused":
            sim.container.unpause()


def test_jobs_interrupt_stops_the_running_job(sim) -> None:
    wait_port(sim.port)
    sim.call("/queue", {"clear": True})
    sim.call("/interrupt", {})
    wait_for(lambda: sim.queue() == ([], []), 15)
    stuck = sim.submit({"stuck": True})
    waiting = sim.submit({"seconds": 30})
    wait_for(lambda: sim.queue()[0] == [stuck], 15)
    code, out, _ = sim.cli("--config", str(sim.config), "jobs", "status", "flux", "--json")
    assert code == 0
    assert json.loads(out)["results"][0]["jobs"]["running"]["prompt_id"] == stuck
    code, out, err = sim.cli("--config", str(sim.config), "jobs", "interrupt", "flux",
                             "--json")
    assert code == 0, err
    assert json.loads(out) == {"action": "interrupt", "ok": True, "results": [
        {"service": "flux", "ok": True,
         "detail": f"flux: interrupt sent for job {stuck[:8]}"}]}
    wait_for(lambda: sim.queue()[0] == [waiting], 15)
    sim.call("/queue", {"clear": True})
    sim.call("/interrupt", {})
