"""The timeline: the event history, newest first, over the dashboard.

Filters by service (`s`), kind (`k`) and severity (`v`) cycle through what there is; each
row says when in two ways ("3 min ago · 22:12:04", the absolute time in the local zone).
Enter on a row follows that service's log and scrolls it to that moment when the log still
holds it. The store is read on a worker thread: a slow or locked file never freezes the
screen, and a history that is off says why instead of showing an empty table.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from genai_tui.engine.history import GROUPS, Event
from genai_tui.ui import stylesheets
from genai_tui.ui.render import notify_plain, plain

#: how many events the screen loads at most (newest first)
LIMIT = 500
#: how often an open timeline reloads (only while it is on screen)
RELOAD_EVERY = 2.0
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "dim"}
SEVERITY_FILTERS: tuple[str | None, ...] = (None, "warning", "critical")
#: a table at least this wide gives the service a column of its own
WIDE = 90


class EventSource(Protocol):
    """What the screen reads: an `EventStore` (or anything shaped like one)."""

    mode: str

    @property
    def status(self) -> str: ...

    def events(self, **filters: Any) -> list[Event]: ...


def relative(ts: float, now: float) -> str:
    """`12 s ago`, `3 min ago`, `2 h ago`, `4 d ago` (`in 5 s` for a clock ahead)."""
    delta = now - ts
    if delta < 0:
        return f"in {int(-delta)} s"
    if delta < 60:
        return f"{int(delta)} s ago"
    if delta < 3600:
        return f"{int(delta // 60)} min ago"
    if delta < 86400:
        return f"{int(delta // 3600)} h ago"
    return f"{int(delta // 86400)} d ago"


def absolute(ts: float, now: float) -> str:
    """The time in the local zone; with the date when it is not today."""
    at = datetime.fromtimestamp(ts).astimezone()
    today = datetime.fromtimestamp(now).astimezone().date()
    return at.strftime("%H:%M:%S" if at.date() == today else "%Y-%m-%d %H:%M:%S")


def when(ts: float, now: float) -> str:
    """"3 min ago · 22:12:04"."""
    return f"{relative(ts, now)} · {absolute(ts, now)}"


class TimelineScreen(ModalScreen[None]):
    """The history of the stack; `show_log(service, ts)` is what Enter calls."""

    DEFAULT_CSS = stylesheets.read("screens.tcss")
    BINDINGS = [
        Binding("escape,q,h", "close", "Close", show=False),
        Binding("s", "cycle('service')", "Service filter", show=False),
        Binding("k", "cycle('kind')", "Kind filter", show=False),
        Binding("v", "cycle('severity')", "Severity filter", show=False),
        Binding("x", "clear_filters", "Clear filters", show=False),
    ]

    def __init__(self, store: EventSource | None, services: Sequence[str] = (), *,
                 show_log: Callable[[str, float], None] | None = None,
                 now: Callable[[], float] = time.time, live: bool = True,
                 reason: str | None = None) -> None:
        super().__init__()
        self.store = store
        self.services = list(services)
        self.show_log = show_log
        self.now = now
        self.live = live
        self.reason = reason
        self.filters: dict[str, str | None] = {"service": None, "kind": None,
                                               "severity": None}
        self.events: list[Event] = []
        self.loads = 0
        self._loading = False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="timeline-head")
            yield Static(id="timeline-status")
            table: DataTable[Any] = DataTable(id="timeline-table", cursor_type="row",
                                              zebra_stripes=True)
            yield table

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.focus()
        self._head()
        self.run_worker(self.reload(), group="timeline-load", exclusive=True)
        if self.live:
            self.set_interval(RELOAD_EVERY, self._tick)

    # -- data
    def _tick(self) -> None:
        if not self._loading:
            self.run_worker(self.reload(), group="timeline-load", exclusive=True)

    async def reload(self) -> None:
        """Read the store off the UI thread, then redraw."""
        self._loading = True
        try:
            store = self.store
            filters = {k: v for k, v in self.filters.items() if v}
            events: list[Event] = []
            if store is not None and store.mode != "off":
                events = await asyncio.to_thread(store.events, limit=LIMIT, **filters)
            self.events = events
            self._draw()
            self.loads += 1
        finally:
            self._loading = False

    def _draw(self) -> None:
        table = self.query_one(DataTable)
        keep = table.cursor_row
        # the columns fit the width: "What" takes the rest; below WIDE the service
        # leads the text instead of having a column of its own
        width = table.size.width or self.app.size.width - 8
        wide = width >= WIDE
        fixed = [("When", 22), ("Kind", 13)] + ([("Service", 20)] if wide else [])
        what = max(20, width - sum(w + 2 for _, w in fixed) - 3)
        table.clear(columns=True)
        for label, w in fixed:
            table.add_column(label, key=label.lower(), width=w)
        table.add_column("What", key="what", width=what)
        now = self.now()
        for e in self.events:
            style = SEVERITY_STYLE.get(e.severity, "")
            text = plain(e.text if wide or not e.service else f"{e.service}: {e.text}", 300,
                         "bold red" if e.severity == "critical" else "", no_wrap=True)
            cells = [plain(when(e.ts, now), 40), plain(e.kind.replace("_", " "), 20, style)]
            if wide:
                cells.append(plain(e.service or "-", 40, no_wrap=True))
            table.add_row(*cells, text, key=str(e.id))
        if self.events:
            table.move_cursor(row=min(keep, len(self.events) - 1))
        self._head()

    def _head(self) -> None:
        head = Text.assemble(("Timeline", "bold"), f"  {len(self.events)} event(s), newest "
                             "first")
        for k, v in self.filters.items():
            head.append("  ·  ")
            head.append_text(plain(f"{k}: {v or 'all'}", 80, "bold" if v else ""))
        keys = Text("s service · k kind · v severity · x clear · Enter log · Esc close",
                    style="dim")
        self.query_one("#timeline-head", Static).update(Text("\n").join([head, keys]))
        store = self.store
        if store is None:
            status = f"history off: {self.reason or 'not started'}"
        else:
            status = store.status
        if not self.events and store is not None and store.mode != "off":
            status += "  —  no event matches" if any(self.filters.values()) \
                else "  —  no event yet"
        self.query_one("#timeline-status", Static).update(plain(status, 300))

    # -- keys
    def action_close(self) -> None:
        self.dismiss(None)

    def action_cycle(self, what: str) -> None:
        if what == "service":
            seen = [e.service for e in self.events if e.service]
            choices: list[str | None] = [None, *dict.fromkeys(self.services + seen)]
        elif what == "kind":
            choices = [None, *GROUPS]
        else:
            choices = list(SEVERITY_FILTERS)
        current = self.filters.get(what)
        i = choices.index(current) if current in choices else 0
        self.filters[what] = choices[(i + 1) % len(choices)]
        self._head()
        self.run_worker(self.reload(), group="timeline-load", exclusive=True)

    def action_clear_filters(self) -> None:
        self.filters = dict.fromkeys(self.filters)
        self.run_worker(self.reload(), group="timeline-load", exclusive=True)

    def on_resize(self) -> None:
        if self.loads:
            self._draw()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        key = event.row_key.value
        chosen = next((e for e in self.events if str(e.id) == key), None)
        if chosen is None:
            return
        if not chosen.service or chosen.service not in self.services:
            notify_plain(self.app, "this event is about no one service: no log to show",
                         severity="warning", timeout=3)
            return
        show, service, ts = self.show_log, chosen.service, chosen.ts
        self.dismiss(None)
        if show is not None:
            show(service, ts)


def show_log_at(app: Any, service: str, ts: float) -> None:
    """Follow `service`'s log (the app's own `show_logs`) and put the line logged at
    `ts` (or the first after it) a third of the way down, following paused; says so when
    the log no longer goes back that far."""
    from genai_tui.ui.logs import LogPanel

    app.show_logs(service)
    panel = app.screen_stack[0].query_one(LogPanel)
    view = panel.view
    lines = view.lines()
    target_ns = int(ts * 1_000_000_000)
    stamped = [ln for ln in lines if ln.ts > 0]
    if not stamped:
        notify_plain(app, f"{service}: the log holds no timestamped line", timeout=3)
        return
    if stamped[0].ts > target_ns + 1_000_000_000:
        notify_plain(app, f"{service}: the log no longer goes back to "
                     f"{absolute(ts, time.time())} (oldest line "
                     f"{absolute(stamped[0].ts / 1e9, time.time())})",
                     severity="warning", timeout=5)
        return
    index = next((i for i, ln in enumerate(lines) if ln.ts >= target_ns - 1_000_000_000),
                 len(lines) - 1)
    seq = view.first_seq + index
    if panel.follow:
        panel.action_toggle_follow()  # paused: new lines must not scroll the moment away
    if not view.show_ts:
        panel.action_toggle_timestamps()
    panel.jumped_to = seq  # where the timeline put it (tests, and a later highlight)

    def scroll() -> None:
        row = view.row_of(seq)
        if row is None:
            return
        height = view.scrollable_content_region.height or view.size.height
        view.scroll_to(y=max(0, row - height // 3), animate=False, immediate=True)
        view.refresh()

    app.call_after_refresh(scroll)
