"""One snapshot, gathered once: `genai-tui check`, `tokens status` and anything else that
wants the stack's state without a UI. Bounded by the probe and Docker timeouts.

The live `Stack` (engine.live) gathers the same parts continuously; both derive and
diagnose through `engine.derive`, so the faces agree on every finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from genai_tui.config import Config, ServiceConfig
from genai_tui.engine import derive
from genai_tui.model import ContainerInfo, DockerStatus, LogEvent, Snapshot
from genai_tui.sources import tokens as tk


def collect_once(config: Config) -> Snapshot:
    """Everything the dashboard knows, gathered once, with its findings."""
    from genai_tui.sources import gpu, host, probes
    from genai_tui.sources.jobs import attach_nvml, collect_jobs
    from genai_tui.sources.process import ProcessSource

    snap = Snapshot(taken_at=datetime.now(UTC))
    with ThreadPoolExecutor(max_workers=4) as pool:
        host_future = pool.submit(host.collect, config)
        # one HTTP round of queue detail per ComfyUI (no websocket: a check is one look)
        jobs_future = pool.submit(lambda: collect_jobs(config, tk.canonical_hash(config.tokens)))
        tokens_future = pool.submit(tk.read_report, config.tokens)
        processes = pool.submit(ProcessSource(config).list_stack)
        snap.docker, docker_infos, events = _docker_part(config, config.services)
        by_service = {c.service: c for c in docker_infos}
        by_service.update((c.service, c) for c in processes.result())
        # with the engine down the Docker services are still there, their state unknown
        snap.containers = [
            by_service.get(s.name) or ContainerInfo(s.name, s.container_name, state="unknown")
            for s in config.services]
        derive.mark_loops(snap.containers, config, snap.taken_at)
        snap.tokens = tokens_future.result()
        snap.probes = probes.probe_once(config, tk.canonical_hash(config.tokens))
        snap.log_events = events
        snap.tokens.servers = derive.servers(snap.tokens, snap.probes, snap.log_events)
        source = gpu.NvmlSource() if not gpu.is_remote_docker(config.docker.host) else None
        try:
            snap.gpu = derive.gpu(source, snap.containers, snap.probes,
                                  remote=source is None)
        finally:
            if source is not None:
                source.close()
        snap.host = host_future.result()
        try:
            snap.jobs = attach_nvml(jobs_future.result(), snap.gpu)
        except Exception:  # the queue detail never hides the rest of the check
            snap.jobs = None
    snap.findings = derive.findings(snap, config)
    return snap


def collect_tokens(config: Config, *, servers: bool = True) -> Snapshot:
    """The credential's part of a snapshot (`tokens status`): every copy, and with
    `servers` whether each ComfyUI runs with the hash on disk (a Bearer probe and the
    token line it logged since its start). Findings are the token findings only."""
    from genai_tui.sources import probes

    snap = Snapshot(taken_at=datetime.now(UTC))
    snap.tokens = tk.read_report(config.tokens)
    comfy = tuple(s for s in config.services if s.kind == "comfyui")
    if servers and comfy:
        scoped = config.with_services(comfy)
        try:
            snap.probes = probes.probe_once(scoped, tk.canonical_hash(config.tokens))
        except Exception:  # never let a probe failure hide the file status
            snap.probes = []
        snap.docker, snap.containers, snap.log_events = _docker_part(scoped, comfy)
        snap.tokens.servers = derive.servers(snap.tokens, snap.probes, snap.log_events)
    snap.findings = derive.token_findings(snap, config)
    return snap


def _docker_part(config: Config, wanted: Sequence[ServiceConfig]
                 ) -> tuple[DockerStatus, list[ContainerInfo], list[LogEvent]]:
    """(engine status, container infos, each running ComfyUI's token line since its
    start). The Docker client is open only while this runs."""
    from genai_tui.sources.docker import DockerSource, describe_error

    if not any(s.runtime == "docker" for s in wanted):
        return DockerStatus(), [], []
    source = DockerSource(config)
    try:
        status = source.status()
        if not status.reachable:
            return status, [], []
        try:
            infos = source.list_stack()
        except Exception as exc:
            return DockerStatus(False, f"Docker engine unreachable: {describe_error(exc)}"), \
                [], []
        try:
            events = tk.log_events_for_check(config, source, infos)
        except Exception:  # an engine hiccup only costs the log evidence
            events = []
        return status, infos, events
    finally:
        source.close()
