"""A yes/no confirmation for destructive keys (restart, unify)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from genai_tui.safety import one_line
from genai_tui.ui import stylesheets


class ConfirmScreen(ModalScreen[bool]):
    DEFAULT_CSS = stylesheets.read("screens.tcss")
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", show=False),
        Binding("n,escape", "answer(False)", "No", show=False),
    ]

    def __init__(self, question: str, *, yes: str = "Yes", no: str = "Cancel") -> None:
        super().__init__()
        self.question = question
        self.yes = yes
        self.no = no

    def compose(self) -> ComposeResult:
        with Vertical():
            # the question quotes names: each line cleaned, shown as text (never markup)
            yield Static(Text("\n".join(one_line(line, 2000)
                                         for line in self.question.split("\n"))),
                         id="question", markup=False)
            with Horizontal():
                yield Button(Text(f"{self.yes} (y)"), variant="warning", id="yes")
                yield Button(Text(f"{self.no} (n)"), id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)
