"""Config parsing: the public TOML format, discovery order, defaults, and every mistake
reported as one clear message (file, line or key, what is expected) with exit status 3."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from genai_tui import config

GOOD = """
[docker]
host = "unix:///var/run/docker.sock"

[[services]]
name = "comfyui-qwen"
container = "comfyui-qwen"
url = "http://127.0.0.1:8188"
kind = "comfyui"
auth = true

[[services]]
name = "orchestrator"
url = "http://127.0.0.1:${ORCH_PORT:-8193}/"
kind = "orchestrator"
health_path = "/health"

[tokens]
canonical = "secrets"
restart_after_unify = ["comfyui-qwen"]
[[tokens.locations]]
name = "secrets"
path = ".secrets/qwen-api-user.token"
format = "hash_file"
[[tokens.locations]]
name = "env"
path = "/abs/.env"
format = "env"
key = "COMFYUI_API_TOKEN"
"""


def write(tmp_path: Path, text: str, name: str = "genai-tui.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_good_file_parses_with_relative_paths_from_the_config_folder(tmp_path):
    cfg = config.load_file(write(tmp_path, GOOD), env={})
    assert [s.name for s in cfg.services] == ["comfyui-qwen", "orchestrator"]
    qwen, orch = cfg.services
    assert qwen.kind == "comfyui" and qwen.auth and qwen.container_name == "comfyui-qwen"
    assert orch.url == "http://127.0.0.1:8193"  # default interpolated, trailing / dropped
    assert orch.container_name == "orchestrator"  # container defaults to the name
    assert cfg.docker.host == "unix:///var/run/docker.sock"
    assert cfg.tokens.canonical == "secrets"
    assert cfg.tokens.restart_after_unify == ("comfyui-qwen",)
    assert cfg.tokens.locations[0].path == tmp_path.resolve() / ".secrets/qwen-api-user.token"
    assert cfg.tokens.locations[1].path == Path("/abs/.env")
    assert cfg.tokens.backup_dir == tmp_path.resolve() / ".genai-tui/backups"
    assert cfg.probes.interval == 5.0 and cfg.probes.connect_timeout == 1.0
    assert cfg.probes.read_timeout == 3.0


def test_env_and_dotenv_beside_the_config_feed_interpolation(tmp_path):
    (tmp_path / ".env").write_text("ORCH_PORT=8090\n")
    cfg = config.load_file(write(tmp_path, GOOD), env={})
    assert cfg.service("orchestrator").url == "http://127.0.0.1:8090"
    cfg = config.load_file(write(tmp_path, GOOD), env={"ORCH_PORT": "9000"})
    assert cfg.service("orchestrator").url == "http://127.0.0.1:9000"


def test_defaults_are_the_reference_stack(tmp_path):
    cfg = config.load(env={"HOME": str(tmp_path)}, cwd=tmp_path)
    assert cfg.path is None
    ports = {s.name: s.host_port[1] for s in cfg.services}
    assert ports == {"comfyui-qwen": 8188, "flux-1-dev": 8189, "stable-diffusion-35": 8190,
                     "orchestrator": 8193}
    assert cfg.service("orchestrator").kind == "orchestrator"
    names = {loc.name: loc for loc in cfg.tokens.locations}
    assert cfg.tokens.canonical == "secrets"
    assert names["secrets"].path == tmp_path.resolve() / ".secrets/qwen-api-user.token"
    assert {loc.format for loc in names.values()} == set(config.TOKEN_FORMATS)


def test_discovery_order(tmp_path, monkeypatch):
    xdg = tmp_path / "xdg"
    (xdg / "genai-tui").mkdir(parents=True)
    user = write(xdg / "genai-tui", GOOD, "config.toml")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {"XDG_CONFIG_HOME": str(xdg), "HOME": str(tmp_path)}
    assert config.discover(None, env, cwd) == user
    local = write(cwd, GOOD)
    assert config.discover(None, env, cwd) == local
    env["GENAI_TUI_CONFIG"] = "/from/env.toml"
    assert config.discover(None, env, cwd) == Path("/from/env.toml")
    assert config.discover("/from/cli.toml", env, cwd) == Path("/from/cli.toml")
    home_cfg = tmp_path / ".config" / "genai-tui"
    home_cfg.mkdir(parents=True)
    home_file = write(home_cfg, GOOD, "config.toml")
    assert config.discover(None, {"HOME": str(tmp_path)}, tmp_path) == home_file


BAD = [
    ("syntax", "[[services]\nname = 1", ["line 1", "TOML syntax error"]),
    ("unknown top key", GOOD + "\n[colours]\nx = 1\n", ["colours", "unknown key"]),
    ("unknown service key", GOOD.replace('auth = true', 'auth = true\nport = 8188'),
     ["line 11", "services[0].port", "unknown key", "expected one of"]),
    ("wrong type", GOOD.replace("auth = true", 'auth = "yes"'),
     ["line 10", "services[0].auth", "expected true or false, got a string"]),
    ("wrong type number", GOOD + "\n[probes]\ninterval = \"5s\"\n",
     ["probes.interval", "expected a number, got a string"]),
    ("unknown kind", GOOD.replace('kind = "orchestrator"', 'kind = "orchestrater"'),
     ["line 15", "services[1].kind", "unknown value 'orchestrater'",
      "comfyui, orchestrator, http"]),
    ("unknown format", GOOD.replace('format = "hash_file"', 'format = "hashfile"'),
     ["tokens.locations[0].format", "unknown value 'hashfile'", "password_file"]),
    ("duplicate service", GOOD.replace('name = "orchestrator"', 'name = "comfyui-qwen"'),
     ["services[1].name", "duplicate service name 'comfyui-qwen'"]),
    ("missing url", GOOD.replace('url = "http://127.0.0.1:8188"\n', ""),
     ["services[0].url", "is required"]),
    ("bad url", GOOD.replace('"http://127.0.0.1:8188"', '"127.0.0.1:8188"'),
     ["services[0].url", "expected an http(s):// URL"]),
    ("env needs key", GOOD.replace('key = "COMFYUI_API_TOKEN"\n', ""),
     ["tokens.locations[1].key", "is required for format 'env'"]),
    ("unknown canonical", GOOD.replace('canonical = "secrets"', 'canonical = "nope"'),
     ["tokens.canonical", "'nope' is not the name"]),
    ("restart unknown service", GOOD.replace('["comfyui-qwen"]', '["ghost"]'),
     ["tokens.restart_after_unify", "'ghost' is not a configured service"]),
    ("services not a list", 'services = "x"\n', ["services", "expected an array of tables"]),
]


@pytest.mark.parametrize("label,text,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_config_names_file_location_and_expectation(tmp_path, label, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(config.ConfigError) as err:
        config.load_file(path, env={})
    message = str(err.value)
    assert message.startswith(str(path))
    for part in expected:
        assert part in message, (part, message)


def test_missing_and_undecodable_files(tmp_path):
    with pytest.raises(config.ConfigError, match="file not found"):
        config.load_file(tmp_path / "nope.toml")
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(config.ConfigError, match="cannot read"):
        config.load_file(bad)


@pytest.mark.parametrize("label,text,expected", BAD[:3], ids=[b[0] for b in BAD[:3]])
def test_cli_bad_config_exit_3_without_traceback(tmp_path, label, text, expected):
    path = write(tmp_path, text)
    for args in ([], ["check"], ["check", "--json"], ["tokens", "status"]):
        proc = subprocess.run([sys.executable, "-m", "genai_tui", "--config", str(path), *args],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 3, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert str(path) in proc.stderr and expected[0] in proc.stderr


def test_keys_table_accepts_known_actions_only(tmp_path):
    text = GOOD + '\n[keys]\nrestart = "ctrl+r"\nfollow = "space"\n'
    cfg = config.load_file(write(tmp_path, text), env={})
    assert dict(cfg.keys) == {"restart": "ctrl+r", "follow": "space"}
    with pytest.raises(config.ConfigError, match=r"keys\.reboot: unknown key"):
        config.load_file(write(tmp_path, GOOD + '\n[keys]\nreboot = "x"\n'), env={})


def test_app_and_log_panel_bindings_match_the_configurable_actions():
    """Every `[keys]` name maps to a real binding id, so a rebinding is never silently lost."""
    from genai_tui.ui.app import KEYS
    from genai_tui.ui.logs import LogPanel

    ids = {f"genai.{k}" for k in KEYS} | {b.id for b in LogPanel.BINDINGS if b.id}
    for action in config.KEY_ACTIONS:
        assert f"genai.{action}" in ids or f"logs.{action}" in ids, action
