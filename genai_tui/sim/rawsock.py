"""Raw TCP listeners for the broken-port scenarios (``empty_reply``, ``hang``, ``not_http``).

One selector thread owns every connection, so a probe storm against ``hang`` keeps
sockets open without spawning a thread per client.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time

SSH_BANNER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
SSH_REJECT = b"Invalid SSH identification string.\r\n"
MODES = ("empty_reply", "hang", "not_http")
MAX_HELD = 1024
GRACE_SECONDS = 2.0


def bind_listener(host: str, port: int) -> socket.socket:
    """Listening socket with SO_REUSEADDR, IPv6 when the host looks like one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=128)


class RawServer:
    """Accept connections and misbehave in one of :data:`MODES`.

    - ``empty_reply``: read the request head, then close without sending a byte
      (curl: ``Empty reply from server``; Python: ``RemoteDisconnected``).
    - ``hang``: accept and read forever, never answer (client read timeout).
    - ``not_http``: send an SSH banner, reject whatever the client says, close.
    """

    def __init__(self, host: str, port: int, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown raw mode {mode!r}")
        self.mode = mode
        self.listener = bind_listener(host, port)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        self.conns: dict[socket.socket, list] = {}
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"raw-{mode}")

    def start(self) -> RawServer:
        """Run the selector loop in a daemon thread."""
        self.thread.start()
        return self

    def _close(self, conn: socket.socket, graceful: bool = True) -> None:
        self.conns.pop(conn, None)
        try:
            self.selector.unregister(conn)
        except (KeyError, ValueError):
            pass
        try:
            if graceful:
                conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        conn.close()

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        conn.setblocking(False)
        if self.mode == "not_http":
            try:
                conn.send(SSH_BANNER)
            except OSError:
                conn.close()
                return
        if self.mode == "hang" and len(self.conns) >= MAX_HELD:
            oldest = next(iter(self.conns))
            self._close(oldest)
        deadline = float("inf") if self.mode == "hang" else time.monotonic() + GRACE_SECONDS
        self.conns[conn] = [deadline, b""]
        self.selector.register(conn, selectors.EVENT_READ, "conn")

    def _readable(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self._close(conn, graceful=False)
            return
        if not data:
            self._close(conn)
            return
        state = self.conns.get(conn)
        if state is None or self.mode == "hang":
            return
        state[1] = (state[1] + data)[-8192:]
        if self.mode == "not_http":
            try:
                conn.send(SSH_REJECT)
            except OSError:
                pass
            self._close(conn)
        elif b"\r\n\r\n" in state[1] or b"\n\n" in state[1]:
            self._close(conn)

    def _run(self) -> None:
        while True:
            for key, _ in self.selector.select(timeout=0.2):
                if key.data is None:
                    self._accept()
                else:
                    self._readable(key.fileobj)  # type: ignore[arg-type]
            now = time.monotonic()
            for conn, (deadline, _) in list(self.conns.items()):
                if deadline <= now:
                    self._close(conn)
