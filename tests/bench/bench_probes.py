"""Probe cost: CPU seconds per probe round over the reference stack's four services.

Run: `python tests/bench/bench_probes.py [--rounds N]` from the repository root.

Starts four simulator processes locally (comfyui-qwen and flux-1-dev as ComfyUI with
ComfyUI-Login and the right hash, stable-diffusion-35 as an http stub, the orchestrator),
then measures this process only (`time.process_time`: user + system CPU of the prober, not
of the simulators) for N rounds of `Prober.probe_all` with one shared client, as the panel
does, and for `probe_once` (a fresh client per call, as `genai-tui check` does).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from genai_tui.config import Config, ProbeConfig, ServiceConfig  # noqa: E402
from genai_tui.sources.probes import Prober, probe_once  # noqa: E402
from tests.conftest import make_hash  # noqa: E402
from tests.unit.test_probes import start_local_sim  # noqa: E402


async def rounds(services: tuple[ServiceConfig, ...], token: str, n: int) -> list[tuple]:
    out = []
    async with Prober(ProbeConfig(), max_connections=8) as prober:
        first = await prober.probe_all(services, token)  # warm-up (imports, SSL context)
        print("verdicts:", ", ".join(f"{r.service}={r.outcome}/{r.auth}" for r in first))
        for _ in range(n):
            c0, w0 = time.process_time(), time.perf_counter()
            await prober.probe_all(services, token)
            out.append((time.process_time() - c0, time.perf_counter() - w0))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-probes-"))
    token = make_hash()
    sims = [
        start_local_sim(tmp, hash_=token),
        start_local_sim(tmp, hash_=token),
        start_local_sim(tmp, kind="stub"),
        start_local_sim(tmp, kind="orchestrator"),
    ]
    try:
        services = (
            ServiceConfig("comfyui-qwen", sims[0].url, "comfyui", auth=True),
            ServiceConfig("flux-1-dev", sims[1].url, "comfyui", auth=True),
            ServiceConfig("stable-diffusion-35", sims[2].url, "http", health_path="/health"),
            ServiceConfig("orchestrator", sims[3].url, "orchestrator", health_path="/health"),
        )
        data = asyncio.run(rounds(services, token, args.rounds))
        cpu = [c for c, _ in data]
        wall = [w for _, w in data]
        print(f"shared client, {args.rounds} rounds x 4 services (10 HTTP requests/round):")
        print(f"  CPU per round:  mean {statistics.mean(cpu) * 1000:.2f} ms, "
              f"median {statistics.median(cpu) * 1000:.2f} ms, max {max(cpu) * 1000:.2f} ms")
        print(f"  wall per round: mean {statistics.mean(wall) * 1000:.2f} ms, "
              f"median {statistics.median(wall) * 1000:.2f} ms, max {max(wall) * 1000:.2f} ms")
        print(f"  at the default 5 s interval: {statistics.mean(cpu) / 5 * 100:.3f} % of one "
              "core")
        config = Config(services=services)
        probe_once(config, token)  # warm-up
        n = max(5, args.rounds // 10)
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(n):
            probe_once(config, token)
        c, w = time.process_time() - c0, time.perf_counter() - w0
        print(f"probe_once (new client + event loop each call), {n} calls:")
        print(f"  CPU per call {c / n * 1000:.2f} ms, wall per call {w / n * 1000:.2f} ms")
    finally:
        for s in sims:
            s.proc.terminate()
            s.proc.wait(5)
    print(f"(python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
