"""The findings view: every finding in full, grouped by kind (security first), each with
since when it holds, the files or containers it is about, Docker's own error and the last
error line of that service's log, and the fix as words and a key.

Its keys act on the finding chosen here — `r` restarts *that* finding's service, whatever
row the containers table has selected — through the app's own confirm and unify screens.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from genai_tui.model import ContainerInfo, Finding
from genai_tui.safety import one_line
from genai_tui.sources.logs import LogHub
from genai_tui.ui import stylesheets
from genai_tui.ui.findings import (
    FIX_KEYS,
    FIX_WORDS,
    KIND_TITLES,
    MUTATING_FIXES,
    STYLE,
    grouped,
    hint_key,
)
from genai_tui.ui.render import notify_plain

#: log line classes (sources.logtext) that count as "the last error line"
ERROR_KINDS = frozenset({"error", "traceback", "oom", "import_failed", "login_error"})
#: how far back the view looks for it (newest first)
ERROR_SCAN_LINES = 2000
#: the view's actions that change something (hidden and refused under --readonly)
MUTATING_ACTIONS = frozenset({"fix_restart", "fix_unify"})


class FindingActions(Protocol):
    """What the view asks the app to do (the app's own screens and engine calls)."""

    def confirm_restart(self, service: str) -> None: ...

    def action_unify(self) -> None: ...

    def show_logs(self, service: str) -> None: ...

    def confirm_unpause(self, service: str) -> None: ...

    def open_jobs(self, service: str) -> None: ...


def since_text(since: datetime | None, now: datetime) -> str:
    """"since 03:12, 4 min" (local time), or "" when unknown."""
    if since is None:
        return ""
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    seconds = max(0.0, (now - since).total_seconds())
    if seconds < 120:
        age = f"{seconds:.0f} s"
    elif seconds < 7200:
        age = f"{seconds / 60:.0f} min"
    elif seconds < 172800:
        age = f"{seconds / 3600:.0f} h"
    else:
        age = f"{seconds / 86400:.0f} days"
    local = since.astimezone()
    clock = local.strftime("%H:%M") if seconds < 86400 else local.strftime("%Y-%m-%d %H:%M")
    return f"since {clock}, {age}"


def last_error_line(hub: LogHub | None, service: str | None) -> str | None:
    """The newest error-class line the service's log follower holds (already sanitised
    and redacted), or None. Reads a follower the engine already runs; never starts one."""
    if hub is None or not service:
        return None
    follower = hub.followers.get(service)
    if follower is None:
        return None
    lines = follower.snapshot()
    for line in reversed(lines[-ERROR_SCAN_LINES:]):
        if line.kind in ERROR_KINDS:
            return line.text
    return None


def state_error(info: ContainerInfo | None) -> str | None:
    """Docker's own `State.Error` for the container (why it never started), when the
    source reports it."""
    return (info.state_error or None) if info is not None else None


def fix_words(f: Finding, keys: Mapping[str, str], readonly: bool) -> Text | None:
    """"r restart comfyui-qwen": the key (when one fixes it and it is allowed) and words."""
    if not f.fix:
        return None
    words = FIX_WORDS.get(f.fix, one_line(f.fix, 40).replace("_", " "))
    target = ""
    if f.fix in ("restart", "unpause", "read_logs") and f.service:
        target = " " + one_line(f.service, 64)
    key = hint_key(f, keys, readonly=readonly)
    text = Text("  ")
    if key:
        text.append(f"{one_line(key, 12)} ", style="bold cyan")
        text.append(words + target, style="cyan")
    else:
        text.append("fix: " + words + target, style="cyan")
        if readonly and f.fix in MUTATING_FIXES:
            text.append("  (read-only: not from here)", style="dim")
    return text


def entry_text(f: Finding, *, now: datetime, keys: Mapping[str, str], readonly: bool,
               info: ContainerInfo | None = None, log_line: str | None = None) -> Text:
    """One finding in full. Every piece from outside (names, messages, paths, log and
    Docker text) is one clean line appended as plain text, never markup."""
    icon, style = STYLE[f.severity]
    text = Text()
    text.append(f"{icon} ", style=style)
    text.append(one_line(f.message, 2000))
    meta = [one_line(f.service, 64)] if f.service else []
    since = since_text(f.since, now)
    if since:
        meta.append(since)
    if meta:
        text.append("\n  " + " · ".join(meta), style="dim")
    for path in f.paths:
        text.append("\n    " + one_line(path, 1000))
    error = state_error(info)
    if error:
        text.append("\n  Docker: ", style="bold")
        text.append(one_line(error, 500))
    if log_line:
        text.append("\n  last error in its log: ", style="bold")
        text.append(one_line(log_line, 500), style="red")
    fix = fix_words(f, keys, readonly)
    if fix is not None:
        text.append("\n")
        text.append_text(fix)
    return text


def finding_id(f: Finding) -> str:
    return f"{f.code}\x1f{f.service or ''}\x1f{f.message}"


class FindingsScreen(ModalScreen[None]):
    """Every finding, selectable; `r`/`u`/`l` act on the highlighted finding's service."""

    DEFAULT_CSS = stylesheets.read("findings_view.tcss")
    # ids as the app's own bindings: a `[keys]` remap (restart = "x") applies here too
    BINDINGS = [
        Binding("r", "fix_restart", "Restart it", id="genai.restart"),
        Binding("u", "fix_unify", "Unify tokens", id="genai.unify"),
        Binding("l", "fix_logs", "Its logs", id="genai.logs"),
        Binding("escape,q", "close", "Close"),
    ]

    def __init__(self, findings: list[Finding], actions: FindingActions, *,
                 keys: Mapping[str, str] | None = None, readonly: bool = False,
                 containers: Mapping[str, ContainerInfo] | None = None,
                 hub: LogHub | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        super().__init__()
        self.actions = actions
        self.keys = dict(keys if keys is not None else FIX_KEYS)
        self.readonly = readonly
        self.containers = dict(containers or {})
        self.hub = hub
        self.clock = clock or (lambda: datetime.now(UTC))
        self.findings: list[Finding] = []
        self._by_id: dict[str, Finding] = {}
        self._pending = findings
        self._ready = False
        if readonly:  # not shown in the footer; refused (with a word) if pressed
            bindings = self._bindings.key_to_bindings
            for key, items in bindings.items():
                bindings[key] = [replace(b, show=False) if b.action in MUTATING_ACTIONS
                                 else b for b in items]

    def compose(self) -> ComposeResult:
        with Vertical(id="findings-box"):
            yield Static(id="findings-title")
            yield OptionList(id="findings-list")
            yield Static(id="findings-hint")
        yield Footer()

    def on_mount(self) -> None:
        self._ready = True
        self.show(self._pending)
        self.query_one(OptionList).focus()

    # -- content
    def show(self, findings: list[Finding]) -> None:
        """(Re)draw the list, keeping the highlighted finding where it still holds."""
        if not self._ready:  # news before the first draw: drawn on mount
            self._pending = findings
            return
        ol = self.query_one(OptionList)
        current = self.selected
        keep = finding_id(current) if current is not None else None
        now = self.clock()
        options: list[Option | None] = []
        self.findings = []
        self._by_id = {}
        for kind, items in grouped(findings):
            if options:
                options.append(None)
            options.append(Option(Text(KIND_TITLES[kind], style="bold underline"),
                                  disabled=True))
            for f in items:
                fid = finding_id(f)
                if fid in self._by_id:
                    continue
                self._by_id[fid] = f
                self.findings.append(f)
                options.append(Option(entry_text(
                    f, now=now, keys=self.keys, readonly=self.readonly,
                    info=self.containers.get(f.service or ""),
                    log_line=last_error_line(self.hub, f.service)), id=fid))
        ol.clear_options()
        ol.add_options(options)
        n = len(self.findings)
        title = Text("Findings", style="bold")
        title.append(f" — {n} active" if n else " — none: all good", style="dim")
        self.query_one("#findings-title", Static).update(title)
        self.query_one("#findings-hint", Static).update(self._hint())
        if not self.findings:
            return
        target = keep if keep in self._by_id else finding_id(self.findings[0])
        ol.highlighted = ol.get_option_index(target)

    def _hint(self) -> Text:
        keys = [("↑↓", "choose a finding"), ("Enter", "do its fix"),
                (self._key("fix_logs"), "its log")]
        if not self.readonly:
            keys.insert(2, (self._key("fix_restart"), "restart its service"))
        text = Text()
        for i, (key, words) in enumerate(keys):
            if i:
                text.append("  ")
            text.append(one_line(key, 12), style="bold cyan")
            text.append(" " + words, style="dim")
        if self.readonly:
            text.append("  read-only: restart and unify are off", style="bold yellow")
        return text

    def _key(self, action: str) -> str:
        """The key in force for one of this screen's actions (keymap applied)."""
        bindings = self._bindings.copy()
        keymap = getattr(self.app, "_keymap", None)
        if keymap:
            bindings.apply_keymap(keymap)
        for key, items in bindings.key_to_bindings.items():
            if any(b.action == action for b in items):
                return self.app.get_key_display(Binding(key, action))
        return "?"

    @property
    def selected(self) -> Finding | None:
        try:
            ol = self.query_one(OptionList)
        except Exception:
            return None
        if ol.highlighted is None or ol.option_count == 0:
            return None
        option = ol.get_option_at_index(ol.highlighted)
        return self._by_id.get(option.id or "")

    # -- actions on the chosen finding
    def _service(self, what: str) -> str | None:
        f = self.selected
        if f is None:
            return None
        if not f.service:
            notify_plain(self.app, f"{what}: this finding is not about one service",
                         severity="warning")
            return None
        return f.service

    def _refused(self, what: str) -> bool:
        if self.readonly:
            notify_plain(self.app, f"read-only mode: {what} is disabled", title="Read-only",
                         severity="warning")
            return True
        return False

    def action_fix_restart(self) -> None:
        if self._refused("restart"):
            return
        service = self._service("restart")
        if service is not None:
            self.actions.confirm_restart(service)

    def action_fix_unify(self) -> None:
        if self._refused("unify"):
            return
        self.actions.action_unify()

    def action_fix_logs(self) -> None:
        service = self._service("logs")
        if service is not None:
            self.dismiss(None)
            self.actions.show_logs(service)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Enter: the finding's own fix (restart, unify or its logs)."""
        event.stop()
        f = self._by_id.get(event.option.id or "")
        if f is None:
            return
        action = {"restart": self.action_fix_restart, "unify": self.action_fix_unify,
                  "read_logs": self.action_fix_logs, "unpause": self._fix_unpause,
                  "interrupt": self._fix_in_jobs, "free_vram": self._fix_in_jobs,
                  }.get(f.fix or "")
        if action is not None:
            action()
        else:
            notify_plain(self.app, "no key fixes this one: " + FIX_WORDS.get(
                f.fix or "", "see the message"), timeout=4)

    def _fix_unpause(self) -> None:
        if self._refused("unpause"):
            return
        service = self._service("unpause")
        if service is not None:
            self.actions.confirm_unpause(service)

    def _fix_in_jobs(self) -> None:
        """A job to interrupt or VRAM to free: the jobs view of that service, whose keys
        do it (each asks first)."""
        service = self._service("jobs")
        if service is not None:
            self.dismiss(None)
            self.actions.open_jobs(service)

    def action_close(self) -> None:
        self.dismiss(None)
