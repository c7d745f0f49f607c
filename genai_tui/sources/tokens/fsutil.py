"""File-system primitives for files we read or rewrite in folders others can write.

Token files sit in folders a container can write (ComfyUI's `login/`), and genai-tui often
runs as root. So every open here is non-blocking (a FIFO never hangs us), checked to be a
regular file before it is read, and writes work inside a folder opened once without
following links (a symlink planted between plan and write is replaced, never written
through). No Textual, no config: plain paths and file descriptors.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

#: suffix of our temporary files; a run cleans up those a crash left behind
TMP_SUFFIX = ".genai-tui.tmp"


class NotRegular(OSError):
    """A path we must read or append to is a FIFO, device, socket or folder."""


def reason(exc: BaseException) -> str:
    """An OS error in a few lowercase words, without the path (callers name it)."""
    if isinstance(exc, NotRegular):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        return "is a symlink (not followed)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__


def kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISLNK(mode):
        return "a symlink"
    return "not a regular file"


def open_regular(path: str | Path, flags: int = os.O_RDONLY, mode: int = 0o600, *,
                 follow: bool = True, dir_fd: int | None = None) -> tuple[int, os.stat_result]:
    """(fd, fstat) of a regular file; never blocks on a FIFO or a device. Raises
    NotRegular (with what it is) or OSError."""
    flags |= os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO with no reader, opened for writing
            raise NotRegular("is a FIFO or a device, not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegular(f"is {kind_of(st.st_mode)}, not a regular file")
        # reads and writes of a regular file never block; clear the flag for plain I/O
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_regular(path: str | Path, limit: int, *, follow: bool = True,
                 dir_fd: int | None = None) -> tuple[bytes, os.stat_result]:
    """At most `limit` + 1 bytes of a regular file (so callers can tell "too big")."""
    fd, st = open_regular(path, follow=follow, dir_fd=dir_fd)
    try:
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks), st
    finally:
        os.close(fd)


def open_dir(path: str | Path) -> int:
    """A folder's fd, the last component not followed (O_DIRECTORY | O_NOFOLLOW)."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                   | getattr(os, "O_CLOEXEC", 0))


def fsync_dir(dfd: int) -> None:
    with contextlib.suppress(OSError):
        os.fsync(dfd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def temp_name(name: str) -> str:
    return f".{name}.{secrets.token_hex(4)}{TMP_SUFFIX}"


def replace_at(dfd: int, name: str, data: bytes, mode: int | None = None,
               uid: int | None = None, gid: int | None = None) -> bool:
    """Atomically replace `name` in the folder `dfd`: a temporary file there, fsync,
    rename, fsync the folder. Readers see the old file or the new one. Whatever `name` is
    now (even a symlink) is replaced, never written through. `mode` None means 0600 (a
    new file). Returns False when the owner could not be kept."""
    tmp = temp_name(name)
    owner_kept = True
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                 | getattr(os, "O_CLOEXEC", 0), 0o600, dir_fd=dfd)
    try:
        try:
            os.fchmod(fd, 0o600 if mode is None else mode)
            if uid is not None and gid is not None and (uid, gid) != (os.geteuid(),
                                                                       os.getegid()):
                try:
                    os.fchown(fd, uid, gid)
                except OSError:
                    owner_kept = False
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dfd)
        raise
    fsync_dir(dfd)
    return owner_kept


def atomic_write(path: Path, data: bytes, mode: int | None = None, uid: int | None = None,
                 gid: int | None = None) -> bool:
    """`replace_at` for a path (its folder opened without following its last link)."""
    dfd = open_dir(path.parent)
    try:
        return replace_at(dfd, path.name, data, mode, uid, gid)
    finally:
        os.close(dfd)


def clean_temps(folder: Path, names: Iterator[str] | list[str] | set[str]) -> int:
    """Remove the temporary files a killed run left for these file names in `folder`:
    only regular files of ours (this user) named `.NAME.<hex>.genai-tui.tmp`. Returns
    how many were removed; never raises."""
    pats = [re.compile(r"\." + re.escape(n) + r"\.[0-9a-zA-Z_]+" + re.escape(TMP_SUFFIX) + "$")
            for n in names]
    if not pats:
        return 0
    removed = 0
    try:
        dfd = open_dir(folder)
    except OSError:
        return 0
    try:
        for entry in os.listdir(dfd):
            if not entry.endswith(TMP_SUFFIX) or not any(p.match(entry) for p in pats):
                continue
            try:
                st = os.stat(entry, dir_fd=dfd, follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
                    os.unlink(entry, dir_fd=dfd)
                    removed += 1
            except OSError:
                continue
        if removed:
            fsync_dir(dfd)
    finally:
        os.close(dfd)
    return removed


def private_dir(folder: Path) -> list[Path]:
    """Create `folder` and missing parents with mode 0700; returns the folders created.
    The mode of a folder that already existed is never changed (it may be shared)."""
    missing = []
    p = folder
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    created = []
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)  # mkdir's mode is masked by the umask
        created.append(d)
    return created


def is_private_dir(path: Path) -> bool:
    """A real folder (not a link) of this user that nobody else can enter."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()
            and not st.st_mode & 0o077)
