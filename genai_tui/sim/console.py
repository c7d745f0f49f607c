"""Thread-safe log output for the simulators.

ComfyUI logs with the format ``%(message)s`` (no level, no time), so lines are written
verbatim. Writes go straight to the file descriptor with ``os.write`` so nothing sits in
a Python buffer when the process is killed, and so a log flood can push whole batches
with a single system call.
"""

from __future__ import annotations

import os
import threading
import time

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


class Console:
    """Serialised writer for one output stream (stdout by default)."""

    def __init__(self, fd: int = 1, level: str = "INFO") -> None:
        self.fd = fd
        self.level = LEVELS.get(level.upper(), 20)
        self.lock = threading.Lock()
        self.broken = False

    def enabled(self, level: str) -> bool:
        """Mimic ComfyUI's ``--verbose LEVEL`` filter."""
        return LEVELS.get(level, 20) >= self.level

    def log(self, message: str, level: str = "INFO") -> None:
        """Write one log record (``message`` may span several lines, like tracebacks)."""
        if self.enabled(level):
            self.write(message + "\n")

    def write(self, text: str) -> None:
        """Write raw text (no newline added): used for ``\\r`` progress-bar updates."""
        self.write_bytes(text.encode("utf-8", "replace"))

    def write_bytes(self, data: bytes) -> None:
        """Write a pre-encoded batch in one go (log flood fast path)."""
        if self.broken or not data:
            return
        with self.lock:
            view = memoryview(data)
            while view:
                try:
                    written = os.write(self.fd, view)
                except BlockingIOError:
                    time.sleep(0.001)
                    continue
                except OSError:
                    # Reader went away (closed pipe): keep serving, drop the logs.
                    self.broken = True
                    return
                view = view[written:]

    def emergency(self, text: str) -> None:
        """Best-effort write from a signal handler: never blocks, never takes the lock."""
        try:
            blocking = os.get_blocking(self.fd)
            os.set_blocking(self.fd, False)
        except OSError:
            return
        try:
            os.write(self.fd, text.encode("utf-8", "replace"))
        except OSError:
            pass
        finally:
            try:
                # The descriptor may be a terminal shared with the parent shell.
                os.set_blocking(self.fd, blocking)
            except OSError:
                pass
