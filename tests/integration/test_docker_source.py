"""The docker source against real containers: matching, state changes from the events
stream, restarts, removal, restart loops, OOM kills and an unreachable engine."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from genai_tui import config as configmod
from genai_tui.config import Config, DockerConfig, ServiceConfig
from genai_tui.model import ContainerInfo, DockerStatus
from genai_tui.sources.docker import ContainerMonitor, DockerSource
from tests.conftest import host_port, wait_for, wait_port


def make_config(*services: ServiceConfig, **docker_kw) -> Config:
    return Config(services=tuple(services), docker=DockerConfig(**docker_kw))


class Recorder:
    """Collects what the monitor reports, with the time each state was first seen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.updates: list[tuple[float, DockerStatus, dict[str, ContainerInfo]]] = []

    def __call__(self, status: DockerStatus, infos: list[ContainerInfo]) -> None:
        with self.lock:
            self.updates.append((time.monotonic(), status, {i.service: i for i in infos}))

    def latest(self, service: str) -> ContainerInfo | None:
        with self.lock:
            for _, _, infos in reversed(self.updates):
                if service in infos:
                    return infos[service]
        return None

    def status(self) -> DockerStatus | None:
        with self.lock:
            return self.updates[-1][1] if self.updates else None

    def wait_state(self, service: str, pred, timeout: float = 20.0) -> ContainerInfo:
        return wait_for(lambda: (i := self.latest(service)) is not None and pred(i) and i,
                        timeout)


def test_lifecycle_start_stop_kill_restart_remove(sim_container, docker_client, monitor_for):
    c = sim_container()
    name = c.name
    svc = ServiceConfig("qwen", "http://127.0.0.1:1", container=name)
    ghost = ServiceConfig("ghost", "http://127.0.0.1:2", container=name + "-nope")
    monitor, rec = monitor_for(make_config(svc, ghost))

    info = rec.wait_state("qwen", lambda i: i.state == "running")
    assert info.id == c.id and info.started_at is not None
    assert info.ports and info.ports[0].container_port == 8188 and info.ports[0].host_port
    assert rec.wait_state("ghost", lambda i: i.missing).container == name + "-nope"

    wait_port(host_port(c))  # the simulator's SIGTERM handler is in place once it serves
    c.stop(timeout=5)
    info = rec.wait_state("qwen", lambda i: i.state == "exited")
    assert info.exit_code == 0  # the simulator exits cleanly on SIGTERM
    assert not info.oom_killed

    c.start()
    rec.wait_state("qwen", lambda i: i.state == "running")

    c.kill()
    info = rec.wait_state("qwen", lambda i: i.state == "exited")
    assert info.exit_code == 137 and not info.oom_killed

    c.start()
    rec.wait_state("qwen", lambda i: i.state == "running")
    ok, detail = monitor.source.restart(svc)
    assert ok, detail
    info = rec.wait_state("qwen", lambda i: i.running)

    c.remove(force=True)
    rec.wait_state("qwen", lambda i: i.missing)


def test_new_container_with_the_same_name_is_picked_up(sim_container, monitor_for):
    c = sim_container()
    svc = ServiceConfig("qwen", "http://127.0.0.1:1", container=c.name)
    _, rec = monitor_for(make_config(svc))
    first = rec.wait_state("qwen", lambda i: i.running)
    c.remove(force=True)
    rec.wait_state("qwen", lambda i: i.missing)
    c2 = sim_container(name=c.name)
    info = rec.wait_state("qwen", lambda i: i.running and i.id == c2.id)
    assert info.id != first.id


def test_compose_service_label_matches(sim_container, monitor_for):
    c = sim_container(compose_project="gtproj", compose_service="flux")
    svc = ServiceConfig("flux-1-dev", "http://127.0.0.1:1", container="flux")
    _, rec = monitor_for(make_config(svc))
    info = rec.wait_state("flux-1-dev", lambda i: i.running)
    assert info.id == c.id and info.container == c.name


def test_restart_loop_detected(sim_container, monitor_for):
    c = sim_container(scenario="crash", extra_args=["--delay", "0.3"],
                      restart_policy={"Name": "always"})
    svc = ServiceConfig("crashy", "http://127.0.0.1:1", container=c.name)
    _, rec = monitor_for(make_config(svc, restart_loop_count=3, restart_loop_window=60))
    info = rec.wait_state("crashy", lambda i: i.looping, timeout=40)
    assert info.restart_count >= 1
    assert info.exit_code == 1 or info.state in ("restarting", "running")


def test_oom_kill_flagged(sim_container, monitor_for):
    c = sim_container(scenario="oom", mem_limit="48m")
    svc = ServiceConfig("hungry", "http://127.0.0.1:1", container=c.name)
    _, rec = monitor_for(make_config(svc))
    info = rec.wait_state("hungry", lambda i: i.state == "exited", timeout=60)
    assert info.oom_killed and info.exit_code == 137


def test_healthcheck_state_reported(sim_container, monitor_for):
    from genai_tui import simdocker

    c = sim_container(healthcheck={"test": simdocker.health_cmd("/system_stats"),
                                   "interval": 500_000_000, "timeout": 3_000_000_000,
                                   "retries": 1, "start_period": 0})
    svc = ServiceConfig("flux", "http://127.0.0.1:1", container=c.name)
    _, rec = monitor_for(make_config(svc))
    info = rec.wait_state("flux", lambda i: i.health == "unhealthy", timeout=30)
    assert info.running and info.failing_streak >= 1


def test_unreachable_engine_reports_reason_and_recovers(tmp_path, docker_client):
    """Point the monitor at a socket path that does not exist yet, then make it appear
    (a socat-free relay: a Unix socket forwarding to the real engine)."""
    sock = tmp_path / "docker.sock"
    svc = ServiceConfig("x", "http://127.0.0.1:1", container="does-not-exist-gt")
    rec = Recorder()
    m = ContainerMonitor(make_config(svc, host=f"unix://{sock}"), rec)
    m.start()
    relay = None
    try:
        status = wait_for(lambda: (s := rec.status()) is not None and not s.reachable and s)
        assert status.error.startswith("Docker engine unreachable: ")
        assert "Traceback" not in status.error and len(status.error) < 250
        relay = UnixRelay(sock, Path("/var/run/docker.sock"))
        status = wait_for(lambda: (s := rec.status()) is not None and s.reachable and s,
                          timeout=40)
        assert rec.latest("x").missing
    finally:
        t0 = time.monotonic()
        m.close()
        assert time.monotonic() - t0 < 3
        if relay:
            relay.close()


def test_close_returns_promptly_while_the_stream_is_idle(docker_client, monitor_for):
    svc = ServiceConfig("x", "http://127.0.0.1:1", container="nothing-here-gt")
    rec = Recorder()
    m = ContainerMonitor(make_config(svc), rec)
    m.start()
    wait_for(lambda: rec.status() is not None and rec.status().reachable)
    t0 = time.monotonic()
    m.close()
    assert time.monotonic() - t0 < 2
    assert not any(t.is_alive() for t in m._threads)


def test_docker_source_one_shot_and_missing(sim_container):
    c = sim_container()
    cfg = make_config(ServiceConfig("a", "http://127.0.0.1:1", container=c.name),
                      ServiceConfig("b", "http://127.0.0.1:1", container="gt-missing-x"))
    src = DockerSource(cfg)
    try:
        infos = {i.service: i for i in src.list_stack()}
        assert infos["a"].running and infos["a"].image == "genai-tui-sim:local"
        assert infos["b"].missing
        ok, detail = src.restart(cfg.services[1])
        assert not ok and "gt-missing-x" in detail
    finally:
        src.close()


def test_config_docker_host_is_used(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[docker]\nhost = "unix:///nonexistent/docker.sock"\n')
    cfg = configmod.load_file(p, env={})
    status = DockerSource(cfg).status()
    assert not status.reachable and "unreachable" in status.error


class UnixRelay:
    """Forward a Unix socket to another, so a test can make an engine 'come back'."""

    def __init__(self, path: Path, target: Path) -> None:
        import socket

        self.target = str(target)
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen(16)
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a, b) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(2)
                except OSError:
                    pass

    def close(self) -> None:
        self.closed = True
        self.server.close()


def test_engine_client_error_is_not_a_traceback():
    cfg = make_config(ServiceConfig("a", "http://127.0.0.1:1"), host="tcp://127.0.0.1:1")
    status = DockerSource(cfg).status()
    assert not status.reachable
    assert "refused" in status.error.lower()


def test_manual_starts_are_not_a_restart_loop(sim_container, monitor_for):
    """An admin stopping and starting a container by hand is not a crash loop."""
    c = sim_container()
    svc = ServiceConfig("qwen", "http://127.0.0.1:1", container=c.name)
    _, rec = monitor_for(make_config(svc, restart_loop_count=2, restart_loop_window=120))
    rec.wait_state("qwen", lambda i: i.running)
    for _ in range(3):
        wait_port(host_port(c))
        c.stop(timeout=5)
        rec.wait_state("qwen", lambda i: i.state == "exited")
        c.start()
        rec.wait_state("qwen", lambda i: i.running)
    assert not rec.latest("qwen").looping


def test_stop_shows_exited_at_once_with_the_exit_code(sim_container, monitor_for):
    c = sim_container()
    svc = ServiceConfig("qwen", "http://127.0.0.1:1", container=c.name)
    _, rec = monitor_for(make_config(svc))
    rec.wait_state("qwen", lambda i: i.running)
    c.kill(signal="SIGKILL")
    info = rec.wait_state("qwen", lambda i: i.state == "exited")
    assert info.exit_code == 137


def test_an_exact_name_beats_a_compose_label_lookalike(sim_container, monitor_for):
    exact = sim_container()
    svc = ServiceConfig("qwen", "http://127.0.0.1:1", container=exact.name)
    _, rec = monitor_for(make_config(svc))
    rec.wait_state("qwen", lambda i: i.running and i.id == exact.id)
    other = sim_container(compose_project="someone-else", compose_service=exact.name)
    other.stop(timeout=1)
    other.start()
    time.sleep(1.5)
    info = rec.latest("qwen")
    assert info.id == exact.id and info.running


def test_the_light_client_reads_what_docker_py_reads(sim_container, docker_client):
    """The standard-library client (`check` and the monitor's reads on a local socket)
    and docker-py see the same engine: the same listing, inspect and log text, and a
    removed container is "not found" for both."""
    from genai_tui.sources.docker_light import LightClient, is_not_found, socket_path

    c = sim_container()
    wait_port(host_port(c))
    path = socket_path(DockerConfig())
    assert path is not None, "the tests run on the default local socket"
    light = LightClient(path, timeout=10)
    mine = {x["Id"]: x["State"] for x in light.containers(all=True)}
    theirs = {x["Id"]: x["State"] for x in docker_client.api.containers(all=True)}
    assert mine[c.id] == theirs[c.id] == "running"
    assert light.inspect_container(c.id)["Config"] == docker_client.api.inspect_container(
        c.id)["Config"]
    assert light.version()["ApiVersion"] == docker_client.version()["ApiVersion"]
    chunks = light.logs(c.id, stream=True, follow=False)
    try:
        text = b"".join(chunks)
    finally:
        chunks.close()
    expected = docker_client.api.logs(c.id, stdout=True, stderr=True, stream=False)
    assert text and text == expected[:len(text)]  # the same bytes, no frame headers
    c.remove(force=True)
    for client in (light, docker_client.api):
        try:
            client.inspect_container(c.id)
        except Exception as exc:  # noqa: BLE001 - both clients' own error types
            assert is_not_found(exc), exc
        else:
            raise AssertionError("a removed container was found")


def test_check_on_a_local_engine_loads_neither_docker_py_nor_httpx(sim_container, tmp_path):
    """`check`, run every minute by a monitoring plugin, reads the engine and probes the
    services with the standard library (docker-py, requests and httpx cost ~0.3 s CPU and
    several MB to import), and still sees the container and its answer."""
    import subprocess
    import sys

    c = sim_container()
    wait_port(host_port(c))
    toml = tmp_path / "genai-tui.toml"
    toml.write_text(f'[[services]]\nname = "qwen"\nurl = "http://127.0.0.1:{host_port(c)}"\n'
                    f'container = "{c.name}"\n')
    script = ("import json, sys\nfrom genai_tui.cli import main\n"
              "try:\n    main(['check', '--json', '--config', sys.argv[1]])\n"
              "except SystemExit:\n    pass\n"
              "print('LOADED', json.dumps(sorted(m for m in ('docker', 'requests', 'urllib3',"
              " 'httpx', 'httpcore')"
              " if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", script, str(toml)], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "DOCKER_HOST": ""})
    doc = json.loads(out.stdout[:out.stdout.rindex("LOADED")])
    assert [x["state"] for x in doc["containers"]] == ["running"], out.stdout
    assert [(p["outcome"], p["auth"]) for p in doc["probes"]] == [("ok", "no_password")]
    assert out.stdout.rsplit("LOADED", 1)[1].strip() == "[]"
