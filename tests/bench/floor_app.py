"""The Textual floor: the least a Textual dashboard costs. A header, a 20-row DataTable
whose "age" column is rewritten once a second (as a dashboard's uptime column would be)
and a footer — nothing else. The bench runs it beside genai-tui and lazydocker so every
idle figure can be read against this physical limit as well as against the peer.

    python tests/bench/floor_app.py        # q quits
"""

from __future__ import annotations

import time

from textual.app import App, ComposeResult
from textual.widgets import DataTable, Footer, Header

ROWS = 20
#: on the first complete screen (the bench's `ready` predicate looks for it)
LAST_ROW = f"floor-row-{ROWS - 1:02d}"


class Floor(App[None]):
    TITLE = "textual floor"
    BINDINGS = [("q", "quit", "Quit")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="table")
        yield Footer()

    def on_mount(self) -> None:
        self.started = time.monotonic()
        table = self.query_one(DataTable)
        self.age_col, *_ = table.add_columns("age", "name", "state", "health")
        for i in range(ROWS):
            table.add_row("0s", f"floor-row-{i:02d}", "running", "healthy", key=str(i))
        table.focus()
        self.set_interval(1.0, self.tick)

    def tick(self) -> None:
        age = f"{int(time.monotonic() - self.started)}s"
        table = self.query_one(DataTable)
        for i in range(ROWS):
            table.update_cell(str(i), self.age_col, age)


if __name__ == "__main__":
    Floor().run()
