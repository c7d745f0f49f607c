"""The dashboard: every panel on one screen, driven by the sources, never blocking on them."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.css.query import NoMatches
from textual.events import Resize
from textual.message import Message
from textual.screen import Screen
from textual.widget import MountError
from textual.widgets import DataTable, Footer, Static

from genai_tui import __version__
from genai_tui.config import Config
from genai_tui.engine.live import Change, Stack
from genai_tui.safety import one_line
from genai_tui.ui import stylesheets
from genai_tui.ui.containers import ContainersPanel
from genai_tui.ui.findings import FindingsBar
from genai_tui.ui.gpu import GpuPanel
from genai_tui.ui.host import HostPanel
from genai_tui.ui.logs import LogPanel
from genai_tui.ui.probes import ProbesPanel
from genai_tui.ui.render import notify_plain
from genai_tui.ui.screens.confirm import ConfirmScreen
from genai_tui.ui.screens.help import HelpScreen
from genai_tui.ui.tokens import TokensPanel

#: below this the dashboard says "terminal too small" instead of drawing a broken screen
MIN_WIDTH, MIN_HEIGHT = 60, 16
#: below either of these the compact layout is used (80×24 is compact)
COMPACT_WIDTH, COMPACT_HEIGHT = 110, 32
#: compact layout: which panel fills the lower area (digit keys)
VIEWS = ("logs", "probes", "tokens", "gpu", "host")


#: binding id -> (default keys, action, description); `[keys]` in the config overrides keys
KEYS: dict[str, tuple[str, str, str]] = {
    "quit": ("q", "quit", "Quit"),
    "help": ("question_mark", "help", "Help"),
    "restart": ("r", "restart", "Restart"),
    "restart_all": ("R", "restart_all", "Restart all"),
    "logs": ("l", "logs", "Logs"),
    "logs_all": ("a", "logs_all", "All logs"),
    "probe": ("p", "probe", "Probe now"),
    "unify": ("u", "unify", "Unify tokens"),
    "refresh": ("ctrl+r", "refresh", "Refresh all"),
    "view_logs": ("1", "view('logs')", "Compact: logs"),
    "view_probes": ("2", "view('probes')", "Compact: probes"),
    "view_tokens": ("3", "view('tokens')", "Compact: tokens"),
    "view_gpu": ("4", "view('gpu')", "Compact: GPU"),
    "view_host": ("5", "view('host')", "Compact: host"),
}
SHOWN_IN_FOOTER = {"quit", "help", "restart", "logs", "probe", "unify"}
#: actions that change something (disabled by --readonly)
MUTATING = {"restart", "restart_all", "unify"}


class StackChanged(Message):
    """One part of the engine's snapshot changed; a newer one for the same part replaces
    a queued older one (the panel draws the latest state once)."""

    def __init__(self, part: str) -> None:
        super().__init__()
        self.part = part

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StackChanged) and message.part == self.part


class QuietFooter(Footer):
    """Textual's Footer rebuilds all of its key widgets whenever its screen's bindings
    may have changed (each focus change, each modal closed: ~0.1 s of CPU); this one only
    when the keys it would show did change."""

    _shown: tuple[Any, ...] | None = None

    def bindings_changed(self, screen: Screen) -> None:
        if self.is_attached and screen is self.screen and screen.app.app_focus:
            shown = tuple((key, b.binding, b.enabled, b.tooltip)
                          for key, b in screen.active_bindings.items())
            if shown == self._shown:
                return
            self._shown = shown
        super().bindings_changed(screen)


class GenaiTui(App[int]):
    """genai-tui's Textual application."""

    TITLE = "genai-tui"
    #: every rule is in styles/*.tcss: the panels' files first, app.tcss (layout, the
    #: generic panel chrome) last, so it wins ties (see genai_tui/ui/stylesheets.py)
    CSS_PATH = [str(stylesheets.path(name)) for name in (
        "containers.tcss", "probes.tcss", "logs.tcss", "gpu.tcss", "host.tcss",
        "tokens.tcss", "findings.tcss", "screens.tcss", "app.tcss")]
    BINDINGS = [
        Binding(keys, action, description, id=f"genai.{bid}", show=bid in SHOWN_IN_FOOTER)
        for bid, (keys, action, description) in KEYS.items()
    ] + [
        # an admin's reflex over SSH: Ctrl+C quits (Textual's default only explains how)
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True, system=True),
    ]

    def __init__(self, config: Config, *, readonly: bool = False,
                 start_sources: bool = True, stack: Stack | None = None) -> None:
        super().__init__()
        self.config = config
        self.readonly = readonly
        #: the headless engine; panels only render what it publishes
        self.stack = stack if stack is not None else Stack(config, monitors=start_sources)
        self.sub_title = ("READ-ONLY · " if readonly else "") + one_line(config.source, 200)
        self.ssh = bool(os.environ.get("SSH_CONNECTION"))
        if self.ssh:
            self.animation_level = "none"
        self.view = "logs"
        self._diagnose_pending = False
        self._last_start: dict[str, Any] = {}
        keymap = {f"{'genai' if action in KEYS else 'logs'}.{action}": keys
                  for action, keys in config.keys.items()}
        if keymap:
            self.set_keymap(keymap)

    # -- layout
    def compose(self) -> ComposeResult:
        yield Static(self._title_text(), id="title")
        yield FindingsBar(id="findings")
        yield ContainersPanel(self.config, id="containers")
        yield ProbesPanel(self.config, id="probes")
        with Horizontal(id="bottom"):
            yield LogPanel(self.config, id="logs",
                           hub=self.stack.logs if "logs" in self.stack.parts else None)
            with VerticalScroll(id="side"):
                yield GpuPanel(self.config, id="gpu")
                yield HostPanel(self.config, id="host")
                yield TokensPanel(self.config, readonly=self.readonly, id="tokens")
        yield Static(id="too-small")
        yield QuietFooter()

    def _title_text(self) -> Text:
        text = Text.assemble(("genai-tui ", "bold"), (f"v{__version__}", "dim"), "  ",
                             (one_line(self.config.source, 200), "dim"))
        if self.readonly:
            text.append("  READ-ONLY", style="bold black on yellow")
        if self.ssh:
            text.append("  ssh", style="dim")
        return text

    def on_mount(self) -> None:
        self.query_one("#containers-table", DataTable).focus()
        self._apply_size(self.size.width, self.size.height)
        loop = asyncio.get_running_loop()
        for sig, hangup in ((getattr(signal, "SIGHUP", None), True), (signal.SIGTERM, False)):
            if sig is None:
                continue
            try:
                loop.add_signal_handler(sig, self._on_signal, hangup)
            except (RuntimeError, ValueError, NotImplementedError):
                pass
        self.stack.subscribe(self._on_change)
        self.run_worker(self.stack.run(), name="engine", group="engine", exit_on_error=False)
        if self.stack.live and not self.is_headless and _stdin_is_tty():
            self.set_interval(5.0, self._check_terminal)

    def _on_signal(self, hangup: bool) -> None:
        """SIGHUP (SSH link dropped) and SIGTERM end the app cleanly, threads included."""
        if hangup:
            self._terminal_gone()
        self._exit_soon()

    def _terminal_gone(self) -> None:
        """Nothing can be drawn any more: drop output instead of blocking on a dead TTY."""
        driver = self._driver
        if driver is not None:
            driver.write = lambda data: None  # type: ignore[method-assign]
            driver.flush = lambda: None  # type: ignore[method-assign]

    def _exit_soon(self) -> None:
        self.exit(0)

        def watchdog() -> None:  # last resort: never outlive a closed session
            time.sleep(5.0)
            os._exit(0)

        threading.Thread(target=watchdog, name="exit-watchdog", daemon=True).start()

    def _check_terminal(self) -> None:
        """A dropped SSH session can leave us without SIGHUP: stdin is then no TTY."""
        if not _stdin_is_tty():
            self._terminal_gone()
            self._exit_soon()

    def on_resize(self, event: Resize) -> None:
        self._apply_size(event.size.width, event.size.height)

    def _apply_size(self, width: int, height: int) -> None:
        screen = self.screen
        too_small = width < MIN_WIDTH or height < MIN_HEIGHT
        screen.set_class(too_small, "-too-small")
        if too_small:
            self.query_one("#too-small", Static).update(Text(
                f"Terminal too small: {width}×{height}.\n"
                f"genai-tui needs at least {MIN_WIDTH}×{MIN_HEIGHT} "
                f"(compact below {COMPACT_WIDTH}×{COMPACT_HEIGHT}).\n\nq quits.",
                justify="center"))
        compact = width < COMPACT_WIDTH or height < COMPACT_HEIGHT
        screen.set_class(compact, "-compact")
        self._apply_view()

    def _apply_view(self) -> None:
        for view in VIEWS:
            self.screen.set_class(self.view == view, f"-view-{view}")

    # -- data
    async def on_unmount(self) -> None:
        await self.stack.aclose()

    def _on_change(self, change: Change) -> None:
        """The engine's news (on our loop): queued as a message, so a burst of changes
        to one part is drawn once."""
        self.post_message(StackChanged(change.part))

    def on_stack_changed(self, message: StackChanged) -> None:
        snap = self.stack.snapshot
        part = message.part
        try:
            if part in ("containers", "docker"):
                self.containers.apply(snap.docker if part == "docker" else None,
                                      snap.containers, backoff=self.stack.docker_backoff)
            elif part == "probes":
                panel = self.query_one(ProbesPanel)
                panel.apply(snap.probes)
                panel.set_probing(self.stack.in_flight("probes"))
            elif part == "tokens" and snap.tokens is not None:
                self.query_one(TokensPanel).apply(snap.tokens)
            elif part == "gpu" and snap.gpu is not None:
                self.query_one(GpuPanel).show(snap.gpu)
            elif part == "host" and snap.host is not None:
                self.query_one(HostPanel).show(snap.host)
            elif part == "findings":
                bar = self.query_one(FindingsBar)
                bar.max_lines = 2 if self.screen.has_class("-compact") else 5
                bar.show(snap.findings, len(self.config.services))
        except (NoMatches, MountError):
            return  # shutting down (a panel already detached), or a screen without it

    # -- helpers
    @property
    def containers(self) -> ContainersPanel:
        return self.query_one(ContainersPanel)

    def _refuse_readonly(self, what: str) -> bool:
        if self.readonly:
            notify_plain(self, f"read-only mode: {what} is disabled", title="Read-only",
                         severity="warning")
            return True
        return False

    # -- actions
    def action_help(self) -> None:
        # built once: the bindings do not change while running, and a fresh screen each
        # time costs a visible delay over SSH
        if not self.is_screen_installed("help"):
            self.install_screen(HelpScreen(self.key_help(), readonly=self.readonly), "help")
        self.push_screen("help")

    def action_restart(self) -> None:
        if self._refuse_readonly("restart"):
            return
        service = self.containers.selected_service
        if service is None:
            return
        info = self.containers.info(service)
        # names from the config and Docker: one clean line each before any text quotes them
        name = one_line(info.container if info else service, 64)
        shown = one_line(service, 64)
        if info is not None and info.missing:
            notify_plain(self, f"{shown}: no container '{name}' to restart",
                         severity="warning")
            return

        def done(yes: bool | None) -> None:
            if yes:
                self.restart([service])

        what = "process" if info is not None and info.runtime == "process" else "container"
        self.push_screen(ConfirmScreen(f"Restart {shown} ({what} {name})?",
                                       yes="Restart"), done)

    def action_restart_all(self) -> None:
        if self._refuse_readonly("restart"):
            return
        names = [s.name for s in self.config.services
                 if (i := self.containers.info(s.name)) is None or not i.missing]
        if not names:
            notify_plain(self, "no container to restart", severity="warning")
            return

        def done(yes: bool | None) -> None:
            if yes:
                self.restart(names)

        self.push_screen(ConfirmScreen(
            f"Restart all {len(names)} stack services?\n"
            + ", ".join(one_line(n, 64) for n in names), yes="Restart all"), done)

    def action_logs(self) -> None:
        service = self.containers.selected_service
        if service is not None:
            panel = self.query_one(LogPanel)
            panel.follow_service(service)
            self.view = "logs"
            self._apply_view()
            panel.view.focus()

    def action_logs_all(self) -> None:
        self.query_one(LogPanel).follow_all()
        self.view = "logs"
        self._apply_view()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "containers-table":
            self.action_logs()

    def restart(self, names: list[str]) -> None:
        """Restart through the engine; each outcome is a toast."""
        def done(name: str, ok: bool, detail: str) -> None:
            if ok:
                notify_plain(self, f"{name}: restarted", title="Restart")
            else:
                notify_plain(self, f"{name}: restart failed: {detail}", title="Restart",
                             severity="error")

        self.stack.restart(names, done=done)

    def action_probe(self) -> None:
        self.stack.probe_now()
        self.query_one(ProbesPanel).set_probing(True)
        notify_plain(self, "probing every service now", timeout=2)

    def action_unify(self) -> None:
        if self._refuse_readonly("unify"):
            return
        from genai_tui.ui.screens.unify import UnifyScreen

        self.push_screen(UnifyScreen(self.stack, readonly=self.readonly),
                         lambda _: self.stack.refresh("tokens"))

    def action_refresh(self) -> None:
        self.stack.refresh()
        self.notify("refreshing every panel now", timeout=2)

    def action_view(self, view: str) -> None:
        if view in VIEWS:
            self.view = view
            self._apply_view()

    # -- palette and help
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for bid, (_keys, action, description) in KEYS.items():
            if bid in ("quit", "help") or (bid in MUTATING and self.readonly):
                continue
            yield SystemCommand(description, f"genai-tui: {description.lower()}",
                                _runner(self, action))
        logs = self.query(LogPanel)
        if logs:
            for binding in LogPanel.BINDINGS:
                if isinstance(binding, Binding) and binding.description:
                    yield SystemCommand(f"Logs: {binding.description}",
                                        "log panel", _runner(logs.first(), binding.action))

    def key_help(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """(section, [(keys, description)]) from the bindings in force (keymap applied)."""
        sections = [("Dashboard", list(_describe(self, self._keyed(self))))]
        logs = self.query(LogPanel)
        if logs:
            sections.append(("Log panel (when focused)",
                             list(_describe(self, self._keyed(logs.first())))))
        return sections

    def _keyed(self, node: Any) -> Iterable[tuple[str, list[Binding]]]:
        bindings = node._bindings.copy()
        if self._keymap:
            bindings.apply_keymap(self._keymap)
        return bindings.key_to_bindings.items()


def _stdin_is_tty() -> bool:
    try:
        return os.isatty(sys.__stdin__.fileno())
    except (OSError, ValueError, AttributeError):
        return False


def _runner(node: Any, action: str):
    async def run() -> None:
        await node.run_action(action)

    return run


def _describe(app: App[Any], items: Iterable[tuple[str, list[Binding]]]
              ) -> Iterable[tuple[str, str]]:
    by_action: dict[str, tuple[list[str], str]] = {}
    for key, bindings in items:
        for b in bindings:
            if not b.description:
                continue
            keys, _desc = by_action.setdefault(b.action, ([], b.description))
            display = app.get_key_display(Binding(key, b.action))
            if display not in keys:
                keys.append(display)
    for keys, desc in by_action.values():
        yield " / ".join(keys), desc
