"""Benchmark: the log panel following a container that floods its log.

    python tests/bench/bench_logs.py [--rate 20000] [--duration 30] [--buffer 5000]

Starts the simulator with `--scenario log_flood` in a real container, runs a small Textual
app with the LogPanel following it headless (`App.run_test()`), and prints:

- key-press response: `t` pressed through Pilot every 0.5 s, time until the panel's state
  changed (and, separately, event-loop lag measured with a 10 ms sleep);
- newest-line latency: wall clock minus Docker's timestamp of the newest line on screen;
- throughput: lines the follower accepted per second vs. the offered rate;
- CPU of this process (UI + follower threads) per 1 000 lines; RSS over time.

Prints figures only; no assertion (timing goals are not tests).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import docker  # noqa: E402
import psutil  # noqa: E402
from textual.app import App, ComposeResult  # noqa: E402

from genai_tui import simdocker  # noqa: E402
from genai_tui.config import Config, LogConfig, ServiceConfig, TokensConfig  # noqa: E402
from genai_tui.sources.logs import LogHub  # noqa: E402
from genai_tui.ui.logs import LogPanel  # noqa: E402

OWNER = "genai-tui-bench"


class BenchApp(App):
    def __init__(self, config: Config, hub: LogHub) -> None:
        super().__init__()
        self.config = config
        self.hub = hub

    def compose(self) -> ComposeResult:
        yield LogPanel(self.config, id="logs", hub=self.hub, initial="flood")

    def on_mount(self) -> None:
        self.query_one("#log-view").focus()


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def run(rate: int, duration: float, buffer_lines: int) -> None:
    client = docker.from_env(timeout=30)
    simdocker.ensure_image(client)
    simdocker.remove_owned(client, OWNER)
    name = simdocker.unique("genai-tui-bench-flood")
    container = simdocker.run_sim(
        client, name=name, scenario="log_flood", publish=False, owner=OWNER,
        extra_args=["--lines-per-second", str(rate), "--duration", str(duration)])
    proc = psutil.Process()
    cfg = Config(services=(ServiceConfig("flood", "http://127.0.0.1:9", container=name),),
                 tokens=TokensConfig(), logs=LogConfig(buffer_lines=buffer_lines, tail=200))
    hub = LogHub(cfg, secrets=lambda: [])
    app = BenchApp(cfg, hub)
    key_ms: list[float] = []
    lag_ms: list[float] = []
    newest_ms: list[float] = []
    read_ms: list[float] = []
    rss: list[tuple[float, float]] = []
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            panel = app.query_one(LogPanel)
            follower = hub.follower("flood")
            t_start = time.monotonic()
            while follower.total < 1000 and time.monotonic() - t_start < 30:
                await pilot.pause(0.05)
            cpu0 = proc.cpu_times()
            threads0 = {t.id: t.user_time + t.system_time for t in proc.threads()}
            follower_tid = follower._thread.native_id if follower._thread else None
            lines0 = follower.total
            t0 = time.monotonic()
            next_key = t0
            next_sample = t0
            while time.monotonic() - t0 < duration + 2:
                before = time.perf_counter()
                await asyncio.sleep(0.01)
                lag_ms.append((time.perf_counter() - before - 0.01) * 1000)
                now = time.monotonic()
                if now >= next_key:
                    next_key = now + 0.5
                    state = panel.view.show_ts
                    k0 = time.perf_counter()
                    # the key goes through the app's normal dispatch (bindings, focus chain);
                    # we time until the panel's state changed, not Pilot's own settling
                    app.simulate_key("t")
                    while panel.view.show_ts == state:
                        await asyncio.sleep(0.001)
                    key_ms.append((time.perf_counter() - k0) * 1000)
                if now >= next_sample:
                    next_sample = now + 0.25
                    if int((now - t0) * 4) % 4 == 0:
                        rss.append((now - t0, proc.memory_info().rss / 2**20))
                    newest = panel.view.newest_ts
                    if newest and follower.state == "following" and now - t0 < duration - 1:
                        newest_ms.append((time.time_ns() - newest) / 1e6)
                        read_ms.append((time.time_ns() - follower.last_ts) / 1e6)
            elapsed = time.monotonic() - t0
            cpu1 = proc.cpu_times()
            threads1 = {t.id: t.user_time + t.system_time for t in proc.threads()}
            follower_cpu = threads1.get(follower_tid, 0.0) - threads0.get(follower_tid, 0.0)
            lines = follower.total - lines0
            cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
            view_count = panel.view.line_count
            buffered = len(follower.snapshot())
    finally:
        t_close = time.monotonic()
        # the app's unmount closed the hub; make sure, then measure how long it took
        hub.close()
        close_s = time.monotonic() - t_close
        try:
            container.remove(force=True)
        except docker.errors.APIError:
            pass
        client.close()

    print(f"log flood benchmark: {rate} lines/s for {duration:.0f} s, buffer {buffer_lines}")
    print(f"  lines accepted:       {lines:,} of {rate * duration:,.0f} offered "
          f"(measured over {elapsed:.1f} s, the flood lasts {duration:.0f} s)")
    print(f"  CPU (this process):   {cpu:.2f} s = {cpu / max(lines, 1) * 1000 * 1000:.1f} ms "
          f"per 1000 lines ({100 * cpu / elapsed:.0f}% of one core); follower thread "
          f"{follower_cpu / max(lines, 1) * 1e6:.1f} ms, UI and the rest "
          f"{(cpu - follower_cpu) / max(lines, 1) * 1e6:.1f} ms per 1000 lines")
    print(f"  key press → handled:  p50 {pct(key_ms, 50):.1f} ms, p95 {pct(key_ms, 95):.1f} ms, "
          f"max {max(key_ms, default=float('nan')):.1f} ms ({len(key_ms)} presses)")
    print(f"  event-loop lag:       p50 {pct(lag_ms, 50):.1f} ms, p95 {pct(lag_ms, 95):.1f} ms, "
          f"max {max(lag_ms, default=float('nan')):.1f} ms")
    if newest_ms:
        print(f"  newest line on screen: p50 {pct(newest_ms, 50):.0f} ms, "
              f"p95 {pct(newest_ms, 95):.0f} ms, max {max(newest_ms):.0f} ms behind Docker "
              f"(follower thread: p50 {pct(read_ms, 50):.0f} ms, p95 {pct(read_ms, 95):.0f} ms, "
              f"max {max(read_ms):.0f} ms)")
    print(f"  RSS MiB:              start {rss[0][1]:.0f}, max {max(r for _, r in rss):.0f}, "
          f"end {rss[-1][1]:.0f}  (every 5 s: "
          + ", ".join(f"{r:.0f}" for t, r in rss if int(t) % 5 == 0) + ")")
    print(f"  bounded:              view {view_count} lines, follower buffer {buffered} lines")
    print(f"  close after the run:  {close_s * 1000:.0f} ms")
    print(f"  key response mean:    {statistics.mean(key_ms):.1f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=int, default=20000)
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--buffer", type=int, default=5000)
    args = p.parse_args()
    asyncio.run(run(args.rate, args.duration, args.buffer))


if __name__ == "__main__":
    main()
