"""Unify under hostile conditions: symlinks planted in a container-writable folder, raw
passwords and offline guessing, two unify runs at once, FIFOs, shared backup folders,
litter from killed runs and a full disk. Each test names the user-visible promise."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from genai_tui import cli, secret
from genai_tui.config import TokenLocation
from genai_tui.secret import fingerprint, raw_label
from genai_tui.sources import tokens as tk
from tests.tokens_helpers import load, make_stack, new_pair, write_config

IS_ROOT = os.geteuid() == 0


def run(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out + err


def diverge(st) -> str:
    _, other = new_pair()
    st.path("password").write_text(f"{other}\nadmin")
    return other


def with_location(st, name: str, **changes) -> None:
    st.locations = [replace(loc, **changes) if loc.name == name else loc
                    for loc in st.locations]


# ---------------------------------------------------------------- 1. symlinks


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the stack's folder that a planted link points at (a passwd-like
    file: line 1 is what unify would replace)."""
    victim = tmp_path / "elsewhere" / "passwd"
    victim.parent.mkdir()
    victim.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/:/bin/false\n")
    return victim


def test_link_out_of_the_stack_is_blocked_and_never_written(tmp_path, outside, capsys):
    st = make_stack(tmp_path / "stack")
    diverge(st)
    pw = st.path("password")
    pw.unlink()
    pw.symlink_to(outside)  # what code in the ComfyUI container could plant
    before = outside.read_bytes()
    plan = tk.plan_unify(st.tokens)
    blocked = {b.location: b.reason for b in plan.blocked}
    assert "password" in blocked
    assert str(outside) in blocked["password"] and "outside" in blocked["password"]
    assert "password" not in [c.location for c in plan.changes]
    code, out = run(capsys, "--config", str(write_config(st)), "tokens", "unify", "--yes")
    assert outside.read_bytes() == before
    assert os.path.islink(pw)
    assert str(outside) in out  # the plan names the real target


def test_link_through_a_folder_out_of_the_stack_is_blocked(tmp_path, outside):
    st = make_stack(tmp_path / "stack")
    login = st.path("password").parent
    (outside.parent / "PASSWORD").write_text("keep me\n")
    for p in login.iterdir():
        p.unlink()
    login.rmdir()
    login.symlink_to(outside.parent)  # the folder itself is the link
    diverge(st)
    plan = tk.plan_unify(st.tokens)
    assert any(b.location == "password" and "outside" in b.reason for b in plan.blocked)
    tk.apply_plan(st.tokens, plan)
    assert (outside.parent / "PASSWORD").read_text().startswith("$2")  # diverge wrote it
    assert outside.read_text().startswith("root:")


def test_dangling_link_is_never_created_through_even_when_following_is_allowed(tmp_path):
    st = make_stack(tmp_path / "stack")
    target = tmp_path / "authorized_keys"  # does not exist yet
    pw = st.path("password")
    pw.unlink()
    pw.symlink_to(target)
    with_location(st, "password", follow_symlinks=True)
    plan = tk.plan_unify(st.tokens)
    assert any(b.location == "password" and "dangling" in b.reason for b in plan.blocked)
    tk.apply_plan(st.tokens, plan)
    assert not target.exists()


@pytest.mark.skipif(not IS_ROOT, reason="needs root to make a folder of another user")
def test_link_into_another_users_folder_is_blocked(tmp_path):
    st = make_stack(tmp_path / "stack")
    foreign = st.root / "other-user"
    foreign.mkdir()
    (foreign / "PASSWORD").write_text("theirs\n")
    os.chown(foreign, 12345, 12345)
    pw = st.path("password")
    pw.unlink()
    pw.symlink_to(foreign / "PASSWORD")
    plan = tk.plan_unify(st.tokens)
    assert any(b.location == "password" and "another user (uid 12345)" in b.reason
               for b in plan.blocked)


def test_follow_symlinks_allows_it_and_the_plan_shows_the_real_file(tmp_path, capsys):
    st = make_stack(tmp_path / "stack")
    shared = tmp_path / "shared-login"
    shared.mkdir()
    real = shared / "PASSWORD"
    real.write_text(st.path("password").read_text())
    pw = st.path("password")
    pw.unlink()
    pw.symlink_to(real)
    other = diverge(st)  # writes through the link: the real file now differs
    assert other in real.read_text()
    cfg = write_config(st)
    text = cfg.read_text().replace('path = "login/PASSWORD"',
                                   'path = "login/PASSWORD"\nfollow_symlinks = true')
    cfg.write_text(text)
    code, out = run(capsys, "--config", str(cfg), "tokens", "unify", "--yes")
    assert code == 0, out
    assert f"login/PASSWORD → {real}" in out
    assert real.read_text().startswith(st.hash)
    assert os.path.islink(pw)  # the link is kept, its target rewritten


def test_file_swapped_for_a_link_after_the_plan_is_refused(tmp_path, outside):
    st = make_stack(tmp_path / "stack")
    diverge(st)
    plan = tk.plan_unify(st.tokens)
    assert "password" in [c.location for c in plan.changes]
    pw = st.path("password")
    pw.unlink()
    pw.symlink_to(outside)  # between the plan and the write
    before = outside.read_bytes()
    with pytest.raises(tk.UnifyError, match="nothing was written"):
        tk.apply_plan(st.tokens, plan)
    assert outside.read_bytes() == before
    assert st.path("secrets").read_text().strip() == st.hash


def test_folder_swapped_for_a_link_after_the_plan_is_refused(tmp_path, outside):
    st = make_stack(tmp_path / "stack")
    diverge(st)
    plan = tk.plan_unify(st.tokens)
    login = st.path("password").parent
    (outside.parent / "PASSWORD").write_bytes(st.path("password").read_bytes())
    login.rename(st.root / "login.old")
    login.symlink_to(outside.parent)
    with pytest.raises(tk.UnifyError, match="nothing was written"):
        tk.apply_plan(st.tokens, plan)
    assert not (outside.parent / "PASSWORD").read_text().startswith(st.hash)


# ---------------------------------------------------------------- 2. fingerprints


def _unkeyed(value: str) -> str:
    """The old, unsalted fingerprint: what a dictionary attack would test guesses with."""
    return "fp:" + hashlib.sha256(b"genai-tui fingerprint v1\0" + value.encode()).hexdigest()[:10]


def test_raw_password_cannot_be_guessed_from_anything_printed(tmp_path, capsys):
    st = make_stack(tmp_path / "stack")
    cfg = write_config(st)
    outputs = []
    for args in (["tokens", "status"], ["tokens", "status", "--json"], ["check", "--json"],
                 ["tokens", "unify", "--rotate", "--dry-run", "--json"]):
        outputs.append(run(capsys, "--config", str(cfg), *args)[1])
    diverge(st)
    outputs.append(run(capsys, "--config", str(cfg), "tokens", "unify", "--yes")[1])
    outputs.append((st.root / ".genai-tui" / "audit.jsonl").read_text())
    blob = "\n".join(outputs)
    assert "raw→fp:" in blob  # the raw token is named by the hash it verifies
    for value in (st.raw, st.hash):
        assert value not in blob
        assert _unkeyed(value) not in blob  # nothing to test a dictionary against
    secret.set_key(tk_key(st))
    assert fingerprint(st.raw) not in blob  # not even keyed: raw is never fingerprinted


def tk_key(st) -> bytes:
    return (st.root / ".genai-tui" / secret.KEY_FILE).read_bytes()


def test_fingerprint_key_is_private_per_install_and_stable(tmp_path, capsys):
    a, b = make_stack(tmp_path / "a"), make_stack(tmp_path / "b")
    b_hash_file = b.path("secrets")
    b_hash_file.write_text(a.hash + "\n")  # the same value in both installs
    fps = []
    for st in (a, b, a):
        code, out = run(capsys, "--config", str(write_config(st)), "tokens", "status",
                         "--json")
        doc = json.loads(out)
        fps.append(next(s["fingerprint"] for s in doc["locations"] if s["name"] == "secrets"))
        key = st.root / ".genai-tui" / secret.KEY_FILE
        assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == 32
    assert fps[0] == fps[2]  # stable across runs of one install
    assert fps[0] != fps[1]  # another install's key gives another fingerprint


def test_a_key_file_others_could_write_is_not_used(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / secret.KEY_FILE).write_bytes(b"k" * 32)
    os.chmod(state / secret.KEY_FILE, 0o666)
    problem = secret.use_key_file(state)
    assert problem is not None and "0600" in problem
    (state / secret.KEY_FILE).unlink()
    os.mkfifo(state / secret.KEY_FILE)
    assert "not a regular file" in (secret.use_key_file(state) or "")


def test_raw_verifying_another_copy_names_that_copy(tmp_path):
    st = make_stack(tmp_path)
    raw2, hash2 = new_pair()
    st.path("password").write_text(f"{hash2}\nadmin")
    env = st.path("env-raw")
    env.write_text(env.read_text().replace(st.raw, raw2))
    report = tk.read_report(st.tokens)
    s = next(x for x in report.locations if x.name == "env-raw")
    assert s.state == "raw_mismatch"
    assert s.fingerprint == raw_label(hash2)
    assert f"verifies {fingerprint(hash2)}, not the canonical hash" in s.detail


# ---------------------------------------------------------------- 5. one writer at a time


def test_two_unify_runs_at_once_never_leave_the_copies_disagreeing(tmp_path):
    """Two admins plan at the same moment from different sources, then both apply: the
    second must see what the first did (under the lock) and refuse."""
    st = make_stack(tmp_path)
    other = diverge(st)  # secrets holds st.hash, password holds `other`
    plans = [tk.plan_unify(st.tokens, "secrets"), tk.plan_unify(st.tokens, "password")]
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def go(plan):
        barrier.wait()
        try:
            tk.apply_plan(st.tokens, plan)
            outcomes.append("ok")
        except tk.UnifyError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=go, args=(p,)) for p in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(o == "ok" for o in outcomes) == [False, True]
    assert any("changed since the plan was made" in o for o in outcomes)
    report = tk.read_report(st.tokens)
    held = {s.fingerprint for s in report.locations if s.format != "raw_env"}
    assert len(held) == 1 and held <= {fingerprint(st.hash), fingerprint(other)}


def test_concurrent_cli_runs_agree_every_round(tmp_path):
    st = make_stack(tmp_path)
    cfg = write_config(st)
    cmd = [sys.executable, "-m", "genai_tui.cli", "--config", str(cfg), "tokens", "unify",
           "--yes", "--from"]
    for _ in range(6):
        diverge(st)
        procs = [subprocess.Popen(cmd + [src], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for src in ("secrets", "password")]
        for p in procs:
            p.communicate(timeout=60)
        report = tk.read_report(load(cfg).tokens)
        held = {s.fingerprint for s in report.locations if s.format != "raw_env"}
        assert len(held) == 1, held


def test_a_held_lock_makes_unify_wait_then_refuse_naming_the_holder(tmp_path):
    st = make_stack(tmp_path)
    diverge(st)
    plan = tk.plan_unify(st.tokens)
    before = st.snapshot()
    with tk.unify_lock(st.tokens):
        with pytest.raises(tk.UnifyError) as err:
            tk.apply_plan(st.tokens, plan, lock_wait=0.3)
    assert "another unify is running" in str(err.value)
    assert f"pid {os.getpid()}" in str(err.value)
    assert st.snapshot() == before
    tk.apply_plan(st.tokens, plan)  # free again


# ---------------------------------------------------------------- 6. special files


def test_fifo_as_audit_log_never_hangs(tmp_path):
    st = make_stack(tmp_path)
    audit = st.root / ".genai-tui" / "audit.jsonl"
    audit.parent.mkdir()
    os.mkfifo(audit)
    diverge(st)
    cfg = write_config(st)
    base = [sys.executable, "-m", "genai_tui.cli", "--config", str(cfg), "tokens"]
    status = subprocess.run(base + ["status"], capture_output=True, text=True, timeout=30)
    assert status.returncode == 1  # not consistent: it finished and said so
    unify = subprocess.run(base + ["unify", "--yes"], capture_output=True, text=True,
                           timeout=30)
    assert unify.returncode == 0, unify.stdout + unify.stderr
    assert f"audit log {audit}" in unify.stdout + unify.stderr
    assert "not a regular file" in unify.stdout + unify.stderr
    assert stat.S_ISFIFO(os.lstat(audit).st_mode)
    # the dashboard's status auditor returns at once too
    done = threading.Event()
    threading.Thread(target=lambda: (tk.StatusAuditor(audit).observe(
        tk.read_report(st.tokens)), done.set()), daemon=True).start()
    assert done.wait(10)


def test_audit_log_symlink_is_not_followed(tmp_path, outside):
    st = make_stack(tmp_path)
    audit = st.root / ".genai-tui" / "audit.jsonl"
    audit.parent.mkdir()
    audit.symlink_to(outside)
    before = outside.read_bytes()
    diverge(st)
    result = tk.apply_plan(st.tokens, tk.plan_unify(st.tokens))
    assert outside.read_bytes() == before
    assert any("audit log" in w for w in result.warnings)


# ---------------------------------------------------------------- 7. backup folder


def test_shared_backup_folder_keeps_its_mode_and_gets_a_private_subfolder(tmp_path):
    st = make_stack(tmp_path)
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    st_tokens = replace(st.tokens, backup_dir=shared)
    diverge(st)
    result = tk.apply_plan(st_tokens, tk.plan_unify(st_tokens))
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert result.backups
    for b in map(Path, result.backups):
        assert b.parent.parent == shared
        assert stat.S_IMODE(b.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(b.stat().st_mode) == 0o600


def test_backup_dir_dot_leaves_the_stack_root_alone(tmp_path, capsys):
    st = make_stack(tmp_path)
    os.chmod(st.root, 0o755)
    cfg = write_config(st, extra_tokens='backup_dir = "."')
    diverge(st)
    code, out = run(capsys, "--config", str(cfg), "tokens", "unify", "--yes")
    assert code == 0, out
    assert stat.S_IMODE(st.root.stat().st_mode) == 0o755


def test_old_backups_are_pruned_to_keep_backups(tmp_path, capsys):
    st = make_stack(tmp_path)
    cfg = write_config(st, extra_tokens="keep_backups = 3")
    for _ in range(6):
        code, out = run(capsys, "--config", str(cfg), "tokens", "unify", "--rotate", "--yes")
        assert code in (0, 1), out
    assert "pruned" in out
    backups = sorted(p.name for p in (st.root / ".genai-tui" / "backups").iterdir())
    for loc in ("secrets", "password", "env-main", "conf"):
        assert len([n for n in backups if f"-{loc}-" in n]) == 3, backups
    entry = tk.read_audit(st.root / ".genai-tui" / "audit.jsonl")[-1]
    assert entry["pruned_backups"] >= 1


# ---------------------------------------------------------------- 8. litter


def test_temp_files_left_by_a_killed_run_are_removed_by_the_next(tmp_path):
    st = make_stack(tmp_path)
    login = st.path("password").parent
    ours = login / ".PASSWORD.k1ll3d00.genai-tui.tmp"
    ours.write_text(st.hash + "\nadmin")  # a new hash a SIGKILL left behind
    unrelated = login / "notes.txt"
    unrelated.write_text("keep")
    foreign = login / ".PASSWORD.0th3r000.genai-tui.tmp"
    foreign.write_text("not ours")
    if IS_ROOT:
        os.chown(foreign, 12345, 12345)
    result = tk.apply_plan(st.tokens, tk.plan_unify(st.tokens))  # nothing to change
    assert not ours.exists()
    assert unrelated.exists()
    assert foreign.exists() == IS_ROOT  # another user's file is never touched
    assert any("temporary file" in w for w in result.warnings)


def test_killed_during_the_write_then_the_next_run_leaves_no_litter(tmp_path):
    st = make_stack(tmp_path)
    cfg = write_config(st)
    code = (
        "import os, sys\n"
        "from genai_tui.sources.tokens import fsutil\n"
        "real = fsutil.replace_at\n"
        "def die(dfd, name, *a, **k):\n"
        "    fd = os.open(fsutil.temp_name(name), os.O_WRONLY | os.O_CREAT, 0o600, "
        "dir_fd=dfd)\n"
        "    os.write(fd, b'half'); os.kill(os.getpid(), 9)\n"
        "fsutil.replace_at = die\n"
        "from genai_tui import cli\n"
        f"sys.exit(cli.main(['--config', {str(cfg)!r}, 'tokens', 'unify', '--rotate', "
        "'--yes']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == -9
    litter = lambda: [p for p in st.root.rglob("*.genai-tui.tmp")]  # noqa: E731
    assert litter()
    code2, _ = run_plain(cfg)
    assert litter() == []


def run_plain(cfg: Path) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "genai_tui.cli", "--config", str(cfg),
                           "tokens", "unify", "--yes"], capture_output=True, text=True,
                          timeout=60)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture
def full_disk(tmp_path: Path):
    """A 64 KiB tmpfs filled to the last byte (needs root to mount)."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                       check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a small tmpfs here ({exc})")
    try:
        (mnt / "backups").mkdir(mode=0o700)
        with contextlib.suppress(OSError), open(mnt / "filler", "wb") as f:
            while True:
                f.write(b"x" * 4096)
                f.flush()
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=10)


def test_backup_on_a_full_disk_leaves_no_empty_file_and_is_audited(tmp_path, full_disk):
    st = make_stack(tmp_path)
    tokens = replace(st.tokens, backup_dir=full_disk / "backups")
    diverge(st)
    before = st.snapshot()
    with pytest.raises(tk.UnifyError, match="cannot back up .*nothing was written"):
        tk.apply_plan(tokens, tk.plan_unify(tokens))
    assert st.snapshot() == before
    assert list((full_disk / "backups").iterdir()) == []  # no 0-byte backup left
    entry = tk.read_audit(tokens.audit_log)[-1]
    assert entry["result"] == "failed" and "cannot back up" in entry["error"]


def test_location_config_takes_follow_symlinks(tmp_path):
    st = make_stack(tmp_path)
    cfg = write_config(st)
    cfg.write_text(cfg.read_text().replace('path = "login/PASSWORD"',
                                           'path = "login/PASSWORD"\nfollow_symlinks = true'))
    loaded = load(cfg)
    got = {loc.name: loc.follow_symlinks for loc in loaded.tokens.locations}
    assert got["password"] is True and got["secrets"] is False
    assert isinstance(loaded.tokens.locations[0], TokenLocation)
