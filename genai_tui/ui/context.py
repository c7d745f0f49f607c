"""What every panel is handed: the config, the read-only flag and the shared snapshot."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from genai_tui.config import Config
from genai_tui.model import Snapshot


@dataclass
class AppContext:
    config: Config
    readonly: bool = False
    #: False in tests and snapshots: panels render what they are given and poll nothing
    live: bool = True
    snapshot: Snapshot = field(default_factory=Snapshot)
    #: called on the UI thread by a panel with fresh data for one part of the snapshot
    #: ("containers", "docker", "probes", "tokens", "gpu", "host", "log_events");
    #: the app stores it and re-derives the findings.
    on_publish: Callable[[str, Any], None] | None = None

    def publish(self, part: str, value: Any) -> None:
        setattr(self.snapshot, part, value)
        if self.on_publish is not None:
            self.on_publish(part, value)
