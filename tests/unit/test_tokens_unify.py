"""Unify on real files: plan, sources, rotation, idempotency, byte preservation, modes,
owners, backups, all-or-nothing on a real write failure, and the audit log."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import bcrypt
import pytest

from genai_tui.config import TokenLocation
from genai_tui.secret import fingerprint
from genai_tui.sources import envfile
from genai_tui.sources import tokens as tk
from tests.tokens_helpers import hash_of, make_stack, new_pair


def unify(stack, source=None, rotate=False):
    plan = tk.plan_unify(stack.tokens, source, rotate=rotate)
    result = tk.apply_plan(stack.tokens, plan)
    return plan, result


def states(stack):
    return {s.name: s.state for s in tk.read_report(stack.tokens).locations}


def diverge(stack):
    """A realistic drift: PASSWORD and the JSON copy hold an older hash, the .env line is
    the old synchronizer's `KEY=KEY=` corruption."""
    _, old = new_pair()
    stack.path("password").write_text(f"{old}\nadmin")
    conf = stack.path("conf")
    doc = json.loads(conf.read_text())
    doc["auth"]["bcrypt_hash"] = old
    conf.write_text(json.dumps(doc, indent=2) + "\n")
    env = stack.path("env-main")
    env.write_bytes(env.read_bytes().replace(
        f"COMFYUI_API_TOKEN='{stack.hash}'".encode(),
        f"COMFYUI_API_TOKEN=COMFYUI_API_TOKEN={old}".encode()))
    return old


# ---------------------------------------------------------------- the plan


def test_plan_lists_changes_and_dry_run_writes_nothing(tmp_path):
    st = make_stack(tmp_path)
    old = diverge(st)
    before = st.snapshot()
    plan = tk.plan_unify(st.tokens)
    assert plan.source == "secrets" and plan.target == fingerprint(st.hash)
    got = {c.location: (c.action, c.before, c.after) for c in plan.changes}
    assert got == {
        "password": ("update", fingerprint(old), fingerprint(st.hash)),
        "env-main": ("update", fingerprint(old), fingerprint(st.hash)),
        "conf": ("update", fingerprint(old), fingerprint(st.hash)),
    }
    assert plan.unchanged == ["secrets", "env-raw"]
    assert st.snapshot() == before  # planning is read-only
    text = json.dumps(plan.to_json()) + repr(plan)
    assert st.hash[:8] not in text and old[:8] not in text


def test_unify_from_canonical_fixes_everything_and_keeps_the_credential(tmp_path):
    st = make_stack(tmp_path)
    diverge(st)
    canon_before = st.path("secrets").read_bytes()
    plan, result = unify(st)
    assert result.changed == ["password", "env-main", "conf"]
    assert set(states(st).values()) == {"ok"}
    assert tk.read_report(st.tokens).consistent
    assert st.path("secrets").read_bytes() == canon_before  # never rotated
    assert st.path("password").read_text() == f"{st.hash}\nadmin"  # user line kept


@pytest.mark.parametrize("source", ["password", "env-main", "conf"])
def test_unify_from_each_hash_source(tmp_path, source):
    st = make_stack(tmp_path)
    raw2, h2 = new_pair()
    # the chosen source holds a newer credential
    if source == "password":
        st.path("password").write_text(f"{h2}\nroot")
    elif source == "env-main":
        p = st.path("env-main")
        p.write_bytes(p.read_bytes().replace(st.hash.encode(), h2.encode()))
    else:
        p = st.path("conf")
        p.write_text(p.read_text().replace(st.hash, h2))
    plan, _ = unify(st, source)
    assert plan.target == fingerprint(h2)
    report = tk.read_report(st.tokens)
    hashes = {s.name: s.fingerprint for s in report.locations if s.format != "raw_env"}
    assert set(hashes.values()) == {fingerprint(h2)}
    # the raw token verifies against the old hash only: it cannot be derived, so it is left
    assert [b.location for b in plan.blocked] == ["env-raw"]
    assert "--rotate" in plan.blocked[0].reason
    assert states(st)["env-raw"] == "raw_mismatch"


def test_unify_from_a_raw_source_prefers_an_existing_verifying_hash(tmp_path):
    st = make_stack(tmp_path)
    before = st.snapshot()
    plan, result = unify(st, "env-raw")
    assert plan.target == fingerprint(st.hash)
    assert plan.empty and result.changed == [] and st.snapshot() == before


def test_unify_from_a_raw_source_with_no_matching_hash_hashes_it_at_cost_12(tmp_path):
    st = make_stack(tmp_path)
    raw2 = "a-brand-new-raw-password"
    p = st.path("env-raw")
    p.write_bytes(p.read_bytes().replace(st.raw.encode(), raw2.encode()))
    plan, _ = unify(st, "env-raw")
    new_hash = st.path("secrets").read_text().strip()
    assert new_hash.startswith("$2b$12$") and bcrypt.checkpw(raw2.encode(), new_hash.encode())
    assert plan.target == fingerprint(new_hash)
    assert tk.read_report(st.tokens).consistent


def test_rotation_makes_a_new_credential(tmp_path):
    st = make_stack(tmp_path)
    plan, result = unify(st, rotate=True)
    new_hash = st.path("secrets").read_text().strip()
    raw_line = [e for e in envfile.find(st.path("env-raw").read_text(), "COMFYUI_RAW_TOKEN")]
    new_raw = raw_line[-1].value
    assert new_hash != st.hash and new_raw != st.raw
    assert new_hash.startswith("$2b$12$") and len(new_raw) >= 40
    assert bcrypt.checkpw(new_raw.encode(), new_hash.encode())
    assert {c.location for c in plan.changes} == {"secrets", "password", "env-main",
                                                 "env-raw", "conf"}
    assert tk.read_report(st.tokens).consistent
    assert plan.rotate and plan.source == "rotate"
    audit = tk.read_audit(st.tokens.audit_log)
    assert audit[-1]["what"] == "rotate"


def test_rotate_without_a_raw_location_warns(tmp_path):
    st = make_stack(tmp_path)
    st.locations = [x for x in st.locations if x.format != "raw_env"]
    plan = tk.plan_unify(st.tokens, rotate=True)
    assert any("not stored anywhere" in w for w in plan.warnings)


def test_bad_sources(tmp_path):
    st = make_stack(tmp_path)
    with pytest.raises(tk.UnifyError) as err:
        tk.plan_unify(st.tokens, "nope")
    assert err.value.code == 3 and "unknown token location 'nope'" in str(err.value)
    st.path("password").write_text("not a hash\nadmin")
    with pytest.raises(tk.UnifyError) as err:
        tk.plan_unify(st.tokens, "password")
    assert err.value.code == 2 and "holds no valid hash" in str(err.value)
    with pytest.raises(tk.UnifyError) as err:
        tk.plan_unify(st.tokens, "password", rotate=True)
    assert err.value.code == 3


def test_canonical_without_a_hash_asks_for_a_source(tmp_path):
    st = make_stack(tmp_path)
    st.path("secrets").unlink()
    with pytest.raises(tk.UnifyError, match="--from NAME, or --rotate"):
        tk.plan_unify(st.tokens)
    _, result = unify(st, "password")  # the missing canonical file is created
    assert st.path("secrets").read_text() == st.hash + "\n"
    assert stat.S_IMODE(st.path("secrets").stat().st_mode) == 0o600
    assert "secrets" in result.changed


# ---------------------------------------------------------------- idempotency


def test_second_unify_changes_nothing(tmp_path):
    st = make_stack(tmp_path)
    diverge(st)
    unify(st)
    before = st.snapshot()
    mtimes = {p: os.stat(p).st_mtime_ns for p in before}
    plan, result = unify(st)
    assert plan.empty and result.message == "nothing to change"
    assert st.snapshot() == before
    assert {p: os.stat(p).st_mtime_ns for p in before} == mtimes
    assert len(plan.unchanged) == len(st.locations)
    last = tk.read_audit(st.tokens.audit_log)[-1]
    assert (last["what"], last["result"], last["changed"]) == ("unify", "unchanged", [])


# ---------------------------------------------------------------- byte preservation


def test_env_file_keeps_every_other_byte(tmp_path):
    st = make_stack(tmp_path)
    diverge(st)
    env = st.path("env-main")
    original = env.read_bytes().split(b"\r\n")
    unify(st)
    after = env.read_bytes().split(b"\r\n")
    assert len(after) == len(original)
    changed = [i for i, (a, b) in enumerate(zip(original, after, strict=True)) if a != b]
    assert len(changed) == 1
    assert after[changed[0]] == f"COMFYUI_API_TOKEN='{st.hash}'".encode()
    assert b"export SECRET_KEY='keep $me'   # not a token" in after  # untouched


def test_env_edits_export_comment_duplicates_and_append():
    text = ("A=1\n"
            "export TOK=old-one  # the token\r\n"
            "B='x'\n"
            "TOK=older\r\n"
            "C=3")
    out = envfile.set_value(text, "TOK", "$2b$new")
    assert out == "A=1\nB='x'\nTOK='$2b$new'\r\nC=3"
    out = envfile.set_value("A=1\r\nB=2\r\n", "TOK", "v")
    assert out == "A=1\r\nB=2\r\nTOK='v'\r\n"
    out = envfile.set_value("A=1", "TOK", "v")
    assert out == "A=1\nTOK='v'\n"
    # a file Compose does not read keeps the line's own quoting
    out = envfile.set_value("TOK=old\n", "TOK", "new", compose=False, quote="")
    assert out == "TOK=new\n"


def test_env_append_when_key_missing(tmp_path):
    st = make_stack(tmp_path)
    env = st.path("env-main")
    text = env.read_bytes().decode()
    lines = [ln for ln in text.split("\r\n") if not ln.startswith("COMFYUI_API_TOKEN")]
    env.write_bytes("\r\n".join(lines).encode())
    plan, _ = unify(st)
    assert [(c.location, c.action) for c in plan.changes] == [("env-main", "add_key")]
    new = env.read_bytes().decode()
    assert new.startswith("\r\n".join(lines))
    assert new.endswith(f"COMFYUI_API_TOKEN='{st.hash}'\r\n")


def test_compose_dollar_is_quoted_on_write(tmp_path):
    st = make_stack(tmp_path)
    env = st.path("env-main")
    env.write_bytes(env.read_bytes().replace(f"'{st.hash}'".encode(), st.hash.encode()))
    assert "compose_interpolation" in tk.read_report(st.tokens).locations[2].problems
    plan, _ = unify(st)
    assert [(c.location, c.action) for c in plan.changes] == [("env-main", "fix")]
    report = tk.read_report(st.tokens)
    assert "compose_interpolation" not in report.locations[2].problems and report.consistent


def test_json_keeps_other_keys_order_and_indent(tmp_path):
    st = make_stack(tmp_path)
    conf = st.path("conf")
    text = ('{\n    "version": "1.0",\n    "raw_note": "x",\n    "auth": {\n'
            f'        "user": "admin",\n        "bcrypt_hash": "{hash_of("x")}"\n'
            '    },\n    "locations": [1, 2]\n}\n')
    conf.write_text(text)
    unify(st)
    new = conf.read_text()
    assert new == text.replace(json.loads(text)["auth"]["bcrypt_hash"], st.hash)


def test_json_key_added_in_the_files_indentation(tmp_path):
    st = make_stack(tmp_path)
    conf = st.path("conf")
    conf.write_text('{\n    "version": "1.0",\n    "auth": {\n        "user": "admin"\n    }\n}\n')
    unify(st)
    doc = json.loads(conf.read_text())
    assert list(doc) == ["version", "auth"] and list(doc["auth"]) == ["user", "bcrypt_hash"]
    assert '\n        "bcrypt_hash": ' in conf.read_text()


def test_malformed_json_is_never_rewritten(tmp_path):
    st = make_stack(tmp_path)
    diverge(st)
    conf = st.path("conf")
    conf.write_text('{"auth": {"bcrypt_hash": "x"')  # truncated
    plan, result = unify(st)
    assert [b.location for b in plan.blocked] == ["conf"]
    assert "not valid JSON" in plan.blocked[0].reason
    assert conf.read_text() == '{"auth": {"bcrypt_hash": "x"'
    assert result.changed == ["password", "env-main"]


def test_password_file_problems_fixed_user_kept(tmp_path):
    st = make_stack(tmp_path)
    st.path("password").write_bytes(b"\xef\xbb\xbf" + f" {st.hash} \r\nroot\r\n".encode())
    plan, _ = unify(st)
    assert [(c.location, c.action) for c in plan.changes] == [("password", "fix")]
    assert st.path("password").read_text() == f"{st.hash}\nroot\n"
    assert tk.read_report(st.tokens).locations[1].problems == []


def test_missing_folder_is_blocked_not_created(tmp_path):
    st = make_stack(tmp_path)
    st.locations.append(TokenLocation("elsewhere", tmp_path / "no" / "such" / "tok",
                                      "hash_file"))
    diverge(st)
    plan, result = unify(st)
    assert [b.location for b in plan.blocked] == ["elsewhere"]
    assert not (tmp_path / "no").exists()
    assert "password" in result.changed


# ---------------------------------------------------------------- modes, owners, backups


def test_modes_and_owners_are_kept(tmp_path):
    st = make_stack(tmp_path)
    diverge(st)
    pw = st.path("password")
    pw.chmod(0o640)
    os.chown(pw, 1234, 2345)
    st.path("env-main").chmod(0o644)
    unify(st)
    assert stat.S_IMODE(pw.stat().st_mode) == 0o640
    assert (pw.stat().st_uid, pw.stat().st_gid) == (1234, 2345)
    assert stat.S_IMODE(st.path("env-main").stat().st_mode) == 0o644
    assert "world_readable" in tk.read_report(st.tokens).locations[2].problems


def test_backups_hold_the_original_bytes(tmp_path):
    st = make_stack(tmp_path)
    diverge(st)
    before = st.snapshot()
    _, result = unify(st)
    backup_dir = st.tokens.backup_dir
    assert stat.S_IMODE(backup_dir.stat().st_mode) == 0o700
    assert len(result.backups) == 3
    originals = {v for v in before.values() if v is not None}
    for b in result.backups:
        p = Path(b)
        assert p.parent == backup_dir
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        assert p.read_bytes() in originals
    # a created file has no backup
    st.path("secrets").unlink()
    _, result = unify(st, "password")
    assert result.backups == []


# ---------------------------------------------------------------- all or nothing


@pytest.fixture
def immutable():
    """`chattr +i`: a write that fails for root too (removed after the test)."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr not available")
    made: list[Path] = []

    def make(path: Path) -> None:
        r = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"chattr +i unsupported here: {r.stderr.strip()}")
        made.append(path)

    yield make
    for p in made:
        subprocess.run(["chattr", "-i", str(p)], capture_output=True)


def test_one_unwritable_target_leaves_nothing_changed(tmp_path, immutable):
    st = make_stack(tmp_path)
    diverge(st)
    before = st.snapshot()
    conf = st.path("conf")  # the last file written
    immutable(conf)
    plan = tk.plan_unify(st.tokens)
    with pytest.raises(tk.UnifyError) as err:
        tk.apply_plan(st.tokens, plan)
    msg = str(err.value)
    assert "'conf'" in msg and "operation not permitted" in msg
    assert "2 file(s) already written were restored" in msg
    assert st.snapshot() == before
    leftovers = [p for p in tmp_path.rglob("*.genai-tui.tmp")]
    assert leftovers == []
    audit = tk.read_audit(st.tokens.audit_log)
    assert audit[-1]["result"] == "failed" and audit[-1]["changed"] == []


def test_unwritable_folder_for_a_new_file(tmp_path, immutable):
    st = make_stack(tmp_path)
    diverge(st)
    folder = tmp_path / "ro"
    folder.mkdir()
    st.locations.append(TokenLocation("late", folder / "tok", "hash_file"))
    immutable(folder)
    before = st.snapshot()
    with pytest.raises(tk.UnifyError, match="'late'"):
        unify(st)
    assert st.snapshot() == before


def test_a_file_changed_after_the_plan_is_not_overwritten(tmp_path):
    st = make_stack(tmp_path)
    diverge(st)
    plan = tk.plan_unify(st.tokens)
    st.path("conf").write_text('{"edited": "meanwhile"}')
    before = st.snapshot()
    with pytest.raises(tk.UnifyError, match="changed since the plan"):
        tk.apply_plan(st.tokens, plan)
    assert st.snapshot() == before  # nothing written, not even the unchanged files


# ---------------------------------------------------------------- audit


def test_audit_lines(tmp_path):
    st = make_stack(tmp_path)
    old = diverge(st)
    unify(st)
    log = st.tokens.audit_log
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    lines = log.read_text().splitlines()
    entry = json.loads(lines[-1])
    assert entry["what"] == "unify" and entry["result"] == "ok"
    assert "@" in entry["who"] and entry["at"]
    assert entry["before"]["password"] == fingerprint(old)
    assert entry["after"]["password"] == fingerprint(st.hash)
    assert entry["changed"] == ["password", "env-main", "conf"]
    text = log.read_text()
    assert st.hash[:8] not in text and old[7:20] not in text and st.raw[:8] not in text


def test_status_changes_are_recorded_once(tmp_path):
    st = make_stack(tmp_path)
    path = st.tokens.audit_log
    auditor = tk.StatusAuditor(path)
    first = auditor.observe(tk.read_report(st.tokens))
    assert first is not None and first["before"] == {}
    assert auditor.observe(tk.read_report(st.tokens)) is None  # same state: no line
    # a new dashboard picks up the last recorded state: no repeated first observation
    assert tk.StatusAuditor(path).observe(tk.read_report(st.tokens)) is None
    diverge(st)
    change = auditor.observe(tk.read_report(st.tokens))
    assert change is not None
    assert set(change["after"]) == {"password", "env-main", "conf"}
    assert change["before"]["password"] == ["ok", fingerprint(st.hash)]
    assert len(path.read_text().splitlines()) == 2
