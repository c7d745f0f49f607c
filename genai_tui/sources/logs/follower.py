"""Following one service's container logs on a thread of its own.

A follow stream ends whenever the container stops or restarts. `LogFollower` then reopens
it from the last timestamp it stored (`since`, inclusive) and drops the lines it already
has — by timestamp, and for lines sharing the boundary timestamp by their exact bytes —
so a restart shows no duplicate and no gap. A removed container is reported as such and
the follower keeps looking for a new container with the same name. Lines go into a
bounded ring buffer and a hand-off queue the UI drains in batches, never blocking on
Docker.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from itertools import repeat
from operator import itemgetter

from genai_tui.model import LogEvent
from genai_tui.sources.logs.docker_stream import (
    ContainerGone,
    LineAssembler,
    LogSource,
    RawStream,
    SourceUnavailable,
    Target,
)
from genai_tui.sources.logs.line import LATER, META, LogLine, RecentEvents
from genai_tui.sources.logtext import LineProcessor, Redactor

#: a busy stream is read at most this often (seconds) unless a read brings BATCH_BYTES:
#: short, because the engine stops writing once the socket buffer (~200 KB) is full
BATCH_WINDOW = 0.01
BATCH_BYTES = 32 * 1024
_TS = itemgetter(0)


STATES = ("starting", "following", "stopped", "removed", "missing", "unavailable", "closed")


class LogFollower:
    """Follows one service's container on a dedicated daemon thread.

    The UI reads with `snapshot()` (the whole ring buffer, at a switch) and `drain()` (the
    lines since, in one batch per tick); both are cheap and never block on Docker."""

    #: drop lines a reopened Docker stream delivers again (timestamps + bytes)
    DEDUPE = True
    #: line times are Docker's; `FileLogFollower` stamps lines with the time they were read
    read_times = False

    def __init__(
        self,
        service: str,
        source: LogSource,
        *,
        tail: int = 200,
        buffer_lines: int = 5000,
        max_line_bytes: int = 4096,
        redactor: Redactor | None = None,
        poll_interval: float = 2.0,
        removed_poll: float = 3.0,
        prepare: Callable[[], None] | None = None,
    ) -> None:
        self.service = service
        self._prepare = prepare
        self.source = source
        self.tail = tail
        self.buffer_lines = buffer_lines
        self.max_line_bytes = max_line_bytes
        self.redactor = redactor or Redactor()
        self.poll_interval = poll_interval
        self.removed_poll = removed_poll
        self._buffer: deque[LogLine] = deque(maxlen=buffer_lines)
        self._pending: deque[LogLine] = deque(maxlen=buffer_lines)
        self._events = RecentEvents()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._stream: RawStream | None = None
        self._stream_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        #: lines accepted so far (monotonic; the UI derives "+N new" from it)
        self.total = 0
        self.state = "starting"
        self.detail = ""
        self.target: Target | None = None
        # dedupe across reopen: the last timestamp and the lines seen at exactly that time
        self._last_ts = 0
        self._at_last: list[bytes] = []
        self._replay: Counter[bytes] | None = None
        self._processor = LineProcessor(service, max_line_bytes)
        #: called (on this follower's thread) after new lines: the panel flushes on them
        #: instead of polling ten times a second while nothing comes
        self._listeners: list[Callable[[], None]] = []

    def listen(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Call `fn()` (from the follower's thread: it must only schedule) whenever new
        lines are in; returns the unsubscribe."""
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn) if fn in self._listeners else None

    def _woken(self) -> None:
        for fn in tuple(self._listeners):
            fn()

    # ---------------------------------------------------------- lifecycle

    def start(self) -> LogFollower:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"logs-{self.service}")
            self._thread.start()
        return self

    def stop_nowait(self) -> None:
        """Ask the thread to stop and shut the open stream; does not wait."""
        self._stop.set()
        self._wake.set()
        with self._stream_lock:
            stream = self._stream
        if stream is not None:
            stream.close()

    def close(self, timeout: float = 1.0) -> None:
        """Stop the thread: shut the open stream (wakes the blocked read) and join."""
        self.stop_nowait()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        try:
            self.source.close()
        except Exception:
            pass
        self.state = "closed"

    @property
    def last_ts(self) -> int:
        """Docker timestamp (ns) of the newest line read so far (0 before the first)."""
        return self._last_ts

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def notify_started(self) -> None:
        """The app saw a Docker `start` event for this container: reopen now instead of at
        the next poll. An open stream is closed too: after a restart it should have ended,
        so if it is still open it hung (docker-py #3084); reopening from the last timestamp
        costs one request and shows no line twice."""
        self._wake.set()
        with self._stream_lock:
            stream = self._stream
        if stream is not None:
            stream.close()

    # ---------------------------------------------------------- UI side

    def snapshot(self) -> list[LogLine]:
        """Every buffered line; also empties the pending queue so `drain` continues from
        here with no duplicate and no gap."""
        with self._lock:
            self._pending.clear()
            return list(self._buffer)

    def drain(self) -> list[LogLine]:
        """Lines added since the last `drain`/`snapshot` (at most `buffer_lines`)."""
        if not self._pending:
            return []
        with self._lock:
            out = list(self._pending)
            self._pending.clear()
        return out

    def drain_events(self) -> list[LogEvent]:
        if not self._events:
            return []
        with self._lock:
            return self._events.take()

    @property
    def status_text(self) -> str:
        name = self.target.name if self.target else self.source.label
        return {
            "starting": "connecting…",
            "following": "following",
            "stopped": "container stopped; " + (self.target.after_stop() if self.target
                                                 else "waiting for it to start again"),
            "removed": f"container removed: {name}",
            "missing": f"no container named {self.source.label}",
            "unavailable": f"Docker engine unreachable: {self.detail}",
            "closed": "closed",
        }.get(self.state, self.state)

    # ---------------------------------------------------------- thread

    def _wait(self, seconds: float) -> bool:
        """Sleep until woken or stopped; True when woken (not stopped)."""
        woke = self._wake.wait(seconds)
        self._wake.clear()
        return woke and not self._stop.is_set()

    def _run(self) -> None:
        if self._prepare is not None:
            try:
                self._prepare()  # e.g. load the secrets to redact before the first line
            except Exception:
                pass
        while not self._stop.is_set():
            try:
                self._loop()
            except Exception as exc:  # a bug must not kill following silently
                text = f"{type(exc).__name__}: {exc}"
                self.state = "unavailable"
                self.detail = "".join(ch for ch in text if ch.isprintable())[:200]
                self._wait(2.0)

    def _loop(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                found = self.source.locate()
            except SourceUnavailable as exc:
                self.state, self.detail = "unavailable", str(exc)
                self._wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.5
            if found is None:
                if self.target is not None and self.state != "removed":
                    self._meta(f"container {self.target.name} removed; waiting for a new one")
                    self.state = "removed"
                elif self.target is None:
                    self.state = "missing"
                self._wait(self.removed_poll)
                continue
            if self.target is None or found.id != self.target.id:
                if self.target is not None:
                    self._meta(f"following new container {found.name} ({found.id[:12]})")
                    self._replay = None
                    self._last_ts, self._at_last = 0, []
                since = None
                tail = self.tail
            else:
                since = self._last_ts or None
                tail = self.buffer_lines if since else self.tail
            self.target = found
            self.state = "following" if found.running else "stopped"
            self._follow_once(found, tail, since)
            if self._stop.is_set():
                break
            self._after_stream(found)

    def _follow_once(self, target: Target, tail: int, since: int | None,
                     follow: bool = True) -> None:
        from genai_tui.sources.docker_light import engine_errors

        try:
            stream = self.source.open(target, tail, since, follow)
        except ContainerGone:
            return
        except SourceUnavailable as exc:
            self.state, self.detail = "unavailable", str(exc)
            self._wait(1.0)
            return
        with self._stream_lock:
            if self._stop.is_set():
                stream.close()
                return
            self._stream = stream
        self._replay = Counter(self._at_last) if since else None
        asm = LineAssembler(stream.framed)
        read_at = 0.0
        try:
            for chunk in stream:
                if self._stop.is_set():
                    break
                lines = asm.feed(chunk)
                if lines:
                    self._ingest(lines)
                # A busy stream is read in gulps: what arrives within BATCH_WINDOW of the
                # last read waits in the socket and is taken in one batch (per-read costs
                # dominate otherwise). A line after a quiet spell is taken at once.
                now = time.monotonic()
                if len(chunk) < BATCH_BYTES and now - read_at < BATCH_WINDOW:
                    self._stop.wait(BATCH_WINDOW - (now - read_at))
                read_at = time.monotonic()
        except (*engine_errors(), ValueError, AttributeError):
            pass  # closed by us, idle timeout, engine gone: decided by _after_stream
        finally:
            with self._stream_lock:
                self._stream = None
            stream.close()
        if not self._stop.is_set():
            rest = asm.flush()
            if rest:
                self._ingest(rest)

    def _after_stream(self, before: Target) -> None:
        """Why did the stream end? Restarted → reopen now; stopped → wait; gone → locate."""
        try:
            now = self.source.inspect(before.id)
        except SourceUnavailable as exc:
            self.state, self.detail = "unavailable", str(exc)
            self._wait(1.0)
            return
        if now is None:
            return  # removed: the next locate() says so or finds a new one
        if now.running:
            if now.started_at != before.started_at:
                self._meta("container restarted")
            elif self._wait(0.2):  # same run, stream ended early: reopen (not in a hot loop)
                pass
            return
        if self.state != "stopped" or before.running:
            # A follow stream can end before Docker has logged the process's last output
            # (its unterminated last line comes at EOF): one catch-up read from the last
            # timestamp, now that the container has stopped, gets it (dedupe drops repeats).
            self._follow_once(now, self.buffer_lines, self._last_ts or None, follow=False)
            if self._stop.is_set():
                return
            code = f" (exit code {now.exit_code})" if now.exit_code is not None else ""
            self._meta(f"container stopped{code}; {now.after_stop()}")
        self.state = "stopped"
        self.target = now
        while not self._stop.is_set():
            self._wait(self.poll_interval)
            if self._stop.is_set():
                return
            try:
                again = self.source.inspect(before.id)
            except SourceUnavailable:
                continue
            if again is None or again.running or again.started_at != now.started_at:
                if again is not None and again.running:
                    self._meta("container started")
                return

    def _meta(self, text: str) -> None:
        ts = max(time.time_ns(), self._last_ts)
        line = LogLine(ts, self.service, f"── {text} ──", META)
        with self._lock:
            self._buffer.append(line)
            self._pending.append(line)
            self.total += 1
        self._woken()

    def _ingest(self, lines: list[tuple[int, bytes, int]]) -> None:
        if not self.DEDUPE:  # files are read by offset: nothing comes twice
            self._last_ts = max(self._last_ts, max(lines, key=_TS)[0])
        elif self._replay is not None:
            lines = self._unseen(lines)
        else:
            self._note_last(lines)
        if not lines:
            return
        tss, raws, drops = (list(map(itemgetter(k), lines)) for k in range(3))
        texts, kinds, events = self._processor.process(tss, raws, drops)
        out = list(map(LogLine, tss, repeat(self.service), texts, repeat(LATER),
                       repeat(self.redactor)))
        for i, kind in kinds.items():
            out[i]._kind = kind
        with self._lock:
            self._buffer.extend(out)
            self._pending.extend(out)
            self._events.extend(events)
            self.total += len(out)
        self._woken()

    def _note_last(self, lines: list[tuple[int, bytes, int]]) -> None:
        """A live stream: nothing to drop, but remember the newest timestamp and the lines
        that carry it, to recognise them when a reopened stream delivers them again.
        (stdout and stderr lines may arrive slightly out of timestamp order.)"""
        newest = max(lines, key=_TS)[0]
        last = self._last_ts
        if newest < last:
            return
        at = [raw for ts, raw, _ in lines if ts == newest]
        if newest == last:
            self._at_last.extend(at)
        else:
            self._last_ts, self._at_last = newest, at

    def _unseen(self, lines: list[tuple[int, bytes, int]]) -> list[tuple[int, bytes, int]]:
        """After a reopen: drop what an earlier stream of this container delivered — older
        lines, and at the boundary timestamp the exact bytes seen there — until the first
        newer line ends the replay (from then on it is a live stream again)."""
        out: list[tuple[int, bytes, int]] = []
        for k, item in enumerate(lines):
            ts, raw, _ = item
            last = self._last_ts
            if ts > last:
                self._replay = None
                self._note_last(lines[k:])
                out.extend(lines[k:])
                break
            if ts < last:
                continue
            replay = self._replay
            if replay and replay.get(raw):
                replay[raw] -= 1
                continue
            self._at_last.append(raw)
            out.append(item)
        return out
