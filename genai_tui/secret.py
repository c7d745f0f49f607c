"""Secret-safe helpers: recognising bcrypt hashes and naming a secret without showing it.

A fingerprint (`fp:` + 10 hex digits) is what the UI, JSON, audit log and exceptions show
instead of a value. It is an HMAC-SHA256 of the value under a per-install key kept in the
stack's state folder (`.genai-tui/fingerprint.key`, 0600), so:

- equal fingerprints mean equal values — on this install: the copy on disk can be matched
  with the one a server logged, and runs of `check`, `tokens` and the dashboard agree;
- printed output gives nothing to test guesses against offline: without the key, a
  dictionary of passwords cannot be checked against a fingerprint (an unsalted digest of
  a human-chosen password falls to a dictionary in about a second).

A raw password is never fingerprinted on its own anyway: it is shown by the hash it
verifies (`raw→fp:…`). When the key file cannot be used (another user's, unwritable
folder), a key that lives only in this process is used and fingerprints are comparable
within this run only.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import stat
import threading
from pathlib import Path

#: a well-formed bcrypt hash (ComfyUI-Login's token), anchored
BCRYPT_RE = re.compile(r"^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$")
#: a bcrypt hash anywhere in a line
BCRYPT_ANYWHERE = re.compile(r"\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}")

KEY_BYTES = 32
KEY_FILE = "fingerprint.key"

_key: bytes | None = None
_key_from_file = False  # the key is the install's (stable across runs), not this process's
_key_lock = threading.Lock()


def fingerprint(value: str) -> str:
    """A short identifier of a secret, e.g. `fp:3f9c0a1b7e`: keyed, so not testable
    offline."""
    digest = hmac.new(_current_key(), b"genai-tui fingerprint v2\0" + value.encode("utf-8"),
                      hashlib.sha256).hexdigest()
    return "fp:" + digest[:10]


def digest(purpose: str, *parts: str) -> str | None:
    """A full keyed digest of `parts` for `purpose` (domain-separated from fingerprints, so
    no stored digest equals anything printed), or None when the key lives only in this
    process: such a digest would mean nothing to the next run."""
    if not _key_from_file:
        return None
    data = b"genai-tui " + purpose.encode() + b"\0" + b"\0".join(
        p.encode("utf-8", "surrogatepass") for p in parts)
    return hmac.new(_current_key(), data, hashlib.sha256).hexdigest()


def raw_label(verified_hash: str | None) -> str:
    """How a raw password is named: by the hash it verifies, never by itself."""
    return f"raw→{fingerprint(verified_hash)}" if verified_hash else "raw→none"


def _current_key() -> bytes:
    global _key
    with _key_lock:
        if _key is None:
            _key = secrets.token_bytes(KEY_BYTES)
        return _key


def set_key(key: bytes, *, from_file: bool = False) -> None:
    """Use `key` for every fingerprint from now on (tests, and `use_key_file`)."""
    global _key, _key_from_file
    if len(key) < 16:
        raise ValueError("a fingerprint key needs at least 16 bytes")
    with _key_lock:
        _key = bytes(key)
        _key_from_file = from_file


def use_key_file(state_dir: Path) -> str | None:
    """Load (or create, 0600) the install's key in `state_dir`; None when it is in use,
    else why fingerprints are valid for this run only. Never follows a symlink, never
    blocks on a special file, never uses a key other users could read or replace."""
    path = Path(state_dir) / KEY_FILE
    try:
        key = _read_key(path)
        if key is None:
            key = _create_key(path)
    except OSError as exc:
        return f"fingerprint key {path}: {(exc.strerror or type(exc).__name__).lower()}"
    except ValueError as exc:
        return f"fingerprint key {path}: {exc}"
    set_key(key, from_file=True)
    return None


def _read_key(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise ValueError("not a private file of this user (expected mode 0600)")
        data = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) != KEY_BYTES:
        raise ValueError(f"expected {KEY_BYTES} bytes")
    return data


def _create_key(path: Path) -> bytes:
    folder = path.parent
    if not folder.is_dir():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    tmp = folder / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}.genai-tui.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # never replaces a key another process just made
    except FileExistsError:
        existing = _read_key(path)
        if existing is None:
            raise
        key = existing
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return key
