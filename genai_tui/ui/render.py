"""Cheap repaints: a dashboard left open all day mostly re-polls values that did not change."""

from __future__ import annotations

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
    seen: dict[tuple[str, str], object] = table.__dict__.setdefault("_genai_cells", {})
    if seen.get((row, column)) != key:
        seen[(row, column)] = key
        table.update_cell(row, column, value)


def _key(value: Text | str) -> object:
    if isinstance(value, Text):
        return (value.plain, str(value.style),
                tuple((s.start, s.end, str(s.style)) for s in value.spans))
    return value
