"""Discovery's analysis, TOML writer and file writer (issue #20), without an engine.

`analyse` takes what `docker inspect` returns and what the ports answered; here those are
written out as the engine would give them, and the files they point at are real files in
a temporary folder (the real-engine runs are in tests/integration/test_init_compose.py).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from genai_tui import cli, cli_init
from genai_tui.config import load_file
from genai_tui.safety import is_clean
from genai_tui.secret import BCRYPT_ANYWHERE, fingerprint
from genai_tui.sources import discover
from genai_tui.sources.discover import Answer, analyse, to_toml, write_config
from tests.conftest import make_hash

LOGIN_401 = Answer(stats_status=401, login_401=True, health_status=401)


def inspect_doc(name: str, *, project: str | None = None, service: str | None = None,
                workdir: Path | None = None, port: int | None = 8188, host_port: int = 18188,
                mounts: list[dict] | None = None, image: str = "python:3.11",
                labels: dict[str, str] | None = None, cmd: list[str] | None = None,
                config_files: str | None = None) -> dict:
    """A container as `docker inspect` shows it (the fields discovery reads)."""
    lab = dict(labels or {})
    if project:
        lab["com.docker.compose.project"] = project
        lab["com.docker.compose.service"] = service or name
        lab["com.docker.compose.oneoff"] = "False"
    if workdir:
        lab["com.docker.compose.project.working_dir"] = str(workdir)
    if config_files:
        lab["com.docker.compose.project.config_files"] = config_files
    ports = {f"{port}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(host_port)}]} \
        if port else {}
    return {"Id": "0" * 64, "Name": "/" + name, "State": {"Status": "running"},
            "Config": {"Image": image, "Labels": lab, "Cmd": cmd or ["python3", "main.py"]},
            "NetworkSettings": {"Ports": ports}, "Mounts": mounts or []}


def bind(src: Path, dst: str) -> dict:
    return {"Type": "bind", "Source": str(src), "Destination": dst, "RW": True}


def login(folder: Path, hash_: str) -> Path:
    d = folder / "login"
    d.mkdir(parents=True)
    (d / "PASSWORD").write_text(f"{hash_}\nadmin")
    return d


def real_hash(raw: str) -> str:
    """A real bcrypt hash (cost 4: fast) that `raw` verifies."""
    import bcrypt

    return bcrypt.hashpw(raw.encode(), bcrypt.gensalt(4)).decode()


def test_a_compose_comfyui_with_its_password_env_and_env_file(tmp_path: Path) -> None:
    h = real_hash("secret-pw-1")
    stack = tmp_path / "srv" / "stack"
    lg = login(stack / "comfyui-qwen" / "workspace", h)
    (stack / ".env").write_text(f"COMFYUI_BEARER_TOKEN='{h}'\nCOMFYUI_PASSWORD=secret-pw-1\n"
                                "TZ=Europe/Paris\n")
    (stack / "qwen.env").write_text(f"AUTH_HASH={h}\n")
    compose_file = stack / "compose.yml"
    compose_file.write_text("services:\n  comfyui-qwen:\n    image: x\n"
                            "    env_file:\n      - ./qwen.env\n  other:\n"
                            "    env_file: other.env\n")
    doc = inspect_doc("comfyui-qwen", project="coursia", workdir=stack,
                      config_files=str(compose_file),
                      mounts=[bind(lg, "/workspace/ComfyUI/login")])
    p = analyse([doc], {"http://127.0.0.1:18188": LOGIN_401})
    (svc,) = p.services
    assert (svc.name, svc.container, svc.url, svc.kind, svc.auth) == (
        "comfyui-qwen", "comfyui-qwen", "http://127.0.0.1:18188", "comfyui", True)
    by = {(loc.format, loc.key): loc for loc in p.locations}
    pw = by[("password_file", None)]
    assert pw.path == lg / "PASSWORD" and pw.fingerprint == fingerprint(h)
    assert (f"PASSWORD: bind mount of {lg} → /workspace/ComfyUI/login "
            "(container path /workspace/ComfyUI/login/PASSWORD)") in pw.evidence
    assert by[("env", "COMFYUI_BEARER_TOKEN")].path == stack / ".env"
    assert by[("raw_env", "COMFYUI_PASSWORD")].fingerprint == f"raw→{fingerprint(h)}"
    env_file = by[("env", "AUTH_HASH")]
    assert env_file.path == stack / "qwen.env"
    assert any("env_file of comfyui-qwen" in e for e in env_file.evidence)
    assert p.restart_after_unify == ["comfyui-qwen"]
    assert not any(loc.outside_project for loc in p.locations)


def test_the_toml_round_trips_through_the_config_loader(tmp_path: Path) -> None:
    h = make_hash("two")
    stack = tmp_path / "stack"
    lg = login(stack, h)
    (stack / ".env").write_text(f"COMFYUI_API_TOKEN='{h}'\n")
    docs = [inspect_doc("cf", project="p", workdir=stack,
                        mounts=[bind(lg, "/workspace/ComfyUI/login")]),
            inspect_doc("orch", project="p", workdir=stack, port=8090, host_port=18193),
            inspect_doc("stub", project="p", workdir=stack, port=8000, host_port=18190)]
    answers = {"http://127.0.0.1:18188": LOGIN_401,
               "http://127.0.0.1:18193": Answer(stats_status=404, health_status=200,
                                                health_json=True, orchestrator_body=True),
               "http://127.0.0.1:18190": Answer(stats_status=404, health_status=404)}
    p = analyse(docs, answers)
    text = to_toml(p, stack)
    target = stack / "genai-tui.toml"
    write_config(text, target)
    cfg = load_file(target)
    assert [(s.name, s.container, s.url, s.kind, s.auth, s.health_path)
            for s in cfg.services] == [
        ("cf", "cf", "http://127.0.0.1:18188", "comfyui", True, "/health"),
        ("stub", "stub", "http://127.0.0.1:18190", "http", False, "/"),
        ("orch", "orch", "http://127.0.0.1:18193", "orchestrator", False, "/health")]
    assert [(loc.path, loc.format, loc.key) for loc in cfg.tokens.locations] == [
        (lg / "PASSWORD", "password_file", None), (stack / ".env", "env", "COMFYUI_API_TOKEN")]
    assert cfg.tokens.restart_after_unify == ("cf",)
    assert cfg.tokens.canonical == p.canonical
    assert 'path = "login/PASSWORD"' in text  # relative inside the config's folder


def test_no_secret_in_the_proposal_its_json_table_or_toml(tmp_path: Path) -> None:
    h = real_hash("raw-password-xyz")
    stack = tmp_path / "stack"
    lg = login(stack, h)
    (stack / ".env").write_text(f"COMFYUI_API_TOKEN={h}\nCOMFYUI_RAW_TOKEN=raw-password-xyz\n")
    (stack / ".secrets").mkdir()
    (stack / ".secrets" / "api.token").write_text(h + "\n")
    (stack / ".secrets" / "tokens.conf").write_text(json.dumps({"bcrypt_hash": h,
                                                                "raw_token": "x"}))
    doc = inspect_doc("cf", project="p", workdir=stack,
                      mounts=[bind(lg, "/workspace/ComfyUI/login")])
    p = analyse([doc], {"http://127.0.0.1:18188": LOGIN_401})
    assert {loc.format for loc in p.locations} == {"password_file", "env", "raw_env",
                                                    "hash_file", "json"}
    texts = [json.dumps(p.to_json()), cli_init.render(p, to_toml(p, stack)),
             to_toml(p, stack), discover.summary_line(p), repr(p)]
    for text in texts:
        assert h not in text and h[7:30] not in text and "raw-password-xyz" not in text
        assert not BCRYPT_ANYWHERE.search(text)


def test_hostile_labels_and_paths_are_clean_on_screen_and_exact_in_the_file(
        tmp_path: Path) -> None:
    evil_project = "p\x1b]0;pwned\x07\u202e"
    evil_dir = tmp_path / "st\u202eack\nx"
    lg = login(evil_dir, make_hash("four"))
    doc = inspect_doc("cf", project=evil_project, service="svc\x1b[2Jname",
                      workdir=evil_dir, mounts=[bind(lg, "/workspace/ComfyUI/login")])
    p = analyse([doc], {"http://127.0.0.1:18188": LOGIN_401})
    text = to_toml(p, tmp_path)
    shown_text = cli_init.render(p, text)
    for line in shown_text.splitlines():
        assert is_clean(line), repr(line)
    assert "\x1b" not in text and "\u202e" not in text  # escaped in the file
    target = tmp_path / "genai-tui.toml"
    write_config(text, target)
    cfg = load_file(target)
    assert cfg.services[0].name == "svc\x1b[2Jname"  # the exact value, read back
    assert cfg.tokens.locations[0].path == lg / "PASSWORD"


def test_a_symlinked_password_is_flagged_not_read(tmp_path: Path) -> None:
    stack = tmp_path / "stack"
    lg = stack / "login"
    lg.mkdir(parents=True)
    elsewhere = tmp_path / "shadow"
    elsewhere.write_text(make_hash("five") + "\n")
    (lg / "PASSWORD").symlink_to(elsewhere)
    doc = inspect_doc("cf", project="p", workdir=stack,
                      mounts=[bind(lg, "/workspace/ComfyUI/login")])
    p = analyse([doc], {"http://127.0.0.1:18188": LOGIN_401})
    (loc,) = p.locations
    assert (loc.state, loc.fingerprint) == ("symlink", None)
    assert any("is a symlink to" in e and "not followed" in e for e in loc.evidence)
    assert any("symlink" in w and "follow_symlinks" in w for w in p.warnings)


def test_a_password_outside_the_project_folder_is_flagged(tmp_path: Path) -> None:
    stack = tmp_path / "stack"
    stack.mkdir()
    lg = login(tmp_path / "elsewhere", make_hash("six"))
    doc = inspect_doc("cf", project="p", workdir=stack,
                      mounts=[bind(lg, "/workspace/ComfyUI/login")])
    p = analyse([doc], {"http://127.0.0.1:18188": LOGIN_401})
    (loc,) = p.locations
    assert loc.outside_project
    assert "outside the compose project's folder" in loc.evidence
    assert any("outside the compose project's folder" in w for w in p.warnings)
    assert str(lg / "PASSWORD") in to_toml(p, stack)  # absolute: not under the config


def test_login_installed_in_a_workspace_mount_means_auth(tmp_path: Path) -> None:
    """No answer (stopped container), but custom_nodes/ComfyUI-Login in the mounted
    workspace: a ComfyUI with auth, its PASSWORD under the same mount."""
    ws = tmp_path / "workspace"
    (ws / "custom_nodes" / "ComfyUI-Login").mkdir(parents=True)
    h = make_hash("seven")
    login(ws, h)
    doc = inspect_doc("cf", mounts=[bind(ws, "/workspace/ComfyUI")], image="custom:1")
    doc["State"]["Status"] = "exited"
    p = analyse([doc], {})
    (svc,) = p.services
    assert (svc.kind, svc.auth, svc.running) == ("comfyui", True, False)
    assert any("custom_nodes/ComfyUI-Login" in e for e in svc.evidence)
    (loc,) = p.locations
    assert loc.path == ws / "login" / "PASSWORD" and loc.fingerprint == fingerprint(h)


def test_same_service_in_two_projects_is_reported_not_guessed(tmp_path: Path) -> None:
    docs = [inspect_doc("a-cf-1", project="a", service="cf", host_port=18001),
            inspect_doc("b-cf-1", project="b", service="cf", host_port=18002)]
    answers = {"http://127.0.0.1:18001": LOGIN_401, "http://127.0.0.1:18002": LOGIN_401}
    p = analyse(docs, answers)
    assert p.services == []
    (amb,) = p.ambiguous
    assert sorted(amb.candidates) == [("a", "a-cf-1"), ("b", "b-cf-1")]
    assert "not guessed" in " ".join(p.warnings)
    chosen = analyse(docs, answers, projects=["b"])
    assert [(s.name, s.container) for s in chosen.services] == [("cf", "b-cf-1")]


def test_no_comfyui_is_said(tmp_path: Path) -> None:
    p = analyse([inspect_doc("db", port=5432, host_port=15432, image="postgres")],
                {"http://127.0.0.1:15432": Answer(error="connected, the answer is not HTTP")})
    assert p.services == [] and p.locations == []
    assert p.warnings[0].startswith("no ComfyUI found on this host (1 container(s)")
    assert p.skipped == ["db: no HTTP answer on its published ports"]


def test_published_addresses_become_urls_the_host_can_reach() -> None:
    doc = inspect_doc("x")
    doc["NetworkSettings"]["Ports"] = {
        "8188/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8188"},
                     {"HostIp": "::", "HostPort": "8188"}],
        "9000/tcp": [{"HostIp": "::", "HostPort": "9000"}],
        "9100/tcp": [{"HostIp": "10.0.0.5", "HostPort": "9100"}],
        "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "53"}],
        "7000/tcp": None,
    }
    assert discover._urls(doc) == [(8188, "http://127.0.0.1:8188"),
                                   (9000, "http://[::1]:9000"),
                                   (9100, "http://10.0.0.5:9100")]


def test_env_file_forms_of_a_compose_file() -> None:
    text = """\
x-common: &c
  env_file: ignored.env
services:
  a:
    image: x
    env_file: a.env   # a comment
  b:
    env_file: [b1.env, "b2.env"]
  c:
    environment:
      X: "1"
    env_file:
      - c1.env
      - path: ./c2.env
        required: false
      - c3.env
  d:
    image: y
volumes:
  env_file:
"""
    assert discover._compose_env_files(text) == [
        ("a", "a.env"), ("b", "b1.env"), ("b", "b2.env"), ("c", "c1.env"),
        ("c", "./c2.env"), ("c", "c3.env")]


# ------------------------------------------------------------------ writing


def test_write_backs_up_an_existing_file_and_is_private(tmp_path: Path) -> None:
    target = tmp_path / "genai-tui.toml"
    target.write_text("# mine\n")
    target.chmod(0o644)
    result = write_config("# new\n", target, now=1_700_000_000)
    assert target.read_text() == "# new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert result.backup is not None and result.backup.name.startswith("genai-tui.toml.bak.")
    assert result.backup.read_text() == "# mine\n"
    assert stat.S_IMODE(result.backup.stat().st_mode) == 0o600
    again = write_config("# newer\n", target, now=1_700_000_000)  # same second
    assert again.backup != result.backup and again.backup.read_text() == "# new\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".genai-tui.tmp")]


def test_write_refuses_a_symlink_or_a_special_file(tmp_path: Path) -> None:
    real = tmp_path / "real.toml"
    real.write_text("# keep\n")
    link = tmp_path / "link.toml"
    link.symlink_to(real)
    with pytest.raises(discover.WriteRefused, match="symlink"):
        write_config("# x\n", link)
    assert real.read_text() == "# keep\n" and link.is_symlink()
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    with pytest.raises(discover.WriteRefused, match="FIFO"):
        write_config("# x\n", fifo)  # refused at once, never blocks
    with pytest.raises(discover.WriteRefused, match="no such folder"):
        write_config("# x\n", tmp_path / "missing" / "c.toml")


# ------------------------------------------------------------------ the command


def test_init_says_which_engine_is_unreachable(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    monkeypatch.chdir(tmp_path)
    code = cli.main(["init", "--write", str(tmp_path / "c.toml"), "--yes"])
    out, err = capsys.readouterr()
    assert code == 3
    assert f"cannot reach the Docker engine at unix://{tmp_path}/no-engine.sock" in err
    assert not (tmp_path / "c.toml").exists()
    code = cli.main(["init", "--json", "--docker-host", "tcp://127.0.0.1:1"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 3 and "tcp://127.0.0.1:1" in doc["error"]


def test_the_dashboard_offers_discovery_only_without_config_and_stack(tmp_path: Path) -> None:
    from genai_tui.config import load
    from genai_tui.model import MISSING, ContainerInfo

    defaults = load(env={"HOME": str(tmp_path)}, cwd=tmp_path)  # no file: the reference stack
    assert defaults.path is None
    missing = [ContainerInfo(service=s.name, container=s.container_name, state=MISSING)
               for s in defaults.services]
    assert discover.offer_discovery(defaults, missing) == (
        "no config found — press i to discover the services on this host")
    running = [*missing[1:], ContainerInfo(service="comfyui-qwen", container="comfyui-qwen",
                                           state="running")]
    assert discover.offer_discovery(defaults, running) is None
    (tmp_path / "genai-tui.toml").write_text(
        '[[services]]\nname = "a"\nurl = "http://127.0.0.1:1"\n')
    with_file = load(env={"HOME": str(tmp_path)}, cwd=tmp_path)
    assert discover.offer_discovery(with_file, [missing[0]]) is None
