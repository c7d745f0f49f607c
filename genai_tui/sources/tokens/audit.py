"""The audit trail of the credential: one JSON line per unify, rotation or change seen.

Every entry names who did it and holds fingerprints only, never a secret; the file is
0600 in a 0700 folder, appended without following a symlink or blocking on a FIFO.
`_audit_unify` records a unify's outcome (called by `write.apply_plan`), `StatusAuditor`
records a location's state changing between two reads of the dashboard. This module
depends on reading (`scrub`) and the file primitives only, never on `write`.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genai_tui.config import TokensConfig
from genai_tui.model import TokensReport
from genai_tui.sources.tokens import fsutil
from genai_tui.sources.tokens.read import scrub

if TYPE_CHECKING:
    from genai_tui.sources.tokens.plan import UnifyPlan, UnifyResult


def who() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in a container, no env vars
        user = f"uid:{os.getuid()}"
    try:
        host = socket.gethostname()
    except OSError:
        host = "unknown-host"
    return f"{user}@{host}"


def append_audit(path: Path, entry: dict[str, Any]) -> None:
    """One JSON line, fingerprints only, file 0600 (its folder 0700 when we create it).
    Never follows a symlink at `path` and never blocks: a FIFO, device or folder there
    raises OSError naming what it is."""
    entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "who": who(), **entry}
    line = scrub(json.dumps(entry, sort_keys=False, default=str)) + "\n"
    if not path.parent.exists():
        fsutil.private_dir(path.parent)
    fd, st = fsutil.open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600,
                                 follow=False)
    try:
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(fd, 0o600)
        fsutil.write_all(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def _audit_unify(tokens: TokensConfig, plan: UnifyPlan, result: UnifyResult,
                 error: str | None = None, outcome: str = "ok") -> None:
    after = dict(plan.before)
    if error is None:
        for c in plan.changes:
            after[c.location] = c.after
    entry = {
        "what": "rotate" if plan.rotate else "unify",
        "source": plan.source,
        "before": plan.before,
        "after": after,
        "changed": [c.location for c in plan.changes] if error is None else [],
        "blocked": [b.location for b in plan.blocked],
        "backups": list(result.backups),
        "result": "failed" if error else outcome,
    }
    if error:
        entry["error"] = error
    if result.pruned:
        entry["pruned_backups"] = len(result.pruned)
    try:
        append_audit(tokens.audit_log, entry)
    except OSError as exc:
        result.warnings.append(f"audit log {tokens.audit_log}: {fsutil.reason(exc)}; this "
                               "change was not recorded there")


def read_audit(path: Path, limit: int = 1000) -> list[dict[str, Any]]:
    """The last `limit` audit entries (malformed lines skipped)."""
    try:
        fd, st = fsutil.open_regular(path, follow=False)
    except OSError:
        return []
    try:
        data = os.pread(fd, 512 * 1024, max(0, st.st_size - 512 * 1024))
    except OSError:
        return []
    finally:
        os.close(fd)
    out = []
    for line in data.decode("utf-8", "replace").splitlines()[-limit:]:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


class StatusAuditor:
    """Appends a `status_change` line when a location's (state, fingerprint) changes
    between two reads; the first observation is recorded once (the last recorded state is
    taken from the audit file, so restarting the dashboard does not repeat it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last: dict[str, list[str | None]] | None = None

    def _seed(self) -> dict[str, list[str | None]]:
        for item in reversed(read_audit(self.path)):
            snap = item.get("snapshot") if item.get("what") == "status_change" else None
            if isinstance(snap, dict):
                return {str(k): list(v) if isinstance(v, list) else [None, None]
                        for k, v in snap.items()}
        return {}

    def observe(self, report: TokensReport) -> dict[str, Any] | None:
        """Record `report` if anything changed; returns the entry written (or None)."""
        now = {s.name: [s.state, s.fingerprint] for s in report.locations}
        if self._last is None:
            self._last = self._seed()
        if now == self._last:
            return None
        before = {k: v for k, v in self._last.items() if now.get(k) != v}
        after = {k: v for k, v in now.items() if self._last.get(k) != v}
        entry = {"what": "status_change", "before": before, "after": after,
                 "consistent": report.consistent, "snapshot": now}
        self._last = now
        try:
            append_audit(self.path, entry)
        except OSError:
            return None
        return entry
