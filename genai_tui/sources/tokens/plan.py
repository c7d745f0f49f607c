"""Planning a unify: what every location would hold, and why some cannot be written.

`plan_unify` reads every location (`read`), picks the source of truth (the canonical
location, `--from NAME`, or a rotated credential) and works out, one write per real
file, the new bytes of each file: whole hash and PASSWORD files rewritten clean, one
`.env` line or one JSON string literal changed with every other byte kept. Locations it
must not touch (a symlink out of the tree, an unparsable file, a raw token it cannot
derive) are listed as blocked. Nothing is written here; `write.apply_plan` carries the
plan out, and `UnifyResult` says what it did.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genai_tui.config import TokenLocation, TokensConfig
from genai_tui.secret import fingerprint, raw_label
from genai_tui.sources import envfile
from genai_tui.sources.tokens.read import (
    _BOM,
    BCRYPT_COST,
    DEFAULT_USER,
    UnifyError,
    _Loc,
    _scan,
    _verified_hash,
    check_raw,
    new_credential,
    scrub,
)


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
    import bcrypt

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


def _digest(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()
