"""Reading token locations: each format, each state and each problem code, from real files
(CRLF, BOM, quotes, `$` interpolation, duplicate keys, `KEY=KEY=`), by fingerprint only."""

from __future__ import annotations

import json
import os
from pathlib import Path

import bcrypt
import pytest

from genai_tui.config import TokenLocation, TokensConfig
from genai_tui.model import LogEvent, ProbeResult
from genai_tui.secret import fingerprint, raw_label
from genai_tui.sources import tokens as tk
from tests.tokens_helpers import hash_of, make_stack, new_pair


def one(tmp_path: Path, fmt: str, content: bytes | str | None, *, key: str | None = None,
        canonical_hash: str | None = None, compose: bool = True, mode: int = 0o600):
    """Status of a single location `x`, compared with a canonical hash file."""
    canon = tmp_path / "canon"
    if canonical_hash is not None:
        canon.write_text(canonical_hash + "\n")
        canon.chmod(0o600)
    p = tmp_path / f"loc-{fmt}"
    if content is not None:
        p.write_bytes(content.encode() if isinstance(content, str) else content)
        p.chmod(mode)
    cfg = TokensConfig(canonical="canon", locations=(
        TokenLocation("canon", canon, "hash_file"),
        TokenLocation("x", p, fmt, key=key, compose=compose)))
    report = tk.read_report(cfg)
    return report.locations[1], report


H = hash_of("the-password")
H2 = hash_of("another-password")


# ---------------------------------------------------------------- formats, state ok


def test_every_format_ok_and_consistent(tmp_path):
    st = make_stack(tmp_path)
    report = tk.read_report(st.tokens)
    assert [(s.name, s.state) for s in report.locations] == [
        ("secrets", "ok"), ("password", "ok"), ("env-main", "ok"), ("env-raw", "ok"),
        ("conf", "ok")]
    assert report.consistent
    fp = fingerprint(st.hash)
    assert report.fingerprints[fp] == ["secrets", "password", "env-main", "conf"]
    # the raw password is named by the hash it verifies, never fingerprinted itself
    assert report.fingerprints[raw_label(st.hash)] == ["env-raw"]
    assert fingerprint(st.raw) not in json.dumps(report.to_json())
    assert all(s.mtime is not None for s in report.locations)
    assert report.locations[0].canonical and not report.locations[1].canonical
    # the .env template is CRLF: reported as a problem of the file, not of the value
    assert "crlf" in report.locations[2].problems


def test_password_file_reads_line_one(tmp_path):
    s, _ = one(tmp_path, "password_file", f"{H}\nadmin", canonical_hash=H)
    assert (s.state, s.problems, s.fingerprint) == ("ok", [], fingerprint(H))


def test_json_dotted_key(tmp_path):
    s, _ = one(tmp_path, "json", json.dumps({"a": {"b": H}, "z": 1}), key="a.b",
               canonical_hash=H)
    assert s.state == "ok"


def test_raw_env_verifies_with_bcrypt(tmp_path):
    s, _ = one(tmp_path, "raw_env", "RAW=the-password\n", key="RAW", canonical_hash=H)
    assert s.state == "ok"
    assert s.fingerprint == raw_label(H)  # "raw→fp:…": by the hash it verifies
    assert fingerprint("the-password") not in json.dumps(s.to_json())


# ---------------------------------------------------------------- states


def test_missing_file_key_and_folder(tmp_path):
    s, _ = one(tmp_path, "hash_file", None, canonical_hash=H)
    assert (s.state, s.detail) == ("missing", "file not found")
    s, _ = one(tmp_path, "env", "OTHER=1\n", key="TOK", canonical_hash=H)
    assert s.state == "missing" and "TOK" in s.detail
    s, _ = one(tmp_path, "json", '{"a": {}}', key="a.b", canonical_hash=H)
    assert s.state == "missing" and "a.b" in s.detail
    cfg = TokensConfig(canonical="x", locations=(
        TokenLocation("x", tmp_path / "no-such-dir" / "tok", "hash_file"),))
    assert tk.read_report(cfg).locations[0].detail == "folder does not exist"


def test_unreadable_cases_never_raise(tmp_path):
    d = tmp_path / "adir"
    d.mkdir()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big"
    big.write_bytes(b"x" * (tk.MAX_FILE_BYTES + 1))
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    parent_is_file = tmp_path / "canon-file"
    parent_is_file.write_text("x")
    cfg = TokensConfig(canonical="dir", locations=(
        TokenLocation("dir", d, "hash_file"),
        TokenLocation("fifo", fifo, "password_file"),  # must not block on open
        TokenLocation("big", big, "hash_file"),
        TokenLocation("bin", binary, "env", key="K"),
        TokenLocation("under-file", parent_is_file / "PASSWORD", "password_file"),
    ))
    report = tk.read_report(cfg)
    got = {s.name: (s.state, s.detail) for s in report.locations}
    assert got["dir"] == ("unreadable", "is a folder, expected a file")
    assert got["fifo"] == ("unreadable", "is a FIFO, not a regular file")
    assert got["big"][0] == "unreadable" and "too large" in got["big"][1]
    assert got["bin"] == ("unreadable", "not UTF-8 text")
    assert got["under-file"][0] == "unreadable" and "not a folder" in got["under-file"][1]
    assert not report.consistent


def test_malformed_json_is_unreadable_with_position(tmp_path):
    s, _ = one(tmp_path, "json", '{"bcrypt_hash": "x",\n  oops}', key="bcrypt_hash",
               canonical_hash=H)
    assert s.state == "unreadable"
    assert s.detail.startswith("not valid JSON (line 2, column 3")
    s, _ = one(tmp_path, "json", '["not", "an", "object"]', key="a", canonical_hash=H)
    assert s.state == "invalid" and "not a JSON object" in s.detail
    s, _ = one(tmp_path, "json", '{"a": 5}', key="a", canonical_hash=H)
    assert s.state == "invalid" and "expected a string" in s.detail


@pytest.mark.parametrize("value, why", [
    (H[:-1], "59 characters"),
    ("$2x$12$" + H[7:], "prefix"),
    (H[:4] + "03" + H[6:], "cost"),
    (H[:4] + "32" + H[6:], "cost"),
    (H[:-1] + "!", "alphabet"),
    ("plain-password", "prefix"),
])
def test_invalid_hashes_say_why_without_quoting(tmp_path, value, why):
    s, _ = one(tmp_path, "hash_file", value + "\n", canonical_hash=H)
    assert s.state == "invalid"
    assert why in s.detail
    assert value[:8] not in s.detail


def test_hash_file_with_two_hashes_is_invalid(tmp_path):
    s, _ = one(tmp_path, "hash_file", f"{H}\n{H2}\n", canonical_hash=H)
    assert s.state == "invalid" and "2 lines" in s.detail


def test_mismatch_and_raw_mismatch(tmp_path):
    s, _ = one(tmp_path, "hash_file", H2 + "\n", canonical_hash=H)
    assert s.state == "mismatch" and "canon" in s.detail
    assert s.fingerprint == fingerprint(H2)
    s, _ = one(tmp_path, "raw_env", "RAW=wrong-password\n", key="RAW", canonical_hash=H)
    assert s.state == "raw_mismatch"
    s, _ = one(tmp_path, "raw_env", f"RAW='{H}'\n", key="RAW", canonical_hash=H)
    assert s.state == "raw_mismatch" and "not the raw token" in s.detail


def test_without_a_canonical_hash_nothing_is_ok(tmp_path):
    s, report = one(tmp_path, "hash_file", H + "\n", canonical_hash=None)
    assert report.locations[0].state == "missing"
    assert s.state == "mismatch" and "no valid canonical hash" in s.detail
    assert not report.consistent
    s, _ = one(tmp_path, "raw_env", "RAW=the-password\n", key="RAW", canonical_hash=None)
    assert s.state == "raw_mismatch" and "cannot be checked" in s.detail


# ---------------------------------------------------------------- problem codes


def test_crlf_password_still_ok_for_the_api(tmp_path):
    s, _ = one(tmp_path, "password_file", f"{H}\r\nadmin\r\n", canonical_hash=H)
    assert s.state == "ok" and s.problems == ["crlf"]


def test_bom_spoils_a_password_file(tmp_path):
    s, _ = one(tmp_path, "password_file", b"\xef\xbb\xbf" + f"{H}\nadmin".encode(),
               canonical_hash=H)
    assert s.state == "invalid" and s.problems == ["bom"]
    assert s.fingerprint == fingerprint(H)  # the hash it was meant to hold


def test_quoted_hash_file(tmp_path):
    s, _ = one(tmp_path, "hash_file", f'"{H}"\n', canonical_hash=H)
    assert s.state == "invalid" and s.problems == ["quoted"]
    assert s.fingerprint == fingerprint(H)


def test_quoted_env_unbalanced(tmp_path):
    s, _ = one(tmp_path, "env", f"TOK='{H}\n", key="TOK", canonical_hash=H)
    assert "quoted" in s.problems and s.state == "invalid"


def test_whitespace(tmp_path):
    s, _ = one(tmp_path, "hash_file", f"  {H}  \n\n", canonical_hash=H)
    assert s.state == "ok" and s.problems == ["whitespace"]  # readers strip it
    s, _ = one(tmp_path, "env", f"TOK=' {H}'\n", key="TOK", canonical_hash=H)
    assert s.state == "invalid" and "whitespace" in s.problems  # kept inside quotes


def test_duplicate_keys_last_wins(tmp_path):
    s, _ = one(tmp_path, "env", f"TOK='{H2}'\nA=1\nTOK='{H}'\n", key="TOK", canonical_hash=H)
    assert s.state == "ok" and s.problems == ["duplicate_key"]
    s, _ = one(tmp_path, "json", f'{{"k": "{H2}", "k": "{H}"}}', key="k", canonical_hash=H)
    assert s.state == "ok" and s.problems == ["duplicate_key"]


def test_key_in_value_corruption(tmp_path):
    s, _ = one(tmp_path, "env", f"COMFYUI_API_TOKEN='COMFYUI_API_TOKEN={H}'\n",
               key="COMFYUI_API_TOKEN", canonical_hash=H)
    assert s.state == "invalid" and s.problems == ["key_in_value"]
    assert s.fingerprint == fingerprint(H)
    assert "key_in_value" in s.detail


@pytest.mark.parametrize("line, flagged", [
    (f"TOK={H}", True),
    (f'TOK="{H}"', True),
    (f"TOK='{H}'", False),
])
def test_compose_interpolation(tmp_path, line, flagged):
    s, report = one(tmp_path, "env", line + "\n", key="TOK", canonical_hash=H)
    assert ("compose_interpolation" in s.problems) is flagged
    assert s.state == "ok"
    assert report.consistent is not flagged  # Compose would hand containers another value
    s, _ = one(tmp_path, "env", line + "\n", key="TOK", canonical_hash=H, compose=False)
    assert "compose_interpolation" not in s.problems


def test_world_readable(tmp_path):
    s, _ = one(tmp_path, "hash_file", H + "\n", canonical_hash=H, mode=0o644)
    assert s.problems == ["world_readable"]
    s, _ = one(tmp_path, "hash_file", H + "\n", canonical_hash=H, mode=0o640)
    assert s.problems == []


def test_every_problem_code_is_known():
    from genai_tui.model import TOKEN_PROBLEMS

    assert set(tk._PROBLEM_ORDER) == set(TOKEN_PROBLEMS)


# ---------------------------------------------------------------- canonical hash, cache


def test_canonical_hash(tmp_path):
    st = make_stack(tmp_path)
    assert tk.canonical_hash(st.tokens) == st.hash
    st.path("secrets").write_text(f'"{st.hash}"\n')
    assert tk.canonical_hash(st.tokens) is None
    st.path("secrets").unlink()
    assert tk.canonical_hash(st.tokens) is None


def test_bcrypt_checks_are_cached(tmp_path, monkeypatch):
    raw, h = new_pair()
    calls = []
    real = bcrypt.checkpw

    def counting(pw: bytes, hashed: bytes) -> bool:
        calls.append(1)
        return real(pw, hashed)

    monkeypatch.setattr(tk.bcrypt, "checkpw", counting)
    assert tk.check_raw(raw, h) and tk.check_raw(raw, h)
    assert not tk.check_raw("x" * 100, h)  # over 72 bytes: no exception, just False
    assert len(calls) == 2


# ---------------------------------------------------------------- the running server


def test_token_fingerprint_from_log_takes_the_last_line():
    text = (f"2025-01-01T00:00:00Z For direct API calls, use token={H2}\r\n"
            "Starting server\n"
            f"For direct API calls, use token={H}\rTo see the GUI go to: http://0.0.0.0:8188")
    assert tk.token_fingerprint_from_log(text) == fingerprint(H)
    assert tk.token_fingerprint_from_log("Starting server\n") is None


def _report(tmp_path):
    canon = tmp_path / "c"
    canon.write_text(H + "\n")
    return tk.read_report(TokensConfig(canonical="c", locations=(
        TokenLocation("c", canon, "hash_file"),)))


def test_server_status_from_probe_and_log(tmp_path):
    report = _report(tmp_path)
    probes = [ProbeResult("a", "u", "ok", auth="enforced"),
              ProbeResult("b", "u", "ok", auth="rejected"),
              ProbeResult("orch", "u", "ok", auth=None)]
    events = [LogEvent("b", "token", fingerprint=fingerprint(H)),
              LogEvent("b", "token", fingerprint=fingerprint(H2)),
              LogEvent("c", "token", fingerprint=fingerprint(H))]
    got = {s.service: s for s in tk.server_status(report, probes, events)}
    assert set(got) == {"a", "b", "c"}
    assert got["a"].uses_disk_hash is True and got["a"].source == "probe"
    assert got["b"].uses_disk_hash is False and got["b"].source == "probe+log"
    assert got["b"].log_fingerprint == fingerprint(H2)  # the last token line is in force
    assert "restart needed" in got["b"].detail
    assert got["c"].uses_disk_hash is True and got["c"].source == "log"
