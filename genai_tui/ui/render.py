"""Cheap repaints (a dashboard left open all day mostly re-polls values that did not
change), the one way external text is put on screen (`plain`, `notify_plain`), column
widths shared by priority (`fit_columns`: numbers are never cut, names give way) and the
NO_COLOR palette."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.style import Style
from rich.terminal_theme import TerminalTheme
from rich.text import Text
from textual.app import App
from textual.coordinate import Coordinate
from textual.geometry import Region
from textual.notifications import SeverityLevel
from textual.widget import Widget
from textual.widgets import DataTable, Static

from genai_tui.model import ContainerInfo
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
    same_shape = old is not None and _same_shape(widget, old[0], text.plain)
    widget._genai_last = key  # type: ignore[attr-defined]
    widget.update(text, layout=not same_shape)


class LineStatic(Static):
    """A Static whose updates that keep its shape repaint only the lines that changed:
    the jobs panel redraws each second while a job runs, its age ticking on one line,
    and a whole repaint rewrote every line of the panel to the terminal."""

    _lines: list[object] | None = None
    _only: tuple[Region, ...] | None = None

    def update(self, content: Any = "", *, layout: bool = True) -> None:
        """`layout=False` (update_if_changed: the text keeps its shape) repaints only the
        rows that changed, when each line is one row (none wraps)."""
        if isinstance(content, Text):
            self._note_changed(content, same_shape=not layout)
        else:
            self._lines = None
        super().update(content, layout=layout)

    def _note_changed(self, text: Text, same_shape: bool) -> None:
        lines = text.split("\n", allow_blank=True)
        keys = [_key(line) for line in lines]
        width = self.content_size.width
        old, self._lines = self._lines, keys
        if not same_shape or old is None or len(old) != len(keys) or width <= 0 \
                or any(line.cell_len > width for line in lines):
            return
        changed = tuple(Region(0, y, width, 1)
                        for y, (a, b) in enumerate(zip(old, keys, strict=True)) if a != b)
        self._only = changed or None

    def refresh(self, *regions: Any, repaint: bool = True, layout: bool = False,
                recompose: bool = False) -> LineStatic:
        only, self._only = self._only, None
        if only is not None and not regions and repaint and not layout and not recompose:
            super().refresh(*only)  # regions are relative to the content
            return self
        super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)
        return self


def set_subtitle(widget: Widget, value: Text | str) -> None:
    """`border_subtitle` only when it changes: Textual repaints the whole widget on every
    assignment, the same text included, so a panel that set it each probe round, each
    GPU poll or each second of a running job rewrote all its rows to the terminal.
    A `str` is shown as plain text (never parsed as markup)."""
    text = value if isinstance(value, Text) else Text(value)
    key = _key(text)
    if widget.__dict__.get("_genai_subtitle", ()) == key:
        return
    widget.__dict__["_genai_subtitle"] = key
    widget.border_subtitle = text


def _same_shape(widget: Static, old: str, new: str) -> bool:
    """The new text takes the widget's current size: as many lines, each as long as
    before, or (a widget whose width does not follow its text) every line, old and new,
    within its width so none wraps. A sparkline that grows by a cell is then a repaint,
    not a layout pass of the whole screen."""
    a, b = old.split("\n"), new.split("\n")
    if len(a) != len(b):
        return False
    if [len(x) for x in a] == [len(x) for x in b]:
        return True
    width = widget.content_size.width
    fixed = widget.styles.width is None or not widget.styles.width.is_auto
    return fixed and width > 0 and max(cell_len(x) for x in a + b) <= width


class RowTable(DataTable[Any]):
    """A DataTable whose cell updates repaint that cell only: `update_cell` repaints the
    whole table, so one ticking uptime rewrote every row of the containers table to the
    terminal once a second (and a probe round every row of the probes table)."""

    _only: Coordinate | None = None

    def update_cell(self, row_key: Any, column_key: Any, value: Any, *,
                    update_width: bool = False) -> None:
        try:
            cell = Coordinate(self.get_row_index(row_key), self.get_column_index(column_key))
        except Exception:  # no such cell: update_cell raises its own error
            cell = None
        if update_width or cell is None:
            super().update_cell(row_key, column_key, value, update_width=update_width)
            return
        self._only = cell
        try:
            super().update_cell(row_key, column_key, value)
        finally:
            self._only = None

    def refresh(self, *regions: Any, repaint: bool = True, layout: bool = False,
                recompose: bool = False) -> RowTable:
        cell = self._only
        if cell is not None and not regions and repaint and not layout and not recompose:
            self._only = None
            self.refresh_coordinate(cell)  # comes back here with the cell's region
            return self
        super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)
        return self


def set_cell(table: DataTable[Any], row: str, column: str, value: Text | str) -> None:
    """`update_cell` only when the cell really changes (each update repaints the table,
    or the cell alone in a `RowTable`).
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


def show_rows(table: DataTable[Any], columns: Sequence[tuple[str, str, int]],
              rows: Mapping[str, Mapping[str, Text | str]], *, rebuild: bool) -> None:
    """Show `rows` (row key -> column -> cell) under `columns` ((key, label, width), in
    order). `rebuild` (the widths or the rows changed): clear and add everything, keeping
    the cursor's row; else touch only the cells whose text changed."""
    if rebuild:
        cursor = table.cursor_row
        table.clear(columns=True)
        forget_cells(table)
        for key, label, width in columns:
            table.add_column(label, key=key, width=width)
        for row, cells in rows.items():
            add_row(table, row, cells)
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))
        return
    for row, cells in rows.items():
        for column, value in cells.items():
            set_cell(table, row, column, value)


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


# ---------------------------------------------------------------- columns by priority


@dataclass(frozen=True)
class Col:
    """One table column and how it gives way when the panel is narrow.

    `fixed`: a number or a verdict: always as wide as its widest value (at least `fixed`),
    never cut. Otherwise a name or free text: at least `min`, at most `max`, and cut with
    … only when the panel cannot give it its widest value. `drop` > 0: the column may be
    left out when the panel is too narrow to show the columns before it at full width
    (the highest `drop` goes first). `grow`: flexible columns get the width that is left
    in this order (lowest first).
    """

    key: str
    label: str
    fixed: int = 0
    min: int = 6
    max: int = 200
    drop: int = 0
    grow: int = 0

    @property
    def flexible(self) -> bool:
        return self.fixed == 0


def fit_columns(columns: Sequence[Col], width: int, natural: Mapping[str, int],
                padding: int = 1) -> dict[str, int]:
    """Column widths (by key, in column order) for a table `width` cells wide whose
    widest values are `natural` (label included). Numbers and verdicts keep their full
    width; droppable columns are left out first (highest `drop` first), then names and
    free text shrink to their minimum; a dropped column is absent from the result."""
    pad = 2 * padding

    def want(c: Col) -> int:
        n = max(natural.get(c.key, 0), len(c.label))
        return max(c.fixed, n) if not c.flexible else max(c.min, min(c.max, n))

    def floor(c: Col) -> int:
        return want(c) if not c.flexible else min(want(c), c.min)

    # the columns that always show at full width, then each droppable one, most useful
    # first, when it fits at its minimum beside those already taken at full width
    taken = [c for c in columns if not c.drop]
    for c in sorted((c for c in columns if c.drop), key=lambda c: c.drop):
        if sum(want(x) + pad for x in taken) + floor(c) + pad <= width:
            taken.append(c)
    shown = [c for c in columns if c in taken]
    widths = {c.key: floor(c) for c in shown}
    left = width - sum(w + pad for w in widths.values())
    for c in sorted((c for c in shown if c.flexible), key=lambda c: c.grow):
        if left <= 0:
            break
        more = min(left, want(c) - widths[c.key])
        widths[c.key] += more
        left -= more
    return {c.key: widths[c.key] for c in shown}


def table_width(panel: Widget, default: int = 120) -> int:
    """The width a DataTable filling `panel` can give its columns: one cell less than the
    panel's (a table exactly as wide as its region still grows a horizontal scrollbar,
    a row the panel does not have)."""
    return max(1, (panel.content_size.width or default) - 1)


def cut(text: Text, width: int) -> Text:
    """`text` in at most `width` cells, ending in … when something was cut (a name cut
    silently reads as another name)."""
    if text.cell_len <= width:
        return text
    out = text.copy()
    out.truncate(max(1, width), overflow="ellipsis")
    return out


def cut_at(text: Text, width: int, sep: str = " · ") -> Text:
    """Like `cut`, but a text made of parts (`queue 2 · VRAM used 21.9/24.0 GiB`) loses
    whole parts, never half a number: what is left ends in ` …`."""
    if text.cell_len <= width:
        return text
    plain_text = text.plain
    ends = [i for i in range(len(plain_text)) if plain_text.startswith(sep, i)]
    fits = [end for end in ends if end + 1 <= width]
    if fits:
        out = text[:fits[-1]]
        out.append(" …" if fits[-1] + 2 <= width else "…")
        return out
    return cut(text, width)


def natural_widths(rows: Iterable[Mapping[str, Text | str]]) -> dict[str, int]:
    """The widest value of each column over `rows`."""
    widest: dict[str, int] = {}
    for cells in rows:
        for key, value in cells.items():
            n = value.cell_len if isinstance(value, Text) else len(value)
            if n > widest.get(key, 0):
                widest[key] = n
    return widest


# ---------------------------------------------------------------- NO_COLOR


def _with_red(theme: TerminalTheme, red: tuple[int, int, int]) -> TerminalTheme:
    colours = [tuple(theme.ansi_colors[i]) for i in range(16)]
    normal, bright = colours[:8], colours[8:]
    normal[1] = red
    bg, fg = theme.background_color, theme.foreground_color
    return TerminalTheme((bg.red, bg.green, bg.blue), (fg.red, fg.green, fg.blue),
                         normal, bright)


def no_color_ansi_themes() -> tuple[TerminalTheme, TerminalTheme]:
    """(dark, light) ANSI palettes for NO_COLOR. Textual's Monochrome filter turns each
    colour into its luminance, so the usual ANSI red (every bad state, the findings
    bar's ✖) became the dimmest grey on a dark background; with these, red is the
    brightest text on a dark theme and the darkest on a light one (and still bold).
    Bright red is left as it is: it is the background of the alarm badges
    (`bright_white on bright_red`), a dark grey behind light text."""
    from textual._ansi_theme import ALABASTER, MONOKAI

    return _with_red(MONOKAI, (255, 235, 235)), _with_red(ALABASTER, (40, 0, 0))


def snapshot_containers(widget: Widget) -> list[ContainerInfo]:
    """The containers the app's engine last published (a panel told only of its own
    part still needs them: a probe refused while its container starts is "starting")."""
    try:
        snapshot = widget.app.stack.snapshot  # type: ignore[attr-defined]
    except Exception:  # mounted alone, or no engine
        return []
    return list(getattr(snapshot, "containers", []) or [])
