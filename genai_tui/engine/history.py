"""The event history: what happened to the stack, kept across runs for post-mortems.

`EventStore` is one SQLite file (standard library `sqlite3`, WAL mode) under
`$XDG_STATE_HOME/genai-tui/` — one file per config — with ONE writer: the process that
holds an exclusive `flock` on the lock file beside it. A second dashboard on the same
config opens the file read-only and says so; a read-only folder or a corrupt or locked
file turns history off with the reason, never a crash or a blocked screen.

`Recorder` subscribes to the live `Stack` and turns snapshot diffs into events
(containers dying, OOM kills, starts, restarts, health changes; findings opening and
closing; probe verdict changes; the token copies drifting or agreeing, by fingerprint
only; VRAM peaks; job failures), queues them and writes them in batches on a thread of its
own. Restarts and unifies asked for from genai-tui reach it through `record_action`
(`engine.actions` calls it): who (the OS user) and from which face.

Every text is cleaned (`safety.shown`: one line, every hash redacted) before it is stored.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import hashlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genai_tui.config import Config
from genai_tui.model import Finding, Snapshot
from genai_tui.safety import shown

if TYPE_CHECKING:
    from genai_tui.engine.alerts import AlertManager
    from genai_tui.engine.live import Change, Stack

log = logging.getLogger(__name__)

#: kind -> the group the timeline and `history --kind` filter by
KINDS: dict[str, str] = {
    "die": "container", "oom": "container", "start": "container", "restart": "container",
    "health": "container", "removed": "container",
    "finding_open": "finding", "finding_close": "finding",
    "probe": "probe",
    "token_drift": "token", "token_consistent": "token", "token_changed": "token",
    "restart_asked": "action", "unify": "action", "job_action": "action",
    "job_failed": "job", "job_stuck": "job",
    "vram_peak": "gpu",
    "alert_sent": "alert", "alert_failed": "alert", "alert_suppressed": "alert",
    "session_start": "session", "session_end": "session",
}
GROUPS = tuple(dict.fromkeys(KINDS.values()))
SEVERITIES = ("critical", "warning", "info")
#: log event kinds (from the followers) that are history: the jobs watch's failures
JOB_KINDS = frozenset({"job_failed", "job_stuck"})
#: a batch is written at most this long after its first event, or at this many events
FLUSH_INTERVAL = 1.0
FLUSH_EVENTS = 200
#: events waiting for the writer beyond this are dropped (and counted), never blocking
QUEUE_MAX = 10_000
#: how long a statement waits for a lock held by another connection
BUSY_TIMEOUT_MS = 2000
#: retention runs at open and this often
PRUNE_EVERY = 600.0
#: a new VRAM peak is recorded when it beats the last recorded one by this much of the
#: GPU's memory, at most once per PEAK_EVERY seconds per GPU
PEAK_STEP_PCT = 5.0
PEAK_EVERY = 60.0
#: texts are cut to this many characters
TEXT_MAX = 300

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    service TEXT,
    severity TEXT NOT NULL,
    code TEXT,
    text TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE INDEX IF NOT EXISTS events_finding ON events (code, service, ts);
"""


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class Event:
    """One thing that happened, as stored: `ts` in seconds since the epoch (UTC)."""

    ts: float
    kind: str
    text: str
    service: str | None = None
    severity: str = "info"
    code: str | None = None
    data: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    id: int | None = None

    @property
    def group(self) -> str:
        return KINDS.get(self.kind, "other")

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.ts, UTC)

    def to_json(self) -> dict[str, Any]:
        return {"time": self.at.isoformat(), "ts": round(self.ts, 3), "kind": self.kind,
                "group": self.group, "service": self.service, "severity": self.severity,
                "code": self.code, "text": self.text, "data": self.data}


def make_event(kind: str, text: str, *, service: str | None = None, severity: str = "info",
               code: str | None = None, ts: float | None = None,
               data: dict[str, Any] | None = None) -> Event:
    """An event with every text cleaned and redacted (the one way events are built)."""
    clean: dict[str, Any] = {}
    for k, v in (data or {}).items():
        clean[shown(k, 64)] = _clean_value(v)
    return Event(ts=time.time() if ts is None else float(ts), kind=shown(kind, 40),
                 text=shown(text, TEXT_MAX),
                 service=shown(service, 120) if service is not None else None,
                 severity=severity if severity in SEVERITIES else "info",
                 code=shown(code, 80) if code is not None else None, data=clean)


def _clean_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {shown(k, 64): _clean_value(v) for k, v in list(value.items())[:50]}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean_value(v) for v in list(value)[:50]]
    return shown(value, TEXT_MAX)


def _row_event(row: Sequence[Any]) -> Event:
    try:
        data = json.loads(row[7]) if row[7] else {}
    except ValueError:
        data = {}
    return Event(id=row[0], ts=row[1], kind=row[2], service=row[3], severity=row[4],
                 code=row[5], text=row[6], data=data if isinstance(data, dict) else {})


# ---------------------------------------------------------------- where


def state_home(env: dict[str, str] | None = None) -> Path:
    """`$XDG_STATE_HOME/genai-tui` (default `~/.local/state/genai-tui`)."""
    env = dict(os.environ if env is None else env)
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or "~").expanduser()
                                            / ".local" / "state")
    return Path(base) / "genai-tui"


def store_path(config: Config, env: dict[str, str] | None = None) -> Path:
    """The history file of this config: `[history] path`, else one per config file under
    the state home (named after the file, keyed by its full path)."""
    if config.history.path is not None:
        return Path(config.history.path)
    ident = str(config.path) if config.path else f"defaults:{config.base_dir}"
    stem = config.path.stem if config.path else "defaults"
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:40] or "config"
    digest = hashlib.sha256(ident.encode("utf-8", "replace")).hexdigest()[:10]
    return state_home(env) / f"history-{stem}-{digest}.sqlite3"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return shown(str(exc) or type(exc).__name__, 200)


# ---------------------------------------------------------------- the store


class EventStore:
    """The SQLite history file. `mode` is `write` (this process is the one writer),
    `read` (another process writes, or the folder is read-only) or `off`; `reason` says
    why it is not `write`. No method raises for a broken file: it turns `off`."""

    def __init__(self, path: Path, *, retention_days: float = 30.0, max_mb: float = 64.0,
                 enabled: bool = True) -> None:
        self.path = Path(path)
        self.retention_days = retention_days
        self.max_mb = max_mb
        self.mode = "off"
        self.reason: str | None = None if enabled else "history is off in the config"
        self.enabled = enabled
        self.written = 0
        #: the last write found the file locked by another program (kept, retried)
        self.locked = False
        self._lock_fd: int | None = None
        self._conn: sqlite3.Connection | None = None
        self._mutex = threading.RLock()
        self._last_prune = 0.0

    @classmethod
    def for_config(cls, config: Config, *, writer: bool = True) -> EventStore:
        """Open this config's history (as its writer when `writer` and nobody else is)."""
        h = config.history
        store = cls(store_path(config), retention_days=h.retention_days, max_mb=h.max_mb,
                    enabled=h.enabled)
        store.open(writer=writer)
        return store

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    @property
    def spool_path(self) -> Path:
        """Events from processes that cannot write (a CLI beside a dashboard)."""
        return self.path.with_name(self.path.name + ".spool")

    @property
    def writable(self) -> bool:
        return self.mode == "write"

    @property
    def status(self) -> str:
        """One line for the timeline's header and `history`."""
        if self.mode == "write":
            if self.locked:
                return (f"history on, writes waiting: {shown(self.path, 200)} is locked by "
                        "another program")
            return f"history on: {shown(self.path, 200)}"
        if self.mode == "read":
            return f"history read-only: {self.reason}"
        return f"history off: {self.reason}"

    # -- opening
    def open(self, *, writer: bool = True) -> EventStore:
        if not self.enabled:
            return self
        with self._mutex:
            if writer and self._take_lock():
                try:
                    self._conn = self._connect(readonly=False)
                    self.mode = "write"
                    self.reason = None
                    self.prune()
                    return self
                except sqlite3.Error as exc:
                    hint = " (another program holds it)" if "locked" in str(exc) else \
                        " (move the file aside to start a new history)"
                    self._fail(f"cannot use {shown(self.path, 200)}: {_reason(exc)}{hint}")
                    self._release_lock()
                    return self
            if not self.path.exists():
                self.mode = "off"
                if self.reason is None:
                    self.reason = f"no history file {shown(self.path, 200)} yet"
                return self
            try:
                self._conn = self._connect(readonly=True)
                self._conn.execute("SELECT count(*) FROM events").fetchone()
                self.mode = "read"
                if self.reason is None:
                    self.reason = "opened read-only"
            except sqlite3.Error as exc:
                self._close_conn()
                self.mode = "off"
                self.reason = (f"{self.reason}; cannot read it either: {_reason(exc)}"
                               if self.reason else f"cannot read {shown(self.path, 200)}: "
                               f"{_reason(exc)}")
        return self

    def _take_lock(self) -> bool:
        """The exclusive writer lock; on failure `reason` says why (another writer with
        its pid, or a folder we cannot write)."""
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            self.reason = f"cannot write {shown(folder, 200)}: {_reason(exc)}"
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                who = f" (pid {int(holder)})" if holder.isdigit() else ""
                self.reason = (f"another genai-tui{who} writes this history; this one "
                               "only reads it")
            else:
                self.reason = f"cannot lock {shown(self.lock_path, 200)}: {_reason(exc)}"
            return False
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        return True

    def _release_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing drops the flock

    def _connect(self, *, readonly: bool) -> sqlite3.Connection:
        if readonly:
            uri = "file:" + _uri_path(self.path) + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                                   isolation_level=None, check_same_thread=False)
        else:
            conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000,
                                   isolation_level=None, check_same_thread=False)
            with contextlib.suppress(OSError):
                os.chmod(self.path, 0o600)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if not readonly:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise sqlite3.OperationalError(f"cannot use WAL mode (got {mode})")
                conn.execute("PRAGMA synchronous = NORMAL")  # a commit survives kill -9
                conn.executescript(SCHEMA)
                check = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
                if check != "ok":
                    raise sqlite3.DatabaseError(f"the file is damaged ({shown(check, 80)})")
        except BaseException:
            conn.close()
            raise
        return conn

    def _fail(self, reason: str) -> None:
        log.warning("history: %s", reason)
        self._close_conn()
        self.mode = "off"
        self.reason = reason

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def close(self) -> None:
        with self._mutex:
            if self._conn is not None and self.mode == "write":
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._close_conn()
            self._release_lock()
            if self.mode != "off":
                self.mode = "off"
                self.reason = "closed"

    # -- writing
    def add(self, events: Iterable[Event]) -> int:
        """Write events in one transaction; how many were written (0 when not the
        writer or when the file broke: then `mode` is `off` with the reason)."""
        rows = [(e.ts, e.kind, e.service, e.severity, e.code, e.text,
                 json.dumps(e.data, ensure_ascii=False, default=str)) for e in events]
        if not rows:
            return 0
        with self._mutex:
            if self._conn is None or self.mode != "write":
                return 0
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany(
                    "INSERT INTO events (ts, kind, service, severity, code, text, data) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc)
                                                                  or "busy" in str(exc)):
                    log.warning("history: the file is locked by another program")
                    self.locked = True  # the caller keeps the batch for the next try
                    return 0
                self._fail(f"writing {shown(self.path, 200)} failed: {_reason(exc)}")
                return 0
            self.written += len(rows)
            self.locked = False
            if time.monotonic() - self._last_prune > PRUNE_EVERY:
                self.prune()
            return len(rows)

    def ingest_spool(self) -> int:
        """Take in the events other processes could not write themselves (never raises:
        a spool another process garbled is skipped)."""
        if self.mode != "write":
            return 0
        try:
            return self._ingest_spool()
        except Exception as exc:
            log.warning("history: spool skipped: %s", type(exc).__name__)
            return 0

    def _ingest_spool(self) -> int:
        taking = self.spool_path.with_name(self.spool_path.name + ".taking")
        try:
            os.replace(self.spool_path, taking)
        except FileNotFoundError:
            return 0
        except OSError:
            return 0
        events: list[Event] = []
        try:
            with open(taking, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    with contextlib.suppress(ValueError, TypeError, KeyError):
                        d = json.loads(line)
                        events.append(make_event(
                            str(d["kind"]), str(d.get("text", "")), service=d.get("service"),
                            severity=str(d.get("severity", "info")), code=d.get("code"),
                            ts=float(d["ts"]), data=d.get("data") if isinstance(
                                d.get("data"), dict) else {}))
        except OSError:
            return 0
        n = self.add(events)
        with contextlib.suppress(OSError):
            taking.unlink()
        return n

    def prune(self, now: float | None = None) -> int:
        """Retention: events older than `retention_days`, then the oldest until the file
        holds at most `max_mb`. Returns how many were removed."""
        with self._mutex:
            if self._conn is None or self.mode != "write":
                return 0
            self._last_prune = time.monotonic()
            now = time.time() if now is None else now
            removed = 0
            try:
                cur = self._conn.execute("DELETE FROM events WHERE ts < ?",
                                         (now - self.retention_days * 86400.0,))
                removed += max(0, cur.rowcount)
                limit = int(self.max_mb * 1024 * 1024)
                for _ in range(64):
                    if self.used_bytes() <= limit:
                        break
                    count = self._conn.execute("SELECT count(*) FROM events").fetchone()[0]
                    if not count:
                        break
                    cur = self._conn.execute(
                        "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id "
                        "LIMIT ?)", (max(1, count // 10),))
                    removed += max(0, cur.rowcount)
                if removed:
                    self._shrink()
            except sqlite3.Error as exc:
                log.warning("history: retention failed: %s", _reason(exc))
            return removed

    def _shrink(self) -> None:
        """Give freed pages back to the disk when they are a good part of the file (new
        events reuse free pages, so steady ageing-out never rewrites the file)."""
        assert self._conn is not None
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
        if pages and free / pages > 0.25:
            self._conn.execute("VACUUM")
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def used_bytes(self) -> int:
        """Bytes the events occupy in the file (free pages not counted)."""
        with self._mutex:
            if self._conn is None:
                return 0
            try:
                pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
                free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
                size = self._conn.execute("PRAGMA page_size").fetchone()[0]
            except sqlite3.Error:
                return 0
            return int((pages - free) * size)

    def file_bytes(self) -> int:
        """The file and its WAL on disk."""
        total = 0
        for p in (self.path, self.path.with_name(self.path.name + "-wal")):
            with contextlib.suppress(OSError):
                total += p.stat().st_size
        return total

    # -- reading
    def events(self, *, since: float | None = None, until: float | None = None,
               service: str | None = None, kind: str | None = None,
               severity: str | None = None, limit: int | None = 2000,
               newest_first: bool = True) -> list[Event]:
        """Stored events, filtered: `kind` is a kind or a group (`container`, `finding`…),
        `severity` that severity or worse."""
        where, args = [], []
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if until is not None:
            where.append("ts <= ?")
            args.append(until)
        if service:
            where.append("service = ?")
            args.append(service)
        if kind:
            kinds = [k for k, g in KINDS.items() if g == kind] or [kind]
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            args.extend(kinds)
        if severity in SEVERITIES:
            allowed = SEVERITIES[:SEVERITIES.index(severity) + 1]
            where.append(f"severity IN ({','.join('?' * len(allowed))})")
            args.extend(allowed)
        sql = "SELECT id, ts, kind, service, severity, code, text, data FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ts DESC, id DESC" if newest_first else " ORDER BY ts, id"
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self._mutex:
            if self._conn is None:
                return []
            try:
                rows = self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                log.warning("history: read failed: %s", _reason(exc))
                return []
        return [_row_event(r) for r in rows]

    def open_findings(self) -> dict[tuple[str, str | None], Event]:
        """Findings whose last event is an open: (code, service) -> that open."""
        with self._mutex:
            if self._conn is None:
                return {}
            try:
                rows = self._conn.execute(
                    "SELECT id, ts, kind, service, severity, code, text, data FROM events "
                    "WHERE id IN (SELECT max(id) FROM events WHERE kind IN "
                    "('finding_open', 'finding_close') GROUP BY code, service)").fetchall()
            except sqlite3.Error:
                return {}
        return {(e.code or "", e.service): e for e in map(_row_event, rows)
                if e.kind == "finding_open"}

    def since(self, code: str, service: str | None) -> datetime | None:
        """When this finding opened (and has not closed since): "restart loop since
        02:51" in the findings view and the containers table."""
        e = self.open_findings().get((code, service))
        return e.at if e is not None else None

    def count(self) -> int:
        with self._mutex:
            if self._conn is None:
                return 0
            try:
                return int(self._conn.execute("SELECT count(*) FROM events").fetchone()[0])
            except sqlite3.Error:
                return 0


def _uri_path(path: Path) -> str:
    from urllib.parse import quote

    return quote(str(path.absolute()), safe="/")


# ---------------------------------------------------------------- actions (any face)

#: callbacks that take an action event (a running Recorder registers itself)
OBSERVERS: list[Callable[[Event], None]] = []


def who() -> str:
    """The OS user asking, for "restart asked by alice from the dashboard"."""
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def record_action(config: Config, kind: str, service: str | None, text: str, *,
                  ok: bool = True, data: dict[str, Any] | None = None) -> None:
    """A restart or unify asked for from genai-tui: to this process's Recorder when one
    runs (the dashboard), else written directly as the CLI (or spooled for the writer
    when another process holds the file). Never raises, never blocks for long."""
    try:
        base = {"who": who(), "ok": ok, **(data or {})}
        if OBSERVERS:
            for fn in list(OBSERVERS):
                fn(make_event(kind, text, service=service,
                              severity="info" if ok else "warning", data=base))
            return
        base["face"] = "cli"
        event = make_event(kind, f"{text} (by {base['who']} from the CLI)", service=service,
                           severity="info" if ok else "warning", data=base)
        write_direct(config, [event])
    except Exception as exc:  # history must never break an action
        log.debug("history: action not recorded: %s", type(exc).__name__)


def write_direct(config: Config, events: list[Event]) -> str:
    """Write events from a short-lived process: as the writer when the file is free,
    else appended to the writer's spool. Returns how ("written", "spooled", "off")."""
    if not config.history.enabled:
        return "off"
    store = EventStore(store_path(config), retention_days=config.history.retention_days,
                       max_mb=config.history.max_mb)
    if store._take_lock():
        try:
            store._conn = store._connect(readonly=False)
            store.mode = "write"
            store.add(events)
            return "written"
        except sqlite3.Error:
            return "off"
        finally:
            store.close()
    return spool(store, events)


def spool(store: EventStore, events: list[Event]) -> str:
    """Append events (one JSON line each, one write: atomic under O_APPEND)."""
    payload = "".join(json.dumps({"ts": e.ts, "kind": e.kind, "text": e.text,
                                  "service": e.service, "severity": e.severity,
                                  "code": e.code, "data": e.data}) + "\n" for e in events)
    try:
        fd = os.open(store.spool_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
    except OSError:
        return "off"
    try:
        os.write(fd, payload.encode("utf-8"))
    except OSError:
        return "off"
    finally:
        os.close(fd)
    return "spooled"


# ---------------------------------------------------------------- the recorder


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _signal_name(num: int) -> str:
    import signal

    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


class Recorder:
    """Turns the live Stack's changes into events and writes them off the UI thread.

    `attach(stack)` subscribes and starts the writer thread; the store is opened on
    that thread (a locked or slow file never holds up the screen). `close()` flushes
    what is queued, stops the thread and the alert worker, and closes the file."""

    def __init__(self, stack: Stack, *, face: str = "dashboard",
                 store: EventStore | None = None,
                 notify: Callable[[str], None] | None = None,
                 alerts: AlertManager | None = None) -> None:
        self.stack = stack
        self.config = stack.config
        self.face = face
        self.store = store if store is not None else EventStore(
            store_path(self.config), retention_days=self.config.history.retention_days,
            max_mb=self.config.history.max_mb, enabled=self.config.history.enabled)
        self._own_store = store is None
        self._notify = notify
        self.alerts = alerts
        self._queue: queue.Queue[Event | None] = queue.Queue(QUEUE_MAX)
        self.dropped = 0
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._loop: Any = None
        self.ready = threading.Event()  # the store is open (or off with a reason)
        self._flushed = threading.Condition()
        self._pending = 0
        # what was seen last, per part
        self._containers: dict[str, Any] = {}
        self._findings: dict[tuple[str, str | None], Finding] | None = None
        self._since: dict[tuple[str, str | None], float] = {}
        self._probes: dict[str, tuple[str, str | None]] = {}
        self._tokens: tuple[bool, tuple[str, ...]] | None = None
        self._peaks: dict[int, tuple[float, float]] = {}  # gpu -> (recorded peak, at)
        self._log_seen: set[tuple[str, str, float]] = set()
        self._dead: dict[str, tuple[Any, Any]] = {}  # service -> run that died
        self._stored_open: dict[tuple[str, str | None], Event] = {}
        self._dead_count: dict[str, int] = {}  # service -> restart count when it died
        self._retry: list[Event] = []
        self._jobs_seen: set[tuple[str, str]] | None = None
        self._said_locked = False
        self._closed = False

    # -- lifecycle
    @classmethod
    def attach(cls, stack: Stack, *, face: str = "dashboard",
               notify: Callable[[str], None] | None = None,
               store: EventStore | None = None) -> Recorder:
        """A running recorder for this stack (alerts from `[[alerts]]` included)."""
        from genai_tui.engine.alerts import AlertManager

        rec = cls(stack, face=face, store=store, notify=notify)
        if stack.config.alerts:
            rec.alerts = AlertManager(stack.config.alerts, record=rec.add)
        rec.start()
        return rec

    def start(self) -> None:
        import asyncio

        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()
        self._unsubscribe = self.stack.subscribe(self.on_change)
        OBSERVERS.append(self.observe)
        if self.alerts is not None:
            self.alerts.start()
        self._thread = threading.Thread(target=self._run, name="genai-tui-history",
                                        daemon=True)
        self._thread.start()
        self.add(make_event("session_start", f"{self.face} started by {who()}",
                            data={"who": who(), "face": self.face, "pid": os.getpid()}))

    def close(self, timeout: float = 3.0) -> None:
        """Flush and stop; safe twice and from any thread."""
        if self._closed:
            return
        self._closed = True
        if self._unsubscribe is not None:
            self._unsubscribe()
        with contextlib.suppress(ValueError):
            OBSERVERS.remove(self.observe)
        if self.alerts is not None:
            self.alerts.close(timeout)
        self._put(make_event("session_end", f"{self.face} closed",
                             data={"face": self.face, "pid": os.getpid()}))
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=0.5)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until everything queued so far is written (tests and `history`)."""
        deadline = time.monotonic() + timeout
        with self._flushed:
            while self._pending > 0 or not self.ready.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._flushed.wait(left)
        return True

    # -- queueing
    def add(self, event: Event) -> None:
        """Queue one event (any thread); dropped and counted when the queue is full."""
        self._put(event)

    def observe(self, event: Event) -> None:
        """An action from this process (`record_action`): stamped with this face."""
        data = dict(event.data)
        data["face"] = self.face
        text = f"{event.text} (by {data.get('who', 'unknown')} from the {self.face})"
        self._put(make_event(event.kind, text, service=event.service,
                             severity=event.severity, code=event.code, ts=event.ts,
                             data=data))

    def _put(self, event: Event) -> None:
        with self._flushed:
            self._pending += 1
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            with self._flushed:
                self._pending -= 1
                self._flushed.notify_all()

    def _run(self) -> None:
        if self._own_store:
            self.store.open(writer=True)
        if self.store.mode != "off":
            self._stored_open = self.store.open_findings()
        self.ready.set()
        with self._flushed:
            self._flushed.notify_all()
        if self.store.mode != "write" and self._notify is not None:
            self._say(self.store.status)
        if self.store.mode == "write":
            self.store.ingest_spool()
        stop = False
        while not stop:
            try:
                first = self._queue.get(timeout=FLUSH_INTERVAL)
            except queue.Empty:
                if self._retry:
                    self._write([])
                self.store.ingest_spool()
                continue
            batch: list[Event] = []
            if first is None:
                stop = True
            else:
                batch.append(first)
                deadline = time.monotonic() + FLUSH_INTERVAL
                while len(batch) < FLUSH_EVENTS:
                    left = deadline - time.monotonic()
                    try:
                        item = self._queue.get(timeout=max(0.0, left)) if left > 0 \
                            else self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stop = True
                        break
                    batch.append(item)
            if stop:  # whatever is left, then leave
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        batch.append(item)
            self._write(batch)
        if self._own_store:
            self.store.close()

    def _write(self, batch: list[Event]) -> None:
        done = len(batch)
        if self._retry:  # a batch the locked file refused: first, and kept in order
            batch = self._retry + batch
            self._retry = []
        if batch:
            was = self.store.mode
            if was == "write":
                if not self.store.add(batch) and self.store.locked:
                    self._retry = batch[-QUEUE_MAX:]
                    if not self._said_locked:
                        self._said_locked = True
                        self._say(self.store.status)
                else:
                    self._said_locked = False
            elif was == "read" and self.face != "test":
                # a second dashboard's own actions still reach the writer
                spool(self.store, [e for e in batch if e.group == "action"])
            if was == "write" and self.store.mode != "write":
                self._say(self.store.status)
        with self._flushed:
            self._pending -= done
            self._flushed.notify_all()

    def _say(self, text: str) -> None:
        if self._notify is None:
            return
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._notify, text)
        else:
            with contextlib.suppress(Exception):
                self._notify(text)

    # -- reading (for the faces)
    def since(self, code: str, service: str | None) -> datetime | None:
        """When this open finding started, from the store (earlier runs included)."""
        ts = self._since.get((code, service))
        return datetime.fromtimestamp(ts, UTC) if ts is not None else None

    def with_since(self, findings: Iterable[Finding]) -> list[Finding]:
        """The findings with `since` from the store where it is earlier (or the finding
        has none): "restart loop since 02:51" even after the dashboard restarted."""
        import dataclasses

        out = []
        for f in findings:
            stored = self.since(f.code, f.service)
            if stored is not None and (f.since is None or stored < f.since):
                f = dataclasses.replace(f, since=stored)
            out.append(f)
        return out

    # -- diffs (on the stack's loop: cheap, no I/O)
    def on_change(self, change: Change) -> None:
        snap = self.stack.snapshot
        part = change.part
        if part == "containers":
            self._diff_containers(snap)
        elif part == "findings":
            self._diff_findings(snap)
        elif part == "probes":
            self._diff_probes(snap)
        elif part == "tokens":
            self._diff_tokens(snap)
        elif part == "gpu":
            self._diff_gpu(snap)
        elif part == "log_events":
            self._diff_log_events(snap)
        elif part == "jobs":
            self._diff_jobs(snap)

    def _diff_containers(self, snap: Snapshot) -> None:
        """One event per thing that happened to a container: a run ending (exit code,
        OOM, the signal that killed it), a new run (start, or a restart by the engine or
        by someone), removal, a health change. A run is (container id, started_at), so
        the monitor's quick provisional `exited` and the inspect after it are one die."""
        for c in snap.containers:
            prev = self._containers.get(c.service)
            self._containers[c.service] = (c.id, c.state, c.health, c.started_at,
                                           c.restart_count)
            if prev is None or c.state == "unknown" or prev[1] == "unknown":
                continue  # the first look (or the engine back) is the baseline
            pid, pstate, phealth, pstarted, prestarts = prev
            run, prev_run = (c.id, c.started_at), (pid, pstarted)
            if c.state in ("exited", "dead", "restarting"):
                if self._dead.get(c.service) != run and pstate in ("running", "paused"):
                    self._die(c)
            elif c.missing:
                if pstate != "missing":
                    self.add(make_event("removed", "container removed", service=c.service,
                                        severity="warning", data={"container": c.container}))
            elif c.running and run != prev_run and c.started_at is not None:
                if pid == c.id and pstate == "running" and self._dead.get(c.service) \
                        != prev_run:
                    self._die(c, run=prev_run)  # died and came back between two looks
                # the engine's restart policy: the count went up since the run died (the
                # inspect during `restarting` may already show it), or it was restarting
                before = min(prestarts, self._dead_count.get(c.service, prestarts))
                if pid == c.id and (c.restart_count > before or pstate == "restarting"):
                    self.add(make_event(
                        "restart", f"restarted by the engine (restart {c.restart_count})",
                        service=c.service, severity="warning", ts=_ts(c.started_at),
                        data={"restart_count": c.restart_count}))
                elif pid == c.id and pstate == "running":
                    self.add(make_event("restart", "restarted", service=c.service,
                                        ts=_ts(c.started_at)))
                else:
                    self.add(make_event("start", "started", service=c.service,
                                        ts=_ts(c.started_at), data={"container": c.container}))
            if c.health != phealth and c.health is not None and phealth is not None \
                    and pid == c.id:
                self.add(make_event(
                    "health", f"health {phealth} → {c.health}", service=c.service,
                    severity="warning" if c.health == "unhealthy" else "info",
                    data={"from": phealth, "to": c.health}))

    def _die(self, c: Any, run: tuple[Any, Any] | None = None) -> None:
        self._dead[c.service] = run if run is not None else (c.id, c.started_at)
        self._dead_count[c.service] = c.restart_count
        code = c.exit_code
        data: dict[str, Any] = {"exit_code": code, "oom_killed": c.oom_killed,
                                "container": c.container}
        if c.oom_killed:
            kind, sev = "oom", "critical"
            text = f"OOM killed (exit {code})"
        elif code is not None and code > 128:
            kind, sev = "die", "warning"
            sig = _signal_name(code - 128)
            data["signal"] = sig
            text = f"killed by {sig} (exit {code})"
        else:
            kind, sev = "die", "info" if code == 0 else "warning"
            text = f"exited with code {code}" if code is not None else "exited"
        # the provisional `exited` still carries the previous run's finished_at: only a
        # time after this run's start is this run's end
        ts = _ts(c.finished_at)
        if ts is None or (c.started_at is not None and ts < c.started_at.timestamp()):
            ts = None
        self.add(make_event(kind, text, service=c.service, severity=sev, ts=ts, data=data))

    def _diff_findings(self, snap: Snapshot) -> None:
        now = {(f.code, f.service): f for f in snap.findings}
        if self._findings is None:
            if not self.ready.is_set():
                return  # the store is opening: the next findings (every change) will do
            # the store's open findings from earlier runs: still open is not news
            stored = self._stored_open
            for key, e in stored.items():
                self._since[key] = e.ts
                if key not in now:
                    self._close(key, None, e)
            for key, f in now.items():
                if key not in stored:
                    self._open(f)
            self._findings = now
            return
        for key, f in now.items():
            if key not in self._findings:
                self._open(f)
        for key, f in self._findings.items():
            if key not in now:
                self._close(key, f, None)
        self._findings = now

    def _open(self, f: Finding) -> None:
        ts = time.time()
        self._since[(f.code, f.service)] = ts
        self.add(make_event("finding_open", f.message, service=f.service,
                            severity=f.severity.value, code=f.code, ts=ts,
                            data={"fix": f.fix, "since": f.since.isoformat()
                                  if f.since else None}))
        if self._alerting():
            self.alerts.finding(f.code, f.severity.value, f.service, f.message, "open", ts)

    def _close(self, key: tuple[str, str | None], f: Finding | None, e: Event | None) -> None:
        ts = time.time()
        opened = self._since.pop(key, None)
        severity = f.severity.value if f is not None else (e.severity if e else "info")
        message = f.message if f is not None else (e.text if e else "")
        data = {"open_for_s": round(ts - opened, 1) if opened else None}
        self.add(make_event("finding_close", f"fixed: {message}", service=key[1],
                            severity=severity, code=key[0], ts=ts, data=data))
        if self._alerting():
            self.alerts.finding(key[0], severity, key[1], message, "close", ts)

    def _alerting(self) -> bool:
        """Hooks run where this recorder writes the history, or where there is none (off:
        read-only or broken state dir); not in a second dashboard that only reads the
        writer's, or every open dashboard would send each alert once more."""
        return self.alerts is not None and self.store.mode != "read"

    def _diff_probes(self, snap: Snapshot) -> None:
        for p in snap.probes:
            now = (p.outcome, p.auth)
            prev = self._probes.get(p.service)
            self._probes[p.service] = now
            if prev is None or prev == now:
                continue
            before = prev[0] + (f" ({prev[1]})" if prev[1] else "")
            after = p.outcome + (f" ({p.auth})" if p.auth else "")
            bad = p.outcome != "ok" or p.auth in ("disabled", "rejected", "no_password")
            self.add(make_event("probe", f"probe {before} → {after}", service=p.service,
                                severity="warning" if bad else "info",
                                data={"outcome": p.outcome, "auth": p.auth,
                                      "status": p.status, "detail": p.detail}))

    def _diff_tokens(self, snap: Snapshot) -> None:
        report = snap.tokens
        if report is None or report.error:
            return
        fps = tuple(sorted(report.fingerprints))
        now = (report.consistent, fps)
        prev, self._tokens = self._tokens, now
        if prev is None or prev == now:
            return
        where = {fp: sorted(names) for fp, names in report.fingerprints.items()}
        detail = "; ".join(f"{fp} in {', '.join(names)}" for fp, names in where.items())
        if prev[0] and not report.consistent:
            self.add(make_event("token_drift", f"token copies disagree: {detail}",
                                severity="warning", data={"fingerprints": where}))
        elif not prev[0] and report.consistent:
            self.add(make_event("token_consistent", f"token copies agree: {detail}",
                                data={"fingerprints": where}))
        else:
            self.add(make_event("token_changed", f"token values changed: {detail}",
                                data={"fingerprints": where}))

    def _diff_gpu(self, snap: Snapshot) -> None:
        report = snap.gpu
        if report is None:
            return
        now = time.monotonic()
        for g in report.gpus:
            if g.memory_used_mb is None or not g.memory_total_mb:
                continue
            peak, at = self._peaks.get(g.index, (0.0, -PEAK_EVERY))
            step = g.memory_total_mb * PEAK_STEP_PCT / 100.0
            if g.memory_used_mb < peak + step or now - at < PEAK_EVERY:
                continue
            self._peaks[g.index] = (g.memory_used_mb, now)
            top = max((p for p in g.processes if p.memory_mb is not None),
                      key=lambda p: p.memory_mb or 0.0, default=None)
            owner = (top.service or top.container) if top is not None else None
            pct = 100.0 * g.memory_used_mb / g.memory_total_mb
            text = (f"VRAM peak {g.memory_used_mb / 1024:.1f} of "
                    f"{g.memory_total_mb / 1024:.1f} GiB ({pct:.0f}%) on GPU {g.index}"
                    + (f", most by {owner}" if owner else ""))
            self.add(make_event("vram_peak", text, service=owner,
                                severity="warning" if pct >= self.config.gpu.memory_warn_pct
                                else "info",
                                data={"gpu": g.index, "used_mb": round(g.memory_used_mb),
                                      "total_mb": round(g.memory_total_mb)}))

    def _diff_jobs(self, snap: Snapshot) -> None:
        """A job that ended in an error (ids and the exception's class only, never the
        graph); stuck jobs and failure streaks are findings, recorded as such."""
        report = getattr(snap, "jobs", None)
        first = self._jobs_seen is None
        seen = self._jobs_seen if self._jobs_seen is not None else set()
        for sj in getattr(report, "services", None) or []:
            for job in getattr(sj, "recent", None) or []:
                if getattr(job, "state", None) != "error":
                    continue
                key = (sj.service, job.prompt_id)
                if key in seen:
                    continue
                seen.add(key)
                if first:
                    continue  # failures from before we looked are not news
                what = job.error_type or "an error"
                self.add(make_event(
                    "job_failed", f"job {job.prompt_id[:8]} failed: {what}",
                    service=sj.service, severity="warning", ts=_ts(job.finished_at),
                    data={"prompt_id": job.prompt_id, "error_type": job.error_type,
                          "message": job.error_message}))
        if len(seen) > 5000:
            seen = set(list(seen)[-1000:])
        self._jobs_seen = seen

    def _diff_log_events(self, snap: Snapshot) -> None:
        for e in snap.log_events:
            if e.kind not in JOB_KINDS:
                continue
            key = (e.service, e.kind, _ts(e.at) or 0.0)
            if key in self._log_seen:
                continue
            if len(self._log_seen) > 5000:
                self._log_seen.clear()
            self._log_seen.add(key)
            what = "job failed" if e.kind == "job_failed" else "job stuck"
            self.add(make_event(e.kind, what, service=e.service, severity="warning",
                                ts=_ts(e.at)))


def record_unify(config: Config, plan: Any, result: Any) -> None:
    """A unify that wrote: the source, the fingerprint everything now holds and the
    locations changed (never a hash: fingerprints and names only)."""
    changed = list(getattr(result, "changed", []) or [])
    source = "a new credential (rotate)" if getattr(plan, "rotate", False) \
        else f"'{getattr(plan, 'source', '?')}'"
    record_action(config, "unify", None,
                  f"unify from {source}: {len(changed)} location(s) now hold "
                  f"{getattr(plan, 'target', '?')}",
                  data={"source": getattr(plan, "source", None),
                        "target": getattr(plan, "target", None), "changed": changed,
                        "rotate": bool(getattr(plan, "rotate", False))})
