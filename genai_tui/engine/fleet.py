"""The fleet: many hosts, each an engine whose snapshots arrive as JSON lines.

A `RemoteHost` runs `genai-tui stream --json` on its host — over the system's ssh
(sources/ssh.py) for a `[[hosts]]` entry, as a local subprocess for this machine — on a
thread of its own, and keeps the latest parts. A host that goes quiet is `stale` (no
frame, not even a beat, for `stale_after` seconds), one whose stream ended is
`unreachable` with the reason in words, and is retried with backoff; a slow host only
delays its own thread. `RemoteStack` is a Stack whose parts come from one RemoteHost, so
the dashboard draws a remote host with the same panels; its actions run as genai-tui
subcommands on the host (so the host's `--readonly` and checks apply), and our own
read-only mode refuses before anything is sent.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from genai_tui import __version__
from genai_tui.config import Config, HostEntry
from genai_tui.engine import wire
from genai_tui.engine.live import Stack
from genai_tui.model import Severity, Snapshot
from genai_tui.safety import one_line
from genai_tui.sources import ssh

log = logging.getLogger(__name__)

#: the name of the machine the dashboard runs on, as a host of the fleet
LOCAL = "local"
#: seconds between reconnection attempts: doubled after each failure up to the last
BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
#: lines before the hello that may be noise (a remote shell's banner on stdout)
MAX_NOISE_LINES = 200

Listener = Callable[[str], None]


@dataclass(frozen=True)
class HostSummary:
    """One row of the fleet screen (and of `check --host`)."""

    name: str
    state: str  # connecting | live | stale | unreachable
    error: str | None
    age_s: float | None  # seconds since the last frame
    version: str | None
    version_note: str | None
    services_up: int
    services_total: int
    worst: str | None  # the worst finding's message
    worst_severity: Severity | None
    findings: int
    gpu_used_mb: float | None
    gpu_total_mb: float | None
    jobs_running: int
    jobs_pending: int
    remote_readonly: bool
    retry_in_s: float | None


class RemoteHost:
    """One host's stream, reconnected with backoff until `close()`."""

    def __init__(self, entry: HostEntry | None, *, local_config: Config,
                 control: ssh.ControlDir | None = None, stale_after: float = 15.0) -> None:
        self.entry = entry
        self.name = entry.name if entry is not None else LOCAL
        self.local_config = local_config
        self.control = control
        self.stale_after = stale_after
        self.snapshot = Snapshot()
        self.config: Config | None = None
        self.hello: dict[str, Any] = {}
        self.version_note: str | None = None
        self.error: str | None = None
        self.connected = False  # a hello was read on the current stream
        self.last_at: float | None = None  # monotonic, last frame (beats included)
        self.retry_at: float | None = None
        self.refreshed = 0  # "refreshed" answers so far
        self.frames = 0
        self.bytes_in = 0
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._master = False
        self._wake = threading.Event()
        self._stdin: Any = None

    # -------------------------------------------------------------- state

    @property
    def state(self) -> str:
        if self.connected and self.last_at is not None:
            return "stale" if time.monotonic() - self.last_at > self.stale_after else "live"
        return "unreachable" if self.error else "connecting"

    @property
    def readonly(self) -> bool:
        """The host's own read-only mode (its `--readonly` or `[[hosts]] readonly`)."""
        return bool(self.hello.get("readonly")) or bool(self.entry and self.entry.readonly)

    def summary(self) -> HostSummary:
        snap = self.snapshot
        cfg = self.config
        total = len(cfg.services) if cfg is not None else len(snap.containers)
        up = sum(1 for c in snap.containers if c.running)
        worst = min(snap.findings, key=lambda f: f.severity.rank, default=None)
        gpus = snap.gpu.gpus if snap.gpu is not None else []
        used = [g.memory_used_mb for g in gpus if g.memory_used_mb is not None]
        tot = [g.memory_total_mb for g in gpus if g.memory_total_mb is not None]
        jobs = snap.jobs.services if snap.jobs is not None else []
        now = time.monotonic()
        return HostSummary(
            name=self.name, state=self.state, error=self.error,
            age_s=None if self.last_at is None else max(0.0, now - self.last_at),
            version=self.hello.get("version") if isinstance(self.hello.get("version"), str)
            else None, version_note=self.version_note, services_up=up, services_total=total,
            worst=worst.message if worst else None,
            worst_severity=worst.severity if worst else None, findings=len(snap.findings),
            gpu_used_mb=sum(used) if used else None, gpu_total_mb=sum(tot) if tot else None,
            jobs_running=sum(1 for s in jobs if s.running is not None),
            jobs_pending=sum(len(s.pending) for s in jobs), remote_readonly=self.readonly,
            retry_in_s=None if self.retry_at is None or self.state != "unreachable"
            else max(0.0, self.retry_at - now))

    def subscribe(self, fn: Listener) -> Callable[[], None]:
        """`fn(part)` on the reader thread for every part that changed (and "state")."""
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn) if fn in self._listeners else None

    def _tell(self, part: str) -> None:
        for fn in list(self._listeners):
            try:
                fn(part)
            except Exception as exc:  # a face's bug must not stop the stream
                log.error("fleet listener failed: %s", type(exc).__name__)

    # -------------------------------------------------------------- the stream

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"fleet-{self.name}",
                                        daemon=True)
        self._thread.start()

    def close(self, timeout: float = 3.0) -> None:
        self._stop.set()
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.terminate()
        if self._thread is not None:
            self._thread.join(timeout)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()
        if self._master and self.entry is not None and self.control is not None:
            ssh.close_master(self.entry, self.control)

    def reconnect_now(self) -> None:
        """Cut the backoff wait short (the fleet screen's `c`)."""
        self.retry_at = time.monotonic()
        self._wake.set()

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            error = self._connect_and_read()
            if self._stop.is_set():
                break
            good = self.connected
            self.connected = False
            self.error = error
            failures = 0 if good else failures + 1
            delay = BACKOFF[min(failures, len(BACKOFF) - 1)]
            self.retry_at = time.monotonic() + delay
            self._tell("state")
            self._wake.clear()
            deadline = self.retry_at
            while not self._stop.is_set() and time.monotonic() < deadline:
                if self._wake.wait(min(1.0, max(0.0, deadline - time.monotonic()))):
                    break

    def _argv(self) -> list[str]:
        if self.entry is None:  # this machine: the same stream, no ssh in between
            argv = [sys.executable, "-m", "genai_tui"]
            if self.local_config.path is not None:
                argv += ["--config", str(self.local_config.path)]
            return argv + ["stream", "--json"]
        return ssh.ssh_argv(self.entry, self.control) + [
            ssh.remote_command(self.entry, ["stream", "--json"])]

    def _connect_and_read(self) -> str | None:
        """One stream, read to its end; why it ended, in words."""
        if self.entry is not None and self.control is not None and not self._master:
            why = ssh.open_master(self.entry, self.control)
            if why is not None:
                return why
            self._master = True
        try:
            proc = subprocess.Popen(self._argv(), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)
        except OSError as exc:
            return f"cannot start the stream: {one_line(exc.strerror or exc, 200)}"
        self._proc = proc
        stderr: collections.deque[bytes] = collections.deque(maxlen=64)
        err_thread = threading.Thread(target=_drain, args=(proc.stderr, stderr), daemon=True,
                                      name=f"fleet-{self.name}-stderr")
        err_thread.start()
        reason = None
        try:
            reason = self._read(proc)
        finally:
            with contextlib.suppress(OSError):
                proc.terminate()
            try:
                code = proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            err_thread.join(1.0)
            self._proc = None
        if self._stop.is_set():
            return None
        if reason is not None:
            return reason
        text = b"".join(stderr).decode("utf-8", "replace")
        if self.entry is not None:
            why = ssh.failure(code, text, self.entry)
            if code == ssh.SSH_FAILED:
                self._master = False  # the shared connection went with it
            if why is not None:
                return why
        elif code in (126, 127):
            return "cannot run genai-tui here"
        return f"the stream ended (exit status {code})"

    def _read(self, proc: subprocess.Popen[bytes]) -> str | None:
        assert proc.stdout is not None
        noise = 0
        while not self._stop.is_set():
            line = proc.stdout.readline(wire.MAX_LINE + 1)
            if not line:
                return None
            self.bytes_in += len(line)
            if len(line) > wire.MAX_LINE:
                return "sent a line longer than 8 MiB: disconnected"
            try:
                frame = wire.loads(line)
            except wire.WireError as exc:
                if not self.connected and noise < MAX_NOISE_LINES:
                    noise += 1  # a login banner on stdout: skipped until the hello
                    continue
                return f"sent {exc}: disconnected"
            try:
                why = self._apply(frame, proc)
            except wire.WireError as exc:
                return f"sent a frame that cannot be read ({exc}): disconnected"
            if why is not None:
                return why
        return None

    def _apply(self, frame: dict[str, Any], proc: subprocess.Popen[bytes]) -> str | None:
        kind = frame["type"]
        if kind == "hello":
            return self._hello(frame, proc)
        if not self.connected:
            return "sent data before its hello: disconnected"
        self.last_at = time.monotonic()
        self.frames += 1
        if kind in ("full", "delta"):
            parts = wire.decode_parts(frame)
            with self._lock:
                for part, value in parts.items():
                    setattr(self.snapshot, part, value)
            for part in parts:
                self._tell(part)
        elif kind == "refreshed":
            self.refreshed += 1
            self._tell("refreshed")
        elif kind == "bye":
            return f"genai-tui on {self.name} stopped"
        return None

    def _hello(self, frame: dict[str, Any], proc: subprocess.Popen[bytes]) -> str | None:
        version = frame.get("version")
        shown = one_line(version, 40) if isinstance(version, str) else "?"
        protocol = frame.get("protocol")
        if protocol != wire.PROTOCOL:
            return (f"genai-tui {shown} there speaks stream protocol "
                    f"{one_line(protocol, 20)}, this one ({__version__}) speaks "
                    f"{wire.PROTOCOL}: upgrade the older one")
        self.config = wire.config_from_public(frame.get("config"), self.local_config)
        self.hello = frame
        self.version_note = None if version == __version__ else \
            f"genai-tui {shown} there, {__version__} here"
        self.connected = True
        self.error = None
        self.last_at = time.monotonic()
        self._stdin = proc.stdin
        self._tell("state")
        return None

    def send(self, command: dict[str, Any]) -> None:
        """A command to the stream (`refresh`); dropped when no stream is up."""
        pipe = self._stdin
        if pipe is None or not self.connected:
            return
        with contextlib.suppress(OSError, ValueError):
            pipe.write((json.dumps(command) + "\n").encode())
            pipe.flush()

    # -------------------------------------------------------------- actions

    def run(self, args: Sequence[str], timeout: float = 180.0) -> ssh.SshResult:
        """`genai-tui ARGS` on this host (its shared connection when up)."""
        if self.entry is not None:
            return ssh.run(self.entry, self.control if self._master else None, args,
                           timeout=timeout)
        argv = [sys.executable, "-m", "genai_tui"]
        if self.local_config.path is not None:
            argv += ["--config", str(self.local_config.path)]
        try:
            proc = subprocess.run(argv + list(args), stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return ssh.SshResult(124, "", "", f"no answer within {timeout:.0f} s")
        return ssh.SshResult(proc.returncode, proc.stdout.decode("utf-8", "replace"),
                             proc.stderr[-ssh.MAX_STDERR:].decode("utf-8", "replace"), None)


def _drain(pipe: Any, into: collections.deque[bytes]) -> None:
    """Keep the last of a stream's stderr (read, so a chatty remote never blocks)."""
    with contextlib.suppress(OSError, ValueError):
        for chunk in iter(lambda: pipe.read1(4096), b""):
            into.append(chunk)


# ---------------------------------------------------------------- the fleet


class Fleet:
    """Every host of the config (and this machine unless `[fleet] local = false`)."""

    def __init__(self, config: Config, hosts: Sequence[HostEntry] | None = None, *,
                 local: bool | None = None) -> None:
        self.config = config
        entries = list(config.fleet.hosts if hosts is None else hosts)
        self.control = ssh.ControlDir()
        use_local = config.fleet.local if local is None else local
        self.hosts: list[RemoteHost] = []
        if use_local:
            self.hosts.append(RemoteHost(None, local_config=config,
                                         stale_after=config.fleet.stale_after))
        self.hosts += [RemoteHost(e, local_config=config, control=self.control,
                                  stale_after=config.fleet.stale_after) for e in entries]

    def start(self) -> None:
        for host in self.hosts:
            host.start()

    def get(self, name: str) -> RemoteHost | None:
        return next((h for h in self.hosts if h.name == name), None)

    def close(self) -> None:
        threads = [threading.Thread(target=h.close, daemon=True) for h in self.hosts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(6.0)
        self.control.close()


# ---------------------------------------------------------------- one host, as a Stack


class RemoteStack(Stack):
    """A Stack fed by one RemoteHost: the dashboard's panels draw the host's data, and
    its actions go to the host as genai-tui subcommands."""

    def __init__(self, host: RemoteHost, *, readonly: bool = False) -> None:
        assert host.config is not None, "no hello from the host yet"
        super().__init__(host.config, monitors=False)
        self.host = host
        self.remote = host.name
        self.readonly = readonly or host.readonly
        self.actions = RemoteActions(self)
        self._overlay: dict[str, str] = {}
        self._unsubscribe: Callable[[], None] | None = None
        #: the log panel follows the host's logs (`genai-tui logs --follow` there)
        self.parts = frozenset({"logs"})

    @property
    def logs(self) -> Any:
        if self._hub is None:
            from genai_tui.engine.remote_logs import RemoteLogHub

            self._hub = RemoteLogHub(self.host)
        return self._hub

    async def run(self) -> None:
        import asyncio

        self._loop = asyncio.get_running_loop()
        self._unsubscribe = self.host.subscribe(lambda part: self._call_soon(self._take, part))
        for part in wire.STREAM_PARTS:
            self._take(part)
        self._take("state")
        try:
            await self._until_stopped()
        finally:
            if self._unsubscribe is not None:
                self._unsubscribe()

    def _call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is None:  # not run by a face (a script, a test): call at once
            fn(*args)
            return
        super()._call_soon(fn, *args)

    def _take(self, part: str) -> None:
        if part == "state":
            self._notify("host_state")
            return
        if part == "refreshed" or part not in wire.PART_TYPES:
            return
        value = getattr(self.host.snapshot, part)
        if part == "containers" and self._overlay:
            import dataclasses

            value = [dataclasses.replace(c, action=self._overlay.get(c.service, c.action))
                     for c in value]
        self.publish(part, value)

    def publish(self, part: str, value: Any) -> None:
        # the host derived its findings from what it saw: nothing to re-derive here
        setattr(self.snapshot, part, value)
        self._notify(part)

    def refresh(self, part: str | None = None) -> None:
        self.host.send({"cmd": "refresh", "part": part if part in (
            "containers", "probes", "tokens", "gpu", "host", "jobs") else None})

    def rounds(self, part: str) -> int:
        return self.host.refreshed

    def in_flight(self, part: str) -> bool:
        return False

    def docker_backoff(self) -> float:
        return 0.0

    def set_action(self, service: str, action: str | None) -> None:
        if action is None:
            self._overlay.pop(service, None)
        else:
            self._overlay[service] = action
        self._take("containers")

    def _remote(self, args: list[str], what: str, timeout: float = 180.0
                ) -> tuple[bool, list[dict[str, Any]], str]:
        """Run one action on the host: (ok, per-service results, one-line detail)."""
        if self.readonly:
            return False, [], f"read-only mode: {what} is disabled"
        res = self.host.run(args, timeout=timeout)
        if res.error is not None:
            return False, [], res.error
        doc: Any = None
        with contextlib.suppress(ValueError):
            doc = json.loads(res.stdout) if res.stdout.strip() else None
        results = doc.get("results", []) if isinstance(doc, dict) else []
        detail = ""
        if res.returncode != 0:
            last = next((ln for ln in reversed(res.stderr.splitlines()) if ln.strip()), "")
            detail = one_line(last, 300) or f"exit status {res.returncode}"
        return res.returncode == 0, [r for r in results if isinstance(r, dict)], detail

    def _each(self, verb: str, names: list[str],
              done: Callable[[str, bool, str], None] | None) -> None:
        for name in names:
            self.set_action(name, f"{verb}ing…" if verb != "unpause" else "unpausing…")

        def work() -> None:
            ok, results, detail = self._remote([verb, "--json", *names], verb)
            by_name = {r.get("service"): r for r in results}
            for name in names:
                r = by_name.get(name)
                r_ok = bool(r.get("ok")) if r else ok
                r_detail = one_line(r.get("detail") or "", 300) if r else detail
                self._call_soon(self.set_action, name, None)
                if done is not None:
                    self._call_soon(done, name, r_ok, r_detail or detail)
            self.refresh("probes")

        threading.Thread(target=work, name=f"remote-{verb}", daemon=True).start()

    def restart(self, names: list[str],
                done: Callable[[str, bool, str], None] | None = None) -> None:
        self._each("restart", names, done)

    def unpause(self, names: list[str],
                done: Callable[[str, bool, str], None] | None = None) -> None:
        self._each("unpause", names, done)

    def unify(self, done: Callable[[bool, str], None]) -> None:
        """`tokens unify --yes --restart` on the host: from its canonical copy, then its
        `restart_after_unify` services."""
        def work() -> None:
            ok, _results, detail = self._remote(
                ["tokens", "unify", "--yes", "--restart", "--json"], "unify", timeout=300)
            self._call_soon(done, ok, detail or ("every copy on " + self.remote
                                                  + " now holds one credential"))
            self.refresh("tokens")

        threading.Thread(target=work, name="remote-unify", daemon=True).start()


class RemoteActions:
    """The engine's queue actions (engine/actions.py's names and outcome), run on the
    host: the jobs view calls them as it calls the local ones."""

    def __init__(self, stack: RemoteStack) -> None:
        self.stack = stack

    def _job(self, service: str, action: str, args: list[str]) -> Any:
        from genai_tui.engine.actions import JobActionOutcome

        ok, results, detail = self.stack._remote(["jobs", *args, "--json"], action)
        message = next((one_line(r.get("detail") or r.get("message") or "", 300)
                        for r in results if r.get("service") == service), "")
        return JobActionOutcome(service, action, ok, message or detail or (
            f"{one_line(service, 64)} on {self.stack.remote}: done" if ok else "failed"))

    def interrupt_job(self, config: Config, service: str, prompt_id: str, **_: Any) -> Any:
        return self._job(service, "interrupt", ["interrupt", service, "--prompt", prompt_id])

    def cancel_jobs(self, config: Config, service: str, prompt_ids: Sequence[str],
                    **_: Any) -> Any:
        return self._job(service, "cancel", ["cancel", service, *prompt_ids])

    def clear_queue(self, config: Config, service: str) -> Any:
        return self._job(service, "clear", ["clear", service])

    def free_vram(self, config: Config, service: str, **_: Any) -> Any:
        return self._job(service, "free_vram", ["free", service])


# ---------------------------------------------------------------- check --host


def check_hosts(config: Config, entries: Sequence[HostEntry], *, local: bool,
                timeout: float = 60.0) -> list[dict[str, Any]]:
    """`check --json` on every host at once: one document each, in the given order
    (this machine first when `local`); a host that cannot be asked has status unknown."""
    docs: list[dict[str, Any] | None] = [None] * (len(entries) + (1 if local else 0))

    def one(i: int, entry: HostEntry | None) -> None:
        name = entry.name if entry is not None else LOCAL
        host = RemoteHost(entry, local_config=config)
        res = host.run(["check", "--json"], timeout=timeout)
        doc: dict[str, Any] = {"host": name, "at": datetime.now(UTC).isoformat()}
        body: Any = None
        if res.error is None:
            with contextlib.suppress(ValueError):
                body = json.loads(res.stdout)
        if res.error is None and isinstance(body, dict) and res.returncode in STATUS_WORDS:
            doc.update(exit=res.returncode, status=STATUS_WORDS[res.returncode],
                       error=None, check=body)
        else:
            why = res.error or "no JSON from `genai-tui check --json` there" + (
                f" (exit status {res.returncode})" if res.returncode else "")
            doc.update(exit=EXIT_UNKNOWN, status="unknown", error=why, check=None)
        docs[i] = doc

    jobs: list[tuple[int, HostEntry | None]] = ([(0, None)] if local else []) + [
        (i + (1 if local else 0), e) for i, e in enumerate(entries)]
    threads = [threading.Thread(target=one, args=job, daemon=True) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 10)
    return [d if d is not None else {"host": "?", "exit": EXIT_UNKNOWN, "status": "unknown",
                                      "error": "no answer in time", "check": None}
            for d in docs]


#: the monitoring-plugin exit statuses (as `genai-tui check` uses them)
STATUS_WORDS = {0: "ok", 1: "warning", 2: "critical", 3: "unknown"}
EXIT_UNKNOWN = 3
#: how bad each exit status is, worst first: critical, unknown, warning, ok
_BADNESS = {2: 3, 3: 2, 1: 1, 0: 0}


def worst_exit(codes: Sequence[int]) -> int:
    """The fleet's exit status: the worst host's (critical > unknown > warning > ok)."""
    return max(codes, key=lambda c: _BADNESS.get(c, 2), default=0)
