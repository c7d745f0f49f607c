"""The dashboard: every panel on one screen, driven by the sources, never blocking on them."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Static

from genai_tui import __version__
from genai_tui.config import Config
from genai_tui.ui.containers import ContainersPanel
from genai_tui.ui.context import AppContext
from genai_tui.ui.screens.confirm import ConfirmScreen
from genai_tui.ui.screens.help import HelpScreen


def styles_path() -> Path:
    """The stylesheet, whether installed (genai_tui.styles) or run from a source tree."""
    try:
        from importlib.resources import files

        path = Path(str(files("genai_tui.styles") / "app.tcss"))
        if path.is_file():
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / "styles" / "app.tcss"


#: binding id -> (default keys, action, description); `[keys]` in the config overrides keys
KEYS: dict[str, tuple[str, str, str]] = {
    "quit": ("q", "quit", "Quit"),
    "help": ("question_mark", "help", "Help"),
    "restart": ("r", "restart", "Restart"),
    "restart_all": ("R", "restart_all", "Restart all"),
    "logs": ("l", "logs", "Logs"),
    "logs_all": ("a", "logs_all", "All logs"),
}
MUTATING = {"restart", "restart_all", "unify"}


class GenaiTui(App[int]):
    """genai-tui's Textual application."""

    TITLE = "genai-tui"
    CSS_PATH = str(styles_path())
    BINDINGS = [
        Binding(keys, action, description, id=f"genai.{bid}", show=bid != "logs_all")
        for bid, (keys, action, description) in KEYS.items()
    ]

    def __init__(self, config: Config, *, readonly: bool = False,
                 start_sources: bool = True) -> None:
        super().__init__()
        self.config = config
        self.readonly = readonly
        self.start_sources = start_sources
        self.ctx = AppContext(config=config, readonly=readonly, on_publish=self._on_publish)
        self.sub_title = ("READ-ONLY · " if readonly else "") + config.source
        keymap = {f"genai.{action}": keys for action, keys in config.keys.items()}
        if keymap:
            self.set_keymap(keymap)
        if os.environ.get("SSH_CONNECTION"):
            self.animation_level = "none"

    # -- layout
    def compose(self) -> ComposeResult:
        yield Static(self._title_text(), id="title")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield ContainersPanel(self.ctx, monitor=self.start_sources, id="containers")
        yield Footer()

    def _title_text(self) -> Text:
        text = Text.assemble(("genai-tui ", "bold"), (f"v{__version__}", "dim"), "  ",
                             (self.config.source, "dim"))
        if self.readonly:
            text.append("  READ-ONLY", style="bold black on yellow")
        return text

    def on_mount(self) -> None:
        self.query_one("#containers-table", DataTable).focus()
        if hasattr(signal, "SIGHUP"):
            try:
                self._loop_add_signal(signal.SIGHUP)
                self._loop_add_signal(signal.SIGTERM)
            except (RuntimeError, ValueError, NotImplementedError):
                pass

    def _loop_add_signal(self, sig: signal.Signals) -> None:
        import asyncio

        asyncio.get_running_loop().add_signal_handler(sig, self._on_signal)

    def _on_signal(self) -> None:
        self.exit(0)

    # -- data
    def _on_publish(self, part: str, value: Any) -> None:
        """A panel has new data: nothing else to do yet (findings derive from it later)."""

    # -- helpers
    @property
    def containers(self) -> ContainersPanel:
        return self.query_one(ContainersPanel)

    def _refuse_readonly(self, what: str) -> bool:
        if self.readonly:
            self.notify(f"read-only mode: {what} is disabled", title="Read-only",
                        severity="warning")
            return True
        return False

    # -- actions
    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.key_help(), readonly=self.readonly))

    def action_restart(self) -> None:
        if self._refuse_readonly("restart"):
            return
        service = self.containers.selected_service
        if service is None:
            return
        info = self.containers.info(service)
        name = info.container if info else service
        if info is not None and info.missing:
            self.notify(f"{service}: no container {name!r} to restart", severity="warning")
            return

        def done(yes: bool | None) -> None:
            if yes:
                self.containers.restart_services([service])

        self.push_screen(ConfirmScreen(f"Restart {service} (container {name})?",
                                       yes="Restart"), done)

    def action_restart_all(self) -> None:
        if self._refuse_readonly("restart"):
            return
        names = [s.name for s in self.config.services
                 if (i := self.containers.info(s.name)) is None or not i.missing]
        if not names:
            self.notify("no container to restart", severity="warning")
            return

        def done(yes: bool | None) -> None:
            if yes:
                self.containers.restart_services(names)

        self.push_screen(ConfirmScreen(
            f"Restart all {len(names)} stack services?\n" + ", ".join(names),
            yes="Restart all"), done)

    def action_logs(self) -> None:
        self.notify("log panel not available yet")

    def action_logs_all(self) -> None:
        self.notify("log panel not available yet")

    # -- help
    def key_help(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """(section, [(keys, description)]) from the bindings in force (keymap applied)."""
        return [("Dashboard", list(_describe(self, self._bindings.key_to_bindings.items())))]


def _describe(node: Any, items: Iterable[tuple[str, list[Binding]]]
              ) -> Iterable[tuple[str, str]]:
    by_action: dict[str, tuple[list[str], str]] = {}
    for key, bindings in items:
        for b in bindings:
            if not b.description:
                continue
            keys, desc = by_action.setdefault(b.action, ([], b.description))
            display = node.app.get_key_display(Binding(key, b.action))
            if display not in keys:
                keys.append(display)
    for keys, desc in by_action.values():
        yield " / ".join(keys), desc
