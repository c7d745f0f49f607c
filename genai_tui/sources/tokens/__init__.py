"""ComfyUI-Login credential: where it lives, whether the copies agree, and a safe unify.

The credential is a bcrypt hash that is also the API bearer token; the reference stack
keeps copies of it in several files (and the raw password in others). Its old
synchronizer rotated the credential on every run, corrupted `.env` lines, kept no
backups and never restarted the server. This package reads every configured copy
(`[tokens]` in the config), reports each one's state by fingerprint only, and rewrites
them from one source of truth: atomically, with backups, all-or-nothing, idempotently,
rotating only when asked, and with an audit trail.

- `read`: reading and parsing every format, the report, the bcrypt check cache;
- `server`: does the running server use the hash on disk; restart and re-probe;
- `plan`: what a unify would change (`plan_unify`), and the data types of a unify;
- `write`: carrying a plan out (`apply_plan`): lock, backups, atomic writes, rollback;
- `audit`: the audit trail (unify outcomes, status changes); it never imports `write`;
- `fsutil`: non-blocking, link-safe file primitives (atomic replace, private folders).

Imports go one way: plan and server on read; write on plan, read, audit and fsutil.
Everything callers used from the former single module is re-exported here, so
`from genai_tui.sources import tokens as tk; tk.read_report(...)` keeps working.
Nothing here imports Textual; the panel, the modal and the CLI are thin layers on top.
Secret values live only in private attributes (never in a repr, JSON, message or log).
"""

from __future__ import annotations

from typing import Any

from genai_tui.sources.tokens import fsutil
from genai_tui.sources.tokens.audit import (
    StatusAuditor,
    append_audit,
    read_audit,
    who,
)
from genai_tui.sources.tokens.plan import (
    Blocked,
    PlannedChange,
    UnifyPlan,
    UnifyResult,
    link_problem,
    plan_unify,
)
from genai_tui.sources.tokens.read import (
    _CHECK_CACHE,
    _PROBLEM_ORDER,
    BCRYPT_COST,
    DEFAULT_USER,
    FIXABLE,
    HASH_FORMATS,
    MAX_FILE_BYTES,
    UnifyError,
    canonical_hash,
    check_raw,
    is_valid_hash,
    new_credential,
    read_report,
    scrub,
    secret_values,
    status,
    value_counts,
)
from genai_tui.sources.tokens.server import (
    LOG_SCAN_BYTES,
    log_events_for_check,
    probe_after_restart,
    restart_services,
    server_status,
    token_fingerprint_from_log,
)
from genai_tui.sources.tokens.write import (
    LOCK_FILE,
    LOCK_WAIT,
    apply_plan,
    atomic_write,
    backup_folder,
    display_path,
    prune_backups,
    unify_lock,
)

__all__ = [
    # read
    "BCRYPT_COST", "DEFAULT_USER", "FIXABLE", "HASH_FORMATS", "MAX_FILE_BYTES", "UnifyError",
    "canonical_hash", "check_raw", "is_valid_hash", "new_credential", "read_report", "scrub",
    "secret_values", "status", "value_counts",
    # server
    "LOG_SCAN_BYTES", "log_events_for_check", "probe_after_restart", "restart_services",
    "server_status", "token_fingerprint_from_log",
    # plan
    "Blocked", "PlannedChange", "UnifyPlan", "UnifyResult", "link_problem", "plan_unify",
    # write
    "LOCK_FILE", "LOCK_WAIT", "apply_plan", "atomic_write", "backup_folder", "display_path",
    "prune_backups", "unify_lock",
    # audit
    "StatusAuditor", "append_audit", "read_audit", "who",
    # modules and internals tests and benchmarks reach for
    "fsutil", "bcrypt", "_CHECK_CACHE", "_PROBLEM_ORDER",
]


def __getattr__(name: str) -> Any:
    """`bcrypt` on first use (tests patch `<module>.bcrypt.checkpw`): the dashboard's first
    frame and `check` with cached verdicts never load it."""
    if name == "bcrypt":
        import bcrypt

        return bcrypt
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
