"""The stored log line and the diagnosis events kept beside it.

`LogLine` is what every follower stores and the panel draws: already sanitised, redacted
and classified lazily, the first time its text or kind is asked for (a flood's lines
mostly scroll by unseen). `RecentEvents` keeps the newest diagnosis events of each
(service, kind) so a flood of one kind cannot push out another. No I/O here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from genai_tui.model import LogEvent
from genai_tui.sources.logtext import Redactor, classify

#: LogLine.kind of the lines the follower writes itself (restarts, removal)
META = "meta"
#: diagnosis events kept per (service, kind)
EVENTS_PER_KIND = 50


#: `LogLine.kind` not worked out yet
LATER: Any = object()


class LogLine:
    """One stored line, already sanitised (no byte of it can drive a terminal).

    Two things are done the first time they are asked for rather than for every line
    read, because a flood's lines mostly scroll by unseen: redaction (`text` goes through
    the follower's `Redactor` before anything — drawing, saving, searching, a test — can
    read it; the hub's newest secrets apply) and the highlight class (`kind`: a
    logtext.KINDS value, META or None, from the redacted text). The follower decides the
    class up front where it depends on context (traceback continuations) or comes with a
    diagnosis event. Only the UI thread reads lines, so the lazy steps need no lock."""

    __slots__ = ("ts", "service", "hint", "_text", "_kind", "_redactor")

    def __init__(self, ts: int, service: str, text: str, kind: Any = LATER,
                 redactor: Redactor | None = None) -> None:
        self.ts = ts  # ns since the epoch (UTC) as Docker stamped it; 0 when unknown
        self.service = service
        self.hint = len(text)  # width before redaction: the view's first guess
        self._text = text
        self._kind = kind
        self._redactor = redactor  # None once `text` is final

    @property
    def text(self) -> str:
        redactor = self._redactor
        if redactor is not None:
            self._text = redactor.redact(self._text)
            self._redactor = None
        return self._text

    @property
    def kind(self) -> str | None:
        kind = self._kind
        if kind is LATER:
            kind = self._kind = classify(self.text)
        return kind

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LogLine):
            return NotImplemented
        return (self.ts, self.service, self.text, self.kind) == (
            other.ts, other.service, other.text, other.kind)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"LogLine(ts={self.ts}, service={self.service!r}, text={self.text!r}, "
                f"kind={self.kind!r})")


class RecentEvents:
    """Diagnosis events, the newest `per_kind` of each (service, kind): a flood of one kind
    (a job finishing every millisecond) cannot push out the token line of start-up."""

    def __init__(self, per_kind: int = EVENTS_PER_KIND) -> None:
        self.per_kind = per_kind
        self._by_kind: dict[tuple[str, str], deque[LogEvent]] = {}

    def __len__(self) -> int:
        return sum(map(len, self._by_kind.values()))

    def extend(self, events: Iterable[LogEvent]) -> None:
        for ev in events:
            q = self._by_kind.get((ev.service, ev.kind))
            if q is None:
                q = self._by_kind[(ev.service, ev.kind)] = deque(maxlen=self.per_kind)
            q.append(ev)

    def list(self) -> list[LogEvent]:
        """All kept events, oldest first."""
        out = [ev for q in self._by_kind.values() for ev in q]
        out.sort(key=lambda ev: ev.at.timestamp() if ev.at else 0.0)
        return out

    def take(self) -> list[LogEvent]:
        out = self.list()
        self._by_kind.clear()
        return out
