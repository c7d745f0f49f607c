"""Unify against a real container running the ComfyUI-Login simulator: the server keeps the
hash it loaded at start-up, so after unify the probe says "rejected" until the restart,
and "enforced" after it (and its log shows the new token line)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from genai_tui.config import Config, ServiceConfig, TokenLocation, TokensConfig
from genai_tui.secret import fingerprint
from genai_tui.sources import probes
from genai_tui.sources import tokens as tk
from genai_tui.sources.docker import DockerSource
from tests.conftest import host_port, wait_for, wait_port
from tests.tokens_helpers import leaks, new_pair

ROOT = Path(__file__).resolve().parents[2]


def stack_config(tmp_path: Path, container, login: Path, canonical_hash: str) -> Config:
    secrets_file = tmp_path / "qwen-api-user.token"
    secrets_file.write_text(canonical_hash + "\n")
    secrets_file.chmod(0o600)
    svc = ServiceConfig("qwen", f"http://127.0.0.1:{host_port(container)}", "comfyui",
                        container=container.name, auth=True)
    tokens = TokensConfig(
        canonical="secrets", restart_after_unify=("qwen",),
        locations=(TokenLocation("secrets", secrets_file, "hash_file"),
                   TokenLocation("password", login / "PASSWORD", "password_file")),
        backup_dir=tmp_path / ".genai-tui" / "backups",
        audit_log=tmp_path / ".genai-tui" / "audit.jsonl")
    return Config(services=(svc,), tokens=tokens, base_dir=tmp_path)


def token_fp_in_logs(container) -> str | None:
    container.reload()
    return tk.token_fingerprint_from_log(container.logs().decode("utf-8", "replace"))


def test_unify_then_restart_loads_the_new_hash(tmp_path, login_dir, sim_container):
    _, old = new_pair()
    _, new = new_pair()
    login = login_dir(old)
    c = sim_container(login_dir=login)
    wait_port(host_port(c))
    cfg = stack_config(tmp_path, c, login, new)

    # before: the server runs with the old hash; the disk's canonical hash is refused
    before = probes.probe_once(cfg, tk.canonical_hash(cfg.tokens))[0]
    assert before.auth == "rejected"
    wait_for(lambda: token_fp_in_logs(c) == fingerprint(old))
    report = tk.read_report(cfg.tokens)
    assert not report.consistent
    source = DockerSource(cfg)
    try:
        events = tk.log_events_for_check(cfg, source, source.list_stack())
    finally:
        source.close()
    servers = tk.server_status(report, [before], events)
    assert servers[0].uses_disk_hash is False
    assert servers[0].log_fingerprint == fingerprint(old)

    # unify rewrites PASSWORD, but ComfyUI-Login only reads it at start-up
    plan = tk.plan_unify(cfg.tokens)
    assert [ch.location for ch in plan.changes] == ["password"]
    tk.apply_plan(cfg.tokens, plan)
    assert (login / "PASSWORD").read_text() == f"{new}\nadmin"
    assert probes.probe_once(cfg, new)[0].auth == "rejected"  # stale until restarted

    restarted = tk.restart_services(cfg, ["qwen"])
    assert restarted[0][:2] == ("qwen", True), restarted
    after = tk.probe_after_restart(cfg, ["qwen"], wait=30)
    assert after[0].auth == "enforced", after[0]
    wait_for(lambda: token_fp_in_logs(c) == fingerprint(new))
    report = tk.read_report(cfg.tokens)
    assert report.consistent
    assert tk.server_status(report, after, [])[0].uses_disk_hash is True


def test_cli_unify_yes_restart(tmp_path, login_dir, sim_container):
    _, old = new_pair()
    _, new = new_pair()
    login = login_dir(old)
    c = sim_container(login_dir=login)
    port = host_port(c)
    wait_port(port)
    (tmp_path / "qwen-api-user.token").write_text(new + "\n")
    config = tmp_path / "genai-tui.toml"
    config.write_text(f"""
[[services]]
name = "qwen"
url = "http://127.0.0.1:{port}"
kind = "comfyui"
container = "{c.name}"
auth = true

[tokens]
canonical = "secrets"
restart_after_unify = ["qwen"]
[[tokens.locations]]
name = "secrets"
path = "qwen-api-user.token"
format = "hash_file"
[[tokens.locations]]
name = "password"
path = "{login}/PASSWORD"
format = "password_file"
""")
    status = subprocess.run([sys.executable, "-m", "genai_tui", "--config", str(config),
                             "tokens", "status"], capture_output=True, text=True, cwd=ROOT,
                            timeout=60)
    # critical, as `check` says of the same state (token_rejected): the faces agree
    assert status.returncode == 2
    assert "server qwen: does NOT use the hash on disk" in status.stdout
    proc = subprocess.run([sys.executable, "-m", "genai_tui", "--config", str(config),
                           "tokens", "unify", "--yes", "--restart", "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["applied"] is True
    assert doc["restart"][0]["ok"] is True
    assert doc["probes"][0]["auth"] == "enforced"
    after = subprocess.run([sys.executable, "-m", "genai_tui", "--config", str(config),
                            "tokens", "status"], capture_output=True, text=True, cwd=ROOT,
                           timeout=60)
    # in force now; what is left is the world-readable copies, a warning as in `check`
    assert after.returncode == 1, after.stdout
    assert "server qwen: uses the hash on disk" in after.stdout
    assert "token_stale" not in after.stdout and "does NOT use" not in after.stdout
    assert "world_readable" in after.stdout
    everything = status.stdout + status.stderr + proc.stdout + proc.stderr + after.stdout
    assert not leaks(everything, [old, new])
