"""The log panel: a virtual (line-API) view over the followed container's ring buffer.

Lines arrive already sanitised (`genai_tui.sources.logs`), and `LogLine.text` redacts on
first read, so a line is redacted and classified only when it is drawn, searched or saved;
this module only decides what to draw. Only the rows on screen are rendered (toolong style:
`ScrollView` + `render_line`, with an LRU of rendered strips), and new lines are taken from
the follower threads by one timer in batches, so a container printing 20k lines/s costs one
cheap update every `flush_interval` and the UI never waits on Docker.

Following means the last line is on screen: after every append and every re-layout (wrap,
timestamps, filter, resize, the compact view switch) the view scrolls to its end again once
the layout has settled, since a scroll made before it is measured against the old size (a
horizontal scrollbar appearing, a wrap width changing). Only the user scrolling up pauses it
(wheel, Up, PageUp, Home, the scrollbar); `End` or `f` resumes.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import contextvars
import os
import re
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import Protocol

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import work
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding
from textual.cache import LRUCache
from textual.containers import Vertical
from textual.events import Key, MouseScrollUp
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.scrollbar import ScrollTo, ScrollUp
from textual.strip import Strip
from textual.timer import Timer
from textual.widgets import Input, Static

from genai_tui.config import Config
from genai_tui.safety import one_line
from genai_tui.sources.logs import LogHub, LogLine, MergedLogs
from genai_tui.sources.logtext import Redactor, clean_line
from genai_tui.ui import stylesheets
from genai_tui.ui.render import update_if_changed

KIND_STYLES: dict[str | None, Style] = {
    None: Style(),
    "login": Style(color="magenta", bold=True),
    "login_error": Style(color="bright_white", bgcolor="red", bold=True),
    "import_failed": Style(color="bright_red", bold=True),
    "oom": Style(color="bright_white", bgcolor="dark_red", bold=True),
    "traceback": Style(color="red"),
    "error": Style(color="bright_red"),
    "warning": Style(color="yellow"),
    "job": Style(color="green"),
    "meta": Style(color="cyan", italic=True),
}
#: a flush that brings this many lines means a flood: the next FLOOD_SKIP ticks are skipped
FLOOD_BATCH = 500
FLOOD_SKIP = 4
MATCH_STYLE = Style(color="black", bgcolor="yellow")
CURRENT_STYLE = Style(color="black", bgcolor="bright_cyan", bold=True)
TS_STYLE = Style(dim=True)
SERVICE_COLORS = ("cyan", "green", "magenta", "yellow", "bright_blue", "bright_red",
                  "bright_cyan", "bright_green", "bright_magenta", "bright_yellow")
#: a wrapped line continues under its message unless that leaves fewer cells than this
MIN_WRAP_TEXT = 20
#: a status message quotes a whole path (PATH_MAX is 4096)
MESSAGE_MAX = 4400


class LogSourceView(Protocol):
    """What the panel reads: a `LogFollower` or a `MergedLogs`."""

    total: int
    service: str

    def snapshot(self) -> list[LogLine]: ...

    def drain(self) -> list[LogLine]: ...

    @property
    def status_text(self) -> str: ...


def format_ts(ts: int) -> str:
    """`HH:MM:SS.mmm` in UTC (Docker's own clock), blank when unknown."""
    if ts <= 0:
        return " " * 12
    secs, ns = divmod(ts, 1_000_000_000)
    t = time.gmtime(secs)
    return f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{ns // 1_000_000:03d}"


def iso_ts(ts: int) -> str:
    if ts <= 0:
        return "-"
    secs, ns = divmod(ts, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ns:09d}Z"


_HINT = attrgetter("hint")


def _cells(text: str) -> int:
    # clean ASCII (most log lines) is one cell per character: skip the width tables
    return len(text) if text.isascii() else cell_len(text)


class LogView(ScrollView, can_focus=True):
    """Rows of log lines; knows nothing about followers (the panel feeds it).

    While `following`, the last row is kept on screen; the user scrolling up clears it and
    says so (`Paused`), `End` asks the panel to resume (`ResumeRequested`), which first
    hands over the lines it held meanwhile."""

    DEFAULT_CSS = stylesheets.read("logs.tcss")

    class Paused(Message):
        """The user scrolled up: the view no longer follows (already in effect)."""

    class ResumeRequested(Message):
        """`End`: the user wants the newest lines, and to follow again."""

    def __init__(self, max_lines: int = 5000, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.max_lines = max_lines
        # the lines, and their width in cells once known (-1: not drawn or measured yet;
        # measuring reads `text`, which redacts: most lines of a flood never need it)
        self._lines: list[LogLine] = []
        self._widths: list[int] = []
        self._base = 0  # seq of _lines[0]
        self._offset = 0  # entries before this index are evicted (compacted lazily)
        self._next_seq = 0
        self._filter: re.Pattern[str] | None = None
        self._visible: list[int] | None = None  # matching seqs while a filter is set
        self._row_starts: list[int] | None = None  # wrap mode: first row of each visible line
        self._rows_width = 0  # the wrap width `_row_starts` was computed for
        self._max_cells = 0  # widest line seen (by `LogLine.hint` until drawn)
        self._widest_stale = False
        self._cache: LRUCache[int, Strip] = LRUCache(1024)
        self.show_ts = False
        self.wrap = False
        self.merged = False
        self.current: int | None = None  # seq of the current match (n/N)
        self._service_styles: dict[str, Style] = {}
        self._service_names: dict[str, str] = {}  # config names made printable
        self._service_width = 0
        #: keep the last row on screen (the panel turns it on; scrolling up turns it off)
        self.following = True
        self._stick_pending = False

    # ------------------------------------------------------------ data

    @property
    def first_seq(self) -> int:
        return self._base + self._offset

    @property
    def line_count(self) -> int:
        return len(self._lines) - self._offset

    @property
    def match_count(self) -> int:
        return len(self._visible) if self._visible is not None else 0

    @property
    def newest_ts(self) -> int:
        """Timestamp of the newest line in the view (0 when empty)."""
        return self._lines[-1].ts if self.line_count else 0

    def line(self, seq: int) -> LogLine:
        return self._lines[seq - self._base]

    def width(self, seq: int) -> int:
        """Cells of that line's (redacted) text."""
        i = seq - self._base
        w = self._widths[i]
        if w < 0:
            line = self._lines[i]
            w = self._widths[i] = _cells(line.text)
            if w != line.hint and max(w, line.hint) >= self._max_cells:
                self._widest_stale = True  # the widest line is wider or narrower than guessed
        return w

    def lines(self) -> list[LogLine]:
        """The lines currently in view (filtered when a filter is set), oldest first."""
        if self._visible is not None:
            return [self.line(s) for s in self._visible]
        return self._lines[self._offset:]

    def clear(self) -> None:
        self._lines = []
        self._widths = []
        self._base = self._next_seq
        self._offset = 0
        self._visible = [] if self._filter is not None else None
        self._max_cells = 0
        self.current = None
        self._changed()
        self.scroll_to(0, 0, animate=False)

    def set_services(self, names: Iterable[str]) -> None:
        names = list(names)
        self._service_styles = {n: Style(color=SERVICE_COLORS[i % len(SERVICE_COLORS)], bold=True)
                                for i, n in enumerate(names)}
        # service names come from the config file: untrusted text like any other
        self._service_names = {n: one_line(n, 64) for n in names}
        self._service_width = max((cell_len(v) for v in self._service_names.values()),
                                  default=0)
        self._cache.clear()

    def append(self, lines: list[LogLine]) -> None:
        """Add lines; the last one is shown when following, otherwise the rows on screen
        stay where they are even while old lines are evicted."""
        if not lines:
            return
        anchor = None if self.following else self._anchor()
        rx = self._filter
        visible = self._visible
        first = self._next_seq
        self._lines.extend(lines)
        self._widths.extend([-1] * len(lines))
        self._next_seq += len(lines)
        widest = max(map(_HINT, lines))
        if widest > self._max_cells:
            self._max_cells = widest
        if rx is not None and visible is not None:  # a filter searches the redacted text
            visible.extend(first + k for k, line in enumerate(lines) if rx.search(line.text))
        overflow = self.line_count - self.max_lines
        if overflow > 0:
            self._offset += overflow
            if self._offset > self.max_lines:  # compact now and then: O(1) amortised
                del self._lines[:self._offset]
                del self._widths[:self._offset]
                self._base += self._offset
                self._offset = 0
            if visible is not None:
                cut = bisect.bisect_left(visible, self.first_seq)
                if cut:
                    del visible[:cut]
            if self.current is not None and self.current < self.first_seq:
                self.current = None
        self._changed(keep_cache=True)  # a seq's rendering never changes by appending
        if self.following:
            self.stick()
        elif anchor is not None:
            self._restore(anchor)

    def set_filter(self, rx: re.Pattern[str] | None) -> None:
        anchor = self._anchor()
        self._filter = rx
        self.current = None
        if rx is None:
            self._visible = None
        else:
            base = self._base
            self._visible = [base + i for i in range(self._offset, len(self._lines))
                             if rx.search(self._lines[i].text)]
        self._changed()
        if self.following:
            self.stick()
        elif anchor is not None and rx is None:
            self._restore(anchor)
        else:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    @property
    def filter(self) -> re.Pattern[str] | None:
        return self._filter

    def restyle(self) -> None:
        """Timestamps/wrap/merged changed: every cached row is stale."""
        anchor = None if self.following else self._anchor()
        self._changed()
        if self.following:
            self.stick()
        elif anchor is not None:
            self._restore(anchor)

    # ------------------------------------------------------------ following

    def stick(self) -> None:
        """Following: show the last row now, and again once the layout has settled (the
        size a scroll is measured against may still change: a scrollbar, a new width)."""
        if not self.following:
            return
        self.scroll_end(animate=False, immediate=True, x_axis=False)
        if not self._stick_pending and self.is_attached:
            self._stick_pending = self.call_after_refresh(self._stick_after_layout, True)

    def _stick_after_layout(self, again: bool) -> None:
        self._stick_pending = False
        if not self.following or not self.is_attached:
            return
        before = self.virtual_size
        self._update_virtual_size()  # the wrap rows for the width the layout gave us
        self.scroll_end(animate=False, immediate=True, x_axis=False)
        if again and self.virtual_size != before:  # that re-layout may move a scrollbar
            self._stick_pending = self.call_after_refresh(self._stick_after_layout, False)

    def _user_scrolls_up(self) -> None:
        if self.following and self.scroll_offset.y > 0:
            self.following = False
            self.post_message(self.Paused())

    def action_scroll_up(self) -> None:
        self._user_scrolls_up()
        super().action_scroll_up()

    def action_page_up(self) -> None:
        self._user_scrolls_up()
        super().action_page_up()

    def action_scroll_home(self) -> None:
        self._user_scrolls_up()
        super().action_scroll_home()

    def action_scroll_end(self) -> None:
        self.scroll_end(animate=False, immediate=True, x_axis=False)
        self.post_message(self.ResumeRequested())

    def _on_mouse_scroll_up(self, event: MouseScrollUp) -> None:
        # Widget's own handler runs after this one and does the scrolling
        if not (event.ctrl or event.shift):
            self._user_scrolls_up()

    def _on_scroll_up(self, event: ScrollUp) -> None:  # a click above the scrollbar's thumb
        self._user_scrolls_up()

    def _on_scroll_to(self, message: ScrollTo) -> None:  # the scrollbar's thumb dragged
        if message.y is not None and message.y < self.max_scroll_y:
            self._user_scrolls_up()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        """ScrollView's, repainting the rows only (a following view scrolls with every
        new batch of lines)."""
        if self.show_vertical_scrollbar:
            self.vertical_scrollbar.position = new_value
        if round(old_value) != round(new_value):
            self._refresh_rows()

    def _changed(self, keep_cache: bool = False) -> None:
        if not keep_cache:
            self._cache.clear()
        self._row_starts = None
        self._update_virtual_size()
        self._refresh_rows()

    def _refresh_rows(self) -> None:
        """Repaint the rows only: the scrollbars repaint themselves when they move. Not
        `size.region`: that holds the horizontal bar's row too, whose every cell is its own
        styled segment (~0.9 KB written to the terminal per repaint)."""
        area = self.scrollable_content_region
        self.refresh(Region(0, 0, area.width, area.height))

    # ------------------------------------------------------------ geometry

    def _prefix_cells(self) -> int:
        n = 13 if self.show_ts else 0
        if self.merged:
            n += self._service_width + 3
        return n

    def _visible_count(self) -> int:
        return len(self._visible) if self._visible is not None else self.line_count

    def _seq_at(self, index: int) -> int:
        return self._visible[index] if self._visible is not None else self.first_seq + index

    def _index_of(self, seq: int) -> int | None:
        if self._visible is not None:
            i = bisect.bisect_left(self._visible, seq)
            return i if i < len(self._visible) and self._visible[i] == seq else None
        i = seq - self.first_seq
        return i if 0 <= i < self.line_count else None

    def _wrap_width(self) -> int:
        return max(10, self.scrollable_content_region.width or self.size.width or 80)

    def _indent(self, width: int) -> int:
        """Cells before a wrapped line's continuation rows: under the message, past the
        time and service prefix (at column 0 when that would leave too little room)."""
        prefix = self._prefix_cells()
        return prefix if width - prefix >= MIN_WRAP_TEXT else 0

    def _rows(self) -> list[int]:
        width = self._wrap_width()
        if self._row_starts is None or self._rows_width != width:
            prefix = self._prefix_cells()
            rest = width - self._indent(width)  # cells of text on a continuation row
            starts = [0]
            total = 0
            for i in range(self._visible_count()):
                cells = self.width(self._seq_at(i)) + prefix
                total += 1 if cells <= width else 1 + -(-(cells - width) // rest)
                starts.append(total)
            self._row_starts = starts
            self._rows_width = width
        return self._row_starts

    def _row_count(self) -> int:
        if self.wrap:
            return self._rows()[-1]
        return self._visible_count()

    def _locate_row(self, row: int) -> tuple[int, int] | None:
        """Row → (visible index, sub-row)."""
        if self.wrap:
            starts = self._rows()
            if row < 0 or row >= starts[-1]:
                return None
            i = bisect.bisect_right(starts, row) - 1
            return i, row - starts[i]
        if 0 <= row < self._visible_count():
            return row, 0
        return None

    def row_of(self, seq: int) -> int | None:
        i = self._index_of(seq)
        if i is None:
            return None
        return self._rows()[i] if self.wrap else i

    def _update_virtual_size(self) -> None:
        width = self._wrap_width() if self.wrap else self._max_cells + self._prefix_cells()
        new, old = Size(width, self._row_count()), self.virtual_size
        if new == old:
            return
        rows = self.scrollable_content_region.height
        if (new.width == old.width and min(new.height, old.height) > rows > 0
                and self.show_vertical_scrollbar):
            # more rows below an already scrolling view: only the scrollbar's thumb moves,
            # so skip the reactive's layout pass of the whole screen (one per new batch of
            # lines: most of the idle repaint cost before)
            self.set_reactive(LogView.virtual_size, new)
            self.vertical_scrollbar.window_virtual_size = new.height  # repaints the bar
            self._refresh_rows()
            return
        self.virtual_size = new

    def _anchor(self) -> tuple[int, int] | None:
        hit = self._locate_row(round(self.scroll_y))
        if hit is None:
            return None
        return self._seq_at(hit[0]), hit[1]

    def _restore(self, anchor: tuple[int, int]) -> None:
        seq, sub = anchor
        row = self.row_of(seq)
        if row is None:  # evicted or filtered out: the nearest later line
            if self._visible_count() == 0:
                return
            if self._visible is not None:
                i = bisect.bisect_left(self._visible, seq)
            else:
                i = max(0, seq - self.first_seq)
            if i >= self._visible_count():
                return
            row = self._rows()[i] if self.wrap else i
            sub = 0
        self.scroll_to(y=row + sub, animate=False, immediate=True)

    def on_resize(self) -> None:
        if self.wrap:
            self.restyle()  # sticks when following
        else:
            self.stick()

    def on_show(self) -> None:
        """Shown again (the compact view switch): lines came while hidden."""
        self.stick()

    # ------------------------------------------------------------ jumps

    def jump(self, forward: bool) -> int | None:
        """Move the current match to the next/previous filtered line and show it."""
        if self._visible is None or not self._visible:
            return None
        vis = self._visible
        if self.current is None or self._index_of(self.current) is None:
            top = self._anchor()
            start = top[0] if top else vis[0]
            i = bisect.bisect_left(vis, start)
            if forward:
                i = min(i, len(vis) - 1)
            else:
                i = max(0, min(i, len(vis)) - 1) if i else 0
        else:
            i = bisect.bisect_left(vis, self.current) + (1 if forward else -1)
            i %= len(vis)
        self.current = vis[i]
        self._cache.clear()
        row = self.row_of(self.current) or 0
        height = self.scrollable_content_region.height or self.size.height
        self.scroll_to(y=max(0, row - height // 3), animate=False, immediate=True)
        self.refresh()
        return i

    # ------------------------------------------------------------ rendering

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width or self.size.width
        base_style = self.rich_style
        hit = self._locate_row(scroll_y + y)
        if hit is None:
            return Strip.blank(width, base_style)
        index, sub = hit
        seq = self._seq_at(index)
        strip = self._cache.get(seq)
        if strip is None:
            strip = self._render_entry(seq, base_style)
            self._cache[seq] = strip
        if self.wrap:
            w = self._wrap_width()
            if sub == 0:
                return strip.crop_extend(0, w, base_style)
            indent = self._indent(w)
            start = w + (sub - 1) * (w - indent)
            rest = strip.crop_extend(start, start + w - indent, base_style)
            return Strip.join([Strip.blank(indent, base_style), rest]) if indent else rest
        return strip.crop_extend(scroll_x, scroll_x + width, base_style)

    def _render_entry(self, seq: int, base_style: Style) -> Strip:
        line = self.line(seq)
        parts: list[tuple[str, Style]] = []
        if self.show_ts:
            parts.append((format_ts(line.ts) + " ", TS_STYLE))
        if self.merged:
            name = self._service_names.get(line.service) or one_line(line.service, 64)
            pad = " " * max(0, self._service_width - cell_len(name))
            parts.append((name + pad, self._service_styles.get(line.service, Style(bold=True))))
            parts.append((" │ ", TS_STYLE))
        parts.append((line.text, KIND_STYLES.get(line.kind, KIND_STYLES[None])))
        if self._filter is None:  # the common case, straight to segments (floods draw a lot)
            segments = [Segment(t, base_style + style) for t, style in parts]
        else:
            text = Text(no_wrap=True, end="")
            for t, style in parts:
                text.append(t, style)
            offset = len(text) - len(line.text)
            style = CURRENT_STYLE if seq == self.current else MATCH_STYLE
            for m in self._filter.finditer(line.text):
                if m.end() > m.start():
                    text.stylize(style, offset + m.start(), offset + m.end())
            text.stylize_before(base_style)
            segments = list(text.render(self.app.console))
        width = self.width(seq)
        if self._widest_stale and not self.wrap:
            self._widest_stale = False
            self.call_after_refresh(self._remeasure)
        return Strip(segments, self._prefix_cells() + width)

    def _remeasure(self) -> None:
        """The horizontal scroll range from exact widths where known, guesses elsewhere."""
        start = self._offset
        widest = max((w if w >= 0 else line.hint for w, line in
                      zip(self._widths[start:], self._lines[start:], strict=True)), default=0)
        if widest != self._max_cells:
            self._max_cells = widest
            self._update_virtual_size()
            self.stick()  # the horizontal scrollbar may come or go with the new width


#: the slowest the log view takes new lines over SSH (SSH_CONNECTION set)
SSH_FLUSH_INTERVAL = 2.0
#: a source that says when lines come (`listen`) is still looked at this often, for a
#: state ("reconnecting …") that changes without a line
STATUS_TICK = 1.0


class LogPanel(Vertical):
    """Follows one service (`follow_service`) or all of them (`follow_all`).

    Keys while focused: `/` filter, `n`/`N` next/previous match, `Esc` clear the filter,
    `f` follow/pause, `End` follow, `t` timestamps, `w` wrap, `s` save the view to a file
    (in `logs_dir()`). Scrolling up pauses following; lines that come meanwhile are held
    (and counted in the status) until `End` or `f`."""

    DEFAULT_CSS = stylesheets.read("logs.tcss")

    #: ids are `logs.<name>` so `[keys] <name> = "..."` in the config can rebind them
    BINDINGS = [
        Binding("slash", "start_filter", "Filter", key_display="/", id="logs.filter"),
        # the footer lists the focused panel's keys first: only two of these are shown
        # there (all are in `?` and the palette), so that the dashboard's own keys (l, p,
        # u …) still fit beside them at 120 columns
        Binding("n", "next_match", "Next match", show=False, id="logs.next_match"),
        Binding("N", "prev_match", "Prev match", key_display="N", show=False,
                id="logs.prev_match"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="logs.clear_filter"),
        Binding("f", "toggle_follow", "Follow/pause", id="logs.follow"),
        Binding("t", "toggle_timestamps", "Timestamps", show=False, id="logs.timestamps"),
        Binding("w", "toggle_wrap", "Wrap", show=False, id="logs.wrap"),
        Binding("s", "save", "Save view", show=False, id="logs.save"),
    ]

    def __init__(self, config: Config, *, id: str | None = None, hub: LogHub | None = None,
                 initial: str | None = "all") -> None:
        super().__init__(id=id)
        self.config = config
        cfg = config.logs
        #: the engine's log hub; None (tests, snapshots): show what we are given
        self._hub = hub
        self._live = hub is not None
        self._initial = initial
        self.view = LogView(cfg.buffer_lines, id="log-view")
        self.status = Static("", id="log-status", markup=False)
        self.filter_input = Input(placeholder="regex filter — Enter applies, Esc clears",
                                  id="log-filter")
        self.source: LogSourceView | None = None
        self.label = ""
        self._held: deque[LogLine] = deque(maxlen=cfg.buffer_lines)
        self._new_while_paused = 0
        self._message = ""
        self._status_cache = ""
        self._last_total = 0
        self._flushed: tuple[object, ...] = ()
        self._interval = cfg.flush_interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_context: contextvars.Context | None = None
        self._poll: Timer | None = None
        self._unlisten: Callable[[], None] | None = None
        self._woken = False
        self._flush_timer: Timer | None = None
        #: ticks that looked at the source (an idle follow makes one a second)
        self.flushes = 0
        self._skip_flushes = 0
        self.saved_path: Path | None = None

    @property
    def follow(self) -> bool:
        """Following (the view's own flag: scrolling up clears it at once)."""
        return self.view.following

    @property
    def hub(self) -> LogHub:
        assert self._hub is not None, "a live log panel is given the engine's hub"
        return self._hub

    def compose(self) -> ComposeResult:
        yield self.status
        yield self.view
        yield self.filter_input

    def on_mount(self) -> None:
        self.border_title = "Logs"
        interval = self.config.logs.flush_interval
        if getattr(self.app, "ssh", False):
            # over SSH every redraw of the view costs bandwidth: new lines are added in
            # bigger, rarer batches (a healthcheck line per service per second would
            # otherwise scroll the whole view several times a second)
            interval = max(interval, SSH_FLUSH_INTERVAL)
        self._interval = interval
        self._loop = asyncio.get_running_loop()
        self._wake_context = contextvars.copy_context()  # Textual's (active app) for the wake
        self.set_interval(STATUS_TICK, self._status_tick)
        self._listen(self.source)
        if self.source is None and self._live:
            if self._initial == "all":
                self.follow_all()
            elif self._initial:
                self.follow_service(self._initial)
        self._update_status(force=True)

    # ------------------------------------------------------------ public API

    def follow_service(self, service_name: str) -> None:
        """Show one service's container, or the `log_file` of a process service (Enter /
        `l` on a container row)."""
        if not self._live:
            self._switch(None, service_name, merged=False)
            return
        self._switch(self.hub.follower(service_name), service_name, merged=False)

    def follow_all(self) -> None:
        """One merged view of every service of the stack, docker and process (`a`)."""
        if not self._live:
            self.view.set_services(s.name for s in self.config.services)
            self._switch(None, "all services", merged=True)
            return
        merged: MergedLogs = self.hub.merged()
        names = [f.service for f in merged.followers]
        self.view.set_services(names)
        self._switch(merged, "all services", merged=True)

    def show_lines(self, lines: Iterable[LogLine], label: str, *, merged: bool = False) -> None:
        """Display given lines without following anything (demo mode, snapshots). They are
        cleaned and redacted here too, so no caller can bypass the rules."""
        redactor = self._hub.redactor if self._hub is not None else Redactor()
        safe = [LogLine(ln.ts, ln.service, clean_line(ln.text), redactor=redactor)
                for ln in lines]
        if merged:
            names = [s.name for s in self.config.services]
            names += sorted({ln.service for ln in safe} - set(names))
            self.view.set_services(names)
        self._switch(None, label, merged=merged)
        self.view.append(safe)
        self._update_status(force=True)

    # ------------------------------------------------------------ internals

    def _switch(self, source: LogSourceView | None, label: str, *, merged: bool) -> None:
        self._listen(source)
        self.source = source
        self.label = label
        self._message = ""
        self.view.merged = merged
        self.view.clear()
        self._held.clear()
        self._new_while_paused = 0
        self.view.following = True
        if source is not None:
            self.view.append(source.snapshot())
            self._last_total = source.total
        self._update_status(force=True)

    def _listen(self, source: LogSourceView | None) -> None:
        """Flush when the source says lines came (`listen`), else poll it."""
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        listen = getattr(source, "listen", None)
        if callable(listen):
            self._unlisten = listen(self._wake)
        if source is not None and self._unlisten is None and self._loop is not None:
            # polled every tick only while the source cannot say when lines come
            if self._poll is None:
                self._poll = self.set_interval(self._interval, self._flush)
        elif self._poll is not None:
            self._poll.stop()
            self._poll = None

    def _wake(self) -> None:
        """From a follower's thread: one flush, `flush_interval` later, for whatever comes
        meanwhile (a burst is one redraw)."""
        if self._woken or self._loop is None:
            return
        self._woken = True
        with contextlib.suppress(RuntimeError):  # the loop is closing: nothing to draw
            self._loop.call_soon_threadsafe(self._flush_soon, context=self._wake_context)

    def _flush_soon(self) -> None:
        if self._flush_timer is None and self.is_attached:
            self._flush_timer = self.set_timer(self._interval, self._woken_flush)

    def _woken_flush(self) -> None:
        self._flush_timer = None
        self._woken = False
        self._flush()

    def _status_tick(self) -> None:
        """A listened-to source's state ("reconnecting …") changes without a line: the
        status line is looked at once a second (lines wait for their own flush)."""
        if self._unlisten is not None:
            self._update_status()

    def on_unmount(self) -> None:
        self._listen(None)

    def _flush(self) -> None:
        """Timer tick: take what the threads collected and update the view in one batch."""
        source = self.source
        if self._skip_flushes:  # a flood: fewer, bigger updates (each redraws the view)
            self._skip_flushes -= 1
            if self._unlisten is not None:
                self._flush_soon()  # what came meanwhile is still drawn, a few ticks on
            return
        self.flushes += 1
        lines = source.drain() if source is not None else []
        # what the status line is made of: a polled source's idle tick draws nothing
        seen = (source.total if source is not None else 0,
                source.status_text if source is not None else "", self.follow, self.label,
                self.view.filter, self.view.wrap, self.view.show_ts, self._message)
        if not lines and seen == self._flushed:
            return
        self._flushed = seen
        if source is not None:
            if len(lines) >= FLOOD_BATCH:
                self._skip_flushes = FLOOD_SKIP
            total = source.total
            if self.follow:
                self.view.append(lines)
            else:
                # counted from the follower's monotonic total, so lines that overflowed
                # the hand-off queue between two ticks are counted too
                self._held.extend(lines)
                self._new_while_paused += max(len(lines), total - self._last_total)
            self._last_total = total
        self._update_status()

    def _update_status(self, force: bool = False) -> None:
        parts = [one_line(self.label, 80) or "no service selected"]
        if self.follow:
            parts.append("following")
        else:
            n = self._new_while_paused
            parts.append(f"paused · {n} new line{'' if n == 1 else 's'} below")
        rx = self.view.filter
        if rx is not None:
            parts.append(f"filter /{rx.pattern}/ {self.view.match_count} matches")
        parts.append(f"{self.view.line_count}/{self.view.max_lines} lines")
        if self.view.show_ts:
            # log files carry no times: their lines show when they were read
            parts.append("times UTC, log files: time read"
                         if getattr(self.source, "read_times", False) else "times UTC")
        if self.view.wrap:
            parts.append("wrap")
        if self.source is not None:
            state = self.source.status_text
            if state and state != "following":
                parts.append(one_line(state, 200))
        if self._message:
            parts.append(one_line(self._message, MESSAGE_MAX))
        # each part cleaned on its own (an unterminated sequence in one must not swallow
        # the rest); the filter's regex is user text, shown as typed but printable
        text = "".join(ch if ch.isprintable() else "?" for ch in " · ".join(parts))
        if force or text != self._status_cache:
            self._status_cache = text
            update_if_changed(self.status, Text(text))

    @property
    def status_text(self) -> str:
        return self._status_cache

    # ------------------------------------------------------------ actions

    def action_start_filter(self) -> None:
        self.add_class("-filtering")
        rx = self.view.filter
        self.filter_input.value = rx.pattern if rx is not None else ""
        self.filter_input.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input is not self.filter_input:
            return
        event.stop()
        self.apply_filter(event.value)

    def apply_filter(self, pattern: str) -> bool:
        """Filter the view by a regex (smart case: any capital makes it case-sensitive)."""
        if not pattern:
            self.clear_filter()
            return True
        flags = 0 if any(c.isupper() for c in pattern) else re.IGNORECASE
        try:
            rx = re.compile(pattern, flags)
        except (re.error, RecursionError, OverflowError, ValueError) as exc:
            msg = one_line(f"invalid regex: {exc}", 200)
            self._message = msg
            self.notify(msg, severity="error", markup=False)
            self._update_status(force=True)
            return False
        self._message = ""
        self.view.set_filter(rx)
        self.remove_class("-filtering")
        self.view.focus()
        self._update_status(force=True)
        return True

    def on_key(self, event: Key) -> None:
        if event.key == "escape" and self.has_class("-filtering"):
            event.stop()
            event.prevent_default()
            self.clear_filter()

    def action_clear_filter(self) -> None:
        if self.view.filter is None and not self.has_class("-filtering"):
            raise SkipAction()  # nothing to clear: let Esc mean something to the app
        self.clear_filter()

    def clear_filter(self) -> None:
        self.remove_class("-filtering")
        self._message = ""
        self.view.set_filter(None)
        self.view.focus()
        self._update_status(force=True)

    def action_next_match(self) -> None:
        self._jump(True)

    def action_prev_match(self) -> None:
        self._jump(False)

    def _jump(self, forward: bool) -> None:
        if self.view.filter is None:
            self._message = "no filter: press / first"
        elif self.view.jump(forward) is None:
            self._message = "no match"
        else:
            self._message = ""
            self._pause()
        self._update_status(force=True)

    def _pause(self) -> None:
        self.view.following = False  # lines held from now on (counted from 0: see _resume)

    def _resume(self) -> None:
        """Follow again: the held lines first, then the last line on screen at once."""
        held = list(self._held)
        self._held.clear()
        self._new_while_paused = 0
        self.view.following = True
        self.view.append(held)
        self.view.stick()
        self._update_status(force=True)

    def on_log_view_paused(self, event: LogView.Paused) -> None:
        event.stop()
        self._update_status(force=True)

    def on_log_view_resume_requested(self, event: LogView.ResumeRequested) -> None:
        event.stop()
        self._resume()

    def action_toggle_follow(self) -> None:
        if self.follow:
            self._pause()
            self._update_status(force=True)
        else:
            self._resume()

    def action_toggle_timestamps(self) -> None:
        self.view.show_ts = not self.view.show_ts
        self.view.restyle()
        self._update_status(force=True)

    def action_toggle_wrap(self) -> None:
        self.view.wrap = not self.view.wrap
        self.view.restyle()
        self._update_status(force=True)

    def action_save(self) -> None:
        lines = self.view.lines()
        if not lines:
            self._message = "nothing to save"
            self._update_status(force=True)
            return
        merged = self.view.merged
        name = "all" if merged else (self.label or "logs")
        text = "".join(
            (f"{iso_ts(ln.ts)} {one_line(ln.service, 64)} | {ln.text}\n" if merged
             else f"{iso_ts(ln.ts)} {ln.text}\n") for ln in lines)
        self._save(name, text, len(lines))

    @work(thread=True, exclusive=True, group="log-save", exit_on_error=False)
    def _save(self, name: str, text: str, count: int) -> None:
        folder = logs_dir()
        try:
            path: Path | None = save_text(folder, name, text)
            message = f"saved {count} lines to {path}"
        except OSError as exc:
            path = None
            message = (f"could not save the log in {folder}: "
                       f"{exc.strerror or type(exc).__name__}")
        try:
            self.app.call_from_thread(self._saved, path, message)
        except RuntimeError:  # the app is already gone
            pass

    def _saved(self, path: Path | None, message: str) -> None:
        self.saved_path = path
        # quotes a path ($XDG_STATE_HOME comes from the environment): cleaned, but whole
        message = one_line(message, MESSAGE_MAX)
        self._message = message
        self.notify(message, severity="information" if path else "error", markup=False)
        self._update_status(force=True)


def logs_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where saved views go: `$XDG_STATE_HOME/genai-tui/logs`, by default
    `~/.local/state/genai-tui/logs` — the user's own state, since the config's folder may
    be read-only (/etc). A relative `XDG_STATE_HOME` is ignored, as the XDG spec says."""
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME") or ""
    if not os.path.isabs(base):
        home = env.get("HOME") or str(Path.home())
        base = os.path.join(home, ".local", "state")
    return Path(base) / "genai-tui" / "logs"


def save_text(folder: Path, name: str, text: str) -> Path:
    """Write `text` to `<folder>/<name>-<UTC time>.log`: folder 0700, file 0600,
    atomically (a temp file in the same folder, fsync, rename) and never over an
    existing file."""
    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "logs"
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".log", dir=folder)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        for i in range(1000):
            target = folder / (f"{safe}-{stamp}.log" if i == 0 else f"{safe}-{stamp}-{i}.log")
            try:
                os.link(tmp, target)  # fails if it exists: never overwrite
            except FileExistsError:
                continue
            except OSError:  # no hard links on this file system
                if target.exists():
                    continue
                os.replace(tmp, target)
                return target
            os.unlink(tmp)
            return target
        raise FileExistsError(f"no free file name for {safe}-{stamp}")
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
