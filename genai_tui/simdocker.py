"""Run the simulator in real containers without a registry.

No image can be pulled on an air-gapped GPU host (or in CI), so the image is an empty
filesystem made with `docker import`, and each container bind-mounts the host's Python
(read-only) and this package's source. The demo and the integration tests share this code.
"""

from __future__ import annotations

import io
import os
import secrets
import socket
import sys
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
from docker.models.containers import Container

import genai_tui

SIM_IMAGE = "genai-tui-sim:local"
#: every container we create carries this label, so a cleanup can always find them
OWNER_LABEL = "io.genai-tui.owner"
PKG_MOUNT = "/opt/genai-tui"


def ensure_image(client: docker.DockerClient) -> str:
    """The empty base image, imported once from an empty tarball."""
    try:
        client.images.get(SIM_IMAGE)
        return SIM_IMAGE
    except docker.errors.ImageNotFound:
        pass
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w"):
        pass
    repo, tag = SIM_IMAGE.split(":")
    client.api.import_image_from_data(buf.getvalue(), repository=repo, tag=tag)
    return SIM_IMAGE


def host_python_mounts() -> dict[str, dict[str, str]]:
    """Read-only binds that make the host's interpreter runnable inside an empty image."""
    dirs = ["/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/etc/alternatives",
            sys.base_prefix]
    mounts: dict[str, dict[str, str]] = {}
    for d in dirs:
        if os.path.exists(d) and not any(d == m or d.startswith(m + "/") for m in mounts):
            mounts[d] = {"bind": d, "mode": "ro"}
    pkg = Path(genai_tui.__file__).resolve().parent
    mounts[str(pkg)] = {"bind": f"{PKG_MOUNT}/genai_tui", "mode": "ro"}
    return mounts


def python_in_container() -> str:
    """The host interpreter path (valid inside the container thanks to the binds)."""
    exe = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    if exe.exists():
        return str(exe)
    return str(Path(sys.base_prefix) / "bin" / "python3")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def run_sim(
    client: docker.DockerClient,
    *,
    name: str,
    kind: str = "comfyui",
    scenario: str = "healthy",
    host_port: int | None = None,
    container_port: int = 8188,
    login_dir: Path | None = None,
    extra_args: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
    owner: str = "genai-tui",
    compose_project: str | None = None,
    compose_service: str | None = None,
    mem_limit: str | None = None,
    restart_policy: Mapping[str, Any] | None = None,
    healthcheck: Mapping[str, Any] | None = None,
    environment: Mapping[str, str] | None = None,
    publish: bool = True,
    tty: bool = False,
    network: str | None = None,
) -> Container:
    """Start one simulator container (detached) and return it."""
    image = ensure_image(client)
    all_labels = {OWNER_LABEL: owner}
    if compose_project:
        all_labels["com.docker.compose.project"] = compose_project
        all_labels["com.docker.compose.service"] = compose_service or name
        all_labels["com.docker.compose.oneoff"] = "False"
    all_labels.update(labels or {})
    volumes = host_python_mounts()
    workdir = "/workspace/ComfyUI"
    if login_dir is not None:
        volumes[str(login_dir)] = {"bind": f"{workdir}/login", "mode": "rw"}
    env = {"PYTHONPATH": PKG_MOUNT, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "SIM_SCENARIO": scenario}
    env.update(environment or {})
    command = [python_in_container(), "-m", "genai_tui.sim", "--kind", kind,
               "--port", str(container_port), "--scenario", scenario, *extra_args]
    kwargs: dict[str, Any] = {}
    if publish:
        kwargs["ports"] = {f"{container_port}/tcp": ("127.0.0.1", host_port or free_port())}
    if mem_limit:
        kwargs["mem_limit"] = mem_limit
        kwargs["memswap_limit"] = mem_limit
    if restart_policy:
        kwargs["restart_policy"] = dict(restart_policy)
    if healthcheck:
        kwargs["healthcheck"] = dict(healthcheck)
    if network:
        kwargs["network"] = network
    return client.containers.run(
        image, command, name=name, detach=True, labels=all_labels, volumes=volumes,
        environment=env, working_dir=workdir, stop_signal="SIGTERM", tty=tty, **kwargs)


def health_cmd(path: str, port: int = 8188, *, token_file: str | None = None,
               accept: tuple[int, ...] = (200,)) -> list[str]:
    """A healthcheck that runs the host Python inside the container (no curl there)."""
    script = (
        "import sys,urllib.request as u,urllib.error as e\n"
        f"r=u.Request('http://127.0.0.1:{port}{path}',headers={{'Accept':'application/json'}})\n"
    )
    if token_file:
        script += (f"t=open('{token_file}').readline().strip()\n"
                   "r.add_header('Authorization','Bearer '+t)\n")
    script += (
        "try:\n c=u.urlopen(r,timeout=3).status\n"
        "except e.HTTPError as x:\n c=x.code\n"
        "except Exception:\n sys.exit(1)\n"
        f"sys.exit(0 if c in {tuple(accept)!r} else 1)\n"
    )
    return ["CMD", python_in_container(), "-c", script]


def remove_owned(client: docker.DockerClient, owner: str,
                 labels: Mapping[str, str] | None = None) -> int:
    """Force-remove every container carrying our owner label with this value (and, when
    given, all of `labels` too)."""
    n = 0
    wanted = [f"{OWNER_LABEL}={owner}", *(f"{k}={v}" for k, v in (labels or {}).items())]
    for c in client.containers.list(all=True, filters={"label": wanted}):
        try:
            c.remove(force=True)
            n += 1
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError:
            pass
    return n


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"
