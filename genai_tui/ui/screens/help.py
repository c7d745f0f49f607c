"""The help screen, generated from the bindings actually in force."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from genai_tui.safety import one_line
from genai_tui.ui import stylesheets


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = stylesheets.read("screens.tcss")
    BINDINGS = [Binding("escape,q,question_mark", "dismiss_help", "Close", show=False)]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]], *,
                 readonly: bool = False) -> None:
        super().__init__()
        self.sections = sections
        self.readonly = readonly

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for title, rows in self.sections:
            table.add_row(Text(title, style="bold underline"), "")
            for keys, description in rows:
                # keys come from the config's [keys]: text, not markup
                table.add_row(Text(one_line(keys, 60)), Text(one_line(description, 120)))
            table.add_row("", "")
        if self.readonly:
            table.add_row(Text("read-only", style="bold yellow"),
                          "restart and unify are off (--readonly): their keys are not listed")
        with VerticalScroll():
            yield Static(Text("genai-tui — keys", style="bold"))
            yield Static(table)
            yield Static(Text("Esc, q or ? closes this screen; ↑ ↓ PgUp PgDn scroll it.",
                              style="dim"))

    def action_dismiss_help(self) -> None:
        self.app.pop_screen()
