"""Cheap repaints: a dashboard left open all day mostly re-polls values that did not change."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


def update_if_changed(widget: Static, content: Text | str) -> None:
    """Repaint only when the text or its styles changed, and skip Textual's layout pass when
    the text keeps its shape (same lines, same lengths): the size cannot have changed."""
    text = content if isinstance(content, Text) else Text(content)
    key = (text.plain, str(text.style), tuple((s.start, s.end, str(s.style)) for s in text.spans))
    old = getattr(widget, "_genai_last", None)
    if key == old:
        return
    same_shape = old is not None and [len(x) for x in old[0].split("\n")] == [
        len(x) for x in key[0].split("\n")]
    widget._genai_last = key  # type: ignore[attr-defined]
    widget.update(content, layout=not same_shape)
