"""`/proc/<pid>/cgroup` parsing and the PID -> container/service join, on real-world lines
of every form (cgroup v1/v2, cgroupfs/systemd drivers, private cgroup namespace,
containerd, CRI-O, podman, Docker-in-Docker) and on hostile input."""

from __future__ import annotations

import pytest

from genai_tui.model import ContainerInfo, GpuProcess
from genai_tui.sources.gpu import attribute, container_ids, parse_container_id
from tests.unit.fake_nvml import fake_procfs

A = "3ab9d4a4968c2db8cb2b146a9b52e5978bcfbee53180c93cd503cb5766d8ce52"
B = "e3c3a3f1b8d4f5a61c7e20a8b9d1f2e3c4b5a6978877665544332211ffeeddcc"
POD = "8c2bd3b6-27c1-4a5d-9a0e-6f6b0b5b9e41"

# cgroup v1, cgroupfs driver: what this machine's Docker writes (captured from a real
# container here), one line per hierarchy plus the empty v2 line
V1_CGROUPFS = f"""12:hugetlb:/docker/{A}
11:net_cls,net_prio:/docker/{A}
9:name=systemd:/docker/{A}
8:pids:/docker/{A}
7:blkio:/docker/{A}
6:freezer:/docker/{A}
5:devices:/docker/{A}
4:memory:/docker/{A}
3:cpuset:/docker/{A}
2:cpuacct:/docker/{A}
1:cpu:/docker/{A}
0::/docker/{A}
"""

# cgroup v1, systemd driver (Ubuntu 20.04 with `native.cgroupdriver=systemd`)
V1_SYSTEMD = f"""12:perf_event:/system.slice/docker-{A}.scope
11:memory:/system.slice/docker-{A}.scope
10:devices:/system.slice/docker-{A}.scope
9:pids:/system.slice/docker-{A}.scope
1:name=systemd:/system.slice/docker-{A}.scope
0::/system.slice/docker-{A}.scope
"""

# cgroup v2 (unified), systemd driver: the Docker default on Ubuntu 22.04+/Debian 11+
V2_SYSTEMD = f"0::/system.slice/docker-{A}.scope\n"

# cgroup v2, cgroupfs driver
V2_CGROUPFS = f"0::/docker/{A}\n"

# cgroup v2 with a private cgroup namespace (the v2 default), read from *another*
# container that shares the host PID namespace (genai-tui in a container with
# --pid=host): paths are relative to the reader's namespace root, no `docker/` prefix
V2_PRIVATE_NS_CGROUPFS = f"0::/../{A}\n"
V2_PRIVATE_NS_SYSTEMD = f"0::/../docker-{A}.scope\n"

# the same process read from inside its own private namespace: no id at all
V2_PRIVATE_NS_INSIDE = "0::/\n"

# hybrid v1 + v2 systemd layout (Ubuntu 20.04 default)
HYBRID = f"""13:rdma:/
12:memory:/system.slice/docker-{A}.scope
1:name=systemd:/system.slice/docker-{A}.scope
0::/system.slice/docker-{A}.scope
"""

# a systemd-in-container (or a process moved to a child cgroup): the id is not the last
# component
NESTED_SCOPE = f"0::/system.slice/docker-{A}.scope/init.scope\n"

# Kubernetes with containerd (systemd driver, v2) and with cgroupfs (v1)
K8S_CONTAINERD = (
    "0::/kubepods.slice/kubepods-besteffort.slice/"
    f"kubepods-besteffort-pod{POD.replace('-', '_')}.slice/cri-containerd-{A}.scope\n")
K8S_V1 = (f"11:memory:/kubepods/besteffort/pod{POD}/{A}\n"
          f"1:name=systemd:/kubepods/besteffort/pod{POD}/{A}\n")
K8S_CRIO = ("0::/kubepods.slice/kubepods-burstable.slice/"
            f"kubepods-burstable-pod{POD}.slice/crio-{A}.scope\n")

# rootless podman (v2): the container's processes live in a `container` child cgroup
PODMAN = ("0::/user.slice/user-1000.slice/user@1000.service/user.slice/"
          f"libpod-{A}.scope/container\n")

# rootless Docker (v2, systemd)
ROOTLESS_DOCKER = ("0::/user.slice/user-1000.slice/user@1000.service/app.slice/"
                   f"docker.service/docker-{A}.scope\n")

# Docker-in-Docker: the inner container's process, seen from the host
DIND = f"0::/docker/{B}/docker/{A}\n"

# host processes
HOST_V2_SESSION = "0::/user.slice/user-1000.slice/session-4.scope\n"
HOST_V2_INIT = "0::/init.scope\n"
HOST_V1 = """12:pids:/user.slice/user-1000.slice/session-2.scope
4:memory:/user.slice/user-1000.slice/session-2.scope
1:name=systemd:/user.slice/user-1000.slice/session-2.scope
0::/user.slice/user-1000.slice/session-2.scope
"""
# this sandbox's own process: a 32-hex id that is not a container's
HOST_SANDBOX = "4:memory:/process_api/09d39f9a18e18b73286d6a0e83e60ab9\n0::/\n"
# Xorg on a desktop with the NVIDIA driver (a typical graphics process)
HOST_XORG = "0::/system.slice/display-manager.service\n"


@pytest.mark.parametrize("text", [
    V1_CGROUPFS, V1_SYSTEMD, V2_SYSTEMD, V2_CGROUPFS, V2_PRIVATE_NS_CGROUPFS,
    V2_PRIVATE_NS_SYSTEMD, HYBRID, NESTED_SCOPE, K8S_CONTAINERD, K8S_V1, K8S_CRIO, PODMAN,
    ROOTLESS_DOCKER,
], ids=["v1-cgroupfs", "v1-systemd", "v2-systemd", "v2-cgroupfs", "v2-privatens-cgroupfs",
        "v2-privatens-systemd", "hybrid", "nested-scope", "k8s-containerd", "k8s-v1",
        "k8s-crio", "podman", "rootless-docker"])
def test_every_container_form_yields_the_container_id(text: str) -> None:
    assert parse_container_id(text) == A


@pytest.mark.parametrize("text", [
    HOST_V2_SESSION, HOST_V2_INIT, HOST_V1, HOST_SANDBOX, HOST_XORG, V2_PRIVATE_NS_INSIDE,
], ids=["v2-session", "v2-init", "v1-session", "sandbox-32hex", "xorg", "privatens-inside"])
def test_host_processes_have_no_container(text: str) -> None:
    assert parse_container_id(text) is None
    assert container_ids(text) == []


def test_docker_in_docker_lists_inner_then_outer() -> None:
    assert container_ids(DIND) == [A, B]
    assert parse_container_id(DIND) == A


@pytest.mark.parametrize("text", [
    "", "\n\n", "garbage", "0::", ":::::", "\x00\x01\x1b[31m",
    f"0::/docker/{A[:-1]}",               # 63 hex digits
    f"0::/docker/{A}0",                   # 65 hex digits
    f"0::/docker/{A.upper()}",            # Docker ids are lower-case
    f"0::/docker/{A}.service",            # not a scope
    f"0::/docker/x{A}",
    "0::/docker/" + "g" * 64,
    "\udcff" * 10,
], ids=["empty", "blank-lines", "word", "no-path", "colons", "control", "63hex", "65hex",
        "upper", "service", "prefix", "not-hex", "surrogates"])
def test_malformed_or_lookalike_lines_yield_nothing(text: str) -> None:
    assert parse_container_id(text) is None


def test_huge_input_is_handled() -> None:
    text = "1:cpu:/" + "a/" * 50_000 + f"docker-{A}.scope\n"
    assert parse_container_id(text) == A


# ---------------------------------------------------------------- the join


def _containers() -> list[ContainerInfo]:
    return [
        ContainerInfo(service="comfyui-qwen", container="comfyui-qwen", id=A, state="running"),
        ContainerInfo(service="flux-1-dev", container="coursia-flux-1-dev", id=B[:12],
                      state="running"),
        ContainerInfo(service="orchestrator", container="coursia-orchestrator", id=None),
    ]


def test_attribute_joins_pids_with_known_containers(tmp_path) -> None:
    procfs = fake_procfs(tmp_path / "proc", {
        4242: ("python", V2_SYSTEMD),
        5151: ("python3", f"0::/docker/{B}\n"),      # matched by the 12-char short id
        1234: ("Xorg", HOST_XORG),
        7777: ("python", "0::/docker/" + "f" * 64 + "\n"),  # a container we don't manage
    })
    procs = [GpuProcess(pid=p, memory_mb=100.0) for p in (4242, 5151, 1234, 7777, 999_999)]
    out = {p.pid: p for p in attribute(procs, _containers(), procfs=procfs)}

    assert out[4242].service == "comfyui-qwen"
    assert out[4242].container == "comfyui-qwen"
    assert out[4242].container_id == A
    assert out[4242].name == "python"
    assert out[5151].service == "flux-1-dev"
    assert out[5151].container == "coursia-flux-1-dev"
    assert out[1234].service is None and out[1234].container is None  # host process
    assert out[1234].name == "Xorg"
    assert out[7777].service is None
    assert out[7777].container == "f" * 12  # shown by short id
    assert 999_999 not in out  # absent from /proc: stale or garbage


def test_docker_in_docker_attributes_to_the_known_outer_container(tmp_path) -> None:
    procfs = fake_procfs(tmp_path / "proc", {42: ("python", DIND)})
    outer = [ContainerInfo(service="builder", container="dind", id=B)]
    (proc,) = attribute([GpuProcess(pid=42, memory_mb=1.0)], outer, procfs=procfs)
    assert proc.service == "builder"


def test_pid_map_covers_pids_missing_from_our_proc(tmp_path) -> None:
    """genai-tui in a container without --pid=host: host PIDs come from container.top()."""
    procfs = fake_procfs(tmp_path / "proc", {})
    (proc,) = attribute([GpuProcess(pid=31337, memory_mb=2048.0)], _containers(),
                        procfs=procfs, pid_containers={31337: A})
    assert proc.service == "comfyui-qwen"


def test_process_runtime_service_owns_its_descendants(tmp_path) -> None:
    procfs = fake_procfs(tmp_path / "proc", {
        900: ("bash", HOST_V1, 1),
        901: ("python", HOST_V1, 900),     # the ComfyUI started by the service's script
        950: ("python", HOST_V1, 1),       # someone else's
    })
    svc = ContainerInfo(service="comfyui-local", container="comfyui-local", runtime="process",
                        pid=900, state="running")
    out = {p.pid: p for p in attribute(
        [GpuProcess(pid=901, memory_mb=1.0), GpuProcess(pid=950, memory_mb=1.0)], [svc],
        procfs=procfs)}
    assert out[901].service == "comfyui-local"
    assert out[950].service is None


def test_hostile_comm_is_made_printable(tmp_path) -> None:
    procfs = fake_procfs(tmp_path / "proc", {77: ("\x1b[2Jevil\x07", HOST_V2_INIT)})
    (proc,) = attribute([GpuProcess(pid=77, memory_mb=1.0)], [], procfs=procfs)
    assert "\x1b" not in proc.name and "\x07" not in proc.name
    assert "evil" in proc.name
