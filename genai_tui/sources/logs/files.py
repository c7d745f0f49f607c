"""Following the `log_file` of a service outside Docker (`runtime = "process"`).

`FileLogSource` reads the file by offset (non-blocking open, regular files only, a close
that never hangs on a stuck mount); `FileLogFollower` tails it like `tail -F` — the last
lines, then growth, truncation, rotation and removal — through the same cleaning,
redaction and ring buffer as a container's `LogFollower`.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

from genai_tui.sources.logs.docker_stream import LineAssembler, Target
from genai_tui.sources.logs.follower import LogFollower

#: an idle log file costs one `fstat` and one `stat` per this many seconds
FILE_POLL = 0.25
#: how often a missing log file is looked for
FILE_MISSING_POLL = 0.5
#: how often an unreadable one (permissions, not a regular file, I/O error) is retried
FILE_ERROR_POLL = 2.0
FILE_CHUNK = 64 * 1024
#: the initial tail scans back at most this far, so a file of giant lines cannot make the
#: first screen read gigabytes
TAIL_SCAN_MAX = 8 << 20


class NotRegularFile(OSError):
    """`log_file` names a directory, FIFO or device: reading it could block or never end."""


class FileLogSource:
    """The output file of a process service, read by offset (`pread`, no buffering).

    Only the follower thread reads. `close()` may come from any thread: a lock keeps it from
    closing the descriptor under a read (its number could be reused by then), and it gives
    up after a moment on a read stuck on a hung network mount instead of hanging the exit.
    """

    def __init__(self, path: Path | None, label: str = "") -> None:
        self.path = Path(path) if path is not None else None
        self.label = str(path) if path is not None else label
        #: offset of the next byte to read in the open file
        self.pos = 0
        #: (st_dev, st_ino) of the open file: a different one at `path` means rotation
        self.file_id: tuple[int, int] | None = None
        self._fd: int | None = None
        self._lock = threading.Lock()

    def open(self) -> os.stat_result:
        """Open what `path` names now, replacing the open file. Raises OSError
        (FileNotFoundError, PermissionError, NotRegularFile, ...)."""
        if self.path is None:
            raise FileNotFoundError(errno.ENOENT, "no log_file configured")
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below)
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
        fd = os.open(self.path, flags)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise NotRegularFile(errno.EINVAL, "not a regular file")
        except BaseException:
            os.close(fd)
            raise
        with self._lock:
            old, self._fd = self._fd, fd
        if old is not None:
            _close_fd(old)
        self.file_id = (st.st_dev, st.st_ino)
        self.pos = 0
        return st

    def _pread(self, size: int, offset: int) -> bytes:
        with self._lock:
            if self._fd is None:
                raise OSError(errno.EBADF, "log file closed")
            return os.pread(self._fd, size, offset)

    def read(self, limit: int = FILE_CHUNK) -> bytes:
        """Up to `limit` bytes from `pos` on (b"" at the end of the file)."""
        data = self._pread(limit, self.pos)
        self.pos += len(data)
        return data

    def tail_start(self, lines: int, size: int) -> int:
        """Offset where the last `lines` complete lines of the first `size` bytes begin.

        An unterminated last line is not counted (it is still being written: it is read
        with the rest). Scans back at most TAIL_SCAN_MAX bytes, then starts at the first
        line boundary it saw."""
        if lines < 0:
            return 0
        need = lines + 1  # the `\n` that ends the line before the first one we want
        pos = size
        floor = max(0, size - TAIL_SCAN_MAX)
        earliest = -1
        while pos > floor:
            n = min(FILE_CHUNK, pos - floor)
            pos -= n
            block = self._pread(n, pos)
            end = len(block)
            while True:
                i = block.rfind(b"\n", 0, end)
                if i < 0:
                    break
                need -= 1
                earliest = pos + i
                if need == 0:
                    return earliest + 1
                end = i
        if floor == 0:
            return 0
        return earliest + 1 if earliest >= 0 else floor

    def check(self) -> str:
        """What happened since the last read reached the end of the file: "grown",
        "same", "truncated", "rotated" (`path` names another file now) or "removed"."""
        with self._lock:
            if self._fd is None:
                raise OSError(errno.EBADF, "log file closed")
            st = os.fstat(self._fd)
        if st.st_size > self.pos:
            return "grown"
        if st.st_size < self.pos:
            return "truncated"
        try:
            now = os.stat(self.path) if self.path is not None else None
        except FileNotFoundError:
            return "removed"
        except OSError:
            return "same"  # e.g. its folder became unreadable: the open file still is
        if now is not None and (now.st_dev, now.st_ino) != self.file_id:
            return "rotated"
        return "same"

    def close(self) -> None:
        if not self._lock.acquire(timeout=0.5):
            return  # a read is stuck (hung mount): the descriptor goes with the process
        try:
            fd, self._fd = self._fd, None
        finally:
            self._lock.release()
        if fd is not None:
            _close_fd(fd)


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _os_reason(exc: OSError) -> str:
    """"permission denied", "not a regular file"... (printable, short, no traceback)."""
    text = exc.strerror or type(exc).__name__
    text = "".join(ch for ch in text if ch.isprintable())[:120]
    return text[:1].lower() + text[1:]


class FileLogFollower(LogFollower):
    """Follows a process service's `log_file` like `tail -F`: the last `tail` lines, then
    whatever is appended, through the same cleaning, redaction and diagnosis as container
    lines, into the same ring buffer the panel reads.

    - idle, it costs one `fstat` of the open file and one `stat` of the path per
      `file_poll`; data is read in 64 KiB chunks and split on `\\n` (partial lines wait);
    - truncated (size below our offset, e.g. logrotate's copytruncate): read again from
      the start after a "log file truncated" line. A file truncated and refilled beyond our
      offset within one poll looks like growth, as it does to `tail -F`;
    - rotated (`path` names another file, e.g. rename + create): the old file is read to
      its end, then the new one from its start, after a "log file rotated" line;
    - removed: the open file is still read (the process may keep writing to it) until a
      new one appears; missing: "log file not found", then read from its start once it
      appears; unreadable: said so, retried every `error_poll`.

    Files carry no timestamps. A line's time is when it was read (within `file_poll` of
    its writing), except the lines already in the file when following starts: they get
    the file's modification time, the latest they can have been written, so the merged
    view puts that history before what follows instead of all at "now".
    """

    DEDUPE = False
    read_times = True

    def __init__(self, service: str, source: FileLogSource, *, file_poll: float = FILE_POLL,
                 missing_poll: float = FILE_MISSING_POLL, error_poll: float = FILE_ERROR_POLL,
                 **kwargs: Any) -> None:
        super().__init__(service, source, **kwargs)  # type: ignore[arg-type]
        self.file = source
        self.file_poll = file_poll
        self.missing_poll = missing_poll
        self.error_poll = error_poll
        self._asm = LineAssembler(framed=False, timestamped=False)
        self._fresh = False  # the next file opened is new: read it from its start
        self._resume: tuple[tuple[int, int], int] | None = None  # (file id, offset)

    @property
    def status_text(self) -> str:
        path = self.file.label
        if self.state == "following":
            return f"log file {path}" + (f" ({self.detail})" if self.detail else "")
        return {
            "starting": "opening the log file…",
            "missing": f"log file not found: {path}",
            "unreadable": f"cannot read log file {path}: {self.detail}",
            "unconfigured": f"no log_file configured for {self.service}",
            "closed": "closed",
        }.get(self.state, self.state)

    def _loop(self) -> None:
        f = self.file
        if f.path is None:
            self.state = "unconfigured"
            while not self._stop.is_set():
                self._wait(3600.0)
            return
        initial = self.tail if self.tail >= 0 else self.buffer_lines
        initial = min(initial, self.buffer_lines)
        while not self._stop.is_set():
            try:
                st = f.open()
            except FileNotFoundError:
                self.state, self.detail = "missing", ""
                self._fresh = True  # whatever appears later is all new
                self._wait(self.missing_poll)
                continue
            except OSError as exc:
                self.state, self.detail = "unreadable", _os_reason(exc)
                self._wait(self.error_poll)
                continue
            fid = (st.st_dev, st.st_ino)
            backlog_ts = 0
            try:
                resume, self._resume = self._resume, None
                if resume is not None and resume[0] == fid:  # the same file after an error
                    if st.st_size >= resume[1]:
                        start = resume[1]
                    else:
                        self._flush_partial()
                        self._meta("log file truncated")
                        start = 0
                elif resume is not None or self._fresh:  # rotated, recreated or appeared
                    if resume is not None:
                        self._flush_partial()
                        self._meta("log file rotated")
                    start = f.tail_start(self.buffer_lines, st.st_size)
                else:  # the first look: the last `tail` lines, as for a container
                    start = f.tail_start(initial, st.st_size)
                    backlog_ts = max(1, min(st.st_mtime_ns, time.time_ns()))
                self._fresh = False
                f.pos = start
                self.target = Target(id=f"{fid[0]}:{fid[1]}", name=f.label, running=True,
                                     tty=True)
                self.state, self.detail = "following", ""
                outcome = self._follow_file(st.st_size if backlog_ts else 0, backlog_ts)
            except OSError as exc:
                if self._stop.is_set():
                    return
                self._resume = (fid, f.pos)
                self.state, self.detail = "unreadable", _os_reason(exc)
                self._wait(self.error_poll)
                continue
            if outcome == "rotated":
                self._flush_partial()
                self._meta("log file rotated")
                self._fresh = True

    def _follow_file(self, backlog_end: int, backlog_ts: int) -> str:
        """Read until the file is rotated ("rotated") or we are closed ("stopped")."""
        f = self.file
        while not self._stop.is_set():
            if f.pos < backlog_end:  # what was there at start: stamped with its mtime
                data, now = f.read(min(FILE_CHUNK, backlog_end - f.pos)), backlog_ts
            else:
                data, now = f.read(FILE_CHUNK), time.time_ns()
            if data:
                lines = self._asm.feed(data, now)
                if lines:
                    self._ingest(lines)
                continue
            backlog_end = 0
            while not self._stop.is_set():
                change = f.check()
                if change == "grown":
                    break
                if change == "truncated":
                    self._flush_partial()
                    self._meta("log file truncated")
                    f.pos = 0
                    break
                if change == "rotated":
                    while not self._stop.is_set():  # what was written before the switch
                        data = f.read(FILE_CHUNK)
                        if not data:
                            break
                        lines = self._asm.feed(data, time.time_ns())
                        if lines:
                            self._ingest(lines)
                    return "rotated"
                removed = change == "removed"
                self.detail = "removed; still reading the open file" if removed else ""
                self._wait(self.file_poll)
        return "stopped"

    def _flush_partial(self) -> None:
        """The unterminated last line of a file we leave (rotated, truncated) is a line."""
        rest = self._asm.flush()
        if rest:
            self._ingest(rest)
