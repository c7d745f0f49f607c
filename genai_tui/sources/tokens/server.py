"""Does the running server use the credential on disk, and restarting it so it does.

ComfyUI-Login reads PASSWORD only at start-up, so a unified file changes nothing until
the container restarts. This module joins the tokens report with the Bearer probes and
the token line a server logs at start (`For direct API calls, use token=`) into one
verdict per ComfyUI service, reads that line from a container's logs for `check` and
`tokens status`, restarts the services named after a unify and re-probes them until
the restart is proven. It reads the report (`read`); it never writes a token file.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from genai_tui.config import Config
from genai_tui.model import LogEvent, ProbeResult, ServerTokenStatus, TokensReport
from genai_tui.sources.tokens.read import canonical_hash, scrub


def token_fingerprint_from_log(text: str) -> str | None:
    """Fingerprint of the hash in the last `For direct API calls, use token=` line (the one
    in force for the latest start), or None."""
    event = _last_token_event("", text, None)
    return event.fingerprint if event is not None else None


def _last_token_event(service: str, text: str, at: datetime | None) -> LogEvent | None:
    """The last token line of a log, parsed the way the log panel parses it."""
    from genai_tui.sources import logtext

    last: LogEvent | None = None
    for line in re.split(r"[\r\n]", text):
        if "use token=" in line:
            ev = logtext.log_event(service, line, at)
            if ev is not None and ev.kind == "token":
                last = ev
    return last


def _canonical_fp(report: TokensReport) -> str | None:
    c = next((s for s in report.locations if s.canonical), None)
    return c.fingerprint if c is not None and c.state == "ok" else None


_PROBE_WORDS = {
    "enforced": (True, "the hash on disk is accepted (200)"),
    "rejected": (False, "the hash on disk is refused (401): restart needed"),
    "no_password": (None, "no PASSWORD loaded: first-login state"),
    "disabled": (None, "auth is not enforced"),
    "unknown": (None, "the probe could not tell"),
}


def server_status(report: TokensReport, probes: Sequence[ProbeResult],
                  log_events: Sequence[LogEvent]) -> list[ServerTokenStatus]:
    """Per ComfyUI service: does the running server use the hash on disk? From the Bearer
    probe (authoritative) and the last token line logged since the container's start."""
    disk = _canonical_fp(report)
    by_fp = {fp: names for fp, names in report.fingerprints.items()}
    services: list[str] = []
    for p in probes:
        if p.auth is not None and p.service not in services:
            services.append(p.service)
    last_log: dict[str, LogEvent] = {}
    for ev in log_events:
        if ev.kind != "token" or not ev.fingerprint:
            continue
        prev = last_log.get(ev.service)
        if prev is None or prev.at is None or ev.at is None or ev.at >= prev.at:
            last_log[ev.service] = ev
        if ev.service not in services:
            services.append(ev.service)
    out = []
    for name in services:
        probe = next((p for p in probes if p.service == name and p.auth is not None), None)
        ev = last_log.get(name)
        verdict_p: bool | None = None
        parts = []
        source = []
        if probe is not None and probe.outcome == "ok" and probe.auth in _PROBE_WORDS:
            verdict_p, words = _PROBE_WORDS[probe.auth]
            parts.append("probe: " + words)
            source.append("probe")
        elif probe is not None:
            parts.append(f"probe: {probe.outcome}")
        verdict_l: bool | None = None
        if ev is not None and ev.fingerprint:
            source.append("log")
            if disk is None:
                parts.append(f"log: token {ev.fingerprint} (no valid hash on disk to compare)")
            elif ev.fingerprint == disk:
                verdict_l = True
                parts.append("log: started with the hash on disk")
            else:
                verdict_l = False
                holders = by_fp.get(ev.fingerprint)
                where = f" (as in {', '.join(holders)})" if holders else ""
                parts.append(f"log: started with {ev.fingerprint}{where}: restart needed")
        verdict = verdict_p if verdict_p is not None else verdict_l
        out.append(ServerTokenStatus(service=name, uses_disk_hash=verdict,
                                     source="+".join(source), log_fingerprint=(
                                         ev.fingerprint if ev else None),
                                     detail="; ".join(parts)))
    return out


# ---------------------------------------------------------------- restart and re-probe


def restart_services(config: Config, names: Sequence[str]) -> list[tuple[str, bool, str]]:
    """Restart the named services' containers (ComfyUI-Login reads PASSWORD only at
    start-up). (name, ok, detail) per service; never raises; each restart is bounded by
    the configured Docker timeout and stop timeout."""
    from genai_tui.sources.docker import DockerSource

    out: list[tuple[str, bool, str]] = []
    source = DockerSource(config)
    try:
        for name in names:
            svc = config.service(name)
            if svc is None:
                out.append((name, False, "not a configured service"))
            elif svc.runtime != "docker":
                out.append((name, False, "not a Docker service: restart it by hand"
                            + (f" ({svc.restart_command})" if svc.restart_command else "")))
            else:
                ok, detail = source.restart(svc)
                out.append((name, ok, scrub(detail)))
    finally:
        source.close()
    return out


def probe_after_restart(config: Config, names: Sequence[str], *, wait: float = 60.0,
                        stop: threading.Event | None = None) -> list[ProbeResult]:
    """Probe the services with the hash now on disk until each gives a clear auth verdict
    (or `wait` seconds pass): `enforced` proves the restart loaded the new hash."""
    import time

    from genai_tui.sources import probes

    hash_ = canonical_hash(config.tokens)
    services = tuple(s for s in config.services if s.name in names)
    deadline = time.monotonic() + wait
    pending = list(services)
    results: dict[str, ProbeResult] = {}
    while pending:
        for r in probes.probe_once(config.with_services(tuple(pending)), hash_):
            results[r.service] = r
        pending = [s for s in pending if not _settled(results[s.name])]
        if not pending or time.monotonic() >= deadline or (stop is not None and stop.is_set()):
            break
        time.sleep(0.5)
    return [results[s.name] for s in services if s.name in results]


def _settled(r: ProbeResult) -> bool:
    if r.auth is None:
        return r.outcome == "ok"
    return r.outcome == "ok" and r.auth in ("enforced", "rejected", "disabled", "no_password")


def log_events_for_check(config: Config, docker_source: Any,
                         containers: Sequence[Any]) -> list[LogEvent]:
    """The token line in force for each running ComfyUI container, read once from its logs
    since its last start (bounded), for `check` and `tokens status`."""
    out: list[LogEvent] = []
    running = {c.service: c for c in containers if getattr(c, "running", False) and c.id}
    for svc in config.services:
        info = running.get(svc.name)
        if svc.kind != "comfyui" or svc.runtime != "docker" or info is None:
            continue
        try:
            text = _logs_since_start(docker_source.reader(), info.id, info.started_at)
        except Exception:  # an engine hiccup only costs this hint
            continue
        last = _last_token_event(svc.name, text, info.started_at)
        if last is not None:
            out.append(last)
    return out


LOG_SCAN_BYTES = 8 << 20


def _logs_since_start(client: Any, container_id: str, started_at: datetime | None) -> str:
    # follow defaults to stream in docker-py: say no, or this never ends
    kwargs: dict[str, Any] = {"stdout": True, "stderr": True, "stream": True, "follow": False}
    if started_at is not None:
        kwargs["since"] = max(1, int(started_at.timestamp()))
    stream = client.api.logs(container_id, **kwargs)
    buf = bytearray()
    try:
        for chunk in stream:
            buf += chunk
            if len(buf) >= LOG_SCAN_BYTES:
                break
    finally:
        with contextlib.suppress(Exception):
            stream.close()
    return buf.decode("utf-8", "replace")
