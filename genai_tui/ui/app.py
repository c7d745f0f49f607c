"""The dashboard: every panel on one screen, driven by the sources, never blocking on them."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingsMap
from textual.containers import Horizontal, VerticalScroll
from textual.css.query import NoMatches
from textual.events import Resize
from textual.keys import key_to_character
from textual.message import Message
from textual.screen import Screen
from textual.widget import MountError
from textual.widgets import DataTable, Footer, Static

from genai_tui import __version__
from genai_tui.config import Config
from genai_tui.engine.live import Change, Stack
from genai_tui.model import ContainerInfo, Finding
from genai_tui.safety import one_line
from genai_tui.ui import stylesheets
from genai_tui.ui.containers import ContainersPanel
from genai_tui.ui.findings import FIX_ACTIONS, FindingsBar
from genai_tui.ui.gpu import GpuPanel
from genai_tui.ui.host import HostPanel
from genai_tui.ui.jobs import JobsPanel
from genai_tui.ui.logs import LogPanel
from genai_tui.ui.probes import ProbesPanel
from genai_tui.ui.render import no_color_ansi_themes, notify_plain
from genai_tui.ui.screens.confirm import ConfirmScreen
from genai_tui.ui.screens.help import HelpScreen
from genai_tui.ui.tokens import TokensPanel

#: below this the dashboard says "terminal too small" instead of drawing a broken screen
MIN_WIDTH, MIN_HEIGHT = 60, 16
#: below either of these the compact layout is used (80×24 is compact)
COMPACT_WIDTH, COMPACT_HEIGHT = 110, 32
#: compact layout: which panel fills the lower area (digit keys)
VIEWS = ("logs", "probes", "tokens", "gpu", "host", "jobs")
#: how long Ctrl+R waits for every part's fresh round before naming the late ones
REFRESH_PATIENCE = 30.0


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
    "findings": ("exclamation_mark", "findings", "Findings"),
    "timeline": ("h", "timeline", "Timeline"),
    "jobs": ("j", "jobs", "Jobs"),
    "discover": ("i", "discover", "Discover services"),
    "view_logs": ("1", "view('logs')", "Show logs below"),
    "view_probes": ("2", "view('probes')", "Show probes below"),
    "view_tokens": ("3", "view('tokens')", "Show tokens below"),
    "view_gpu": ("4", "view('gpu')", "Show GPU below"),
    "view_host": ("5", "view('host')", "Show host below"),
    "view_jobs": ("6", "view('jobs')", "Show jobs below"),
}
SHOWN_IN_FOOTER = {"quit", "help", "restart", "logs", "probe", "unify", "findings"}
#: actions that change something (hidden from the footer, the palette, the help and the
#: findings hints by --readonly, and refused if pressed)
MUTATING = {"restart", "restart_all", "unify"}
#: what each key does, in words, for the help screen and the palette (by binding id; the
#: README's key table says the same, a test compares them); a binding without an entry
#: shows its description
HELP_WORDS = {
    "genai.quit": "quit",
    "command_palette": "command palette: every command with its key and what it acts on",
    "genai.help": "this help: every key in force",
    "genai.restart": "restart the selected container (asks first)",
    "genai.restart_all": "restart every stack service (asks first)",
    "genai.logs": "follow the selected service's log",
    "genai.logs_all": "follow every service's log, merged",
    "genai.probe": "probe every service now",
    "genai.unify": "unify the token copies (choose the source, see the plan, confirm)",
    "genai.refresh": "refresh every panel now (a toast says when all are current)",
    "genai.findings": "the findings view: every finding in full; its keys act on that finding",
    "genai.timeline": "the timeline: what happened to the stack, and when",
    "genai.view_logs": "compact layout: show the logs below the containers",
    "genai.view_probes": "compact layout: show the probes below the containers",
    "genai.view_tokens": "compact layout: show the tokens below the containers",
    "genai.view_gpu": "compact layout: show the GPU panel below the containers",
    "genai.view_host": "compact layout: show the host panel below the containers",
    "genai.jobs": "the jobs view: the selected ComfyUI's queue; its keys act on a job",
    "genai.discover": "discover the services on this host and propose a config (w writes it)",
    "genai.view_jobs": "compact layout: show the jobs panel below the containers",
    "logs.filter": "filter the log by regex (Enter applies)",
    "logs.next_match": "jump to the next match",
    "logs.prev_match": "jump to the previous match",
    "logs.clear_filter": "clear the filter",
    "logs.follow": "follow the end of the log, or pause",
    "logs.timestamps": "show or hide timestamps",
    "logs.wrap": "wrap long lines, or not",
    "logs.save": "save the view to a file under ~/.local/state/genai-tui/logs/",
}
#: the findings view's keys (screens/findings.py), in words
FINDINGS_WORDS = {
    "fix_restart": "restart that finding's service (asks first)",
    "fix_unify": "unify the token copies",
    "fix_logs": "follow that finding's service's log",
    "close": "close the view",
}
#: keys that are not bindings of ours: Textual's widgets and the mouse, in words
MOVING = [
    ("Enter", "on a container: follow its log; on the findings bar: open the findings view"),
    ("Tab / Shift+Tab", "move to the next / previous panel"),
    ("↑ / ↓", "move the selection; in the log panel, scroll a line"),
    ("PgUp / PgDn", "scroll a page"),
    ("Home / End", "go to the top / the end"),
    ("click", "on the findings bar: open the findings view"),
]
#: key names shown as words (the rest: the character, or the name)
KEY_NAMES = {"escape": "Esc", "enter": "Enter", "tab": "Tab", "space": "Space",
             "slash": "/", "backspace": "Backspace", "delete": "Del", "up": "↑",
             "down": "↓", "left": "←", "right": "→", "pageup": "PgUp", "pagedown": "PgDn",
             "home": "Home", "end": "End", "insert": "Ins"}


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


class MainScreen(Screen):
    """The dashboard's screen: the app's own keys come first among the active bindings,
    so the footer (which shows them in this order and cuts the rest at the terminal's
    width) keeps r, l, p, u at 80 columns even when a panel with keys of its own has the
    focus; the panel's keys are in its status line, the help and the palette."""

    @property
    def active_bindings(self) -> dict[str, Any]:
        active = super().active_bindings
        app = self.app
        return dict(sorted(active.items(), key=lambda kv: kv[1].node is not app))


class GenaiTui(App[int]):
    """genai-tui's Textual application."""

    TITLE = "genai-tui"
    #: every rule is in styles/*.tcss: the panels' files first, app.tcss (layout, the
    #: generic panel chrome) last, so it wins ties (see genai_tui/ui/stylesheets.py)
    CSS_PATH = [str(stylesheets.path(name)) for name in (
        "containers.tcss", "probes.tcss", "logs.tcss", "gpu.tcss", "host.tcss",
        "tokens.tcss", "jobs.tcss", "findings.tcss", "findings_view.tcss", "screens.tcss",
        "app.tcss")]
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
        if self.no_color:  # bad states (ANSI red) stay the most readable grey: render.py
            self.ansi_theme_dark, self.ansi_theme_light = no_color_ansi_themes()
        self.view = "logs"
        self._diagnose_pending = False
        self._discovery_offered = False
        self._last_start: dict[str, Any] = {}
        keymap = {f"{'genai' if action in KEYS else 'logs'}.{action}": keys
                  for action, keys in config.keys.items()}
        if keymap:
            self.set_keymap(keymap)
        if readonly:  # the mutating keys leave the footer; pressed, they say why not
            hide_bindings(self, {KEYS[b][1] for b in MUTATING})
        self._compact = False
        self._refresh_watch: Any = None
        #: "now" for the findings view's "since 03:12, 4 min" (fixed in snapshot tests)
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self._help_key: Any = None

    # -- layout
    def get_default_screen(self) -> Screen:
        return MainScreen(id="_default")

    def compose(self) -> ComposeResult:
        yield Static(self._title_text(), id="title")
        yield FindingsBar(id="findings")
        yield ContainersPanel(self.config, id="containers")
        yield ProbesPanel(self.config, id="probes")
        yield JobsPanel(self.config, id="jobs")
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
        bar = self.query_one(FindingsBar)
        bar.keys = self.fix_keys()
        bar.readonly = self.readonly
        bar.view_key = self.key_of("genai.findings")
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
        self.stack.deliver_early()  # a listing made while Textual was imported, if any
        # the panels paint first; the engine (probes, log streams, sqlite) starts after
        self.call_after_refresh(self._start_engine)
        if self.stack.live and not self.is_headless and _stdin_is_tty():
            self.set_interval(5.0, self._check_terminal)

    def _start_engine(self) -> None:
        """Start the engine worker and the history recorder once the first frame is out."""
        self.run_worker(self.stack.run(), name="engine", group="engine", exit_on_error=False)
        if self.stack.live and getattr(self, "history", None) is None:
            from genai_tui.engine.history import Recorder

            self.history = Recorder.attach(self.stack, face="dashboard", notify=lambda m: (
                notify_plain(self, m, title="History", severity="warning", timeout=8)))
            self.containers.since = self.history.since

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
        if compact != self._compact:
            self._compact = compact
            self.refresh_bindings()  # 1-5 are offered in the compact layout only
        self._apply_view()

    def _apply_view(self) -> None:
        for view in VIEWS:
            self.screen.set_class(self.view == view, f"-view-{view}")

    # -- data
    async def on_unmount(self) -> None:
        await self.stack.aclose()
        if getattr(self, "history", None) is not None:
            await asyncio.to_thread(self.history.close)

    def action_jobs(self) -> None:
        """The jobs view (`j`) of the selected service when it has a queue, else the first
        ComfyUI's; its keys interrupt, cancel, clear and free (each asks first)."""
        from genai_tui.ui.screens.jobs import JobsScreen

        if any(isinstance(s, JobsScreen) for s in self.screen_stack):
            return
        report = self.stack.snapshot.jobs
        if report is None or not report.services:
            notify_plain(self, "no ComfyUI queue known (no ComfyUI service, or [jobs] off)",
                         title="Jobs", severity="warning")
            return
        self.push_screen(JobsScreen(report, self._selected_service(), readonly=self.readonly))

    def action_discover(self) -> None:
        """`i`: what runs on this engine, as a proposed config (w writes it)."""
        from genai_tui.ui.screens.discover import DiscoverScreen

        if any(isinstance(s, DiscoverScreen) for s in self.screen_stack):
            return
        from genai_tui.sources import discover

        host = self.config.docker.host
        target = self.config.path or Path.cwd() / "genai-tui.toml"
        self.push_screen(DiscoverScreen(target, readonly=self.readonly,
                                        find=lambda: discover.propose(host)))

    def _offer_discovery(self, containers: list[ContainerInfo]) -> None:
        """With no config and none of the reference stack here, say how to get one (once)."""
        if self._discovery_offered or self.config.path is not None:
            return
        from genai_tui.sources import discover

        hint = discover.offer_discovery(self.config, containers)
        if hint:
            self._discovery_offered = True
            notify_plain(self, hint + " (or try `genai-tui demo`); meanwhile the reference "
                         "stack's defaults are watched", title="No config", timeout=30)

    def open_jobs(self, service: str) -> None:
        """The jobs view of one service (a job finding's Enter)."""
        from genai_tui.ui.screens.jobs import JobsScreen

        report = self.stack.snapshot.jobs
        if report is None or report.get(service) is None:
            notify_plain(self, f"no queue known for {one_line(service, 64)}", title="Jobs",
                         severity="warning")
            return
        self.push_screen(JobsScreen(report, service, readonly=self.readonly))

    def confirm_unpause(self, service: str) -> None:
        """Ask, then `docker unpause` it: its jobs and loaded models live on (a restart
        would lose both)."""
        if self._refuse_readonly("unpause"):
            return
        shown = one_line(service, 64)

        def finished(name: str, ok: bool, detail: str) -> None:
            notify_plain(self, f"{one_line(name, 64)}: "
                         + ("unpaused" if ok else one_line(detail, 300)),
                         title="Unpause", severity="information" if ok else "error")

        def done(yes: bool | None) -> None:
            if yes:
                self.stack.unpause([service], finished)

        self.push_screen(ConfirmScreen(f"Unpause {shown}? Its jobs and models live on.",
                                       yes="Unpause"), done)

    def _selected_service(self) -> str | None:
        try:
            return self.screen_stack[0].query_one(ContainersPanel).selected_service
        except (NoMatches, IndexError):
            return None

    def action_timeline(self) -> None:
        """The event history (`h`): newest first, filters; Enter shows that log then."""
        from genai_tui.ui.screens.timeline import TimelineScreen, show_log_at

        rec = getattr(self, "history", None)
        self.push_screen(TimelineScreen(
            rec.store if rec is not None else None, [s.name for s in self.config.services],
            show_log=lambda service, ts: show_log_at(self, service, ts),
            reason=None if rec is not None else "no live engine"))

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
                self._offer_discovery(snap.containers)
                # a container that starts or goes away changes what the probe and token
                # rows mean ("starting", "container removed"): at once, not next round
                self.query_one(ProbesPanel).containers_changed(snap.containers)
                if snap.tokens is not None:
                    self.query_one(TokensPanel).apply(snap.tokens)
            elif part == "probes":
                panel = self.query_one(ProbesPanel)
                panel.apply(snap.probes)
                # "probing…" is for a round asked for (p, refresh): flipping it for every
                # scheduled round repainted the whole panel twice a round
                if not self.stack.in_flight("probes"):
                    panel.set_probing(False)
            elif part == "tokens" and snap.tokens is not None:
                self.query_one(TokensPanel).apply(snap.tokens)
            elif part == "gpu" and snap.gpu is not None:
                self.query_one(GpuPanel).show(snap.gpu)
            elif part == "jobs" and snap.jobs is not None:
                from genai_tui.ui.screens.jobs import JobsScreen

                self.screen_stack[0].query_one(JobsPanel).show(snap.jobs)
                for screen in self.screen_stack:
                    if isinstance(screen, JobsScreen):
                        screen.show(snap.jobs)
            elif part == "host" and snap.host is not None:
                self.query_one(HostPanel).show(snap.host)
            elif part == "findings":
                from genai_tui.ui.screens.findings import FindingsScreen

                findings = self._with_since(snap.findings)
                for screen in self.screen_stack:
                    if isinstance(screen, FindingsScreen):
                        screen.show(findings)
                bar = self.screen_stack[0].query_one(FindingsBar)
                bar.max_lines = 2 if self._compact else 5
                bar.show(findings, len(self.config.services))
        except (NoMatches, MountError, IndexError):
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
        # kept while the keys it lists stay the same (a fresh screen each time costs a
        # visible delay over SSH); rebuilt when they change (1-5 come with the compact
        # layout)
        sections = self.key_help()
        if self._help_key != sections and self.is_screen_installed("help"):
            self.uninstall_screen("help")
        if not self.is_screen_installed("help"):
            self.install_screen(HelpScreen(sections, readonly=self.readonly), "help")
            self._help_key = sections
        self.push_screen("help")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """1-5 pick the panel below the containers, which only the compact layout has: in
        the wide layout they are not offered (not in the help or palette, and inert)."""
        if action == "view":
            return self._compact
        return True

    def action_restart(self) -> None:
        if self._refuse_readonly("restart"):
            return
        service = self.containers.selected_service
        if service is not None:
            self.confirm_restart(service)

    def confirm_restart(self, service: str) -> None:
        """Ask, then restart this service (the containers table's row or a finding's)."""
        if self._refuse_readonly("restart"):
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
        from genai_tui.ui.screens.jobs import jobs_lost

        lost = jobs_lost(self.stack.snapshot.jobs, [service])
        self.push_screen(ConfirmScreen(f"Restart {shown} ({what} {name})?"
                                       + (f"\n{lost}" if lost else ""), yes="Restart"), done)

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

        from genai_tui.ui.screens.jobs import jobs_lost

        lost = jobs_lost(self.stack.snapshot.jobs, names)
        self.push_screen(ConfirmScreen(
            f"Restart all {len(names)} stack services?\n"
            + ", ".join(one_line(n, 64) for n in names) + (f"\n{lost}" if lost else ""),
            yes="Restart all"), done)

    def action_logs(self) -> None:
        service = self.containers.selected_service
        if service is not None:
            self.show_logs(service)

    def show_logs(self, service: str) -> None:
        """Follow one service's log and bring the log panel up (compact: the view below)."""
        panel = self.screen_stack[0].query_one(LogPanel)
        panel.follow_service(service)
        self.view = "logs"
        self._apply_view()
        panel.view.focus()

    def action_findings(self) -> None:
        """The findings view over the dashboard (`!`, or Enter/click on the bar)."""
        from genai_tui.ui.screens.findings import FindingsScreen

        if any(isinstance(s, FindingsScreen) for s in self.screen_stack):
            return
        snap = self.stack.snapshot
        self.push_screen(FindingsScreen(
            self._with_since(snap.findings), self, keys=self.fix_keys(),
            readonly=self.readonly,
            containers={c.service: c for c in snap.containers},
            hub=self.stack.logs if "logs" in self.stack.parts else None, clock=self.clock))

    def _with_since(self, findings: Iterable[Finding]) -> list[Finding]:
        """`since` from the history store where it knows earlier ("restart loop since
        02:51", also after the dashboard restarted); as the engine saw it otherwise."""
        rec = getattr(self, "history", None)
        return rec.with_since(findings) if rec is not None else list(findings)

    def on_findings_bar_open(self, _message: FindingsBar.Open) -> None:
        self.action_findings()

    def fix_keys(self) -> dict[str, str]:
        """Finding fix -> the key in force for it (the bar's hints, the view's words)."""
        out = {}
        for fix, bid in FIX_ACTIONS.items():
            key = self.key_of(f"genai.{bid}")
            if key:
                out[fix] = key
        return out

    def key_of(self, binding_id: str) -> str | None:
        """The first key in force for one of our bindings (keymap applied), as shown."""
        for key, bindings in self._keyed(self):
            if any(b.id == binding_id for b in bindings):
                return key_label(key)
        return None

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
        """Poll every part now; one toast now, one when each part has had a fresh round
        (or a warning naming the parts that did not answer in time)."""
        chains = {"containers": None, "logs": "log_events"}
        parts = [chains.get(p, p) for p in sorted(self.stack.parts)]
        parts = [p for p in parts if p is not None]
        need = {p: self.stack.rounds(p) + (2 if self.stack.in_flight(p) else 1)
                for p in parts}
        self.stack.refresh()
        if "probes" in need:
            self.screen_stack[0].query_one(ProbesPanel).set_probing(True)
        self.notify("refreshing every panel now", title="Refresh", timeout=3)
        if self._refresh_watch is not None:
            self._refresh_watch.stop()
        started = time.monotonic()

        def check() -> None:
            left = [p for p, n in need.items() if self.stack.rounds(p) < n]
            if left and time.monotonic() - started < REFRESH_PATIENCE:
                return
            if self._refresh_watch is not None:
                self._refresh_watch.stop()
                self._refresh_watch = None
            if left:
                notify_plain(self, "still waiting for: " + ", ".join(left), title="Refresh",
                             severity="warning")
            else:
                self.notify("every panel is current", title="Refresh", timeout=3)

        self._refresh_watch = self.set_interval(0.1, check)

    def action_view(self, view: str) -> None:
        if view in VIEWS and self._compact:
            self.view = view
            self._apply_view()

    # -- palette and help
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Our commands first, each with its key in force and what it acts on; Textual's
        own entries that duplicate ours ("Quit", and "Keys", a second help) are left out."""
        selected = self._selected_name()
        for bid, keys, words in self._offered(self):
            action = KEYS[bid.removeprefix("genai.")][1] if bid.startswith("genai.") else ""
            if not action:
                continue
            target = words
            if bid == "genai.restart":
                target = f"restart {selected or 'the selected container'} (the selected " \
                         "row; asks first)"
            elif bid == "genai.logs":
                target = f"follow the log of {selected or 'the selected service'}"
            description = KEYS[bid.removeprefix("genai.")][2]
            yield SystemCommand(description, f"{keys} · {target}", _runner(self, action))
        from genai_tui.ui.screens.jobs import jobs_commands

        yield from jobs_commands(self)
        logs = self.screen_stack[0].query(LogPanel) if self.screen_stack else None
        if logs:
            panel = logs.first()
            descriptions = {b.id: b.description for b in LogPanel.BINDINGS
                            if isinstance(b, Binding)}
            for bid, keys, words in self._offered(panel):
                binding = next((b for b in LogPanel.BINDINGS
                                if isinstance(b, Binding) and b.id == bid), None)
                if binding is None:
                    continue
                yield SystemCommand(f"Logs: {descriptions.get(bid) or words}",
                                    f"{keys} · log panel: {words}",
                                    _runner(panel, binding.action))
        for command in super().get_system_commands(screen):
            if command.title not in ("Quit", "Keys"):
                yield command

    def _selected_name(self) -> str | None:
        service = self._selected_service()
        return one_line(service, 64) if service else None

    def _offered(self, node: Any) -> list[tuple[str, str, str]]:
        """(binding id, keys as shown, words) of the node's bindings that are offered now:
        keymap applied; not the mutating ones under --readonly; 1-5 in compact only."""
        # action -> (keys as (ours first, label), ids, description)
        rows: dict[str, tuple[list[tuple[bool, str]], list[str], str]] = {}
        for key, bindings in self._keyed(node):
            for b in bindings:
                if not b.description:
                    continue
                name = (b.id or "").removeprefix("genai.")
                if self.readonly and (name in MUTATING or b.action in MUTATING):
                    continue
                if b.action.startswith("view(") and not self._compact:
                    continue
                keys, ids, _d = rows.setdefault(b.action, ([], [], b.description))
                if b.id and b.id not in ids:
                    ids.append(b.id)
                label = (not b.id and b.action == "quit", key_label(key))
                if label[1] not in (k for _o, k in keys):
                    keys.append(label)
        out = []
        for action, (keys, ids, description) in rows.items():
            bid = ids[0] if ids else action
            words = HELP_WORDS.get(bid) or HELP_WORDS.get(action) or (
                description[:1].lower() + description[1:])
            # our keys first, Textual's own quit key (Ctrl+Q) after
            shown = [k for _late, k in sorted(keys, key=lambda item: item[0])]
            out.append((bid, " / ".join(shown), words))
        return out

    def key_help(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """(section, [(keys, words)]) from the bindings in force (keymap applied), the
        findings view's keys, then the keys Textual's widgets and the mouse give."""
        sections = [("Dashboard", [(k, w) for _b, k, w in self._offered(self)])]
        logs = self.screen_stack[0].query(LogPanel) if self.screen_stack else None
        if logs:
            sections.append(("Log panel (when focused)",
                             [(k, w) for _b, k, w in self._offered(logs.first())]))
        from genai_tui.ui.screens.findings import FindingsScreen

        view_key = self.key_of("genai.findings") or "!"
        rows: dict[str, list[str]] = {}
        view_bindings = BindingsMap(FindingsScreen.BINDINGS)
        if self._keymap:
            view_bindings.apply_keymap(self._keymap)
        for key, bindings in view_bindings.key_to_bindings.items():
            for b in bindings:
                if b.action in FINDINGS_WORDS and not (
                        self.readonly and b.action in ("fix_restart", "fix_unify")):
                    rows.setdefault(b.action, []).append(key_label(key))
        view_rows = [(" / ".join(rows[a]), FINDINGS_WORDS[a]) for a in FINDINGS_WORDS
                     if a in rows]
        view_rows.insert(-1, ("Enter", "that finding's own fix (restart, unify or its log)"))
        sections.append((f"Findings view ({view_key})", view_rows))
        from genai_tui.ui.screens.jobs import JOBS_WORDS, MUTATING_ACTIONS, JobsScreen

        job_keys: dict[str, list[str]] = {}
        for key, bindings in BindingsMap(JobsScreen.BINDINGS).key_to_bindings.items():
            for b in bindings:
                if b.action in JOBS_WORDS and not (self.readonly
                                                   and b.action in MUTATING_ACTIONS):
                    job_keys.setdefault(b.action, []).append(key_label(key))
        sections.append((f"Jobs view ({self.key_of('genai.jobs') or 'j'})",
                         [(" / ".join(job_keys[a]), JOBS_WORDS[a]) for a in JOBS_WORDS
                          if a in job_keys]))
        sections.append(("Moving around", list(MOVING)))
        return sections

    def _keyed(self, node: Any) -> Iterable[tuple[str, list[Binding]]]:
        bindings = node._bindings.copy()
        if self._keymap:
            bindings.apply_keymap(self._keymap)
        return bindings.key_to_bindings.items()


def key_label(key: str) -> str:
    """A key as the help, the README and the bar write it: `Ctrl+R`, `Esc`, `?`, `R`."""
    *mods, base = key.split("+") if key != "+" else ["+"]
    name = KEY_NAMES.get(base)
    if name is None:
        if len(base) > 1 and base[0] == "f" and base[1:].isdigit():
            name = base.upper()
        else:
            char = key_to_character(base) if len(base) > 1 else base
            name = char if char and char.isprintable() else base
            if mods and len(name) == 1:
                name = name.upper()
    return "+".join([m.capitalize() for m in mods] + [name])


def hide_bindings(node: Any, actions: set[str]) -> None:
    """Take these actions' keys out of the footer (they still run, and refuse with a word
    under --readonly, rather than doing nothing silently)."""
    table = node._bindings.key_to_bindings
    for key, bindings in table.items():
        table[key] = [replace(b, show=False) if b.action in actions else b for b in bindings]


def _stdin_is_tty() -> bool:
    try:
        return os.isatty(sys.__stdin__.fileno())
    except (OSError, ValueError, AttributeError):
        return False


def _runner(node: Any, action: str):
    async def run() -> None:
        await node.run_action(action)

    return run
