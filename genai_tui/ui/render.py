"""Cheap repaints (a dashboard left open all day mostly re-polls values that did not
change) and the one way external text is put on screen (`plain`, `notify_plain`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.app import App
from textual.notifications import SeverityLevel
from textual.widgets import DataTable, Static

from genai_tui.safety import one_line


def plain(text: object, max_len: int | None = None, style: str | Style = "", *,
          no_wrap: bool | None = None) -> Text:
    """Text from the config, Docker, HTTP or a file, ready for any widget: one clean line
    (`safety.one_line`) in a rich `Text`, which no markup parser reads, so a name like
    `[@click=app.quit]` is shown, not run. A `str` handed to a DataTable cell, a `Static`
    or a border title would be parsed as markup. `no_wrap=True` crops in a DataTable cell
    the way a `str` cell was cropped."""
    return Text(one_line(text, max_len), style=style, no_wrap=no_wrap)


def notify_plain(app: App[Any], message: object, *, title: str = "",
                 severity: SeverityLevel = "information", timeout: float | None = None,
                 max_len: int = 300) -> None:
    """`App.notify` for messages that quote external text: cleaned, markup off."""
    app.notify(one_line(message, max_len), title=one_line(title, 60), severity=severity,
               timeout=timeout, markup=False)


def update_if_changed(widget: Static, content: Text | str) -> None:
    """Repaint only when the text or its styles changed, and skip Textual's layout pass when
    the text keeps its shape (same lines, same lengths): the size cannot have changed.
    A `str` is shown as plain text too (never parsed as markup)."""
    text = content if isinstance(content, Text) else Text(content)
    key = _key(text)
    old = getattr(widget, "_genai_last", None)
    if key == old:
        return
    same_shape = old is not None and [len(x) for x in old[0].split("\n")] == [
        len(x) for x in text.plain.split("\n")]
    widget._genai_last = key  # type: ignore[attr-defined]
    widget.update(text, layout=not same_shape)


def set_cell(table: DataTable[Any], row: str, column: str, value: Text | str) -> None:
    """`update_cell` only when the cell really changes (each update repaints the table).
    A `str` becomes a `Text`: DataTable would parse it as markup."""
    value = _as_text(value)
    key = _key(value)
    seen = _seen(table)
    if seen.get((row, column)) != key:
        seen[(row, column)] = key
        table.update_cell(row, column, value)


def add_row(table: DataTable[Any], row: str, cells: Mapping[str, Text | str]) -> None:
    """`add_row` (cells in column order) that remembers them for `set_cell`; `str` cells
    become `Text` (never markup)."""
    cells = {column: _as_text(value) for column, value in cells.items()}
    table.add_row(*cells.values(), key=row)
    seen = _seen(table)
    for column, value in cells.items():
        seen[(row, column)] = _key(value)


def forget_cells(table: DataTable[Any]) -> None:
    """After `table.clear()`: nothing shown is remembered any more."""
    _seen(table).clear()


def _seen(table: DataTable[Any]) -> dict[tuple[str, str], object]:
    return table.__dict__.setdefault("_genai_cells", {})


def _as_text(value: Text | str) -> Text:
    # what DataTable makes of a str cell, minus the markup parse
    return value if isinstance(value, Text) else Text(str(value), no_wrap=True, end="")


def _key(value: Text | str) -> object:
    if isinstance(value, Text):
        return (value.plain, str(value.style),
                tuple((s.start, s.end, str(s.style)) for s in value.spans))
    return value
