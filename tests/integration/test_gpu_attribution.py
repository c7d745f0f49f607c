"""GPU process -> container/service attribution, for real, without a GPU.

Real containers run the simulator; their processes' host PIDs (what NVML reports) are
taken from Docker and mapped back through the real /proc. Only NVML itself is faked, at
the pynvml function boundary, so the whole path NVML PID -> /proc -> cgroup -> container
-> service is exercised as on a GPU host.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from genai_tui import simdocker
from genai_tui.model import ContainerInfo, GpuProcess
from genai_tui.sources.gpu import NvmlSource, attribute, parse_container_id
from tests.unit.fake_nvml import FakeNvml, FakeProc

pytestmark = pytest.mark.docker

PROJECT = "gtt-gpu"


def _running(container, timeout: float = 30.0) -> int:
    """Wait for a live main process and return its host PID."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        state = container.attrs["State"]
        if state.get("Running") and state.get("Pid"):
            return int(state["Pid"])
        if state.get("Status") in ("exited", "dead"):
            logs = container.logs(tail=20).decode(errors="replace")
            raise AssertionError(f"{container.name} exited: {logs}")
        time.sleep(0.1)
    raise AssertionError(f"{container.name} not running within {timeout}s")


def _info(container) -> ContainerInfo:
    labels = container.labels
    return ContainerInfo(service=labels["com.docker.compose.service"],
                         container=container.name, id=container.id, state="running",
                         pid=container.attrs["State"]["Pid"])


def _top_pids(container) -> list[int]:
    """Host PIDs of every process in the container, as `docker top` reports them."""
    top = container.top()
    col = top["Titles"].index("PID")
    return [int(row[col]) for row in top["Processes"]]


@pytest.fixture
def stack(sim_container):
    qwen = sim_container(simdocker.unique("gtt-qwen"), compose_project=PROJECT,
                         compose_service="comfyui-qwen")
    flux = sim_container(simdocker.unique("gtt-flux"), compose_project=PROJECT,
                         compose_service="flux-1-dev")
    _running(qwen)
    _running(flux)
    return qwen, flux


def test_each_container_pid_maps_to_its_container_and_service(stack) -> None:
    qwen, flux = stack
    infos = [_info(qwen), _info(flux)]
    host_pid = os.getpid()
    procs = [GpuProcess(pid=_running(qwen), memory_mb=17_920.0),
             GpuProcess(pid=_running(flux), memory_mb=9_100.0),
             GpuProcess(pid=host_pid, memory_mb=12.0)]
    out = {p.pid: p for p in attribute(procs, infos)}

    q, f, h = (out[p.pid] for p in procs)
    assert (q.service, q.container, q.container_id) == ("comfyui-qwen", qwen.name, qwen.id)
    assert (f.service, f.container, f.container_id) == ("flux-1-dev", flux.name, flux.id)
    assert h.service is None and h.container is None  # this pytest process: a host process
    assert q.name and f.name  # from the real /proc/<pid>/comm
    with open(f"/proc/{q.pid}/cgroup") as fh:
        assert parse_container_id(fh.read()) == qwen.id


def test_every_process_in_a_container_is_attributed(stack) -> None:
    qwen, flux = stack
    # a second process inside the container (like a ComfyUI worker)
    flux.exec_run(["sh", "-c", "exec sleep 30"], detach=True)
    infos = [_info(qwen), _info(flux)]
    deadline = time.monotonic() + 10
    while len(_top_pids(flux)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    flux_pids = _top_pids(flux)
    assert len(flux_pids) >= 2
    out = attribute([GpuProcess(pid=p, memory_mb=1.0) for p in flux_pids + _top_pids(qwen)],
                    infos)
    by_pid = {p.pid: p.service for p in out}
    assert {by_pid[p] for p in flux_pids} == {"flux-1-dev"}
    assert {by_pid[p] for p in _top_pids(qwen)} == {"comfyui-qwen"}


def test_nvml_report_attributes_real_container_pids(stack, monkeypatch) -> None:
    """End to end: NVML (faked) lists host PIDs; the report names the stack services."""
    qwen, flux = stack
    fake = FakeNvml.install(monkeypatch)
    fake.gpus[1].compute = [FakeProc(_running(qwen), 17_920.0),
                            FakeProc(_running(flux), 5_300.0),
                            FakeProc(0xFFFFFFFF, 1.0)]
    fake.gpus[0].graphics = [FakeProc(os.getpid(), 64.0)]
    src = NvmlSource()
    try:
        report = src.read([_info(qwen), _info(flux)])
    finally:
        src.close()
    laptop, rtx3090 = report.gpus
    assert [(p.service, p.container) for p in rtx3090.processes] == [
        ("comfyui-qwen", qwen.name), ("flux-1-dev", flux.name)]
    assert [(p.service, p.container) for p in laptop.processes] == [(None, None)]


def test_stopped_container_pid_is_dropped(stack) -> None:
    qwen, flux = stack
    pid = _running(flux)
    flux.kill()
    flux.wait(timeout=20)
    assert not os.path.exists(f"/proc/{pid}")
    out = attribute([GpuProcess(pid=pid, memory_mb=1.0)], [_info(qwen)])
    assert out == []  # NVML can list a PID that just died: never shown as someone else's


def test_attribution_from_inside_a_container_with_host_pids(stack, docker_client) -> None:
    """genai-tui itself in a container (`--pid=host`, private cgroup namespace): the
    cgroup paths it reads look like `/../<id>`, with no `docker/` prefix."""
    qwen, flux = stack
    infos = [_info(qwen), _info(flux)]
    name = simdocker.unique("gtt-reader")
    reader = docker_client.containers.run(
        simdocker.ensure_image(docker_client),
        [simdocker.python_in_container(), "-c", "import time; time.sleep(120)"],
        name=name, detach=True, pid_mode="host", cgroupns="private",
        labels={"genai-tui-test": "1", simdocker.OWNER_LABEL: "gtt-gpu-reader"},
        volumes=simdocker.host_python_mounts(),
        environment={"PYTHONPATH": simdocker.PKG_MOUNT, "PYTHONDONTWRITEBYTECODE": "1"})
    try:
        _running(reader)
        pids = {"qwen": _running(qwen), "flux": _running(flux), "host": 1}
        raw = reader.exec_run(["cat", f"/proc/{pids['qwen']}/cgroup"]).output.decode()
        assert "/../" in raw and "/docker/" not in raw  # the private-namespace form
        script = (
            "import json,sys\n"
            "from genai_tui.model import ContainerInfo, GpuProcess\n"
            "from genai_tui.sources.gpu import attribute\n"
            "infos=[ContainerInfo(**d) for d in json.loads(sys.argv[1])]\n"
            "pids=json.loads(sys.argv[2])\n"
            "out=attribute([GpuProcess(pid=p, memory_mb=1.0) for p in pids.values()], infos)\n"
            "by={p.pid: [p.service, p.container] for p in out}\n"
            "print(json.dumps({k: by.get(v) for k, v in pids.items()}))\n")
        args = json.dumps([{"service": i.service, "container": i.container, "id": i.id}
                           for i in infos])
        res = reader.exec_run([simdocker.python_in_container(), "-c", script, args,
                               json.dumps(pids)])
        assert res.exit_code == 0, res.output.decode(errors="replace")
        seen = json.loads(res.output.decode().strip().splitlines()[-1])
        assert seen["qwen"] == ["comfyui-qwen", qwen.name]
        assert seen["flux"] == ["flux-1-dev", flux.name]
        assert seen["host"] == [None, None]
    finally:
        reader.remove(force=True)
