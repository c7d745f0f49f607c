"""The bench's stack on the local engine: the four simulated services (as `genai-tui demo`
runs them), idle containers, a gated log-flood container, and a config for genai-tui.

Every name carries a random tag and every container the owner label, so several benches
and test runs can share one engine and cleanup removes exactly what this run created.
Service names carry the tag too: genai-tui also matches containers by their compose
service label, and other test runs on the same engine use the reference names.
"""

from __future__ import annotations

import secrets
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import docker.errors

from genai_tui import demo, simdocker

FLOOD_RATE = 20_000
FLOOD_PORT = 8000


#: ports other test jobs on this host own: the bench never publishes one of these
RESERVED_PORTS = range(23000, 24000)


def bench_port() -> int:
    """A free loopback port outside RESERVED_PORTS."""
    while True:
        port = simdocker.free_port()
        if port not in RESERVED_PORTS:
            return port


class BenchStack:
    """Creates and removes everything the bench runs on the engine."""

    def __init__(self, root: Path, tag: str | None = None) -> None:
        self.root = root
        self.tag = tag or secrets.token_hex(2)
        self.owner = f"genai-tui-bench-{self.tag}"
        self.prefix = f"bench-{self.tag}-"
        self.network = f"bench-{self.tag}-net"
        self.client = docker.from_env(timeout=120)
        self.gate_dir = root / "gate"
        self.config_path: Path | None = None
        #: display (config) name -> container name, for the four stack services
        self.services: dict[str, str] = {}
        self.flood_service = f"log-flood-{self.tag}"
        self.flood_container = f"{self.prefix}log-flood"
        self.flood_port = bench_port()
        self.idle: list[str] = []
        self._flood_round = 0
        self._gate: Path | None = None

    # ------------------------------------------------------------------ stack
    def service_name(self, base: str) -> str:
        return f"{base}-{self.tag}"

    def start(self) -> Path:
        """The four services (healthchecks, restart policy and network as in the demo)."""
        sd = simdocker
        sd.ensure_image(self.client)
        self.gate_dir.mkdir(parents=True, exist_ok=True)
        self.gate_dir.chmod(0o755)
        ports = {s.name: bench_port() for s in demo.SERVICES}
        config = demo.write_stack_files(self.root, ports, container_prefix=self.prefix)
        text = config.read_text()
        lines = text.splitlines()
        for svc in demo.SERVICES:
            unique = self.service_name(svc.name)
            for i, line in enumerate(lines):
                if line == f'name = "{svc.name}"' or line.startswith("restart_after_unify"):
                    lines[i] = line.replace(f'"{svc.name}"', f'"{unique}"')
            self.services[unique] = f"{self.prefix}{svc.name}"
        text = "\n".join(lines) + "\n"
        # Manual stop/start cycles are the event-latency test, not a crash loop.
        text = text.replace("resync_interval = 60", "resync_interval = 60\n"
                            "# the bench stops and starts a service 10 times on purpose\n"
                            "restart_loop_count = 1000")
        text += "\n".join([
            "",
            "# the bench's log-flood container (20k lines/s for 30 s once its gate opens)",
            "[[services]]",
            f'name = "{self.flood_service}"',
            f'container = "{self.flood_container}"',
            f'url = "http://127.0.0.1:{self.flood_port}"',
            'kind = "http"',
            'health_path = "/health"',
            "",
        ])
        config.write_text(text)
        self.config_path = config

        demo.start_services(self.client, self.root, ports, prefix=self.prefix,
                            network=self.network, owner=self.owner,
                            compose_project=f"bench-{self.tag}",
                            compose_service=self.service_name)
        return config

    def container(self, name: str):
        return self.client.containers.get(name)

    def wait_running(self, names: list[str], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        pending = set(names)
        while pending and time.monotonic() < deadline:
            for item in self.client.api.containers(
                    all=True, filters={"label": f"{simdocker.OWNER_LABEL}={self.owner}"}):
                for n in item.get("Names") or []:
                    if n.lstrip("/") in pending and item.get("State") == "running":
                        pending.discard(n.lstrip("/"))
            if pending:
                time.sleep(0.3)
        if pending:
            raise RuntimeError(f"containers not running after {timeout:.0f}s: "
                               + ", ".join(sorted(pending)))

    # ------------------------------------------------------------------ idle containers
    def add_idle(self, count: int, workers: int = 6) -> float:
        """`count` more idle containers (`sleep infinity`), created in parallel; seconds."""
        image = simdocker.ensure_image(self.client)
        mounts = simdocker.host_python_mounts()
        first = len(self.idle)
        names = [f"{self.prefix}idle-{i:03d}" for i in range(first, first + count)]

        def make(name: str) -> str:
            self.client.containers.run(
                image, ["/bin/sleep", "infinity"], name=name, detach=True,
                labels={simdocker.OWNER_LABEL: self.owner, "io.genai-tui.bench": "idle"},
                volumes=mounts, stop_signal="SIGKILL",
                # the bench's own network: the engine's default bridge may be missing
                # (a rootless or docker0-less engine), and it changes no figure
                network=self.network)
            return name

        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            self.idle += list(pool.map(make, names))
        return time.monotonic() - t0

    def remove_idle(self, keep: int, workers: int = 6) -> float:
        """Remove idle containers beyond the first `keep`; seconds taken."""
        extra, self.idle = self.idle[keep:], self.idle[:keep]
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(self._remove, extra))
        return time.monotonic() - t0

    def _remove(self, name: str) -> None:
        try:
            self.client.api.remove_container(name, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError:
            pass

    # ------------------------------------------------------------------ log flood
    def new_flood(self, duration: float, rate: int = FLOOD_RATE) -> str:
        """A fresh flood container that waits for its gate file, then writes `rate`
        lines/s for `duration` s (the simulator's log_flood scenario)."""
        self._remove(self.flood_container)
        self._flood_round += 1
        gate = self.gate_dir / f"go-{self._flood_round}"
        gate.unlink(missing_ok=True)
        self._gate = gate
        sim = [simdocker.python_in_container(), "-m", "genai_tui.sim", "--kind", "stub",
               "--port", str(FLOOD_PORT), "--name", self.flood_service,
               "--scenario", "log_flood", "--lines-per-second", str(rate),
               "--duration", str(duration)]
        script = (f"echo 'bench: log-flood waiting for its gate'; "
                  f"while [ ! -e /gate/{gate.name} ]; do sleep 0.1; done; "
                  f"echo 'bench: gate open, flooding'; exec {shlex.join(sim)}")
        volumes = simdocker.host_python_mounts()
        volumes[str(self.gate_dir)] = {"bind": "/gate", "mode": "ro"}
        self.client.containers.run(
            simdocker.ensure_image(self.client), ["/bin/sh", "-c", script],
            name=self.flood_container, detach=True, volumes=volumes,
            labels={simdocker.OWNER_LABEL: self.owner, "io.genai-tui.bench": "flood"},
            environment={"PYTHONPATH": simdocker.PKG_MOUNT, "PYTHONUNBUFFERED": "1",
                         "PYTHONDONTWRITEBYTECODE": "1"},
            ports={f"{FLOOD_PORT}/tcp": ("127.0.0.1", self.flood_port)},
            network=self.network, stop_signal="SIGKILL")
        return self.flood_container

    def open_gate(self) -> float:
        """Let the flood begin; returns time.time()."""
        assert self._gate is not None
        t = time.time()
        self._gate.touch()
        return t

    # ------------------------------------------------------------------ cleanup
    def close(self) -> int:
        """Remove every container and the network this run created."""
        names = []
        try:
            for item in self.client.api.containers(
                    all=True, filters={"label": f"{simdocker.OWNER_LABEL}={self.owner}"}):
                names.append(item["Id"])
        except docker.errors.DockerException:
            pass
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(self._remove, names))
        try:
            self.client.networks.get(self.network).remove()
        except docker.errors.DockerException:
            pass
        self.client.close()
        return len(names)
