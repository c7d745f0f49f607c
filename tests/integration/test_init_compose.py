"""`genai-tui init` against real Compose projects on the real engine (issue #20).

Debian's docker-compose 1.29 brings up the shipped compose/demo-stack.yml (the simulator
in containers, the image imported without a registry) with bind-mounted login/ folders
and an env_file; `init` must find every service, every PASSWORD by its host path and the
`.env` keys holding the credential, and its config must make `check` and `tokens status`
say what the hand-written demo config makes them say. Also: ComfyUI-Login in a named
volume, two projects with the same service names, a project with no ComfyUI at all.
Each test uses its own project name and free host ports, and always runs `down -v`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from genai_tui import cli, demo, simdocker
from genai_tui.config import load_file
from genai_tui.safety import is_clean
from genai_tui.secret import BCRYPT_ANYWHERE, fingerprint
from tests.conftest import REQUIRE_DOCKER, TEST_OWNER, free_port, wait_for, wait_port

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "compose"
COMPOSE = shutil.which("docker-compose")


@pytest.fixture
def needs_compose() -> None:
    """Skip without docker-compose (fail under GENAI_TUI_REQUIRE_DOCKER=1: .ci/run
    installs Debian's docker-compose 1.29)."""
    if COMPOSE is None:
        msg = "docker-compose is not installed (.ci/run installs Debian's docker-compose 1.29)"
        if REQUIRE_DOCKER:
            pytest.fail(msg + " and GENAI_TUI_REQUIRE_DOCKER=1")
        pytest.skip(msg)


def compose_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PY=sys.base_prefix, SRC=str(REPO), **extra)
    return env


def compose(project: str, files: list[Path], project_dir: Path, *args: str,
            env: dict[str, str] | None = None, timeout: float = 180) -> str:
    cmd = [str(COMPOSE), "-p", project, "--project-directory", str(project_dir)]
    for f in files:
        cmd += ["-f", str(f)]
    r = subprocess.run([*cmd, *args], env=env or compose_env(), capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"docker-compose {' '.join(args)} failed:\n{r.stderr}"
    return r.stdout


@pytest.fixture
def compose_ups() -> Iterator[list[tuple[str, list[Path], Path, dict[str, str]]]]:
    """Projects brought up by a test; each is taken down (-v) after it, pass or fail."""
    ups: list[tuple[str, list[Path], Path, dict[str, str]]] = []
    yield ups
    for project, files, folder, env in ups:
        subprocess.run([str(COMPOSE), "-p", project, "--project-directory", str(folder),
                        *sum((["-f", str(f)] for f in files), []), "down", "-v",
                        "--remove-orphans", "-t", "2"], env=env, capture_output=True,
                       timeout=120, stdin=subprocess.DEVNULL)


def up(ups: list, project: str, files: list[Path], folder: Path, env: dict[str, str]) -> None:
    ups.append((project, files, folder, env))
    compose(project, files, folder, "up", "-d", env=env)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def unique_project() -> str:
    return f"gtinit-{secrets.token_hex(3)}"


# ------------------------------------------------------------------ the compose files


@pytest.mark.usefixtures("needs_compose")
@pytest.mark.parametrize("name", ["demo-stack.yml", "reference-stack.yml"])
def test_docker_compose_1_29_accepts_both_compose_files(tmp_path: Path, name: str) -> None:
    """Both shipped files pass `docker-compose config` (1.29 rejected the top-level
    `name:`); the project name comes from -p."""
    (tmp_path / ".env").write_text("TZ=UTC\n")
    out = compose("gtinit-config", [COMPOSE_DIR / name], tmp_path, "config")
    assert "services:" in out
    assert "\nname:" not in out


# ------------------------------------------------------------------ the demo stack


@pytest.mark.usefixtures("needs_compose")
def test_init_finds_the_compose_demo_stack(docker_client, compose_ups, tmp_path: Path,
                                           capsys) -> None:
    project = unique_project()
    prefix = f"{project}-"
    root = tmp_path / "stack"
    ports = {n: free_port() for n in demo.PREFERRED_PORTS}
    hand_written = demo.write_stack_files(root, ports, container_prefix=prefix)
    the_hash = (root / "login" / "comfyui-qwen" / "PASSWORD").read_text().split("\n")[0]
    env = compose_env(DEMO_PREFIX=prefix, QWEN_PORT=str(ports["comfyui-qwen"]),
                      FLUX_PORT=str(ports["flux-1-dev"]),
                      SD35_PORT=str(ports["stable-diffusion-35"]),
                      ORCHESTRATOR_PORT=str(ports["orchestrator"]))
    up(compose_ups, project, [COMPOSE_DIR / "demo-stack.yml"], root, env)
    for port in ports.values():
        wait_port(port)

    target = root / "init.toml"
    code, out, err = run_cli(capsys, "init", "--project", project, "--write", str(target),
                             "--yes", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["write"]["written"] is True

    # every service, with the kind and auth the demo has
    services = {s["name"]: s for s in doc["services"]}
    assert set(services) == {s.name for s in demo.SERVICES}
    for s in demo.SERVICES:
        got = services[s.name]
        assert (got["kind"], got["auth"]) == (s.config_kind, s.auth), got
        assert got["url"] == f"http://127.0.0.1:{ports[s.name]}"
        assert got["container"] == f"{prefix}{s.name}"

    # every PASSWORD by its host path, with the mount as evidence; the .env keys
    locations = {(loc["path"], loc["format"], loc["key"]): loc
                 for loc in doc["tokens"]["locations"]}
    for svc in ("comfyui-qwen", "flux-1-dev"):
        loc = locations[(str(root / "login" / svc / "PASSWORD"), "password_file", None)]
        assert loc["fingerprint"] == fingerprint(the_hash)
        assert any(f"bind mount of {root / 'login' / svc} → /workspace/ComfyUI/login" in e
                   for e in loc["evidence"]), loc["evidence"]
    assert (str(root / ".env"), "env", "COMFYUI_API_TOKEN") in locations
    assert (str(root / ".env"), "raw_env", "COMFYUI_RAW_TOKEN") in locations
    assert any("env_file of comfyui-qwen" in e for e in
               locations[(str(root / ".env"), "env", "COMFYUI_API_TOKEN")]["evidence"])
    assert doc["tokens"]["restart_after_unify"] == ["comfyui-qwen", "flux-1-dev"]

    # never a secret, in the output or the file; the file is private and loads
    written = target.read_text()
    for text in (out, err, written):
        assert the_hash not in text and the_hash[:20] not in text
        assert not BCRYPT_ANYWHERE.search(text)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    cfg = load_file(target)
    assert [s.name for s in cfg.services] == ["comfyui-qwen", "flux-1-dev",
                                              "stable-diffusion-35", "orchestrator"]

    # `check` reports the stack as it does with the hand-written config
    reports: dict[str, tuple[int, dict]] = {}

    def codes(which: str) -> list[str]:
        return sorted(f["code"] for f in reports[which][1]["findings"])

    # the two checks run seconds apart while the orchestrator's backends may still
    # settle: read both again (a few times at most) until they saw the same stack
    for _attempt in range(5):
        for which, path in (("init", target), ("demo", hand_written)):
            code, out, err = run_cli(capsys, "check", "--json", "--config", str(path))
            reports[which] = (code, json.loads(out))
        if codes("init") == codes("demo"):
            break
        time.sleep(2)
    code, snap = reports["init"]
    assert code == reports["demo"][0] == 1  # the demo's drifted copy: a warning
    assert {c["service"]: c["state"] for c in snap["containers"]} == {
        s.name: "running" for s in demo.SERVICES}
    assert {p["service"]: (p["outcome"], p["auth"]) for p in snap["probes"]} == {
        p["service"]: (p["outcome"], p["auth"]) for p in reports["demo"][1]["probes"]}
    assert {p["service"]: p["auth"] for p in snap["probes"] if p["auth"]} == {
        "comfyui-qwen": "enforced", "flux-1-dev": "enforced"}
    assert sorted(f["code"] for f in snap["findings"]) == sorted(
        f["code"] for f in reports["demo"][1]["findings"])

    # `tokens status` lists the same copies as the hand-written demo config
    copies = {}
    for which, path in (("init", target), ("demo", hand_written)):
        code, out, _ = run_cli(capsys, "tokens", "status", "--json", "--no-server",
                               "--config", str(path))
        copies[which] = {(os.path.realpath(loc["path"]) if os.path.isabs(loc["path"])
                          else os.path.realpath(root / loc["path"]), loc["format"],
                          loc["key"], loc["state"], loc["fingerprint"])
                         for loc in json.loads(out)["locations"]}
    assert copies["init"] == copies["demo"]


@pytest.mark.usefixtures("needs_compose")
def test_init_is_readable_and_writes_nothing_without_write(docker_client, compose_ups,
                                                           tmp_path: Path, capsys,
                                                           monkeypatch) -> None:
    """The table and the TOML, with evidence; no file appears anywhere."""
    project = unique_project()
    root = tmp_path / "stack"
    ports = {n: free_port() for n in demo.PREFERRED_PORTS}
    demo.write_stack_files(root, ports, container_prefix=f"{project}-")
    env = compose_env(DEMO_PREFIX=f"{project}-", QWEN_PORT=str(ports["comfyui-qwen"]),
                      FLUX_PORT=str(ports["flux-1-dev"]),
                      SD35_PORT=str(ports["stable-diffusion-35"]),
                      ORCHESTRATOR_PORT=str(ports["orchestrator"]))
    up(compose_ups, project, [COMPOSE_DIR / "demo-stack.yml"], root, env)
    wait_port(ports["comfyui-qwen"])
    wait_port(ports["flux-1-dev"])
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    monkeypatch.chdir(root)
    code, out, err = run_cli(capsys, "init", "--project", project)
    assert code == 0, err
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    assert "PASSWORD: bind mount of " + str(root / "login" / "comfyui-qwen") + \
        " → /workspace/ComfyUI/login" in out
    assert '[[services]]\nname = "comfyui-qwen"' in out
    assert 'path = "login/comfyui-qwen/PASSWORD"' in out  # relative to the config's folder
    assert all(is_clean(line) for line in out.splitlines())

    # --write alone, with no terminal to confirm on, and --readonly: still nothing
    for extra in ([], ["--yes", "--readonly"]):
        code, out, _ = run_cli(capsys, "init", "--project", project, "--write",
                               str(root / "c.toml"), *extra)
        assert code == 2 and "not written" in out
        assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


# ------------------------------------------------------------------ other shapes


SMALL = """\
services:
  {service}:
    image: genai-tui-sim:local
    working_dir: /workspace/ComfyUI
    command: ["{py}/bin/python3", "-m", "genai_tui.sim", "--kind", "{kind}", "--port", "8188",
              "--name", "{service}"]
    environment:
      PYTHONPATH: /opt/genai-tui
      PYTHONDONTWRITEBYTECODE: "1"
    labels:
      {owner_label}: {owner}
    ports: ["127.0.0.1::8188"]
    volumes:
      - /usr:/usr:ro
      - /lib:/lib:ro
      - /lib64:/lib64:ro
      - /bin:/bin:ro
      - {py}:{py}:ro
      - {src}/genai_tui:/opt/genai-tui/genai_tui:ro
{extra}"""


def small_project(folder: Path, service: str, kind: str = "comfyui", *,
                  login: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    extra = f"      - {login}:/workspace/ComfyUI/login\n" if login else ""
    path = folder / "compose.yml"
    path.write_text(SMALL.format(service=service, kind=kind, py=sys.base_prefix, src=REPO,
                                 owner_label=simdocker.OWNER_LABEL, owner=TEST_OWNER,
                                 extra=extra))
    return path


def login_folder(folder: Path, hash_: str) -> Path:
    login = folder / "login"
    login.mkdir(parents=True)
    login.chmod(0o777)
    (login / "PASSWORD").write_text(f"{hash_}\nadmin")
    return login


def published(docker_client, project: str) -> list[int]:
    ports = []
    for c in docker_client.containers.list(filters={"label": f"com.docker.compose.project="
                                                              f"{project}"}):
        for bindings in (c.attrs["NetworkSettings"]["Ports"] or {}).values():
            ports += [int(b["HostPort"]) for b in bindings or []]
    return ports


@pytest.mark.usefixtures("needs_compose")
def test_two_projects_with_the_same_service_names_are_reported_not_guessed(
        docker_client, compose_ups, tmp_path: Path, capsys) -> None:
    from tests.conftest import make_hash

    service = f"comfy-{secrets.token_hex(2)}"
    a, b = unique_project(), unique_project()
    hashes = {}
    for p in (a, b):
        hashes[p] = make_hash()
        folder = tmp_path / p
        login_folder(folder, hashes[p])
        up(compose_ups, p, [small_project(folder, service, login="./login")], folder,
           compose_env())
    for p in (a, b):
        for port in wait_for(lambda p=p: published(docker_client, p)):
            wait_port(port)

    code, out, err = run_cli(capsys, "init", "--project", a, "--project", b, "--json")
    doc = json.loads(out)
    assert code == 1  # no ComfyUI proposed
    assert [s["name"] for s in doc["services"]] == []
    (amb,) = doc["ambiguous"]
    assert amb["service"] == service
    assert sorted(c["project"] for c in amb["candidates"]) == sorted([a, b])
    assert any(service in w and a in w and b in w and "not guessed" in w
               for w in doc["warnings"])

    code, out, _ = run_cli(capsys, "init", "--project", a, "--json")
    doc = json.loads(out)
    assert code == 0
    (svc,) = doc["services"]
    assert (svc["name"], svc["project"], svc["kind"], svc["auth"]) == (service, a, "comfyui",
                                                                       True)
    (loc,) = [loc for loc in doc["tokens"]["locations"] if loc["format"] == "password_file"]
    assert loc["path"] == str(tmp_path / a / "login" / "PASSWORD")
    assert loc["fingerprint"] == fingerprint(hashes[a])


@pytest.mark.usefixtures("needs_compose")
def test_a_host_with_no_comfyui_says_so(docker_client, compose_ups, tmp_path: Path,
                                        capsys) -> None:
    project = unique_project()
    folder = tmp_path / project
    up(compose_ups, project, [small_project(folder, "model-stub", kind="stub")], folder,
       compose_env())
    for port in wait_for(lambda: published(docker_client, project)):
        wait_port(port)
    code, out, err = run_cli(capsys, "init", "--project", project)
    assert code == 1
    assert "no ComfyUI found on this host" in out
    assert 'name = "model-stub"' in out and 'kind = "http"' in out
    assert "[tokens]" not in out


def test_comfyui_login_in_a_named_volume(docker_client, sim_container, tmp_path: Path,
                                         capsys) -> None:
    """The PASSWORD's host path is the volume's Mountpoint; the evidence names the
    volume."""
    from tests.conftest import make_hash

    project = unique_project()
    volume = docker_client.volumes.create(f"{project}-login",
                                          labels={simdocker.OWNER_LABEL: TEST_OWNER})
    try:
        mountpoint = Path(volume.attrs["Mountpoint"])
        hash_ = make_hash()
        (mountpoint / "PASSWORD").write_text(f"{hash_}\nadmin")
        # a relative "login_dir" is a named volume for the engine
        c = sim_container(f"{project}-comfyui", login_dir=Path(volume.name),
                          compose_project=project, compose_service="comfyui")
        from tests.conftest import host_port

        wait_port(host_port(c))
        code, out, err = run_cli(capsys, "init", "--project", project, "--json")
        assert code == 0, err
        doc = json.loads(out)
        (svc,) = doc["services"]
        assert (svc["name"], svc["kind"], svc["auth"]) == ("comfyui", "comfyui", True)
        (loc,) = doc["tokens"]["locations"]
        assert (loc["path"], loc["format"]) == (str(mountpoint / "PASSWORD"), "password_file")
        assert loc["fingerprint"] == fingerprint(hash_)
        assert any(f"PASSWORD: volume {volume.name} ({mountpoint})" in e
                   for e in loc["evidence"])
        assert hash_ not in out
    finally:
        for cont in docker_client.containers.list(
                all=True, filters={"label": f"com.docker.compose.project={project}"}):
            cont.remove(force=True)
        volume.remove(force=True)
