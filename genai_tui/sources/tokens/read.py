"""Reading the ComfyUI-Login credential: every configured copy, every format, the report.

The credential is a bcrypt hash that is also the API bearer token; the reference stack
keeps copies of it in several files (and the raw password in others). This module reads
each location of `[tokens]` (PASSWORD file, hash file, `.env` key, JSON key, raw `.env`
token) without ever blocking or reading a huge file, recovers the hash a corrupted value
was meant to hold, compares every copy with the canonical one (bcrypt checks cached by
fingerprint) and builds the `TokensReport`; it also gives the log Redactor the secret
values to hide. It writes nothing: planning, writing and the audit trail build on it.
Secret values live only in private attributes (never in a repr, JSON, message or log).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from genai_tui.config import TokenLocation, TokensConfig
from genai_tui.model import TokenLocationStatus, TokensReport
from genai_tui.safety import redact
from genai_tui.secret import BCRYPT_ANYWHERE, BCRYPT_RE, digest, fingerprint, raw_label
from genai_tui.sources import envfile
from genai_tui.sources.tokens import fsutil

#: token files are tiny; anything bigger is not a token file (and is not read into memory)
MAX_FILE_BYTES = 1 << 20
#: ComfyUI-Login's default cost; a rotated credential uses it
BCRYPT_COST = 12
HASH_FORMATS = ("password_file", "hash_file", "env", "json")
#: user name written when unify has to create a PASSWORD file and no other one exists
DEFAULT_USER = "admin"
_BOM = b"\xef\xbb\xbf"

#: problems unify repairs when it rewrites a location, per format (the others are reported
#: only: unify keeps modes, and keeps every byte of an .env file outside the token line)
FIXABLE = {
    "password_file": {"crlf", "bom", "quoted", "whitespace"},
    "hash_file": {"crlf", "bom", "quoted", "whitespace"},
    "env": {"quoted", "whitespace", "duplicate_key", "key_in_value", "compose_interpolation"},
    "raw_env": {"quoted", "whitespace", "duplicate_key", "key_in_value",
                "compose_interpolation"},
    "json": {"bom", "quoted", "whitespace", "key_in_value"},
}


class UnifyError(Exception):
    """A unify that cannot proceed or failed; the message names the location and the
    reason and never contains a secret. `code` is the CLI exit code (2 failure, 3 usage)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(scrub(message))
        self.code = code


#: every bcrypt hash in a text replaced by its fingerprint (the one rule: safety.redact)
scrub = redact


def is_valid_hash(value: str) -> bool:
    """Well-formed bcrypt: $2a/$2b/$2y prefix, cost 04-31, 53 chars of bcrypt's alphabet."""
    return bool(BCRYPT_RE.match(value)) and 4 <= int(value[4:6]) <= 31


def _hash_problem(value: str) -> str:
    """Why `value` is not a well-formed hash, without quoting any of it."""
    if not value:
        return "empty value"
    if not re.match(r"^\$2[aby]\$", value):
        return "not a bcrypt hash (expected the $2a$, $2b$ or $2y$ prefix)"
    if not re.match(r"^\$2[aby]\$\d{2}\$", value) or not 4 <= int(value[4:6]) <= 31:
        return "bcrypt cost missing or out of range (04-31)"
    if len(value) != 60:
        return f"{len(value)} characters, a bcrypt hash has 60"
    return "characters outside bcrypt's alphabet"


# ---------------------------------------------------------------- bcrypt cache


_CHECK_CACHE: OrderedDict[tuple[str, str], bool] = OrderedDict()
_CHECK_LOCK = threading.Lock()
_CHECK_MAX = 256
VERDICT_FILE = "bcrypt-verdicts"
_verdict_file: Path | None = None
_verdicts: dict[str, bool] | None = None  # the file's entries, read once per process


def use_verdict_cache(state_dir: Path | None) -> None:
    """Keep bcrypt verdicts across runs in `state_dir` (0600): `check`, run every minute
    by a monitoring system, then pays no bcrypt verification (~0.25 s at cost 12) for
    files that did not change. Entries are keyed digests of (raw, hash) under the
    install's fingerprint key, domain-separated from fingerprints: no secret, nothing
    printed elsewhere, nothing testable offline without the key. A changed file gives a
    new digest, so a stale verdict is never used."""
    global _verdict_file, _verdicts
    with _CHECK_LOCK:
        _verdict_file = None if state_dir is None else Path(state_dir) / VERDICT_FILE
        _verdicts = None


def _disk_verdicts() -> dict[str, bool]:
    """The stored verdicts; an unusable file (a link, another user's, readable by others,
    garbled) counts as empty and is replaced on the next write."""
    global _verdicts
    if _verdicts is None:
        _verdicts = {}
        if _verdict_file is not None:
            try:
                data, st = fsutil.read_regular(_verdict_file, 64 * 1024, follow=False)
            except (OSError, fsutil.NotRegular):
                return _verdicts
            if st.st_uid == os.geteuid() and not st.st_mode & 0o077:
                for line in data.decode("ascii", "replace").splitlines()[-_CHECK_MAX:]:
                    key, _, ok = line.partition(" ")
                    if len(key) == 64 and ok in ("0", "1"):
                        _verdicts[key] = ok == "1"
    return _verdicts


def _store_verdict(key: str, ok: bool) -> None:
    stored = _disk_verdicts()
    stored[key] = ok
    while len(stored) > _CHECK_MAX:
        stored.pop(next(iter(stored)))
    if _verdict_file is None or not _verdict_file.parent.is_dir():
        return
    data = "".join(f"{k} {int(v)}\n" for k, v in stored.items()).encode("ascii")
    try:
        fsutil.atomic_write(_verdict_file, data, 0o600)
    except OSError:
        pass  # a read-only state folder: verdicts are kept for this run only


def check_raw(raw: str, hash_: str) -> bool:
    """bcrypt.checkpw, cached by fingerprints in memory and by keyed digests on disk (see
    `use_verdict_cache`): each check costs ~0.25 s at cost 12, the panel re-reads the
    status every few seconds, and `check` runs every minute."""
    key = (fingerprint(raw), fingerprint(hash_))
    with _CHECK_LOCK:
        if key in _CHECK_CACHE:
            _CHECK_CACHE.move_to_end(key)
            return _CHECK_CACHE[key]
        stored_key = digest("bcrypt verdict", raw, hash_) if _verdict_file else None
        stored = _disk_verdicts().get(stored_key) if stored_key else None
    if stored is not None:
        ok = stored
    else:
        import bcrypt  # only when a verdict is not cached

        try:
            ok = bool(raw) and bcrypt.checkpw(raw.encode("utf-8"), hash_.encode("ascii"))
        except (ValueError, UnicodeError):
            ok = False  # longer than 72 bytes, or a malformed hash
    with _CHECK_LOCK:
        _CHECK_CACHE[key] = ok
        while len(_CHECK_CACHE) > _CHECK_MAX:
            _CHECK_CACHE.popitem(last=False)
        if stored is None and stored_key:
            _store_verdict(stored_key, ok)
    return ok


def new_credential() -> tuple[str, str]:
    """A fresh raw token and its bcrypt hash at ComfyUI-Login's cost (12)."""
    import bcrypt

    raw = secrets.token_urlsafe(32)
    return raw, bcrypt.hashpw(raw.encode("ascii"), bcrypt.gensalt(BCRYPT_COST)).decode("ascii")


# ---------------------------------------------------------------- reading


@dataclass
class _Loc:
    """One location as read, with its secrets (kept out of any repr)."""

    cfg: TokenLocation
    status: TokenLocationStatus
    content: bytes | None = None  # the file's bytes (None: missing or unreadable)
    st: os.stat_result | None = None
    value: str | None = field(default=None, repr=False)  # what a consumer reads
    hash: str | None = field(default=None, repr=False)  # well-formed hash held / meant
    user_line: str | None = field(default=None, repr=False)  # PASSWORD line 2 onward
    block: str | None = None  # why unify must not rewrite this file

    def __repr__(self) -> str:
        return f"_Loc({self.cfg.name!r}, state={self.status.state!r})"

    @property
    def fixable(self) -> set[str]:
        return set(self.status.problems) & FIXABLE[self.cfg.format]


_reason = fsutil.reason


def _read_bytes(path: Path) -> tuple[bytes | None, os.stat_result | None, str | None, str]:
    """(content, stat, failed state, detail); never blocks on a FIFO or reads a huge file
    (opened non-blocking, checked to be a regular file on the open descriptor)."""
    try:
        data, st = fsutil.read_regular(path, MAX_FILE_BYTES)
    except FileNotFoundError:
        if os.path.islink(path):
            return None, None, "missing", "dangling symlink"
        if not path.parent.is_dir():
            return None, None, "missing", "folder does not exist"
        return None, None, "missing", "file not found"
    except NotADirectoryError:
        return None, None, "unreadable", "a parent of this path is a file, not a folder"
    except fsutil.NotRegular as exc:
        st = _stat_or_none(path)
        if st is not None and stat.S_ISDIR(st.st_mode):
            return None, st, "unreadable", "is a folder, expected a file"
        return None, st, "unreadable", f"{exc}"
    except IsADirectoryError:
        return None, _stat_or_none(path), "unreadable", "is a folder, expected a file"
    except OSError as exc:
        return None, _stat_or_none(path), "unreadable", f"cannot read: {fsutil.reason(exc)}"
    if len(data) > MAX_FILE_BYTES:
        return None, st, "unreadable", f"too large for a token file ({st.st_size} bytes)"
    return data, st, None, ""


def _stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _strip_quotes(value: str) -> tuple[str, bool]:
    quoted = False
    while len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value, quoted = value[1:-1].strip(), True
    if value[:1] in "'\"" and value[:1] and value.count(value[0]) == 1:
        value, quoted = value[1:].strip(), True
    if value[-1:] in "'\"" and value[-1:] and value.count(value[-1]) == 1:
        value, quoted = value[:-1].strip(), True
    return value, quoted


def _recover(value: str, key: str | None) -> tuple[str, set[str]]:
    """The hash a corrupted value was meant to hold, and the corruptions found."""
    found: set[str] = set()
    v = value
    for _ in range(4):
        before = v
        if v != v.strip():
            found.add("whitespace")
            v = v.strip()
        v, q = _strip_quotes(v)
        if q:
            found.add("quoted")
        if key:
            while v.startswith(key + "="):
                found.add("key_in_value")
                v = v[len(key) + 1:]
        if v == before:
            break
    return v, found


def _scan_one(loc: TokenLocation) -> _Loc:
    status = TokenLocationStatus(name=loc.name, path=str(loc.path), format=loc.format,
                                 key=loc.key)
    out = _Loc(loc, status)
    data, st, failed, detail = _read_bytes(loc.path)
    out.st = st
    if st is not None and stat.S_ISREG(st.st_mode):
        status.mtime = datetime.fromtimestamp(st.st_mtime, tz=UTC).astimezone()
    if failed:
        status.state, status.detail = failed, detail
        if failed == "unreadable":
            out.block = f"cannot read it ({detail}), so it will not be overwritten"
        return out
    assert data is not None and st is not None
    out.content = data
    problems: set[str] = set()
    if st.st_mode & stat.S_IROTH:
        problems.add("world_readable")
    bom = data.startswith(_BOM)
    if bom:
        problems.add("bom")
    try:
        text = data[len(_BOM) if bom else 0:].decode("utf-8")
    except UnicodeDecodeError:
        status.state, status.detail = "unreadable", "not UTF-8 text"
        out.block = "not UTF-8 text, so it will not be rewritten"
        status.problems = sorted(problems)
        return out
    if "\r" in text:
        problems.add("crlf")
    reader = {"password_file": _parse_password, "hash_file": _parse_hash_file,
              "env": _parse_env, "raw_env": _parse_env, "json": _parse_json}[loc.format]
    reader(out, text, bom, problems)
    status.problems = [p for p in _PROBLEM_ORDER if p in problems]
    return out


_PROBLEM_ORDER = ("crlf", "bom", "quoted", "whitespace", "duplicate_key", "key_in_value",
                  "compose_interpolation", "world_readable")


def _judge_hash(out: _Loc, value: str, key: str | None, problems: set[str],
                literal_breaks: Iterable[str] = ()) -> None:
    """Set value/hash/state for a hash-holding location from the value a consumer reads."""
    out.value = value
    recovered, found = _recover(value, key)
    problems |= found
    breaks = set(literal_breaks) | (found - {"whitespace"} if found else set())
    if "whitespace" in found and value.strip() != value and out.cfg.format in ("env", "json"):
        breaks.add("whitespace")  # inside quotes / a JSON string the blanks are kept
    if is_valid_hash(recovered):
        out.hash = recovered
        out.status.fingerprint = fingerprint(recovered)
        if breaks:
            out.status.state = "invalid"
            out.status.detail = "holds a hash spoiled by " + ", ".join(sorted(breaks)) + \
                " (readers get a different value)"
        else:
            out.status.state = "ok"  # provisional: compared with the canonical hash later
    else:
        out.status.state = "invalid"
        out.status.fingerprint = fingerprint(value) if value else None
        out.status.detail = _hash_problem(recovered)


def _parse_hash_file(out: _Loc, text: str, bom: bool, problems: set[str]) -> None:
    norm = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [ln for ln in norm.split("\n") if ln.strip()]
    value = norm.strip()
    if len(lines) > 1:
        out.value = value
        out.status.state = "invalid"
        out.status.fingerprint = fingerprint(value)
        out.status.detail = f"holds {len(lines)} lines, expected one hash"
        return
    if norm not in (value, value + "\n"):
        problems.add("whitespace")
    _judge_hash(out, value, None, problems, ["bom"] if bom else [])


def _parse_password(out: _Loc, text: str, bom: bool, problems: set[str]) -> None:
    first, sep, rest = text.partition("\n")
    first = first.rstrip("\r")
    out.user_line = rest.replace("\r\n", "\n").replace("\r", "")
    value = first.strip()  # ComfyUI-Login strips line 1
    if value != first:
        problems.add("whitespace")
    if not sep or not out.user_line.strip():
        out.status.detail = "no user-name line"
    _judge_hash(out, value, None, problems, ["bom"] if bom else [])
    if not value and out.status.state == "invalid":
        out.status.detail = "empty first line (ComfyUI-Login falls back to first-login setup)"


def _parse_env(out: _Loc, text: str, bom: bool, problems: set[str]) -> None:
    loc = out.cfg
    key = loc.key or ""
    found = envfile.find(text, key)
    if not found:
        out.status.state, out.status.detail = "missing", f"key {key} not in the file"
        return
    if len(found) > 1:
        problems.add("duplicate_key")
    e = found[-1]
    if e.outer_ws:
        problems.add("whitespace")
    literal_breaks = []
    if not e.closed:
        problems.add("quoted")
        literal_breaks.append("quoted")
    if loc.compose and "$" in e.value and (e.quote != "'" or not e.closed):
        problems.add("compose_interpolation")
    if loc.format == "raw_env":
        out.value = e.value
        _, corrupt = _recover(e.value, key)
        problems |= corrupt
        # a raw password is never fingerprinted: _finish names it by the hash it verifies
        out.status.state = "ok" if e.value else "raw_mismatch"
        if not e.value:
            out.status.detail = "empty value"
        return
    _judge_hash(out, e.value, key, problems, literal_breaks)


def _parse_json(out: _Loc, text: str, bom: bool, problems: set[str]) -> None:
    dup_paths: list[tuple[str, ...]] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for k, v in pairs:
            if k in seen:
                dup_paths.append((k,))
            seen[k] = v
        return seen

    try:
        doc = json.loads(text, object_pairs_hook=hook)
    except json.JSONDecodeError as exc:
        out.status.state = "unreadable"
        out.status.detail = f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        out.block = "not valid JSON; genai-tui will not rewrite a file it cannot parse " \
                    "(fix it by hand or remove the location)"
        return
    except RecursionError:
        out.status.state, out.status.detail = "unreadable", "JSON nested too deeply"
        out.block = "JSON nested too deeply; it will not be rewritten"
        return
    parts = (out.cfg.key or "").split(".")
    node: Any = doc
    for i, part in enumerate(parts):
        if not isinstance(node, dict):
            where = ".".join(parts[:i]) or "the top level"
            out.status.state, out.status.detail = "invalid", f"{where} is not a JSON object"
            out.block = f"{where} is not a JSON object, so the key cannot be set"
            return
        if part not in node:
            out.status.state = "missing"
            out.status.detail = f"key {'.'.join(parts[:i + 1])} not in the file"
            return
        node = node[part]
    if any(p[0] in parts for p in dup_paths):
        problems.add("duplicate_key")
    if not isinstance(node, str):
        out.status.state = "invalid"
        out.status.detail = f"the value is {type(node).__name__}, expected a string"
        return
    _judge_hash(out, node, parts[-1], problems, [])


def _scan(tokens: TokensConfig) -> list[_Loc]:
    return [_scan_one(loc) for loc in tokens.locations]


# ---------------------------------------------------------------- the report


def _canonical(tokens: TokensConfig, locs: Sequence[_Loc]) -> _Loc | None:
    return next((x for x in locs if x.cfg.name == tokens.canonical), None)


def canonical_hash(tokens: TokensConfig) -> str | None:
    """The hash at the canonical location when it is well-formed (what a Bearer probe
    sends), else None. Reads one file; safe to call from any thread."""
    loc = next((x for x in tokens.locations if x.name == tokens.canonical), None)
    if loc is None or loc.format not in HASH_FORMATS:
        return None
    read = _scan_one(loc)
    return read.hash if read.status.state == "ok" else None


def _finish(tokens: TokensConfig, locs: list[_Loc]) -> TokensReport:
    """Compare every location with the canonical hash and build the report."""
    canon = _canonical(tokens, locs)
    report = TokensReport(canonical=tokens.canonical)
    canon_hash: str | None = None
    if canon is not None:
        canon.status.canonical = True
        if canon.cfg.format not in HASH_FORMATS:
            report.error = f"canonical location {canon.cfg.name!r} is raw_env; the canonical " \
                           "location must hold the hash"
        elif canon.status.state == "ok":
            canon_hash = canon.hash
    elif tokens.locations:
        report.error = "no canonical location configured"
    cname = tokens.canonical or "?"
    for x in locs:
        s = x.status
        if x is canon or s.state in ("missing", "unreadable", "invalid"):
            continue
        if x.cfg.format == "raw_env":
            if s.state == "ok":
                _judge_raw(x, canon_hash, cname, locs)
            continue
        if canon_hash is None:
            s.state = "mismatch"
            s.detail = f"no valid canonical hash to compare with ({cname})"
        elif x.hash != canon_hash:
            s.state, s.detail = "mismatch", f"differs from the canonical hash ({cname})"
    report.locations = [x.status for x in locs]
    for s in report.locations:
        if s.fingerprint:
            report.fingerprints.setdefault(s.fingerprint, []).append(s.name)
    report.consistent = bool(locs) and all(
        s.state == "ok" and "compose_interpolation" not in s.problems for s in report.locations)
    return report


def _judge_raw(x: _Loc, canon_hash: str | None, cname: str, locs: Sequence[_Loc]) -> None:
    """Name a raw password by the hash it verifies (`raw→fp:…`), canonical first: a
    fingerprint of the password itself could be tested against a dictionary."""
    s, value = x.status, x.value or ""
    if canon_hash is not None and check_raw(value, canon_hash):
        s.fingerprint = raw_label(canon_hash)
        return
    s.state = "raw_mismatch"
    other = _verified_hash(value, locs, exclude=canon_hash)
    s.fingerprint = raw_label(other)
    if is_valid_hash(value):
        s.detail = "holds a bcrypt hash, not the raw token"
    elif canon_hash is None:
        s.detail = f"cannot be checked: canonical location {cname!r} holds no valid hash"
        if other:
            s.detail += f"; it verifies {fingerprint(other)}"
    elif other:
        s.detail = (f"verifies {fingerprint(other)}, not the canonical hash ({cname})")
    else:
        s.detail = f"does not verify against the canonical hash ({cname}) or any other copy"


def _verified_hash(raw: str, locs: Sequence[_Loc], exclude: str | None = None) -> str | None:
    """The first distinct well-formed hash held somewhere that `raw` verifies."""
    seen = {exclude}
    for x in locs:
        if x.cfg.format in HASH_FORMATS and x.hash and x.hash not in seen:
            seen.add(x.hash)
            if check_raw(raw, x.hash):
                return x.hash
    return None


def value_counts(report: TokensReport) -> str:
    """"2 values" as the panel and the token_drift finding count them, and what the raw
    tokens verify: "1 value (1 raw token verifies it)"."""
    n = len(report.value_groups())
    raw = [loc for loc in report.locations if loc.format == "raw_env"]
    ok = sum(1 for loc in raw if loc.state == "ok")
    text = f"{n} value{'s' if n != 1 else ''}"
    notes = []
    if ok:
        notes.append(f"{ok} raw token{'s' if ok != 1 else ''} verif{'ies' if ok == 1 else 'y'}"
                     f" {'it' if n == 1 else 'a hash'}")
    bad = sum(1 for loc in raw if loc.state == "raw_mismatch")
    if bad:
        notes.append(f"{bad} raw token{'s' if bad != 1 else ''} verif"
                     f"{'ies' if bad == 1 else 'y'} none")
    return text + (f" ({'; '.join(notes)})" if notes else "")


def read_report(tokens: TokensConfig) -> TokensReport:
    """The tokens status: blocking file reads plus cached bcrypt checks; call it off the UI
    thread. Never raises for a bad file: problems become states and details."""
    return _finish(tokens, _scan(tokens))


#: the name the CLI's `check` uses
status = read_report


# ---------------------------------------------------------------- secrets for the log redactor


def secret_values(tokens: TokensConfig, max_bytes: int = MAX_FILE_BYTES) -> list[str]:
    """The secret values held in the configured token locations, for the log Redactor.

    Read with the report's own reader (`_scan_one`: never blocks on a FIFO, never reads a
    file over MAX_FILE_BYTES): for each location, the value a consumer reads (hash or raw
    token) and the hash a corrupted value was meant to hold, every line of a hash or
    PASSWORD file, every duplicate of an .env key (its value, and its text as written),
    and every bcrypt-shaped value anywhere in the first `max_bytes` of the file. A
    location that cannot be read is skipped; never raises."""
    out: set[str] = set()
    for loc in tokens.locations:
        try:
            x = _scan_one(loc)
            if x.content is None:
                continue
            out.update(BCRYPT_ANYWHERE.findall(x.content[:max_bytes].decode("utf-8", "replace")))
            text = x.content.decode("utf-8", "replace").lstrip("\ufeff")
            values = [v for v in (x.value, x.hash) if v]
            if loc.format in ("hash_file", "password_file") and x.value:
                values += x.value.splitlines()
            if loc.format in ("env", "raw_env") and loc.key:
                for e in envfile.find(text, loc.key):  # every duplicate
                    values.append(e.value)
                    out.add(_recover(e.raw, loc.key)[0])  # as written, quotes taken off
            for v in values:
                out.add(v.strip())
                out.add(_recover(v, loc.key)[0])
        except Exception:  # a redaction hint must never stop a log follower
            continue
    return sorted(v for v in out if v and "\n" not in v)


def __getattr__(name: str) -> Any:
    """`bcrypt` on first use (tests patch `<module>.bcrypt.checkpw`): the dashboard's first
    frame and `check` with cached verdicts never load it."""
    if name == "bcrypt":
        import bcrypt

        return bcrypt
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
