"""The ComfyUI simulator inside the calling process, on a loopback port (stdlib only).

For tests that talk to a real server over real sockets without starting a process per
case: the same `ComfyApp` and HTTP handler as `python -m genai_tui.sim`, its log written
to a pipe and collected line by line (`\\r` kept, as a terminal or `docker logs` gets it),
and `close()` that shuts the listening socket and every open websocket.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .comfyui import ComfyApp
from .config import SimConfig
from .console import Console
from .server import build_handler, emit_boot
from .web import start_http_server


class InProcessComfy:
    """One simulated ComfyUI(+Login) on 127.0.0.1:<free port>; `lines` is its log."""

    def __init__(self, password_file: str | Path, *, jobs_api: bool = False,
                 job_seconds: float | None = None, scenario: str = "healthy",
                 on_line: Callable[[str], None] | None = None, **extra: Any) -> None:
        self.cfg = SimConfig(kind="comfyui", port=0, host="127.0.0.1",
                             password_file=str(password_file), scenario=scenario,
                             jobs_api=jobs_api, job_seconds=job_seconds, **extra)
        self._read_fd, write_fd = os.pipe()
        self.console = Console(write_fd)
        self._write_fd = write_fd
        self.app = ComfyApp(self.cfg, self.console)
        self.lines: list[str] = []
        self._on_line = on_line
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True, name="sim-log")
        self._reader.start()
        emit_boot(self.app, self.console)
        self.server = start_http_server("127.0.0.1", 0, build_handler(self.cfg, self.app,
                                                                      self.console))
        self.port = int(self.server.server_address[1])
        self.cfg.port = self.port
        self.app.start_background()
        self.url = f"http://127.0.0.1:{self.port}"

    def _read(self) -> None:
        buf = seg = b""
        while True:
            try:
                chunk = os.read(self._read_fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            *done, buf = buf.split(b"\n")
            for raw in done:
                with self._lock:
                    self.lines.append(raw.decode("utf-8", "replace"))
            if self._on_line is not None:
                # what a terminal (or a TTY container's log) shows as it comes: every
                # `\r`-rewritten tqdm frame, not only the finished line
                seg += chunk
                *parts, seg = seg.replace(b"\r", b"\n").split(b"\n")
                for raw in parts:
                    if raw:
                        self._on_line(raw.decode("utf-8", "replace"))

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def wait_log(self, needle: str, count: int = 1, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.text().count(needle) >= count:
                return True
            time.sleep(0.02)
        return False

    def drop_websockets(self) -> int:
        """Cut every open websocket (a proxy or a server restart would): for reconnects."""
        n = 0
        for client in self.app.ws_clients():
            conn = getattr(client, "conn", None)
            if conn is not None:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                    n += 1
                except OSError:
                    pass
        return n

    def close(self) -> None:
        self.app.hang_until = 0.0
        with self.app.lock:
            if self.app.running is not None:
                self.app.running.interrupted = True
        self.drop_websockets()
        self.server.shutdown()
        self.server.server_close()
        try:
            os.close(self._write_fd)
        except OSError:
            pass
        self._reader.join(1.0)
        try:
            os.close(self._read_fd)
        except OSError:
            pass

    def __enter__(self) -> InProcessComfy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
