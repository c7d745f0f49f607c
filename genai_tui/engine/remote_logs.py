"""A remote host's logs for its dashboard's log panel: `genai-tui logs --follow --json`
run on the host (over the system's ssh, or as a subprocess for this machine), read on a
thread into a bounded buffer.

`RemoteLogHub` has the face of `sources.logs.LogHub` that `ui.logs.LogPanel` reads
(`follower`, `merged`, `redactor`, `followers`, `close`), with one difference: over SSH
every open stream costs a channel and a remote process, so only the view on screen has
one. Switching services ends the previous stream (its process is reaped on a thread of
its own, so the switch never waits for it); switching back starts again from the host's
last 200 lines.

What the host sends is untrusted: a line that is not one of ours (a shell banner, a cut
or hostile record) is skipped, and every text is cleaned again (`logtext.clean_line`)
and redacted again (`logtext.Redactor`'s patterns; the host already removed its token
values, which we do not know) before it becomes a `LogLine`.
"""

from __future__ import annotations

import collections
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genai_tui.model import LogEvent
from genai_tui.safety import one_line, redact
from genai_tui.sources import ssh
from genai_tui.sources.logs.line import LATER, META, LogLine
from genai_tui.sources.logtext import Redactor, clean_line

if TYPE_CHECKING:
    from genai_tui.engine.fleet import RemoteHost

#: the host's last lines shown when a view opens
TAIL = 200
#: the longest record read; a longer one is skipped (a clean line is at most
#: logs.max_line_bytes, which JSON escaping can make six times longer)
MAX_RECORD = 1 << 20
#: seconds `close()` waits for the process to go before it is killed
CLOSE_WAIT = 2.0
#: stderr chunks kept for the failure reason
STDERR_CHUNKS = 64

#: why a stream ended, in words, from its exit status and stderr
Describe = Callable[[int, str], str]


@dataclass(frozen=True)
class ServiceView:
    """A service of the merged view, as the panel lists them (`merged().followers`)."""

    service: str


class RemoteLogSource:
    """One `genai-tui logs --follow --json` process, read on a thread of its own.

    The panel's source interface (`service`, `total`, `snapshot`, `drain`,
    `drain_events`, `status_text`, `read_times`), as `LogFollower` and `MergedLogs`
    have it; `followers` lists the services of a merged view."""

    def __init__(self, argv: Sequence[str], *, service: str | None = None,
                 names: Iterable[str] = (), buffer_lines: int = 5000,
                 max_line_bytes: int = 4096, redactor: Redactor | None = None,
                 describe: Describe | None = None, read_times: bool = False) -> None:
        self.argv = list(argv)
        self.merged = service is None
        self.service = "all" if service is None else service
        self.redactor = redactor or Redactor()
        self.max_line_bytes = max_line_bytes
        self.read_times = read_times
        self._describe = describe or _describe_local
        self._names = [] if service is not None else list(dict.fromkeys(names))
        self._buffer: collections.deque[LogLine] = collections.deque(maxlen=buffer_lines)
        self._pending: collections.deque[LogLine] = collections.deque(maxlen=buffer_lines)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._statuses: dict[str, tuple[str, str]] = {}
        #: lines accepted so far (monotonic; the panel derives "+N new" from it)
        self.total = 0
        #: records skipped: not JSON, not ours, or too long
        self.skipped = 0
        #: why the stream ended when we did not end it (None while it runs)
        self.error: str | None = None
        self.state = "starting"  # starting | following | ended | closed

    # ---------------------------------------------------------- lifecycle

    def start(self) -> RemoteLogSource:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"remote-logs-{self.service}")
            self._thread.start()
        return self

    def stop_nowait(self) -> None:
        """Ask the process to go (stdin closed, SIGTERM); does not wait."""
        self._stop.set()
        with self._lock:
            proc = self._proc
        if proc is not None:
            _end(proc)

    def close(self, timeout: float = CLOSE_WAIT) -> None:
        """Stop the process and join the reader, within about `timeout` seconds (then
        the process is killed)."""
        self.stop_nowait()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            with self._lock:
                proc = self._proc
            if thread.is_alive() and proc is not None:
                with contextlib.suppress(OSError):
                    proc.kill()
                thread.join(0.5)
        self.state = "closed"

    @property
    def alive(self) -> bool:
        """The reader runs (its process may still be starting)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None

    # ---------------------------------------------------------- the panel's side

    @property
    def followers(self) -> list[ServiceView]:
        """The services of a merged view: the host's, then any other a line named."""
        return [ServiceView(n) for n in self._names]

    def snapshot(self) -> list[LogLine]:
        """Every buffered line; `drain` continues from here (no duplicate, no gap)."""
        with self._lock:
            self._pending.clear()
            return list(self._buffer)

    def drain(self) -> list[LogLine]:
        """Lines added since the last `drain`/`snapshot` (at most the buffer's size)."""
        if not self._pending:
            return []
        with self._lock:
            out = list(self._pending)
            self._pending.clear()
        return out

    def drain_events(self) -> list[LogEvent]:
        return []  # the host diagnoses its own logs: its findings come in its stream

    @property
    def status_text(self) -> str:
        if self.state == "closed":
            return "closed"
        if self.error is not None:
            return f"unreachable: {self.error}"
        statuses = dict(self._statuses)
        if not statuses:
            return "following" if self.total else "connecting…"
        if not self.merged:
            _state, words = statuses.get(self.service, ("following", "following"))
            return words
        if all(state == "following" for state, _ in statuses.values()):
            return "following"
        return "; ".join(f"{name}: {words}" for name, (state, words) in statuses.items()
                         if state != "following")

    # ---------------------------------------------------------- the thread

    def _run(self) -> None:
        try:
            proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            self.error = f"cannot start the log stream: {one_line(exc.strerror or exc, 200)}"
            self.state = "ended"
            return
        with self._lock:
            self._proc = proc
        if self._stop.is_set():  # closed while it started
            _end(proc)
        stderr: collections.deque[bytes] = collections.deque(maxlen=STDERR_CHUNKS)
        err_thread = threading.Thread(target=_drain, args=(proc.stderr, stderr), daemon=True,
                                      name=f"remote-logs-{self.service}-stderr")
        err_thread.start()
        try:
            self._read(proc)
        except (OSError, ValueError):
            pass  # the pipe went: decided by the exit status below
        finally:
            _end(proc)
            try:
                code = proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    proc.kill()
                code = proc.wait()
            err_thread.join(1.0)
            for pipe in (proc.stdout, proc.stderr):
                with contextlib.suppress(OSError, ValueError):
                    if pipe is not None:
                        pipe.close()
        if self._stop.is_set():
            return
        text = b"".join(stderr).decode("utf-8", "replace")
        try:
            self.error = self._describe(code, text)
        except Exception:  # the words must never kill the reader silently
            self.error = f"the log stream ended (exit status {code})"
        self.state = "ended"

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        skipping = False  # inside a record longer than MAX_RECORD: read to its end
        while not self._stop.is_set():
            line = proc.stdout.readline(MAX_RECORD + 1)
            if not line:
                return
            whole = line.endswith(b"\n")
            if skipping:
                skipping = not whole
                continue
            if len(line) > MAX_RECORD:
                self.skipped += 1
                skipping = not whole
                continue
            self._take(line)

    def _take(self, raw: bytes) -> None:
        """One record: a line, a status, or something else (skipped)."""
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON (a banner), or a hostile nesting
            self.skipped += 1
            return
        if not isinstance(doc, dict):
            self.skipped += 1
            return
        svc = doc.get("service")
        name = one_line(svc, 64) if isinstance(svc, str) and svc else "?"
        text = doc.get("text")
        if isinstance(text, str):
            ts = doc.get("ts")
            if type(ts) is not int or not 0 < ts < 1 << 63:
                ts = 0
            if not self.merged:
                name = self.service  # the view's own service, whatever a line claims
            elif name not in self._names:
                self._names.append(name)
            line = LogLine(ts, name, clean_line(text, self.max_line_bytes),
                           META if doc.get("meta") is True else LATER, self.redactor)
            with self._lock:
                self._buffer.append(line)
                self._pending.append(line)
                self.total += 1
            self.state = "following"
            return
        status, state = doc.get("status"), doc.get("state")
        if isinstance(status, str) and isinstance(svc, str):
            words = one_line(redact(one_line(status, 1200)), 300)
            self._statuses[name] = (one_line(state, 32) if isinstance(state, str) else "?",
                                    words)
            self.state = "following"
            return
        self.skipped += 1


def _end(proc: subprocess.Popen[bytes]) -> None:
    """stdin closed (how the remote command learns its reader went), then SIGTERM."""
    with contextlib.suppress(OSError, ValueError):
        if proc.stdin is not None:
            proc.stdin.close()
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            proc.terminate()


def _drain(pipe: Any, into: collections.deque[bytes]) -> None:
    """Keep the last of the stream's stderr (read, so a chatty one never blocks)."""
    with contextlib.suppress(OSError, ValueError):
        for chunk in iter(lambda: pipe.read1(4096), b""):
            into.append(chunk)


def _last_line(stderr: str) -> str:
    """The error line the command printed last, without its "genai-tui logs:" prefix."""
    last = next((ln for ln in reversed(stderr.replace("\r", "").splitlines())
                 if ln.strip()), "")
    text = one_line(redact(one_line(last, 1200)), 300)
    for prefix in ("genai-tui logs: ", "genai-tui: "):
        text = text.removeprefix(prefix)
    return text


def _describe_local(code: int, stderr: str) -> str:
    """Why this machine's `genai-tui logs` ended (its own error line when it said one)."""
    if code in (126, 127):
        return "cannot run genai-tui here"
    return _last_line(stderr) or f"the log stream ended (exit status {code})"


class RemoteLogHub:
    """The log hub of a remote host's dashboard: one stream for the view on screen."""

    def __init__(self, host: RemoteHost, *, tail: int = TAIL) -> None:
        self.host = host
        self.tail = tail
        #: the host redacts its own token values; this adds the patterns here as well
        self.redactor = Redactor()
        self._current: RemoteLogSource | None = None
        self._reapers: list[threading.Thread] = []
        self._lock = threading.Lock()

    @property
    def followers(self) -> dict[str, RemoteLogSource]:
        """The open stream (at most one), by its service ("all" for the merged view)."""
        cur = self._current
        return {cur.service: cur} if cur is not None else {}

    def follower(self, service: str) -> RemoteLogSource:
        """One service's stream; the one on screen is kept while it runs."""
        with self._lock:
            cur = self._current
            if cur is not None and not cur.merged and cur.service == service \
                    and cur.error is None and cur.state != "closed":
                return cur
            return self._open(service)

    def merged(self, services: Iterable[str] | None = None) -> RemoteLogSource:
        """Every service of the host in one stream (`services` names the view's list;
        the host sends all of its own)."""
        with self._lock:
            cur = self._current
            if cur is not None and cur.merged and cur.error is None \
                    and cur.state != "closed":
                return cur
            return self._open(None, services)

    def _open(self, service: str | None, names: Iterable[str] | None = None
              ) -> RemoteLogSource:
        host = self.host
        cfg = host.config if host.config is not None else (
            host.local_config if host.entry is None else None)
        known = [s.name for s in cfg.services] if cfg is not None else []
        runtimes = {s.name: s.runtime for s in cfg.services} if cfg is not None else {}
        args = ["logs", "--follow", "--json", "--tail", str(self.tail)]
        if service is not None:
            args += ["--", service]
        shown = list(names) if names is not None else known
        logs = host.local_config.logs  # our memory, our bounds
        src = RemoteLogSource(
            self._argv(args), service=service, names=shown,
            buffer_lines=logs.buffer_lines, max_line_bytes=logs.max_line_bytes,
            redactor=self.redactor, describe=self._describe,
            read_times=any(runtimes.get(n) == "process"
                           for n in (shown if service is None else [service])))
        old, self._current = self._current, src
        src.start()
        if old is not None:
            self._retire(old)
        return src

    def _retire(self, old: RemoteLogSource) -> None:
        """End a stream that left the screen, without making the switch wait for it."""
        old.stop_nowait()
        t = threading.Thread(target=old.close, name="remote-logs-reap", daemon=True)
        t.start()
        self._reapers = [r for r in self._reapers if r.is_alive()] + [t]

    def _argv(self, args: list[str]) -> list[str]:
        """`genai-tui ARGS` on the host, as RemoteHost runs its stream."""
        host = self.host
        if host.entry is None:
            argv = [sys.executable, "-m", "genai_tui"]
            if host.local_config.path is not None:
                argv += ["--config", str(host.local_config.path)]
            return argv + args
        control = host.control if host._master else None
        return ssh.ssh_argv(host.entry, control) + [ssh.remote_command(host.entry, args)]

    def _describe(self, code: int, stderr: str) -> str:
        entry = self.host.entry
        if entry is not None:
            why = ssh.failure(code, stderr, entry)
            if why is not None:
                return why
        return _describe_local(code, stderr)

    # the local hub's other calls: nothing to do for a host that redacts its own logs
    def ensure_secrets(self) -> None:
        """The host loads its own token values."""

    def refresh_secrets(self) -> None:
        """The host re-reads its own token values."""

    def notify_started(self, container: str) -> bool:
        """The host's own follower sees its containers restart."""
        return False

    def close(self, timeout: float = CLOSE_WAIT) -> None:
        """End the open stream and wait (bounded) for the ones still being reaped."""
        with self._lock:
            cur, self._current = self._current, None
            reapers, self._reapers = self._reapers, []
        deadline = time.monotonic() + timeout + 1.0
        if cur is not None:
            cur.close(timeout)
        for t in reapers:  # each already has its own bounded close
            t.join(max(0.0, deadline - time.monotonic()))
