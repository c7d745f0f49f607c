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
import getpass
import hashlib
import json
import os
import re
import secrets
import socket
import stat
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
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
from genai_tui.secret import BCRYPT_ANYWHERE, BCRYPT_RE, fingerprint
from genai_tui.sources import envfile

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


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__


def _read_bytes(path: Path) -> tuple[bytes | None, os.stat_result | None, str | None, str]:
    """(content, stat, failed state, detail); never blocks on a FIFO or reads a huge file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if not path.parent.is_dir():
            return None, None, "missing", "folder does not exist"
        return None, None, "missing", "file not found"
    except NotADirectoryError:
        return None, None, "unreadable", "a parent of this path is a file, not a folder"
    except OSError as exc:
        return None, None, "unreadable", f"cannot stat: {_reason(exc)}"
    if stat.S_ISDIR(st.st_mode):
        return None, st, "unreadable", "is a folder, expected a file"
    if not stat.S_ISREG(st.st_mode):
        return None, st, "unreadable", "not a regular file"
    if st.st_size > MAX_FILE_BYTES:
        return None, st, "unreadable", f"too large for a token file ({st.st_size} bytes)"
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return None, st, "unreadable", f"cannot read: {_reason(exc)}"
    return data, st, None, ""


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
        out.status.fingerprint = fingerprint(e.value) if e.value else None
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


def _finish(tokens: TokensConfig, locs: list[_Loc], *, verify_raw: bool = True) -> TokensReport:
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
            if s.state != "ok":
                continue
            if canon_hash is None:
                s.state = "raw_mismatch"
                s.detail = f"cannot be checked: canonical location {cname!r} holds no valid hash"
            elif not verify_raw:
                s.state, s.detail = "raw_mismatch", "not checked"
            elif not check_raw(x.value or "", canon_hash):
                s.state = "raw_mismatch"
                s.detail = (f"does not verify against the canonical hash ({cname})"
                            if not is_valid_hash(x.value or "")
                            else "holds a bcrypt hash, not the raw token")
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


def value_counts(report: TokensReport) -> str:
    """"2 hash values, 1 raw token" (a raw token always has its own fingerprint)."""
    fmt = {s.name: s.format for s in report.locations}
    raw = sum(1 for names in report.fingerprints.values()
              if all(fmt.get(n) == "raw_env" for n in names))
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


@dataclass
class UnifyPlan:
    """What unify would do. The secrets it will write are private and never serialised."""

    source: str  # location name, or "rotate"
    rotate: bool
    target: str  # fingerprint of the hash everything will hold
    raw_target: str | None  # fingerprint of the raw token, when known
    changes: list[PlannedChange] = field(default_factory=list)
    blocked: list[Blocked] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    before: dict[str, str | None] = field(default_factory=dict)
    _writes: list[_FileWrite] = field(default_factory=list, repr=False)

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
                raise UnifyError(f"source {src_name!r} holds no valid hash ({detail}); {hint}")
            hash_ = src.hash
            raw = next((x.value for x in locs if x.cfg.format == "raw_env" and x.value
                        and x.status.state not in ("missing", "unreadable")
                        and check_raw(x.value, hash_)), None)
    plan = UnifyPlan(source=src_name, rotate=rotate, target=fingerprint(hash_),
                     raw_target=fingerprint(raw) if raw else None)
    plan.before = {x.cfg.name: x.status.fingerprint for x in locs}
    user = _password_users(locs) or DEFAULT_USER
    if rotate and not any(x.cfg.format == "raw_env" for x in locs):
        plan.warnings.append("no raw_env location is configured: the new raw password is "
                             "not stored anywhere (the API token still works; web login by "
                             "password will not)")

    # group locations by the real file they live in: one write per file
    files: dict[Path, list[_Loc]] = {}
    for x in locs:
        files.setdefault(Path(os.path.realpath(x.cfg.path)), []).append(x)
    for real, group in files.items():
        first = group[0]
        blocked = next((x.block for x in group if x.block), None)
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
                                         x.status.fingerprint, after, reason))
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
            gid=st.st_gid if st is not None and first.content is not None else None))
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
    seen: list[str] = []
    ordered = sorted(locs, key=lambda x: x.cfg.name != canonical)
    for x in ordered:
        if x.cfg.format in HASH_FORMATS and x.hash and x.hash not in seen:
            seen.append(x.hash)
            if check_raw(raw, x.hash):
                return x.hash
    return bcrypt.hashpw(raw.encode("utf-8"), bcrypt.gensalt(BCRYPT_COST)).decode("ascii")


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
                    return "fix", "fix " + ", ".join(fixes), fingerprint(x.value)
                return None
            why = ("it holds a raw token that does not match the chosen hash"
                   if x.value else "it holds no raw token")
            plan.blocked.append(Blocked(x.cfg.name, why + "; a raw token cannot be derived "
                                        "from a hash: use --rotate, or --from a raw location"))
            return None
        target_value, after = raw, fingerprint(raw)
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

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


_APPLY_LOCK = threading.Lock()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int | None = None, uid: int | None = None,
                 gid: int | None = None) -> bool:
    """Write via a temporary file in the same folder, fsync, rename: readers see the old or
    the new file, never half of one. `mode` None means a new file (0600). The owner is kept
    when possible (a container user must still read its PASSWORD); returns False when it
    could not be."""
    folder = path.parent
    owner_kept = True
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".genai-tui.tmp", dir=folder)
    try:
        try:
            os.fchmod(fd, 0o600 if mode is None else mode)
            if uid is not None and gid is not None and (uid, gid) != (os.getuid(),
                                                                       os.getgid()):
                try:
                    os.fchown(fd, uid, gid)
                except OSError:
                    owner_kept = False
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)
    return owner_kept


def _ensure_private_dir(folder: Path) -> None:
    """`folder` with mode 0700, and every folder we create on the way too (`.genai-tui/`
    holds backups of secrets)."""
    missing = []
    p = folder
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=0o700)
        with contextlib.suppress(OSError):
            os.chmod(d, 0o700)
    with contextlib.suppress(OSError):
        os.chmod(folder, 0o700)


def _backup(backup_dir: Path, w: _FileWrite, stamp: str) -> Path:
    assert w.old is not None
    _ensure_private_dir(backup_dir)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", w.locations[0])
    base = backup_dir / f"{stamp}-{safe}-{w.path.name}"
    target, n = base, 1
    while True:
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            break
        except FileExistsError:
            n += 1
            target = base.with_name(f"{base.name}.{n}")
    try:
        os.write(fd, w.old)
        os.fsync(fd)
    finally:
        os.close(fd)
    return target


def _digest(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def apply_plan(tokens: TokensConfig, plan: UnifyPlan, *, base_dir: Path | None = None,
               audit: bool = True) -> UnifyResult:
    """Carry out a plan: all files or none. Each changed file is backed up first, then
    written atomically with its mode and owner kept; if any write fails, the files already
    written are restored and UnifyError names the location and the reason."""
    result = UnifyResult(warnings=list(plan.warnings))
    with _APPLY_LOCK:
        if not plan._writes:
            result.message = "nothing to change"
            if audit:
                _audit_unify(tokens, plan, result, outcome="unchanged")
            return result
        # 1. nothing may have changed since the plan was made
        for w in plan._writes:
            now, _, failed, detail = _read_bytes(w.path)
            if failed not in (None, "missing") or _digest(now) != _digest(w.old):
                raise UnifyError(f"location {w.locations[0]!r} ({_disp(w.path, base_dir)}) "
                                 "changed since the plan was made; nothing was written, run "
                                 "unify again")
        # 2. backups of every file that exists
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        for w in plan._writes:
            if w.old is None:
                continue
            try:
                result.backups.append(str(_backup(tokens.backup_dir, w, stamp)))
            except OSError as exc:
                raise UnifyError(f"cannot back up location {w.locations[0]!r} "
                                 f"({_disp(w.path, base_dir)}) to {tokens.backup_dir}: "
                                 f"{_reason(exc)}; nothing was written") from None
        # 3. the writes, undone on the first failure
        done: list[_FileWrite] = []
        for w in plan._writes:
            try:
                if not atomic_write(w.path, w.new, w.mode, w.uid, w.gid):
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
        result.changed = [c.location for c in plan.changes]
        n = len(result.changed)
        result.message = f"{n} location(s) now hold {plan.target}"
        if audit:
            _audit_unify(tokens, plan, result)
    return result


def _rollback(done: list[_FileWrite]) -> list[str]:
    failed = []
    for w in reversed(done):
        try:
            if w.old is None:
                os.unlink(w.path)
            else:
                atomic_write(w.path, w.old, w.mode, w.uid, w.gid)
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
    """One JSON line, fingerprints only, file 0600 (its folder 0700 when we create it)."""
    entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "who": who(), **entry}
    line = scrub(json.dumps(entry, sort_keys=False, default=str)) + "\n"
    if not path.parent.exists():
        _ensure_private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, 0o600)
        os.write(fd, line.encode("utf-8"))
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
    with contextlib.suppress(OSError):
        append_audit(tokens.audit_log, entry)


def read_audit(path: Path, limit: int = 1000) -> list[dict[str, Any]]:
    """The last `limit` audit entries (malformed lines skipped)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 512 * 1024))
            data = f.read()
    except OSError:
        return []
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
