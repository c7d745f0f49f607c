"""Carrying out a unify plan: all files or none, one unify at a time, with backups.

`apply_plan` takes the stack's unify lock, removes what a killed run left, re-checks
under the lock that every file and folder is still what the plan read, backs up each
file it will change (0600, pruned to `keep_backups`), writes each one atomically inside
the very folder the plan saw, and restores the files already written if a later write
fails. Each outcome is recorded through `audit`; the audit never calls back here.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from genai_tui.config import TokensConfig
from genai_tui.safety import one_line
from genai_tui.sources.tokens import fsutil
from genai_tui.sources.tokens.audit import _audit_unify, who
from genai_tui.sources.tokens.plan import (
    UnifyPlan,
    UnifyResult,
    _digest,
    _FileWrite,
    _folder_id,
    link_problem,
)
from genai_tui.sources.tokens.read import MAX_FILE_BYTES, UnifyError, _reason, scrub

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
