"""Cross-source joins, written once and used by every face.

A source knows one world (Docker, HTTP, files, NVML); a conclusion that needs two of them
lives here, so `check`, `tokens status` and the dashboard cannot draw it differently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from genai_tui import diagnose
from genai_tui.config import Config
from genai_tui.model import (
    ContainerInfo,
    Finding,
    GpuReport,
    LogEvent,
    ProbeResult,
    ServerTokenStatus,
    Snapshot,
    TokensReport,
)
from genai_tui.sources import tokens as tk

if TYPE_CHECKING:
    from genai_tui.sources.gpu import NvmlSource

#: finding codes about the credential: what `tokens status` reports and exits by
TOKEN_CODES = frozenset({"token_drift", "token_file_problem", "token_file_missing",
                         "token_stale", "token_rejected", "password_missing",
                         "world_readable"})


class FindingHistory:
    """When each finding was first seen, across the snapshots of one live engine: a
    finding whose snapshot cannot date it (a port that stopped answering, drift) gets
    `since` = the first snapshot it held in; one that stops holding is forgotten, so a
    recurrence starts afresh. A dated finding (a container's finish) keeps its own date."""

    def __init__(self) -> None:
        self._first: dict[tuple[str, str | None, tuple[str, ...]], datetime] = {}

    def stamp(self, found: Sequence[Finding], at: datetime) -> list[Finding]:
        seen: dict[tuple[str, str | None, tuple[str, ...]], datetime] = {}
        out = []
        for f in found:
            key = (f.code, f.service, f.paths)
            first = seen.get(key) or self._first.get(key) or at
            seen[key] = first
            out.append(f if f.since is not None else replace(f, since=first))
        self._first = seen
        return out


def servers(report: TokensReport, probes: Sequence[ProbeResult],
            log_events: Sequence[LogEvent]) -> list[ServerTokenStatus]:
    """Per ComfyUI service: does the running server use the hash on disk? From the Bearer
    probe (authoritative) and the last token line logged since the container's start."""
    return tk.server_status(report, probes, log_events)


def mark_loops(containers: Sequence[ContainerInfo], config: Config, at: datetime) -> None:
    """Flag restart loops a single look can see (restart count within the window); the
    live monitor also counts the restarts it watched happen."""
    for c in containers:
        c.looping = c.looping or diagnose.is_looping(c, config, at)


def gpu(source: NvmlSource | None, containers: Sequence[ContainerInfo],
        probes: Sequence[ProbeResult], *, remote: bool = False) -> GpuReport:
    """NVML's view with each GPU process's owning container or service (PIDs joined with
    the container listing), else what each ComfyUI's /system_stats says."""
    from genai_tui.sources import gpu as gpu_source

    return gpu_source.gpu_report(source, containers, probes, remote=remote)


def findings(snap: Snapshot, config: Config, now: datetime | None = None,
             history: FindingHistory | None = None) -> list[Finding]:
    """`diagnose` over the whole snapshot: the one place findings are made; with the
    live engine's `history`, each undated finding says since when it holds."""
    now = now or datetime.now(UTC)
    found = diagnose.diagnose(snap, config, now)
    return history.stamp(found, now) if history is not None else found


def token_findings(snap: Snapshot, config: Config) -> list[Finding]:
    """Only the findings about the credential (what `tokens status` shows)."""
    return [f for f in findings(snap, config) if f.code in TOKEN_CODES]
