"""`check` runs every minute: a bcrypt verification (~0.25 s at ComfyUI-Login's cost 12)
is paid once per unchanged (raw, hash) pair, not once per run, and what is kept on disk
gives nothing away."""

from __future__ import annotations

import os
import subprocess
import sys

import bcrypt
import pytest

from genai_tui import secret
from genai_tui.sources.tokens import read
from tests.tokens_helpers import leaks, make_stack, new_pair, write_config


@pytest.fixture
def counted(monkeypatch):
    calls: list[int] = []
    real = bcrypt.checkpw

    def checkpw(raw: bytes, hashed: bytes) -> bool:
        calls.append(1)
        return real(raw, hashed)

    monkeypatch.setattr(read.bcrypt, "checkpw", checkpw)
    yield calls
    read.use_verdict_cache(None)


def new_run(state_dir) -> None:
    """What a fresh `check` process starts with: empty memory, the install's key."""
    read._CHECK_CACHE.clear()
    assert secret.use_key_file(state_dir) is None
    read.use_verdict_cache(state_dir)


def raw_state(stack) -> str:
    report = read.read_report(stack.tokens)
    return next(loc.state for loc in report.locations if loc.name == "env-raw")


def test_second_run_pays_no_bcrypt_and_a_changed_file_is_verified_again(tmp_path, counted):
    stack = make_stack(tmp_path)
    state = stack.tokens.state_dir
    new_run(state)
    assert raw_state(stack) == "ok"
    first = len(counted)
    assert first >= 1
    new_run(state)
    assert raw_state(stack) == "ok"
    assert len(counted) == first, "the unchanged pair was verified again in a new run"

    # the raw token is replaced by one that does not verify: never the stored verdict
    env = stack.path("env-raw")
    other_raw, _ = new_pair()
    env.write_text(env.read_text().replace(stack.raw, other_raw))
    new_run(state)
    assert raw_state(stack) == "raw_mismatch"
    assert len(counted) > first


def test_the_verdict_file_is_private_and_holds_nothing_printable(tmp_path, counted):
    stack = make_stack(tmp_path)
    new_run(stack.tokens.state_dir)
    report = read.read_report(stack.tokens)
    path = stack.tokens.state_dir / read.VERDICT_FILE
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    stored = path.read_text()
    printed = [loc.fingerprint for loc in report.locations if loc.fingerprint]
    assert printed and not any(fp.removeprefix("fp:") in stored for fp in printed)
    assert not leaks(stored, stack.secrets())


def test_a_verdict_file_others_could_write_is_not_trusted(tmp_path, counted):
    """A false "verifies" planted by someone else must not hide a mismatch."""
    stack = make_stack(tmp_path)
    state = stack.tokens.state_dir
    env = stack.path("env-raw")
    other_raw, _ = new_pair()
    env.write_text(env.read_text().replace(stack.raw, other_raw))
    new_run(state)
    assert raw_state(stack) == "raw_mismatch"
    path = state / read.VERDICT_FILE
    path.write_text(path.read_text().replace(" 0\n", " 1\n"))
    path.chmod(0o666)
    new_run(state)
    before = len(counted)
    assert raw_state(stack) == "raw_mismatch"
    assert len(counted) > before
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_check_from_the_cli_keeps_verdicts_across_runs(tmp_path):
    stack = make_stack(tmp_path)
    cfg = write_config(stack)
    cmd = [sys.executable, "-m", "genai_tui", "tokens", "status", "--no-server", "--json",
           "--config", str(cfg)]
    env = {**os.environ, "NO_COLOR": "1"}
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    path = stack.tokens.state_dir / read.VERDICT_FILE
    assert path.is_file(), first.stderr
    mtime = path.stat().st_mtime_ns
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert second.stdout == first.stdout
    assert path.stat().st_mtime_ns == mtime, "nothing new to store on an unchanged stack"
    assert not leaks(first.stdout + first.stderr, stack.secrets())
