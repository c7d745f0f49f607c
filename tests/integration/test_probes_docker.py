"""Probes against simulator containers on published ports (real Docker, no mocks).

A published port goes through docker-proxy (the userland proxy, Docker's default): it
accepts the TCP connection itself and closes it when nothing listens inside the container.
So from the host, `no_listen` and `wrong_port` look like an empty reply, not a refusal; only
a stopped container (no proxy any more) is really refused. The local-process versions, where
refused is real, are in tests/unit/test_probes.py.
"""

from __future__ import annotations

import time

import psutil
import pytest

from genai_tui.config import ProbeConfig, ServiceConfig
from genai_tui.sources.probes import Prober
from tests.conftest import host_port, make_hash, wait_port

FAST = ProbeConfig(connect_timeout=1.0, read_timeout=1.5)


def wait_log(container, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in container.logs().decode("utf-8", "replace"):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{text!r} not in the logs of {container.name} after {timeout}s")


def proxied(port: int) -> bool:
    """Whether docker-proxy (userland proxy) serves this host port."""
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            cmd = proc.info["cmdline"] or []
        except (psutil.Error, OSError):
            continue
        if proc.info["name"] == "docker-proxy" and str(port) in cmd:
            return True
    return False


async def probe_comfy(container, token: str | None):
    port = host_port(container)
    svc = ServiceConfig(container.name, f"http://127.0.0.1:{port}", "comfyui", auth=True)
    async with Prober(FAST) as p:
        return await p.probe(svc, token)


async def test_healthy_is_ok_and_enforced(sim_container, login_dir):
    h = make_hash()
    c = sim_container(login_dir=login_dir(h))
    wait_port(host_port(c))
    r = await probe_comfy(c, h)
    assert (r.outcome, r.auth, r.status) == ("ok", "enforced", 200)
    assert r.queue_remaining == 0 and r.vram_total_mb and r.vram_free_mb is not None


async def test_wrong_hash_on_disk_is_rejected(sim_container, login_dir):
    c = sim_container(login_dir=login_dir(make_hash()))
    wait_port(host_port(c))
    r = await probe_comfy(c, make_hash())
    assert (r.outcome, r.auth, r.status) == ("ok", "rejected", 401)


async def test_login_missing_is_disabled(sim_container, login_dir):
    h = make_hash()
    c = sim_container(scenario="login_missing", login_dir=login_dir(h))
    wait_log(c, "To see the GUI go to")
    r = await probe_comfy(c, h)
    assert (r.outcome, r.auth, r.status) == ("ok", "disabled", 200)
    assert r.login_loaded is False


async def test_no_password_is_reported(sim_container, login_dir):
    c = sim_container(scenario="no_password", login_dir=login_dir(None))
    wait_log(c, "To see the GUI go to")
    r = await probe_comfy(c, make_hash())
    assert (r.outcome, r.auth) == ("ok", "no_password")


async def test_hang_is_timeout(sim_container, login_dir):
    c = sim_container(scenario="hang", login_dir=login_dir(make_hash()))
    wait_log(c, "To see the GUI go to")
    r = await probe_comfy(c, make_hash())
    assert (r.outcome, r.auth, r.status) == ("timeout", "unknown", None)
    assert r.latency_ms is not None and r.latency_ms >= FAST.read_timeout * 1000 * 0.9


async def test_empty_reply(sim_container, login_dir):
    c = sim_container(scenario="empty_reply", login_dir=login_dir(make_hash()))
    wait_log(c, "To see the GUI go to")
    r = await probe_comfy(c, make_hash())
    assert (r.outcome, r.auth) == ("empty_reply", "unknown")


async def test_not_http(sim_container, login_dir):
    c = sim_container(scenario="not_http", login_dir=login_dir(make_hash()))
    wait_log(c, "To see the GUI go to")
    r = await probe_comfy(c, make_hash())
    assert (r.outcome, r.auth) == ("not_http", "unknown")


@pytest.mark.parametrize("scenario, ready", [
    ("no_listen", "Starting server"),
    # the process listens on 8189 inside the container, the published port is 8188
    ("wrong_port", "To see the GUI go to"),
])
async def test_published_port_with_nothing_listening_inside(sim_container, login_dir,
                                                            scenario, ready):
    """Behind docker-proxy the connection is accepted, then closed: `empty_reply`. Without
    the userland proxy (iptables only) the container's RST would make it `refused`."""
    c = sim_container(scenario=scenario, login_dir=login_dir(make_hash()))
    wait_log(c, ready)
    time.sleep(0.3)
    c.reload()
    assert c.status == "running"
    r = await probe_comfy(c, make_hash())
    expected = "empty_reply" if proxied(host_port(c)) else "refused"
    assert (r.outcome, r.auth, r.status) == (expected, "unknown", None)


async def test_stopped_container_is_refused(sim_container, login_dir):
    h = make_hash()
    c = sim_container(login_dir=login_dir(h))
    port = host_port(c)
    wait_port(port)
    assert (await probe_comfy(c, h)).auth == "enforced"
    c.stop(timeout=5)
    svc = ServiceConfig(c.name, f"http://127.0.0.1:{port}", "comfyui", auth=True)
    async with Prober(FAST) as p:
        r = await p.probe(svc, h)
    assert (r.outcome, r.auth, r.status) == ("refused", "unknown", None)


async def test_orchestrator_container_health(sim_container):
    c = sim_container(kind="orchestrator", container_port=8090)
    port = host_port(c, 8090)
    wait_port(port)
    svc = ServiceConfig("orchestrator", f"http://127.0.0.1:{port}", "orchestrator",
                        health_path="/health")
    async with Prober(FAST) as p:
        r = await p.probe(svc, make_hash())
        assert (r.outcome, r.auth, r.status, r.health) == ("ok", None, 200, "healthy")
        status = await p.probe(ServiceConfig("o", svc.url, "orchestrator",
                                             health_path="/status"), None)
    # the reference orchestrator probes localhost inside its own container: all unhealthy
    # or unknown, which the probe reports as it is
    assert status.outcome == "ok" and status.health == "running"
    assert status.backends and "healthy" not in status.backends.values()
