"""ComfyUI-Login credential: where it lives, whether the copies agree, and a safe unify.

The credential is a bcrypt hash that is also the API bearer token; the reference stack
keeps copies of it in several files (and the raw password in others). Its old
synchronizer rotated the credential on every run, corrupted `.env` lines, kept no
backups and never restarted the server. This module reads every configured copy
(`[tokens]` in the config), reports each one's state by fingerprint only, and rewrites
them from one source of truth: atomically, with backups, all-or-nothing, idempotently,
rotating only when asked, and with an audit trail.

Nothing here imports Textual; the panel, the modal and the CLI are thin layers on top.
Secret values live only in private attributes (never in a repr, JSON, message or log).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import hashlib
import json
import os
import re
import secrets
import socket
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bcrypt

from genai_tui.config import Config, TokenLocation, TokensConfig
from genai_tui.model import (
    LogEvent,
    ProbeResult,
    ServerTokenStatus,
    TokenLocationStatus,
    TokensReport,
)
from genai_tui.safety import one_line
from genai_tui.secret import BCRYPT_ANYWHERE, BCRYPT_RE, fingerprint, raw_label
from genai_tui.sources import envfile, fsutil

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


def scrub(text: str) -> str:
    """Replace anything shaped like a bcrypt hash with its fingerprint (defence in depth
    for messages built from OS errors or file names)."""
    return BCRYPT_ANYWHERE.sub(lambda m: fingerprint(m.group(0)), text)


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


def check_raw(raw: str, hash_: str) -> bool:
    """bcrypt.checkpw, cached by fingerprints: each check costs ~0.25 s at cost 12 and the
    panel re-reads the status every few seconds."""
    key = (fingerprint(raw), fingerprint(hash_))
    with _CHECK_LOCK:
        if key in _CHECK_CACHE:
            _CHECK_CACHE.move_to_end(key)
            return _CHECK_CACHE[key]
    try:
        ok = bool(raw) and bcrypt.checkpw(raw.encode("utf-8"), hash_.encode("ascii"))
    except (ValueError, UnicodeError):
        ok = False  # longer than 72 bytes, or a malformed hash
    with _CHECK_LOCK:
        _CHECK_CACHE[key] = ok
        while len(_CHECK_CACHE) > _CHECK_MAX:
            _CHECK_CACHE.popitem(last=False)
    return ok


def new_credential() -> tuple[str, str]:
    """A fresh raw token and its bcrypt hash at ComfyUI-Login's cost (12)."""
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
    """"2 hash values, 1 raw token" (raw tokens are told apart by the hash they verify)."""
    raw = sum(1 for fp in report.fingerprints if fp.startswith("raw"))
    hashes = len(report.fingerprints) - raw
    text = f"{hashes} hash value{'s' if hashes != 1 else ''}"
    if raw:
        text += f", {raw} raw token{'s' if raw != 1 else ''}"
    return text


def read_report(tokens: TokensConfig) -> TokensReport:
    """The tokens status: blocking file reads plus cached bcrypt checks; call it off the UI
    thread. Never raises for a bad file: problems become states and details."""
    return _finish(tokens, _scan(tokens))


# ---------------------------------------------------------------- the running server


def token_fingerprint_from_log(text: str) -> str | None:
    """Fingerprint of the hash in the last `For direct API calls, use token=` line (the one
    in force for the latest start), or None."""
    event = _last_token_event("", text, None)
    return event.fingerprint if event is not None else None


def _last_token_event(service: str, text: str, at: datetime | None) -> LogEvent | None:
    """The last token line of a log, parsed the way the log panel parses it."""
    from genai_tui.sources import logtext

    last: LogEvent | None = None
    for line in re.split(r"[\r\n]", text):
        if "use token=" in line:
            ev = logtext.log_event(service, line, at)
            if ev is not None and ev.kind == "token":
                last = ev
    return last


def _canonical_fp(report: TokensReport) -> str | None:
    c = next((s for s in report.locations if s.canonical), None)
    return c.fingerprint if c is not None and c.state == "ok" else None


_PROBE_WORDS = {
    "enforced": (True, "the hash on disk is accepted (200)"),
    "rejected": (False, "the hash on disk is refused (401): restart needed"),
    "no_password": (None, "no PASSWORD loaded: first-login state"),
    "disabled": (None, "auth is not enforced"),
    "unknown": (None, "the probe could not tell"),
}


def server_status(report: TokensReport, probes: Sequence[ProbeResult],
                  log_events: Sequence[LogEvent]) -> list[ServerTokenStatus]:
    """Per ComfyUI service: does the running server use the hash on disk? From the Bearer
    probe (authoritative) and the last token line logged since the container's start."""
    disk = _canonical_fp(report)
    by_fp = {fp: names for fp, names in report.fingerprints.items()}
    services: list[str] = []
    for p in probes:
        if p.auth is not None and p.service not in services:
            services.append(p.service)
    last_log: dict[str, LogEvent] = {}
    for ev in log_events:
        if ev.kind != "token" or not ev.fingerprint:
            continue
        prev = last_log.get(ev.service)
        if prev is None or prev.at is None or ev.at is None or ev.at >= prev.at:
            last_log[ev.service] = ev
        if ev.service not in services:
            services.append(ev.service)
    out = []
    for name in services:
        probe = next((p for p in probes if p.service == name and p.auth is not None), None)
        ev = last_log.get(name)
        verdict_p: bool | None = None
        parts = []
        source = []
        if probe is not None and probe.outcome == "ok" and probe.auth in _PROBE_WORDS:
            verdict_p, words = _PROBE_WORDS[probe.auth]
            parts.append("probe: " + words)
            source.append("probe")
        elif probe is not None:
            parts.append(f"probe: {probe.outcome}")
        verdict_l: bool | None = None
        if ev is not None and ev.fingerprint:
            source.append("log")
            if disk is None:
                parts.append(f"log: token {ev.fingerprint} (no valid hash on disk to compare)")
            elif ev.fingerprint == disk:
                verdict_l = True
                parts.append("log: started with the hash on disk")
            else:
                verdict_l = False
                holders = by_fp.get(ev.fingerprint)
                where = f" (as in {', '.join(holders)})" if holders else ""
                parts.append(f"log: started with {ev.fingerprint}{where}: restart needed")
        verdict = verdict_p if verdict_p is not None else verdict_l
        out.append(ServerTokenStatus(service=name, uses_disk_hash=verdict,
                                     source="+".join(source), log_fingerprint=(
                                         ev.fingerprint if ev else None),
                                     detail="; ".join(parts)))
    return out


# ---------------------------------------------------------------- planning


@dataclass
class PlannedChange:
    location: str
    path: str
    format: str
    action: str  # create | update | fix | add_key
    before: str | None  # fingerprint
    after: str  # fingerprint
    reason: str
    target: str = ""  # the file really written: `path` with every symlink resolved

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Blocked:
    location: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _FileWrite:
    path: Path  # the real path (symlinks resolved)
    locations: list[str]
    old: bytes | None = field(repr=False)
    new: bytes = field(repr=False)
    mode: int | None  # None: created with 0600
    uid: int | None = None
    gid: int | None = None
    folder_id: tuple[int, int] | None = None  # (st_dev, st_ino) of its folder at plan time


@dataclass
class UnifyPlan:
    """What unify would do. The secrets it will write are private and never serialised."""

    source: str  # location name, or "rotate"
    rotate: bool
    target: str  # fingerprint of the hash everything will hold
    raw_target: str | None  # `raw→fp:…` when the raw token is known (never its own fp)
    changes: list[PlannedChange] = field(default_factory=list)
    blocked: list[Blocked] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    before: dict[str, str | None] = field(default_factory=dict)
    _writes: list[_FileWrite] = field(default_factory=list, repr=False)
    #: every file the plan read (real path -> digest, None if absent), and where each
    #: location resolved: re-checked under the lock before anything is written
    _seen: dict[Path, str | None] = field(default_factory=dict, repr=False)
    _resolved: dict[str, tuple[Path, Path]] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return (f"UnifyPlan(source={self.source!r}, target={self.target!r}, "
                f"changes={[c.location for c in self.changes]!r})")

    @property
    def empty(self) -> bool:
        return not self.changes

    @property
    def value_changes(self) -> list[PlannedChange]:
        """Changes to the credential itself (not just cosmetic fixes)."""
        return [c for c in self.changes if c.before != c.after]

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rotate": self.rotate,
            "target": self.target,
            "raw_target": self.raw_target,
            "changes": [c.to_json() for c in self.changes],
            "blocked": [b.to_json() for b in self.blocked],
            "unchanged": list(self.unchanged),
            "warnings": list(self.warnings),
        }


def _render_hash_file(h: str) -> str:
    return h + "\n"


def _password_users(locs: Sequence[_Loc]) -> str | None:
    for x in locs:
        if x.cfg.format == "password_file" and x.user_line and x.user_line.strip():
            return x.user_line
    return None


def _json_indent(text: str) -> str | int | None:
    m = re.search(r"\n([ \t]+)\S", text)
    if not m:
        return None if text.strip() and "\n" not in text.strip() else 2
    ws = m.group(1)
    return ws if "\t" in ws else len(ws)


def _json_set(text: str, key: str, value: str) -> str:
    """`text` with the string at dotted `key` set to `value`. When the key exists only its
    string literal is replaced (every other byte kept); otherwise the document is re-dumped
    in its own indentation with the key appended, keeping the order of the others."""
    parts = key.split(".")
    span = _json_value_span(text, parts)
    if span is not None:
        a, b = span
        return text[:a] + json.dumps(value) + text[b:]
    doc = json.loads(text) if text.strip() else {}
    node = doc
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    dumped = json.dumps(doc, indent=_json_indent(text) if text.strip() else 2,
                        ensure_ascii=False)
    nl = "\r\n" if "\r\n" in text else "\n"
    return dumped.replace("\n", nl) + (nl if text.endswith(("\n", "\r\n")) or not text else "")


_WS = re.compile(r"[ \t\n\r]*")


def _json_value_span(text: str, parts: list[str]) -> tuple[int, int] | None:
    """Start/end offsets of the string literal at `parts` (last duplicate wins, as in
    json.loads), or None when absent or not a string."""
    dec = json.JSONDecoder()

    def skip(i: int) -> int:
        m = _WS.match(text, i)
        return m.end() if m else i

    def value_end(i: int) -> int:
        _, end = dec.raw_decode(text, i)
        return end

    def find(i: int, depth: int) -> tuple[int, int] | None:
        i = skip(i)
        if text[i:i + 1] != "{":
            return None
        i = skip(i + 1)
        hit: tuple[int, int] | None = None
        if text[i:i + 1] == "}":
            return None
        while True:
            k, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
            i = skip(i)
            i = skip(i + 1)  # the colon
            if k == parts[depth]:
                if depth == len(parts) - 1:
                    if text[i:i + 1] == '"':
                        hit = (i, value_end(i))
                    else:
                        hit = None
                else:
                    hit = find(i, depth + 1)
            i = skip(value_end(i))
            if text[i:i + 1] == ",":
                i = skip(i + 1)
                continue
            return hit

    try:
        return find(0, 0)
    except (ValueError, IndexError, RecursionError):
        return None


def _new_content(x: _Loc, hash_: str, user: str) -> str:
    """The whole new text of a hash or PASSWORD file (LF only, no BOM, user line kept)."""
    fmt = x.cfg.format
    if fmt == "hash_file":
        return _render_hash_file(hash_)
    if fmt == "password_file":
        user_line = x.user_line if x.user_line and x.user_line.strip() else user
        return f"{hash_}\n{user_line}"
    raise AssertionError(fmt)


def link_problem(loc: TokenLocation, root: Path | None, real: Path | None = None
                 ) -> str | None:
    """Why unify must not write `loc` because of a symlink on its path, or None.

    A ComfyUI container can write its own `login/` folder, so a link planted there could
    make a root-run unify overwrite any file on the host. A link (the file or a folder on
    the way) may only resolve inside the config's folder tree and into a folder of ours
    or of the tree's owner, unless the location says `follow_symlinks = true`; a dangling
    link is never created through."""
    path = Path(os.path.abspath(loc.path))
    real = real or Path(os.path.realpath(path))
    unlinked = path
    if root is not None and path.is_relative_to(os.path.abspath(root)):
        # links above the config's folder (/home -> /data/home) are the admin's own
        unlinked = Path(os.path.realpath(root)) / path.relative_to(os.path.abspath(root))
    if real == unlinked:
        return None
    if os.path.islink(path) and not os.path.exists(path):
        return (f"is a dangling symlink (to {real}); genai-tui never creates a file "
                "through a link")
    if loc.follow_symlinks:
        return None
    hint = "; set follow_symlinks = true on this location if that is intended"
    if root is not None:
        top = Path(os.path.realpath(root))
        if not real.is_relative_to(top):
            return f"is a symlink to {real}, outside the config's folder {top}{hint}"
    owners = {os.geteuid()}
    with contextlib.suppress(OSError):
        if root is not None:
            owners.add(os.stat(root).st_uid)
    try:
        owner = os.stat(real.parent).st_uid
    except OSError:
        return f"is a symlink to {real}, whose folder cannot be checked{hint}"
    if owner not in owners:
        return f"is a symlink to {real}, in a folder owned by another user (uid {owner}){hint}"
    return None


def _folder_id(folder: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def plan_unify(tokens: TokensConfig, source: str | None = None, *,
               rotate: bool = False) -> UnifyPlan:
    """What unify would change, and to what; raises UnifyError for an unusable source.

    The source of truth is the canonical location unless `source` names another one, or
    `rotate` mints a new credential. raw_env locations hold the raw token, which cannot be
    derived from a hash: without a raw value (rotate, a raw source, or a raw location that
    verifies against the chosen hash) a non-verifying raw location is reported as blocked.
    """
    locs = _scan(tokens)
    by_name = {x.cfg.name: x for x in locs}
    if rotate and source:
        raise UnifyError("--rotate makes a new credential; it cannot be combined with --from",
                         3)
    raw: str | None = None
    if rotate:
        raw, hash_ = new_credential()
        src_name = "rotate"
    else:
        src_name = source or tokens.canonical or ""
        src = by_name.get(src_name)
        if src is None:
            names = ", ".join(by_name) or "none configured"
            raise UnifyError(f"unknown token location {src_name!r} (locations: {names})", 3)
        if src.cfg.format == "raw_env":
            if src.status.state in ("missing", "unreadable") or not src.value:
                raise UnifyError(f"source {src_name!r} holds no raw token "
                                 f"({src.status.state}: {src.status.detail})")
            raw = src.value
            hash_ = _hash_for_raw(raw, locs, tokens.canonical)
        else:
            if src.hash is None:
                detail = f"{src.status.state}" + (f": {src.status.detail}"
                                                   if src.status.detail else "")
                hint = "choose another source with --from NAME, or --rotate" if source \
                    else "choose a source with --from NAME, or --rotate"
                raise UnifyError(f"nothing to copy from: source {src_name!r} holds no valid "
                                 f"hash ({detail}); {hint}")
            hash_ = src.hash
            raw = next((x.value for x in locs if x.cfg.format == "raw_env" and x.value
                        and x.status.state not in ("missing", "unreadable")
                        and check_raw(x.value, hash_)), None)
    plan = UnifyPlan(source=src_name, rotate=rotate, target=fingerprint(hash_),
                     raw_target=raw_label(hash_) if raw else None)
    plan.before = {x.cfg.name: x.status.fingerprint for x in locs}
    user = _password_users(locs) or DEFAULT_USER
    if rotate and not any(x.cfg.format == "raw_env" for x in locs):
        plan.warnings.append("no raw_env location is configured: the new raw password is "
                             "not stored anywhere (the API token still works; web login by "
                             "password will not)")

    # group locations by the real file they live in: one write per file
    files: dict[Path, list[_Loc]] = {}
    for x in locs:
        real = Path(os.path.realpath(x.cfg.path))
        files.setdefault(real, []).append(x)
        plan._resolved[x.cfg.name] = (x.cfg.path, real)
    for real, group in files.items():
        first = group[0]
        plan._seen[real] = _digest(first.content)
        blocked = next((b for b in (link_problem(x.cfg, tokens.root, real) for x in group)
                        if b), None) or next((x.block for x in group if x.block), None)
        if first.content is not None:
            bom = first.content.startswith(_BOM)
            text = first.content[len(_BOM) if bom else 0:].decode("utf-8", "replace")
        else:
            bom, text = False, ""
        new_text = text
        changed: list[PlannedChange] = []
        for x in group:
            change = _plan_location(x, hash_, raw, user, plan)
            if change is None:
                continue
            if blocked:
                plan.blocked.append(Blocked(x.cfg.name, blocked))
                continue
            action, reason, after = change
            if x.cfg.format in ("hash_file", "password_file"):
                new_text = _new_content(x, hash_, user)
            elif x.cfg.format == "json":
                try:
                    new_text = _json_set(new_text, x.cfg.key or "", hash_)
                except (ValueError, TypeError, AttributeError) as exc:
                    plan.blocked.append(Blocked(x.cfg.name,
                                                f"cannot set the key: {scrub(str(exc))}"))
                    continue
                bom = False
            else:
                value = raw if x.cfg.format == "raw_env" else hash_
                assert value is not None
                new_text = envfile.set_value(new_text, x.cfg.key or "", value,
                                             compose=x.cfg.compose,
                                             quote=None if x.cfg.compose else _quote_of(x))
            changed.append(PlannedChange(x.cfg.name, str(x.cfg.path), x.cfg.format, action,
                                         x.status.fingerprint, after, reason, str(real)))
        if changed and first.cfg.format in ("hash_file", "password_file"):
            bom = False  # whole-file formats are rewritten clean
        new = (_BOM if bom else b"") + new_text.encode("utf-8")
        if not changed or new == first.content:
            for c in changed:
                plan.unchanged.append(c.location)
            continue
        plan.changes.extend(changed)
        st = first.st
        plan._writes.append(_FileWrite(
            path=real, locations=[c.location for c in changed], old=first.content, new=new,
            mode=stat.S_IMODE(st.st_mode) if st is not None and first.content is not None
            else None,
            uid=st.st_uid if st is not None and first.content is not None else None,
            gid=st.st_gid if st is not None and first.content is not None else None,
            folder_id=_folder_id(real.parent)))
    done = {c.location for c in plan.changes} | {b.location for b in plan.blocked}
    for x in locs:
        if x.cfg.name not in done and x.cfg.name not in plan.unchanged:
            plan.unchanged.append(x.cfg.name)
    plan.unchanged = [n for n in by_name if n in plan.unchanged]
    return plan


def _quote_of(x: _Loc) -> str | None:
    if x.cfg.format not in ("env", "raw_env") or x.content is None:
        return None
    try:
        text = x.content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    found = envfile.find(text, x.cfg.key or "")
    return found[-1].quote if found and found[-1].closed else None


def _hash_for_raw(raw: str, locs: Sequence[_Loc], canonical: str | None) -> str:
    """An existing hash that verifies against `raw` (canonical first), so nothing changes
    needlessly; otherwise a new hash at cost 12."""
    ordered = sorted(locs, key=lambda x: x.cfg.name != canonical)
    return _verified_hash(raw, ordered) or bcrypt.hashpw(
        raw.encode("utf-8"), bcrypt.gensalt(BCRYPT_COST)).decode("ascii")


def _plan_location(x: _Loc, hash_: str, raw: str | None, user: str,
                   plan: UnifyPlan) -> tuple[str, str, str] | None:
    """(action, reason, fingerprint after) for a location that must change, None to keep
    it (blocked locations are recorded in the plan and return None)."""
    fmt = x.cfg.format
    s = x.status
    fixes = sorted(x.fixable)
    if fmt == "raw_env":
        if raw is None:
            if x.value and s.state not in ("missing", "unreadable") and check_raw(x.value,
                                                                                  hash_):
                if fixes and not x.block:
                    return "fix", "fix " + ", ".join(fixes), raw_label(hash_)
                return None
            why = ("it holds a raw token that does not match the chosen hash"
                   if x.value else "it holds no raw token")
            plan.blocked.append(Blocked(x.cfg.name, why + "; a raw token cannot be derived "
                                        "from a hash: use --rotate, or --from a raw location"))
            return None
        target_value, after = raw, raw_label(hash_)
    else:
        target_value, after = hash_, fingerprint(hash_)
    if s.state == "missing":
        if x.content is None:
            if not x.cfg.path.parent.is_dir():
                plan.blocked.append(Blocked(x.cfg.name, f"folder {x.cfg.path.parent} does not "
                                            "exist; genai-tui does not create folders (check "
                                            "the path in [tokens])"))
                return None
            return "create", "file missing", after
        return "add_key", f"key {x.cfg.key} missing", after
    current = x.value if fmt == "raw_env" else x.hash
    if current != target_value:
        if s.state == "invalid" and x.hash is None:
            return "update", "invalid value replaced", after
        return "update", "differs from the source", after
    if s.state == "invalid" or fixes:
        return "fix", "fix " + ", ".join(fixes or ["value"]), after
    return None


# ---------------------------------------------------------------- applying


@dataclass
class UnifyResult:
    changed: list[str] = field(default_factory=list)  # location names
    files: list[str] = field(default_factory=list)
    backups: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    message: str = ""
    pruned: list[str] = field(default_factory=list)  # old backups removed (keep_backups)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


#: how long a unify waits for another one (the dashboard, a script, another admin)
LOCK_WAIT = 10.0
LOCK_FILE = "unify.lock"


@contextlib.contextmanager
def unify_lock(tokens: TokensConfig, wait: float = LOCK_WAIT) -> Iterator[None]:
    """One unify at a time per stack: an exclusive `flock` on `<state_dir>/unify.lock`.
    Waits up to `wait` seconds, then refuses naming the holder (who, pid, since when)."""
    import time

    folder = tokens.state_dir
    try:
        fsutil.private_dir(folder)
        fd, _ = fsutil.open_regular(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600,
                                    follow=False)
    except OSError as exc:
        raise UnifyError(f"cannot open the unify lock {folder / LOCK_FILE}: "
                         f"{fsutil.reason(exc)}; nothing was written") from None
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise UnifyError(f"another unify is running ({_lock_holder(fd)}); "
                                     f"waited {wait:g} s, nothing was written; try again "
                                     "when it has finished") from None
                time.sleep(0.05)
        holder = json.dumps({"who": who(), "pid": os.getpid(),
                             "since": datetime.now(UTC).isoformat(timespec="seconds")})
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder.encode() + b"\n", 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def _lock_holder(fd: int) -> str:
    try:
        item = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        item = None
    if not isinstance(item, dict) or "pid" not in item:
        return "holder unknown"
    return scrub(one_line(f"{item.get('who', '?')}, pid {item.get('pid')}, "
                          f"since {item.get('since', '?')}", 200))


def atomic_write(path: Path, data: bytes, mode: int | None = None, uid: int | None = None,
                 gid: int | None = None) -> bool:
    """Write via a temporary file in the same folder, fsync, rename: readers see the old or
    the new file, never half of one. `mode` None means a new file (0600). The owner is kept
    when possible (a container user must still read its PASSWORD); returns False when it
    could not be. A symlink at `path` is replaced, never written through."""
    return fsutil.atomic_write(path, data, mode, uid, gid)


def backup_folder(tokens: TokensConfig) -> Path:
    """Where backups go: `backup_dir` itself when it is a private folder of ours (or we
    create it), else a private `genai-tui-<uid>` folder inside it. The mode of a folder we
    did not create is never changed (a shared 1777 folder keeps its sticky bit)."""
    base = tokens.backup_dir
    if not os.path.lexists(base):
        fsutil.private_dir(base)
    if fsutil.is_private_dir(base):
        return base
    if not os.path.isdir(base):
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(base))
    sub = base / f"genai-tui-{os.geteuid()}"
    if not os.path.lexists(sub):
        fsutil.private_dir(sub)
    if not fsutil.is_private_dir(sub):
        raise PermissionError(errno.EPERM, "not a private folder of this user", str(sub))
    return sub


_STAMP = r"\d{8}T\d{6}\.\d{6}Z"


def _backup_base(w: _FileWrite) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", w.locations[0]) + "-" + w.path.name


def _backup(folder: Path, w: _FileWrite, stamp: str) -> Path:
    """A 0600 copy of the file's old bytes; a copy that could not be completed (a full
    disk) is removed, never left behind half-written."""
    assert w.old is not None
    dfd = fsutil.open_dir(folder)
    try:
        name = base = f"{stamp}-{_backup_base(w)}"
        n = 1
        while True:
            try:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                             0o600, dir_fd=dfd)
                break
            except FileExistsError:
                n += 1
                name = f"{base}.{n}"
        try:
            try:
                fsutil.write_all(fd, w.old)
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=dfd)
            raise
        fsutil.fsync_dir(dfd)
    finally:
        os.close(dfd)
    return folder / name


def prune_backups(folder: Path, w: _FileWrite, keep: int) -> list[str]:
    """Remove all but the newest `keep` backups of this location's file (only regular
    files of ours with our naming); returns the names removed."""
    pat = re.compile(_STAMP + "-" + re.escape(_backup_base(w)) + r"(\.\d+)?$")
    mine: list[tuple[str, int, str]] = []  # (stamp, copy number, name): oldest first
    with contextlib.suppress(OSError), os.scandir(folder) as it:
        for e in it:
            m = pat.match(e.name)
            if m is None:
                continue
            with contextlib.suppress(OSError):
                st = e.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
                    mine.append((e.name[:23], int(m.group(1)[1:]) if m.group(1) else 1,
                                 e.name))
    mine.sort()
    removed = []
    for _, _, name in mine[:-keep] if keep > 0 else mine:
        with contextlib.suppress(OSError):
            os.unlink(folder / name)
            removed.append(name)
    return removed


def _digest(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def _recheck(tokens: TokensConfig, plan: UnifyPlan, base_dir: Path | None) -> None:
    """Under the lock: every file the plan read is still what it read, and every location
    still resolves where it did (time of check to time of use)."""
    locs = {loc.name: loc for loc in tokens.locations}
    for name, (path, real) in plan._resolved.items():
        now = Path(os.path.realpath(path))
        problem = link_problem(locs[name], tokens.root, now) if name in locs else None
        if now != real or problem:
            raise UnifyError(f"location {name!r} ({_disp(path, base_dir)}) "
                             + (problem or f"now resolves to {now}, not {real}")
                             + "; nothing was written, run unify again")
    for real, digest in plan._seen.items():
        try:
            now, _ = fsutil.read_regular(real, MAX_FILE_BYTES, follow=False)
        except FileNotFoundError:
            now = None
        except OSError as exc:
            raise UnifyError(f"{_disp(real, base_dir)}: {fsutil.reason(exc)}; nothing was "
                             "written") from None
        if _digest(now) != digest:
            names = [n for n, (_, r) in plan._resolved.items() if r == real]
            raise UnifyError(f"location {names[0]!r} ({_disp(real, base_dir)}) changed since "
                             "the plan was made; nothing was written, run unify again")
    for w in plan._writes:
        if w.folder_id is not None and _folder_id(w.path.parent) != w.folder_id:
            raise UnifyError(f"the folder of location {w.locations[0]!r} "
                             f"({_disp(w.path.parent, base_dir)}) was replaced since the "
                             "plan was made; nothing was written, run unify again")


def _clean_litter(tokens: TokensConfig) -> int:
    """Remove the temporary files of ours that a killed unify left beside token files."""
    by_folder: dict[Path, set[str]] = {}
    for loc in tokens.locations:
        real = Path(os.path.realpath(loc.path))
        by_folder.setdefault(real.parent, set()).add(real.name)
    return sum(fsutil.clean_temps(folder, names) for folder, names in by_folder.items())


def apply_plan(tokens: TokensConfig, plan: UnifyPlan, *, base_dir: Path | None = None,
               audit: bool = True, lock_wait: float = LOCK_WAIT) -> UnifyResult:
    """Carry out a plan: all files or none, one unify at a time (`unify_lock`). Under the
    lock every file the plan read is re-verified, leftovers of a killed run are removed,
    each changed file is backed up, then written atomically in the folder it was planned
    in, mode and owner kept; if any write fails, the files already written are restored
    and UnifyError names the location and the reason. Old backups are pruned."""
    result = UnifyResult(warnings=list(plan.warnings))
    with unify_lock(tokens, lock_wait):
        cleaned = _clean_litter(tokens)
        if cleaned:
            result.warnings.append(f"removed {cleaned} temporary file(s) left by an "
                                   "interrupted unify")
        if not plan._writes:
            result.message = "nothing to change"
            if audit:
                _audit_unify(tokens, plan, result, outcome="unchanged")
            return result
        # 1. nothing may have changed since the plan was made
        _recheck(tokens, plan, base_dir)
        # 2. backups of every file that exists
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        folder: Path | None = None
        for w in plan._writes:
            if w.old is None:
                continue
            try:
                folder = folder or backup_folder(tokens)
                result.backups.append(str(_backup(folder, w, stamp)))
            except OSError as exc:
                msg = (f"cannot back up location {w.locations[0]!r} "
                       f"({_disp(w.path, base_dir)}) to {tokens.backup_dir}: "
                       f"{_reason(exc)}; nothing was written")
                for b in result.backups:  # a backup of a change that never happened
                    with contextlib.suppress(OSError):
                        os.unlink(b)
                result.backups = []
                if audit:
                    _audit_unify(tokens, plan, result, error=msg)
                raise UnifyError(msg) from None
        # 3. the writes, undone on the first failure
        done: list[_FileWrite] = []
        for w in plan._writes:
            try:
                if not _write_planned(w):
                    result.warnings.append(
                        f"location {w.locations[0]!r}: could not keep the file's owner "
                        f"(uid {w.uid}, gid {w.gid}); check that its reader can still open it")
            except OSError as exc:
                failed_restore = _rollback(done)
                msg = (f"cannot write location {w.locations[0]!r} "
                       f"({_disp(w.path, base_dir)}): {_reason(exc)}; ")
                if failed_restore:
                    msg += ("could not restore " + ", ".join(failed_restore)
                            + f" (backups in {tokens.backup_dir})")
                else:
                    msg += (f"nothing was changed ({len(done)} file(s) already written were "
                            "restored)" if done else "nothing was changed")
                if audit:
                    _audit_unify(tokens, plan, result, error=msg)
                raise UnifyError(msg) from None
            done.append(w)
            result.files.append(str(w.path))
        if folder is not None:
            for w in plan._writes:
                if w.old is not None:
                    result.pruned.extend(prune_backups(folder, w, tokens.keep_backups))
        result.changed = [c.location for c in plan.changes]
        n = len(result.changed)
        result.message = f"{n} location(s) now hold {plan.target}"
        if audit:
            _audit_unify(tokens, plan, result)
    return result


def _write_planned(w: _FileWrite, data: bytes | None = None) -> bool:
    """Replace the planned file inside the very folder the plan saw (by device and
    inode), so a folder swapped for a link meanwhile is never written through."""
    dfd = fsutil.open_dir(w.path.parent)
    try:
        st = os.fstat(dfd)
        if w.folder_id is not None and (st.st_dev, st.st_ino) != w.folder_id:
            raise FileExistsError(errno.EEXIST, "its folder was replaced since the plan")
        return fsutil.replace_at(dfd, w.path.name, w.new if data is None else data, w.mode,
                                 w.uid, w.gid)
    finally:
        os.close(dfd)


def _rollback(done: list[_FileWrite]) -> list[str]:
    failed = []
    for w in reversed(done):
        try:
            if w.old is None:
                os.unlink(w.path)
            else:
                _write_planned(w, w.old)
        except OSError as exc:
            failed.append(f"{w.locations[0]!r} ({_reason(exc)})")
    return failed


def _disp(path: Path, base: Path | None) -> str:
    return display_path(path, base)


def display_path(path: str | Path, base: Path | None) -> str:
    """`path` relative to the config's folder when inside it."""
    p = Path(path)
    if base is not None:
        with contextlib.suppress(ValueError):
            return str(p.relative_to(base))
    return str(p)


# ---------------------------------------------------------------- audit


def who() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in a container, no env vars
        user = f"uid:{os.getuid()}"
    try:
        host = socket.gethostname()
    except OSError:
        host = "unknown-host"
    return f"{user}@{host}"


def append_audit(path: Path, entry: dict[str, Any]) -> None:
    """One JSON line, fingerprints only, file 0600 (its folder 0700 when we create it).
    Never follows a symlink at `path` and never blocks: a FIFO, device or folder there
    raises OSError naming what it is."""
    entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "who": who(), **entry}
    line = scrub(json.dumps(entry, sort_keys=False, default=str)) + "\n"
    if not path.parent.exists():
        fsutil.private_dir(path.parent)
    fd, st = fsutil.open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600,
                                 follow=False)
    try:
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(fd, 0o600)
        fsutil.write_all(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def _audit_unify(tokens: TokensConfig, plan: UnifyPlan, result: UnifyResult,
                 error: str | None = None, outcome: str = "ok") -> None:
    after = dict(plan.before)
    if error is None:
        for c in plan.changes:
            after[c.location] = c.after
    entry = {
        "what": "rotate" if plan.rotate else "unify",
        "source": plan.source,
        "before": plan.before,
        "after": after,
        "changed": [c.location for c in plan.changes] if error is None else [],
        "blocked": [b.location for b in plan.blocked],
        "backups": list(result.backups),
        "result": "failed" if error else outcome,
    }
    if error:
        entry["error"] = error
    if result.pruned:
        entry["pruned_backups"] = len(result.pruned)
    try:
        append_audit(tokens.audit_log, entry)
    except OSError as exc:
        result.warnings.append(f"audit log {tokens.audit_log}: {fsutil.reason(exc)}; this "
                               "change was not recorded there")


def read_audit(path: Path, limit: int = 1000) -> list[dict[str, Any]]:
    """The last `limit` audit entries (malformed lines skipped)."""
    try:
        fd, st = fsutil.open_regular(path, follow=False)
    except OSError:
        return []
    try:
        data = os.pread(fd, 512 * 1024, max(0, st.st_size - 512 * 1024))
    except OSError:
        return []
    finally:
        os.close(fd)
    out = []
    for line in data.decode("utf-8", "replace").splitlines()[-limit:]:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


class StatusAuditor:
    """Appends a `status_change` line when a location's (state, fingerprint) changes
    between two reads; the first observation is recorded once (the last recorded state is
    taken from the audit file, so restarting the dashboard does not repeat it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last: dict[str, list[str | None]] | None = None

    def _seed(self) -> dict[str, list[str | None]]:
        for item in reversed(read_audit(self.path)):
            snap = item.get("snapshot") if item.get("what") == "status_change" else None
            if isinstance(snap, dict):
                return {str(k): list(v) if isinstance(v, list) else [None, None]
                        for k, v in snap.items()}
        return {}

    def observe(self, report: TokensReport) -> dict[str, Any] | None:
        """Record `report` if anything changed; returns the entry written (or None)."""
        now = {s.name: [s.state, s.fingerprint] for s in report.locations}
        if self._last is None:
            self._last = self._seed()
        if now == self._last:
            return None
        before = {k: v for k, v in self._last.items() if now.get(k) != v}
        after = {k: v for k, v in now.items() if self._last.get(k) != v}
        entry = {"what": "status_change", "before": before, "after": after,
                 "consistent": report.consistent, "snapshot": now}
        self._last = now
        try:
            append_audit(self.path, entry)
        except OSError:
            return None
        return entry


# ---------------------------------------------------------------- restart and re-probe


def restart_services(config: Config, names: Sequence[str]) -> list[tuple[str, bool, str]]:
    """Restart the named services' containers (ComfyUI-Login reads PASSWORD only at
    start-up). (name, ok, detail) per service; never raises; each restart is bounded by
    the configured Docker timeout and stop timeout."""
    from genai_tui.sources.docker import DockerSource

    out: list[tuple[str, bool, str]] = []
    source = DockerSource(config)
    try:
        for name in names:
            svc = config.service(name)
            if svc is None:
                out.append((name, False, "not a configured service"))
            elif svc.runtime != "docker":
                out.append((name, False, "not a Docker service: restart it by hand"
                            + (f" ({svc.restart_command})" if svc.restart_command else "")))
            else:
                ok, detail = source.restart(svc)
                out.append((name, ok, scrub(detail)))
    finally:
        source.close()
    return out


def probe_after_restart(config: Config, names: Sequence[str], *, wait: float = 60.0,
                        stop: threading.Event | None = None) -> list[ProbeResult]:
    """Probe the services with the hash now on disk until each gives a clear auth verdict
    (or `wait` seconds pass): `enforced` proves the restart loaded the new hash."""
    import time

    from genai_tui.sources import probes

    hash_ = canonical_hash(config.tokens)
    services = tuple(s for s in config.services if s.name in names)
    deadline = time.monotonic() + wait
    pending = list(services)
    results: dict[str, ProbeResult] = {}
    while pending:
        for r in probes.probe_once(config.with_services(tuple(pending)), hash_):
            results[r.service] = r
        pending = [s for s in pending if not _settled(results[s.name])]
        if not pending or time.monotonic() >= deadline or (stop is not None and stop.is_set()):
            break
        time.sleep(0.5)
    return [results[s.name] for s in services if s.name in results]


def _settled(r: ProbeResult) -> bool:
    if r.auth is None:
        return r.outcome == "ok"
    return r.outcome == "ok" and r.auth in ("enforced", "rejected", "disabled", "no_password")


def log_events_for_check(config: Config, docker_source: Any,
                         containers: Sequence[Any]) -> list[LogEvent]:
    """The token line in force for each running ComfyUI container, read once from its logs
    since its last start (bounded), for `check` and `tokens status`."""
    out: list[LogEvent] = []
    running = {c.service: c for c in containers if getattr(c, "running", False) and c.id}
    for svc in config.services:
        info = running.get(svc.name)
        if svc.kind != "comfyui" or svc.runtime != "docker" or info is None:
            continue
        try:
            text = _logs_since_start(docker_source.client(), info.id, info.started_at)
        except Exception:  # an engine hiccup only costs this hint
            continue
        last = _last_token_event(svc.name, text, info.started_at)
        if last is not None:
            out.append(last)
    return out


LOG_SCAN_BYTES = 8 << 20


def _logs_since_start(client: Any, container_id: str, started_at: datetime | None) -> str:
    # follow defaults to stream in docker-py: say no, or this never ends
    kwargs: dict[str, Any] = {"stdout": True, "stderr": True, "stream": True, "follow": False}
    if started_at is not None:
        kwargs["since"] = max(1, int(started_at.timestamp()))
    stream = client.api.logs(container_id, **kwargs)
    buf = bytearray()
    try:
        for chunk in stream:
            buf += chunk
            if len(buf) >= LOG_SCAN_BYTES:
                break
    finally:
        with contextlib.suppress(Exception):
            stream.close()
    return buf.decode("utf-8", "replace")


#: the name the CLI's `check` uses
status = read_report
