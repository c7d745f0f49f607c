"""Poll chaining shared by the panels (dolphie style): a run, then a timer for the next one,
so polls never overlap, and "now" during a run means "once more right after it"."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from textual.timer import Timer
from textual.widget import Widget

T = TypeVar("T")
log = logging.getLogger(__name__)


class Poller(Generic[T]):
    """Runs `collect` (awaited in a worker of `widget`), hands the result to `deliver` on the
    UI thread, then waits `interval` seconds (or `next_delay()` when given)."""

    def __init__(self, widget: Widget, name: str, collect: Callable[[], Awaitable[T]],
                 deliver: Callable[[T], None], interval: float, *,
                 on_error: Callable[[Exception], None] | None = None,
                 next_delay: Callable[[], float] | None = None) -> None:
        self.widget = widget
        self.name = name
        self.collect = collect
        self.deliver = deliver
        self.interval = interval
        self.on_error = on_error
        self.next_delay = next_delay
        self.in_flight = False
        self._again = False
        self._closed = False
        self._timer: Timer | None = None

    def now(self) -> None:
        """Poll now, or right after the poll in progress (never two at once)."""
        if self._closed:
            return
        if self.in_flight:
            self._again = True
            return
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.in_flight = True
        self.widget.run_worker(self._run(), name=self.name, group=self.name,
                               exclusive=True, exit_on_error=False)

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    async def _run(self) -> None:
        try:
            result = await self.collect()
            if not self._closed:
                self.deliver(result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in one panel must not kill the dashboard
            log.error("%s failed: %s", self.name, type(exc).__name__)
            if self.on_error is not None and not self._closed:
                self.on_error(exc)
        finally:
            self.in_flight = False
            if not self._closed and self.widget.is_attached:
                if self._again:
                    self._again = False
                    self.widget.call_later(self.now)
                else:
                    delay = self.next_delay() if self.next_delay else self.interval
                    self._timer = self.widget.set_timer(delay, self.now)


def in_thread(fn: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """`collect` for a blocking function: run it in a thread."""

    async def run() -> T:
        return await asyncio.to_thread(fn)

    return run
