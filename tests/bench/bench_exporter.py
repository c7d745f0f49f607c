"""Exporter cost: what `genai-tui exporter` costs idle with one scrape every 15 s (as a
Prometheus would), and what one scrape costs.

Run: `python tests/bench/bench_exporter.py [--idle-seconds 60] [--scrapes 200]` from the
repository root (needs a Docker engine). It starts the bench stack (the four simulated
services of `genai-tui demo`, tests/bench/stack.py), the exporter on a free loopback port
as its own process, waits until /healthz says ready, then measures the exporter process
(psutil: user + system CPU, RSS):

- idle: `--idle-seconds` with one scrape every 15 s;
- scrapes: `--scrapes` back-to-back scrapes over one kept-alive connection (latency per
  scrape, and CPU per scrape minus the idle engine's rate).
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from genai_tui import simdocker  # noqa: E402
from tests.bench.stack import BenchStack  # noqa: E402


def cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def wait_ready(port: int, timeout: float = 60.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the exporter never became ready")


def scrape(conn: http.client.HTTPConnection) -> int:
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    body = resp.read()
    assert resp.status == 200, resp.status
    return len(body)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--idle-seconds", type=float, default=60.0)
    ap.add_argument("--scrapes", type=int, default=200)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="genai-tui-bench-exporter-"))
    stack = BenchStack(root)
    proc = None
    try:
        config = stack.start()
        port = simdocker.free_port()
        proc = subprocess.Popen([sys.executable, "-m", "genai_tui.cli", "exporter", "--listen",
                                 f"127.0.0.1:{port}", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ps = psutil.Process(proc.pid)
        ready = wait_ready(port)
        print(f"exporter ready after {ready:.2f} s")
        time.sleep(5)  # let the first rounds of every part pass
        c0, t0 = cpu(ps), time.monotonic()
        next_scrape = t0
        size = 0
        while time.monotonic() - t0 < args.idle_seconds:
            if time.monotonic() >= next_scrape:
                one = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                size = scrape(one)
                one.close()
                next_scrape += 15.0
            time.sleep(0.2)
        idle_s = time.monotonic() - t0
        idle_cpu = (cpu(ps) - c0) * 60.0 / idle_s
        rss = ps.memory_info().rss / 1e6
        print(f"idle, one scrape / 15 s: {idle_cpu:.2f} CPU s per 60 s, RSS {rss:.0f} MB, "
              f"scrape {size} bytes")
        lat = []
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c1, w1 = cpu(ps), time.monotonic()
        for _ in range(args.scrapes):
            s0 = time.perf_counter()
            scrape(conn)
            lat.append((time.perf_counter() - s0) * 1000)
        wall = time.monotonic() - w1
        per = ((cpu(ps) - c1) - idle_cpu / 60.0 * wall) / args.scrapes * 1000
        lat.sort()
        print(f"{args.scrapes} scrapes: latency median {statistics.median(lat):.2f} ms, "
              f"p95 {lat[int(0.95 * (len(lat) - 1))]:.2f} ms, max {lat[-1]:.2f} ms; "
              f"exporter CPU per scrape {per:.2f} ms")
        conn.close()
        t_stop = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        print(f"SIGTERM -> exit {code} in {time.monotonic() - t_stop:.2f} s")
        return 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        stack.close()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
