"""`genai-tui tokens status|unify` through the real entry point: output, JSON, exit codes,
confirmation (refused without a terminal, asked on a real pty), read-only mode."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genai_tui import cli
from genai_tui.secret import fingerprint
from genai_tui.sources import tokens as tk
from tests.tokens_helpers import make_stack, new_pair, write_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack(tmp_path):
    st = make_stack(tmp_path)
    return st, write_config(st)


def drift(st):
    _, other = new_pair()
    st.path("password").write_text(f"{other}\nadmin")
    return other


def run(capsys, *args):
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_status_consistent(stack, capsys):
    st, cfg = stack
    code, out, err = run(capsys, "--config", str(cfg), "tokens", "status", "--no-server")
    assert code == 0, err
    assert "consistent: yes — 1 value (1 raw token verifies it)" in out
    assert fingerprint(st.hash) in out
    assert "login/PASSWORD" in out and str(st.root) not in out.split("\n", 1)[1]
    for header in ("NAME", "FORMAT", "STATE", "FINGERPRINT", "MODIFIED", "PROBLEMS", "PATH"):
        assert header in out


def test_status_counts_values_as_check_and_the_finding_do(stack, capsys):
    """A drifted PASSWORD: `tokens status`, `check` and the token_drift finding all say
    2 values (the raw token verifying the canonical hash is not a third)."""
    st, cfg = stack
    drift(st)
    code, out, _ = run(capsys, "--config", str(cfg), "tokens", "status", "--no-server")
    assert code == 1
    assert "consistent: NO — 2 values (1 raw token verifies a hash)" in out
    code, out, _ = run(capsys, "--config", str(cfg), "check", "--json")
    doc = json.loads(out)
    [f] = [f for f in doc["findings"] if f["code"] == "token_drift"]
    assert "(2 values;" in f["message"]


def test_status_inconsistent_json(stack, capsys):
    st, cfg = stack
    other = drift(st)
    code, out, _ = run(capsys, "--config", str(cfg), "tokens", "status", "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["consistent"] is False
    pw = next(loc for loc in doc["locations"] if loc["name"] == "password")
    assert pw["state"] == "mismatch" and pw["fingerprint"] == fingerprint(other)
    assert {f["fingerprint"] for f in doc["fingerprints"]} >= {fingerprint(st.hash),
                                                               fingerprint(other)}
    # the configured ComfyUI service is not running: the server verdict is unknown
    assert doc["servers"] and doc["servers"][0]["uses_disk_hash"] is None


def test_unify_refuses_without_yes_when_there_is_no_terminal(stack, capsys):
    st, cfg = stack
    drift(st)
    before = st.snapshot()
    code, out, err = run(capsys, "--config", str(cfg), "tokens", "unify")
    assert code == 2
    assert "refusing to change files without --yes" in err
    assert "password" in out  # the plan was shown
    assert st.snapshot() == before


def test_dry_run_then_yes_then_nothing_to_do(stack, capsys):
    st, cfg = stack
    drift(st)
    before = st.snapshot()
    code, out, _ = run(capsys, "--config", str(cfg), "tokens", "unify", "--dry-run")
    assert code == 1 and "dry run: nothing written" in out and st.snapshot() == before
    code, out, _ = run(capsys, "--config", str(cfg), "tokens", "unify", "--yes",
                       "--no-restart")
    assert code == 0, out
    assert "done: 1 location(s) now hold" in out and "backup: .genai-tui/backups/" in out
    assert "restart needed" not in out  # no restart_after_unify in this config
    code, out, _ = run(capsys, "--config", str(cfg), "tokens", "unify", "--yes")
    assert code == 0 and "nothing to change: 5 location(s) already hold" in out


def test_restart_hint_after_a_change(stack, capsys):
    st, cfg = stack
    cfg.write_text(cfg.read_text().replace('[tokens]\n', '[tokens]\n'
                                           'restart_after_unify = ["qwen"]\n'))
    drift(st)
    code, out, _ = run(capsys, "--config", str(cfg), "tokens", "unify", "--yes")
    assert code == 1  # written, but not in force until the server restarts
    assert ("restart needed (qwen: PASSWORD changed; the server could not be asked "
            "(refused)): docker restart gtt-never-created") in out
    assert "docker compose up -d" not in out  # no compose env file changed


def test_unify_json(stack, capsys):
    st, cfg = stack
    drift(st)
    code, out, _ = run(capsys, "--config", str(cfg), "tokens", "unify", "--yes", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["applied"] is True
    assert [c["location"] for c in doc["plan"]["changes"]] == ["password"]
    assert doc["result"]["changed"] == ["password"]


def test_unknown_source_and_readonly(stack, capsys):
    st, cfg = stack
    code, _, err = run(capsys, "--config", str(cfg), "tokens", "unify", "--from", "nope")
    assert code == 3 and "unknown token location 'nope'" in err
    drift(st)
    before = st.snapshot()
    code, _, err = run(capsys, "--config", str(cfg), "--readonly", "tokens", "unify", "--yes")
    assert code == 2 and "read-only" in err
    assert st.snapshot() == before


def test_blocked_location_gives_a_warning_exit(stack, capsys):
    st, cfg = stack
    p = st.path("env-raw")
    p.write_bytes(p.read_bytes().replace(st.raw.encode(), b"some-other-raw"))
    code, out, _ = run(capsys, "--config", str(cfg), "tokens", "unify", "--yes")
    assert code == 1
    assert "left unchanged env-raw" in out and "--rotate" in out


def test_rotate(stack, capsys):
    st, cfg = stack
    code, out, _ = run(capsys, "--config", str(cfg), "tokens", "unify", "--rotate", "--yes",
                       "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["plan"]["rotate"] is True and len(doc["result"]["changed"]) == 5
    assert tk.canonical_hash(tk_config(cfg)) != st.hash


def tk_config(path):
    from genai_tui import config

    return config.load_file(path, env={}).tokens


def test_bad_config_is_exit_3(tmp_path, capsys):
    bad = tmp_path / "c.toml"
    bad.write_text("[tokens]\ncanonical = 'x'\n[[tokens.locations]]\nname='y'\n")
    code, _, err = run(capsys, "--config", str(bad), "tokens", "status")
    assert code == 3 and "bad config" in err


def _pty_run(args: list[str], answer: bytes, timeout: float = 30.0) -> tuple[int, str]:
    """Run the CLI with a real terminal on stdin; answer the first question."""
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "genai_tui", *args], stdin=slave,
                            stdout=subprocess.PIPE, stderr=slave, env=env, cwd=ROOT)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + timeout
    answered = False
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
            if not answered and b"[y/N]" in seen:
                os.write(master, answer)
                answered = True
        out = proc.communicate(timeout=timeout)[0].decode()
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out + seen.decode(errors="replace")


def test_confirmation_on_a_terminal(stack):
    st, cfg = stack
    drift(st)
    before = st.snapshot()
    code, out = _pty_run(["--config", str(cfg), "tokens", "unify"], b"n\n")
    assert code == 2 and "cancelled: nothing written" in out
    assert st.snapshot() == before
    code, out = _pty_run(["--config", str(cfg), "tokens", "unify", "--no-restart"], b"y\n")
    assert code == 0, out
    assert "Apply these 1 change(s)? [y/N]" in out and "done:" in out
    assert tk.read_report(tk_config(cfg)).consistent
