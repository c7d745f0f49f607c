"""Alert hooks: `[[alerts]]` in the config run a command or POST a webhook when a finding
of the chosen severity (or worse) opens or closes.

Everything happens on one worker thread (never the UI's): each delivery has a timeout,
each hook a rate limit (deliveries per minute) and a dedup window per (code, service,
open/close), so a storm of findings sends a few alerts, not a hundred. What could not be
sent — a failed or timed-out hook, alerts held back by the rate limit — becomes an event
in the history. The payload is JSON with the code, severity, service, message (one clean
line, every hash redacted), state, time and host: never a secret.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from genai_tui.config import AlertConfig
from genai_tui.engine.history import Event, make_event
from genai_tui.safety import shown
from genai_tui.secret import BCRYPT_ANYWHERE

log = logging.getLogger(__name__)

RANKS = {"critical": 0, "warning": 1, "info": 2}
#: alerts waiting beyond this are dropped (counted in the next suppressed event)
QUEUE_MAX = 1000
#: what a command hook may print that we keep for the failure event
OUTPUT_MAX = 200


@dataclass(frozen=True)
class Alert:
    code: str
    severity: str
    service: str | None
    message: str
    state: str  # open | close
    ts: float

    def payload(self, host: str) -> dict[str, Any]:
        """The JSON sent: cleaned and redacted here, whatever the caller passed."""
        return {
            "source": "genai-tui",
            "code": shown(self.code, 80),
            "severity": self.severity,
            "service": shown(self.service, 120) if self.service is not None else None,
            "message": shown(self.message, 500),
            "state": self.state,
            "time": datetime.fromtimestamp(self.ts, UTC).isoformat(),
            "host": shown(host, 120),
        }


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook answer is final: never re-sent elsewhere (a redirect is a failure)."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> None:
        return None


class Hook:
    """One `[[alerts]]` entry with its own rate limit and dedup memory."""

    def __init__(self, cfg: AlertConfig) -> None:
        self.cfg = cfg
        self.sent: deque[float] = deque()
        self.last: dict[tuple[str, str | None, str], float] = {}
        self.suppressed = 0
        self.deliveries = 0
        self.failures = 0

    @property
    def name(self) -> str:
        return shown(self.cfg.name, 80)

    def wants(self, alert: Alert) -> bool:
        return alert.state in self.cfg.on and \
            RANKS.get(alert.severity, 2) <= RANKS.get(self.cfg.severity, 0)

    def admit(self, alert: Alert, now: float) -> str | None:
        """None to send; else why not ("duplicate" or "rate")."""
        key = (alert.code, alert.service, alert.state)
        last = self.last.get(key)
        if last is not None and now - last < self.cfg.dedup_seconds:
            return "duplicate"
        while self.sent and now - self.sent[0] >= 60.0:
            self.sent.popleft()
        if len(self.sent) >= self.cfg.per_minute:
            return "rate"
        self.sent.append(now)
        self.last[key] = now
        return None

    def deliver(self, body: bytes) -> str | None:
        """Run the command or POST the webhook; None when it worked, else why not."""
        timeout = self.cfg.timeout
        if self.cfg.command:
            try:
                proc = subprocess.run(list(self.cfg.command), input=body, capture_output=True,
                                      timeout=timeout, close_fds=True,
                                      env={**os.environ, "GENAI_TUI_ALERT": "1"})
            except subprocess.TimeoutExpired:
                return f"timed out after {timeout:g} s"
            except OSError as exc:
                return f"cannot run {shown(self.cfg.command[0], 120)}: " \
                       f"{exc.strerror or type(exc).__name__}"
            if proc.returncode != 0:
                err = shown(proc.stderr.decode("utf-8", "replace"), OUTPUT_MAX)
                return f"exit status {proc.returncode}" + (f": {err}" if err else "")
            return None
        assert self.cfg.webhook
        req = urllib.request.Request(self.cfg.webhook, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "genai-tui-alerts"})
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(req, timeout=timeout) as resp:
                resp.read(4096)
                status = resp.status
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except TimeoutError:
            return f"timed out after {timeout:g} s"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                return f"timed out after {timeout:g} s"
            return f"cannot reach the webhook: {shown(reason, 200)}"
        if not 200 <= status < 300:
            return f"HTTP {status}"
        return None


class AlertManager:
    """The hooks and their worker thread. `finding()` is called on the engine's loop and
    only queues; `record(event)` takes the failure and suppression events."""

    def __init__(self, hooks: Sequence[AlertConfig], *,
                 record: Callable[[Event], None] | None = None,
                 host: str | None = None) -> None:
        self.hooks = [Hook(h) for h in hooks]
        self.record = record or (lambda e: None)
        self.host = host or socket.gethostname()
        self._queue: queue.Queue[Alert | None] = queue.Queue(QUEUE_MAX)
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._pending = 0
        self.dropped = 0

    def start(self) -> None:
        if self.hooks and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="genai-tui-alerts",
                                            daemon=True)
            self._thread.start()

    def close(self, timeout: float = 3.0) -> None:
        """Stop after the alert being sent (the queue's rest is reported as dropped)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=0.5)
        thread.join(timeout)

    def finding(self, code: str, severity: str, service: str | None, message: str,
                state: str, ts: float | None = None) -> None:
        """A finding opened or closed: queue it for every hook that wants it."""
        if not any(h.wants(Alert(code, severity, service, "", state, 0.0))
                   for h in self.hooks):
            return
        alert = Alert(code, severity, service, message, state, time.time() if ts is None
                      else ts)
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.dropped += 1
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued alert was handled (tests)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _run(self) -> None:
        while True:
            alert = self._queue.get()
            if alert is None:
                break
            try:
                self._handle(alert)
            except Exception as exc:  # a hook's surprise must not end the worker
                log.error("alert hook failed: %s", type(exc).__name__)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()
            if self._queue.empty():
                self._report_suppressed()
        self._report_suppressed()

    def _handle(self, alert: Alert) -> None:
        payload = alert.payload(self.host)
        body = json.dumps(payload).encode("utf-8")
        if BCRYPT_ANYWHERE.search(body.decode("utf-8")):  # defence in depth: never sent
            self.record(make_event("alert_failed", "alert not sent: it held a secret",
                                   service=alert.service, severity="warning",
                                   code=alert.code))
            return
        now = time.monotonic()
        for hook in self.hooks:
            if not hook.wants(alert):
                continue
            why = hook.admit(alert, now)
            if why == "rate":
                hook.suppressed += 1
                continue
            if why is not None:
                continue
            error = hook.deliver(body)
            hook.deliveries += 1
            what = f"{alert.code} {alert.state}" + (f" ({alert.service})" if alert.service
                                                     else "")
            if error is None:
                self.record(make_event("alert_sent", f"alert {hook.name}: sent {what}",
                                       service=alert.service, code=alert.code,
                                       data={"hook": hook.name, "state": alert.state}))
            else:
                hook.failures += 1
                self.record(make_event("alert_failed",
                                       f"alert {hook.name} failed for {what}: {error}",
                                       service=alert.service, severity="warning",
                                       code=alert.code,
                                       data={"hook": hook.name, "error": error}))

    def _report_suppressed(self) -> None:
        for hook in self.hooks:
            if hook.suppressed:
                n, hook.suppressed = hook.suppressed, 0
                self.record(make_event(
                    "alert_suppressed", f"alert {hook.name}: {n} alert(s) held back by the "
                    f"rate limit ({hook.cfg.per_minute}/min)", severity="warning",
                    data={"hook": hook.name, "count": n}))
        if self.dropped:
            n, self.dropped = self.dropped, 0
            self.record(make_event("alert_suppressed", f"{n} alert(s) dropped: the queue "
                                   "was full", severity="warning", data={"count": n}))
