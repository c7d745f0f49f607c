"""Cheap repaints: a dashboard left open all day mostly re-polls values that did not change."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual.widgets import DataTable, Static


def update_if_changed(widget: Static, content: Text | str) -> None:
    """Repaint only when the text or its styles changed, and skip Textual's layout pass when
    the text keeps its shape (same lines, same lengths): the size cannot have changed."""
    text = content if isinstance(content, Text) else Text(content)
    key = _key(text)
    old = getattr(widget, "_genai_last", None)
    if key == old:
        return
    same_shape = old is not None and [len(x) for x in old[0].split("\n")] == [
        len(x) for x in text.plain.split("\n")]
    widget._genai_last = key  # type: ignore[attr-defined]
    widget.update(content, layout=not same_shape)


def set_cell(table: DataTable[Any], row: str, column: str, value: Text | str) -> None:
    """`update_cell` only when the cell really changes (each update repaints the table)."""
    key = _key(value)
    seen = _seen(table)
    if seen.get((row, column)) != key:
        seen[(row, column)] = key
        table.update_cell(row, column, value)


def add_row(table: DataTable[Any], row: str, cells: Mapping[str, Text | str]) -> None:
    """`add_row` (cells in column order) that remembers them for `set_cell`."""
    table.add_row(*cells.values(), key=row)
    seen = _seen(table)
    for column, value in cells.items():
        seen[(row, column)] = _key(value)


def forget_cells(table: DataTable[Any]) -> None:
    """After `table.clear()`: nothing shown is remembered any more."""
    _seen(table).clear()


def _seen(table: DataTable[Any]) -> dict[tuple[str, str], object]:
    return table.__dict__.setdefault("_genai_cells", {})


def _key(value: Text | str) -> object:
    if isinstance(value, Text):
        return (value.plain, str(value.style),
                tuple((s.start, s.end, str(s.style)) for s in value.spans))
    return value
