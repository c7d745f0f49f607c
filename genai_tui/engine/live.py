"""The live stack: one owner for every monitor, poll and log stream.

`Stack` runs on one asyncio loop — the dashboard's own (an App-level worker), or a thread
of its own for headless faces (`start()`). Everything it learns is applied to one
`Snapshot` on that loop, then subscribers hear which part changed (`Change`). Findings
are re-derived once per burst of changes (debounced), so a panel never computes them and
never reads another panel's data.

Schedules are the chained polls the dashboard always had: a round, then a wait, so two
rounds of one part never overlap, and "now" during a round means "once more right
after". Docker and process monitors keep their own threads (a blocking events stream),
and hand their news to the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from genai_tui.config import Config
from genai_tui.engine import derive
from genai_tui.model import (
    ContainerInfo,
    DockerStatus,
    GpuReport,
    HostInfo,
    LogEvent,
    ProbeResult,
    Snapshot,
    TokensReport,
)

if TYPE_CHECKING:
    from genai_tui.sources.gpu import NvmlSource
    from genai_tui.sources.logs import LogHub

log = logging.getLogger(__name__)

#: the parts of the snapshot a change can name
PARTS = ("containers", "docker", "probes", "tokens", "gpu", "host", "log_events", "findings",
         "jobs")
#: what a live stack can run: the monitors, each poll, the log streams and the job queues
LIVE_PARTS = ("containers", "probes", "tokens", "gpu", "host", "logs", "jobs")
#: log event kinds only the jobs sources need (progress bars, model loads): handed to them,
#: kept out of `log_events` so a running job does not re-derive findings per bar
JOB_ONLY_EVENTS = frozenset({"job_start", "job_progress", "job_interrupted", "model_load",
                             "model_loaded", "models_unloaded"})
#: the jobs part is published at most this often (progress frames can come 10×/s)
JOBS_PUBLISH = 0.5
#: how long a burst of changes may last before findings are re-derived
DIAGNOSE_DELAY = 0.2
#: at start, how long the other sources wait for the first container listing (seconds)
FIRST_LISTING_WAIT = 1.0
#: the GIL switch interval while the early listing runs beside Textual's import (5 ms by
#: default: the monitor thread waited up to that for the GIL after each read)
EARLY_SWITCH_INTERVAL = 0.0005
#: log events are collected this often; urgent ones are handed on at the next round, the
#: others (job_done…) at most once a second, so a job flood does not re-derive findings 10×/s
EVENTS_INTERVAL = 0.5
EVENTS_PUBLISH = 1.0
LOGS_SETTLE_ROUNDS = 4
URGENT_EVENTS = frozenset({"token", "no_password", "import_failed", "oom"})
#: seconds between two reads of the token files (bcrypt checks are cached)
TOKENS_INTERVAL = 5.0
#: how often the log redactor re-reads the secret values (they change on unify)
SECRETS_INTERVAL = 60.0


@dataclass(frozen=True)
class Change:
    """One part of the snapshot changed (the value is in `stack.snapshot`)."""

    part: str


Subscriber = Callable[[Change], None]


class _Chain:
    """A poll that never overlaps itself: run, wait `delay()`, run again; `now()` cuts
    the wait short (or asks for one more round right after the one in progress)."""

    def __init__(self, name: str, run: Callable[[], Awaitable[None]],
                 delay: Callable[[], float]) -> None:
        self.name = name
        self.run = run
        self.delay = delay
        self.wake = asyncio.Event()
        self.in_flight = False
        self.rounds = 0

    def now(self) -> None:
        self.wake.set()

    async def loop(self) -> None:
        while True:
            self.wake.clear()
            self.in_flight = True
            try:
                await self.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one broken part must not stop the others
                log.error("%s round failed: %s", self.name, type(exc).__name__)
            finally:
                self.in_flight = False
                self.rounds += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.delay())


class Stack:
    """The stack's live snapshot, kept current by every source.

    `monitors=False` starts no Docker/process monitor and no poll (tests and snapshots
    feed parts with `publish`); `parts` runs only some of them (`containers`, `probes`,
    `tokens`, `gpu`, `host`, `logs`); `nvml`, `host_reader` and `hub` replace the real
    readers (a fake NVML at the library boundary, fixed host values).
    """

    def __init__(self, config: Config, *, monitors: bool = True,
                 parts: Iterable[str] | None = None,
                 nvml: NvmlSource | None = None, host_reader: Any = None,
                 hub: LogHub | None = None) -> None:
        from genai_tui.sources import gpu
        from genai_tui.sources.tokens import StatusAuditor

        self.config = config
        self.parts = frozenset(LIVE_PARTS if parts is None else parts) if monitors \
            else frozenset()
        unknown = self.parts - set(LIVE_PARTS)
        if unknown:
            raise ValueError(f"unknown live parts: {', '.join(sorted(unknown))}")
        self.live = bool(self.parts)
        self.snapshot = Snapshot()
        self.remote_gpu = gpu.is_remote_docker(config.docker.host)
        self._nvml = nvml
        self._own_nvml = nvml is None
        self._host_reader = host_reader
        self._hub = hub
        self._subscribers: list[Subscriber] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._stop_event: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._chains: dict[str, _Chain] = {}
        self._diagnose_handle: asyncio.TimerHandle | None = None
        #: set by the first listing applied (asyncio binds it to a loop on first wait)
        self._first_listing = asyncio.Event()
        #: monitor news that came before the loop (start_early), replayed on it
        self._early: list[tuple[Callable[..., None], tuple[Any, ...]]] | None = None
        self._early_lock = threading.Lock()
        self._switch: float | None = None  # the GIL switch interval start_early changed
        self._infos: dict[str, ContainerInfo] = {}
        self._last_start: dict[str, Any] = {}
        self._events: Any = None
        self._events_dirty = False
        self._events_published = 0.0
        self._logs_rounds = 0
        self.diagnosed = 0  # how many times findings were derived
        self._history = derive.FindingHistory()  # since when each finding holds
        self._auditor = StatusAuditor(config.tokens.audit_log)
        self.monitor: Any = None
        self.processes: Any = None
        self.prober: Any = None
        self.jobs: Any = None  # sources.jobs.JobsWatcher while running
        self._jobs_latest: Any = None
        self._jobs_handle: asyncio.TimerHandle | None = None
        self._jobs_deadline: asyncio.TimerHandle | None = None
        self._jobs_published = 0.0
        self._jobs_token: tuple[float, str | None] = (-1e9, None)

    # ------------------------------------------------------------ subscribers

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Call `fn(Change)` on the stack's loop for every change; returns unsubscribe."""
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn) if fn in self._subscribers else None

    def _notify(self, part: str) -> None:
        change = Change(part)
        for fn in list(self._subscribers):
            try:
                fn(change)
            except Exception as exc:  # a face's bug must not stop the engine
                log.error("subscriber failed on %s: %s", part, type(exc).__name__)

    def publish(self, part: str, value: Any) -> None:
        """Set one part of the snapshot (on the stack's loop) and tell everyone. Sources
        call it through the loop; tests and the demo call it to feed fixed data."""
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}")
        setattr(self.snapshot, part, value)
        self._notify(part)
        if part == "findings":
            return
        if part in ("probes", "log_events") and self.snapshot.tokens is not None:
            # which hash each server uses is a join: recompute it as either side moves
            self.snapshot.tokens.servers = derive.servers(
                self.snapshot.tokens, self.snapshot.probes, self.snapshot.log_events)
            self._notify("tokens")
        self._schedule_diagnose()

    def _schedule_diagnose(self) -> None:
        loop = self._loop
        if loop is None:
            with contextlib.suppress(RuntimeError):
                loop = asyncio.get_running_loop()
        if loop is None:
            self.rediagnose()
            return
        if self._diagnose_handle is None:
            self._diagnose_handle = loop.call_later(DIAGNOSE_DELAY, self.rediagnose)

    def rediagnose(self) -> None:
        """Findings from the whole snapshot, once the first picture is there."""
        self._diagnose_handle = None
        snap = self.snapshot
        if not snap.containers and not snap.probes:
            return  # still gathering: no conclusion from half a picture
        snap.taken_at = datetime.now(UTC)
        self.diagnosed += 1
        self.publish("findings", derive.findings(snap, self.config, snap.taken_at,
                                                 history=self._history))

    # ------------------------------------------------------------ lifecycle

    @property
    def logs(self) -> LogHub:
        """The log hub (followers per service, merged view, events), made on first use."""
        if self._hub is None:
            from genai_tui.sources.logs import LogHub

            self._hub = LogHub(self.config)
        return self._hub

    async def run(self) -> None:
        """Run every monitor and poll on the current loop until cancelled or closed."""
        self._loop = asyncio.get_running_loop()
        if not self.live:
            await self._until_stopped()
            return
        if "containers" in self.parts:
            if self.monitor is None and self.processes is None:
                self._start_monitors()
            self._release_early(self._loop)
            # the containers table is the first thing an admin reads: let its listing in
            # before the rest (the probes, the log streams) starts on this loop
            if not self._first_listing.is_set() and (self.monitor is not None
                                                     or self.processes is not None):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._first_listing.wait(), FIRST_LISTING_WAIT)
        from genai_tui.sources.logs import RecentEvents
        from genai_tui.sources.probes import Prober

        self._events = RecentEvents()
        services = self.config.services
        self.prober = Prober(self.config.probes, max_connections=max(4, len(services)))
        if "jobs" in self.parts and self.config.jobs.enabled:
            self._start_jobs()
        chains = {
            "probes": _Chain("probes", self._probe_round,
                             lambda: self.config.probes.interval),
            "tokens": _Chain("tokens", self._tokens_round, lambda: TOKENS_INTERVAL),
            "gpu": _Chain("gpu", self._gpu_round, self._gpu_delay),
            "host": _Chain("host", self._host_round, self._host_delay),
            "logs": _Chain("log_events", self._events_round, lambda: EVENTS_INTERVAL),
        }
        self._chains = {c.name: c for key, c in chains.items() if key in self.parts}
        if "logs" in self.parts:
            for svc in services:  # every log stream, so token lines and OOMs are seen
                self.logs.follower(svc.name)
            self._chains["secrets"] = _Chain("secrets", self._secrets_round,
                                             lambda: SECRETS_INTERVAL)
        self._tasks = [asyncio.create_task(c.loop(), name=f"stack-{c.name}")
                       for c in self._chains.values()]
        try:
            await self._until_stopped()
        finally:
            await self._shutdown()

    async def _until_stopped(self) -> None:
        """Sleep until `close()`: an event, not a poll (idle costs nothing)."""
        self._stop_event = asyncio.Event()
        if not self._stopped.is_set():
            await self._stop_event.wait()

    def _signal_stop(self) -> None:
        self._stopped.set()
        event, loop = self._stop_event, self._loop
        if event is not None and loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(event.set)

    def start(self) -> None:
        """Headless faces: run the stack on a thread with a loop of its own."""
        def main() -> None:
            with contextlib.suppress(Exception):
                asyncio.run(self.run())

        self._thread = threading.Thread(target=main, name="genai-tui-stack", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Started with `start()`, its thread still running, and not closed."""
        return self._thread is not None and self._thread.is_alive() \
            and not self._stopped.is_set()

    def close(self, timeout: float = 3.0) -> None:
        """Stop everything; safe from any thread, and twice."""
        self._signal_stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._close_monitors()

    async def aclose(self) -> None:
        """Stop from the stack's own loop (the dashboard's unmount)."""
        self._signal_stop()
        await self._shutdown()

    async def _shutdown(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t
        self._tasks = []
        self._close_monitors()
        prober, self.prober = self.prober, None
        if prober is not None:
            with contextlib.suppress(Exception):
                await prober.aclose()

    def _close_monitors(self) -> None:
        for name in ("monitor", "processes", "jobs"):
            m = getattr(self, name)
            setattr(self, name, None)
            if m is not None:
                m.close(timeout=1.0)
        if self._hub is not None:
            self._hub.close()
        if self._nvml is not None and self._own_nvml:
            self._nvml.close()

    def _call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        with self._early_lock:
            if self._early is not None:  # started early: held until there is a loop
                self._early.append((fn, args))
                return
        loop = self._loop
        if loop is not None and not loop.is_closed() and not self._stopped.is_set():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(fn, *args)

    def start_early(self) -> None:
        """Start the Docker / process monitors now, before there is a loop: the dashboard
        calls it before importing Textual, so the first container listing overlaps the
        UI's imports and mount instead of following them. Their news waits, in order,
        for `deliver_early` or `run()`."""
        if "containers" not in self.parts or self._early is not None or self._loop:
            return
        self._early = []
        self._switch = sys.getswitchinterval()
        sys.setswitchinterval(EARLY_SWITCH_INTERVAL)
        self._start_monitors()

    def deliver_early(self) -> None:
        """From the loop `run()` will run on (the dashboard's mount): the early news now,
        not once the engine starts after the first frame (the table filled ~0.11 s after
        the first paint), and what follows it straight to this loop."""
        self._release_early(asyncio.get_running_loop())

    def _release_early(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._switch is not None:
            sys.setswitchinterval(self._switch)
            self._switch = None
        with self._early_lock:  # replayed first: news after them comes after
            early, self._early = self._early, None
            if early is None or self._stopped.is_set():
                return
            self._loop = loop
            for fn, args in early:
                loop.call_soon(fn, *args)

    # ------------------------------------------------------------ jobs

    def _start_jobs(self) -> None:
        from genai_tui.sources.jobs import JobsWatcher, comfy_services

        if not comfy_services(self.config):
            return
        self.jobs = JobsWatcher(self.config, self._token_for_jobs,
                                lambda report: self._call_soon(self.apply_jobs, report))
        self.jobs.start()

    def _token_for_jobs(self) -> str | None:
        """The canonical hash for the jobs sources' headers, re-read at most every
        TOKENS_INTERVAL (each source asks per request)."""
        from genai_tui.sources import tokens as tk

        at, value = self._jobs_token
        if time.monotonic() - at >= TOKENS_INTERVAL:
            try:
                value = tk.canonical_hash(self.config.tokens)
            except Exception:
                value = None
            self._jobs_token = (time.monotonic(), value)
        return value

    def apply_jobs(self, report: Any) -> None:
        """Jobs news (on the loop): published at most every JOBS_PUBLISH seconds."""
        self._jobs_latest = report
        if self._jobs_handle is not None:
            return
        wait = self._jobs_published + JOBS_PUBLISH - time.monotonic()
        if wait <= 0:
            self._publish_jobs()
        elif self._loop is not None:
            self._jobs_handle = self._loop.call_later(wait, self._publish_jobs)

    def _publish_jobs(self) -> None:
        from genai_tui.sources.jobs import attach_nvml, next_threshold

        self._jobs_handle = None
        self._jobs_published = time.monotonic()
        if self._jobs_latest is None:
            return
        self.publish("jobs", attach_nvml(self._jobs_latest, self.snapshot.gpu))
        # a job that stops moving changes nothing: re-derive when its threshold is crossed
        if self._jobs_deadline is not None:
            self._jobs_deadline.cancel()
            self._jobs_deadline = None
        wait = next_threshold(self._jobs_latest, self.config.jobs, datetime.now(UTC))
        if wait is not None and self._loop is not None:
            self._jobs_deadline = self._loop.call_later(wait + 0.05, self._schedule_diagnose)

    # ------------------------------------------------------------ containers

    def _start_monitors(self) -> None:
        from genai_tui.sources.docker import ContainerMonitor
        from genai_tui.sources.process import ProcessMonitor

        runtimes = {s.runtime for s in self.config.services}
        if "docker" in runtimes:
            self.monitor = ContainerMonitor(
                self.config, lambda st, infos: self._call_soon(self.apply_containers, st,
                                                               infos))
            self.monitor.start()
        if "process" in runtimes:
            self.processes = ProcessMonitor(
                self.config, lambda _st, infos: self._call_soon(self.apply_containers, None,
                                                                infos))
            self.processes.start()

    def apply_containers(self, status: DockerStatus | None,
                         infos: list[ContainerInfo]) -> None:
        """Monitor news (on the loop): merge, route starts to the log hub, publish."""
        self._first_listing.set()
        if status is not None:
            self.publish("docker", status)
            if not status.reachable:
                # the engine is down: its containers' state is unknown, not what we last saw
                infos = [ContainerInfo(s.name, s.container_name, state="unknown")
                         for s in self.config.services if s.runtime == "docker"]
        for info in infos:
            self._infos[info.service] = info
        # what one look can tell (restart count in the window), as collect_once does
        derive.mark_loops(infos, self.config, datetime.now(UTC))
        self._reopen_logs_of_started(infos)
        order = [s.name for s in self.config.services]
        self.publish("containers", sorted(self._infos.values(), key=lambda i: (
            order.index(i.service) if i.service in order else len(order))))

    def _reopen_logs_of_started(self, infos: list[ContainerInfo]) -> None:
        """A container that (re)started ended its log stream: reopen it now rather than
        at the follower's next check."""
        for info in infos:
            seen = info.service in self._last_start
            before = self._last_start.get(info.service)
            now = (info.id, info.started_at) if info.running else None
            self._last_start[info.service] = now
            if seen and now is not None and before != now and self._hub is not None:
                self._hub.notify_started(info.id or info.container)

    @property
    def docker_backoff(self) -> float:
        return float(getattr(self.monitor, "backoff", 0.0) or 0.0)

    # ------------------------------------------------------------ polls

    async def _probe_round(self) -> None:
        from genai_tui.sources import tokens as tk

        if self.prober is None or not self.config.services:
            return
        token = await asyncio.to_thread(tk.canonical_hash, self.config.tokens)
        results: list[ProbeResult] = await self.prober.probe_all(self.config.services, token)
        del token
        if results:
            self.publish("probes", results)

    async def _tokens_round(self) -> None:
        from genai_tui.sources import tokens as tk

        report: TokensReport = await asyncio.to_thread(tk.read_report, self.config.tokens)
        report.servers = derive.servers(report, self.snapshot.probes, self.snapshot.log_events)
        await asyncio.to_thread(self._auditor.observe, report)
        self.publish("tokens", report)

    def _gpu_source(self) -> NvmlSource | None:
        if self.remote_gpu:
            return None
        if self._nvml is None:
            from genai_tui.sources.gpu import NvmlSource

            self._nvml = NvmlSource()
        return self._nvml

    async def _gpu_round(self) -> None:
        source = self._gpu_source()
        containers, probes = list(self.snapshot.containers), list(self.snapshot.probes)
        try:
            report = await asyncio.to_thread(derive.gpu, source, containers, probes,
                                             remote=self.remote_gpu)
        except Exception as exc:  # never lose the loop to a surprise
            report = GpuReport(error=f"GPU read failed: {type(exc).__name__}")
        self.publish("gpu", report)

    def _gpu_delay(self) -> float:
        interval = max(0.5, self.config.gpu.interval)
        report = self.snapshot.gpu
        # without NVML the report is the probes' /system_stats: nothing new between rounds
        if report is not None and report.error:
            return max(interval, self.config.probes.interval)
        return interval

    async def _host_round(self) -> None:
        if self._host_reader is None:
            from genai_tui.sources import host

            self._host_reader = host.HostSource(host.default_disks(self.config))
        try:
            info: HostInfo = await asyncio.to_thread(self._host_reader.read)
        except Exception:
            info = HostInfo()
        self.publish("host", info)

    def _host_delay(self) -> float:
        interval = max(0.5, self.config.host.interval)
        # the first reading has no CPU baseline yet: take the second one soon
        return min(1.0, interval) if self.rounds("host") <= 1 else interval

    async def _events_round(self) -> None:
        """Hand on the events the log followers found (token lines, OOMs, crashes)."""
        if self._hub is None:
            return
        followers = list(self._hub.followers.values())
        if followers and all(f.state != "starting" for f in followers):
            self._logs_rounds += 1  # every stream is open: its backlog is on its way
        fresh: list[LogEvent] = []
        for f in followers:
            fresh.extend(f.drain_events())
        if fresh and self.jobs is not None:
            self.jobs.observe(fresh)
        fresh = [e for e in fresh if e.kind not in JOB_ONLY_EVENTS]
        if fresh:
            fresh.sort(key=lambda e: e.at.timestamp() if e.at else 0.0)
            self._events.extend(fresh)
            self._events_dirty = True
        now = time.monotonic()
        urgent = any(e.kind in URGENT_EVENTS for e in fresh)
        if self._events_dirty and (urgent or now - self._events_published >= EVENTS_PUBLISH):
            self._events_dirty = False
            self._events_published = now
            self.publish("log_events", self._events.list())

    async def _secrets_round(self) -> None:
        if self.rounds("secrets"):  # the hub loads them itself before line one
            await asyncio.to_thread(self.logs.refresh_secrets)

    # ------------------------------------------------------------ asking for more

    def refresh(self, part: str | None = None) -> None:
        """Poll one part (or every part) now."""
        for name, chain in self._chains.items():
            if part is None or part == name:
                chain.now()
        if part in (None, "jobs") and self.jobs is not None:
            self.jobs.refresh()
        if part in (None, "containers") and self.monitor is not None:
            threading.Thread(target=self._resync, daemon=True).start()
        if part in (None, "containers") and self.processes is not None:
            self.processes.poke()  # process services: read /proc now, not next interval

    def _resync(self) -> None:
        with contextlib.suppress(Exception):
            self.monitor.full_sync()

    def probe_now(self) -> None:
        self.refresh("probes")

    def in_flight(self, part: str) -> bool:
        chain = self._chains.get(part)
        return chain is not None and chain.in_flight

    def rounds(self, part: str) -> int:
        chain = self._chains.get(part)
        return chain.rounds if chain is not None else 0

    def settled(self) -> bool:
        """Every part has had its first round (and findings were derived from them)."""
        needed = [p for p in ("probes", "tokens", "gpu", "host") if p in self.parts]
        if self.monitor is not None or self.processes is not None:
            if not self.snapshot.containers:
                return False
        # the streams' backlogs (the token line since start) read: a few rounds after open
        if "logs" in self.parts and self._hub is not None and self._hub.followers \
                and self._logs_rounds < LOGS_SETTLE_ROUNDS:
            return False
        return all(self.rounds(p) >= 1 for p in needed) and self._diagnose_handle is None \
            and self.diagnosed > 0

    def wait_settled(self, timeout: float = 30.0) -> bool:
        """Headless: block until `settled()` (or the timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.settled():
                return True
            time.sleep(0.05)
        return False

    # ------------------------------------------------------------ actions

    def set_action(self, service: str, action: str | None) -> None:
        """Show what we are doing to a service (`restarting`) in its row."""
        svc = self.config.service(service)
        if svc is None:
            return
        monitor = self.processes if svc.runtime == "process" else self.monitor
        if monitor is not None:
            monitor.set_action(service, action)

    def unpause(self, names: list[str],
                done: Callable[[str, bool, str], None] | None = None) -> None:
        """Unpause paused containers off the loop; `done(name, ok, detail)` on the loop."""
        def work() -> None:
            from genai_tui.engine import actions

            for outcome in actions.unpause(self.config, names):
                if done is not None:
                    self._call_soon(done, outcome.service, outcome.ok, outcome.detail)
            self._call_soon(self.refresh, "probes")

        threading.Thread(target=work, name="stack-unpause", daemon=True).start()

    def restart(self, names: list[str],
                done: Callable[[str, bool, str], None] | None = None) -> None:
        """Restart services off the loop (each resolved to its full container ID by the
        source); rows show `restarting` meanwhile; `done(name, ok, detail)` on the loop."""
        for name in names:
            self.set_action(name, "restarting")

        def work() -> None:
            from genai_tui.engine import actions

            processes = self.processes.source if self.processes is not None else None
            for outcome in actions.restart(self.config, names, processes=processes):
                self.set_action(outcome.service, None if outcome.ok
                                else f"restart failed: {outcome.detail}")
                svc = self.config.service(outcome.service)
                if outcome.ok and svc is not None:
                    with contextlib.suppress(Exception):  # the events stream catches up
                        if svc.runtime == "process" and self.processes is not None:
                            self.processes.poke()
                        elif self.monitor is not None:
                            self.monitor.refresh_service(svc)
                if done is not None:
                    self._call_soon(done, outcome.service, outcome.ok, outcome.detail)
            self._call_soon(self.refresh, "probes")

        threading.Thread(target=work, name="stack-restart", daemon=True).start()
